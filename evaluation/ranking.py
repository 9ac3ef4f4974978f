"""What both protocols share: the per-user and catalog result frames, list normalisation, relevance flags on
dense (users x k) matrices and the ideal DCG. Each protocol (metrics.py: `full`; paper_protocol.py: `paper`)
builds on these, so neither imports the other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

PER_USER_SCHEMA = {"user_idx": pl.Int64, "metric": pl.String, "k": pl.Int64, "value": pl.Float64}
CATALOG_SCHEMA = {"metric": pl.String, "k": pl.Int64, "value": pl.Float64}


@dataclass(frozen=True)
class EvaluationResult:
    """Per-user metric values (long format) plus catalog-level metrics of one recommendation list set.

    `per_user`: `user_idx, metric, k, value`; a (user, metric, k) row is absent when the protocol skips that
    user for that metric. `catalog`: `metric, k, value` (item coverage). `metrics`/`k` list what was computed,
    so `summary()` can report 0.0 for a metric no user qualified for.
    """

    per_user: pl.DataFrame
    catalog: pl.DataFrame
    n_users_evaluated: int
    protocol: str = "full"
    metrics: tuple[str, ...] = field(default=())
    k: tuple[int, ...] = field(default=())

    def summary(self) -> pl.DataFrame:
        """Mean over included users per (metric, k) with `n_users`; 0.0 with n_users 0 when nobody qualified."""
        grid = pl.DataFrame(
            {"metric": [m for m in self.metrics for _ in self.k], "k": [k for _ in self.metrics for k in self.k]},
            schema={"metric": pl.String, "k": pl.Int64},
        )
        means = self.per_user.group_by("metric", "k").agg(value=pl.col("value").mean(), n_users=pl.len().cast(pl.Int64))
        out = grid.join(means, on=["metric", "k"], how="left").with_columns(
            pl.col("value").fill_null(0.0), pl.col("n_users").fill_null(0)
        )
        cat = self.catalog.with_columns(n_users=pl.lit(None, pl.Int64))
        return pl.concat([out, cat.select(out.columns)])


def check_k(k: Sequence[int]) -> list[int]:
    """Sorted distinct cut-offs; each must be a positive int."""
    ks = list(k) if not isinstance(k, int) else [k]
    if not ks or any(isinstance(x, bool) or int(x) != x or x <= 0 for x in ks):
        raise ValueError(f"k must be a non-empty list of positive integers, got {k!r}")
    return sorted({int(x) for x in ks})


def require_columns(df: pl.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; has {df.columns}")


def normalize_recs(recs: pl.DataFrame, max_k: int) -> pl.DataFrame:
    """`user_idx, item_idx, pos` with pos = 1..n per user in rank order, duplicates dropped, pos ≤ max_k."""
    require_columns(recs, ("user_idx", "item_idx", "rank"), "recs")
    r = recs.select(pl.col("user_idx").cast(pl.Int64), pl.col("item_idx").cast(pl.Int64), pl.col("rank"))
    r = r.sort("user_idx", "rank", maintain_order=True).unique(
        ["user_idx", "item_idx"], keep="first", maintain_order=True
    )
    r = r.with_columns(pos=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("user_idx"))
    return r.filter(pl.col("pos") <= max_k).drop("rank")


def dense_flags(
    users: np.ndarray, rows: pl.DataFrame, flag: str | None, width: int, dtype: npt.DTypeLike = bool
) -> np.ndarray:
    """(len(users) × width) matrix with rows' `flag` (or True) at [user row, pos-1]; rows' users ⊂ users."""
    out = np.zeros((len(users), width), dtype=dtype)
    if rows.height:
        r = np.searchsorted(users, rows["user_idx"].to_numpy())
        c = rows["pos"].to_numpy() - 1
        out[r, c] = True if flag is None else rows[flag].to_numpy()
    return out


def ideal_dcg(max_k: int) -> np.ndarray:
    """idcg[n] = Σ_{i=1}^{n} 1/log2(i+1), idcg[0] = 0."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, max_k + 2)))])


def long_frame(users: np.ndarray, parts: list[tuple[str, int, np.ndarray, np.ndarray]]) -> pl.DataFrame:
    """Stack (metric, k, values, include-mask) blocks into the long per-user frame."""
    if not parts:
        return pl.DataFrame(schema=PER_USER_SCHEMA)
    u = np.concatenate([users[m] for _, _, _, m in parts])
    v = np.concatenate([vals[m] for _, _, vals, m in parts]).astype(np.float64)
    metric = np.concatenate([np.full(int(m.sum()), name, dtype=object) for name, _, _, m in parts])
    kk = np.concatenate([np.full(int(m.sum()), k, dtype=np.int64) for _, k, _, m in parts])
    return pl.DataFrame(
        {"user_idx": u.astype(np.int64), "metric": metric.astype(str), "k": kk, "value": v}, schema=PER_USER_SCHEMA
    )
