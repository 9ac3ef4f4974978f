"""The LLM gateway: every LLM call of e2ep goes through :class:`LLMGateway` (see gateway.py for usage)."""

from e2ep.llm.accounting import StageUsage, UsageLedger
from e2ep.llm.config import MODEL_ENV, LLMConfig, is_retryable, retry_after_s
from e2ep.llm.failures import LLMFallbackError, LLMStageStopped, check_fallback_share, report_retried
from e2ep.llm.gateway import LLMCallError, LLMError, LLMGateway, LLMOutputError, LLMResult, cache_key

__all__ = [
    "MODEL_ENV",
    "LLMCallError",
    "LLMConfig",
    "LLMError",
    "LLMFallbackError",
    "LLMGateway",
    "LLMOutputError",
    "LLMResult",
    "LLMStageStopped",
    "StageUsage",
    "UsageLedger",
    "cache_key",
    "check_fallback_share",
    "is_retryable",
    "report_retried",
    "retry_after_s",
]
