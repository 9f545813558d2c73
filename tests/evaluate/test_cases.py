"""The data cases of issue 13 on the metric side, rebuilt in memory (shapes of the files in
../shared/cases/data/): tied-scores-optimistic-rank, masked-repeat-target-counted-as-hit (with
coverage when K exceeds the catalogue) and nan-model-scores-perfect (the protocol's part)."""

import math

import numpy as np
import polars as pl
import pytest
import torch

from liverec.config import DataConfig, RunConfig
from liverec.data.prepare import prepare
from liverec.data.tables import Dataset, empty_items
from liverec.evaluate.protocol import PROTOCOL, evaluate_model
from liverec.evaluate.report import evaluate_baselines, render_report
from liverec.model.sasrec import SASRec


def log_dataset(rows: list[tuple[str, str, int]]) -> Dataset:
    df = pl.DataFrame({"user": [r[0] for r in rows], "item": [r[1] for r in rows],
                       "ts": pl.Series([r[2] for r in rows], dtype=pl.Int64)})
    return Dataset("case", df, empty_items(df["item"]))


@pytest.fixture(scope="module")
def uniform_pop():
    """20 users x 10 events, user u buys items u..u+9 (mod 20): every item equally popular."""
    rows = [(f"u{u}", f"i{(u + t) % 20}", t + 1) for u in range(20) for t in range(10)]
    return prepare(log_dataset(rows), DataConfig(source="uniform_pop"))


@pytest.fixture(scope="module")
def repeat_buy():
    """30 users over a 12-item catalogue; each user's last event re-buys their first item."""
    rows = []
    for u in range(30):
        seq = [(u + t) % 12 for t in range(4)] + [u % 12]
        rows += [(f"u{u}", f"i{i}", t + 1) for t, i in enumerate(seq)]
    return prepare(log_dataset(rows), DataConfig(source="repeat_buy"))


def baselines(prepared, ks):
    names = ("pop", "itemknn", "als")
    pytest.importorskip("implicit")
    out = evaluate_baselines(prepared, names, "test", ks)
    assert set(out) == set(names)
    return out


def test_tied_popularity_does_not_win_ties(uniform_pop):
    """Every test target has 11 candidates (20 items - 9 in the history); pop gives all of them
    the same score, so with pessimistic ties its rank is 10: a miss at K = 1, 5, 10."""
    _, hist, targets = uniform_pop.eval_cases("test")
    assert {len(set(h)) for h in hist} == {9}
    out = baselines(uniform_pop, (1, 5, 10))
    for k in (1, 5, 10):
        assert out["pop"][f"hr@{k}"] == out["pop"][f"ndcg@{k}"] == 0.0
    for name, m in out.items():
        assert m["hr@1"] < 0.5, name  # item-kNN/ALS ties no longer count as wins
        assert all(math.isfinite(v) for v in m.values())


def test_masked_repeat_targets_are_misses_and_reported(uniform_pop, repeat_buy):
    _, hist, targets = repeat_buy.eval_cases("test")
    assert all(t in h for h, t in zip(hist, targets))
    out = baselines(repeat_buy, (5, 10, 20))
    for name, m in out.items():
        for k in (5, 10, 20):  # 20 > 12 items: still a miss
            assert m[f"hr@{k}"] == m[f"ndcg@{k}"] == m[f"mrr@{k}"] == 0.0, name
        assert m["repeat_targets"] == m["cases"] == len(targets)
        assert m["repeat_share"] == 1.0
        assert 0.0 < m["coverage@20"] <= 1.0  # defined although K = 20 > 12 items
    cfg = RunConfig(name="case")
    result = {"protocol": PROTOCOL, "baselines": {k: v for k, v in out.items() if k != "pop"},
              "data": {"source": "repeat_buy", **repeat_buy.stats},
              "model": {"test": out["pop"], "valid": out["pop"]}}
    report = render_report(result, cfg)
    n = len(targets)
    assert f"Repeat targets masked (already in the history, a miss at every K): {n} of {n} " \
           "(100.0%)." in report
    assert "- ties: pessimistic" in report and "- non finite: NaN" in report
    assert "nan" not in report.split("## Test")[1].split("Config:")[0]


def test_nan_model_scores_nothing(known_answer_data, tiny_model_config):
    """A diverged model (all weights NaN) scores NaN everywhere: every metric is 0, not 1."""
    model = SASRec.from_config(tiny_model_config)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    m = evaluate_model(model, known_answer_data, "test", (1, 5, 20))
    for k in (1, 5, 20):
        assert m[f"hr@{k}"] == m[f"ndcg@{k}"] == m[f"mrr@{k}"] == 0.0
    assert m["non_finite_targets"] == m["cases"] > 0
    assert m["coverage@20"] == 0.0


def test_constant_model_scores_nothing(known_answer_data, tiny_model_config):
    """A collapsed model (every item the same score) gets 0 at every K below the candidates."""
    model = SASRec.from_config(tiny_model_config)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    _, hist, _ = known_answer_data.eval_cases("test")
    fewest = known_answer_data.vocab.n_items - max(len(set(h)) for h in hist)
    ks = (1, 5, fewest - 1)
    m = evaluate_model(model, known_answer_data, "test", ks)
    for k in ks:
        assert m[f"hr@{k}"] == m[f"ndcg@{k}"] == m[f"mrr@{k}"] == 0.0
    assert np.isclose(m["non_finite_targets"], 0.0)
