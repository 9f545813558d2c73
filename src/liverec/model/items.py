"""Item representations: what a transformer sees for an item index, and what it scores against.

Legend: N items (+1 for padding at index 0), D model dimension.
An item embedder maps indices to vectors (input side) and exposes the whole table (output side,
tied weights, as in SASRec). Text-aware embedders share this interface.
"""

from __future__ import annotations

import torch
from torch import nn

from liverec.config import ModelConfig


class IdItemEmbedder(nn.Module):
    """One learned vector per item id; row 0 (padding) stays zero."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.emb = nn.Embedding(cfg.n_items + 1, cfg.d_model, padding_idx=0)
        nn.init.normal_(self.emb.weight, std=0.02)
        with torch.no_grad():
            self.emb.weight[0].zero_()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.emb(idx)  # (..., D)

    def table(self) -> torch.Tensor:
        return self.emb.weight  # (N + 1, D)


def _text_embedder(cfg: ModelConfig) -> nn.Module:
    from liverec.model.text_items import TextItemEmbedder

    return TextItemEmbedder(cfg)


def _fusion_embedder(cfg: ModelConfig) -> nn.Module:
    from liverec.model.text_items import FusionItemEmbedder

    return FusionItemEmbedder(cfg)


ITEM_EMBEDDERS = {"id": IdItemEmbedder, "text": _text_embedder, "fusion": _fusion_embedder}


def build_item_embedder(cfg: ModelConfig) -> nn.Module:
    """The item representation named by ``cfg.item_repr`` ("id", "text" or "fusion")."""
    if cfg.item_repr not in ITEM_EMBEDDERS:
        raise ValueError(f"unknown item_repr {cfg.item_repr!r}; known: {sorted(ITEM_EMBEDDERS)}")
    return ITEM_EMBEDDERS[cfg.item_repr](cfg)


def uses_text(cfg: ModelConfig) -> bool:
    """Whether the item representation reads frozen text vectors."""
    return cfg.item_repr in ("text", "fusion")
