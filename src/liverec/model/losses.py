"""Next-item losses. Legend: M supervised positions, D dim, N items (+1 padding), S negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from liverec.config import ModelConfig


def full_softmax_ce_reference(h: torch.Tensor, target: torch.Tensor, table: torch.Tensor,
                              label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the whole catalogue through autograd (the reference path).

    h: (M, D), target: (M,) item ids in 1..N, table: (N + 1, D) (row 0 = padding) -> scalar.
    """
    logits = h @ table[1:].T  # (M, N): padding row left out, so class c is item c + 1
    return F.cross_entropy(logits.float(), target - 1, label_smoothing=label_smoothing)


class _FusedSoftmaxCE(torch.autograd.Function):
    """Full-softmax cross-entropy with a hand-written backward that never materialises the
    (M, N) gradient of the logits.

    With p = softmax(h W^T) and y the one-hot target (smoothed: (1 - e) y + e / N), the
    gradients are dh = (p W - (1 - e) W[t] - e/N sum(W)) / M and
    dW = (p^T h - (1 - e) onehot^T h - e/N 1 sum(h)) / M: two matmuls over p plus cheap
    row terms. Autograd instead writes a zero (M, N) buffer, scatters into it and runs the
    log-softmax backward over it (three more passes over M x N floats). Same maths, checked
    against :func:`full_softmax_ce_reference` in tests/model/test_losses.py.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, table: torch.Tensor, target: torch.Tensor,
                smoothing: float) -> torch.Tensor:
        w = table[1:]  # (N, D)
        logits = h @ w.T  # (M, N)
        cls = target - 1  # (M,)
        logp = torch.log_softmax(logits, dim=1)  # (M, N): rows in cache, one read + one write
        del logits
        nll = -logp.gather(1, cls[:, None]).squeeze(1)  # (M,)
        if smoothing:
            nll = (1.0 - smoothing) * nll - smoothing * logp.mean(dim=1)
        probs = logp.exp_()  # (M, N) softmax, in place
        ctx.save_for_backward(h, table, cls, probs)
        ctx.smoothing = smoothing
        return nll.mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, table, cls, probs = ctx.saved_tensors
        e = ctx.smoothing
        w = table[1:]  # (N, D)
        m, n = probs.shape
        scale = grad / m
        grad_h = probs @ w - (1.0 - e) * w[cls]  # (M, D)
        grad_w = probs.T @ h  # (N, D)
        grad_w.index_add_(0, cls, h, alpha=-(1.0 - e))
        if e:
            grad_h -= (e / n) * w.sum(dim=0)
            grad_w -= (e / n) * h.sum(dim=0)
        grad_table = torch.cat([torch.zeros_like(table[:1]), grad_w]) * scale  # (N + 1, D)
        return grad_h * scale, grad_table, None, None


def full_softmax_ce(h: torch.Tensor, target: torch.Tensor, table: torch.Tensor,
                    label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the whole catalogue. h: (M, D), target: (M,) item ids in 1..N,
    table: (N + 1, D) (row 0 = padding, never a class) -> scalar mean over M.

    fp32 tensors take the fused path (:class:`_FusedSoftmaxCE`, no (M, N) logit gradient);
    under autocast or in other dtypes, :func:`full_softmax_ce_reference`.
    """
    if (h.dtype == torch.float32 and table.dtype == torch.float32
            and not torch.is_autocast_enabled(h.device.type) and h.shape[0] > 0):
        return _FusedSoftmaxCE.apply(h, table, target, float(label_smoothing))
    return full_softmax_ce_reference(h, target, table, label_smoothing)


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
