"""The compression report of a repeat-aware run compares every variant under that run's
protocol (history not masked, the carried repeat-explore mixture), as ``liverec eval`` does."""

from __future__ import annotations

import shutil

import pytest

from liverec.compress.pipeline import compress_run
from liverec.compress.report import render_markdown
from liverec.compress.variants import CompressConfig
from liverec.evaluate.report import evaluate_run

FAST = dict(bench_histories=5, repeats=1, throughput_batch=8, throughput_repeats=1)


def test_a_repeat_aware_run_is_compared_under_its_own_protocol(repeat_run, tmp_path):
    run, prepared = repeat_run
    mine = tmp_path / "run"
    shutil.copytree(run, mine)  # the shared fixture stays untouched by eval's report files
    reported = evaluate_run(mine)["model"]["test"]  # repeat-aware, with the mixture
    result = compress_run(mine, tmp_path / "cmp", CompressConfig(int8=True, **FAST),
                          prepared=prepared)["report"]
    assert result["protocol"] == "repeat"
    fp32, int8 = result["variants"]["fp32"], result["variants"]["int8"]
    assert fp32["ndcg@20"] == pytest.approx(reported["ndcg@20"], abs=1e-9)
    assert fp32["hr@20"] == pytest.approx(reported["hr@20"], abs=1e-9)
    assert abs(int8["ndcg@20"] - fp32["ndcg@20"]) < 0.05  # the mixture on int8 scores
    assert "repeat-aware protocol" in render_markdown(result)


def test_a_masked_run_is_compared_masked(trained_run, known_answer_data, tmp_path):
    run, _ = trained_run
    result = compress_run(run, tmp_path / "cmp", CompressConfig(int8=True, **FAST),
                          prepared=known_answer_data)["report"]
    assert result["protocol"] == "masked" and "history masked" in render_markdown(result)
