"""Prefect flows: the `experiment` DAG and its per-fold subflow."""
