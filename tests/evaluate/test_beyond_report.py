"""Beyond-accuracy metrics in the run's evaluation (metrics.json, report.md, liverec eval)."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from liverec.evaluate.beyond import (
    BEYOND_DEFINITIONS,
    ListFacts,
    average_popularity,
    calibration_error,
    exposure_gini,
    intra_list_diversity,
    list_metrics,
    novelty,
)


@pytest.fixture(scope="module")
def shop_run(tiny_run_config, tmp_path_factory):
    """A tiny model of the synthetic shop (items carry a category attribute)."""
    import dataclasses

    from liverec.config import DataConfig, EvalConfig, SyntheticConfig
    from liverec.data.pipeline import load_and_prepare
    from liverec.train.loop import train

    data = DataConfig(source="synthetic", cache=False,
                      synthetic=SyntheticConfig(n_users=300, n_items=60, n_categories=4,
                                                max_len=12))
    model = dataclasses.replace(tiny_run_config.model, n_items=0, d_model=16, d_ff=32)
    cfg = dataclasses.replace(tiny_run_config, name="shop", data=data, model=model,
                              eval=EvalConfig(ks=(5, 10), baselines=("pop",)))
    out = tmp_path_factory.mktemp("beyond") / "shop"
    train(cfg, load_and_prepare(cfg.data), out)
    return out


def test_eval_writes_beyond_metrics_beside_accuracy(shop_run, capsys):
    from liverec.cli import main

    assert main(["eval", str(shop_run)]) == 0
    printed = capsys.readouterr().out
    assert "Beyond accuracy" in printed and "exposure Gini" in printed
    metrics = json.loads((shop_run / "metrics.json").read_text())
    beyond = metrics["beyond"]
    assert beyond["k"] == 10 and set(beyond["rows"]) == {"sasrec (liverec)", "pop"}
    for row in beyond["rows"].values():
        assert set(row) == set(BEYOND_DEFINITIONS)
        for key in BEYOND_DEFINITIONS:
            assert math.isfinite(row[key]) and row[key] >= 0
        assert 0 <= row["coverage"] <= 1 and 0 <= row["exposure_gini"] <= 1
    model, pop = beyond["rows"]["sasrec (liverec)"], beyond["rows"]["pop"]
    assert pop["coverage"] < model["coverage"]  # the same few items for everyone
    assert pop["arp"] > model["arp"] and pop["exposure_gini"] > model["exposure_gini"]
    assert model["coverage"] == pytest.approx(metrics["model"]["test"]["coverage@10"])
    report = (shop_run / "report.md").read_text()
    assert "## Beyond accuracy (test top-10 lists)" in report and "calibration error" in report


def test_list_metrics_are_the_metric_functions(known_answer_data):
    gen = np.random.default_rng(0)
    n = known_answer_data.vocab.n_items
    tops = gen.integers(0, n + 1, size=(30, 5))
    histories = [gen.integers(1, n + 1, size=4) for _ in range(30)]
    vectors = gen.normal(size=(n + 1, 6))
    items = pl.DataFrame({"attributes": [[f"c{i % 4}"] for i in range(n)]})
    facts = ListFacts.build(known_answer_data, vectors, items)
    got = list_metrics(tops, histories, facts)
    pop = known_answer_data.train_item_counts()
    assert got["diversity"] == pytest.approx(intra_list_diversity(tops, vectors))
    assert got["novelty"] == pytest.approx(novelty(tops, pop, facts.n_users))
    assert got["arp"] == pytest.approx(average_popularity(tops, pop))
    assert got["exposure_gini"] == pytest.approx(exposure_gini(tops, n))
    assert got["calibration_error"] == pytest.approx(
        calibration_error(tops, histories, facts.categories))
    assert facts.categories[0] == -1 and len(set(facts.categories[1:].tolist())) == 4


def test_facts_without_vectors_or_attributes_leave_those_metrics_out(known_answer_data):
    n = known_answer_data.vocab.n_items
    bad = np.full((n + 1, 3), np.nan)
    facts = ListFacts.build(known_answer_data, bad, pl.DataFrame({"attributes": [[]] * n}))
    got = list_metrics(np.array([[1, 2, 3]]), [np.array([4])], facts)
    assert got["diversity"] is None and got["calibration_error"] is None
    assert got["coverage"] == pytest.approx(3 / n)
