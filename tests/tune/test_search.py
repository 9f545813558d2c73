"""Hyper-parameter search: a 3-trial study end to end, resume from storage, failed trials."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest
from tests.tune.conftest import TINY

from liverec.cli import main
from liverec.config import RunConfig, apply_overrides, load_config
from liverec.errors import ConfigError
from liverec.tune.search import TuneConfig, run_study
from liverec.tune.space import SearchSpace

# a small space: two model sizes, depth and the learning rate; the rest stays at the base
SMALL = {"model.d_model": [16, 32], "model.n_layers": [1, 2],
         "train.lr": {"low": 1e-3, "high": 3e-2, "log": True},
         "model.n_heads": None, "model.dropout": None, "model.max_len": None,
         "train.weight_decay": None, "train.batch_size": None, "train.optimizer": None,
         "train.schedule": None}


def base_config(shop_file, epochs: int = 2) -> RunConfig:
    sets = [TINY[i + 1] for i in range(0, len(TINY), 2)]
    return apply_overrides(RunConfig(), [f"data.source={json.dumps(str(shop_file))}", *sets,
                                         f"train.epochs={epochs}"])


def test_three_trial_study_writes_table_plots_and_a_trainable_best_config(
        shop_file, tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["tune", "--data", str(shop_file), "--trials", "3", "--out", str(out), "--seed", "1",
            "--space", json.dumps(SMALL), *TINY, "--set", "train.epochs=3"]
    assert main(argv) == 0
    assert "| trial | state | val NDCG@10 |" in capsys.readouterr().out
    for name in ("results.json", "results.md", "history.png", "importance.png",
                 "best_config.json", "study.db"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "results.json").read_text())
    trials = summary["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE"] * 3
    assert trials[0]["baseline"] and not any(t["baseline"] for t in trials[1:])
    assert trials[0]["params"] == {"model.d_model": 16, "model.n_layers": 2, "train.lr": 0.01}
    assert all(len(t["intermediate"]) == 3 for t in trials)  # one report per epoch
    assert summary["best"]["value"] == max(t["value"] for t in trials)
    assert summary["improvement"] == summary["best"]["value"] - trials[0]["value"]
    md = (out / "results.md").read_text()
    assert "baseline (base config)" in md and md.count("| COMPLETE |") == 3

    best = load_config(out / "best_config.json")
    want = summary["best"]["params"]
    assert (best.model.d_model, best.model.n_layers) == (want["model.d_model"],
                                                         want["model.n_layers"])
    assert best.train.lr == pytest.approx(want["train.lr"])
    assert best.model.d_ff == 2 * best.model.d_model  # the base's d_ff / d_model ratio
    run = tmp_path / "best_run"
    assert main(["train", "--config", str(out / "best_config.json"), "--out", str(run),
                 "--no-eval"]) == 0
    assert json.loads((run / "train_log.json").read_text())["best_valid"]["ndcg@10"] > 0


def test_study_resumes_from_its_storage(shop_file, tmp_path):
    base = base_config(shop_file)
    space = SearchSpace.from_dict(SMALL)
    tc = TuneConfig(trials=2, sampler="random", storage=f"sqlite:///{tmp_path / 'shared.db'}")
    first = run_study(base, tmp_path / "a", tc, space)
    assert [t["number"] for t in first["trials"]] == [0, 1]
    second = run_study(base, tmp_path / "b", dataclasses.replace(tc, trials=4), space)
    assert [t["number"] for t in second["trials"]] == [0, 1, 2, 3]
    assert [t["value"] for t in second["trials"][:2]] == [t["value"] for t in first["trials"]]
    assert sum(t["baseline"] for t in second["trials"]) == 1
    again = run_study(base, tmp_path / "b", dataclasses.replace(tc, trials=4), space)
    assert len(again["trials"]) == 4  # already complete: nothing new runs
    other = apply_overrides(base, ["train.lr=0.002"])
    with pytest.raises(ConfigError, match="another base config"):
        run_study(other, tmp_path / "c", tc, space)


def test_a_crashing_trial_is_recorded_as_failed_and_the_study_goes_on(
        shop_file, tmp_path, monkeypatch):
    import liverec.train.loop as loop

    real_train = loop.train

    def crash_in_trial_1(cfg, prepared, out_dir, **kwargs):
        if cfg.name.endswith("-trial1"):
            raise RuntimeError("simulated crash in trial 1")
        return real_train(cfg, prepared, out_dir, **kwargs)

    monkeypatch.setattr(loop, "train", crash_in_trial_1)
    summary = run_study(base_config(shop_file), tmp_path / "s",
                        TuneConfig(trials=3, sampler="random"), SearchSpace.from_dict(SMALL))
    rows = {t["number"]: t for t in summary["trials"]}
    assert rows[1]["state"] == "FAIL"
    assert rows[1]["error"] == "RuntimeError: simulated crash in trial 1"
    assert sum(t["state"] == "COMPLETE" for t in rows.values()) == 3  # the study went on
    assert "simulated crash in trial 1" in (tmp_path / "s" / "results.md").read_text()


def test_space_covers_the_base_and_rejects_bad_specs():
    base = apply_overrides(RunConfig(), ["model.d_model=48", "train.lr=0.05"])
    space = SearchSpace().covering(base)
    assert 48 in space.params["model.d_model"].choices
    assert space.params["train.lr"].high == 0.05
    assert space.point_of(base)["model.d_model"] == 48
    with pytest.raises(ConfigError, match="not a model"):
        SearchSpace.from_dict({"data.source": ["x"]})
    with pytest.raises(ConfigError, match="divisible"):
        SearchSpace().apply(base, {"model.d_model": 32, "model.n_heads": 3})


@pytest.mark.slow  # about 15 s: a study process is started, killed, and resumed
def test_trials_of_a_killed_study_process_fail_with_a_reason_and_the_study_resumes(
        shop_file, tmp_path):
    import optuna

    out = tmp_path / "s"
    # trial 0 would train for ever (huge epoch count and patience, 600 s budget): kill it
    argv = [sys.executable, "-m", "liverec", "tune", "--data", str(shop_file), "--trials", "2",
            "--out", str(out), "--heartbeat", "1", "--trial-time", "600", *TINY,
            "--set", "train.epochs=100000", "--set", "train.patience=100000"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while not _running_with_reports(out / "study.db"):
            assert time.monotonic() < deadline and proc.poll() is None, "trial 0 never ran"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    time.sleep(3.5)  # past the grace period (3 x the 1 s heartbeat)
    base = apply_overrides(RunConfig(), [f"data.source={json.dumps(str(shop_file))}",
                                         *[TINY[i + 1] for i in range(0, len(TINY), 2)],
                                         "train.epochs=100000", "train.patience=100000"])
    summary = run_study(base, out, TuneConfig(trials=2, heartbeat_s=1, trial_time_s=0.3))
    rows = summary["trials"]
    assert rows[0]["state"] == "FAIL" and rows[0]["baseline"]
    assert "process running this trial stopped" in rows[0]["error"]
    assert [r["state"] for r in rows[1:]] == ["COMPLETE", "COMPLETE"]
    assert rows[1]["baseline"]  # the base config is run again, under the same budget
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    assert storage.get_all_trials(storage.get_study_id_from_name("liverec"))[0].state.name == "FAIL"


def _running_with_reports(db) -> bool:
    if not db.is_file():
        return False
    con = sqlite3.connect(db)
    try:
        return bool(con.execute(
            "SELECT COUNT(*) FROM trials t JOIN trial_intermediate_values v "
            "ON v.trial_id = t.trial_id WHERE t.state = 'RUNNING'").fetchone()[0])
    except sqlite3.OperationalError:  # tables not created yet
        return False
    finally:
        con.close()


@pytest.mark.parametrize("extra, message", [
    (["--space", "{bad"], "not valid JSON"),
    (["--space", '{"model.foo": [1]}'], "unknown setting 'model.foo'"),
    (["--storage", "postgresql://me:secret@127.0.0.1:1/db"], "me:***@"),
    (["--storage", "nosuch://x"], "--storage: cannot open"),
])
def test_tune_errors_are_one_readable_line(shop_file, tmp_path, capsys, extra, message):
    argv = ["tune", "--data", str(shop_file), "--trials", "1", "--out", str(tmp_path), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("liverec: error:") and message in err and "secret" not in err
    assert len(err.splitlines()) == 1



def test_a_diverging_trial_fails_and_is_never_best(shop_file, tmp_path):
    """A trial at lr=1000 diverges: FAIL with a NonFiniteError, no best, no best config."""
    base = apply_overrides(base_config(shop_file), ["train.lr=1000"])
    space = {k: None for k in SMALL}
    summary = run_study(base, tmp_path / "s", TuneConfig(trials=1),
                        SearchSpace.from_dict(space))
    (trial,) = summary["trials"]
    assert trial["state"] == "FAIL" and trial["error"].startswith("NonFiniteError: ")
    assert summary["best"] is None and "best_config" not in summary["files"]
    assert not (tmp_path / "s" / "trials" / "trial_0000" / "complete.json").exists()
