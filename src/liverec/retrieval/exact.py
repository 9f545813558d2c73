"""Exact top-k by a full matmul: the reference path every ANN index is compared with.

Legend: B batch of queries, D dim, N rows.
"""

from __future__ import annotations

import numpy as np
import torch

from liverec.retrieval.base import Exclude


class ExactRetriever:
    """Brute-force inner product over every row (torch matmul + topk).

    Args:
        skip_rows: leading rows never returned (1 = the padding row of a liverec table).
    """

    def __init__(self, skip_rows: int = 0) -> None:
        self.skip_rows = skip_rows

    def build(self, item_vectors: np.ndarray) -> ExactRetriever:
        self.vectors_ = torch.from_numpy(np.ascontiguousarray(item_vectors, dtype=np.float32))
        self._buf = self.vectors_  # (capacity, D); vectors_ is a view of its used rows
        return self

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append rows (M, D) into spare capacity, doubling it when full (amortised O(M))."""
        start = self.vectors_.shape[0]
        new = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
        end = start + len(new)
        if end > self._buf.shape[0]:
            grown = self._buf.new_empty((max(end, 2 * self._buf.shape[0]), self._buf.shape[1]))
            grown[:start] = self.vectors_
            self._buf = grown
        self._buf[start:end] = new  # rows no search in flight reads (their view ends at start)
        self.vectors_ = self._buf[:end]
        return np.arange(start, end)

    @property
    def n_rows(self) -> int:
        return int(self.vectors_.shape[0])

    @torch.no_grad()
    def scores(self, user_vectors: np.ndarray, exclude: Exclude = None) -> torch.Tensor:
        """Masked scores of every row. (B, D) -> (B, N)."""
        u = torch.from_numpy(np.ascontiguousarray(user_vectors, dtype=np.float32))
        s = u @ self.vectors_.T  # (B, N)
        s[:, : self.skip_rows] = float("-inf")
        if exclude is not None:
            rows = [np.full(len(e), r) for r, e in enumerate(exclude) if e is not None and len(e)]
            if rows:
                cols = np.concatenate([e for e in exclude if e is not None and len(e)])
                keep = cols < s.shape[1]
                s[torch.from_numpy(np.concatenate(rows)[keep]),
                  torch.from_numpy(cols[keep].astype(np.int64))] = float("-inf")
        return s

    def search(self, user_vectors: np.ndarray, k: int,
               exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray]:
        s = self.scores(user_vectors, exclude)  # (B, N)
        top = s.topk(min(k, s.shape[1]), dim=1)
        ids, vals = top.indices.numpy(), top.values.numpy()
        ids = np.where(np.isfinite(vals), ids, -1)
        return _pad(ids, vals, k)


def _pad(ids: np.ndarray, vals: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if ids.shape[1] >= k:
        return ids.astype(np.int64), vals.astype(np.float32)
    extra = k - ids.shape[1]
    ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=-1)
    vals = np.pad(vals, ((0, 0), (0, extra)), constant_values=-np.inf)
    return ids.astype(np.int64), vals.astype(np.float32)
