"""The one training loop: AdamW/SGD, warm-up + cosine, clipping, early stopping on validation
(``train.monitor``) with the best weights kept, a progress bar and a training-curve plot.

Two entry points share it: ``train`` (a run directory: artifact, best weights on disk, resume
checkpoint, train_log.json and the plot, completion marker last) and ``fit`` (a model trained
in place with its best validation state kept in memory: fine-tuning pruned or distilled
models with a custom loss and an after-step hook, retraining, distillation). Both run on
``train.device`` with the same precision, compile, early-stopping and non-finite rules.

Hot path: the training matrices live on the device (train/batches.py: a gather per batch), the
loss is summed on the device and read once per epoch, validation runs on the device in large
batches (evaluate/protocol.py ``DeviceCases``) with one transfer at the end.

After early stopping, ``train`` can refit the kept weights on the validation events
(``train.refit_epochs``; ``_Run.refit``): a fixed number of epochs on each user's training events
plus their validation event, with no selection, the held-out validation score of the kept epoch
staying the run's ``best_valid``.

Also: an optional per-epoch callback (hyper-parameter search reports and prunes through it),
data-parallel training under torchrun (train/distributed.py), bf16 autocast, torch.compile,
and an atomic resume checkpoint after every epoch (``--resume``).

Numerics: a step whose loss or gradient norm is NaN/inf stops the run with a NonFiniteError
(``train.nonfinite="stop"``, the default) or is skipped, counted and reported in
train_log.json (``"skip"``; an epoch in which every step was skipped ends the run there,
with the best finite epoch kept).
How it is checked without a host synchronisation per step: under ``"stop"`` each step's
finiteness (loss and gradient norm) goes into a device-side "first bad step" counter that the
host reads every ``NONFINITE_CHECK_EVERY`` steps and at the end of the epoch; a bad step stops
the run at that check with the exact epoch and step in the message, and the weights touched
after it are discarded (``train`` leaves nothing loadable, ``fit`` restores its best state).
Under ``"skip"`` the decision must precede the optimiser step, so that policy reads the flag
every step (one synchronisation per step, the price of skipping).
An epoch is kept as best only when its validation metrics, its weights and its scores on
validation histories are all finite. The run directory gets its completion marker
(model/artifact.py) only at the end, once a finite epoch was kept: a run that crashes or
diverges leaves nothing loadable."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from liverec.config import EvalConfig, RunConfig, TrainConfig, monitor_metric, to_dict
from liverec.data.prepare import Prepared
from liverec.data.repeats import resolve_protocol
from liverec.errors import ConfigError, NonFiniteError
from liverec.evaluate.protocol import DeviceCases, evaluate_on_device
from liverec.logs import progress_enabled
from liverec.model.artifact import mark_complete, mark_incomplete, save_artifact
from liverec.model.health import nonfinite_parameters, score_check
from liverec.model.repeat import fit_repeat_for_run
from liverec.train.batches import TrainBatches, resolve_batch_and_patience, training_windows
from liverec.train.checkpoint import (
    CHECKPOINT,
    load_checkpoint,
    save_checkpoint,
    save_weights_atomic,
)
from liverec.train.curves import plot_curves
from liverec.train.distributed import (
    DistContext,
    RankBatches,
    broadcast_from_main,
    broadcast_state,
    env_context,
    main_first,
    peer_errors_as_one_line,
    process_group,
    select_device,
    sum_across_ranks,
    wrap_ddp,
)
from liverec.train.optim import build_optimizer, build_schedule
from liverec.train.setup import build_for_training

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced (also written to train_log.json)."""

    run_dir: Path
    best_epoch: int = 0
    best_valid: dict = field(default_factory=dict)
    epochs: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    time_to_best_s: float = 0.0
    n_parameters: int = 0
    n_trainable: int = 0
    finetune: dict = field(default_factory=dict)
    stopped: str = "max_epochs"
    nonfinite: str = "stop"  # the policy the run used
    skipped_steps: int = 0  # steps skipped for a NaN/inf loss or gradient ("skip" policy)
    refit: dict = field(default_factory=dict)  # the refit on validation events (when on)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def catalogue_with_counts(prepared: Prepared) -> pl.DataFrame:
    """The catalogue plus each item's training-interaction count (popularity fallback)."""
    counts = prepared.train_item_counts()
    return prepared.items.with_columns(pl.Series("count", counts[1:].astype(np.int64)))


LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
"""(model, {"input", "target"} batch) -> scalar loss; default the model's own training loss."""
StepHook = Callable[[torch.nn.Module], None]
"""Called with the model after every optimiser step (e.g. re-apply a pruning mask)."""
NONFINITE_CHECK_EVERY = 64  # steps between host reads of the non-finite flag ("stop" policy)


def default_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch)


EpochCallback = Callable[[int, dict], "str | None"]
"""Called (on rank 0) after every evaluated epoch with (epoch, row); the row holds "loss",
"valid" (validation metrics) and "elapsed_s". A non-empty string return stops training with
that string as the reason (e.g. a pruned hyper-parameter trial)."""

# settings that may change between a run and its --resume (they do not change the maths)
# settings a resumed run may change: how it runs, and when it stops (a larger patience continues
# an early-stopped run exactly as a run with that patience would have gone on)
RESUMABLE_CHANGES = frozenset({"progress", "num_threads", "device", "compile", "max_time_s",
                               "patience", "min_patience_steps"})
# how a run written before a setting existed behaved, where that is not the setting's default:
# before eval.protocol every run used the masked protocol ("auto" resolves per dataset)
BEFORE_SETTINGS = {"eval": {"protocol": "masked"}}
CHECK_HISTORIES = 64  # validation histories whose full-catalogue scores must be finite


class _StopNonFinite(str):
    """A stop reason (broadcast from rank 0) that every rank turns into NonFiniteError."""


def _step_error(message: str, epoch: int, step: int, what: str) -> NonFiniteError:
    """The NonFiniteError of a NaN/inf loss or gradient norm at ``epoch``/``step`` (under
    ``train.nonfinite="stop"``); ``fit`` reads the attributes."""
    exc = NonFiniteError(message)
    exc.epoch, exc.step, exc.what = epoch, step, what  # type: ignore[attr-defined]
    return exc


def train(cfg: RunConfig, prepared: Prepared, out_dir: Path,
          init_state: dict[str, torch.Tensor] | None = None,
          callback: EpochCallback | None = None, resume: bool = False) -> TrainResult:
    """Train a model on ``prepared`` and write the run directory ``out_dir``.

    Under torchrun (WORLD_SIZE > 1) every rank calls this; the ranks split each global batch
    (train/distributed.py) and rank 0 alone evaluates and writes ``out_dir``.

    Args:
        cfg: the run configuration (``model.n_items`` is filled in from the data).
        prepared: prepared data with a validation split.
        out_dir: the run directory (created).
        init_state: optional weights to start from (fine-tuning).
        callback: optional per-epoch hook (see ``EpochCallback``); None changes nothing.
        resume: continue from ``out_dir/checkpoint.safetensors`` (same settings).

    Returns:
        A TrainResult (complete on rank 0); the model at its best validation epoch is in
        ``out_dir``, which gets its completion marker (``complete.json``) last. ``eval.protocol``
        "auto" is resolved from the training split's repeat rate first (data/repeats.py; the
        choice is in config.json as ``protocol_choice``); under "repeat" the repeat-explore
        mixture is fitted on validation after training (model/repeat.py: ``repeat.json``).

    Raises:
        NonFiniteError: a NaN/inf loss or gradient (``train.nonfinite="stop"``), a validated
            epoch with non-finite metrics, weights or scores (``"stop"``), or no finite epoch
            at all; ``out_dir`` is then left without its marker, so not loadable.
        ConfigError: an unknown setting, or no epoch validated before the run stopped.
    """
    seed_everything(cfg.train.seed)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    # eval.protocol "auto": masked or repeat-aware from the training split's repeat rate
    cfg, protocol_choice = resolve_protocol(cfg, prepared)
    # train.min_steps_per_epoch, train.min_patience_steps: a smaller batch and a longer patience
    # for a small dataset
    cfg, batch_choice = resolve_batch_and_patience(cfg, len(training_windows(
        prepared.train_sequences(), cfg.model.max_len, cfg.train.windows)))
    tc = cfg.train
    ctx = env_context()
    device = select_device(tc.device, ctx)
    with process_group(ctx, device):
        with main_first(ctx):  # rank 0 fills any on-disk text-vector cache first
            cfg, model, param_stats = build_for_training(cfg, prepared, out_dir, init_state)
        model.to(device)
        batches = TrainBatches(prepared.train_sequences(), cfg.model.max_len, tc.batch_size,
                               tc.seed, device=device, windows=tc.windows)
        opt = build_optimizer(model, tc)
        sched = build_schedule(opt, tc, total_steps=len(batches) * tc.epochs)
        run = _Run(cfg, prepared, out_dir, model, batches, opt, sched, ctx, device, TrainResult(
            run_dir=out_dir, n_parameters=param_stats["n_parameters"],
            n_trainable=param_stats["n_trainable"], finetune=param_stats,
            nonfinite=tc.nonfinite))
        run.on_best = lambda m: save_weights_atomic(m, out_dir / "model.safetensors")
        if resume:
            if ctx.is_main:
                mark_incomplete(out_dir)
            run.restore(out_dir / CHECKPOINT)
        elif ctx.is_main:
            # no completion marker yet: finish() writes it once a finite epoch was kept
            save_artifact(out_dir, cfg, model, catalogue_with_counts(prepared), complete=None,
                          extra={"protocol_choice": protocol_choice,
                                 "batch_choice": batch_choice})
        if ctx.rank:  # other dropout masks than rank 0's (rank 0 keeps the one-process stream)
            torch.manual_seed(tc.seed + 1000 * run.epoch + ctx.rank)
        net = wrap_ddp(model, ctx, device)
        if tc.compile:
            net = torch.compile(net)
        with peer_errors_as_one_line(ctx):
            run.loop(net, callback)
            kept = broadcast_from_main(run.result.best_epoch > 0, ctx)
            if ctx.is_main and cfg.eval.protocol == "repeat" and kept:
                # fitted on held-out validation cases, so before any refit trains on them
                fit_repeat_for_run(out_dir, model, prepared)  # repeat-aware mode: repeat.json
            if tc.refit_epochs and kept and _may_refit(run.result.stopped):
                run.refit(net)
        if ctx.is_main:
            run.finish()
    return run.result


def _may_refit(stopped: str) -> bool:
    """Whether a run that ended this way gets its refit on validation events: not after a
    divergence (every step of an epoch non-finite under ``train.nonfinite="skip"``)."""
    return not stopped.startswith("diverged")


def fit_device(tc: TrainConfig) -> torch.device:
    """The device ``fit`` trains on (``train.device`` of a single process)."""
    return select_device(tc.device, DistContext())


def fit(model: torch.nn.Module, prepared: Prepared, tc: TrainConfig, epochs: int | None = None,
        loss_fn: LossFn = default_loss, after_step: StepHook | None = None,
        ks: tuple[int, ...] = (10, 20), callback: EpochCallback | None = None) -> dict:
    """Train ``model`` in place with the shared loop and restore its best validation state.

    The model as given is epoch 0: it is evaluated first and stays the best state unless a
    later epoch beats it on ``train.monitor`` (among ``ks``). Runs on ``train.device`` and moves
    the model back to where it was; nothing is written to disk.

    Args:
        model: a sequence model (``forward(batch)``, ``score``, ``cfg.max_len``).
        prepared: data with a validation split (the model's vocabulary).
        tc: the training settings (lr, batch size, schedule, clipping, seed, device, bf16,
            compile, patience, eval_every, nonfinite, max_time_s, and refit_epochs /
            refit_lr: the kept epoch then refits on the validation events with the same
            ``loss_fn`` and ``after_step``, as ``train`` does).
        epochs: passes over the training sequences (default ``tc.epochs``; 0 = evaluate only).
        loss_fn: ``(model, batch) -> loss`` (default the model's own training loss).
        after_step: called with the model after every optimiser step.
        ks: the validation cut-offs (``train.monitor`` must name one of them).
        callback: optional per-epoch hook (see ``EpochCallback``).

    Returns:
        {"epochs": [...], "best_epoch": int, "best_valid": metrics, "stopped": "" or why it
        ended early (a non-finite step or epoch, early stopping, the time budget),
        "skipped_steps": int, "time_to_best_s" and "wall_s" (seconds from the first epoch),
        "refit": the refit's record ({} when there was none)}; the model holds the refit
        weights when ``refit["kept"]``, else the best validation state.

    Raises:
        ConfigError: ``train.monitor`` is not among ``ks``, or an unknown device.
    """
    epochs = tc.epochs if epochs is None else epochs
    tc = dataclasses.replace(tc, epochs=max(epochs, 1))
    cfg = RunConfig(model=model.cfg, train=tc, eval=EvalConfig(ks=tuple(ks)))
    cfg, _ = resolve_batch_and_patience(cfg, len(training_windows(
        prepared.train_sequences(), model.cfg.max_len, tc.windows)))
    tc = cfg.train
    seed_everything(tc.seed)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    home = next(model.parameters()).device
    device = fit_device(tc)
    model.to(device)
    batches = TrainBatches(prepared.train_sequences(), model.cfg.max_len, tc.batch_size, tc.seed,
                           device=device, windows=tc.windows)
    opt = build_optimizer(model, tc)
    sched = build_schedule(opt, tc, total_steps=len(batches) * tc.epochs)
    run = _Run(cfg, prepared, None, model, batches, opt, sched, DistContext(), device,
               TrainResult(run_dir=Path(), nonfinite=tc.nonfinite), loss_fn=loss_fn,
               after_step=after_step)
    best_state: dict[str, torch.Tensor] = {}

    def keep(m: torch.nn.Module) -> None:
        best_state.clear()
        best_state.update({k: v.detach().clone() for k, v in m.state_dict().items()})

    run.on_best = keep
    r = run.result
    r.best_valid = run.evaluate()
    keep(model)
    stopped, finite = "", True
    if epochs > 0:
        net = torch.compile(model) if tc.compile else model
        try:
            run.loop(net, callback)
            stopped = "" if r.stopped == "max_epochs" else r.stopped
        except NonFiniteError as exc:
            finite = False
            if hasattr(exc, "step"):  # a step's loss or gradient (see _step_error)
                stopped = (f"non-finite loss or gradient at epoch {exc.epoch} step {exc.step} "
                           f"({exc.what}); the best finite state (epoch {r.best_epoch}) was kept")
            else:  # a validated epoch's metrics, weights or scores
                stopped = f"{exc}; the best finite state (epoch {r.best_epoch}) was kept"
        if stopped:
            log.warning("fit stopped: %s", stopped)
        if tc.refit_epochs and r.best_epoch > 0 and finite and _may_refit(r.stopped):
            run.refit(net, kept=best_state)  # leaves the refit (or, failed, the kept) weights
            best_state = {}
    if best_state:
        model.load_state_dict(best_state)
    model.to(home)
    model.eval()
    return {"epochs": r.epochs, "best_epoch": r.best_epoch, "best_valid": r.best_valid,
            "stopped": stopped, "skipped_steps": r.skipped_steps,
            "time_to_best_s": r.time_to_best_s, "wall_s": r.wall_s, "refit": r.refit}


@dataclass
class _Run:
    """One training run's moving parts and the state carried from epoch to epoch."""

    cfg: RunConfig
    prepared: Prepared
    out_dir: Path | None  # None: fit(), nothing written (the best state kept by on_best)
    model: torch.nn.Module
    batches: TrainBatches
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    ctx: DistContext
    device: torch.device
    result: TrainResult
    epoch: int = 0  # epochs done
    bad_epochs: int = 0
    elapsed_before: float = 0.0  # wall time of the run before a --resume
    best_check: dict = field(default_factory=dict)  # the kept epoch's finite-score check
    loss_fn: LossFn = default_loss
    after_step: StepHook | None = None
    on_best: Callable[[torch.nn.Module], None] | None = None  # keeps the best weights
    _cases: DeviceCases | None = None  # the validation cases, on the device (built once)

    def loop(self, net: torch.nn.Module, callback: EpochCallback | None) -> None:
        tc, start = self.cfg.train, time.perf_counter() - self.elapsed_before
        stream, stop = RankBatches(self.batches, self.ctx), None
        for epoch in range(self.epoch + 1, tc.epochs + 1):
            row = _run_epoch(net, stream, self.opt, self.sched, tc, epoch, self.ctx, self.device,
                             self.loss_fn, self.after_step, self.model)
            self.result.skipped_steps += row["skipped_steps"]
            stop = self.end_epoch(row, epoch, start, callback) if self.ctx.is_main else None
            stop = broadcast_from_main(stop, self.ctx)
            if stop:
                self.result.stopped = str(stop)
                break
        if self.ctx.is_main:
            self.result.wall_s = time.perf_counter() - start
            if self.out_dir is not None:
                _write_log(self.result, self.out_dir)
        if isinstance(stop, _StopNonFinite):
            where = "" if self.out_dir is None else f" and {self.out_dir} is not loadable"
            raise NonFiniteError(f"{stop}; training stopped{where} (lower train.lr, or set "
                                 "train.nonfinite=skip to skip such steps)")

    def refit(self, net: torch.nn.Module, kept: dict[str, torch.Tensor] | None = None) -> None:
        """Every rank: continue the kept weights for ``train.refit_epochs`` epochs on the
        training events plus each user's validation event (``Prepared.refit_sequences``).

        Why: under leave-one-out the test step's input ends with the validation event, which
        the early-stopped model never trained on (the baselines of the report are fitted on the
        same test histories). Model selection stays on held-out validation: the epoch count
        and weights are fixed before the refit, which only adds ``refit_epochs`` epochs with a
        fresh optimiser and a cosine decay from ``refit_lr`` x ``lr`` (no selection, no early
        stopping). The "refit on train + validation after model selection" of standard
        practice (e.g. scikit-learn's ``refit``), done as a continuation rather than from
        scratch; measured in benchmarks/results/experiments_issue15.md.

        ``kept``: the kept weights (``fit``, in memory); None = ``train``'s
        ``model.safetensors`` in the run directory, which rank 0 reads and then rewrites.

        The refit weights stay unless a step, a weight or a validation-history score is not
        finite: then the kept weights stay (on disk and in ``model``) and
        ``result.refit["why"]`` says what failed. ``result.best_valid`` stays the held-out
        score from before the refit."""
        tc, ctx, out_dir = self.cfg.train, self.ctx, self.out_dir
        weights = None if out_dir is None else out_dir / "model.safetensors"

        def restore_kept() -> None:
            self.model.load_state_dict(kept if kept is not None else
                                       load_file(str(weights), device=str(self.device)))

        if ctx.is_main:
            restore_kept()
        broadcast_state(self.model, ctx)
        seqs = self.prepared.refit_sequences()
        batches = TrainBatches(seqs, self.cfg.model.max_len, tc.batch_size, tc.seed + 1,
                               device=self.device, windows=tc.windows)
        rtc = dataclasses.replace(tc, lr=tc.lr * tc.refit_lr, warmup_steps=0,
                                  schedule="cosine", epochs=tc.refit_epochs)
        opt = build_optimizer(self.model, rtc)
        sched = build_schedule(opt, rtc, total_steps=len(batches) * rtc.epochs)
        stream, rows, why = RankBatches(batches, ctx), [], ""
        t0 = time.perf_counter()
        try:
            for epoch in range(1, rtc.epochs + 1):
                row = _run_epoch(net, stream, opt, sched, rtc, epoch, ctx, self.device,
                                 self.loss_fn, self.after_step, self.model)
                rows.append(row)
                if ctx.is_main:
                    log.info("refit epoch %d/%d loss %.4f", epoch, rtc.epochs, row["loss"] or 0)
                if row["skipped_steps"]:
                    why = f"refit epoch {epoch}: {row['skipped_steps']} non-finite steps"
                    break
        except NonFiniteError as exc:  # raised by _run_epoch through _step_error
            why = f"refit epoch {exc.epoch} step {exc.step}: {exc.what}"
        if ctx.is_main:
            if not why:
                check, why = self._health_weights()
            if why:
                log.warning("refit not kept (%s): the best validation weights stay", why)
                restore_kept()
            else:
                self.best_check = check
                if weights is not None:
                    save_weights_atomic(self.model, weights)
            self.result.refit = {
                "epochs": rtc.epochs, "lr": rtc.lr, "targets": batches.n_targets,
                "added_targets": batches.n_targets - self.batches.n_targets,
                "loss": [r["loss"] for r in rows], "wall_s": time.perf_counter() - t0,
                "kept": not why, "why": why}
            self.result.wall_s += self.result.refit["wall_s"]
            if out_dir is not None:
                _write_log(self.result, out_dir)

    def finish(self) -> None:
        """Rank 0: mark the run directory complete, once a finite epoch's weights are in it."""
        r = self.result
        if r.best_epoch == 0 and not any("valid" in e for e in r.epochs):
            raise ConfigError(f"training stopped before any validation ({r.stopped}), so no "
                              f"epoch was kept and {self.out_dir} is not loadable: raise "
                              "train.max_time_s or lower train.eval_every")
        if r.best_epoch == 0:
            raise NonFiniteError(f"training kept no epoch: none had finite validation scores "
                                 f"({r.stopped}); {self.out_dir} is not loadable")
        refit = {"refit": {k: r.refit[k] for k in ("epochs", "kept", "why")}} if r.refit else {}
        mark_complete(self.out_dir, by="train", best_epoch=r.best_epoch,
                      skipped_steps=r.skipped_steps, score_check=self.best_check, **refit)

    def end_epoch(self, row: dict, epoch: int, start: float,
                  callback: EpochCallback | None) -> str | None:
        """Rank 0: validate, keep the best weights, checkpoint; the reason to stop, if any."""
        tc, result = self.cfg.train, self.result
        if row["steps"] and row["skipped_steps"] == row["steps"]:
            # "skip" policy: the weights are beyond repair; keep the best finite epoch (if any)
            row["nonfinite"] = f"all {row['steps']} steps had a non-finite loss or gradient"
            result.epochs.append(row)
            self.epoch = epoch
            return f"diverged: epoch {epoch}: {row['nonfinite']}"
        if epoch % tc.eval_every == 0 or epoch == tc.epochs:
            t0 = time.perf_counter()
            valid = self.evaluate()
            row.update(valid_s=time.perf_counter() - t0, valid=valid)
            row["elapsed_s"] = time.perf_counter() - start
            key = monitor_metric(self.cfg)  # train.monitor (checked against eval.ks)
            check, broken = self._health(valid)
            if broken:
                row["nonfinite"] = broken
                self.bad_epochs += 1
                log.warning("epoch %d loss %s: %s; not kept", epoch, row["loss"], broken)
                if tc.nonfinite == "stop":
                    result.epochs.append(row)
                    self.epoch = epoch
                    return _StopNonFinite(f"epoch {epoch}: {broken}")
            elif valid[key] > result.best_valid.get(key, -1.0):
                self.bad_epochs = 0
                result.best_epoch, result.best_valid = epoch, valid
                result.time_to_best_s = row["elapsed_s"]
                self.best_check = check
                if self.on_best is not None:
                    self.on_best(self.model)
            else:
                self.bad_epochs += 1
            if not broken:
                log.info("epoch %d loss %.4f valid %s %.4f (%.0fs)", epoch, row["loss"], key,
                         valid[key], row["elapsed_s"])
        row.setdefault("elapsed_s", time.perf_counter() - start)
        result.epochs.append(row)
        self.epoch = epoch
        if tc.checkpoint and self.out_dir is not None:
            save_checkpoint(self.out_dir / CHECKPOINT, self.model, self.opt, self.sched,
                            self._state(row["elapsed_s"]))
        reason = callback(epoch, row) if callback is not None and "valid" in row else None
        if reason:
            return reason
        if self.bad_epochs >= tc.patience:
            return f"early stop: no improvement in {tc.patience} evaluations"
        if tc.max_time_s and time.perf_counter() - start > tc.max_time_s:
            return f"time budget {tc.max_time_s:.0f}s reached"
        return None

    def evaluate(self) -> dict:
        """Validation metrics of the model: on the device, the cases moved there once."""
        if self._cases is None:
            self._cases = DeviceCases.build(self.prepared, "valid", self.model.cfg.max_len,
                                            self.device)
        return evaluate_on_device(self.model, self._cases, self.cfg.eval.ks,
                                  self.cfg.eval.batch_size)

    def _health(self, valid: dict) -> tuple[dict, str]:
        """(finite-score check, what is not finite or "") of the model after an epoch."""
        bad_metrics = sorted(k for k, v in valid.items()
                             if isinstance(v, float) and not math.isfinite(v))
        if bad_metrics:
            return {}, f"non-finite validation metrics {bad_metrics}"
        return self._health_weights()

    def _health_weights(self) -> tuple[dict, str]:
        """(finite-score check, what is not finite or "") of the weights and the scores on
        validation histories."""
        bad_params = nonfinite_parameters(self.model)
        if bad_params:
            more = f" (and {len(bad_params) - 3} more)" if len(bad_params) > 3 else ""
            return {}, f"non-finite weights in {', '.join(bad_params[:3])}{more}"
        histories = self.prepared.eval_cases("valid")[1][:CHECK_HISTORIES]
        check = score_check(self._evaluator(), histories)
        return check.to_dict(), "" if check.ok else check.describe()

    def _evaluator(self) -> torch.nn.Module:
        return self.model if self.device.type == "cpu" else _OnDevice(self.model, self.device)

    def _state(self, elapsed: float) -> dict:
        r = self.result
        return {"epoch": self.epoch, "elapsed_s": elapsed, "bad_epochs": self.bad_epochs,
                "best_epoch": r.best_epoch, "best_valid": r.best_valid,
                "time_to_best_s": r.time_to_best_s, "epochs": r.epochs,
                "batch_rng": self.batches.rng.bit_generator.state, "config": to_dict(self.cfg)}

    def restore(self, path: Path) -> None:
        """Continue from a checkpoint written with the same settings."""
        state = load_checkpoint(path, self.model, self.opt, self.sched)
        # a setting added to liverec after the checkpoint was written is absent from it: it ran
        # as that setting's default (or BEFORE_SETTINGS) behaves, so that is filled in first
        saved = _fill_defaults(_fill_defaults(state["config"], BEFORE_SETTINGS),
                               to_dict(RunConfig()))
        now = to_dict(self.cfg)
        changed = sorted(f"{section}.{k}" for section in now for k in
                         (now[section] if isinstance(now[section], dict) else {})
                         if saved.get(section, {}).get(k) != now[section][k]
                         and not (section == "train" and k in RESUMABLE_CHANGES))
        if changed:
            raise ConfigError(f"--resume: {path} was written with other settings: {changed}")
        self.batches.rng.bit_generator.state = state["batch_rng"]
        self.epoch, self.bad_epochs = state["epoch"], state["bad_epochs"]
        self.elapsed_before = state["elapsed_s"]
        r = self.result
        r.best_epoch, r.best_valid = state["best_epoch"], state["best_valid"]
        r.time_to_best_s, r.epochs = state["time_to_best_s"], state["epochs"]
        log.info("resuming %s after epoch %d", self.out_dir, self.epoch)


def _fill_defaults(saved: dict, defaults: dict) -> dict:
    """``saved`` with every key it lacks taken from ``defaults``, recursively (nested dicts)."""
    out = dict(saved)
    for k, v in defaults.items():
        if k not in out:
            out[k] = v
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = _fill_defaults(out[k], v)
    return out


class _OnDevice(torch.nn.Module):
    """Evaluation view of a model on an accelerator: CPU sequences in, CPU scores out."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model, self.cfg, self.device = model, model.cfg, device

    def score(self, seqs: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        ids = None if item_ids is None else item_ids.to(self.device)
        return self.model.score(seqs.to(self.device), ids).float().cpu()


def _run_epoch(net: torch.nn.Module, stream: RankBatches, opt, sched, tc, epoch: int,
               ctx: DistContext, device: torch.device, loss_fn: LossFn = default_loss,
               after_step: StepHook | None = None,
               model: torch.nn.Module | None = None) -> dict:
    """One pass over the batches; the loss is summed on the device and read once at the end.

    ``net`` is what computes the loss (DDP / compiled wrapper), ``model`` the plain module that
    ``after_step`` receives (default ``net``)."""
    net.train()
    model = net if model is None else model
    t0, n = time.perf_counter(), 0
    total = torch.zeros((), dtype=torch.float32, device=device)  # sum of loss x sequences
    first_bad = torch.zeros((), dtype=torch.int64, device=device)  # 0 = none yet
    bad_loss = torch.zeros((), dtype=torch.float32, device=device)  # its loss value
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                if tc.bf16 or tc.amp == "bf16" else contextlib.nullcontext())
    show = progress_enabled(tc.progress) and ctx.is_main
    bar = tqdm(stream, desc=f"epoch {epoch}", leave=False, unit="batch", dynamic_ncols=True,
               disable=not show)
    skip_policy = tc.nonfinite == "skip"
    clip = tc.grad_clip if tc.grad_clip > 0 else float("inf")
    skipped = steps = 0
    for step, (batch, weight, n_seqs) in enumerate(bar, 1):
        if batch["input"].device != device:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            loss = loss_fn(net, batch)
        opt.zero_grad(set_to_none=True)
        # weight: this rank's share of the global batch, so DDP's mean gradient is the
        # global-batch gradient (exactly 1.0 when training alone)
        (loss if weight == 1.0 else loss * weight).backward()
        # the norm of the (all-reduced) gradient; clipping only when grad_clip > 0
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        ok = torch.isfinite(loss.detach()) & torch.isfinite(norm)  # device bool, no sync
        steps += 1
        if skip_policy:  # the decision precedes the step: one host read per step
            # every rank takes the same decision (a rank's NaN loss alone must not split them)
            if sum_across_ranks(float(not bool(ok)), ctx):
                opt.zero_grad(set_to_none=True)
                skipped += 1
                sched.step()  # the schedule follows the batches, taken or skipped
                continue
        else:
            new = (first_bad == 0) & ~ok
            first_bad = torch.where(new, step, first_bad)
            bad_loss = torch.where(new, loss.detach().float(), bad_loss)
        opt.step()
        sched.step()
        if after_step is not None:
            after_step(model)
        total += loss.detach().float() * (weight / ctx.world_size * n_seqs)
        n += n_seqs
        if not skip_policy and (step % NONFINITE_CHECK_EVERY == 0 or step == len(stream)):
            _raise_nonfinite(first_bad, bad_loss, epoch, ctx)
        if show and step % 16 == 0:
            bar.set_postfix(loss=f"{float(total) / max(n, 1):.4f}",
                            seq_per_s=f"{n / (time.perf_counter() - t0):.0f}")
    if not skip_policy:
        _raise_nonfinite(first_bad, bad_loss, epoch, ctx)
    total_f = float(total)  # the epoch's one read of the loss
    train_s = time.perf_counter() - t0
    if skipped:
        log.warning("epoch %d: skipped %d of %d steps with a non-finite loss or gradient",
                    epoch, skipped, steps)
    total_f = sum_across_ranks(total_f, ctx)
    # loss: the mean over the steps taken (None when every step was skipped)
    return {"epoch": epoch, "loss": total_f / n if n else None, "train_s": train_s,
            "seq_per_s": n / max(train_s, 1e-9), "lr": sched.get_last_lr()[0],
            "steps": steps, "skipped_steps": skipped}


def _raise_nonfinite(first_bad: torch.Tensor, bad_loss: torch.Tensor, epoch: int,
                     ctx: DistContext) -> None:
    """Read the device-side flag (one synchronisation) and stop at the first bad step."""
    step = int(first_bad)
    if not sum_across_ranks(float(step > 0), ctx):
        return
    value = float(bad_loss)
    what = ("non-finite loss or gradient on another rank" if step == 0 else
            f"non-finite loss {value}" if not math.isfinite(value) else
            "non-finite gradient norm")
    raise _step_error(f"epoch {epoch} step {step}: {what}; training stopped, nothing "
                      "loadable was written (lower train.lr, or set train.nonfinite=skip to "
                      "skip such steps)", epoch, step, what)


def _write_log(result: TrainResult, out_dir: Path) -> None:
    payload = dataclasses.asdict(result)
    payload["run_dir"] = str(result.run_dir)
    (out_dir / "train_log.json").write_text(json.dumps(payload, indent=2) + "\n")
    try:
        plot_curves(result.epochs, out_dir / "training_curve.png")
    except (ImportError, ValueError, OSError) as exc:
        log.warning("could not draw the training curve: %s", exc)
