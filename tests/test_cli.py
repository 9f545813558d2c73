"""The command line: train/eval on a never-seen S3-Rec file, readable one-line errors."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import warnings

import numpy as np
import pytest

from liverec.cli import main
from liverec.logs import cli_logging, progress_enabled

FAST = ["--set", "model.d_model=16", "--set", "model.d_ff=32", "--set", "model.max_len=16",
        "--set", "model.dropout=0.0", "--set", "model.attn_dropout=0.0",
        "--set", "model.emb_dropout=0.0", "--set", "train.epochs=4", "--set", "train.lr=0.01",
        "--set", "train.progress=false", "--set", "data.cache=false"]


@pytest.fixture
def s3rec_file(tmp_path):
    """A new S3-Rec file: one line per user, items in time order (cyclic, learnable)."""
    rng = np.random.default_rng(3)
    lines = []
    for u in range(1, 201):
        start, n = rng.integers(1, 41), rng.integers(5, 12)
        lines.append(" ".join(str(x) for x in [u] + [(start + t - 1) % 40 + 1 for t in range(n)]))
    path = tmp_path / "Shop.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_and_eval_on_a_new_s3rec_file(s3rec_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(s3rec_file), "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "Test metrics" in printed and "pop" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["users"] == 200 and metrics["model"]["test"]["hr@10"] > 0.5
    assert (out / "report.md").is_file()
    assert main(["eval", str(out), "--no-baselines"]) == 0
    assert "Test metrics" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "/no/such/file.txt", "--out", "x"], "no/such/file.txt"),
        (["train", "--data", "nosuchdataset", "--out", "x"], "nosuchdataset"),
        (["train", "--data", "synthetic", "--out", "x", "--set", "train.lr=fast"], "train.lr"),
        (["eval", "/no/such/run"], "run directory not found"),
    ],
)
def test_errors_are_one_readable_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("liverec: error:") and message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_bad_line_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "Bad.txt"
    bad.write_text("1 2 3 4\n2\n")  # any token is an id; a user without items is not a line
    assert main(["train", "--data", str(bad), "--format", "s3rec", "--out",
                 str(tmp_path / "r"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "Bad.txt, line 2: user '2' has no items" in err


def test_help_for_every_command(capsys):
    for cmd in ("train", "eval", "demo"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert "usage: liverec" in capsys.readouterr().out


# --- late validation (issue 13): every user mistake is one line and exit status 2, before work


@pytest.mark.parametrize(
    "setting, message",
    [
        ("model.loss=bpr", "model.loss: 'bpr' is not supported; valid values: ce, sampled"),
        ("model.n_heads=3", "model.n_heads=3 does not divide model.d_model=64"),
        ("train.monitor=ndcg@10", "train.monitor=ndcg@10 is not computed: eval.ks is [5, 20]"),
    ],
)
def test_bad_settings_fail_before_any_work(setting, message, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", "synthetic", "--out", str(out), "--set", setting]
    if "monitor" in setting:
        argv += ["--set", "eval.ks=[5,20]"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"liverec: error: {err.removeprefix('liverec: error: ')}"
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()  # nothing was loaded, trained or written


def test_verbose_shows_the_traceback(tmp_path, capsys):
    argv = ["train", "--data", "synthetic", "--out", str(tmp_path / "r"),
            "--set", "model.loss=bpr"]
    assert main(["-v", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1].startswith("liverec: error: model.loss")
    assert main([*argv, "-v"]) == 2  # -v after the command too
    assert "Traceback" in capsys.readouterr().err


def test_missing_paths_fail_at_once(tmp_path, capsys):
    assert main(["train", "--data", "synthetic", "--data-root", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "data.data_root: no such folder" in capsys.readouterr().err
    assert main(["train", "--data", "synthetic", "--init", str(tmp_path / "norun"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "--init" in capsys.readouterr().err


def test_other_ks_train_and_log_one_line_per_epoch(s3rec_file, tmp_path, capsys):
    """eval.ks=[5,20]: the monitor follows the ks (NDCG@5), no KeyError after an epoch; with
    stderr not a terminal there is no progress bar (no carriage returns), one timestamped
    line per epoch instead."""
    out = tmp_path / "run"
    assert main(["train", "--data", str(s3rec_file), "--out", str(out), *FAST,
                 "--set", "eval.ks=[5,20]", "--set", "train.epochs=2",
                 "--set", "train.progress=true", "--no-baselines"]) == 0
    captured = capsys.readouterr()
    assert "best validation NDCG@5" in captured.out and "HR@20" in captured.out
    assert "\r" not in captured.err
    epochs = [line for line in captured.err.splitlines() if "liverec.train.loop: epoch" in line]
    assert len(epochs) == 2
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO liverec\.train\.loop: epoch \d "
                        r"loss [\d.]+ valid ndcg@5 [\d.]+", line) for line in epochs)
    log = json.loads((out / "train_log.json").read_text())
    assert set(log["best_valid"]) >= {"ndcg@5", "hr@20"} and "ndcg@10" not in log["best_valid"]
    assert (out / "training_curve.png").is_file()


def test_compress_needs_a_variant_and_an_fp32_run(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    assert main(["compress", str(run_dir), "--out", str(tmp_path / "v")]) == 2
    assert "nothing to build: choose at least one variant" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
    variant = tmp_path / "int8"
    shutil.copytree(run_dir, variant)
    meta = json.loads((variant / "config.json").read_text())
    meta["compression"] = {"method": "int8", "source": str(run_dir)}
    (variant / "config.json").write_text(json.dumps(meta))
    assert main(["compress", str(variant), "--out", str(tmp_path / "v2"), "--int8"]) == 2
    err = capsys.readouterr().err
    assert "already a compressed variant (int8)" in err and len(err.strip().splitlines()) == 1


def test_third_party_warnings_go_to_the_log_at_debug():
    """Outside -v a third-party warning is not shown; with -v it is in the log at DEBUG. The
    root logger is left alone and everything is undone afterwards."""
    root_handlers = list(logging.getLogger().handlers)
    for verbose in (False, True):
        stream = io.StringIO()
        with cli_logging(verbose, stream):
            warnings.warn_explicit("Method expects CSR input", UserWarning, "implicit/utils.py",
                                   164, module="implicit.utils")
            logging.getLogger("liverec.test").info("hello")
        text = stream.getvalue()
        assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO liverec\.test: hello$", text,
                         re.M)
        assert ("DEBUG py.warnings" in text and "Method expects CSR input" in text) == verbose
        assert "WARNING" not in text
    assert logging.getLogger().handlers == root_handlers
    assert not logging.getLogger("liverec").handlers
    assert progress_enabled(False) is False


def test_progress_only_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress_enabled(True) is False
    monkeypatch.setattr("sys.stderr", Tty())
    assert progress_enabled(True) is True and progress_enabled(False) is False


def test_demo_text_says_what_it_runs():
    """The demo's own description is checked against the config it runs (it once promised
    3,000 shoppers and 'under a minute' for 2,000 and more)."""
    from liverec.demo import demo_config

    cfg = demo_config()
    doc = " ".join(demo_config.__doc__.split())
    assert f"{cfg.data.synthetic.n_users:,} shoppers" in doc
    assert f"{cfg.data.synthetic.n_items} items" in doc
    assert f"{cfg.model.n_layers}-layer" in doc and f"at most {cfg.train.epochs} epochs" in doc
