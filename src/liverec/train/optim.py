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


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))
    if cfg.optimizer == "adam":
        for g in groups:  # classic Adam: L2 through the gradient
            g["weight_decay"] = g["weight_decay"] and cfg.weight_decay
        return torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.98))
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
