"""Pruning: unstructured magnitude pruning, and structured pruning of attention heads and FFN
units that physically shrinks the tensors (smaller Linear layers, fewer heads per layer).

Legend: D model dimension, H heads, Dh head dimension, F FFN units (d_ff).
Both are followed by a short fine-tune (``liverec.train.loop.fit``, the shared loop).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from liverec.compress.modules import PrunedAttention
from liverec.model.sasrec import SASRec

log = logging.getLogger(__name__)


def block_linears(model: SASRec) -> list[nn.Linear]:
    """The transformer's linear layers (embeddings and norms are left dense)."""
    return [m for m in model.blocks.modules() if isinstance(m, nn.Linear)]


def magnitude_masks(model: SASRec, sparsity: float) -> dict[nn.Linear, torch.Tensor]:
    """Boolean keep-masks that zero the ``sparsity`` share of smallest |w| (global threshold)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    linears = block_linears(model)
    mags = torch.cat([lin.weight.detach().abs().flatten() for lin in linears])
    k = int(sparsity * mags.numel())
    if k == 0:
        return {lin: torch.ones_like(lin.weight, dtype=torch.bool) for lin in linears}
    threshold = mags.kthvalue(k).values
    return {lin: lin.weight.detach().abs() > threshold for lin in linears}


def apply_masks(masks: dict[nn.Linear, torch.Tensor]) -> None:
    with torch.no_grad():
        for lin, mask in masks.items():
            lin.weight.mul_(mask.to(lin.weight.device))


def magnitude_prune(model: SASRec, sparsity: float) -> tuple[SASRec, dict]:
    """A copy of ``model`` with the smallest linear weights zeroed, and its masks."""
    out = copy.deepcopy(model)
    masks = magnitude_masks(out, sparsity)
    apply_masks(masks)
    return out, masks


def sparsity_of(model: SASRec) -> float:
    """Share of exact zeros among the transformer's linear weights."""
    ws = [lin.weight.detach() for lin in block_linears(model)]
    return float(sum((w == 0).sum() for w in ws) / sum(w.numel() for w in ws))


def head_scores(attn: nn.Module, n_heads: int) -> torch.Tensor:
    """Importance of each head: weight norm of its q, k, v rows and its proj columns. -> (H,)"""
    D = attn.proj.out_features
    inner = attn.proj.in_features
    dh = inner // n_heads
    w = attn.qkv.weight.detach().view(3, n_heads, dh, D)  # (3, H, Dh, D)
    p = attn.proj.weight.detach().view(D, n_heads, dh)  # (D, H, Dh)
    return w.pow(2).sum(dim=(0, 2, 3)).sqrt() * p.pow(2).sum(dim=(0, 2)).sqrt()


def unit_scores(ffn: nn.Sequential) -> torch.Tensor:
    """Importance of each FFN unit: |w_in row| x |w_out column|. -> (F,)"""
    return ffn[0].weight.detach().norm(dim=1) * ffn[2].weight.detach().norm(dim=0)


def _keep(scores: torch.Tensor, n: int) -> torch.Tensor:
    return scores.topk(n).indices.sort().values


def _shrink_attention(attn: nn.Module, n_heads: int, keep: torch.Tensor) -> PrunedAttention:
    D, inner = attn.proj.out_features, attn.proj.in_features
    dh = inner // n_heads
    new = PrunedAttention(D, len(keep), dh, attn.attn_dropout)
    cols = (keep[:, None] * dh + torch.arange(dh)).flatten()  # (H' * Dh,)
    rows = torch.cat([cols + i * inner for i in range(3)])  # q, k, v slices
    with torch.no_grad():
        new.qkv.weight.copy_(attn.qkv.weight[rows])
        new.qkv.bias.copy_(attn.qkv.bias[rows])
        new.proj.weight.copy_(attn.proj.weight[:, cols])
        new.proj.bias.copy_(attn.proj.bias)
    return new


def _shrink_ffn(ffn: nn.Sequential, keep: torch.Tensor) -> None:
    first, last = ffn[0], ffn[2]
    new_first = nn.Linear(first.in_features, len(keep))
    new_last = nn.Linear(len(keep), last.out_features)
    with torch.no_grad():
        new_first.weight.copy_(first.weight[keep])
        new_first.bias.copy_(first.bias[keep])
        new_last.weight.copy_(last.weight[:, keep])
        new_last.bias.copy_(last.bias)
    ffn[0], ffn[2] = new_first, new_last


def structured_prune(model: SASRec, ratio: float) -> tuple[SASRec, list[dict]]:
    """Remove ``ratio`` of the heads and of the FFN units in every layer (at least one kept).

    Returns:
        (a smaller copy of ``model``, the per-layer structure ``[{"n_heads", "head_dim",
        "d_ff"}, ...]`` that :func:`apply_structure` rebuilds at load time).
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"prune ratio must be in [0, 1), got {ratio}")
    out = copy.deepcopy(model)
    layers = []
    for block in out.blocks:
        n_heads = block.attn.n_heads
        keep_h = max(1, round(n_heads * (1 - ratio)))
        block.attn = _shrink_attention(block.attn, n_heads, _keep(head_scores(block.attn,
                                                                              n_heads), keep_h))
        d_ff = block.ffn[0].out_features
        keep_f = max(1, round(d_ff * (1 - ratio)))
        _shrink_ffn(block.ffn, _keep(unit_scores(block.ffn), keep_f))
        layers.append({"n_heads": keep_h, "head_dim": block.attn.head_dim, "d_ff": keep_f})
    log.info("structured pruning %.0f%%: %s", 100 * ratio, layers)
    return out, layers


def current_structure(model: SASRec) -> list[dict]:
    """Per-layer heads, head dimension and FFN units of a (possibly pruned) model."""
    out = []
    for block in model.blocks:
        inner = block.attn.proj.in_features
        out.append({"n_heads": block.attn.n_heads, "head_dim": inner // block.attn.n_heads,
                    "d_ff": block.ffn[0].out_features})
    return out


def apply_structure(model: SASRec, layers: list[dict]) -> SASRec:
    """Reshape ``model``'s blocks (in place) to a saved pruned structure, before loading."""
    if len(layers) != len(model.blocks):
        raise ValueError(f"structure has {len(layers)} layers, model has {len(model.blocks)}")
    D = model.cfg.d_model
    for block, spec in zip(model.blocks, layers):
        block.attn = PrunedAttention(D, spec["n_heads"], spec["head_dim"],
                                     model.cfg.attn_dropout)
        block.ffn[0] = nn.Linear(D, spec["d_ff"])
        block.ffn[2] = nn.Linear(spec["d_ff"], D)
    return model
