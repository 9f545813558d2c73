"""The device-resident evaluation fast path (``DeviceCases`` + ``evaluate_on_device``) gives the
reference evaluator's metrics (pessimistic ties, non-finite last, masked repeat targets are
misses) and exactly the reference path's (``evaluate_model``) on a trained model."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from test_protocol import assert_same, cases

from liverec.evaluate.protocol import (
    DeviceCases,
    evaluate_model,
    evaluate_on_device,
    model_score_fn,
    rank_on_device,
    rank_targets,
)
from liverec.evaluate.reference import reference_evaluate
from liverec.model.artifact import load_model


class MatrixModel(torch.nn.Module):
    """A 'model' whose score rows are the rows of a fixed matrix, served in the order the
    cases are stored (sorted by history length: ``order`` maps back to the case)."""

    def __init__(self, scores: np.ndarray, order: np.ndarray) -> None:
        super().__init__()
        self.scores, self.order, self.row = torch.from_numpy(scores.copy()), order, 0

    def score(self, seqs: torch.Tensor) -> torch.Tensor:
        r = self.row
        self.row += len(seqs)
        return self.scores[torch.from_numpy(self.order[r : r + len(seqs)])].clone()


def on_device(scores, histories, targets, ks, batch_size):
    hist = [np.asarray(h, dtype=np.int64) for h in histories]
    dc = DeviceCases.from_cases(hist, np.asarray(targets), scores.shape[1] - 1, max_len=5)
    return evaluate_on_device(MatrixModel(scores, dc.order), dc, tuple(ks), batch_size)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_device_path_matches_reference(case):
    scores, histories, targets, ks, batch = case
    assert_same(on_device(scores, histories, targets, ks, batch),
                reference_evaluate(scores, histories, targets, ks))


def test_device_path_matches_reference_with_ties_nans_and_repeats():
    rng = np.random.default_rng(1)
    n, c = 200, 50
    scores = np.round(rng.normal(size=(c, n + 1)), 1).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.05] = np.nan
    scores[rng.random(scores.shape) < 0.02] = np.inf
    histories = [rng.integers(1, n + 1, rng.integers(0, 30)) for _ in range(c)]
    targets = rng.integers(1, n + 1, c)
    targets[:5] = [h[0] if len(h) else 1 for h in histories[:5]]  # repeat targets: misses
    ks = (1, 10, 50, 400)
    got = on_device(scores, histories, targets, ks, 7)
    assert got["repeat_targets"] >= 1
    assert_same(got, reference_evaluate(scores, histories, targets, ks))


@pytest.mark.parametrize("batch_size", [7, 1024])
def test_device_path_equals_the_reference_path_on_a_trained_model(trained_run,
                                                                  known_answer_data,
                                                                  batch_size):
    model = load_model(trained_run[0])[0]
    ref = evaluate_model(model, known_answer_data, "valid", (5, 10, 20))
    dc = DeviceCases.build(known_answer_data, "valid", model.cfg.max_len)
    got = evaluate_on_device(model, dc, (5, 10, 20), batch_size)
    assert set(got) == set(ref)
    for key in ref:
        assert math.isfinite(got[key]) and got[key] == pytest.approx(ref[key], abs=1e-9), key
    assert ref["ndcg@10"] > 0.1  # a real model, not a degenerate one
    # per case, in the original order: the same ranks and top lists as the reference path
    _, hist, targets = known_answer_data.eval_cases("valid")
    want = rank_targets(model_score_fn(model.eval(), model.cfg.max_len), hist, targets, 64, 20)
    have = rank_on_device(model, dc, 20, batch_size)
    assert np.array_equal(have.ranks, want.ranks) and np.array_equal(have.tops, want.tops)
    assert np.array_equal(have.repeats, want.repeats)
    assert np.array_equal(have.non_finite, want.non_finite)
