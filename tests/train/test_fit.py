"""The one training loop's in-memory entry point ``fit`` (fine-tuning, retraining,
distillation) and the device-side hot path (device batches, the delayed non-finite check)."""

import dataclasses

import numpy as np
import pytest
import torch

from liverec.config import TrainConfig
from liverec.errors import ConfigError, NonFiniteError
from liverec.model import build_model
from liverec.model.artifact import load_model
from liverec.train.batches import TrainBatches
from liverec.train.distributed import DistContext, RankBatches
from liverec.train.loop import NONFINITE_CHECK_EVERY, default_loss, fit, train

TC = TrainConfig(lr=1e-2, batch_size=64, warmup_steps=0, progress=False)


def nan_at(step_no: int):
    calls: list[int] = []

    def loss_fn(m, batch):
        calls.append(1)
        loss = default_loss(m, batch)
        return loss * float("nan") if len(calls) == step_no else loss

    return loss_fn


def test_fit_uses_the_loss_and_the_hook_and_keeps_the_best_state(tiny_model_config,
                                                                 known_answer_data):
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(tiny_model_config,
                                            n_items=known_answer_data.vocab.n_items))
    losses, hooks = [], []

    def loss_fn(m, batch):
        losses.append(1)
        return default_loss(m, batch)

    log_ = fit(model, known_answer_data, TC, 3, loss_fn=loss_fn,
               after_step=lambda m: hooks.append(m is model))
    steps = -(-len(known_answer_data.train_sequences()) // TC.batch_size)
    assert len(losses) == len(hooks) == 3 * steps and all(hooks)
    assert [e["epoch"] for e in log_["epochs"]] == [1, 2, 3] and log_["stopped"] == ""
    best = max(log_["epochs"], key=lambda e: e["valid"]["ndcg@10"])
    assert log_["best_epoch"] == best["epoch"] and log_["best_valid"] == best["valid"]
    assert not model.training  # returned in eval mode, at its best state
    from liverec.evaluate.protocol import evaluate_model

    assert evaluate_model(model, known_answer_data, "valid", (10, 20)) == log_["best_valid"]


def test_fit_with_zero_epochs_only_evaluates(trained_run, known_answer_data):
    model = load_model(trained_run[0])[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log_ = fit(model, known_answer_data, TC, 0)
    assert log_["best_epoch"] == 0 and log_["epochs"] == [] and log_["best_valid"]["ndcg@10"] > 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_delayed_nonfinite_check_still_names_the_bad_step(trained_run, known_answer_data):
    """"stop" reads the device-side flag every NONFINITE_CHECK_EVERY steps, yet the report
    names the exact step, and fit restores the best (here: the given) state."""
    model = load_model(trained_run[0])[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tc = dataclasses.replace(TC, batch_size=2, lr=1e-3)  # 150 steps per epoch
    bad = NONFINITE_CHECK_EVERY + 5
    log_ = fit(model, known_answer_data, tc, 2, loss_fn=nan_at(bad))
    assert log_["stopped"].startswith(f"non-finite loss or gradient at epoch 1 step {bad} "
                                      "(non-finite loss nan)")
    assert log_["best_epoch"] == 0 and log_["epochs"] == []
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_train_stops_at_the_bad_step_and_leaves_nothing_loadable(tiny_run_config,
                                                                 known_answer_data, tmp_path,
                                                                 monkeypatch):
    import liverec.model.sasrec as sasrec

    real, calls = sasrec.SASRec.forward, []

    def forward(self, batch):
        calls.append(1)
        loss = real(self, batch)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(sasrec.SASRec, "forward", forward)
    with pytest.raises(NonFiniteError, match="epoch 1 step 3: non-finite loss nan"):
        train(tiny_run_config, known_answer_data, tmp_path / "run")
    with pytest.raises(Exception, match="incomplete"):
        load_model(tmp_path / "run")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_fit_distill_and_retrain_honour_train_device(trained_run, known_answer_data):
    from liverec.compress.distill import distill

    model = load_model(trained_run[0])[0]
    tc = dataclasses.replace(TC, device="cuda")
    with pytest.raises(ConfigError, match="train.device=cuda but torch sees no CUDA device"):
        fit(model, known_answer_data, tc, 1)
    with pytest.raises(ConfigError, match="train.device=cuda"):
        distill(model, known_answer_data, model.cfg, tc, 1)


def test_device_batches_match_the_host_gather(known_answer_data):
    """Batches gathered on the device == rows of the host matrices, in the seed's order."""
    seqs = known_answer_data.train_sequences()
    a = TrainBatches(seqs, 16, 32, seed=3)
    b = TrainBatches(seqs, 16, 32, seed=3)
    got = list(RankBatches(a, DistContext()))
    want = b._batch_order()
    assert len(got) == len(want) == len(a)
    for (batch, weight, n), idx in zip(got, want, strict=True):
        width = int(b.lengths[idx].max())
        assert weight == 1.0 and n == len(idx)
        assert np.array_equal(batch["input"].numpy(), b.inputs[idx, -width:])
        assert np.array_equal(batch["target"].numpy(), b.targets[idx, -width:])


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_fused_optimiser_step_matches_the_plain_one(tiny_model_config, name):
    """build_optimizer's fused Adam/AdamW (CPU and CUDA) == torch's per-tensor step."""
    from liverec.train.optim import build_optimizer, can_fuse, param_groups

    torch.manual_seed(0)
    a = build_model(tiny_model_config)
    b = build_model(tiny_model_config)
    b.load_state_dict(a.state_dict())
    tc = dataclasses.replace(TC, optimizer=name, weight_decay=0.01)
    fused = build_optimizer(a, tc)
    assert can_fuse(a) and fused.defaults["fused"]
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    groups = param_groups(b, tc.weight_decay)
    if name == "adam":
        for g in groups:
            g["weight_decay"] = g["weight_decay"] and tc.weight_decay
    plain = cls(groups, lr=tc.lr, betas=(0.9, 0.98), foreach=False)
    for step in range(3):
        for model, opt in ((a, fused), (b, plain)):
            torch.manual_seed(step)
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            opt.step()
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(x, y, atol=1e-6, rtol=1e-5), k


def test_bf16_autocast_loss_agrees_with_fp32(tiny_model_config, known_answer_data):
    """train.bf16 (autocast) computes the same training loss as fp32 eager, within bf16
    rounding, on the same batch."""
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(tiny_model_config,
                                            n_items=known_answer_data.vocab.n_items)).eval()
    batch = next(iter(TrainBatches(known_answer_data.train_sequences(), 16, 64, seed=0)))
    with torch.no_grad():
        fp32 = float(model(batch))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = float(model(batch))
    assert abs(bf16 - fp32) <= 0.02 * abs(fp32)
