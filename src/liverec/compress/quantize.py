"""Post-training quantization: int8 (linear layers + row-scaled item table) and bf16/fp16.

Legend: N items (+1 padding row), D model dimension.

torch.ao.quantization (``quantize_dynamic``) is deprecated in torch 2.x and its packed weights
cannot be written to safetensors, so the int8 path here is a small module of our own:
int8 weights with per-row fp32 scales (stored as plain tensors) and ``torch._int_mm``.
"""

from __future__ import annotations

import torch
from torch import nn

from liverec.compress.modules import (
    CompressedSASRec,
    Int8Linear,
    Int8TableEmbedder,
    TableEmbedder,
)
from liverec.config import ModelConfig
from liverec.model.sasrec import SASRec

HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def with_table(model: SASRec, items: nn.Module) -> CompressedSASRec:
    """A CompressedSASRec sharing ``model``'s transformer, with ``items`` as its item embedder."""
    out = CompressedSASRec(model.cfg, items=items)
    out.pos, out.blocks, out.ln_f = model.pos, model.blocks, model.ln_f
    out.emb_ln = model.emb_ln
    return out.eval()


def swap_linears(module: nn.Module, make) -> None:
    """Replace every nn.Linear below ``module`` (in place) by ``make(linear)``."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, make(child))
        else:
            swap_linears(child, make)


def quantize_int8(model: SASRec) -> CompressedSASRec:
    """int8 copy of a trained model: linear layers and item table (embedder-agnostic).

    The item table comes from ``model.item_table()``, so any embedder (id, text, id+text)
    becomes one int8 table; inputs look up the same (tied) rows.
    """
    with torch.no_grad():
        table = model.item_table().detach().float()  # (N + 1, D)
        out = with_table(_copy(model), Int8TableEmbedder.from_table(table))
        swap_linears(out.blocks, Int8Linear.from_linear)
    return out.eval()


def to_half(model: SASRec, dtype: str = "bf16") -> CompressedSASRec:
    """bf16 or fp16 copy of a trained model (weights and activations; scores stay fp32)."""
    if dtype not in HALF_DTYPES:
        raise ValueError(f"unknown half dtype {dtype!r}; use one of {sorted(HALF_DTYPES)}")
    with torch.no_grad():
        table = model.item_table().detach().float()
        out = with_table(_copy(model), TableEmbedder.from_table(table))
    return out.to(HALF_DTYPES[dtype]).eval()


def int8_skeleton(cfg: ModelConfig) -> CompressedSASRec:
    """An empty int8 model of the right shapes, for loading saved int8 weights."""
    out = CompressedSASRec(cfg, items=Int8TableEmbedder(cfg.n_items + 1, cfg.d_model))
    swap_linears(out.blocks, lambda lin: Int8Linear(lin.in_features, lin.out_features))
    return out.eval()


def half_skeleton(cfg: ModelConfig, dtype: str) -> CompressedSASRec:
    """An empty bf16/fp16 model of the right shapes, for loading saved weights."""
    out = CompressedSASRec(cfg, items=TableEmbedder(cfg.n_items + 1, cfg.d_model))
    return out.to(HALF_DTYPES[dtype]).eval()


def _copy(model: SASRec) -> SASRec:
    """A deep copy of the transformer parts (the source model stays untouched)."""
    import copy

    return copy.deepcopy(model).eval()
