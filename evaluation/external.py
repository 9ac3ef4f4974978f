"""Score recommendation files produced elsewhere (e.g. the seed authors' code) with our protocols.

Accepted inputs (optionally gzip-compressed, `.gz`):
* test / train ratings: MovieLens style without header — `user item rating [timestamp]` separated by tabs or
  spaces (`u.data`) or `::` (`ratings.dat`) — or CSV with header `user_id,item_id,rating` (`movie_id` accepted).
* recommendations: CSV with header `user_id`, `item_id` (or `movie_id`), `rank` (or `recommendation_rank`).

Raw ids are arbitrary strings, mapped onto ints jointly across all files. Nothing is dropped silently: recs for
users absent from the test set, recs of items never seen in test or train, repeated (user, item) pairs and (for
`full`) recs of items the user rated in train are counted and reported. Under `full` without `n_items` the
catalog is the distinct items of train ∪ test ∪ recs (a lower bound of the true catalog, so coverage is an upper
bound). Malformed input raises `DataError` naming the file and, where known, the line.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from data.files import read_bytes
from e2ep.errors import ConfigError, DataError
from evaluation.metrics import check_k, cold_start_users, evaluate

RATING_ALIASES = {"user_id": "user", "item_id": "item", "movie_id": "item", "rating": "value"}
RECS_ALIASES = {
    "user_id": "user",
    "item_id": "item",
    "movie_id": "item",
    "rank": "value",
    "recommendation_rank": "value",
}


@dataclass
class ExternalReport:
    """Everything `evaluate_files` found: input counts, warnings and per-segment metric means."""

    protocol: str
    k: list[int]
    relevance_threshold: float
    catalog_size: int | None
    catalog_source: str
    counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "k": list(self.k),
            "relevance_threshold": self.relevance_threshold,
            "catalog_size": self.catalog_size,
            "catalog_source": self.catalog_source,
            "counts": dict(self.counts),
            "warnings": list(self.warnings),
            "segments": self.segments,
        }

    def to_markdown(self) -> str:
        out = [
            f"## External evaluation, protocol `{self.protocol}` (relevant: rating ≥ {self.relevance_threshold:g})",
            "",
        ]
        if self.catalog_size is not None:
            out += [f"Catalog: {self.catalog_size} items ({self.catalog_source}).", ""]
        out += ["| input | count |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in self.counts.items()] + [""]
        out += [f"- warning: {w}" for w in self.warnings] + ([""] if self.warnings else [])
        for name, seg in self.segments.items():
            out += [
                f"### {name} ({seg['n_users_evaluated']} users evaluated)",
                "",
                "| metric | " + " | ".join(f"@{k}" for k in self.k) + " |",
                "|---|" + "---:|" * len(self.k),
            ]
            for metric, by_k in seg["metrics"].items():
                cells = [
                    f"{by_k[str(k)]['value']:.4f}"
                    + (f" (n={by_k[str(k)]['n_users']})" if by_k[str(k)]["n_users"] is not None else "")
                    for k in self.k
                ]
                out.append(f"| {metric} | " + " | ".join(cells) + " |")
            out.append("")
        return "\n".join(out)


def _read_text(path: Path) -> str:
    """The file as text; unreadable and corrupt-gzip files are reported by the data layer's reader."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: cannot read ({e})") from None


def read_table(path: str | Path, kind: Literal["ratings", "recs"]) -> pl.DataFrame:
    """String columns `user`, `item`, float `value` (rating or rank), int `line` (1-based line in the file)."""
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), None)
    if first is None:
        raise DataError(f"{path}: file is empty")
    aliases = RATING_ALIASES if kind == "ratings" else RECS_ALIASES
    header = [c.strip().strip('"').lower() for c in first.split(",")]
    if "user_id" in header:
        df = _read_csv(path, text, aliases)
    elif kind == "recs":
        raise DataError(
            f"{path}: recommendations need a CSV header with user_id, item_id (or movie_id), rank "
            f"(or recommendation_rank); first line is {first[:60]!r}"
        )
    else:
        df = _read_plain(path, lines, first)
    what = "rating" if kind == "ratings" else "rank"
    df = df.with_columns(
        pl.col("user").str.strip_chars(),
        pl.col("item").str.strip_chars(),
        num=pl.col("value").str.strip_chars().cast(pl.Float64, strict=False),
    )
    bad = df.filter(pl.col("num").is_null() | pl.col("num").is_nan() | (pl.col("user") == "") | (pl.col("item") == ""))
    if kind == "recs":
        bad = pl.concat([bad, df.filter((pl.col("num") < 1) | (pl.col("num") != pl.col("num").floor()))])
    if bad.height:
        row = bad.sort("line").row(0, named=True)
        raise DataError(
            f"{path}: line {row['line']}: expected user, item and a numeric {what}"
            f"{' (integer ≥ 1)' if kind == 'recs' else ''}, got user={row['user']!r} "
            f"item={row['item']!r} {what}={row['value']!r}"
        )
    if not df.height:
        raise DataError(f"{path}: no data rows")
    return df.select("user", "item", pl.col("num").alias("value"), "line")


def _read_csv(path: Path, text: str, aliases: dict[str, str]) -> pl.DataFrame:
    try:
        df = pl.read_csv(io.StringIO(text), infer_schema=False, truncate_ragged_lines=False)
    except Exception as e:  # polars raises several types for malformed CSV
        raise DataError(f"{path}: malformed CSV ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    df = df.rename({c: c.strip().lower() for c in df.columns})
    picked = {}
    for col, role in aliases.items():
        if col in df.columns and role not in picked:
            picked[role] = col
    missing = [r for r in ("user", "item", "value") if r not in picked]
    if missing:
        need = [c for c, r in aliases.items() if r in missing]
        raise DataError(f"{path}: missing column(s) {' / '.join(need)}; header has {df.columns}")
    # data row i is line i + 2 when there are no blank or multi-line quoted rows
    return (
        df.select(*(pl.col(c).alias(r) for r, c in picked.items()))
        .with_row_index("line", offset=2)
        .with_columns(pl.col("line").cast(pl.Int64))
    )


def _read_plain(path: Path, lines: list[str], first: str) -> pl.DataFrame:
    s = pl.DataFrame({"text": lines}).with_row_index("line", offset=1).with_columns(pl.col("line").cast(pl.Int64))
    s = s.filter(pl.col("text").str.strip_chars() != "")
    if "::" in first:
        parts = pl.col("text").str.split("::")
    elif "," in first:
        parts = pl.col("text").str.split(",")
    else:
        parts = pl.col("text").str.extract_all(r"\S+")
    s = s.with_columns(parts=parts)
    short = s.filter(pl.col("parts").list.len() < 3)
    if short.height:
        row = short.row(0, named=True)
        raise DataError(f"{path}: line {row['line']}: expected 'user item rating [timestamp]', got {row['text']!r}")
    return s.select(
        user=pl.col("parts").list.get(0),
        item=pl.col("parts").list.get(1),
        value=pl.col("parts").list.get(2),
        line="line",
    )


def evaluate_files(
    test_path: str | Path,
    recs_path: str | Path,
    *,
    train_path: str | Path | None = None,
    protocol: Literal["full", "paper"] = "full",
    k: Sequence[int] = (5, 10, 20),
    relevance_threshold: float = 4.0,
    cold_start_max: int | None = None,
    n_items: int | None = None,
) -> ExternalReport:
    """Evaluate a recommendation file against a test (and optional train) file; see the module docstring."""
    try:
        ks = check_k(k)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if protocol not in ("full", "paper"):
        raise ConfigError(f"protocol must be 'full' or 'paper', got {protocol!r}")
    if cold_start_max is not None and (train_path is None or cold_start_max < 1):
        raise ConfigError("cold_start_max needs a train file and a value ≥ 1")
    if n_items is not None and n_items < 1:
        raise ConfigError(f"n_items must be positive, got {n_items}")
    test_raw = read_table(test_path, "ratings")
    recs_raw = read_table(recs_path, "recs")
    train_raw = read_table(train_path, "ratings") if train_path is not None else None
    frames = [f for f in (test_raw, recs_raw, train_raw) if f is not None]
    users = _id_map(pl.concat([f["user"] for f in frames]))
    items = _id_map(pl.concat([f["item"] for f in frames]))

    def encode(df: pl.DataFrame, value: str) -> pl.DataFrame:
        return (
            df.join(users, left_on="user", right_on="raw")
            .rename({"idx": "user_idx"})
            .join(items, left_on="item", right_on="raw")
            .rename({"idx": "item_idx"})
            .select("user_idx", "item_idx", pl.col("value").alias(value))
        )

    test = encode(test_raw, "rating")
    recs = encode(recs_raw, "rank").with_columns(pl.col("rank").cast(pl.Int64))
    if not recs["user_idx"].is_in(test["user_idx"].unique().implode()).any():
        raise DataError(
            f"{recs_path}: none of its {recs_raw['user'].n_unique()} users is a user of {test_path} "
            f"(ids are compared as written: e.g. recs {recs_raw['user'][0]!r}, test "
            f"{test_raw['user'][0]!r}); nothing could be evaluated"
        )
    train = encode(train_raw, "rating") if train_raw is not None else None
    counts, warnings = _audit(test, recs, train, relevance_threshold, protocol)
    catalog_size, source = None, "not used by the paper protocol"
    if protocol == "full":
        if n_items is not None:
            catalog_size, source = n_items, "given"
        else:
            known = [test["item_idx"], recs["item_idx"]] + ([train["item_idx"]] if train is not None else [])
            catalog_size, source = pl.concat(known).n_unique(), "distinct items in train ∪ test ∪ recs"
    report = ExternalReport(protocol, ks, relevance_threshold, catalog_size, source, counts, warnings)
    segments: dict[str, pl.Series | None] = {"all": None}
    if cold_start_max is not None:
        assert train is not None  # cold_start_max without a train file was refused above
        segments["cold-start"] = cold_start_users(train, cold_start_max, all_users=test["user_idx"])
    for name, seg_users in segments.items():
        t, r = test, recs
        if seg_users is not None:
            t, r = test.filter(pl.col("user_idx").is_in(seg_users)), recs.filter(pl.col("user_idx").is_in(seg_users))
        res = evaluate(
            r, t, protocol=protocol, k=ks, relevance_threshold=relevance_threshold, train=train, n_items=catalog_size
        )
        metrics: dict[str, dict[str, Any]] = {}
        for row in res.summary().iter_rows(named=True):
            metrics.setdefault(row["metric"], {})[str(row["k"])] = {"value": row["value"], "n_users": row["n_users"]}
        report.segments[name] = {"n_users_evaluated": res.n_users_evaluated, "metrics": metrics}
    return report


def _id_map(raw: pl.Series) -> pl.DataFrame:
    """Raw id string → dense int, numeric ids in numeric order (stable across runs)."""
    u = pl.DataFrame({"raw": raw.unique()}).with_columns(n=pl.col("raw").cast(pl.Float64, strict=False))
    return (
        u.sort("n", "raw", nulls_last=True)
        .with_row_index("idx")
        .with_columns(pl.col("idx").cast(pl.Int64))
        .select("raw", "idx")
    )


def _audit(
    test: pl.DataFrame, recs: pl.DataFrame, train: pl.DataFrame | None, threshold: float, protocol: str
) -> tuple[dict[str, int], list[str]]:
    test_users = test["user_idx"].unique()
    seen_items = pl.concat([test["item_idx"]] + ([train["item_idx"]] if train is not None else [])).unique()
    foreign_users = recs.filter(~pl.col("user_idx").is_in(test_users))
    unseen = recs.filter(~pl.col("item_idx").is_in(seen_items))
    dup = recs.height - recs.select("user_idx", "item_idx").unique().height
    tied = recs.height - recs.select("user_idx", "rank").unique().height
    counts = {
        "test_rows": test.height,
        "test_users": test_users.len(),
        "test_relevant_rows": test.filter(pl.col("rating") >= threshold).height,
        "recs_rows": recs.height,
        "recs_users": recs["user_idx"].n_unique(),
        "recs_rows_users_not_in_test": foreign_users.height,
        "recs_users_not_in_test": foreign_users["user_idx"].n_unique(),
        "recs_rows_items_unseen": unseen.height,
        "recs_items_unseen": unseen["item_idx"].n_unique(),
        "recs_duplicate_pairs": dup,
        "recs_duplicate_ranks": tied,
    }
    warnings: list[str] = []
    if foreign_users.height:
        warnings.append(
            f"{counts['recs_users_not_in_test']} recommended users have no test ratings; they are not "
            "evaluated" + (" (their lists still count for coverage)" if protocol == "full" else "")
        )
    if unseen.height:
        warnings.append(
            f"{counts['recs_items_unseen']} recommended items appear in neither test nor train; they "
            "are kept and can never be hits"
        )
    if dup:
        warnings.append(f"{dup} repeated (user, item) recommendations; each keeps its best rank")
    if tied:
        first = recs.filter(pl.struct("user_idx", "rank").is_duplicated()).sort("user_idx", "rank").row(0, named=True)
        warnings.append(
            f"{tied} recommendations share a rank with another item of the same user (first: rank "
            f"{first['rank']}); tied items keep their order in the file"
        )
    if train is not None:
        counts["train_rows"], counts["train_users"] = train.height, train["user_idx"].n_unique()
        leak = recs.join(train.select("user_idx", "item_idx").unique(), on=["user_idx", "item_idx"]).height
        counts["recs_rows_in_train"] = leak
        if leak and protocol == "full":
            warnings.append(
                f"{leak} recommendations are items the user rated in train; the full protocol assumes "
                "lists exclude them, so they only waste slots"
            )
    return counts, warnings
