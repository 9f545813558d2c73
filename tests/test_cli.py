"""The command line: train/eval on a never-seen S3-Rec file, readable one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from liverec.cli import main

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
