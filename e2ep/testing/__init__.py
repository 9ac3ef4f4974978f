"""Test-only helpers that the benchmarks also use: an OpenAI-compatible LLM stand-in served on 127.0.0.1. Nothing in
a run imports from here."""
