"""Evaluation: ranking metrics under two protocols, segments, aggregation over folds and significance tests."""

from evaluation.aggregate import paired_tests, summarize
from evaluation.external import ExternalReport, evaluate_files
from evaluation.metrics import EvaluationResult, cold_start_users, evaluate
from evaluation.tables import markdown_tables

__all__ = [
    "EvaluationResult",
    "ExternalReport",
    "cold_start_users",
    "evaluate",
    "evaluate_files",
    "markdown_tables",
    "paired_tests",
    "summarize",
]
