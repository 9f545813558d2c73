"""Which parameters train when fine-tuning, and loading pretrained weights across catalogues.

Modes (``ModelConfig.finetune``):
- ``full``: every parameter.
- ``lora``: the LoRA updates (model/lora.py), LayerNorms and, with fusion, the id table.
- ``adaptor``: the item representation only (text adaptor, id table if any); the transformer is
  frozen.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from liverec.model.lora import count_parameters
from liverec.model.text_items import TextVectors

log = logging.getLogger(__name__)


def _trainable(name: str, mode: str) -> bool:
    if mode == "full":
        return True
    id_table = name.startswith("items.emb.") or name.startswith("items.id.")
    if mode == "lora":
        return "lora_" in name or ".ln" in name or name.startswith("ln_") or id_table
    if mode == "adaptor":
        return name.startswith("items.")
    raise ValueError(f"unknown finetune mode {mode!r}; use 'full', 'lora' or 'adaptor'")


def set_trainable(model: nn.Module, mode: str) -> dict[str, int | float]:
    """Freeze what ``mode`` does not train; returns and logs the parameter counts."""
    for name, p in model.named_parameters():
        p.requires_grad_(_trainable(name, mode))
    total, trainable = count_parameters(model)
    stats = {"n_parameters": total, "n_trainable": trainable,
             "trainable_fraction": trainable / max(total, 1), "finetune": mode}
    log.info("finetune=%s: %d of %d parameters trainable (%.2f%%)", mode, trainable, total,
             100 * stats["trainable_fraction"])
    return stats


def text_buffer_names(model: nn.Module) -> set[str]:
    """State-dict names of the frozen text buffers (rebuilt from each catalogue, never copied)."""
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, TextVectors):
            names.update(f"{prefix}.{b}" for b, _ in module.named_buffers(recurse=False))
    return names


def load_pretrained(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Copy every pretrained tensor whose name and shape fit; skip the rest.

    With the same catalogue everything loads. With another one the id table does not fit
    (skipped: it starts fresh) while the transformer blocks, positions and text adaptor load;
    the text buffers always come from the new catalogue. LoRA factors absent from a
    non-LoRA checkpoint keep their initialisation (B = 0: the model starts as pretrained).

    Returns:
        {"loaded": [...], "skipped": [...], "missing": [...]} parameter names.
    """
    own = model.state_dict()
    rebuilt = text_buffer_names(model)
    fit = {k: v for k, v in state.items()
           if k in own and k not in rebuilt and own[k].shape == v.shape}
    skipped = sorted(k for k in state if k not in fit and k not in rebuilt)
    missing = sorted(k for k in own if k not in fit and k not in rebuilt)
    model.load_state_dict(fit, strict=False)
    if skipped:
        log.info("pretrained weights not loaded (other catalogue or shape): %s", skipped)
    if missing:
        log.info("weights starting fresh: %s", missing)
    return {"loaded": sorted(fit), "skipped": skipped, "missing": missing}
