"""The two tables every loader returns, whatever the source format.

Interactions: ``user`` (str), ``item`` (str), ``ts`` (int64; seconds, or the position in the
file when the source has no time), optional ``event`` (str). User and item ids are opaque
strings, exactly as the source holds them (never stripped, parsed or cast). Rows are sorted by
(user, ts) with file order kept for ties.
Items: ``item`` (str), ``title`` (str), ``text`` (str), ``attributes`` (list[str]).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from liverec.errors import DataError

INTERACTION_SCHEMA = {"user": pl.Utf8, "item": pl.Utf8, "ts": pl.Int64}
ITEM_SCHEMA = {"item": pl.Utf8, "title": pl.Utf8, "text": pl.Utf8, "attributes": pl.List(pl.Utf8)}


@dataclass(frozen=True)
class Dataset:
    """Interactions plus the item catalogue, as loaded from one source.

    ``order`` says where the event order comes from: ``"time"`` (a time column),
    ``"sequence"`` (the format lists each user's events in order, e.g. S3-Rec files) or
    ``"file"`` (no time column was found, so the file position is used: a fallback).
    """

    name: str
    interactions: pl.DataFrame
    items: pl.DataFrame
    order: str = "time"

    def __post_init__(self) -> None:
        for col, dtype in INTERACTION_SCHEMA.items():
            if col not in self.interactions.columns:
                raise DataError(f"{self.name}: interactions lack column {col!r}")
            if self.interactions.schema[col] != dtype:
                raise DataError(
                    f"{self.name}: interactions column {col!r} is "
                    f"{self.interactions.schema[col]}, expected {dtype}"
                )
        for col in ITEM_SCHEMA:
            if col not in self.items.columns:
                raise DataError(f"{self.name}: items lack column {col!r}")
        if self.interactions.height == 0:
            raise DataError(f"{self.name}: no interactions")

    @property
    def n_users(self) -> int:
        return self.interactions["user"].n_unique()

    @property
    def n_items(self) -> int:
        return self.interactions["item"].n_unique()


def empty_items(item_ids: pl.Series) -> pl.DataFrame:
    """An Items table with ids only (for sources without a catalogue)."""
    ids = item_ids.unique(maintain_order=True).cast(pl.Utf8)
    return pl.DataFrame(
        {
            "item": ids,
            "title": pl.Series([""] * len(ids), dtype=pl.Utf8),
            "text": pl.Series([""] * len(ids), dtype=pl.Utf8),
            "attributes": pl.Series([[] for _ in range(len(ids))], dtype=pl.List(pl.Utf8)),
        }
    )


def sort_interactions(df: pl.DataFrame) -> pl.DataFrame:
    """Sort by user then time, keeping source order for equal times (stable)."""
    return df.sort(["user", "ts"], maintain_order=True)
