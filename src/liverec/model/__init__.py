"""Sequence models and item representations."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liverec.config import ModelConfig
    from liverec.model.sasrec import SASRec


def build_model(cfg: ModelConfig) -> SASRec:
    """Build the model named by ``cfg.name`` from the registry."""
    from liverec.model.sasrec import SASRec

    registry = {"sasrec": SASRec}
    if cfg.name not in registry:
        raise ValueError(f"unknown model {cfg.name!r}; known: {sorted(registry)}")
    model = registry[cfg.name].from_config(cfg)
    if cfg.finetune == "lora":
        from liverec.model.lora import add_lora

        add_lora(model, cfg.lora_rank, cfg.lora_alpha, scopes=tuple(cfg.lora_scopes))
    return model
