"""A short fine-tune for pruned or distilled models: the training loop's pieces, any loss.

Keeps the weights of the best validation NDCG@10 (evaluated every epoch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from liverec.config import TrainConfig
from liverec.data.prepare import Prepared
from liverec.evaluate.protocol import evaluate_model
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
        {"epochs": [...], "best_epoch": int, "best_valid": metrics dict}.
    """
    torch.manual_seed(tc.seed)
    best = {"epoch": 0, "valid": evaluate_model(model, prepared, "valid", (10, 20))}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if epochs <= 0:
        return {"epochs": [], "best_epoch": 0, "best_valid": best["valid"]}
    batches = TrainBatches(prepared.train_sequences(), model.cfg.max_len, tc.batch_size, tc.seed)
    opt = build_optimizer(model, tc)
    sched = build_schedule(opt, tc, total_steps=len(batches) * epochs)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        total, n = 0.0, 0
        for batch in batches:
            loss = loss_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(model)
            total, n = total + float(loss.detach()) * len(batch["input"]), n + len(batch["input"])
        valid = evaluate_model(model, prepared, "valid", (10, 20))
        history.append({"epoch": epoch, "loss": total / max(n, 1), "valid": valid})
        log.info("fine-tune epoch %d loss %.4f valid ndcg@10 %.4f", epoch, total / max(n, 1),
                 valid["ndcg@10"])
        if valid["ndcg@10"] > best["valid"]["ndcg@10"]:
            best = {"epoch": epoch, "valid": valid}
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return {"epochs": history, "best_epoch": best["epoch"], "best_valid": best["valid"]}
