"""Repeat-aware mode: features (fast == reference), the mixture's maths, its save/load, and the
tiny end-to-end check of issue 15: on a repeat-heavy listening log the data-adaptive default
picks the repeat-aware mode, which beats both the masked default and the repeat baseline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import liverec
from liverec.cli import main
from liverec.config import DataConfig, SyntheticConfig
from liverec.data.prepare import prepare
from liverec.data.synthetic import generate
from liverec.errors import ArtifactError
from liverec.evaluate.baselines import RepeatHistory
from liverec.evaluate.metrics import MISS, all_metrics
from liverec.evaluate.protocol import evaluate_scores, mask_seen, model_score_fn
from liverec.model.artifact import load_model
from liverec.model.repeat import FILE, Cells, RepeatExplore, load_repeat
from liverec.model.sasrec import SASRec

TINY = ["--set", "model.d_model=16", "--set", "model.d_ff=32", "--set", "model.max_len=20",
        "--set", "model.n_layers=1", "--set", "model.n_heads=1", "--set", "model.dropout=0.1",
        "--set", "model.attn_dropout=0.1", "--set", "model.emb_dropout=0.1",
        "--set", "train.epochs=6", "--set", "train.lr=0.01", "--set", "train.batch_size=64",
        "--set", "train.warmup_steps=5", "--set", "train.progress=false",
        "--set", "train.checkpoint=false", "--set", "data.cache=false", "--set", "eval.ks=[10,20]"]
LISTENING = ["--set", "data.synthetic.kind=listening", "--set", "data.synthetic.n_users=400",
             "--set", "data.synthetic.n_items=120", "--set", "data.synthetic.n_categories=6",
             "--set", "data.synthetic.min_len=20", "--set", "data.synthetic.max_len=60",
             "--set", "data.synthetic.seed=1"]
SYN = SyntheticConfig(kind="listening", n_users=400, n_items=120, n_categories=6, min_len=20,
                      max_len=60, seed=1)


def reference_cells(history: list[int], recent: int = 10) -> dict[int, list[float]]:
    """item -> [log(1 + count), -log(lag), log(1 + count in the last ``recent``)]."""
    out = {}
    for item in set(history):
        last = max(p for p, x in enumerate(history) if x == item)
        out[item] = [math.log1p(history.count(item)), -math.log(len(history) - last),
                     math.log1p(history[-recent:].count(item))]
    return out


def test_cell_features_match_the_reference():
    rng = np.random.default_rng(0)
    histories = [rng.integers(1, 9, rng.integers(0, 25)) for _ in range(40)]
    cells = Cells(histories)
    for row, h in enumerate(histories):
        ref = reference_cells(h.tolist())
        mine = {int(c): cells.item_feats[i].tolist() for i, c in
                enumerate(cells.cols) if cells.rows[i] == row}
        assert set(mine) == set(ref)
        for item, feats in ref.items():
            assert mine[item] == pytest.approx(feats, abs=1e-5)
        repeats = len(h) - len(set(h.tolist()))
        own = math.log((repeats + 1) / (max(len(h) - 1, 0) - repeats + 1))
        assert cells.gate_feats[row, 0].item() == pytest.approx(own, abs=1e-5)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    from liverec.config import ModelConfig

    return SASRec(ModelConfig(n_items=30, d_model=8, n_layers=1, n_heads=1, d_ff=16,
                              max_len=8)).eval()


def test_mixture_is_a_distribution_and_keeps_the_masked_order(tiny_model):
    rng = np.random.default_rng(1)
    head = RepeatExplore(tiny_model)
    head.item_weights_ = torch.tensor([0.7, 0.4, 0.2, 0.5])
    head.gate_weights_ = torch.tensor([0.1, 0.6, -0.2, 0.3, -0.1])
    histories = [rng.integers(1, 31, n) for n in (0, 1, 5, 20)]
    s = head(histories)  # (4, 31)
    assert torch.isinf(s[:, 0]).all() and torch.isfinite(s[:, 1:]).all()
    assert torch.logsumexp(s[:, 1:], 1) == pytest.approx(torch.zeros(4), abs=1e-5)
    assert s[0, 1:].exp().sum() == pytest.approx(1.0, abs=1e-5)  # empty: explore only
    # new items keep the sequence model's order: the masked protocol ranks them the same
    base = model_score_fn(tiny_model, 8)(histories)
    for row, h in enumerate(histories):
        new = np.setdiff1d(np.arange(1, 31), h)
        assert torch.equal(s[row, new].argsort(stable=True), base[row, new].argsort(stable=True))


def test_save_load_round_trip_and_bad_files(tiny_model, tmp_path, monkeypatch):
    head = RepeatExplore(tiny_model)
    head.item_weights_ = torch.tensor([0.5, 0.25, 0.0, 1.0])
    head.save(tmp_path)
    back = load_repeat(tmp_path, tiny_model)
    h = [np.array([1, 2, 1, 5])]
    assert torch.equal(back(h), head(h))
    assert load_repeat(tmp_path / "none", tiny_model) is None
    data = json.loads((tmp_path / FILE).read_text())
    data["gate_weights"]["bias"] = "NaN"
    (tmp_path / FILE).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="repeat-explore weights must be finite"):
        load_repeat(tmp_path, tiny_model)
    (tmp_path / FILE).write_text("{}")
    with pytest.raises(ArtifactError, match="not a repeat-explore record"):
        load_repeat(tmp_path, tiny_model)
    (tmp_path / FILE).write_bytes(b"\xff{")
    with pytest.raises(ArtifactError, match="repeat.json: .*codec can't decode"):
        load_repeat(tmp_path, tiny_model)

    def unreadable(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", unreadable)
    with pytest.raises(ArtifactError, match="repeat.json: .*Permission denied"):
        load_repeat(tmp_path, tiny_model)
    with pytest.raises(ValueError, match="at least one"):
        RepeatExplore(tiny_model).fit([], np.zeros(0, dtype=np.int64))


@pytest.fixture(scope="module")
def listening_run(tmp_path_factory):
    """``liverec train`` on a tiny listening log, eval.protocol left at auto."""
    out = tmp_path_factory.mktemp("repeat") / "run"
    assert main(["train", "--data", "synthetic", "--out", str(out), *LISTENING, *TINY,
                 "--set", "eval.baselines=[pop]"]) == 0
    return out, prepare(generate(SYN), DataConfig(synthetic=SYN))


def test_the_default_switches_and_records_why(listening_run, capsys):
    out, _ = listening_run
    resolved = json.loads((out / "resolved_config.json").read_text())
    assert resolved["eval"]["protocol"] == "repeat"
    choice = json.loads((out / "config.json").read_text())["protocol_choice"]
    assert choice["protocol"] == "repeat" and choice["chosen_by"] == "auto"
    assert choice["rate"] > 0.6 > choice["threshold"]
    head = json.loads((out / FILE).read_text())
    assert head["fit"]["nll"] < head["fit"]["nll_start"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["masking"].startswith("history NOT masked")
    assert metrics["protocol_choice"]["chosen_by"] == "auto"
    assert set(metrics["baselines"]) == {"pop", "repeat"}  # repeat joins every such report
    test = metrics["model"]["test"]
    assert test["repeat/cases"] + test["explore/cases"] == test["cases"] == 400
    report = (out / "report.md").read_text()
    assert "Repeat-aware protocol (history NOT masked)" in report
    assert "chosen by the data-adaptive default" in report and "| repeat |" in report


def test_repeat_aware_mode_beats_the_masked_default_and_the_repeat_baseline(listening_run):
    """Issue 15, must-show 3 (tiny): test NDCG@20 and HR@20 under the repeat-aware protocol."""
    out, prepared = listening_run
    model, *_ = load_model(out)
    plain = model_score_fn(model, model.cfg.max_len)
    _, histories, _ = prepared.eval_cases("test")
    scorers = {"masked": lambda h: mask_seen(plain(h), h),
               "repeat baseline": RepeatHistory().fit(histories, 120).score,
               "mixture": load_repeat(out, model)}
    m = {k: evaluate_scores(f, prepared, "test", (20,), protocol="repeat")
         for k, f in scorers.items()}
    for metric in ("ndcg@20", "hr@20"):
        assert m["mixture"][metric] > 1.05 * m["repeat baseline"][metric]
        assert m["mixture"][metric] > 2.0 * m["masked"][metric]
    assert m["masked"]["repeat/hr@20"] == 0.0  # its list never holds a seen item
    assert m["mixture"]["explore/ndcg@20"] > 2 * m["repeat baseline"]["explore/ndcg@20"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["test"]["ndcg@20"] == pytest.approx(m["mixture"]["ndcg@20"])
    assert metrics["model"]["test_masked"]["ndcg@20"] == pytest.approx(m["masked"]["ndcg@20"])


def test_the_python_api_serves_the_repeat_aware_lists(listening_run):
    """``liverec.load(run).recommend_batch`` (exclude_seen as the run's protocol) reproduces the
    repeat-aware test metrics; exclude_seen=True gives the masked lists."""
    out, prepared = listening_run
    rec = liverec.load(out)
    assert rec.repeat is not None
    _, histories, targets = prepared.eval_cases("test")
    ids = prepared.vocab.ids
    hist = [[str(x) for x in ids[h]] for h in histories]
    for exclude, key in ((None, "test"), (True, "test_masked")):
        lists = rec.recommend_batch(hist, k=20, exclude_seen=exclude)
        ranks = [[i for i, _ in r].index(t) if t in [i for i, _ in r] else MISS
                 for r, t in zip(lists, ids[targets])]
        got = all_metrics(np.array(ranks, dtype=np.float64), (20,))
        want = json.loads((out / "metrics.json").read_text())["model"][key]
        assert got["hr@20"] == pytest.approx(want["hr@20"], abs=1e-9)
        assert got["ndcg@20"] == pytest.approx(want["ndcg@20"], abs=1e-6)


def test_masked_runs_have_no_repeat_head(trained_run):
    run_dir, _ = trained_run
    assert not (Path(run_dir) / FILE).exists()
    assert json.loads((Path(run_dir) / "resolved_config.json").read_text())["eval"][
        "protocol"] == "masked"
    assert liverec.load(run_dir).repeat is None


def test_forced_masked_protocol_on_a_repeat_log_fits_no_head(tmp_path):
    out = tmp_path / "masked"
    tiny = [*TINY, "--set", "train.epochs=1", "--set", "eval.protocol=masked"]
    assert main(["train", "--data", "synthetic", "--out", str(out), *LISTENING, *tiny,
                 "--no-eval"]) == 0
    assert not (out / FILE).exists()
    choice = json.loads((out / "config.json").read_text())["protocol_choice"]
    assert choice["protocol"] == "masked" and choice["chosen_by"] == "config"
    assert choice["rate"] > choice["threshold"]  # the data would have switched
