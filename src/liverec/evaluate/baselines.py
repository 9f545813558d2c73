"""Non-sequential baselines scored under the same full-ranking protocol.

Each baseline follows sklearn: ``fit(histories, n_items)`` returns self, learned attributes end
in ``_``, ``score(histories)`` returns (B, N + 1) scores. They are fitted on the histories of the
stage being evaluated (everything before each held-out item), so they see exactly what the
sequence model sees.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch

log = logging.getLogger(__name__)


class Baseline(Protocol):
    def fit(self, histories: Sequence[np.ndarray], n_items: int) -> Baseline: ...
    def score(self, histories: list[np.ndarray]) -> torch.Tensor: ...


def user_item_matrix(histories: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Binary (users x (N + 1)) matrix of who interacted with what."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate(histories).astype(np.int64)
    m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)),
                      shape=(len(histories), n_items + 1))
    m.sum_duplicates()
    m.data[:] = 1.0  # repeated interactions count once
    return m.tocsr()


class Popularity:
    """Most interacted-with items first, the same list for everyone."""

    def fit(self, histories: Sequence[np.ndarray], n_items: int) -> Popularity:
        counts = np.bincount(np.concatenate(histories), minlength=n_items + 1).astype(np.float32)
        self.counts_ = torch.from_numpy(counts)
        return self

    def score(self, histories: list[np.ndarray]) -> torch.Tensor:
        return self.counts_.expand(len(histories), -1).clone()


class ItemKNN:
    """Item-to-item cosine neighbours (implicit's CosineRecommender)."""

    def __init__(self, k: int = 100) -> None:
        self.k = k

    def fit(self, histories: Sequence[np.ndarray], n_items: int) -> ItemKNN:
        from implicit.nearest_neighbours import CosineRecommender

        self.n_items_ = n_items
        model = CosineRecommender(K=self.k)
        model.fit(user_item_matrix(histories, n_items), show_progress=False)
        self.similarity_ = model.similarity.tocsr()  # (N + 1, N + 1)
        return self

    def score(self, histories: list[np.ndarray]) -> torch.Tensor:
        m = user_item_matrix(histories, self.n_items_)
        return torch.from_numpy(np.asarray((m @ self.similarity_).todense(), dtype=np.float32))


class ALS:
    """Matrix factorisation by alternating least squares (implicit's ALS), folded-in users."""

    def __init__(self, factors: int = 64, iterations: int = 15, regularization: float = 0.05,
                 alpha: float = 10.0, seed: int = 0) -> None:
        self.factors, self.iterations = factors, iterations
        self.regularization, self.alpha, self.seed = regularization, alpha, seed

    def fit(self, histories: Sequence[np.ndarray], n_items: int) -> ALS:
        from implicit.cpu.als import AlternatingLeastSquares

        self.n_items_ = n_items
        model = AlternatingLeastSquares(
            factors=self.factors, iterations=self.iterations, alpha=self.alpha,
            regularization=self.regularization, random_state=self.seed,
        )
        model.fit(user_item_matrix(histories, n_items), show_progress=False)
        self.model_ = model
        return self

    def score(self, histories: list[np.ndarray]) -> torch.Tensor:
        m = user_item_matrix(histories, self.n_items_)
        users = np.arange(len(histories))
        vecs = self.model_.recalculate_user(users, m)  # fold the histories in: (B, F)
        return torch.from_numpy((vecs @ self.model_.item_factors.T).astype(np.float32))


class RepeatHistory:
    """The user's own history first, by frequency then recency; popularity for the rest.

    Score of an item in the history: 1 + its place in the history ordered by (count in the
    history, last position) ascending, so the most frequent item ranks first and, among equally
    frequent ones, the one seen last; every other item: its popularity in the fitted histories
    scaled into [0, 1), below every history item. The simple repeat baseline of repeat-aware
    evaluation (e.g. the "personal popularity" of Ariannezhad et al., ReCANet, SIGIR 2022);
    under the masked protocol its history is masked and it ranks like ``Popularity``.
    """

    def fit(self, histories: Sequence[np.ndarray], n_items: int) -> RepeatHistory:
        counts = np.bincount(np.concatenate(histories), minlength=n_items + 1).astype(np.float64)
        counts[0] = 0.0
        self.n_items_ = n_items
        self.popularity_ = counts / (counts.max() + 1.0)  # (N + 1,) in [0, 1)
        return self

    def score(self, histories: list[np.ndarray]) -> torch.Tensor:
        out = np.tile(self.popularity_, (len(histories), 1))  # (B, N + 1)
        for row, h in enumerate(histories):
            rows, ranks = history_order(h)
            out[row, rows] = 1.0 + ranks
        return torch.from_numpy(out.astype(np.float32))


def history_order(history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct items, their rank 1..D) of a history, ascending by (count, last position):
    the most frequent, then most recent item gets D. -> two (D,) arrays."""
    h = np.asarray(history, dtype=np.int64)
    items, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    last = np.zeros(len(items), dtype=np.int64)
    np.maximum.at(last, inverse, np.arange(len(h)))
    order = np.lexsort((last, counts))  # ascending: count first, then last position
    ranks = np.empty(len(items), dtype=np.float64)
    ranks[order] = np.arange(1, len(items) + 1)
    return items, ranks


BASELINES: dict[str, type] = {"pop": Popularity, "itemknn": ItemKNN, "als": ALS,
                              "repeat": RepeatHistory}


def make_baseline(name: str) -> Baseline:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
    return BASELINES[name]()
