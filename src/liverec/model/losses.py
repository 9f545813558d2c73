"""Next-item losses. Legend: M supervised positions, D dim, N items (+1 padding), S negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from liverec.config import ModelConfig


def full_softmax_ce(h: torch.Tensor, target: torch.Tensor, table: torch.Tensor,
                    label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the whole catalogue. h: (M, D), target: (M,), table: (N + 1, D)."""
    logits = h @ table[1:].T  # (M, N): padding row left out, so class c is item c + 1
    return F.cross_entropy(logits.float(), target - 1, label_smoothing=label_smoothing)


def sampled_softmax_ce(h: torch.Tensor, target: torch.Tensor, table: torch.Tensor,
                       n_negatives: int) -> torch.Tensor:
    """Softmax over the target and S uniformly sampled negatives shared by the batch.

    Uniform sampling needs no log-Q correction (it is a constant); negatives that hit the
    target are masked out.
    """
    n = table.shape[0] - 1
    neg = torch.randint(1, n + 1, (n_negatives,), device=h.device)  # (S,)
    pos_logit = (h * table[target]).sum(-1, keepdim=True)  # (M, 1)
    neg_logit = h @ table[neg].T  # (M, S)
    neg_logit = neg_logit.masked_fill(neg[None, :] == target[:, None], float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], dim=1).float()  # (M, 1 + S)
    return F.cross_entropy(logits, torch.zeros_like(target))


def next_item_loss(h: torch.Tensor, target: torch.Tensor, table: torch.Tensor,
                   cfg: ModelConfig) -> torch.Tensor:
    """The configured loss (``cfg.loss``: "ce" full softmax, or "sampled")."""
    if cfg.loss == "ce":
        return full_softmax_ce(h, target, table, cfg.label_smoothing)
    if cfg.loss == "sampled":
        return sampled_softmax_ce(h, target, table, cfg.n_negatives)
    raise ValueError(f"unknown loss {cfg.loss!r}; use 'ce' or 'sampled'")
