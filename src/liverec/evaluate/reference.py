"""Reference evaluator: the protocol's metrics computed case by case with plain Python.

Written from the definitions (protocol.PROTOCOL, metrics.py), not from the fast path: each
case's recommendable items are sorted into a list, the target is placed after every item with
an equal score, and its position is read off the list. Slow (O(C N log N) Python operations);
for tests on small score matrices, which compare it with ``protocol.evaluate_cases``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _rank(row: Sequence[float], candidates: list[int], target: int) -> float:
    """0-based position of ``target`` in its candidates' order, or inf when it is a miss."""
    if target not in candidates or not math.isfinite(row[target]):
        return math.inf
    ranked = [i for i in candidates if math.isfinite(row[i])]
    # best first; among equal scores the target goes last (pessimistic ties)
    ranked.sort(key=lambda i: (-row[i], i == target))
    return float(ranked.index(target))


def _top(row: Sequence[float], candidates: list[int], k: int) -> list[int]:
    """The first k recommendable candidates, best first, ties by lower item index."""
    ranked = [i for i in candidates if math.isfinite(row[i])]
    return sorted(ranked, key=lambda i: (-row[i], i))[:k]


def reference_evaluate(scores: np.ndarray, histories: Sequence[Sequence[int]],
                       targets: Sequence[int], ks: Sequence[int],
                       mask_history: bool = True) -> dict[str, float]:
    """Metrics of a full score matrix under the protocol, one case at a time.

    Args:
        scores: (C, N + 1) scores; column 0 is padding and never a candidate.
        histories: C sequences of item indices in 1..N (masked unless ``mask_history`` is
            False: the repeat-aware protocol, where every item is a candidate).
        targets: C held-out item indices in 1..N.
        ks: cut-offs; may exceed N.
        mask_history: the masked protocol (True) or the repeat-aware one (False).

    Returns:
        The keys of ``protocol.evaluate_cases``: hr@K, ndcg@K, mrr@K, coverage@max(K), cases,
        repeat_targets, repeat_share, non_finite_targets.
    """
    n_cases, n_items = len(targets), scores.shape[1] - 1
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("hr", "ndcg", "mrr")}
    shown: set[int] = set()
    repeats = non_finite = 0
    for c in range(n_cases):
        row = [float(x) for x in scores[c]]
        seen = {int(i) for i in histories[c]}
        target = int(targets[c])
        candidates = [i for i in range(1, n_items + 1) if not (mask_history and i in seen)]
        repeats += target in seen
        non_finite += target in candidates and not math.isfinite(row[target])
        rank = _rank(row, candidates, target)
        for k in ks:
            if rank < k:
                sums[f"hr@{k}"] += 1.0
                sums[f"ndcg@{k}"] += 1.0 / math.log2(rank + 2.0)
                sums[f"mrr@{k}"] += 1.0 / (rank + 1.0)
        shown.update(_top(row, candidates, max(ks)))
    out = {key: (v / n_cases if n_cases else 0.0) for key, v in sums.items()}
    out[f"coverage@{max(ks)}"] = len(shown) / n_items if n_items else 0.0
    out["cases"] = float(n_cases)
    out["repeat_targets"] = float(repeats)
    out["repeat_share"] = repeats / n_cases if n_cases else 0.0
    out["non_finite_targets"] = float(non_finite)
    return out
