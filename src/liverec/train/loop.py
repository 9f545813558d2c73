"""The training loop: AdamW/SGD, warm-up + cosine, clipping, early stopping on validation
NDCG@10 with the best checkpoint kept on disk, a progress bar and a training-curve plot."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from liverec.config import RunConfig
from liverec.data.prepare import Prepared
from liverec.evaluate.protocol import evaluate_model
from liverec.model.artifact import save_artifact, save_weights
from liverec.train.batches import TrainBatches
from liverec.train.curves import plot_curves
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def catalogue_with_counts(prepared: Prepared) -> pl.DataFrame:
    """The catalogue plus each item's training-interaction count (popularity fallback)."""
    counts = np.bincount(
        np.concatenate(prepared.train_sequences() or [np.zeros(0, np.int64)]),
        minlength=prepared.vocab.n_items + 1,
    )
    return prepared.items.with_columns(pl.Series("count", counts[1:].astype(np.int64)))


def train(cfg: RunConfig, prepared: Prepared, out_dir: Path,
          init_state: dict[str, torch.Tensor] | None = None) -> TrainResult:
    """Train a model on ``prepared`` and write the run directory ``out_dir``.

    Args:
        cfg: the run configuration (``model.n_items`` is filled in from the data).
        prepared: prepared data with a validation split.
        out_dir: the run directory (created).
        init_state: optional weights to start from (fine-tuning).

    Returns:
        A TrainResult; the model at its best validation epoch is in ``out_dir``.
    """
    tc = cfg.train
    seed_everything(tc.seed)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    cfg, model, param_stats = build_for_training(cfg, prepared, out_dir, init_state)
    batches = TrainBatches(prepared.train_sequences(), cfg.model.max_len, tc.batch_size, tc.seed)
    opt = build_optimizer(model, tc)
    sched = build_schedule(opt, tc, total_steps=len(batches) * tc.epochs)
    items = catalogue_with_counts(prepared)
    save_artifact(out_dir, cfg, model, items)
    result = TrainResult(run_dir=out_dir, n_parameters=param_stats["n_parameters"],
                         n_trainable=param_stats["n_trainable"], finetune=param_stats)
    best, bad_epochs, start = -1.0, 0, time.perf_counter()
    for epoch in range(1, tc.epochs + 1):
        row = _run_epoch(model, batches, opt, sched, tc, epoch)
        if epoch % tc.eval_every == 0 or epoch == tc.epochs:
            t0 = time.perf_counter()
            valid = evaluate_model(model, prepared, "valid", cfg.eval.ks, cfg.eval.batch_size)
            row.update(valid_s=time.perf_counter() - t0, valid=valid)
            row["elapsed_s"] = time.perf_counter() - start
            if valid["ndcg@10"] > best:
                best, bad_epochs = valid["ndcg@10"], 0
                result.best_epoch, result.best_valid = epoch, valid
                result.time_to_best_s = row["elapsed_s"]
                save_weights(model, out_dir / "model.safetensors")
            else:
                bad_epochs += 1
            log.info("epoch %d loss %.4f valid ndcg@10 %.4f hr@10 %.4f (%.0fs)", epoch,
                     row["loss"], valid["ndcg@10"], valid["hr@10"], row["elapsed_s"])
        row.setdefault("elapsed_s", time.perf_counter() - start)
        result.epochs.append(row)
        if bad_epochs >= tc.patience:
            result.stopped = f"early stop: no improvement in {tc.patience} evaluations"
            break
        if tc.max_time_s and time.perf_counter() - start > tc.max_time_s:
            result.stopped = f"time budget {tc.max_time_s:.0f}s reached"
            break
    result.wall_s = time.perf_counter() - start
    _write_log(result, out_dir)
    return result


def _run_epoch(model, batches: TrainBatches, opt, sched, tc, epoch: int) -> dict:
    model.train()
    t0, total, n = time.perf_counter(), 0.0, 0
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if tc.bf16
                else contextlib.nullcontext())
    bar = tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not tc.progress,
               unit="batch", dynamic_ncols=True)
    for batch in bar:
        with autocast:
            loss = model(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        sched.step()
        total += float(loss.detach()) * len(batch["input"])
        n += len(batch["input"])
        bar.set_postfix(loss=f"{total / n:.4f}", seq_per_s=f"{n / (time.perf_counter() - t0):.0f}")
    train_s = time.perf_counter() - t0
    return {"epoch": epoch, "loss": total / max(n, 1), "train_s": train_s,
            "seq_per_s": n / max(train_s, 1e-9), "lr": sched.get_last_lr()[0]}


def _write_log(result: TrainResult, out_dir: Path) -> None:
    payload = dataclasses.asdict(result)
    payload["run_dir"] = str(result.run_dir)
    (out_dir / "train_log.json").write_text(json.dumps(payload, indent=2) + "\n")
    try:
        plot_curves(result.epochs, out_dir / "training_curve.png")
    except (ImportError, ValueError, OSError) as exc:
        log.warning("could not draw the training curve: %s", exc)
