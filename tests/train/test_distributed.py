"""Data-parallel training (torchrun, gloo on CPU): the same result as one process, a clear
error and an intact checkpoint when a worker is killed.

Tolerance: two processes sum the gradient in another order than one, so the runs agree up to
float rounding (training losses within 1e-4 relative, weights drift by ~1e-3 after a few Adam
steps); test HR/NDCG@K must agree within 0.01 (about one user of the 257 here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_file
from tests.tune.conftest import TINY, write_shop

from liverec.cli import main
from liverec.errors import ArtifactError
from liverec.model.artifact import load_model
from liverec.train.batches import TrainBatches
from liverec.train.distributed import DistContext, RankBatches

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

METRIC_TOL = 0.01
LOSS_RTOL = 1e-4


def test_rank_slices_cover_each_global_batch_with_weights_that_sum_to_world(
        known_answer_data):
    seqs = known_answer_data.train_sequences()
    world = 3
    streams = [iter(RankBatches(TrainBatches(seqs, 16, 64, seed=5), DistContext(r, world)))
               for r in range(world)]
    alone = iter(RankBatches(TrainBatches(seqs, 16, 64, seed=5), DistContext()))
    for whole, w1, n1 in alone:
        parts = [next(s) for s in streams]
        assert w1 == 1.0 and all(n == n1 for _, _, n in parts)
        rows = sum(len(b["input"]) for b, w, _ in parts if w > 0)
        assert rows == len(whole["input"])
        targets = sorted(int(t) for b, w, _ in parts if w > 0 for t in b["target"][b["target"] > 0])
        assert targets == sorted(int(t) for t in whole["target"][whole["target"] > 0])
        assert sum(w for _, w, _ in parts) == pytest.approx(world)  # sum of M_r / M = 1


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    # 257 users with batch 64: the last global batch has one sequence, so rank 1 gets an
    # empty slice there (and trains on a zero-weight row)
    shop = write_shop(tmp_path / "Shop.txt", n_users=257)
    # with the refit on validation events (rank 0 loads the kept weights, every rank gets them)
    args = ["--data", str(shop), *TINY, "--set", "train.epochs=4", "--set",
            "train.refit_epochs=2", "--no-baselines"]
    assert main(["train", "--out", str(tmp_path / "one"), *args]) == 0
    assert main(["train", "--nproc", "2", "--out", str(tmp_path / "two"), *args]) == 0
    one, two = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "two"))
    for key, value in one["model"]["test"].items():
        assert abs(value - two["model"]["test"][key]) <= METRIC_TOL, key
    log1, log2 = (json.loads((tmp_path / n / "train_log.json").read_text())
                  for n in ("one", "two"))
    assert [e["epoch"] for e in log1["epochs"]] == [e["epoch"] for e in log2["epochs"]]
    for a, b in zip(log1["epochs"], log2["epochs"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=LOSS_RTOL)
    assert log1["refit"]["kept"] and log2["refit"]["kept"]
    assert log2["refit"]["loss"] == pytest.approx(log1["refit"]["loss"], rel=LOSS_RTOL)
    files = {p.name for p in (tmp_path / "one").iterdir()}
    assert files == {p.name for p in (tmp_path / "two").iterdir()} - {"torchrun.log"}


def test_a_killed_worker_gives_one_clear_error_and_keeps_the_checkpoint(tmp_path):
    shop = write_shop(tmp_path / "Shop.txt")
    out = tmp_path / "run"
    long_run = [*TINY, "--set", "train.epochs=5000", "--set", "train.patience=5000"]
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "liverec", "train", "--nproc", "2", "--data", str(shop),
         "--out", str(out), "--no-eval", *long_run],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "LIVEREC_TEST_JOB": mark})
    try:
        deadline = time.monotonic() + 90
        while _checkpoint_epoch(out) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "no checkpoint written"
            time.sleep(0.1)
        os.kill(_worker_pid(mark, local_rank=1), signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("liverec: error: distributed training failed: worker rank ")
    assert "killed by SIGKILL" in last or "exited with code" in last
    assert f"last checkpoint kept: {out / 'checkpoint.safetensors'}" in last
    assert "ChildFailedError" not in err  # torchrun's report is summarised, not echoed
    assert "Traceback" not in err  # the surviving rank says what happened in one line too
    assert (out / "torchrun.log").is_file()
    assert not list(out.glob(".*.tmp"))

    epoch = _checkpoint_epoch(out)
    with pytest.raises(ArtifactError, match="incomplete run directory"):
        load_model(out)  # a crashed run is not loadable...
    load_file(str(out / "model.safetensors"))  # ...though the best weights so far are intact
    # --resume continues from the checkpoint (here on one process: the maths is the same);
    # a tiny time budget stops it after one more epoch
    assert main(["train", "--resume", "--data", str(shop), "--out", str(out), "--no-eval",
                 *long_run, "--set", "train.max_time_s=0.001"]) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == list(range(1, epoch + 2))
    load_model(out)  # finished: loadable now


def _checkpoint_epoch(run_dir: Path) -> int:
    path = run_dir / "checkpoint.safetensors"
    if not path.is_file():
        return 0
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["liverec_checkpoint"])["state"]["epoch"]


def _worker_pid(mark: str, local_rank: int) -> int:
    """The torchrun worker of this test's job with the given LOCAL_RANK (Linux /proc)."""
    want = {f"LIVEREC_TEST_JOB={mark}".encode(), f"LOCAL_RANK={local_rank}".encode()}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if want <= env:
            return int(proc.name)
    raise AssertionError(f"no worker with LOCAL_RANK={local_rank} found")


def test_rank_batches_alone_are_the_plain_batches(known_answer_data):
    seqs = known_answer_data.train_sequences()
    plain = list(TrainBatches(seqs, 16, 32, seed=9))
    ranked = list(RankBatches(TrainBatches(seqs, 16, 32, seed=9), DistContext()))
    assert len(plain) == len(ranked)
    for a, (b, weight, n) in zip(plain, ranked):
        assert weight == 1.0 and n == len(a["input"])
        assert np.array_equal(a["input"].numpy(), b["input"].numpy())
