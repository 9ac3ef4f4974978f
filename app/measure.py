"""Wall time and peak resident memory of one benchmark stage (Linux `/proc`, sampled every 5 ms), so torch's and
polars' native allocations, which Python's tracemalloc cannot see, are counted."""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:  # not Linux: fall back to the lifetime peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class StageMeasure:
    dataset: str
    stage: str
    seconds: float = 0.0
    peak_mib: float = 0.0
    note: str = ""
    started: float = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@contextmanager
def measure(dataset: str, stage: str, rows: list[StageMeasure]) -> Iterator[StageMeasure]:
    row = StageMeasure(dataset, stage)
    peak = [_rss_bytes()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], _rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = row.started = time.perf_counter()
    try:
        yield row
    finally:
        row.seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        row.peak_mib = max(peak[0], _rss_bytes()) / 2**20
        rows.append(row)
        print(f"  {dataset:12s} {stage:28s} {row.seconds:8.2f} s  {row.peak_mib:8.0f} MiB  {row.note}", flush=True)
