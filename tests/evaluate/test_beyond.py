"""Known-answer tests for the beyond-accuracy metrics (evaluate/beyond.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from liverec.evaluate.beyond import (
    average_popularity,
    beyond_metrics,
    calibration_error,
    catalogue_coverage,
    exposure_counts,
    exposure_gini,
    gini,
    intra_list_diversity,
    intra_list_diversity_reference,
    novelty,
)

# 4 items (+ padding row 0): items 1 and 2 point the same way, 3 is orthogonal, 4 opposite to 1
VECTORS = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])


def test_diversity_known_answers():
    assert intra_list_diversity(np.array([[1, 2]]), VECTORS) == pytest.approx(0.0)
    assert intra_list_diversity(np.array([[1, 3]]), VECTORS) == pytest.approx(1.0)
    assert intra_list_diversity(np.array([[1, 4]]), VECTORS) == pytest.approx(2.0)
    # pairs (1,2)=0, (1,3)=1, (2,3)=1 -> 2/3; second list 2.0; mean 4/3
    tops = np.array([[1, 2, 3], [1, 4, 0]])
    assert intra_list_diversity(tops, VECTORS) == pytest.approx((2 / 3 + 2.0) / 2)


def test_diversity_skips_short_lists_and_is_zero_without_pairs():
    assert intra_list_diversity(np.array([[1, 0], [1, 3]]), VECTORS) == pytest.approx(1.0)
    assert intra_list_diversity(np.array([[1, 0], [0, 0]]), VECTORS) == 0.0
    assert intra_list_diversity(np.zeros((0, 3), dtype=np.int64), VECTORS) == 0.0


def test_diversity_matches_reference_on_random_lists():
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(51, 8))
    vec[7] = 0.0  # a zero vector: cosine 0 with everything, on both paths
    tops = rng.integers(0, 51, size=(2100, 6))  # spans two chunks
    assert intra_list_diversity(tops, vec) == pytest.approx(
        intra_list_diversity_reference(tops, vec), rel=1e-9)


def test_coverage_novelty_arp_known_answers():
    pop = np.array([0, 8, 4, 2, 0], dtype=float)
    tops = np.array([[1, 2], [1, 4]])
    assert catalogue_coverage(tops, 4) == pytest.approx(3 / 4)
    # -log2(8/16)=1, -log2(4/16)=2, item 4 never seen counts as 1: -log2(1/16)=4
    assert novelty(tops, pop, 16) == pytest.approx((1 + 2 + 1 + 4) / 4)
    assert average_popularity(tops, pop) == pytest.approx(((8 + 4) / 2 + (8 + 0) / 2) / 2)
    assert novelty(np.zeros((1, 2), dtype=np.int64), pop, 16) == 0.0


def test_gini_known_answers():
    assert gini(np.array([5, 5, 5, 5])) == 0.0
    assert gini(np.array([0, 0, 0, 0])) == 0.0
    assert gini(np.array([0, 0, 0, 1])) == pytest.approx(3 / 4)  # (n - 1) / n
    # x = 1, 2, 3: sum (2i-4) x_i = -2 + 0 + 6 = 4; / (3 * 6) = 2/9
    assert gini(np.array([3, 1, 2])) == pytest.approx(2 / 9)


def test_exposure_gini_counts_unlisted_items():
    tops = np.array([[1, 2], [1, 2]])
    assert exposure_counts(tops, 4).tolist() == [0, 2, 2, 0, 0]
    assert exposure_gini(tops, 4) == pytest.approx(gini(np.array([2, 2, 0, 0])))
    assert exposure_gini(np.array([[1, 2], [3, 4]]), 4) == 0.0


def test_calibration_error_known_answers():
    cats = np.array([-1, 0, 0, 1, 1])
    hist = [np.array([1, 3])]  # p = (0.5, 0.5)
    assert calibration_error(np.array([[2, 4]]), hist, cats) == pytest.approx(0.0, abs=1e-12)
    # list all category 0: q = (1, 0); q~ = (0.99 + 0.005, 0.005)
    want = 0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(0.5 / 0.005)
    assert calibration_error(np.array([[1, 2]]), hist, cats) == pytest.approx(want)
    # empty history or empty list is skipped
    assert calibration_error(np.array([[1, 2]]), [np.array([], dtype=np.int64)], cats) == 0.0


def test_beyond_metrics_is_finite_and_keyed():
    pop = np.array([0, 8, 4, 2, 0], dtype=float)
    cats = np.array([-1, 0, 0, 1, 1])
    out = beyond_metrics(np.array([[1, 3], [2, 0]]), n_items=4, vectors=VECTORS, popularity=pop,
                         n_users=16, histories=[np.array([1]), np.array([3])], categories=cats)
    assert set(out) == {"coverage", "exposure_gini", "diversity", "novelty", "arp",
                        "calibration_error"}
    assert all(math.isfinite(v) for v in out.values())
