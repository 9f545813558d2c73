"""Resume checkpoints: atomic writes, exact continuation, refusal on changed settings; the
epoch callback; bf16 autocast and torch.compile on CPU."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from liverec.errors import ConfigError
from liverec.train.checkpoint import atomic_save
from liverec.train.loop import train


@pytest.fixture
def cfg(tiny_run_config):
    # dropout on, so the restored RNG state matters for an exact continuation
    model = dataclasses.replace(tiny_run_config.model, dropout=0.1)
    train_cfg = dataclasses.replace(tiny_run_config.train, epochs=4, patience=10, num_threads=1)
    return dataclasses.replace(tiny_run_config, model=model, train=train_cfg)


def test_resume_continues_exactly_where_the_run_stopped(cfg, known_answer_data, tmp_path):
    full = train(cfg, known_answer_data, tmp_path / "full")
    seen = []

    def stop_after_two(epoch: int, row: dict) -> str | None:
        seen.append((epoch, sorted(row["valid"])[:2]))
        return "stopped by the test" if epoch == 2 else None

    cut = train(cfg, known_answer_data, tmp_path / "cut", callback=stop_after_two)
    assert cut.stopped == "stopped by the test" and len(cut.epochs) == 2
    assert [e for e, _ in seen] == [1, 2]
    resumed = train(cfg, known_answer_data, tmp_path / "cut", resume=True)
    assert [e["epoch"] for e in resumed.epochs] == [1, 2, 3, 4]
    assert [e["loss"] for e in resumed.epochs] == [e["loss"] for e in full.epochs]
    assert resumed.best_valid == full.best_valid and resumed.best_epoch == full.best_epoch


def test_an_early_stopped_run_resumes_with_a_longer_patience(cfg, known_answer_data,
                                                             tmp_path):
    """Patience only decides when to stop: an early-stopped run resumed with a larger patience
    goes on exactly as a run trained with that patience from the start."""
    def with_patience(p: int):
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=30,
                                                                  patience=p))

    short = train(with_patience(1), known_answer_data, tmp_path / "run")
    assert short.stopped.startswith("early stop") and len(short.epochs) < 30
    full = train(with_patience(8), known_answer_data, tmp_path / "full")
    resumed = train(with_patience(8), known_answer_data, tmp_path / "run", resume=True)
    assert [e["loss"] for e in resumed.epochs] == [e["loss"] for e in full.epochs]
    assert resumed.best_epoch == full.best_epoch and len(resumed.epochs) > len(short.epochs)


def test_resume_refuses_other_settings_and_a_missing_checkpoint(cfg, known_answer_data,
                                                                tmp_path):
    short = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1))
    train(short, known_answer_data, tmp_path / "run")
    other = dataclasses.replace(short, train=dataclasses.replace(short.train, lr=0.5))
    with pytest.raises(ConfigError, match=r"train\.lr"):
        train(other, known_answer_data, tmp_path / "run", resume=True)
    from liverec.errors import ArtifactError

    with pytest.raises(ArtifactError, match="no checkpoint"):
        train(short, known_answer_data, tmp_path / "nothing", resume=True)


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "w.safetensors"
    atomic_save({"a": torch.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises(ValueError):  # a non-tensor value fails inside save_file
        atomic_save({"a": torch.zeros(2), "b": "not a tensor"}, path)  # type: ignore[dict-item]
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_bf16_autocast_trains_on_cpu(cfg, known_answer_data, tmp_path):
    bf16 = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, amp="bf16", epochs=3))
    result = train(bf16, known_answer_data, tmp_path / "bf16")
    losses = [e["loss"] for e in result.epochs]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    with pytest.raises(ConfigError, match="train.amp"):
        train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, amp="fp8")),
              known_answer_data, tmp_path / "bad")


@pytest.mark.slow  # inductor compiles C++ kernels: tens of seconds on a small CPU
def test_torch_compile_trains_on_cpu(cfg, known_answer_data, tmp_path):
    compiled = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile=True,
                                                                  epochs=2))
    result = train(compiled, known_answer_data, tmp_path / "compiled")
    assert all(math.isfinite(e["loss"]) for e in result.epochs)
    assert result.best_valid["ndcg@10"] > 0


def _drop_from_checkpoint(path, keys: list[tuple[str, ...]]) -> None:
    """Rewrite a checkpoint as an older liverec would have written it: without ``keys``."""
    import json

    from safetensors import safe_open

    from liverec.train.checkpoint import _META_KEY

    with safe_open(str(path), "pt") as f:
        payload = json.loads(f.metadata()[_META_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for key in keys:
        node = payload["state"]["config"]
        for part in key[:-1]:
            node = node[part]
        del node[key[-1]]
    atomic_save(tensors, path, metadata={_META_KEY: json.dumps(payload)})


def test_resume_accepts_a_checkpoint_from_before_a_setting_existed(cfg, known_answer_data,
                                                                   tmp_path):
    """Settings added to liverec since the checkpoint count as their defaults (eval.protocol as
    masked, the one protocol before it existed); any other value is still a change."""
    two = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=2))
    train(two, known_answer_data, tmp_path / "run",
          callback=lambda epoch, _: "stop" if epoch == 1 else None)
    _drop_from_checkpoint(tmp_path / "run" / "checkpoint.safetensors",
                          [("eval", "protocol"), ("data", "synthetic", "kind")])
    other = dataclasses.replace(two, eval=dataclasses.replace(two.eval, protocol="repeat"))
    with pytest.raises(ConfigError, match=r"eval\.protocol"):
        train(other, known_answer_data, tmp_path / "run", resume=True)
    resumed = train(two, known_answer_data, tmp_path / "run", resume=True)
    assert [e["epoch"] for e in resumed.epochs] == [1, 2]
