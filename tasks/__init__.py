"""Thin Prefect task wrappers over the stages' plain functions, with the caching rules of each stage."""
