"""One door to every LLM call: litellm underneath, disk memo, retries, concurrency, validation, accounting.

gateway = LLMGateway.from_config(cfg.llm)      # None when no model is configured: use an offline backend
if gateway is not None:
    gateway.preflight()                        # ConfigError now (and one tiny real call) rather than later
    res = gateway.complete("Say hi", stage="profiles", validate=parse_profile)
    many = gateway.complete_many([msgs1, msgs2], stage="profiles", validate=parse_profile)
    gateway.write_usage(run_dir / "llm-usage.json")
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast, overload

from e2ep.errors import ConfigError, E2EPError
from e2ep.interrupt import check_stop
from e2ep.llm.accounting import UsageLedger
from e2ep.llm.budget import active_cap
from e2ep.llm.config import MODEL_ENV, LLMConfig, import_litellm, retry_after_s
from e2ep.llm.failures import StageGuard, classify, describe, unreachable
from e2ep.llm.memo import AnswerMemo
from e2ep.secrets import require_secret, resolve_secret

T = TypeVar("T")
Messages = list[dict[str, Any]]
Prompt = str | Messages
log = logging.getLogger("e2ep.llm")

CACHE_VERSION = 1
REPAIR_PROMPT = "Your answer was invalid because: {error}\nAnswer again, following the requested format exactly."
LOCAL_PROVIDERS = {"ollama", "ollama_chat", "lm_studio", "hosted_vllm", "llamafile"}
PLACEHOLDER_KEY = "sk-no-key-needed"  # openai-compatible local servers ignore the key but the client wants one
PROBE = [{"role": "user", "content": "Reply with OK."}]
_probed: set[tuple[str, str | None]] = set()  # (model, endpoint) answered a probe in this process
_probed_lock = threading.Lock()


class LLMError(E2EPError):
    """An LLM request did not produce a usable answer."""


class LLMCallError(LLMError):
    """The provider call failed: a non-retryable error, or transient errors outlasting the retries."""


class LLMOutputError(LLMError):
    """The answer failed validation, and so did the answer to the one repair request."""


@dataclass(frozen=True)
class LLMResult(Generic[T]):
    text: str
    """The (validated) answer text."""
    value: T
    """`validate(text)`, or the text when no validator was given."""
    cached: bool
    """True when answered from the disk cache (no HTTP call)."""
    key: str
    """Cache key: sha256 of model, messages and generation parameters."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    """What this answer cost when it was bought (also for cached results)."""
    retries: int = 0
    repaired: bool = False


@dataclass
class _Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    retries: int

    def plus(self, repair: _Answer) -> _Answer:
        """The repair's text, with the cost of both exchanges."""
        return _Answer(repair.text, self.prompt_tokens + repair.prompt_tokens,
                       self.completion_tokens + repair.completion_tokens, self.cost_usd + repair.cost_usd,
                       self.retries + repair.retries)  # fmt: skip


def _stored_answer(entry: dict[str, Any]) -> _Answer:
    usage = entry.get("usage") or {}
    return _Answer(
        entry["text"],
        int(usage.get("prompt_tokens", 0)),
        int(usage.get("completion_tokens", 0)),
        float(entry.get("cost_usd", 0.0)),
        0,
    )


def repair_messages(messages: Messages, answer: str, error: BaseException) -> Messages:
    return [*messages, {"role": "assistant", "content": answer},
            {"role": "user", "content": REPAIR_PROMPT.format(error=error)}]  # fmt: skip


def _output_error(stage: str, error: BaseException) -> LLMOutputError:
    return LLMOutputError(f"LLM answer for stage {stage!r} invalid after one repair request: {error}")


def cache_key(model: str, messages: Messages, params: dict[str, Any]) -> str:
    """What determines the answer, and nothing else: no api key, no api_base, no timeouts."""
    payload = {"v": CACHE_VERSION, "model": model, "messages": messages, "params": params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def as_messages(prompt: Prompt) -> Messages:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


class LLMGateway:
    """Thread-safe; share one per process. Several processes may share one cache folder at once: a prompt missing
    from the cache is asked by one of them while the others wait for its answer (see `AnswerMemo.lock`)."""

    def __init__(self, config: LLMConfig | None = None) -> None:
        self.config = config or LLMConfig()
        model = self.config.resolved_model()
        if not model:
            raise ConfigError(f"no LLM configured: set ${MODEL_ENV} or llm.model (e.g. openai/gpt-4.1-mini)")
        self.model = model
        self.ledger = UsageLedger()
        self.guard = StageGuard(self.config)
        self.memo = AnswerMemo(self.config)

    @overload
    @classmethod
    def from_config(cls, config: LLMConfig | None, required: Literal[True]) -> LLMGateway: ...
    @overload
    @classmethod
    def from_config(cls, config: LLMConfig | None = None, *, required: Literal[True]) -> LLMGateway: ...
    @overload
    @classmethod
    def from_config(cls, config: LLMConfig | None = None, required: bool = False) -> LLMGateway | None: ...
    @classmethod
    def from_config(cls, config: LLMConfig | None = None, required: bool = False) -> LLMGateway | None:
        """A gateway, or None when neither `config.model` nor `$E2EP_LLM_MODEL` names a model (unless `required`,
        which raises ConfigError instead)."""
        if not (config or LLMConfig()).resolved_model() and not required:
            return None
        return cls(config)

    # -- set-up checks -------------------------------------------------------------------------------------
    def preflight(self) -> None:
        """Raise ConfigError (one line) for an unknown model, a missing API key or an unusable cache folder."""
        ll = import_litellm()
        try:
            provider = ll.get_llm_provider(self.model)[1]
        except Exception:
            raise ConfigError(
                f"unknown LLM model {self.model!r}: litellm cannot tell its provider; "
                "write it as provider/model, e.g. openai/gpt-4.1-mini or ollama/gemma3:4b"
            ) from None
        env = self.config.api_key_env
        if env:
            require_secret(env, "LLM API key (llm.api_key_env)")
        if not env and not self.config.api_base and provider not in LOCAL_PROVIDERS:
            missing = ll.validate_environment(self.model).get("missing_keys") or []
            if missing:
                raise ConfigError(
                    f"LLM model {self.model} needs {', '.join(missing)} in the environment "
                    "(or set llm.api_base for a local server)"
                )
        try:
            self.memo.open()
        except OSError as exc:
            raise ConfigError(f"LLM cache folder {self.config.resolved_cache_dir()} is unusable: {exc}") from None
        if self.config.preflight_call:
            self.probe()

    def probe(self) -> None:
        """One tiny real request (once per process and endpoint): ConfigError, one line, when the provider refuses
        it (key, model, endpoint) or cannot be reached; a rate limit means the key works. A 5xx or timeout is
        tried once more."""
        endpoint = (self.model, self.config.api_base)
        with _probed_lock:
            if endpoint in _probed:
                return
        ll = import_litellm()
        for attempt in range(2):
            check_stop()
            self.ledger.record("preflight", requests=1, calls=1)
            try:
                ll.completion(
                    model=self.model,
                    messages=PROBE,
                    max_tokens=1,
                    **self._send_options(),
                    timeout=self._timeout(min(self.config.timeout_s, 20.0)),
                )
            except Exception as exc:
                if isinstance(exc, ll.RateLimitError):
                    break
                if attempt == 0 and classify(exc) == "transient" and not unreachable(exc):
                    time.sleep(1.0)
                    continue
                self.ledger.record("preflight", failures=1)
                raise ConfigError(f"LLM preflight failed: {describe(exc, self.model, self.endpoint())}") from None
            break
        with _probed_lock:
            _probed.add(endpoint)

    # -- calls ---------------------------------------------------------------------------------------------
    def key_for(self, prompt: Prompt, params: dict[str, Any] | None = None) -> str:
        return cache_key(self.model, as_messages(prompt), {**self.config.generation_params(), **(params or {})})

    def complete(
        self,
        prompt: Prompt,
        stage: str = "default",
        validate: Callable[[str], T] | None = None,
        params: dict[str, Any] | None = None,
    ) -> LLMResult[T]:
        """Answer `prompt` (a string or chat messages) from the memo or the model.

        `validate(text)` returns the parsed value or raises ValueError; an invalid answer gets one repair
        request, and if that is invalid too LLMOutputError is raised. Every answer the provider returns is stored
        as it arrives (valid or not: the same answer is never bought twice), and so is a unit's failure: a rerun
        reproduces it without a call unless `llm.retry_failed` is set. A stage that stops (see e2ep.llm.failures)
        raises LLMStageStopped; a stop request raises RunInterrupted.
        """
        messages = as_messages(prompt)
        gen = {**self.config.generation_params(), **(params or {})}
        key = cache_key(self.model, messages, gen)
        self.ledger.record(stage, requests=1)
        self.guard.check(stage)
        # Check, then lock and check again: hits never touch the lock, and of several processes (or threads)
        # missing the same key at once only the first calls the model; the others find its stored answer.
        found = self._replay(key, messages, gen, stage, validate)
        if isinstance(found, LLMResult):
            return found
        with self.memo.lock(key):
            found = self._replay(key, messages, gen, stage, validate)
            if isinstance(found, LLMResult):
                return found
            if found is True:
                self.ledger.record(stage, retried_failures=1)
            try:
                result = self._ask(
                    messages, gen, key, stage, validate, known=found if isinstance(found, _Answer) else None
                )
            except LLMError as exc:
                if isinstance(exc, LLMCallError):
                    self.memo.put(key, {"failure": str(exc), "model": self.model})
                self.guard.unit_failed(stage, key, str(exc), self.memo.forget_failures)
                raise
            self.guard.unit_succeeded(stage)
            return result

    def _replay(
        self, key: str, messages: Messages, gen: dict[str, Any], stage: str, validate: Callable[[str], T] | None
    ) -> LLMResult[T] | _Answer | bool:
        """What the memo holds for this request, without calling: a result; a memoised failure (raised); the
        first answer, bought but invalid, whose repair was never asked (an _Answer); True to ask afresh
        (`retry_failed`); False when nothing is stored."""
        entry = self.memo.get(key)
        if entry is None:
            return False
        if "failure" in entry:
            return self._memoised_failure(stage, LLMCallError(entry["failure"]))
        first = _stored_answer(entry)
        try:
            value = validate(first.text) if validate else first.text
            return self._hit(stage, first, value, key, entry.get("repaired", False))
        except ValueError as error:
            repair = self.memo.get(self.key_for(repair_messages(messages, first.text, error), gen))
            if repair is None or "failure" in repair:
                return first
            answer = first.plus(_stored_answer(repair))
            try:
                value = validate(answer.text)  # type: ignore[misc]  # only reached with a validator
            except ValueError as again:
                return self._memoised_failure(stage, _output_error(stage, again))
            return self._hit(stage, answer, value, key, True)

    def _hit(self, stage: str, answer: _Answer, value: Any, key: str, repaired: bool) -> LLMResult[Any]:
        self.ledger.record(stage, cache_hits=1, saved_cost_usd=answer.cost_usd)
        return LLMResult(answer.text, value, True, key, answer.prompt_tokens, answer.completion_tokens,
                         answer.cost_usd, 0, repaired)  # fmt: skip

    def _memoised_failure(self, stage: str, error: LLMError) -> bool:
        """True (ask again) under `retry_failed`; else raise the failure the memo recorded, at no cost."""
        if self.config.retry_failed:
            return True
        self.ledger.record(stage, cache_hits=1, failures=1, replayed_failures=1)
        raise type(error)(f"{error} (memoised; llm.retry_failed asks again)")

    def _ask(
        self,
        messages: Messages,
        gen: dict[str, Any],
        key: str,
        stage: str,
        validate: Callable[[str], T] | None,
        known: _Answer | None = None,
    ) -> LLMResult[T]:
        """Call the model (one repair request if the answer is invalid), storing each answer as it arrives.
        `known`: the first answer, already bought; only its repair is asked."""
        answer = known or self._bought(key, self._call(messages, gen, stage))
        repaired = False
        try:
            value = validate(answer.text) if validate else cast(T, answer.text)  # no validator: T is str
        except ValueError as first:
            repaired = True
            self.ledger.record(stage, repairs=1)
            repair = repair_messages(messages, answer.text, first)
            repair_key = self.key_for(repair, gen)
            stored = self.memo.get(repair_key)
            second = _stored_answer(stored) if stored and "failure" not in stored else None
            if second is None:
                second = self._bought(repair_key, self._call(repair, gen, stage))
            answer = answer.plus(second)
            try:
                value = validate(answer.text)  # type: ignore[misc]  # only reached with a validator
            except ValueError as again:
                self.ledger.record(stage, failures=1)
                raise _output_error(stage, again) from again
        return LLMResult(answer.text, value, False, key, answer.prompt_tokens, answer.completion_tokens,
                         answer.cost_usd, answer.retries, repaired)  # fmt: skip

    def complete_many(
        self,
        prompts: Sequence[Prompt],
        stage: str = "default",
        validate: Callable[[str], T] | None = None,
        params: dict[str, Any] | None = None,
        return_exceptions: bool = False,
    ) -> list[LLMResult[T]] | list[LLMResult[T] | LLMError]:
        """`complete` each prompt, `config.concurrency` at a time; results in input order.

        Identical prompts are asked once. On the first error the calls not yet started are dropped and the error
        raised (answers already received stay cached), unless `return_exceptions` puts errors in the list. A
        stopped stage or a stop request cancels the calls not yet started and raises at once, whatever
        `return_exceptions` says (calls in flight finish in the background and are stored).
        """
        keys = [self.key_for(p, params) for p in prompts]
        first_index: dict[str, int] = {}
        for i, key in enumerate(keys):
            first_index.setdefault(key, i)
        unique = list(first_index.values())
        workers = max(1, min(self.config.concurrency, len(unique)))
        # Not a `with` block: leaving one joins the threads, i.e. waits for calls in flight (up to a timeout).
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="e2ep-llm")
        try:
            # Each call runs in a copy of this thread's context, so its log lines reach the Prefect run's log.
            futures = {
                pool.submit(contextvars.copy_context().run, self.complete, prompts[i], stage, validate, params): i
                for i in unique
            }
            self._await(futures, stage, stop_on_error=not return_exceptions)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True, cancel_futures=True)  # after a failure (`stop_on_error`): drop the rest
        failed = [
            (i, exc)
            for f, i in futures.items()
            if f.done() and not f.cancelled() and (exc := f.exception()) is not None
        ]
        bugs = [exc for _, exc in failed if not isinstance(exc, LLMError)]
        if failed and (bugs or not return_exceptions):
            raise bugs[0] if bugs else min(failed, key=lambda pair: pair[0])[1]
        results: dict[int, Any] = {i: f.exception() or f.result() for f, i in futures.items()}
        out: list[Any] = []
        for i, key in enumerate(keys):
            j = first_index[key]
            if i == j:
                out.append(results[i])
            else:
                self.ledger.record(stage, requests=1, cache_hits=1)
                out.append(replace(results[j], cached=True) if isinstance(results[j], LLMResult) else results[j])
        return out

    def _await(self, futures: dict[Future[Any], int], stage: str, stop_on_error: bool) -> None:
        """Wait for the calls, logging progress every ~10 %. Raises as soon as the stage stops or a stop is
        requested; with `stop_on_error`, returns at the first failure (a failure that is not an LLMError, a bug,
        always ends the wait)."""
        step = max(1, len(futures) // 10)
        pending, done = set(futures), 0
        while pending:
            finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            self.guard.check(stage)
            for future in finished:
                done += 1
                if done % step == 0 or done == len(futures):
                    log.info("%s: %d/%d answers", stage, done, len(futures))
                error = future.exception()
                if error is not None and (stop_on_error or not isinstance(error, LLMError)):
                    return

    # -- accounting ----------------------------------------------------------------------------------------
    def usage_summary(self) -> dict[str, Any]:
        """Per-stage and total counters (JSON-able; never any secret)."""
        return self.ledger.summary(self.model)

    def write_usage(self, path: str | Path) -> Path:
        return self.ledger.write(path, self.model)

    def close(self) -> None:
        self.memo.close()

    def __enter__(self) -> LLMGateway:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LLMGateway(model={self.model!r}, cache={self.config.resolved_cache_dir()})"

    # -- internals -----------------------------------------------------------------------------------------
    def _api_key(self) -> str | None:
        """Read fresh for each call and passed straight to litellm: never stored on the gateway."""
        if self.config.api_key_env:
            return resolve_secret(self.config.api_key_env)
        if self.config.api_base and import_litellm().validate_environment(self.model).get("missing_keys"):
            return PLACEHOLDER_KEY
        return None

    def endpoint(self) -> str | None:
        """Where requests go, for messages: `llm.api_base`, else the provider's base-URL variable if set."""
        if self.config.api_base:
            return self.config.api_base
        try:
            provider = import_litellm().get_llm_provider(self.model)[1]
        except Exception:
            return None
        names = (f"{provider.upper()}_API_BASE", f"{provider.upper()}_BASE_URL")
        return next((os.environ[n] for n in names if os.environ.get(n)), None)

    def _send_options(self) -> dict[str, Any]:
        cfg = self.config
        extra = {k: v for k, v in {"api_base": cfg.api_base, "api_key": self._api_key()}.items() if v}
        return {"num_retries": 0, "max_retries": 0, "drop_params": True, **extra}

    def _timeout(self, total: float | None = None) -> Any:
        """Total per-attempt timeout with a short connect timeout (litellm turns it into a float for providers
        whose client takes no httpx.Timeout)."""
        import httpx

        total = total or self.config.timeout_s
        return httpx.Timeout(total, connect=min(self.config.connect_timeout_s, total))

    def _before_send(self, stage: str, messages: Messages) -> None:
        """Every HTTP attempt of a stage passes here just before it is sent: a stopped stage, a stop request or the
        run's spending cap (BudgetExceeded: no request leaves once it is reached) raises instead."""
        self.guard.check(stage)
        cap = active_cap()
        if cap is not None:
            cap.before_call()

    def _call(self, messages: Messages, gen: dict[str, Any], stage: str) -> _Answer:
        ll, cfg = import_litellm(), self.config
        cap = active_cap()
        for attempt in range(cfg.max_retries + 1):
            self._before_send(stage, messages)
            self.ledger.record(stage, calls=1)
            started = time.monotonic()
            try:
                # While the stage is failing, no attempt outlasts its outage window (a hanging server).
                left = self.guard.time_left(stage)
                total = cfg.timeout_s if left is None else max(1.0, min(cfg.timeout_s, left))
                response = ll.completion(model=self.model, messages=messages, timeout=self._timeout(total),
                                         **self._send_options(), **gen)  # fmt: skip
            except Exception as exc:
                kind, what = classify(exc), describe(exc, self.model, self.endpoint())
                if kind == "fatal":
                    self.ledger.record(stage, failures=1)
                    raise self.guard.stop(stage, what) from exc
                last = kind == "unit" or attempt == cfg.max_retries
                delay = None if last else cfg.backoff_s(attempt, retry_after_s(exc))
                self.guard.attempt_failed(stage, exc, delay, what)
                if last:
                    self.ledger.record(stage, failures=1)
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise LLMCallError(f"LLM call failed{tries}: {what}") from exc
                self.ledger.record(stage, retries=1)
                log.warning("LLM %s (%s): %s; retry %d of %d in %.1f s", type(exc).__name__, stage,
                            what, attempt + 1, cfg.max_retries, delay)  # fmt: skip
                self.guard.wait(stage, delay)  # type: ignore[arg-type]  # set whenever not last
                continue
            self.guard.attempt_succeeded(stage)
            latency = time.monotonic() - started
            usage = getattr(response, "usage", None)
            prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
            cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")  # litellm's own
            if cost is None:
                try:
                    cost = ll.completion_cost(completion_response=response)
                except Exception:  # unknown price (local or unlisted model)
                    cost = 0.0
            cost = float(cost or 0.0)
            self.ledger.record(stage, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                               cost_usd=cost, latency_s=latency)  # fmt: skip
            if cap is not None:
                cap.record(cost)
            text = response.choices[0].message.content or ""
            return _Answer(text, prompt_tokens, completion_tokens, cost, attempt)
        raise AssertionError("unreachable")

    def _bought(self, key: str, answer: _Answer) -> _Answer:
        """Store an answer the moment it is bought, before it is validated."""
        usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens}
        self.memo.put(key, {"text": answer.text, "usage": usage, "cost_usd": answer.cost_usd, "model": self.model})
        return answer
