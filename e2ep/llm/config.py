"""Settings and retry policy of the LLM gateway. Secrets never live here: only the name of their variable."""

from __future__ import annotations

import logging
import os
import random
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from e2ep.configbase import Strict
from e2ep.runtime import e2ep_home

MODEL_ENV = "E2EP_LLM_MODEL"


def import_litellm() -> Any:
    """Import litellm once, offline (its price list otherwise comes from the network) and quiet."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False  # pyright: ignore[reportAttributeAccessIssue]  # read by older litellm releases
    logging.getLogger("LiteLLM").setLevel(logging.WARNING)
    return litellm


def is_retryable(exc: BaseException) -> bool:
    ll = import_litellm()
    permanent = (ll.AuthenticationError, ll.BadRequestError, ll.NotFoundError, ll.PermissionDeniedError,
                 ll.UnprocessableEntityError)  # fmt: skip
    transient = (ll.RateLimitError, ll.InternalServerError, ll.Timeout, ll.APIConnectionError,
                 ll.ServiceUnavailableError, ll.BadGatewayError)  # fmt: skip
    if isinstance(exc, permanent):
        return False
    if isinstance(exc, transient):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status >= 500 or status in (408, 409, 429))


def retry_after_s(exc: BaseException) -> float | None:
    """The server's Retry-After (seconds or HTTP date) or retry-after-ms, if it sent one."""
    raw = getattr(exc, "litellm_response_headers", None) or getattr(getattr(exc, "response", None), "headers", None)
    try:
        headers = {str(k).lower(): str(v) for k, v in dict(raw or {}).items()}
    except (TypeError, ValueError):
        return None
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class LLMConfig(Strict):
    """Which model to call, how hard to retry, how many calls at once, where answers are memoised."""

    model: str | None = None
    """Any litellm model string (`openai/gpt-4.1-mini`, `ollama/gemma3:4b`, ...). None: `$E2EP_LLM_MODEL`; both
    unset means no LLM is configured and callers use their offline backends."""

    api_base: str | None = None
    """Endpoint of an OpenAI-compatible or local server. None: litellm's provider default or env var
    (`OPENAI_API_BASE`, `OLLAMA_API_BASE`, ...). Not part of cache keys."""

    api_key_env: str | None = None
    """Where the API key lives: an environment variable's name, or `prefect-secret:<block name>` (a Prefect
    Secret block). None: litellm's usual variable for the provider (`OPENAI_API_KEY`, ...). Looked up at each
    call; the key itself is never stored, cached, logged or passed as a flow parameter."""

    temperature: float | None = 0.0
    """Sampling temperature (0: as reproducible as the provider allows). None: the provider's default."""

    max_tokens: Annotated[int, Field(ge=1)] | None = None
    """Cap on completion tokens per call. None: the provider's default."""

    params: dict[str, Any] = {}
    """Extra litellm generation parameters (`top_p`, `seed`, `response_format`, ...); part of the cache key."""

    timeout_s: Annotated[float, Field(gt=0)] = 60.0
    """Per-attempt timeout; a timed-out attempt is retried."""

    connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    """Longest wait for a connection to the provider (within `timeout_s`), so an unreachable host fails fast."""

    max_retries: Annotated[int, Field(ge=0)] = 4
    """Retries after the first attempt on rate limits, 5xx, timeouts and dropped connections."""

    backoff_base_s: Annotated[float, Field(ge=0)] = 1.0
    """First retry waits about this long (jittered in [50 %, 100 %]); each later retry doubles it."""

    backoff_max_s: Annotated[float, Field(ge=0)] = 30.0
    """Upper bound on one backoff wait (a server's Retry-After is honoured up to `retry_after_max_s`)."""

    retry_after_max_s: Annotated[float, Field(ge=0)] = 120.0
    """Longest Retry-After honoured; longer requests are clipped to this."""

    concurrency: Annotated[int, Field(ge=1)] = 4
    """Calls in flight at once in `complete_many`."""

    cache: bool = True
    """Memoise validated answers on disk; off only for debugging."""

    cache_dir: str | None = None
    """Folder of the diskcache (shared safely by concurrent processes). None: `$E2EP_HOME/llm-cache`."""

    max_cost_usd: Annotated[float, Field(ge=0)] | None = None
    """Cap on a run's LLM spend (litellm's prices): a run whose estimate is over it does not start; one whose
    actual spend reaches it stops (answers already bought stay in the memo). None: no cap. Never a cache key."""

    max_calls: Annotated[int, Field(ge=0)] | None = None
    """Cap on a run's LLM calls (HTTP requests; memo hits are free), enforced like `max_cost_usd`."""

    def without_caps(self) -> LLMConfig:
        """These settings minus the caps, which decide whether a call is sent, never what it answers."""
        return self.model_copy(update={"max_cost_usd": None, "max_calls": None})

    preflight_call: bool = True
    """Before any work, send one tiny request (a few tokens) so a wrong key, model or endpoint stops the run at
    once. False: check the settings only (e.g. to reproduce a finished run from its memo with no provider)."""

    max_consecutive_failures: Annotated[int, Field(ge=1)] = 5
    """A stage stops after this many requests in a row failed (each after its retries)."""

    max_outage_s: Annotated[float, Field(gt=0)] = 30.0
    """A stage stops when every attempt (rate limits aside) has failed for this long: a dead server or closed
    port fails within this many seconds of its first failure."""

    max_fallback_share: Annotated[float, Field(ge=0, le=1)] = 0.05
    """A stage whose share of units falling back (template profile, base order) exceeds this fails the run; any
    fallback at all is a warning on the console."""

    retry_failed: bool = False
    """Ask again the units whose failure is memoised (by default a rerun reproduces their fallback at no cost);
    the number asked again is logged and counted per stage (`retried_failures`)."""

    def resolved_model(self) -> str | None:
        """`model`, else `$E2EP_LLM_MODEL`, else None (no LLM configured)."""
        return self.model or os.environ.get(MODEL_ENV) or None

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else e2ep_home() / "llm-cache"

    def generation_params(self) -> dict[str, Any]:
        """The parameters that shape the answer (and so the cache key); None values are left to the provider."""
        fixed = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        return {k: v for k, v in {**fixed, **self.params}.items() if v is not None}

    def backoff_s(self, attempt: int, retry_after: float | None = None) -> float:
        """Wait before retry `attempt + 1`: the server's Retry-After when it sent one, else jittered exponential."""
        if retry_after is not None:
            return min(retry_after, self.retry_after_max_s)
        delay = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return random.uniform(delay / 2, delay)
