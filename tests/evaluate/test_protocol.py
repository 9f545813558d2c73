"""The protocol's rank rules: fast path (protocol.py) == reference evaluator (reference.py) on
random and adversarial score matrices, and known answers for ties, non-finite scores, masked
repeat targets and K above the catalogue."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from liverec.evaluate.protocol import count_ahead, evaluate_cases, rank_targets
from liverec.evaluate.reference import reference_evaluate

NASTY = [0.0, -0.0, 1.0, -1.0, 0.5, math.nan, math.inf, -math.inf]


def matrix_fn(scores: np.ndarray):
    """A ScoreFn serving the rows of ``scores`` in order, whatever the batch size."""
    state = {"row": 0}

    def fn(histories):
        r = state["row"]
        state["row"] += len(histories)
        return torch.from_numpy(scores[r : r + len(histories)].copy())

    return fn


def fast(scores, histories, targets, ks, batch_size=1024):
    hist = [np.asarray(h, dtype=np.int64) for h in histories]
    return evaluate_cases(matrix_fn(scores), hist, np.asarray(targets), scores.shape[1] - 1,
                          tuple(ks), batch_size)


def assert_same(a: dict, b: dict):
    assert set(a) == set(b)
    for key in a:
        assert math.isfinite(a[key]) and a[key] == pytest.approx(b[key], abs=1e-9), key


@st.composite
def cases(draw):
    n = draw(st.integers(1, 9))
    c = draw(st.integers(1, 7))
    value = st.one_of(st.sampled_from(NASTY), st.floats(-3, 3, width=32),
                      st.integers(-2, 2).map(float))
    scores = np.array(draw(st.lists(st.lists(value, min_size=n + 1, max_size=n + 1),
                                    min_size=c, max_size=c)), dtype=np.float32)
    item = st.integers(1, n)
    histories = draw(st.lists(st.lists(item, max_size=n + 2), min_size=c, max_size=c))
    targets = draw(st.lists(item, min_size=c, max_size=c))
    ks = draw(st.lists(st.integers(1, n + 4), min_size=1, max_size=3, unique=True))
    return scores, histories, targets, ks, draw(st.integers(1, c + 1))


@settings(max_examples=300, deadline=None)
@given(cases())
def test_fast_path_matches_reference(case):
    scores, histories, targets, ks, batch = case
    assert_same(fast(scores, histories, targets, ks, batch),
                reference_evaluate(scores, histories, targets, ks))


def test_fast_path_matches_reference_on_a_random_catalogue():
    rng = np.random.default_rng(0)
    n, c = 300, 64
    scores = rng.normal(size=(c, n + 1)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.05] = np.nan
    scores = np.round(scores, 1)  # many ties
    histories = [rng.integers(1, n + 1, rng.integers(0, 20)) for _ in range(c)]
    targets = rng.integers(1, n + 1, c)
    ks = (1, 10, 50, 400)
    assert_same(fast(scores, histories, targets, ks, 16),
                reference_evaluate(scores, histories, targets, ks))


@pytest.mark.parametrize("value", [math.nan, 0.0, 3.5, math.inf, -math.inf])
def test_degenerate_scorers_get_zero_below_the_candidate_count(value):
    """All-NaN, all-constant and all-inf scorers: HR = NDCG = MRR = 0 for every K below the
    number of candidates (10 - 3 = 7 here), never 1."""
    n, c = 10, 5
    scores = np.full((c, n + 1), value, dtype=np.float32)
    histories = [[1, 2, 3]] * c
    targets = [4, 5, 6, 7, 8]
    ks = tuple(range(1, 7 + 1))
    m = fast(scores, histories, targets, ks)
    for k in ks[:-1]:
        assert m[f"hr@{k}"] == m[f"ndcg@{k}"] == m[f"mrr@{k}"] == 0.0
    finite = math.isfinite(value)
    # rank = 6 (every other candidate ties): a hit only once K reaches the candidate count
    assert m["hr@7"] == (1.0 if finite else 0.0)
    assert m["non_finite_targets"] == (0.0 if finite else c)
    assert m["coverage@7"] == pytest.approx(7 / n if finite else 0.0)


def test_nan_and_inf_candidates_never_outrank_a_finite_target():
    scores = np.array([[0, 0.1, math.nan, math.inf, -math.inf, math.nan]], dtype=np.float32)
    ranked = rank_targets(matrix_fn(scores), [np.zeros(0, np.int64)], np.array([1]), top_k=5)
    assert ranked.ranks.tolist() == [0.0]
    assert ranked.tops.tolist() == [[1, 0, 0, 0, 0]]  # non-finite items are never listed


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_target_is_a_miss_at_every_k(bad):
    scores = np.array([[0, bad, 1.0, 2.0]], dtype=np.float32)
    m = fast(scores, [[]], [1], (1, 3, 100))
    assert m["hr@100"] == m["ndcg@100"] == m["mrr@100"] == 0.0
    assert m["non_finite_targets"] == 1.0


def test_ties_are_pessimistic():
    # target 2 ties with items 1 and 3 at 0.5; item 4 is above: rank 3
    scores = np.array([[0, 0.5, 0.5, 0.5, 0.9, 0.1]], dtype=np.float32)
    ranked = rank_targets(matrix_fn(scores), [np.zeros(0, np.int64)], np.array([2]), top_k=5)
    assert ranked.ranks.tolist() == [3.0]
    assert ranked.tops.tolist() == [[4, 1, 2, 3, 5]]  # ties by lower index in top lists


def test_masked_repeat_target_is_a_miss_even_when_k_exceeds_the_catalogue():
    # 12 items, history of 4 holding the target: 8 candidates, and K up to 20
    scores = np.tile(np.arange(13, dtype=np.float32), (3, 1))
    histories = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    m = fast(scores, histories, [1, 6, 1], (5, 10, 20))
    assert m["hr@20"] == pytest.approx(1 / 3) and m["hr@5"] == 0.0  # only case 3 (rank 7)
    assert m["repeat_targets"] == 2.0 and m["repeat_share"] == pytest.approx(2 / 3)
    assert m["coverage@20"] == 1.0  # every item is in some user's (8-item) list


def test_coverage_is_defined_when_k_exceeds_the_catalogue():
    scores = np.tile(np.arange(6, dtype=np.float32), (2, 1))  # 5 items
    m = fast(scores, [[5], [4]], [1, 2], (3, 50))
    assert set(k for k in m if k.startswith("coverage")) == {"coverage@50"}
    assert m["coverage@50"] == 1.0 and m["hr@50"] == 1.0
    m = fast(scores, [[1, 2, 3], [1, 2, 3]], [4, 5], (50,))
    assert m["coverage@50"] == pytest.approx(2 / 5)


def test_count_ahead_rules():
    s = torch.tensor([[1.0, 2.0, math.nan, 2.0, -math.inf]])
    assert count_ahead(s, torch.tensor([2.0])).tolist() == [2.0]
    assert count_ahead(s, torch.tensor([math.nan])).tolist() == [math.inf]


def test_bad_ks_are_refused():
    with pytest.raises(ValueError, match="positive"):
        fast(np.zeros((1, 3), np.float32), [[]], [1], (0, 5))
