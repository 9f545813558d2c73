"""Ranking metrics from the 0-based rank of each held-out target among the candidates.

rank = number of candidates ranked ahead of the target (protocol.py: finite scores >= the
target's, ties pessimistic); rank 0 = top; ``MISS`` (inf) = the target cannot be recommended
(masked repeat or non-finite score), a miss at every K. One relevant item per case, so the ideal
DCG is 1:

- HR@K = share of cases with rank < K;
- NDCG@K = mean over cases of 1/log2(rank + 2) if rank < K, else 0;
- MRR@K = mean over cases of 1/(rank + 1) if rank < K, else 0;
- coverage = share of the catalogue in at least one case's top-K list.

Every metric is 0.0 over zero cases and never NaN.
"""

from __future__ import annotations

import numpy as np

MISS = float("inf")  # the rank of a target that can never be recommended


def _hits(ranks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(hit mask, ranks as float64 with misses set to 0 so that gains stay finite)."""
    r = np.asarray(ranks, dtype=np.float64)
    hit = r < k
    return hit, np.where(hit, r, 0.0)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """HR@K of (C,) ranks."""
    return float(np.mean(np.asarray(ranks) < k)) if len(ranks) else 0.0


def ndcg_per_case(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@K of each case. (C,) ranks -> (C,) gains in [0, 1]."""
    hit, r = _hits(ranks, k)
    return np.where(hit, 1.0 / np.log2(r + 2.0), 0.0)


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@K of (C,) ranks."""
    return float(ndcg_per_case(ranks, k).mean()) if len(ranks) else 0.0


def mrr(ranks: np.ndarray, k: int) -> float:
    """MRR@K of (C,) ranks."""
    if not len(ranks):
        return 0.0
    hit, r = _hits(ranks, k)
    return float(np.where(hit, 1.0 / (r + 1.0), 0.0).mean())


def coverage(topk: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one user's top-K list.

    Args:
        topk: (C, K) item indices, 0 for empty slots (padding is never an item).
        n_items: N, the catalogue size.
    """
    if n_items <= 0:
        return 0.0
    return float(len(np.unique(topk[topk > 0])) / n_items)


def all_metrics(ranks: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """HR/NDCG/MRR at each K, keyed like ``ndcg@10``."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = hit_rate(ranks, k)
        out[f"ndcg@{k}"] = ndcg(ranks, k)
        out[f"mrr@{k}"] = mrr(ranks, k)
    return out
