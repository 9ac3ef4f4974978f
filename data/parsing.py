"""Fast, strict reading of delimited rating and metadata files.

The happy path is one vectorised polars read. Only when polars fails or a value is missing or non-numeric do we
re-read the text line by line, purely to tell the user which file and 1-based line is wrong.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import polars as pl

from data.files import read_bytes
from e2ep.errors import DataError

if TYPE_CHECKING:
    import _csv

Kind = Literal["int", "float"]
_POLARS_KIND = {"int": pl.Int64, "float": pl.Float64}
# Polars splits on one byte only; multi-character separators such as ML-1M's `::` are rewritten to this
# control character, which never occurs in MovieLens text.
_STAND_IN = "\x1f"
_YEAR_IN_PARENS = r"\((\d{4})\)"
_ROW = "__row"
_log = logging.getLogger(__name__)


class RawTables(NamedTuple):
    """One dataset as read from disk, keyed by original ids (`user_id`, `item_id`), before index assignment.

    ratings: user_id, item_id, rating (Float64), timestamp (Int64, nullable).
    users / items: `user_id` / `item_id` plus whatever metadata the files hold (None when there is no such file).
    """

    ratings: pl.DataFrame
    users: pl.DataFrame | None
    items: pl.DataFrame | None


@dataclass(frozen=True)
class TextSource:
    """A delimited text file held in memory as UTF-8, plus what is needed to name its lines in errors."""

    label: str
    data: bytes
    separator: str
    separator_name: str
    quoted: bool
    header: bool

    @classmethod
    def open(cls, path: Path, **options: Any) -> TextSource:
        """The file at `path`, labelled by its name; `options` as for :meth:`from_bytes`."""
        return cls.from_bytes(path.name, read_bytes(path), **options)

    @classmethod
    def from_bytes(
        cls,
        label: str,
        raw: bytes,
        *,
        separator: str,
        separator_name: str,
        encoding: str = "utf-8",
        quoted: bool = False,
        header: bool = False,
    ) -> TextSource:
        if encoding != "utf-8" or len(separator) > 1:
            text = raw.decode(encoding)
            raw = text.replace(separator, _STAND_IN).encode() if len(separator) > 1 else text.encode()
            separator = _STAND_IN if len(separator) > 1 else separator
        return cls(label, raw, separator, separator_name, quoted, header)

    def header_names(self) -> list[str]:
        """Column names from the first line (header files only)."""
        first = self.data.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
        return [name.strip() for name in next(self._reader(first), [])]

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(1-based line number, fields) of each non-blank data line: the slow path, used only to locate errors."""
        reader = self._reader(self.data.decode("utf-8-sig", errors="replace"))
        previous_line = 0
        for index, fields in enumerate(reader):
            line, previous_line = previous_line + 1, reader.line_num
            if (index == 0 and self.header) or not any(f.strip() for f in fields):
                continue
            yield line, fields

    def line_of_row(self, row: int) -> int:
        """The file line holding the `row`-th (0-based) data row, blank lines skipped as the fast path does."""
        for index, (line, _) in enumerate(self.rows()):
            if index == row:
                return line
        raise IndexError(row)

    def _reader(self, text: str) -> _csv.Reader:
        quoting = csv.QUOTE_MINIMAL if self.quoted else csv.QUOTE_NONE
        return csv.reader(io.StringIO(text, newline=""), delimiter=self.separator, quoting=quoting)


def read_table(
    src: TextSource,
    names: Sequence[str] | None,
    required: Sequence[str],
    kinds: Mapping[str, Kind],
) -> pl.DataFrame:
    """Read `src` into a frame of stripped strings, with the `kinds` columns cast to Int64 / Float64.

    `names` gives the columns of a header-less file; None reads them from the header. Raises DataError naming the
    first malformed line when a `required` value is missing, a typed value does not parse, or the field count is off.
    """
    try:
        frame = pl.read_csv(
            io.BytesIO(src.data),
            has_header=src.header,
            separator=src.separator,
            quote_char='"' if src.quoted else None,
            schema=None if names is None else dict.fromkeys(names, pl.String),
            infer_schema=False,
        )
    except pl.exceptions.PolarsError as exc:
        raise _malformed(src, names, required, kinds, reason=str(exc).splitlines()[0]) from None
    frame = frame.filter(~pl.all_horizontal(pl.all().is_null())).with_columns(pl.all().str.strip_chars())
    problems = [pl.col(c).is_null() | (pl.col(c) == "") for c in required]
    for column, kind in kinds.items():
        cast = pl.col(column).cast(_POLARS_KIND[kind], strict=False)
        problems.append(pl.col(column).is_not_null() & (pl.col(column) != "") & cast.is_null())
        if kind == "float":
            problems.append(~cast.is_finite())
    bad = frame.select(pl.any_horizontal(problems).arg_true().first()).item()
    if bad is not None:
        raise _malformed(src, frame.columns, required, kinds, reason=f"bad value in data row {bad + 1}")
    return frame.with_columns(pl.col(c).cast(_POLARS_KIND[k], strict=False) for c, k in kinds.items())


def _malformed(
    src: TextSource, names: Sequence[str] | None, required: Sequence[str], kinds: Mapping[str, Kind], reason: str
) -> DataError:
    """The DataError for a file the fast path rejected, pointing at the first bad line when one can be found."""
    columns = list(names) if names is not None else src.header_names()
    for line, fields in src.rows():
        problem = _line_problem(fields, columns, required, kinds, src.separator_name)
        if problem:
            return DataError(f"{src.label} line {line}: {problem}")
    return DataError(f"{src.label}: malformed ({reason})")


def _line_problem(
    fields: list[str], columns: list[str], required: Sequence[str], kinds: Mapping[str, Kind], separator_name: str
) -> str | None:
    if len(fields) != len(columns):
        return f"expected {len(columns)} {separator_name}-separated fields, got {len(fields)}"
    values = dict(zip(columns, (f.strip() for f in fields), strict=True))
    for column in required:
        if not values[column]:
            return f"missing {column}"
    for column, kind in kinds.items():
        if values[column] and not _parses(values[column], kind):
            return f"{column} {values[column]!r} is not {'an integer' if kind == 'int' else 'a number'}"
    return None


def _parses(value: str, kind: Kind) -> bool:
    try:
        number = float(value) if kind == "float" else int(value)
    except ValueError:
        return False
    return math.isfinite(number)


def check_rating_scale(ratings: pl.DataFrame, src: TextSource, scale: tuple[float, float]) -> None:
    """Raise DataError at the first rating outside `scale` (inclusive), naming its line.

    `ratings` must still have one row per data line of `src` (check before dropping repeated rows).
    """
    low, high = scale
    bad = ratings.select(((pl.col("rating") < low) | (pl.col("rating") > high)).arg_true().first()).item()
    if bad is not None:
        raise DataError(
            f"{src.label} line {src.line_of_row(bad)}: rating {ratings['rating'][bad]:g} is outside "
            f"the rating scale {low:g}-{high:g} (--rating-scale LOW,HIGH if the data uses another)"
        )


def check_unique(frame: pl.DataFrame, keys: Sequence[str], src: TextSource, what: str) -> None:
    """Raise DataError at the first row whose `keys` repeat an earlier row's with different other values.

    Exact repeats of a whole row are tolerated here (see :func:`drop_repeated_rows`); a second, different rating for
    the same pair is not, because keeping either one silently would hide bad data.
    """
    candidates = _rows_sharing(frame, keys)
    conflicts = candidates.filter(
        ~pl.struct(keys).is_first_distinct() & pl.struct(pl.exclude(_ROW)).is_first_distinct()
    )
    if conflicts.is_empty():
        return
    key = conflicts.select(keys).row(0, named=True)
    original = candidates.filter(pl.all_horizontal(pl.col(k) == v for k, v in key.items()))[_ROW][0]
    shown = ", ".join(f"{k} {v}" for k, v in key.items())
    raise DataError(
        f"{src.label} line {src.line_of_row(conflicts[_ROW][0])}: duplicate {what} for {shown} "
        f"(first on line {src.line_of_row(original)}); each must appear once"
    )


def drop_repeated_rows(frame: pl.DataFrame, src: TextSource) -> pl.DataFrame:
    """Drop rows identical to an earlier one, with a warning.

    They carry no conflicting information, and real files have them: the seed paper's own ML-1M training split
    repeats 4 of its 800,168 lines.
    """
    candidates = _rows_sharing(frame, frame.columns)
    repeats = candidates.filter(~pl.struct(pl.exclude(_ROW)).is_first_distinct())[_ROW]
    if repeats.is_empty():
        return frame
    _log.warning(
        "%s: ignoring %d line(s) that repeat an earlier line exactly (first at line %d)",
        src.label, len(repeats), src.line_of_row(repeats[0]),
    )  # fmt: skip
    return frame.with_row_index(_ROW).filter(~pl.col(_ROW).is_in(repeats.implode())).drop(_ROW)


def _rows_sharing(frame: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Rows (with their 0-based `_ROW` number) whose `keys` occur more than once: one cheap hash pass, and the
    usually empty result keeps the order-sensitive checks above off the full frame."""
    return frame.with_row_index(_ROW).filter(frame.select(keys).is_duplicated())


def integer_ids_if_possible(*columns: pl.Series) -> list[pl.Series]:
    """Cast id columns to Int64 when every value in all of them is an integer, else to String, so they join."""
    cast = [c.cast(pl.Int64, strict=False) for c in columns]
    if all(c.null_count() == s.null_count() for c, s in zip(cast, columns, strict=True)):
        return cast
    return [c.cast(pl.String) for c in columns]


def year_from_title(title: pl.Expr) -> pl.Expr:
    """The last `(YYYY)` in a MovieLens-style title ("Heat (1995)", "Land Before Time III (1995) (V)")."""
    return title.str.extract_all(_YEAR_IN_PARENS).list.last().str.slice(1, 4).cast(pl.Int32)
