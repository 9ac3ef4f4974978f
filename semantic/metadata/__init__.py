"""Item metadata (overview, keywords, director, cast) from TMDB, a local file or MovieLens alone.

Importing from here is the public API: `enrich_items(dataset.items, MetadataConfig(...))`.
"""

from semantic.metadata.config import MetadataConfig, MetadataSource, TMDBConfig
from semantic.metadata.enrich import OUTPUT_SCHEMA, EnrichmentReport, EnrichmentResult, enrich_items
from semantic.metadata.local import parse_list, read_local_metadata
from semantic.metadata.titles import SearchTitle, clean_title
from semantic.metadata.tmdb import Credentials, MovieDetails, TMDBClient

__all__ = [
    "OUTPUT_SCHEMA",
    "Credentials",
    "EnrichmentReport",
    "EnrichmentResult",
    "MetadataConfig",
    "MetadataSource",
    "MovieDetails",
    "SearchTitle",
    "TMDBClient",
    "TMDBConfig",
    "clean_title",
    "enrich_items",
    "parse_list",
    "read_local_metadata",
]
