"""The gateway's disk memo: every answer bought and every unit's failure, keyed by `cache_key`, shared safely by
concurrent processes (diskcache, plus a per-key OS file lock around each miss)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from e2ep.llm.config import LLMConfig

log = logging.getLogger("e2ep.llm")
LOCK_STRIPES = 4096  # lock files under <cache>/locks/: a fixed number, whatever the number of keys


class AnswerMemo:
    """Entries are `{"text", "usage", "cost_usd", "model"[, "repaired"]}` (an answer as bought, valid or not) or
    `{"failure", "model"}` (a unit whose call failed). With `config.cache` off, nothing is read or written."""

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self._cache: Any = None
        self._lock = threading.Lock()

    def open(self) -> Any:
        with self._lock:
            if self._cache is None:
                import diskcache

                folder = self.config.resolved_cache_dir()
                folder.mkdir(parents=True, exist_ok=True)
                # No eviction: a bought answer is only dropped by deleting the folder.
                self._cache = diskcache.Cache(str(folder), eviction_policy="none", size_limit=2**40)
            return self._cache

    def close(self) -> None:
        with self._lock:
            if self._cache is not None:
                self._cache.close()
                self._cache = None

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
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

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.config.cache:
            return None
        entry = self.open().get(key)
        return entry if isinstance(entry, dict) and ("text" in entry or "failure" in entry) else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        if self.config.cache:
            self.open().set(key, entry)

    def forget_failures(self, keys: list[str]) -> None:
        """Drop memoised call failures (not answers) of `keys`."""
        if not self.config.cache:
            return
        cache = self.open()
        for key in keys:
            entry = cache.get(key)
            if isinstance(entry, dict) and "failure" in entry:
                cache.delete(key)
