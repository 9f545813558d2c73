"""The refit on validation events (``train.refit_epochs``): what it trains on, what it keeps,
what it reports, and that a failed refit loses nothing."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from liverec.config import DataConfig, EvalConfig, SyntheticConfig, TrainConfig
from liverec.errors import ConfigError
from liverec.evaluate.protocol import evaluate_model
from liverec.model.artifact import load_model


def test_refit_sequences_add_the_validation_event_and_never_the_test_event(known_answer_data):
    p = known_answer_data
    seqs, split = p.sequences, p.split
    refit = p.refit_sequences()
    train = p.train_sequences()
    users = np.flatnonzero(split.valid_pos > 0)
    assert len(refit) == len(users) == len(train)
    for u, r, t in zip(users, refit, train):
        whole = seqs.of(u)
        assert np.array_equal(r, whole[: split.test_pos[u]])  # everything before the test event
        assert np.array_equal(r[:-1], t) and r[-1] == whole[split.valid_pos[u]]


def test_refit_sequences_without_a_validation_event_are_the_training_part(known_answer_data):
    p = known_answer_data
    s = p.split
    none = dataclasses.replace(s, valid_pos=np.full_like(s.valid_pos, -1))
    q = dataclasses.replace(p, split=none)
    assert all(np.array_equal(a, b) for a, b in zip(q.refit_sequences(), q.train_sequences()))


@pytest.mark.parametrize("setting", [{"refit_epochs": -1}, {"refit_lr": 0.0},
                                     {"refit_lr": 1.5}, {"refit_lr": float("nan")}])
def test_refit_settings_are_checked(setting):
    with pytest.raises(ConfigError, match="refit"):
        TrainConfig(**setting)


def _cfg(tiny_run_config, **train):
    tc = dataclasses.replace(tiny_run_config.train, **{"epochs": 4, "windows": "all", **train})
    model = dataclasses.replace(tiny_run_config.model, d_model=16, d_ff=32)
    return dataclasses.replace(tiny_run_config, model=model, train=tc)


@pytest.fixture(scope="module")
def plain_and_refit(tiny_run_config, known_answer_data, tmp_path_factory):
    from liverec.train.loop import train

    root = tmp_path_factory.mktemp("refit")
    plain = train(_cfg(tiny_run_config), known_answer_data, root / "plain")
    refit = train(_cfg(tiny_run_config, refit_epochs=2), known_answer_data, root / "refit")
    return root, plain, refit


def test_refit_trains_the_validation_events_and_keeps_held_out_selection(plain_and_refit,
                                                                          known_answer_data):
    root, plain, refit = plain_and_refit
    r = refit.refit
    assert r["kept"] and r["why"] == "" and r["epochs"] == 2 and len(r["loss"]) == 2
    # windows "all": every validation event is one more target, nothing else changes
    assert r["added_targets"] == len(known_answer_data.eval_cases("valid")[2])
    assert r["lr"] == pytest.approx(tiny_run_config_lr(refit) * 0.5)
    # selection is the same held-out epoch and score as without the refit
    assert refit.best_epoch == plain.best_epoch
    assert refit.best_valid == pytest.approx(plain.best_valid)
    done = json.loads((root / "refit" / "complete.json").read_text())
    assert done["refit"] == {"epochs": 2, "kept": True, "why": ""}
    log = json.loads((root / "refit" / "train_log.json").read_text())
    assert log["refit"]["kept"] and log["best_valid"] == pytest.approx(plain.best_valid)
    a = load_file(str(root / "plain" / "model.safetensors"))
    b = load_file(str(root / "refit" / "model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the refit weights were written
    model, *_ = load_model(root / "refit")
    assert evaluate_model(model, known_answer_data, "test", ks=(1,))["hr@1"] > 0.9


def tiny_run_config_lr(result) -> float:
    cfg = json.loads((result.run_dir / "resolved_config.json").read_text())
    return cfg["train"]["lr"]


def test_a_nonfinite_refit_keeps_the_best_validation_weights(plain_and_refit, tiny_run_config,
                                                             known_answer_data, tmp_path,
                                                             monkeypatch):
    import liverec.train.loop as loop

    root, plain, _ = plain_and_refit
    real = loop._run_epoch
    base_lr = _cfg(tiny_run_config).train.lr

    def poison_the_refit(net, stream, opt, sched, tc, epoch, *args):
        row = real(net, stream, opt, sched, tc, epoch, *args)
        if tc.lr != base_lr:  # a refit epoch (it runs at refit_lr x lr)
            with torch.no_grad():
                next(net.parameters()).fill_(float("nan"))
        return row

    monkeypatch.setattr(loop, "_run_epoch", poison_the_refit)
    out = tmp_path / "run"
    result = loop.train(_cfg(tiny_run_config, refit_epochs=2), known_answer_data, out)
    assert not result.refit["kept"] and "non-finite" in result.refit["why"]
    assert json.loads((out / "complete.json").read_text())["refit"]["kept"] is False
    # what is on disk is exactly the held-out best, as trained without a refit
    a = load_file(str(root / "plain" / "model.safetensors"))
    b = load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    load_model(out)  # loadable, finite


def test_the_report_says_validation_is_not_held_out_after_a_refit(tiny_run_config, tmp_path):
    from liverec.data.pipeline import load_and_prepare
    from liverec.evaluate.report import evaluate_run
    from liverec.train.loop import train

    data = DataConfig(source="synthetic", cache=False,
                      synthetic=SyntheticConfig(n_users=200, n_items=40, n_categories=4,
                                                max_len=12))
    cfg = dataclasses.replace(_cfg(tiny_run_config, refit_epochs=1, epochs=2), data=data,
                              model=dataclasses.replace(tiny_run_config.model, n_items=0),
                              eval=EvalConfig(ks=(5, 10), baselines=("pop",)))
    result = train(cfg, load_and_prepare(data), tmp_path / "run")
    metrics = evaluate_run(tmp_path / "run")
    assert metrics["model"]["valid_held_out"] == pytest.approx(result.best_valid)
    assert metrics["training"]["refit"]["kept"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "refit on the validation events" in report and "not held out" in report


def test_tuning_trials_do_not_refit(tiny_run_config):
    from liverec.tune.search import TuneConfig, trial_config

    cfg = _cfg(tiny_run_config, refit_epochs=3)
    assert trial_config(cfg, 0, TuneConfig()).train.refit_epochs == 0


def test_a_repeat_aware_run_fits_its_mixture_on_held_out_validation_before_the_refit(
        tmp_path, monkeypatch):
    """The repeat-explore mixture is fitted on validation cases, so it is fitted with the kept
    weights before the refit trains on those cases; the run then serves both."""
    from tests.conftest import LISTENING

    import liverec
    from liverec.config import ModelConfig, RunConfig
    from liverec.data.prepare import prepare
    from liverec.data.synthetic import generate
    from liverec.model import repeat as repeat_mod
    from liverec.train.loop import train

    data_cfg = DataConfig(synthetic=LISTENING, cache=False)
    prepared = prepare(generate(LISTENING), data_cfg)
    cfg = RunConfig(
        name="listen", data=data_cfg,
        model=ModelConfig(n_items=LISTENING.n_items, d_model=16, n_layers=1, n_heads=1,
                          d_ff=32, max_len=20),
        train=TrainConfig(lr=1e-2, epochs=3, batch_size=64, warmup_steps=5, progress=False,
                          checkpoint=False, refit_epochs=1),
        eval=EvalConfig(protocol="repeat", baselines=("pop",)))
    fitted_with = []
    real = repeat_mod.RepeatExplore.fit

    def spy(self, histories, targets):
        fitted_with.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return real(self, histories, targets)

    monkeypatch.setattr(repeat_mod.RepeatExplore, "fit", spy)
    result = train(cfg, prepared, tmp_path / "run")
    monkeypatch.undo()
    assert result.refit["kept"] and len(fitted_with) == 1
    served = load_file(str(tmp_path / "run" / "model.safetensors"))
    # the mixture saw the kept (pre-refit) weights, the run serves the refit ones
    assert any(not torch.equal(fitted_with[0][k], served[k]) for k in served)
    rec = liverec.load(tmp_path / "run")
    top = rec.recommend([str(i) for i in prepared.vocab.ids[1:6]], k=5)
    assert len(top) == 5


FIT_TC = TrainConfig(lr=1e-2, batch_size=64, warmup_steps=0, progress=False)


def _fresh(tiny_model_config, data):
    from liverec.model import build_model

    torch.manual_seed(0)
    return build_model(dataclasses.replace(tiny_model_config, n_items=data.vocab.n_items))


def test_fit_refits_with_the_same_loss_and_hook_after_selection(tiny_model_config,
                                                                known_answer_data):
    """fit() (compression fine-tuning, distillation) refits like train(): after selection,
    with the caller's loss and after-step hook, over the training + validation events."""
    from liverec.train.loop import default_loss, fit

    plain = _fresh(tiny_model_config, known_answer_data)
    log_plain = fit(plain, known_answer_data, FIT_TC, 3)
    model = _fresh(tiny_model_config, known_answer_data)
    calls, hooks = [], []

    def loss_fn(m, batch):
        calls.append(1)
        return default_loss(m, batch)

    tc = dataclasses.replace(FIT_TC, refit_epochs=2)
    log_ = fit(model, known_answer_data, tc, 3, loss_fn=loss_fn,
               after_step=lambda m: hooks.append(m is model))
    steps = -(-len(known_answer_data.train_sequences()) // tc.batch_size)
    refit_steps = -(-len(known_answer_data.refit_sequences()) // tc.batch_size)
    assert len(calls) == len(hooks) == 3 * steps + 2 * refit_steps and all(hooks)
    assert log_["refit"]["kept"] and log_plain["refit"] == {}
    assert log_["best_epoch"] == log_plain["best_epoch"]
    assert log_["best_valid"] == pytest.approx(log_plain["best_valid"])
    a, b = plain.state_dict(), model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the model holds the refit weights
    assert not model.training


def test_a_pruned_model_stays_pruned_through_its_refit(tiny_model_config, known_answer_data):
    from liverec.compress.prune import apply_masks, magnitude_prune, sparsity_of
    from liverec.train.loop import fit

    model, masks = magnitude_prune(_fresh(tiny_model_config, known_answer_data), 0.5)
    tc = dataclasses.replace(FIT_TC, refit_epochs=1)
    log_ = fit(model, known_answer_data, tc, 2, after_step=lambda _: apply_masks(masks))
    assert log_["refit"]["kept"] and sparsity_of(model) >= 0.49
