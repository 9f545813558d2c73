"""Explanations: batched == reference, faithfulness on known data, evidence, reasons, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from liverec.explain import ExplainError, reason_text
from liverec.explain.attribution import (
    attention_weights,
    deletion_batched,
    deletion_reference,
    integrated_gradients,
    scores_of,
)
from liverec.model.recommender import UnknownItemError


def _rows(explainer, items):
    return torch.from_numpy(explainer.items.table[np.asarray(items)])


@pytest.mark.parametrize("history", [[3], [3, 4, 5, 6], list(range(1, 30)), [7, 8, 7, 9, 8]])
def test_batched_deletion_equals_reference_loop(explainer, history):
    hist = np.array(history, dtype=np.int64)  # window 16: the 29-item history slides
    rows = _rows(explainer, [1, 8, 20, 40])
    fast = deletion_batched(explainer.model, hist, rows, explainer.max_len)
    ref = deletion_reference(explainer.model, hist, rows, explainer.max_len)
    assert fast[1].shape == (min(len(hist), explainer.max_len), 4)
    np.testing.assert_allclose(fast[0], ref[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast[1], ref[1], rtol=1e-5, atol=1e-5)


def test_explanations_through_both_paths_agree(explainer):
    hist, items = np.array([11, 12, 13, 14, 2]), np.array([15, 3])
    fast = explainer.explain_indices(hist, items)
    ref = explainer.explain_indices(hist, items, reference=True)
    for a, b in zip(fast, ref):
        assert a.reason == b.reason
        np.testing.assert_allclose([e.drop for e in a.history], [e.drop for e in b.history],
                                   atol=1e-5)


def test_deleting_the_last_item_matters_most_on_known_answer_data(explainer):
    # next = last + 1: the item after "6" is "7", and it is "6" that makes it so
    e = explainer.explain(["3", "4", "5", "6"], "7")
    assert e.drivers[0].item_id == "6"
    assert e.drivers[0].drop == max(h.drop for h in e.history) > 0
    assert [h.item_id for h in e.history] == ["3", "4", "5", "6"]
    assert e.score == pytest.approx(float(scores_of(
        explainer.model, torch.tensor([[4, 5, 6, 7]]), _rows(explainer, [8]))[0, 0]), abs=1e-5)


def test_shared_attributes_and_reason_on_titled_data(explainer):
    # item i has attributes family:f{i // 5} and "17" (on every item, so never telling)
    e = explainer.explain(["3", "5", "6"], "7")
    assert [s.attribute for s in e.shared_attributes] == ["family:f1"]
    assert e.shared_attributes[0].items == ["6", "5"]  # most recent first
    assert e.shared_attributes[0].catalogue_share == pytest.approx(5 / 40)
    assert e.title == "product 7 family1"
    assert e.reason.startswith("Because you viewed product 6 family1")
    assert e.reason.endswith("; same family f1")
    assert e.similar[0].item_id == "6"  # the output vectors of a chain's neighbours align


def test_no_shared_attribute_when_families_differ(explainer):
    e = explainer.explain(["0", "1"], "30")
    assert e.shared_attributes == []
    assert "same" not in e.reason


def test_reason_templates():
    assert reason_text(["A", "B", "C"], "category C") == \
        "Because you viewed A and B; same category C"
    assert reason_text(["A"]) == "Because you viewed A"
    assert reason_text([], "brand X") == "Same brand X as items you viewed"
    assert reason_text([]) == "Based on your recent history as a whole"


def test_integrated_gradients_are_complete(explainer):
    hist = np.array([2, 3, 4, 5], dtype=np.int64)
    row = _rows(explainer, [6])[0]
    ig = integrated_gradients(explainer.model, hist, row, explainer.max_len, steps=128)
    seqs = torch.from_numpy(hist)[None]
    full = float(scores_of(explainer.model, seqs, row[None])[0, 0])
    hook = explainer.model.items.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    try:
        zero = float(scores_of(explainer.model, seqs, row[None])[0, 0])
    finally:
        hook.remove()
    assert ig.shape == (4,)
    assert ig.sum() == pytest.approx(full - zero, rel=0.02, abs=1e-3)
    assert all(p.grad is None for p in explainer.model.parameters())  # no side effects


def test_attention_view_is_a_distribution_over_the_window(explainer):
    att = attention_weights(explainer.model, np.arange(1, 30), explainer.max_len)
    assert att.shape == (explainer.max_len,)
    assert att.sum() == pytest.approx(1.0, abs=1e-5) and (att >= 0).all()
    e = explainer.explain(["3", "4"], "5", ig=True, attention=True)
    assert e.methods == ["deletion", "integrated_gradients", "attention"]
    assert all(h.attention is not None and h.integrated_gradient is not None
               for h in e.history)


def test_unknown_ids_and_empty_history_are_clear_errors(explainer):
    with pytest.raises(UnknownItemError, match="'nope'"):
        explainer.explain(["3", "nope"], "4")
    with pytest.raises(UnknownItemError, match="'missing'"):
        explainer.explain(["3"], "missing")
    with pytest.raises(ExplainError, match="nothing to explain"):
        explainer.explain([], "4")


def test_explaining_many_items_costs_one_forward_pass(explainer, monkeypatch):
    calls = []
    original = explainer.model.encode_users
    monkeypatch.setattr(explainer.model, "encode_users",
                        lambda seqs: calls.append(seqs.shape) or original(seqs))
    out = explainer.explain_indices(np.array([1, 2, 3]), np.arange(4, 14))
    assert len(out) == 10 and calls == [(4, 3)]  # full history + 3 deletions, one batch


def test_explanation_latency_on_a_tiny_model(explainer):
    hist = np.arange(1, 51) % 40 + 1  # 50 items; the tiny model's window is 16
    times = []  # CPU time of this process: other processes on a shared machine do not count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy machine makes idle OpenMP threads spin: CPU, not work
    try:
        for _ in range(30):
            t0 = time.process_time()
            explainer.explain_indices(hist, np.array([5]))
            times.append(time.process_time() - t0)
    finally:
        torch.set_num_threads(threads)
    assert np.median(times) < 0.05, f"median {np.median(times) * 1e3:.1f} ms of CPU"
