"""When an LLM stage gives up, and what a person is told: error classes, one-line descriptions, the per-stage
circuit breaker, and the fallback-share check.

A stage stops (LLMStageStopped, one line, never retried by Prefect) at once on an error that no retry can fix
(401, 403, 404, 400, 422: a wrong key, model or endpoint), after `max_consecutive_failures` requests in a row
failed, or when every attempt has failed for `max_outage_s` seconds (a closed port, a dead server). Single
failures in a working stage only make that unit fall back.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from e2ep.errors import E2EPError
from e2ep.interrupt import check_stop
from e2ep.llm.config import LLMConfig, import_litellm, is_retryable

log = logging.getLogger("e2ep.llm")
Kind = Literal["fatal", "transient", "unit"]


class LLMStageStopped(E2EPError):
    """An LLM stage stopped: the provider refuses every request, or failed too often in a row."""


class LLMFallbackError(E2EPError):
    """Too many units of an LLM stage fell back to their offline substitute (`llm.max_fallback_share`)."""


def classify(exc: BaseException) -> Kind:
    """`fatal`: the same for every request (key, model, endpoint, request shape): stop the stage. `unit`: this
    request only (too long a prompt, a content filter): the unit falls back. `transient`: retry."""
    ll = import_litellm()
    if isinstance(exc, (ll.ContextWindowExceededError, ll.ContentPolicyViolationError)):
        return "unit"
    if is_retryable(exc):
        return "transient"
    fatal = (ll.AuthenticationError, ll.PermissionDeniedError, ll.NotFoundError, ll.BadRequestError,
             ll.UnprocessableEntityError)  # fmt: skip
    status = getattr(exc, "status_code", None)
    if isinstance(exc, fatal) or (isinstance(status, int) and 400 <= status < 500):
        return "fatal"
    return "unit"


_LITELLM_PREFIX = re.compile(r"^litellm\.\w+:\s*(\w+:\s*)?(\w+Exception\s*-\s*)?")


def unreachable(exc: BaseException) -> bool:
    """No connection to the provider at all (refused, no route, unknown host): litellm reports some of these as
    an InternalServerError, so look down the exception's causes."""
    import httpx

    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, (httpx.ConnectError, ConnectionRefusedError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def describe(exc: BaseException, model: str, api_base: str | None) -> str:
    """One line: what failed and what to check, then the provider's own words (first line, clipped)."""
    ll = import_litellm()
    where = f"{model} at {api_base}" if api_base else model
    detail = _LITELLM_PREFIX.sub("", str(exc).splitlines()[0] if str(exc) else "")[:200]
    status = getattr(exc, "status_code", None)
    what = f"{type(exc).__name__}{f' {status}' if isinstance(status, int) else ''}: {detail}".rstrip(": ")
    if isinstance(exc, ll.AuthenticationError):
        problem = "the API key was refused (check llm.api_key_env or the provider's key variable)"
    elif isinstance(exc, ll.PermissionDeniedError):
        problem = "this key may not use this model"
    elif isinstance(exc, ll.NotFoundError):
        problem = "model or endpoint not found (check the model name and llm.api_base)"
    elif isinstance(exc, ll.Timeout):
        problem = "no answer within the timeout (llm.timeout_s, llm.connect_timeout_s)"
    elif unreachable(exc):
        problem = "cannot connect (is the server running, and llm.api_base or the provider's base-URL variable right?)"
    elif isinstance(exc, ll.RateLimitError):
        problem = "rate-limited or out of quota"
    elif isinstance(exc, ll.APIConnectionError):
        problem = "the connection failed"
    elif classify(exc) == "fatal":
        problem = "the provider rejects the request"
    else:
        problem = "the provider is failing"
    return f"{where}: {problem}: {what}"


class StageGuard:
    """Per-stage circuit breaker shared by the gateway's threads; `check` raises a stage's stop for every caller
    once it tripped, and RunInterrupted once the run is asked to stop."""

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._stopped: dict[str, LLMStageStopped] = {}
        self._streak: dict[str, list[str]] = {}  # keys of the units that failed in a row
        self._failing_since: dict[str, float] = {}

    def check(self, stage: str) -> None:
        check_stop()
        with self._lock:
            stopped = self._stopped.get(stage)
        if stopped is not None:
            raise stopped

    def stop(self, stage: str, reason: str) -> LLMStageStopped:
        """Trip the breaker (the first reason wins) and return the error to raise."""
        with self._lock:
            if stage not in self._stopped:
                self._stopped[stage] = LLMStageStopped(f"LLM stage {stage} stopped: {reason}")
                log.error("%s", self._stopped[stage])
            return self._stopped[stage]

    def wait(self, stage: str, seconds: float) -> None:
        """A retry's backoff; ends early (raising) when the stage stops or the run is interrupted."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check(stage)
            time.sleep(min(left, 0.1))
        self.check(stage)

    def attempt_failed(self, stage: str, exc: BaseException, retry_in: float | None, describe_exc: str) -> None:
        """Outage rule: attempts failing (other than rate limits) with no success for `max_outage_s`, or a retry
        that would only be sent after that, stop the stage."""
        if isinstance(exc, import_litellm().RateLimitError):
            return
        now = time.monotonic()
        with self._lock:
            since = self._failing_since.setdefault(stage, now)
        limit = self.config.max_outage_s
        if now - since >= limit or (retry_in is not None and now + retry_in - since > limit):
            raise self.stop(
                stage, f"no answer for {now - since:.0f} s (llm.max_outage_s = {limit:g}); last: {describe_exc}"
            )

    def time_left(self, stage: str) -> float | None:
        """Seconds until the outage window of a failing stage closes; None while the stage is not failing."""
        with self._lock:
            since = self._failing_since.get(stage)
        return None if since is None else since + self.config.max_outage_s - time.monotonic()

    def attempt_succeeded(self, stage: str) -> None:
        with self._lock:
            self._failing_since.pop(stage, None)

    def unit_failed(self, stage: str, key: str, error: str, forget: Callable[[list[str]], Any]) -> None:
        """Count a unit that fell back; the `max_consecutive_failures`-th in a row stops the stage. The units of
        that streak are then `forget`-ten from the memo: they failed in an outage, not on their own merits."""
        limit = self.config.max_consecutive_failures
        with self._lock:
            streak = self._streak.setdefault(stage, [])
            streak.append(key)
            if len(streak) < limit:
                return
            keys, self._streak[stage] = list(streak), []
        forget(keys)
        raise self.stop(stage, f"{limit} requests in a row failed (llm.max_consecutive_failures); last: {error}")

    def unit_succeeded(self, stage: str) -> None:
        with self._lock:
            self._streak.pop(stage, None)


def check_fallback_share(label: str, fallbacks: int, units: int, config: LLMConfig, substitute: str) -> str | None:
    """Say how many of a stage's `units` fell back to `substitute` (a warning on the console for any), and raise
    LLMFallbackError above `config.max_fallback_share`. Returns the line logged, or None when nothing fell back."""
    if not units or not fallbacks:
        return None
    share = fallbacks / units
    line = f"{label}: {fallbacks} of {units} LLM requests ({share:.1%}) fell back to {substitute}"
    if share > config.max_fallback_share:
        raise LLMFallbackError(
            f"{line}, above llm.max_fallback_share = {config.max_fallback_share:.0%}; the failures are memoised: "
            "rerun with --retry-failed to ask them again, or raise llm.max_fallback_share to accept them"
        )
    log.warning("%s", line)
    return line


def report_retried(label: str, retried: int) -> str | None:
    """Say on the console how many units whose failure was memoised were asked again (`llm.retry_failed`)."""
    if not retried:
        return None
    line = f"{label}: asked the LLM again for {retried} unit(s) whose failure was memoised (llm.retry_failed)"
    log.warning("%s", line)
    return line
