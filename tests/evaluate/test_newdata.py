"""``liverec eval RUN --data NEW``: the new log's own next events, unknown targets are misses,
everything left out is counted, and the run's own metrics.json/report.md are never touched.

Case: ../shared/cases/data/eval-unknown-items-retargeted (a new log whose last event per user is
an item the model never saw: it used to drop those events, re-target every user onto their
previous event and overwrite the run's metrics).
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from tests.conftest import cyclic_dataset

from liverec.cli import main
from liverec.config import DataConfig
from liverec.evaluate.newdata import data_name, evaluate_new_data, next_event_cases
from liverec.evaluate.protocol import pad_left
from liverec.model.artifact import load_model


def new_log(path, n_unknown_targets: int = 60):
    """The cyclic log + one final event on a never-seen item for the first users, one history
    event on an unknown item for u0100, a one-event user and a user with only unknown items."""
    df = cyclic_dataset().interactions
    users = sorted(set(df["user"].to_list()))
    last_ts = df.group_by("user").agg(pl.col("ts").max())
    extra = [{"user": u, "item": f"NEW{i % 5}", "ts": int(last_ts.filter(pl.col("user") == u)
                                                       ["ts"][0]) + 1}
             for i, u in enumerate(users[:n_unknown_targets])]
    extra += [{"user": "u0100", "item": "ODD", "ts": -1},  # history event on an unknown item
              {"user": "solo", "item": "3", "ts": 5},
              {"user": "strange", "item": "X1", "ts": 1}, {"user": "strange", "item": "4",
                                                            "ts": 2}]
    full = pl.concat([df, pl.DataFrame(extra, schema=df.schema)])
    full.rename({"ts": "timestamp"}).write_csv(path)
    return path


def reference_metrics(run_dir, path, ks):
    """Written from the definitions, one case at a time: each user's last event in the log is
    the target, the earlier known items the history; an unknown target is a miss."""
    model, vocab, _, _ = load_model(run_dir)
    lookup = vocab.index_map()
    df = pl.read_csv(path, schema_overrides={"user": pl.Utf8, "item": pl.Utf8})
    gains = {k: [] for k in ks}
    hits = {k: [] for k in ks}
    for _user, rows in df.sort(["user", "timestamp"], maintain_order=True).group_by(
            "user", maintain_order=True):
        items = rows["item"].to_list()
        hist = [lookup[i] for i in items[:-1] if i in lookup]
        if len(items) < 2 or not hist:
            continue
        target = lookup.get(items[-1])
        rank = None
        if target is not None:
            with torch.no_grad():
                scores = model.score(torch.from_numpy(pad_left([np.array(hist)],
                                                               model.cfg.max_len)))[0].float()
            scores[0] = float("-inf")
            scores[hist] = float("-inf")
            rank = int((scores > scores[target]).sum()) if target not in hist else None
        for k in ks:
            hit = rank is not None and rank < k
            hits[k].append(float(hit))
            gains[k].append(1.0 / np.log2(rank + 2.0) if hit else 0.0)
    return {f"hr@{k}": float(np.mean(hits[k])) for k in ks} | \
        {f"ndcg@{k}": float(np.mean(gains[k])) for k in ks}, len(hits[ks[0]])


def test_cases_count_what_they_leave_out(trained_run, tmp_path):
    run_dir, _ = trained_run
    _, vocab, _, _ = load_model(run_dir)
    df = pl.read_csv(new_log(tmp_path / "new.csv"),
                     schema_overrides={"user": pl.Utf8, "item": pl.Utf8})
    cases = next_event_cases(df.rename({"timestamp": "ts"}), vocab)
    c = cases.counts
    assert c["users"] == 302 and c["cases"] == 300  # 300 cyclic users + "strange" - ...
    assert c["cases_unknown_target"] == 60 and c["unknown_target_items"] == 5
    assert cases.unknown_target_items == ["NEW0", "NEW1", "NEW2", "NEW3", "NEW4"]
    assert c["history_events_unknown_item"] == 1  # u0100's ODD (left out of its history)
    assert c["users_single_event"] == 1 and c["users_no_known_history"] == 1
    u = list(cases.users).index("u0100")
    assert "ODD" not in vocab.decode(cases.histories[u])
    # the target is the log's last event, never the one before it
    u0 = list(cases.users).index("u0000")
    assert cases.targets[u0] == 0 and len(cases.histories[u0]) == \
        df.filter(pl.col("user") == "u0000").height - 1


def test_unknown_targets_are_misses_and_match_the_reference(trained_run, tmp_path):
    run_dir, _ = trained_run
    path = new_log(tmp_path / "new_log.csv")
    before = {f: (run_dir / f).read_bytes() for f in ("metrics.json", "report.md")
              if (run_dir / f).is_file()}
    out = tmp_path / "out"
    m = evaluate_new_data(run_dir, DataConfig(source=str(path), time_col="timestamp"),
                          baselines=("pop",), out_dir=out)
    ref, n = reference_metrics(run_dir, path, (5, 10, 20))
    assert m["data"]["cases"] == n == 300 and m["data"]["cases_unknown_target"] == 60
    for key, value in ref.items():
        assert m["model"]["test"][key] == pytest.approx(value, abs=1e-9), key
    assert m["model"]["test"]["hr@20"] <= 240 / 300  # 60 of 300 targets cannot be hit
    assert m["model"]["test"]["hr@20"] > 0.5  # the known-answer model hits the others
    assert m["baselines"]["pop"]["cases"] == 300
    assert all(np.isfinite(v) for v in m["model"]["test"].values())
    report = (out / "report.md").read_text()
    assert "| 60 | test targets on items the model does not know (5 distinct)" in report
    assert json.loads((out / "metrics.json").read_text())["data"]["source"] == str(path)
    after = {f: (run_dir / f).read_bytes() for f in before}
    assert after == before  # the run's own results are untouched


def test_all_unknown_targets_give_zero_not_the_previous_event(trained_run, tmp_path):
    """The case's shape: every user's last event is a never-seen item -> every metric is 0
    (it used to re-target onto the previous event and report the training run's table)."""
    run_dir, _ = trained_run
    path = new_log(tmp_path / "all_new.csv", n_unknown_targets=300)
    m = evaluate_new_data(run_dir, DataConfig(source=str(path), time_col="timestamp"),
                          baselines=(), out_dir=tmp_path / "o")
    assert m["data"]["cases_unknown_target"] == 300
    assert all(v == 0.0 for k, v in m["model"]["test"].items() if "@" in k)


def test_cli_eval_data_writes_beside_the_run(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    path = new_log(tmp_path / "new_log.csv")
    before = (run_dir / "resolved_config.json").read_bytes()
    metrics_before = (run_dir / "metrics.json").read_bytes() \
        if (run_dir / "metrics.json").is_file() else None
    assert main(["eval", str(run_dir), "--data", str(path), "--no-baselines"]) == 0
    captured = capsys.readouterr()
    assert "60 of 300 test targets are on items the model does not know" in captured.err
    assert " WARNING liverec.evaluate.newdata: " in captured.err
    where = run_dir / "eval" / "new_log"
    assert f"wrote {where / 'metrics.json'} and {where / 'report.md'}" in captured.out
    assert (where / "metrics.json").is_file() and (where / "report.md").is_file()
    assert (run_dir / "resolved_config.json").read_bytes() == before
    if metrics_before is not None:
        assert (run_dir / "metrics.json").read_bytes() == metrics_before
    # never over the run's own files
    assert main(["eval", str(run_dir), "--data", str(path), "--out", str(run_dir)]) == 2
    assert "run directory" in capsys.readouterr().err


def test_data_name():
    assert data_name("/a/b/new_log.csv") == "new_log"
    assert data_name("beauty") == "beauty"
    assert data_name("/a/ml-100k/") == "ml-100k"
    assert data_name("we ird/na me.parquet") == "na_me"


def test_cli_eval_data_detects_the_new_logs_format(trained_run, tmp_path, capsys):
    """A run trained on an S3-Rec file (data.format=s3rec) evaluated on a CSV log: the new
    log's format is detected, not taken from the training data's settings."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    resolved = json.loads((run_dir / "resolved_config.json").read_text())
    resolved["data"]["format"] = "s3rec"
    (run_dir / "resolved_config.json").write_text(json.dumps(resolved))
    path = new_log(tmp_path / "log.csv")
    assert main(["eval", str(run_dir), "--data", str(path), "--no-baselines"]) == 0
    assert json.loads((run_dir / "eval" / "log" / "metrics.json").read_text())[
        "data"]["cases"] == 300
    capsys.readouterr()
