"""Module types that compressed models are built from.

Legend: B batch, T sequence length, D model dimension, N items (+1 padding row), R rows.

Every fast module keeps a reference path (``forward_reference`` / ``item_table``) that
dequantizes to fp32; tests compare the two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from liverec.model.sasrec import SASRec


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row. x: (R, K) float -> (int8 (R, K), scale (R,) fp32)."""
    scale = x.detach().abs().amax(dim=-1).float().clamp_min(1e-12) / 127.0  # (R,)
    q = (x.float() * scale.reciprocal()[:, None]).round_().clamp_(-127, 127)  # (R, K)
    return q.to(torch.int8), scale


class Int8Linear(nn.Module):
    """Linear layer with int8 weights (per output row scale) and int8 dynamic activations.

    The matmul runs in int8 with int32 accumulation (``torch._int_mm``, VNNI/AMX on x86);
    activations are quantized per row at run time.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("w_q", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("w_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features))

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        mod = cls(linear.in_features, linear.out_features)
        q, s = quantize_rows(linear.weight.detach())
        mod.w_q.copy_(q)
        mod.w_scale.copy_(s)
        if linear.bias is not None:
            mod.bias.copy_(linear.bias.detach())
        return mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        xq, xs = quantize_rows(x.reshape(-1, self.in_features))  # (R, in), (R,)
        y = torch._int_mm(xq, self.w_q.t()).float()  # (R, out), exact int32 sums
        y.mul_(xs[:, None]).mul_(self.w_scale).add_(self.bias)  # in place: no temporaries
        return y.reshape(*lead, self.out_features)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 matmul with the dequantized weights (no activation quantization)."""
        return F.linear(x.float(), self.w_q.float() * self.w_scale[:, None], self.bias)


class TableEmbedder(nn.Module):
    """A fixed item table (N + 1, D) behind the item-embedder interface (any dtype)."""

    def __init__(self, n_rows: int, dim: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_rows, dim, dtype=dtype), requires_grad=False)

    @classmethod
    def from_table(cls, table: torch.Tensor) -> TableEmbedder:
        mod = cls(*table.shape, dtype=table.dtype)
        mod.weight.data.copy_(table.detach())
        return mod

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.weight[idx]  # (..., D)

    def table(self) -> torch.Tensor:
        return self.weight  # (N + 1, D)


class Int8TableEmbedder(nn.Module):
    """Item table stored as int8 with one fp32 scale per row; scores in int8 x int8."""

    def __init__(self, n_rows: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("q", torch.zeros(n_rows, dim, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(n_rows))

    @classmethod
    def from_table(cls, table: torch.Tensor) -> Int8TableEmbedder:
        mod = cls(*table.shape)
        q, s = quantize_rows(table.detach())
        mod.q.copy_(q)
        mod.scale.copy_(s)
        return mod

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.q[idx].float() * self.scale[idx].unsqueeze(-1)  # (..., D)

    def table(self) -> torch.Tensor:
        """Dequantized table (N + 1, D): the reference path."""
        return self.q.float() * self.scale[:, None]

    def score_users(self, u: torch.Tensor) -> torch.Tensor:
        """Scores of every item, int8 matmul. u: (B, D) -> (B, N + 1) fp32."""
        uq, us = quantize_rows(u)  # (B, D), (B,)
        y = torch._int_mm(uq, self.q.t()).float()  # (B, N + 1)
        return y.mul_(us[:, None]).mul_(self.scale)


class CompressedSASRec(SASRec):
    """SASRec whose item embedder may be a fixed table (fp, bf16/fp16, int8).

    Scores are always fp32 (low-precision scores would create ties that flatter the ranks),
    and the int8 table scores with an int8 matmul when it can.
    """

    def score(self, seqs: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        return table_scores(self.items, self.encode_users(seqs), item_ids)


def table_scores(items: nn.Module, u: torch.Tensor,
                 item_ids: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 scores of all items (B, N + 1), or of ``item_ids`` (B, K). u: (B, D)."""
    u = u.float()
    if item_ids is None and hasattr(items, "score_users"):
        return items.score_users(u)  # (B, N + 1)
    table = items.table().float()  # (N + 1, D)
    if item_ids is None:
        return u @ table.T  # (B, N + 1)
    return torch.einsum("bd,bkd->bk", u, table[item_ids])  # (B, K)


class PrunedAttention(nn.Module):
    """Causal self-attention with its own head count (heads removed by structured pruning)."""

    def __init__(self, d_model: int, n_heads: int, head_dim: int, attn_dropout: float) -> None:
        super().__init__()
        self.n_heads, self.head_dim = n_heads, head_dim
        self.qkv = nn.Linear(d_model, 3 * n_heads * head_dim)
        self.proj = nn.Linear(n_heads * head_dim, d_model)
        self.attn_dropout = attn_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        inner = self.n_heads * self.head_dim
        q, k, v = self.qkv(x).split(inner, dim=-1)  # 3 x (B, T, H'*Dh)
        q, k, v = (t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        drop = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)  # (B,H',T,Dh)
        return self.proj(y.transpose(1, 2).reshape(B, T, inner))  # (B, T, D)


def n_weights(model: nn.Module) -> int:
    """Stored weight elements (parameters and buffers, any dtype)."""
    return sum(t.numel() for t in model.state_dict().values())
