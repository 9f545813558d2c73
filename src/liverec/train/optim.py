"""Optimisers and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from liverec.config import TrainConfig
from liverec.errors import ConfigError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and embeddings; none on biases and norms (1-d tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def can_fuse(model: nn.Module) -> bool:
    """Whether the fused (one kernel for all tensors) Adam/AdamW step applies: every trainable
    tensor floating point on the CPU or a CUDA device. On this 2-core CPU it takes the
    Beauty model's step from ~10 ms to ~2.5 ms (benchmarks/results/train_breakdown_*); on a
    GPU it replaces dozens of kernel launches per step by one. Same maths, other rounding."""
    params = [p for p in model.parameters() if p.requires_grad]
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                for p in params)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of ``cfg.optimizer`` over ``model``'s trainable tensors (put the model on
    its device first: Adam/AdamW use the fused step where ``can_fuse``)."""
    groups = param_groups(model, cfg.weight_decay)
    fused = {"fused": True} if can_fuse(model) else {}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), **fused)
    if cfg.optimizer == "adam":
        for g in groups:  # classic Adam: L2 through the gradient
            g["weight_decay"] = g["weight_decay"] and cfg.weight_decay
        return torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.98), **fused)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    raise ConfigError(f"train.optimizer: unknown {cfg.optimizer!r}; use adamw, adam or sgd")


def build_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` x lr (or constant)."""
    warm = max(1, min(cfg.warmup_steps, total_steps // 2))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    if cfg.schedule not in ("cosine", "constant"):
        raise ConfigError(f"train.schedule: unknown {cfg.schedule!r}; use cosine or constant")
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
