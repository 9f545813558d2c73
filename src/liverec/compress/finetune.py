"""A short fine-tune for pruned or distilled models: the training loop's pieces, any loss.

Keeps the weights of the best validation NDCG@10 (evaluated every epoch) among the epochs
whose validation metrics, weights and validation scores are all finite. A step with a NaN or
infinite loss or gradient ends the fine-tune at once (``tc.nonfinite="stop"``: the best finite
state so far, epoch 0 = the model as given, is restored and ``"stopped"`` says why) or is
skipped and counted (``"skip"``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import nn

from liverec.config import TrainConfig
from liverec.data.prepare import Prepared
from liverec.evaluate.protocol import evaluate_model
from liverec.model.health import nonfinite_parameters, score_check
from liverec.train.batches import TrainBatches
from liverec.train.optim import build_optimizer, build_schedule

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def default_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch)


def finetune(model: nn.Module, prepared: Prepared, tc: TrainConfig, epochs: int,
             loss_fn: LossFn = default_loss,
             after_step: Callable[[nn.Module], None] | None = None) -> dict:
    """Train ``model`` in place for ``epochs`` and restore its best validation state.

    Args:
        model: a sequence model (``forward(batch)``, ``score``, ``cfg.max_len``).
        prepared: data with a validation split (the model's vocabulary).
        tc: optimiser settings (lr, batch size, schedule, clipping, seed).
        epochs: number of passes over the training sequences (0 = evaluate only).
        loss_fn: ``(model, batch) -> loss``; default the model's own training loss.
        after_step: called after every optimiser step (e.g. re-apply a pruning mask).

    Returns:
        {"epochs": [...], "best_epoch": int, "best_valid": metrics dict, "stopped": "" or why
        it ended early, "skipped_steps": int}.
    """
    torch.manual_seed(tc.seed)
    check_histories = prepared.eval_cases("valid")[1][:64]
    best = {"epoch": 0, "valid": evaluate_model(model, prepared, "valid", (10, 20))}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if epochs <= 0:
        return {"epochs": [], "best_epoch": 0, "best_valid": best["valid"], "stopped": "",
                "skipped_steps": 0}
    batches = TrainBatches(prepared.train_sequences(), model.cfg.max_len, tc.batch_size, tc.seed)
    opt = build_optimizer(model, tc)
    sched = build_schedule(opt, tc, total_steps=len(batches) * epochs)
    history, stopped, skipped = [], "", 0
    for epoch in range(1, epochs + 1):
        model.train()
        total, n = 0.0, 0
        for step, batch in enumerate(batches, 1):
            loss = loss_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), tc.grad_clip if tc.grad_clip > 0 else float("inf"))
            value = float(loss.detach())
            if not (math.isfinite(value) and bool(torch.isfinite(norm))):
                if tc.nonfinite != "skip":
                    stopped = (f"non-finite loss or gradient at epoch {epoch} step {step}; the "
                               f"best finite state (epoch {best['epoch']}) was kept")
                    break
                opt.zero_grad(set_to_none=True)
                skipped += 1
                sched.step()
                continue
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(model)
            total, n = total + value * len(batch["input"]), n + len(batch["input"])
        if stopped:
            log.warning("fine-tune stopped: %s", stopped)
            break
        valid = evaluate_model(model, prepared, "valid", (10, 20))
        broken = _broken(model, valid, check_histories)
        history.append({"epoch": epoch, "loss": total / n if n else None, "valid": valid,
                        **({"nonfinite": broken} if broken else {})})
        if broken:
            log.warning("fine-tune epoch %d: %s; not kept", epoch, broken)
            continue
        log.info("fine-tune epoch %d loss %.4f valid ndcg@10 %.4f", epoch, total / max(n, 1),
                 valid["ndcg@10"])
        if valid["ndcg@10"] > best["valid"]["ndcg@10"]:
            best = {"epoch": epoch, "valid": valid}
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return {"epochs": history, "best_epoch": best["epoch"], "best_valid": best["valid"],
            "stopped": stopped, "skipped_steps": skipped}


def _broken(model: nn.Module, valid: dict, histories: list) -> str:
    """What is not finite after an epoch (metrics, weights, scores), or ""."""
    bad = sorted(k for k, v in valid.items() if isinstance(v, float) and not math.isfinite(v))
    if bad:
        return f"non-finite validation metrics {bad}"
    params = nonfinite_parameters(model)
    if params:
        return f"non-finite weights in {', '.join(params[:3])}"
    model.eval()
    check = score_check(model, histories)
    return "" if check.ok else check.describe()
