"""Full-ranking leave-one-out evaluation: every item is a candidate, seen items are masked.

Legend: B batch of users, T history length, N items (+1 padding column 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from liverec.data.prepare import Prepared
from liverec.evaluate.metrics import all_metrics, coverage

PROTOCOL = {
    "split": "leave-one-out per user in time order (last = test, second last = validation)",
    "ranking": "full ranking over every catalogue item, no sampled negatives",
    "masking": "items already in the user's history are masked (never ranked)",
    "rank": "number of unmasked items scored strictly above the target",
}

ScoreFn = Callable[[list[np.ndarray]], torch.Tensor]  # histories -> (B, N + 1) scores


def pad_left(seqs: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Left-pad (and left-truncate) index sequences to ``length`` columns. -> (B, length)."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for row, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[row, length - len(s) :] = s
    return out


def mask_seen(scores: torch.Tensor, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """Set padding and every history item to -inf, in place. scores: (B, N + 1)."""
    scores[:, 0] = float("-inf")
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate(histories) if len(histories) else np.zeros(0, dtype=np.int64)
    scores[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = float("-inf")
    return scores


def rank_targets(
    score_fn: ScoreFn,
    histories: Sequence[np.ndarray],
    targets: np.ndarray,
    batch_size: int = 1024,
    top_k: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank each target among all items. Returns (ranks (C,), top-k item indices (C, k))."""
    ranks = np.empty(len(targets), dtype=np.int64)
    tops = np.empty((len(targets), top_k), dtype=np.int64)
    for start in range(0, len(targets), batch_size):
        hist = histories[start : start + batch_size]
        tgt = torch.from_numpy(np.asarray(targets[start : start + batch_size], dtype=np.int64))
        scores = mask_seen(score_fn(list(hist)).float(), hist)  # (B, N + 1)
        target_scores = scores.gather(1, tgt[:, None])  # (B, 1)
        ranks[start : start + len(tgt)] = (scores > target_scores).sum(1).numpy()
        tops[start : start + len(tgt)] = scores.topk(top_k, dim=1).indices.numpy()
    return ranks, tops


def evaluate_scores(
    score_fn: ScoreFn,
    prepared: Prepared,
    stage: str = "test",
    ks: tuple[int, ...] = (5, 10, 20),
    batch_size: int = 1024,
) -> dict[str, float]:
    """Metrics for one scorer on one stage, plus coverage@max(K) and the number of cases."""
    _, histories, targets = prepared.eval_cases(stage)
    top_k = min(max(ks), prepared.vocab.n_items)
    ranks, tops = rank_targets(score_fn, histories, targets, batch_size, top_k)
    out = all_metrics(ranks, ks)
    out[f"coverage@{top_k}"] = coverage(tops, prepared.vocab.n_items)
    out["cases"] = float(len(targets))
    return out


def model_score_fn(model: torch.nn.Module, max_len: int) -> ScoreFn:
    """Wrap a sequence model's ``score`` as a ScoreFn (eval mode, no grad)."""

    def score(histories: list[np.ndarray]) -> torch.Tensor:
        seqs = torch.from_numpy(pad_left(histories, max_len))
        with torch.no_grad():
            return model.score(seqs)

    return score


def evaluate_model(
    model: torch.nn.Module,
    prepared: Prepared,
    stage: str = "test",
    ks: tuple[int, ...] = (5, 10, 20),
    batch_size: int = 1024,
) -> dict[str, float]:
    """Full-ranking metrics of a sequence model (switched to eval mode and back)."""
    was_training = model.training
    model.eval()
    try:
        fn = model_score_fn(model, model.cfg.max_len)
        return evaluate_scores(fn, prepared, stage, ks, batch_size)
    finally:
        model.train(was_training)
