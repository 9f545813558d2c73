"""Diverged training and incomplete run directories never look like results.

Case ``nan-model-scores-perfect`` (training side): ``liverec train --set train.lr=1000`` on a
tiny uniform-popularity log used to keep a NaN epoch as "best" (validation NDCG@10 = 1.0) and
leave a loadable run whose ``recommend()`` returned []. Now it ends with one line and nothing
loadable, or (``train.nonfinite=skip``) with finite metrics from a finite epoch.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import liverec
from liverec.cli import main
from liverec.errors import ArtifactError, ConfigError, NonFiniteError
from liverec.model.artifact import COMPLETE, load_model, mark_complete, save_artifact
from liverec.model.health import probe_histories, score_check
from liverec.model.recommender import Recommender


def uniform_pop_csv(path):
    """The case's log: 20 users, user k saw items k .. k+9 (mod 20), one event per step."""
    rows = ["user,item,timestamp"] + [f"u{k},i{(k + j) % 20},{j + 1}"
                                      for k in range(20) for j in range(10)]
    path.write_text("\n".join(rows) + "\n")
    return path


CASE = ["--set", "train.epochs=4", "--set", "train.progress=false", "--set", "train.lr=1000",
        "--set", "train.batch_size=4", "--set", "data.cache=false", "--no-baselines"]


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("liverec: error:")]


def test_diverging_run_stops_with_one_line_and_nothing_loadable(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--data", str(uniform_pop_csv(tmp_path / "u.csv")), "--out", str(out),
               *CASE])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    (line,) = _error_lines(err)
    assert "non-finite" in line and "train.nonfinite=skip" in line
    assert not (out / COMPLETE).exists()
    with pytest.raises(ArtifactError, match="incomplete run directory .*training did not finish"):
        liverec.load(out)


def test_skip_policy_ends_with_finite_metrics_from_a_finite_epoch(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--data", str(uniform_pop_csv(tmp_path / "u.csv")), "--out", str(out),
               *CASE, "--set", "train.nonfinite=skip"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc == 2:  # allowed: one line, nothing loadable
        assert len(_error_lines(err)) == 1
        with pytest.raises(ArtifactError):
            liverec.load(out)
        return
    assert rc == 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["nonfinite"] == "skip" and log["skipped_steps"] > 0  # counted and reported
    assert sum(e.get("skipped_steps", 0) for e in log["epochs"]) == log["skipped_steps"]
    best = next(e for e in log["epochs"] if e["epoch"] == log["best_epoch"])
    assert "nonfinite" not in best and math.isfinite(best["loss"])
    assert all(math.isfinite(v) for v in log["best_valid"].values())
    assert all(e["epoch"] != log["best_epoch"] for e in log["epochs"] if "nonfinite" in e)
    metrics = json.loads((out / "metrics.json").read_text())["model"]["test"]
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    m = liverec.load(out)
    scores = m.score_indices([m.encode(["i1", "i2", "i3"])])
    assert torch.isfinite(scores[:, 1:]).all()
    assert len(m.recommend(["i1", "i2", "i3"], k=5)) == 5


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_an_epoch_with_nonfinite_validation_is_never_kept(policy, tiny_run_config,
                                                          known_answer_data, tmp_path,
                                                          monkeypatch):
    import liverec.train.loop as loop

    real = loop.evaluate_on_device  # the loop's validation (the device fast path)

    def nan_at_epoch_2(model, cases, ks, batch_size=1024):
        metrics = real(model, cases, ks, batch_size)
        calls.append(1)
        if len(calls) == 2:  # the second validation: every metric NaN
            return {k: float("nan") for k in metrics}
        return metrics

    calls: list[int] = []
    monkeypatch.setattr(loop, "evaluate_on_device", nan_at_epoch_2)
    train_cfg = dataclasses.replace(tiny_run_config.train, epochs=3, nonfinite=policy,
                                    patience=10)
    cfg = dataclasses.replace(tiny_run_config, train=train_cfg)
    out = tmp_path / "run"
    if policy == "stop":
        with pytest.raises(NonFiniteError, match="epoch 2: non-finite validation metrics"):
            loop.train(cfg, known_answer_data, out)
        with pytest.raises(ArtifactError, match="incomplete"):
            load_model(out)
        return
    result = loop.train(cfg, known_answer_data, out)
    assert result.best_epoch in (1, 3)
    assert "nonfinite" in result.epochs[1] and result.epochs[1]["epoch"] == 2
    assert all(math.isfinite(v) for v in result.best_valid.values())
    load_model(out)


def test_nonfinite_weights_are_never_kept(tiny_run_config, known_answer_data, tmp_path,
                                          monkeypatch):
    """A step that leaves NaN weights behind a finite loss: the epoch is not kept."""
    import liverec.train.loop as loop

    real = loop._run_epoch

    def poison_epoch_1(net, *args, **kwargs):
        row = real(net, *args, **kwargs)
        if row["epoch"] == 1:
            with torch.no_grad():
                next(net.parameters()).fill_(float("nan"))
        return row

    monkeypatch.setattr(loop, "_run_epoch", poison_epoch_1)
    train_cfg = dataclasses.replace(tiny_run_config.train, epochs=2)
    cfg = dataclasses.replace(tiny_run_config, train=train_cfg)
    with pytest.raises(NonFiniteError, match="epoch 1: non-finite weights"):
        loop.train(cfg, known_answer_data, tmp_path / "run")
    with pytest.raises(ArtifactError, match="incomplete"):
        load_model(tmp_path / "run")


def test_a_crash_mid_training_leaves_nothing_loadable(tiny_run_config, known_answer_data,
                                                      tmp_path, monkeypatch):
    import liverec.train.loop as loop

    real = loop._run_epoch

    def crash_at_epoch_2(net, stream, opt, sched, tc, epoch, *args):
        if epoch == 2:
            raise RuntimeError("simulated crash")
        return real(net, stream, opt, sched, tc, epoch, *args)

    monkeypatch.setattr(loop, "_run_epoch", crash_at_epoch_2)
    cfg = dataclasses.replace(tiny_run_config,
                              train=dataclasses.replace(tiny_run_config.train, epochs=3))
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        loop.train(cfg, known_answer_data, out)
    assert (out / "model.safetensors").is_file()  # epoch 1's weights were written...
    with pytest.raises(ArtifactError, match="incomplete run directory"):
        liverec.load(out)  # ...but the run is not loadable


def test_unknown_nonfinite_policy_is_a_config_error(tiny_run_config):
    with pytest.raises(ConfigError, match="train.nonfinite.*stop, skip"):
        dataclasses.replace(tiny_run_config.train, nonfinite="ok")  # checked when built


def test_completion_marker_is_required_and_written_last(trained_run, tmp_path):
    model, _, items, _ = load_model(trained_run[0])
    cfg = liverec.model.artifact.read_run_config(trained_run[0])
    out = tmp_path / "partial"
    save_artifact(out, cfg, model, items, complete=None)
    with pytest.raises(ArtifactError, match="incomplete run directory"):
        liverec.load(out)
    mark_complete(out, by="test")
    assert liverec.load(out).recommend(["10", "11"], k=3)
    (out / COMPLETE).write_text("{")
    with pytest.raises(ArtifactError, match="damaged"):
        liverec.load(out)


def test_load_refuses_and_recommend_raises_on_nonfinite_scores(trained_run, tmp_path):
    model, vocab, items, meta = load_model(trained_run[0])
    with torch.no_grad():
        model.ln_f.weight.fill_(float("nan"))  # every user vector, so every score, is NaN
    rec = Recommender(model, vocab, items, meta)
    with pytest.raises(NonFiniteError, match="scores are NaN or infinite"):
        rec.recommend(["10", "11", "12"], k=5)
    with pytest.raises(NonFiniteError):
        rec.recommend_batch([["10"], ["11"]], k=5)
    out = tmp_path / "nan"
    cfg = liverec.model.artifact.read_run_config(trained_run[0])
    save_artifact(out, cfg, model, items)  # complete, but broken
    with pytest.raises(ArtifactError, match="broken: non-finite scores"):
        liverec.load(out)


def test_score_check_counts_against_a_reference_loop(trained_run):
    """The batched check equals scoring each history on its own and counting by hand."""
    model, *_ = load_model(trained_run[0])
    with torch.no_grad():
        model.items.emb.weight[7].fill_(float("inf"))  # one item: its scores are not finite
    histories = probe_histories(model.cfg.n_items, model.cfg.max_len, n=5)
    check = score_check(model, histories, batch_size=2)
    bad = 0
    for h in histories:
        seq = np.zeros((1, model.cfg.max_len), dtype=np.int64)
        seq[0, -len(h):] = h[-model.cfg.max_len:]
        with torch.no_grad():
            bad += int((~torch.isfinite(model.score(torch.from_numpy(seq))[:, 1:])).sum())
    assert check.nonfinite_scores == bad > 0 and not check.ok
    assert check.nonfinite_table == model.cfg.d_model
