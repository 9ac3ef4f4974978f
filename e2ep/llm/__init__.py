"""The LLM gateway: every LLM call of e2ep goes through :class:`LLMGateway` (see gateway.py for usage)."""

from e2ep.llm.accounting import StageUsage, UsageLedger
from e2ep.llm.config import MODEL_ENV, LLMConfig
from e2ep.llm.gateway import (
    LLMCallError,
    LLMError,
    LLMGateway,
    LLMOutputError,
    LLMResult,
    cache_key,
    is_retryable,
    retry_after_s,
)

__all__ = [
    "MODEL_ENV",
    "LLMCallError",
    "LLMConfig",
    "LLMError",
    "LLMGateway",
    "LLMOutputError",
    "LLMResult",
    "StageUsage",
    "UsageLedger",
    "cache_key",
    "is_retryable",
    "retry_after_s",
]
