"""One door to every LLM call: litellm underneath, disk memo, retries, concurrency, validation, accounting.

    gateway = LLMGateway.from_config(cfg.llm)      # None when no model is configured: use an offline backend
    if gateway is not None:
        gateway.preflight()                        # ConfigError now rather than after an hour of work
        res = gateway.complete("Say hi", stage="profiles", validate=parse_profile)
        many = gateway.complete_many([msgs1, msgs2], stage="profiles", validate=parse_profile)
        gateway.write_usage(run_dir / "llm-usage.json")
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from e2ep.errors import ConfigError, E2EPError
from e2ep.llm.accounting import UsageLedger
from e2ep.llm.budget import active_cap
from e2ep.llm.config import MODEL_ENV, LLMConfig, import_litellm, is_retryable, retry_after_s
from e2ep.secrets import require_secret, resolve_secret

T = TypeVar("T")
Messages = list[dict[str, Any]]
Prompt = str | Messages
log = logging.getLogger("e2ep.llm")

CACHE_VERSION = 1
REPAIR_PROMPT = "Your answer was invalid because: {error}\nAnswer again, following the requested format exactly."
LOCAL_PROVIDERS = {"ollama", "ollama_chat", "lm_studio", "hosted_vllm", "llamafile"}
LOCK_STRIPES = 4096  # lock files under <cache>/locks/: a fixed number, whatever the number of keys
PLACEHOLDER_KEY = "sk-no-key-needed"  # openai-compatible local servers ignore the key but the client wants one


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


def cache_key(model: str, messages: Messages, params: dict[str, Any]) -> str:
    """What determines the answer, and nothing else: no api key, no api_base, no timeouts."""
    payload = {"v": CACHE_VERSION, "model": model, "messages": messages, "params": params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def as_messages(prompt: Prompt) -> Messages:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


class LLMGateway:
    """Thread-safe; share one per process. Several processes may share one cache folder at once: a prompt missing
    from the cache is asked by one of them while the others wait for its answer (see `_key_lock`)."""

    def __init__(self, config: LLMConfig | None = None) -> None:
        self.config = config or LLMConfig()
        model = self.config.resolved_model()
        if not model:
            raise ConfigError(f"no LLM configured: set ${MODEL_ENV} or llm.model (e.g. openai/gpt-4.1-mini)")
        self.model = model
        self.ledger = UsageLedger()
        self._cache: Any = None
        self._cache_lock = threading.Lock()

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
            self._open_cache()
        except OSError as exc:
            raise ConfigError(f"LLM cache folder {self.config.resolved_cache_dir()} is unusable: {exc}") from None

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
        """Answer `prompt` (a string or chat messages) from the cache or the model.

        `validate(text)` returns the parsed value or raises ValueError; an invalid answer gets one repair
        request, and if that is invalid too LLMOutputError is raised. Only validated answers are cached.
        """
        messages = as_messages(prompt)
        gen = {**self.config.generation_params(), **(params or {})}
        key = cache_key(self.model, messages, gen)
        self.ledger.record(stage, requests=1)
        # Check, then lock and check again: hits never touch the lock, and of several processes (or threads)
        # missing the same key at once only the first calls the model; the others find its stored answer.
        cached = self._from_cache(key, stage, validate)
        if cached is not None:
            return cached
        with self._key_lock(key):
            cached = self._from_cache(key, stage, validate)
            if cached is not None:
                return cached
            return self._ask(messages, gen, key, stage, validate)

    def _from_cache(self, key: str, stage: str, validate: Callable[[str], T] | None) -> LLMResult[T] | None:
        hit = self._cache_get(key)
        if hit is None:
            return None
        try:
            value = validate(hit["text"]) if validate else hit["text"]
        except ValueError:
            log.info("cached answer %s fails the current validator; asking again", key[:12])
            return None
        self.ledger.record(stage, cache_hits=1, saved_cost_usd=hit["cost_usd"])
        usage = hit["usage"]
        return LLMResult(hit["text"], value, True, key, usage["prompt_tokens"], usage["completion_tokens"],
                         hit["cost_usd"], 0, hit.get("repaired", False))  # fmt: skip

    def _ask(self, messages: Messages, gen: dict[str, Any], key: str, stage: str,
             validate: Callable[[str], T] | None) -> LLMResult[T]:
        """Call the model (one repair request if the answer is invalid) and store the validated answer."""
        answer = self._call(messages, gen, stage)
        repaired = False
        try:
            value = validate(answer.text) if validate else answer.text
        except ValueError as first:
            repaired = True
            self.ledger.record(stage, repairs=1)
            repair = [*messages, {"role": "assistant", "content": answer.text},
                      {"role": "user", "content": REPAIR_PROMPT.format(error=first)}]  # fmt: skip
            second = self._call(repair, gen, stage)
            answer = _Answer(second.text, answer.prompt_tokens + second.prompt_tokens,
                             answer.completion_tokens + second.completion_tokens,
                             answer.cost_usd + second.cost_usd, answer.retries + second.retries)  # fmt: skip
            try:
                value = validate(answer.text)  # type: ignore[misc]  # only reached with a validator
            except ValueError as again:
                self.ledger.record(stage, failures=1)
                raise LLMOutputError(
                    f"LLM answer for stage {stage!r} invalid after one repair request: {again}"
                ) from again
        self._cache_set(key, answer, repaired)
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
        raised (answers already received stay cached), unless `return_exceptions` puts errors in the list.
        """
        keys = [self.key_for(p, params) for p in prompts]
        first_index: dict[str, int] = {}
        for i, key in enumerate(keys):
            first_index.setdefault(key, i)
        unique = list(first_index.values())
        workers = max(1, min(self.config.concurrency, len(unique)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="e2ep-llm") as pool:
            futures = {pool.submit(self.complete, prompts[i], stage, validate, params): i for i in unique}
            self._await(futures, stage, stop_on_error=not return_exceptions)
            failed = [(i, f.exception()) for f, i in futures.items() if f.done() and f.exception() is not None]
            bugs = [exc for _, exc in failed if not isinstance(exc, LLMError)]
            if failed and (bugs or not return_exceptions):
                pool.shutdown(wait=True, cancel_futures=True)
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

    @staticmethod
    def _await(futures: dict[Any, int], stage: str, stop_on_error: bool) -> None:
        """Wait for the calls, logging progress every ~10 %; with `stop_on_error`, stop at the first failure."""
        step = max(1, len(futures) // 10)
        for done, future in enumerate(as_completed(futures), start=1):
            if done % step == 0 or done == len(futures):
                log.info("%s: %d/%d answers", stage, done, len(futures))
            if stop_on_error and future.exception() is not None:
                return

    # -- accounting ----------------------------------------------------------------------------------------
    def usage_summary(self) -> dict[str, Any]:
        """Per-stage and total counters (JSON-able; never any secret)."""
        return self.ledger.summary(self.model)

    def write_usage(self, path: str | Path) -> Path:
        return self.ledger.write(path, self.model)

    def close(self) -> None:
        with self._cache_lock:
            if self._cache is not None:
                self._cache.close()
                self._cache = None

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

    def _call(self, messages: Messages, gen: dict[str, Any], stage: str) -> _Answer:
        ll, cfg = import_litellm(), self.config
        extra = {k: v for k, v in {"api_base": cfg.api_base, "api_key": self._api_key()}.items() if v}
        cap = active_cap()
        for attempt in range(cfg.max_retries + 1):
            if cap is not None:
                cap.before_call()  # BudgetExceeded: no request leaves once the run's cap is reached
            self.ledger.record(stage, calls=1)
            started = time.monotonic()
            try:
                response = ll.completion(model=self.model, messages=messages, timeout=cfg.timeout_s,
                                         num_retries=0, max_retries=0, drop_params=True, **extra, **gen)  # fmt: skip
            except Exception as exc:
                if not is_retryable(exc) or attempt == cfg.max_retries:
                    self.ledger.record(stage, failures=1)
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise LLMCallError(f"LLM call to {self.model} failed{tries}: {type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from exc  # fmt: skip
                self.ledger.record(stage, retries=1)
                delay = cfg.backoff_s(attempt, retry_after_s(exc))
                log.info("LLM %s (%s); retry %d in %.2fs", type(exc).__name__, stage, attempt + 1, delay)
                time.sleep(delay)
                continue
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

    def _open_cache(self) -> Any:
        with self._cache_lock:
            if self._cache is None:
                import diskcache

                folder = self.config.resolved_cache_dir()
                folder.mkdir(parents=True, exist_ok=True)
                # No eviction: a bought answer is only dropped by deleting the folder.
                self._cache = diskcache.Cache(str(folder), eviction_policy="none", size_limit=2**40)
            return self._cache

    @contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        """Cross-process lock for `key`: one of LOCK_STRIPES files chosen by the key's prefix (two keys sharing a
        stripe merely take turns). An OS file lock (flock), so a holder that crashes or is killed releases it with
        its process and nobody waits for a dead run. A live holder stuck past the longest a call can take (every
        attempt timing out) is given up on, at the price of a possible duplicate call."""
        if not self.config.cache:
            yield
            return
        from filelock import FileLock, Timeout

        cfg = self.config
        patience = (cfg.timeout_s + max(cfg.backoff_max_s, cfg.retry_after_max_s)) * (cfg.max_retries + 1) * 2
        path = cfg.resolved_cache_dir() / "locks" / f"{int(key[:8], 16) % LOCK_STRIPES:04d}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=patience)
        try:
            lock.acquire()
        except Timeout:
            log.warning("LLM cache lock %s held for over %.0f s; calling without it", path.name, patience)
            yield
            return
        try:
            yield
        finally:
            lock.release()

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        if not self.config.cache:
            return None
        entry = self._open_cache().get(key)
        return entry if isinstance(entry, dict) and "text" in entry else None

    def _cache_set(self, key: str, answer: _Answer, repaired: bool) -> None:
        if self.config.cache:
            usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens}
            entry = {"text": answer.text, "usage": usage, "cost_usd": answer.cost_usd, "model": self.model,
                     "repaired": repaired}  # fmt: skip
            self._open_cache().set(key, entry)
