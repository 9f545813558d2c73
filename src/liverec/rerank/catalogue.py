"""What re-ranking knows about each item: vectors, category, attributes, flags, popularity.

Everything is indexed like the model's vocabulary: row 0 is padding (never recommended), rows
1..N are the items. Legend: N items, D vector size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from liverec.errors import ConfigError, NonFiniteError

FLAG_COLUMNS = ("flagged", "unsafe", "unavailable")  # bool catalogue columns that hide an item
AVAILABLE_COLUMN = "available"  # bool column where False hides an item (None/missing: shown)


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Per-item facts for re-ranking (row 0 = padding).

    Attributes:
        ids: (N + 1,) external item ids (``ids[0]`` is the padding placeholder).
        vectors: (N + 1, D) float item vectors (model embeddings or text vectors), finite.
        categories: (N + 1,) int64 category code per item; -1 = unknown (a bucket of its own).
        flagged: (N + 1,) bool, the item is unsafe or unavailable: never shown, whatever its score.
        popularity: (N + 1,) float64 interaction counts (training data), >= 0.
        attributes: N + 1 frozensets of attribute strings (``frozenset()`` when unknown).
    """

    ids: np.ndarray
    vectors: np.ndarray
    categories: np.ndarray
    flagged: np.ndarray
    popularity: np.ndarray
    attributes: Sequence[frozenset[str]] = ()
    _attr_index: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _id_index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("vectors", "categories", "flagged", "popularity"):
            if len(getattr(self, name)) != n:
                raise ConfigError(f"catalogue: {name} has {len(getattr(self, name))} rows, "
                                  f"ids have {n}")
        if self.attributes and len(self.attributes) != n:
            raise ConfigError(f"catalogue: attributes has {len(self.attributes)} rows, "
                              f"ids have {n}")
        if not np.isfinite(self.vectors).all():
            raise NonFiniteError("catalogue: item vectors contain NaN or infinite values")
        if not np.isfinite(self.popularity).all() or (self.popularity < 0).any():
            raise ConfigError("catalogue: popularity must be finite and >= 0")
        index: dict[str, list[int]] = {}
        for row, attrs in enumerate(self.attributes):
            for a in attrs:
                index.setdefault(a, []).append(row)
        self._attr_index.update({a: np.asarray(r, dtype=np.int64) for a, r in index.items()})
        self._id_index.update({str(i): row for row, i in enumerate(self.ids) if row > 0})

    @property
    def n_items(self) -> int:
        """N, the number of real items (padding excluded)."""
        return len(self.ids) - 1

    def indices_of(self, ids: Sequence[str]) -> np.ndarray:
        """External ids -> sorted unique indices; ids not in the catalogue are skipped."""
        idx = [self._id_index[i] for i in ids if isinstance(i, str) and i in self._id_index]
        return np.unique(np.asarray(idx, dtype=np.int64))

    def having(self, attrs: Sequence[str]) -> np.ndarray:
        """Sorted unique indices of the items that carry any of ``attrs``."""
        parts = [self._attr_index[a] for a in attrs if a in self._attr_index]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    @classmethod
    def build(cls, ids: Sequence[str], vectors: np.ndarray, *,
              categories: np.ndarray | None = None, flagged: np.ndarray | None = None,
              popularity: np.ndarray | None = None,
              attributes: Sequence[Sequence[str]] | None = None) -> Catalogue:
        """A catalogue from arrays; missing facts default to no category, no flag, popularity 0."""
        n = len(ids)
        return cls(
            ids=np.asarray(ids, dtype=object),
            vectors=np.asarray(vectors, dtype=np.float64),
            categories=(np.full(n, -1, dtype=np.int64) if categories is None
                        else np.asarray(categories, dtype=np.int64)),
            flagged=np.zeros(n, dtype=bool) if flagged is None else np.asarray(flagged, bool),
            popularity=(np.zeros(n) if popularity is None
                        else np.asarray(popularity, dtype=np.float64)),
            attributes=([frozenset(map(str, a)) for a in attributes] if attributes is not None
                        else [frozenset()] * n),
        )


def categories_from_attributes(attributes: Sequence[Sequence[str]]) -> np.ndarray:
    """One category code per item: the item's attribute that is most common in the catalogue.

    A proxy for the top-level category where the attribute ids are anonymised (Amazon/S3-Rec
    Beauty mixes categories and brands, and the most frequent attribute of an item is in practice
    its broadest category). Ties go to the lower attribute string. Items with no attribute get -1.

    Returns:
        (len(attributes),) int64 codes, dense from 0 in order of first appearance.
    """
    counts: dict[str, int] = {}
    for attrs in attributes:
        for a in attrs:
            counts[a] = counts.get(a, 0) + 1
    codes: dict[str, int] = {}
    out = np.full(len(attributes), -1, dtype=np.int64)
    for row, attrs in enumerate(attributes):
        if len(attrs):
            best = min(attrs, key=lambda a: (-counts[a], a))
            out[row] = codes.setdefault(best, len(codes))
    return out


def flags_from_columns(columns: Mapping[str, Sequence[bool]], n: int) -> np.ndarray:
    """OR of the catalogue's flag columns (``flagged``, ``unsafe``, ``unavailable``) and of
    ``available`` being False. -> (n,) bool.

    A missing value (None) counts as not flagged (and as available).
    """
    out = np.zeros(n, dtype=bool)
    for name in FLAG_COLUMNS:
        if name in columns:
            out |= np.asarray([bool(v) for v in columns[name]], dtype=bool)
    if AVAILABLE_COLUMN in columns:
        out |= np.asarray([v is not None and not v for v in columns[AVAILABLE_COLUMN]],
                          dtype=bool)
    return out
