"""The data stage's settings: which ratings, how they are split into folds, and which ratings count as
positives and explicit negatives."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from e2ep.configbase import Strict as _Strict

DatasetName = Literal["ml-100k", "ml-1m", "csv"]

OFFICIAL_ML100K_FOLDS = 5
_DECLARED_SCALES = {"ml-100k": (1.0, 5.0), "ml-1m": (1.0, 5.0), "csv": (0.5, 5.0)}
_SEPARATOR_NAMES = {
    "comma": ",",
    ",": ",",
    "tab": "\t",
    "\\t": "\t",
    "\t": "\t",
    "::": "::",
    "pipe": "|",
    "|": "|",
    "semicolon": ";",
    ";": ";",
}


class DatasetConfig(_Strict):
    name: DatasetName = "ml-100k"
    """`ml-100k`, `ml-1m` (official GroupLens archives) or `csv` (any ratings file)."""

    data_dir: str | None = None
    """Folder holding extracted `ml-100k/` or `ml-1m/`; used with no network. Defaults to `$E2EP_DATA_DIR`."""

    cache_dir: str | None = None
    """Where downloaded archives are extracted. Defaults to `$E2EP_CACHE_DIR` or `~/.cache/e2ep`."""

    ratings_path: str | None = None
    """`csv` only: ratings file whose header names user, item, rating [and timestamp] columns (`userId,movieId,
    rating`, `user_id,item_id,rating`, ...; matched case-insensitively; .gz ok)."""

    items_path: str | None = None
    """`csv` only, optional: items file with an item id column (`movieId`, `item_id`, ...) and any metadata
    columns (`title`, `genres`, `year`; a year in the title, "Heat (1995)", is read as the year)."""

    separator: str | None = None
    """`csv` only: the files' separator (`,` `\\t` `::` `|` `;`, or comma, tab, pipe, semicolon). None: sniffed from
    the header line."""

    rating_scale: tuple[float, float] | None = None
    """Lowest and highest valid rating; a rating outside is an error naming its line. None: the dataset's declared
    scale (MovieLens archives 1-5, `csv` 0.5-5, MovieLens' half-star scale)."""

    @field_validator("separator")
    @classmethod
    def _known_separator(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = _SEPARATOR_NAMES.get(v.lower(), v)
        if v not in _SEPARATOR_NAMES.values():
            raise ValueError(f"separator must be one of , tab :: | ; (or comma, tab, pipe, semicolon), got {v!r}")
        return v

    @field_validator("rating_scale")
    @classmethod
    def _ordered_scale(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"rating_scale must be [lowest, highest] with lowest < highest, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _csv_needs_ratings(self) -> DatasetConfig:
        if self.name == "csv" and not self.ratings_path:
            raise ValueError("dataset 'csv' needs ratings_path (a file with user, item and rating columns)")
        return self

    def scale(self) -> tuple[float, float]:
        """The valid rating range: `rating_scale`, else the dataset's declared one."""
        return self.rating_scale or _DECLARED_SCALES[self.name]


class SplitConfig(_Strict):
    n_folds: Annotated[int, Field(ge=2, le=20)] = 5
    """Number of cross-validation folds; each fold holds out 1/n_folds of the ratings as test."""

    folds: list[int] | None = None
    """Run only these fold numbers (1-based), e.g. `[1]` for the paper's single u1 fold. None: all folds."""

    official: bool = True
    """ML-100K only: use GroupLens' u1-u5 files (as the paper did) instead of seeded random folds."""

    seed: int = 42
    """Seed for random folds and validation slices."""

    validation_fraction: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.1
    """Share of each user's training ratings held out for early stopping and model selection."""

    min_user_ratings_for_validation: Annotated[int, Field(ge=2)] = 5
    """Users with fewer training ratings keep them all for training (no validation slice)."""

    @field_validator("folds")
    @classmethod
    def _folds_positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(f < 1 for f in v)):
            raise ValueError("folds must be a non-empty list of 1-based fold numbers")
        return v

    @model_validator(mode="after")
    def _folds_exist(self) -> SplitConfig:
        if self.folds and (missing := sorted({f for f in self.folds if f > self.n_folds})):
            raise ValueError(
                f"fold(s) {', '.join(map(str, missing))} do not exist: there are {self.n_folds} (split.n_folds)"
            )
        return self


class RelevanceConfig(_Strict):
    positive_threshold: float = 4.0
    """Ratings at or above this are positives (training edges, relevant test items)."""

    negative_threshold: float = 2.0
    """Ratings at or below this are explicit negatives; ratings in between are neutral."""

    @model_validator(mode="after")
    def _ordered(self) -> RelevanceConfig:
        if self.negative_threshold >= self.positive_threshold:
            raise ValueError("negative_threshold must be below positive_threshold")
        return self
