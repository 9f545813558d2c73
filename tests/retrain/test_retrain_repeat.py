"""Re-fine-tuning a run in the repeat-aware mode: the new version refits the repeat-explore
mixture (``repeat.json``) on its selection cases (held-out events it never trained on), or
carries the old one when the fit fails; a bad ``repeat.json`` is refused before any work."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

import liverec
from liverec.errors import ArtifactError
from liverec.model.repeat import FILE, RepeatExplore
from liverec.retrain import RetrainConfig, retrain

FAST = RetrainConfig(epochs=4, lr=1e-2, holdout=0.3, min_cases=5, replay=False)


def walk_events(ids: list[str], n_users: int = 200, length: int = 10, seed: int = 1):
    """New users walking a new cyclic order of the catalogue: a rule the model never saw."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(ids)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(0, len(ids)))
        rows += [(f"new{u:04d}", str(order[(start + t) % len(ids)]), float(t))
                 for t in range(length)]
    return pl.DataFrame(rows, schema={"user_id": pl.Utf8, "item_id": pl.Utf8,
                                      "ts": pl.Float64}, orient="row")


@pytest.fixture(scope="module")
def events(repeat_run):
    _, prepared = repeat_run
    return walk_events([str(i) for i in prepared.vocab.ids[1:]])


def test_a_new_version_refits_the_mixture_on_its_selection_cases(repeat_run, events, tmp_path):
    run_dir, _ = repeat_run
    report = retrain(run_dir, events, tmp_path / "v2", FAST)
    assert report["published"], report["reason"]
    head = json.loads((tmp_path / "v2" / FILE).read_text())
    assert head["fit"]["cases"] == report["data"]["selection_cases"]
    assert head != json.loads((run_dir / FILE).read_text())  # refitted, not copied
    meta = json.loads((tmp_path / "v2" / "config.json").read_text())["retrain"]
    assert meta["repeat"] == {"mode": "refitted", "cases": report["data"]["selection_cases"]}
    rec = liverec.load(tmp_path / "v2")
    assert rec.repeat is not None
    assert rec.repeat.item_weights_.tolist() == list(head["item_weights"].values())


def test_a_failed_refit_carries_the_old_mixture(repeat_run, events, tmp_path, monkeypatch):
    run_dir, _ = repeat_run

    def fail(self, *args, **kwargs):
        raise ValueError("RepeatExplore.fit did not converge (NLL nan)")

    monkeypatch.setattr(RepeatExplore, "fit", fail)
    report = retrain(run_dir, events, tmp_path / "v2", FAST)
    assert report["published"], report["reason"]
    assert (tmp_path / "v2" / FILE).read_bytes() == (run_dir / FILE).read_bytes()
    meta = json.loads((tmp_path / "v2" / "config.json").read_text())["retrain"]
    assert meta["repeat"]["mode"] == "carried" and "did not converge" in meta["repeat"]["why"]
    assert liverec.load(tmp_path / "v2").repeat is not None


def test_a_bad_repeat_file_is_refused_before_any_work(repeat_run, events, tmp_path):
    run_dir, _ = repeat_run
    src = tmp_path / "src"
    shutil.copytree(run_dir, src)
    (src / FILE).write_text('{"recent": 10}')
    with pytest.raises(ArtifactError, match="repeat.json: not a repeat-explore record"):
        retrain(src, events, tmp_path / "v2", FAST)
    assert not (tmp_path / "v2").exists()
