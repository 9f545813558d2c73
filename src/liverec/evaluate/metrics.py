"""Ranking metrics from the 0-based rank of each held-out target among all items.

rank = number of (unmasked) items scored strictly higher than the target; rank 0 = top.
HR@K = share of cases with rank < K; NDCG@K = mean 1/log2(rank + 2) over hits (one relevant
item, so the ideal DCG is 1); MRR@K = mean 1/(rank + 1) over hits.
"""

from __future__ import annotations

import numpy as np


def hit_rate(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks < k)) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int) -> float:
    if not len(ranks):
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(ranks.astype(np.float64) + 2.0), 0.0)
    return float(gains.mean())


def mrr(ranks: np.ndarray, k: int) -> float:
    if not len(ranks):
        return 0.0
    return float(np.where(ranks < k, 1.0 / (ranks.astype(np.float64) + 1.0), 0.0).mean())


def coverage(topk: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one user's top-K list."""
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
