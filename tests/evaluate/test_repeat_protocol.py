"""The repeat-aware protocol (history not masked): fast path == reference evaluator, repeat and
explore targets reported apart, the masked protocol unchanged, and the repeat baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from liverec.evaluate.baselines import Popularity, RepeatHistory, history_order
from liverec.evaluate.metrics import all_metrics
from liverec.evaluate.protocol import PROTOCOLS, check_protocol, evaluate_cases, rank_targets
from liverec.evaluate.reference import reference_evaluate

NASTY = [0.0, 1.0, -1.0, 0.5, math.nan, math.inf, -math.inf]


def matrix_fn(scores: np.ndarray):
    """A ScoreFn serving the rows of ``scores`` in order, whatever the batch size."""
    state = {"row": 0}

    def fn(histories):
        r = state["row"]
        state["row"] += len(histories)
        return torch.from_numpy(scores[r : r + len(histories)].copy())

    return fn


def fast(scores, histories, targets, ks, batch_size=1024, protocol="repeat"):
    hist = [np.asarray(h, dtype=np.int64) for h in histories]
    return evaluate_cases(matrix_fn(scores), hist, np.asarray(targets), scores.shape[1] - 1,
                          tuple(ks), batch_size, protocol)


def overall(m: dict) -> dict:
    return {k: v for k, v in m.items() if "/" not in k}


def assert_same(a: dict, b: dict):
    assert set(a) == set(b)
    for key in a:
        assert math.isfinite(a[key]) and a[key] == pytest.approx(b[key], abs=1e-9), key


@st.composite
def cases(draw):
    n = draw(st.integers(1, 8))
    c = draw(st.integers(1, 7))
    value = st.one_of(st.sampled_from(NASTY), st.integers(-2, 2).map(float))
    scores = np.array(draw(st.lists(st.lists(value, min_size=n + 1, max_size=n + 1),
                                    min_size=c, max_size=c)), dtype=np.float32)
    item = st.integers(1, n)
    histories = draw(st.lists(st.lists(item, max_size=n + 2), min_size=c, max_size=c))
    targets = draw(st.lists(item, min_size=c, max_size=c))
    ks = draw(st.lists(st.integers(1, n + 3), min_size=1, max_size=3, unique=True))
    return scores, histories, targets, ks, draw(st.integers(1, c + 1))


@settings(max_examples=120, deadline=None)
@given(cases())
def test_repeat_aware_fast_path_matches_reference(case):
    scores, histories, targets, ks, batch = case
    got = fast(scores, histories, targets, ks, batch)
    assert_same(overall(got), reference_evaluate(scores, histories, targets, ks,
                                                 mask_history=False))
    rep = np.array([t in h for h, t in zip(histories, targets)])
    for kind, rows in (("repeat", rep), ("explore", ~rep)):  # each kind = the reference on it
        idx = np.flatnonzero(rows)
        assert got[f"{kind}/cases"] == len(idx)
        if len(idx):
            ref = reference_evaluate(scores[idx], [histories[i] for i in idx],
                                     [targets[i] for i in idx], ks, mask_history=False)
            for key in all_metrics(np.zeros(1), tuple(ks)):
                assert got[f"{kind}/{key}"] == pytest.approx(ref[key], abs=1e-9)


def test_known_answer_repeat_targets_count_and_masked_is_unchanged():
    """Two cases over 4 items; scores rank 3 > 2 > 1 > 4. Case 1: history [3], target 3 (a
    repeat): rank 0 repeat-aware, a miss when masked. Case 2: history [3], target 2 (explore):
    rank 1 repeat-aware (3 is ahead), rank 0 masked."""
    scores = np.tile(np.array([0.0, 2.0, 3.0, 4.0, 1.0], dtype=np.float32), (2, 1))
    hist, targets = [[3], [3]], [3, 2]
    rep = fast(scores, hist, targets, (1, 2))
    assert rep["hr@1"] == 0.5 and rep["hr@2"] == 1.0
    assert rep["repeat/hr@1"] == 1.0 and rep["explore/hr@1"] == 0.0
    assert rep["explore/hr@2"] == 1.0 and rep["repeat/cases"] == rep["explore/cases"] == 1
    assert rep["repeat_targets"] == 1 and rep["non_finite_targets"] == 0
    masked = fast(scores, hist, targets, (1, 2), protocol="masked")
    assert masked["hr@1"] == 0.5 and masked["repeat_targets"] == 1
    assert not any("/" in k for k in masked)  # the masked protocol keeps its keys
    ranked = rank_targets(matrix_fn(scores), [np.array(h) for h in hist], np.array(targets),
                          top_k=2, mask_history=False)
    assert ranked.tops.tolist() == [[3, 2], [3, 2]]  # history items are recommendable


def test_protocol_names_are_checked_and_written():
    assert check_protocol("masked") and not check_protocol("repeat")
    with pytest.raises(ValueError, match="unknown evaluation protocol 'auto'"):
        check_protocol("auto")
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        evaluate_cases(lambda h: torch.zeros(len(h), 3), [np.array([1])], np.array([2]), 2,
                       (1,), protocol="unmasked")
    assert PROTOCOLS["repeat"]["masking"].startswith("history NOT masked")
    assert PROTOCOLS["masked"]["masking"].startswith("items already in the user's history")


def test_history_order_is_frequency_then_recency():
    items, ranks = history_order(np.array([5, 7, 5, 9, 7, 5, 2]))
    order = [int(i) for _, i in sorted(zip(ranks, items), reverse=True)]
    assert order == [5, 7, 2, 9]  # 5 (x3), 7 (x2), then 2 (last seen) before 9


def test_repeat_baseline_ranks_history_first_then_popularity():
    fit_on = [np.array([1, 2, 2, 3]), np.array([4, 4, 4, 2])]
    rb = RepeatHistory().fit(fit_on, n_items=6)
    s = rb.score([np.array([6, 1, 6]), np.array([], dtype=np.int64)])
    # popularity in the fitted histories: 2 and 4 (x3), 1 and 3 (x1) -> count / (3 + 1)
    assert s[0].tolist() == [0.0, 2.0, 0.75, 0.25, 0.75, 0.0, 3.0]  # history: 6 (x2), 1 (x1)
    assert s[1].tolist() == [0.0, 0.25, 0.75, 0.25, 0.75, 0.0, 0.0]  # no history: popularity
    # under the masked protocol the history is masked: it ranks like popularity
    hist = [np.array([1, 3]), np.array([4, 5, 4])]
    targets = np.array([2, 6])
    a = evaluate_cases(rb.score, hist, targets, 6, (1, 3), protocol="masked")
    b = evaluate_cases(Popularity().fit(fit_on, 6).score, hist, targets, 6, (1, 3))
    assert a == b
