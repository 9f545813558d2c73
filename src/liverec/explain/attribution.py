"""Which history items drove a score: leave-one-out deletion, integrated gradients, attention.

Deletion is the primary measure: the score of an item with the full history minus its score
when one history item is removed (the user "never viewed" it; when the history is longer than
the model's window, the next older item slides in, as it would for that user). The fast path
scores every deletion in one forward pass (a batch of P + 1 sequences); the reference path
loops over deletions one sequence at a time, unpadded, and the tests compare them.

Integrated gradients (on the input item embeddings, zero baseline) and attention weights of
the last position are secondary views; attention in particular is not an attribution.

Legend: T history length, W window (<= max_len), P deletable positions (= W), K items
explained, D dim, S integration steps, H heads.
"""

from __future__ import annotations

import numpy as np
import torch

from liverec.errors import LiverecError
from liverec.evaluate.protocol import pad_left


class ExplainError(LiverecError):
    """An explanation cannot be computed (empty history, a model without the needed parts)."""


def window_positions(history: np.ndarray, max_len: int) -> np.ndarray:
    """History positions the model sees (the last ``max_len``), oldest first. -> (P,)."""
    return np.arange(max(0, len(history) - max_len), len(history))


def deletion_sequences(history: np.ndarray, max_len: int) -> np.ndarray:
    """Row 0 = the history's window; row 1 + p = the window with position p deleted.

    Returns:
        (P + 1, W) left-padded item indices.
    """
    seqs = [history[-max_len:]] + [np.delete(history, j)[-max_len:]
                                   for j in window_positions(history, max_len)]
    return pad_left(seqs, min(max_len, len(history)))


@torch.no_grad()
def scores_of(model: torch.nn.Module, seqs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Scores of K items for B sequences: user vectors times the items' output rows.

    Args:
        model: a sequence model with ``encode_users``.
        seqs: (B, W) left-padded item indices.
        rows: (K, D) output vectors of the items to score.

    Returns:
        (B, K) scores, as the service computes them (user vector . item vector).
    """
    return model.encode_users(seqs).float() @ rows.T  # (B, K)


def deletion_batched(model: torch.nn.Module, history: np.ndarray, rows: torch.Tensor,
                     max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out deletion for every window position in one forward pass (fast path).

    Args:
        model: a sequence model with ``encode_users``.
        history: (T,) item indices, oldest first (T >= 1).
        rows: (K, D) output vectors of the items explained.
        max_len: the model's window.

    Returns:
        (base scores (K,), drops (P, K)); drop = score with the full history minus the score
        without that position: positive means the history item raised the score.
    """
    s = scores_of(model, torch.from_numpy(deletion_sequences(history, max_len)), rows)
    s = s.numpy()  # (P + 1, K)
    return s[0], s[0][None, :] - s[1:]


def deletion_reference(model: torch.nn.Module, history: np.ndarray, rows: torch.Tensor,
                       max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference path of :func:`deletion_batched`: one unpadded forward per deletion
    (deleting the only item leaves a single padding position, as in the batch)."""

    def one(seq: np.ndarray) -> np.ndarray:
        seq = pad_left([seq], max(1, min(max_len, len(seq))))  # (1, W'); empty = one padding
        return scores_of(model, torch.from_numpy(seq), rows).numpy()[0]

    base = one(history)  # (K,)
    drops = [base - one(np.delete(history, j)) for j in window_positions(history, max_len)]
    return base, np.stack(drops)  # (K,), (P, K)


def integrated_gradients(model: torch.nn.Module, history: np.ndarray, row: torch.Tensor,
                         max_len: int, steps: int = 32) -> np.ndarray:
    """Integrated gradients of one item's score with respect to the input item embeddings.

    The path runs from a zero item embedding (positions kept) to the real one; the integral is
    a midpoint sum over ``steps`` points, all in one batch. Attributions sum (up to the
    integration error) to score(history) - score(zero embeddings).

    Args:
        model: a differentiable torch sequence model whose ``items`` module embeds indices.
        history: (T,) item indices, oldest first.
        row: (D,) output vector of the item explained.
        max_len: the model's window.
        steps: integration points.

    Returns:
        (P,) attribution of each window position.
    """
    items = getattr(model, "items", None)
    if not isinstance(items, torch.nn.Module):
        raise ExplainError("integrated gradients need a torch model with an 'items' embedder")
    window = torch.from_numpy(history[-max_len:].copy())
    seqs = window[None].expand(steps, -1)  # (S, W)
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps  # (S,)
    path: dict[str, torch.Tensor] = {}

    def scale(module, inputs, output):
        path["x"] = output.detach().float()  # (S, W, D): the real embeddings
        path["z"] = (alphas[:, None, None] * path["x"]).requires_grad_(True)
        return path["z"].to(output.dtype)

    hook = items.register_forward_hook(scale)
    try:
        with torch.enable_grad():
            y = model.encode_users(seqs).float() @ row.float()  # (S,)
            (grad,) = torch.autograd.grad(y.sum(), path["z"])  # (S, W, D)
    except RuntimeError as exc:  # e.g. int8 or ONNX Runtime layers have no gradient
        raise ExplainError(f"integrated gradients are not available for this model: "
                           f"{exc}") from None
    finally:
        hook.remove()
    return (path["x"][0] * grad.mean(0)).sum(-1).numpy()  # (W,)


@torch.no_grad()
def attention_weights(model: torch.nn.Module, history: np.ndarray,
                      max_len: int) -> np.ndarray | None:
    """Attention of the last position on each window position, averaged over heads and layers.

    A secondary view only (attention is not attribution). None when the model's attention
    layers are not the standard ``qkv`` ones (e.g. ONNX Runtime variants).

    Returns:
        (P,) weights summing to 1, or None.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None or not hasattr(model, "encode") or not all(
            hasattr(b, "attn") and hasattr(b.attn, "qkv") and hasattr(b.attn, "n_heads")
            for b in blocks):
        return None
    inputs: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [b.attn.register_forward_pre_hook(lambda m, a: inputs.append((a[0], a[1])))
             for b in blocks]
    try:
        # the full path: every block's attention runs for every position (hooks see it)
        model.encode(torch.from_numpy(history[-max_len:].copy())[None])
    finally:
        for h in hooks:
            h.remove()
    per_layer = []
    for block, (x, mask) in zip(blocks, inputs):
        W, H = x.shape[1], block.attn.n_heads
        qkv = block.attn.qkv(x).float()  # (1, W, 3 * inner); inner = D unless heads were pruned
        q, k, _ = qkv.split(qkv.shape[-1] // 3, dim=-1)  # 3 x (1, W, inner)
        dh = q.shape[-1] // H
        q = q[0, -1].view(H, dh)  # (H, dh): the last position's query
        k = k[0].view(W, H, dh).transpose(0, 1)  # (H, W, dh)
        logits = torch.einsum("hd,hwd->hw", q, k) / dh**0.5  # (H, W)
        logits = logits.masked_fill(~mask[0, 0, -1][None, :], float("-inf"))
        per_layer.append(logits.softmax(-1).mean(0))  # (W,)
    return torch.stack(per_layer).mean(0).numpy()
