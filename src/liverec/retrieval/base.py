"""The Retriever protocol and shared helpers.

Legend: B batch of queries, D dim, N rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from liverec.errors import ConfigError

Exclude = Sequence[np.ndarray | None] | None  # per query row: row indices never returned


class Retriever(Protocol):
    """Inner-product top-k search over a fixed set of row vectors."""

    def build(self, item_vectors: np.ndarray) -> Retriever:
        """Index ``item_vectors`` (N, D) float32; returns self."""
        ...

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append rows (M, D); returns their row indices (M,)."""
        ...

    def search(self, user_vectors: np.ndarray, k: int,
               exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` rows per query by inner product.

        Args:
            user_vectors: (B, D) float32 queries.
            k: rows wanted per query.
            exclude: per query, row indices that must not be returned (or None).

        Returns:
            (ids (B, k) int64, scores (B, k) float32), best first; a row with fewer than ``k``
            eligible items is padded with id -1 and score -inf.
        """
        ...


def build_retriever(name: str, item_vectors: np.ndarray, **params) -> Retriever:
    """A registered retriever by name, built on ``item_vectors`` (N, D)."""
    from liverec.retrieval import RETRIEVERS

    if name not in RETRIEVERS:
        raise ConfigError(f"unknown retriever {name!r}; available: {sorted(RETRIEVERS)}")
    return RETRIEVERS[name](**params).build(item_vectors)


def n_excluded(exclude: Exclude, rows: int) -> int:
    """The largest number of excluded ids over the query rows."""
    if exclude is None:
        return 0
    return max((len(e) for e in exclude if e is not None), default=0) if rows else 0
