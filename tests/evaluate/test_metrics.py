import math

import numpy as np
import pytest
import torch

from liverec.evaluate.metrics import MISS, all_metrics, coverage, hit_rate, mrr, ndcg, ndcg_per_case
from liverec.evaluate.protocol import mask_seen, pad_left, rank_targets


def test_hand_computed_values():
    ranks = np.array([0, 1, 4, 9, 30])  # 0-based
    assert hit_rate(ranks, 1) == pytest.approx(1 / 5)
    assert hit_rate(ranks, 5) == pytest.approx(3 / 5)
    assert hit_rate(ranks, 10) == pytest.approx(4 / 5)
    expect_ndcg5 = (1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(6)) / 5
    assert ndcg(ranks, 5) == pytest.approx(expect_ndcg5)
    assert mrr(ranks, 10) == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10) / 5)
    m = all_metrics(ranks, (5, 10))
    assert set(m) == {"hr@5", "ndcg@5", "mrr@5", "hr@10", "ndcg@10", "mrr@10"}


def test_coverage():
    assert coverage(np.array([[1, 2], [2, 3]]), 10) == pytest.approx(0.3)


def test_rank_targets_masks_history_and_padding():
    # 6 items; scores rise with the index, so the unmasked order is 6, 5, 4, ...
    def score(hists):
        return torch.arange(7, dtype=torch.float32).expand(len(hists), -1).clone()

    histories = [np.array([6, 5]), np.array([1])]
    targets = np.array([4, 6])
    ranked = rank_targets(score, histories, targets, batch_size=1, top_k=3)
    # user 0: 6 and 5 are masked, so target 4 is first; user 1: 6 is first
    assert ranked.ranks.tolist() == [0, 0]
    assert ranked.tops[0].tolist() == [4, 3, 2]
    assert ranked.tops[1].tolist() == [6, 5, 4]
    assert not ranked.repeats.any() and not ranked.non_finite.any()


def test_misses_score_zero_and_never_nan():
    ranks = np.array([0.0, MISS, 3.0, MISS])
    for k in (1, 4, 10**6):
        m = all_metrics(ranks, (k,))
        assert m[f"hr@{k}"] == pytest.approx((1 + (k > 3)) / 4)
        assert m[f"ndcg@{k}"] == pytest.approx((1 + (k > 3) / math.log2(5)) / 4)
        assert m[f"mrr@{k}"] == pytest.approx((1 + (k > 3) / 4) / 4)
    assert ndcg_per_case(ranks, 10).tolist() == pytest.approx([1, 0, 1 / math.log2(5), 0])
    assert all_metrics(np.zeros(0), (5,)) == {"hr@5": 0.0, "ndcg@5": 0.0, "mrr@5": 0.0}
    assert coverage(np.zeros((0, 3), dtype=np.int64), 0) == 0.0


def test_mask_and_pad():
    s = mask_seen(torch.zeros(2, 4), [np.array([1]), np.array([2, 3])])
    assert torch.isinf(s[:, 0]).all() and torch.isinf(s[0, 1]) and torch.isinf(s[1, 3])
    assert pad_left([np.array([1, 2, 3]), np.array([4])], 2).tolist() == [[2, 3], [0, 4]]
