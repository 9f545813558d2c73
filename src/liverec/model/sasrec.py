"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

Legend: B batch, T sequence length (left-padded, item 0 = padding), D model dimension,
H heads, N items (+1 padding row), M supervised positions in a batch.

The model reads a user's items in time order; causal self-attention lets position t see only
items 1..t, so one forward pass trains next-item prediction at every position at once.
Scores are dot products with the (tied) item table, so ranking the catalogue is one matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from liverec.config import ModelConfig
from liverec.model.items import build_item_embedder
from liverec.model.losses import next_item_loss


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        assert cfg.d_model % cfg.n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.attn_dropout = cfg.attn_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # 3 x (B, T, D)
        q, k, v = (t.view(B, T, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))  # (B,H,T,D/H)
        drop = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)  # (B,H,T,D/H)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


def attend_last(attn: nn.Module, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Self-attention output at the last position only (inference fast path).

    Keys and values still come from every position; the query, output projection and
    everything after it run for one position. Works for any attention module with ``qkv``,
    ``proj`` and ``n_heads`` (also heads removed by structured pruning, or int8 Linears).
    x: (B, T, D), key_mask: (B, 1, 1, T) -> (B, 1, D).
    """
    B, T, _ = x.shape
    qkv = attn.qkv(x)  # (B, T, 3 * inner)
    inner = qkv.shape[-1] // 3
    H = attn.n_heads
    q = qkv[:, -1:, :inner].reshape(B, 1, H, -1).transpose(1, 2)  # (B, H, 1, Dh)
    k = qkv[..., inner : 2 * inner].reshape(B, T, H, -1).transpose(1, 2)  # (B, H, T, Dh)
    v = qkv[..., 2 * inner :].reshape(B, T, H, -1).transpose(1, 2)  # (B, H, T, Dh)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)  # (B, H, 1, Dh)
    return attn.proj(y.transpose(1, 2).reshape(B, 1, inner))  # (B, 1, D)


class CausalLowPass(nn.Module):
    """A learned causal low-pass filter over positions, with BSARec's high-frequency rescaling.

    BSARec (Shin et al., AAAI 2024, "An Attentive Inductive Bias for Sequential Recommendation
    beyond the Self-Attention") mixes self-attention with a Fourier low-pass of the whole
    sequence, low + beta * (x - low). That filter sees later positions, so it only fits models
    trained on the last position; here the low-pass is a depthwise causal convolution (each
    channel a learned kernel over the last K positions, initialised to their mean), so position
    t sees items 1..t and every position still trains. x: (B, T, D), keep: (B, T, 1) float,
    1 for real positions -> (B, T, D).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.kernel = cfg.filter_kernel
        self.weight = nn.Parameter(torch.full((cfg.d_model, 1, cfg.filter_kernel),
                                              1.0 / cfg.filter_kernel))  # (D, 1, K)
        self.sqrt_beta = nn.Parameter(torch.ones(cfg.d_model))  # beta = sqrt_beta ** 2, (D,)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x * keep  # padding contributes nothing
        T = x.shape[1]
        low = F.conv1d(F.pad(x.transpose(1, 2), (self.kernel - 1, 0)), self.weight,
                       groups=x.shape[2])[..., :T].transpose(1, 2)  # (B, T, D)
        return low + self.sqrt_beta**2 * (x - low)


class FourierLowPass(nn.Module):
    """BSARec's frequency layer: the ``filter_bins`` lowest frequencies of a real FFT over the
    max_len window, plus the high frequencies rescaled, low + beta * (x - low).

    Source: Shin et al., AAAI 2024 (BSARec), whose ``FrequencyLayer`` keeps ``c // 2 + 1``
    rfft bins (c = 5 on Beauty -> 3 bins, this module's default). The filter is linear and the
    window fixed, so it is applied as one (max_len, max_len) matrix, built once from
    ``torch.fft`` (rfft, zero the high bins, irfft; "ortho" norm) and exported to ONNX as a
    MatMul. A left-padded batch trimmed to T columns uses the matrix's last T rows and columns:
    padding is zeroed first, so trimming changes nothing. Position s's output mixes every
    position of the window, later ones too, so it only fits train.windows="prefixes".
    x: (B, T, D), keep: (B, T, 1) float, 1 for real positions -> (B, T, D).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        L = cfg.max_len
        spec = torch.fft.rfft(torch.eye(L, dtype=torch.float64), dim=0, norm="ortho")  # (L/2+1, L)
        spec[cfg.filter_bins:] = 0
        low = torch.fft.irfft(spec, n=L, dim=0, norm="ortho")  # (L, L): low[:, t] = filter(e_t)
        self.register_buffer("low", low.float(), persistent=False)  # (L, L), from the config
        self.sqrt_beta = nn.Parameter(torch.ones(cfg.d_model))  # beta = sqrt_beta ** 2, (D,)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x * keep  # padding contributes nothing
        T = x.shape[1]
        low = torch.matmul(self.low[-T:, -T:], x)  # (T, T) @ (B, T, D) -> (B, T, D)
        return low + self.sqrt_beta**2 * (x - low)


def fourier_low_pass_reference(x: torch.Tensor, keep: torch.Tensor, max_len: int,
                               bins: int, sqrt_beta: torch.Tensor) -> torch.Tensor:
    """BSARec's FrequencyLayer filter as written there (torch.fft on the zero-padded max_len
    window), the reference for :class:`FourierLowPass`. (B, T, D) -> (B, T, D)."""
    x = x * keep
    B, T, D = x.shape
    full = torch.cat([x.new_zeros(B, max_len - T, D), x], dim=1)  # (B, L, D)
    spec = torch.fft.rfft(full, dim=1, norm="ortho")
    spec[:, bins:] = 0
    low = torch.fft.irfft(spec, n=max_len, dim=1, norm="ortho")[:, -T:]  # (B, T, D)
    return low + sqrt_beta**2 * (x - low)


def build_mixer_filter(cfg: ModelConfig) -> nn.Module | None:
    """The filter branch of model.mixer: None ("attention"), CausalLowPass ("filter") or
    FourierLowPass ("fourier")."""
    if cfg.mixer == "filter":
        return CausalLowPass(cfg)
    if cfg.mixer == "fourier":
        return FourierLowPass(cfg)
    return None


def position_wise_ffn(cfg: ModelConfig) -> nn.Sequential:
    """The blocks' feed-forward layer: Linear(D, d_ff), GELU, Linear(d_ff, D), per position
    (the state-dict names ffn.0 / ffn.2 are part of the saved format)."""
    return nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(),
                         nn.Linear(cfg.d_ff, cfg.d_model))


class Block(nn.Module):
    """Pre-norm transformer block: x + mix(LN(x)), then x + FFN(LN(x)); mix = attention, or
    (model.mixer="filter" / "fourier") alpha * low-pass + (1 - alpha) * attention."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.filter = build_mixer_filter(cfg)
        self.alpha = cfg.filter_alpha
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ffn = position_wise_ffn(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)  # (B, T, D)
        mixed = self.attn(h, mask)  # (B, T, D)
        if self.filter is not None:
            keep = mask[:, 0, -1, :, None].to(h.dtype)  # (B, T, 1): last query's keys = real
            mixed = self.alpha * self.filter(h, keep) + (1 - self.alpha) * mixed
        x = x + self.drop(mixed)  # (B, T, D)
        return x + self.drop(self.ffn(self.ln2(x)))  # (B, T, D)

    def forward_last(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """The block's output at the last position only (eval). (B, T, D) -> (B, 1, D)."""
        h = self.ln1(x)  # (B, T, D)
        mixed = attend_last(self.attn, h, key_mask)  # (B, 1, D)
        if self.filter is not None:
            keep = key_mask[:, 0, 0, :, None].to(h.dtype)  # (B, T, 1)
            mixed = self.alpha * self.filter(h, keep)[:, -1:] + (1 - self.alpha) * mixed
        h = x[:, -1:] + mixed  # (B, 1, D)
        return h + self.ffn(self.ln2(h))  # (B, 1, D)


class PostNormBlock(nn.Module):
    """Post-norm block (model.norm="post"), as BSARec's reference code: a = LN(x + attn(x));
    with a filter mixer, f = LN(x + low-pass(x)) and mix = alpha * f + (1 - alpha) * a; then
    LN(mix + FFN(mix)). Source: Shin et al., AAAI 2024 (BSARec), after Kang & McAuley 2018."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(cfg)
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.filter = build_mixer_filter(cfg)
        self.ln_filter = nn.LayerNorm(cfg.d_model) if self.filter is not None else None
        self.alpha = cfg.filter_alpha
        self.ffn = position_wise_ffn(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def _mix(self, x: torch.Tensor, a: torch.Tensor, low: torch.Tensor | None) -> torch.Tensor:
        """x: the block input at the output positions, a: attention there, low: the filter."""
        h = self.ln1(x + self.drop(a))
        if low is not None:
            h = self.alpha * self.ln_filter(x + self.drop(low)) + (1 - self.alpha) * h
        return self.ln2(h + self.drop(self.ffn(h)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[:, 0, -1, :, None].to(x.dtype)  # (B, T, 1): last query's keys = real
        low = self.filter(x, keep) if self.filter is not None else None
        return self._mix(x, self.attn(x, mask), low)  # (B, T, D)

    def forward_last(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """The block's output at the last position only (eval). (B, T, D) -> (B, 1, D)."""
        low = None
        if self.filter is not None:
            low = self.filter(x, key_mask[:, 0, 0, :, None].to(x.dtype))[:, -1:]  # (B, 1, D)
        return self._mix(x[:, -1:], attend_last(self.attn, x, key_mask), low)


def position_ids(seqs: torch.Tensor, max_len: int, mode: str) -> torch.Tensor | None:
    """Position index of every column of left-padded ``seqs`` (B, T), T <= max_len.

    "end": SASRec's window index, the newest item is max_len - 1 ((T,), the same for every
    row; trimming a batch's padding columns changes nothing). "start": the number of real
    items before each one in its window ((B, T) int64, 0 for the oldest; padding gets 0 and is
    zeroed anyway), so an item keeps its index whether it is a training position or the newest
    item of a query. "none": None (no position embedding). Uses aranges and cumsum only, so it
    exports to ONNX.
    """
    if mode == "none":
        return None
    if mode == "start":
        return ((seqs != 0).long().cumsum(dim=1) - 1).clamp_(min=0)  # (B, T)
    T = seqs.shape[1]
    return torch.arange(max_len - T, max_len, device=seqs.device)  # (T,)


def embed_inputs(model: nn.Module, item_vecs: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
    """The first block's input before dropout: item vectors (B, T, D) of left-padded ``seqs``
    (B, T) plus position vectors; pre-norm scales the items by sqrt(d_model), post-norm
    applies ``model.emb_ln``; padding rows are zero. ``model`` has ``cfg``, ``pos`` and
    ``emb_ln`` (SASRec, or the ONNX export body). Positions depend only on each row's real
    items, so trimming the padding of a batch (T < max_len) gives exactly the same result as
    padding to max_len."""
    cfg = model.cfg
    x = item_vecs if cfg.norm == "post" else item_vecs * (cfg.d_model**0.5)  # (B, T, D)
    pos = position_ids(seqs, cfg.max_len, cfg.positions)  # (T,) | (B, T) | None
    if pos is not None:
        x = x + model.pos(pos)  # (B, T, D)
    return model.emb_ln(x) * (seqs != 0).unsqueeze(-1)  # (B, T, D)


def attention_mask(seqs: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) boolean: query t may attend key s if s <= t and s is not padding.

    Every position may attend to itself, so padded rows never see an empty key set (which
    would turn softmax into NaN); their outputs are ignored anyway.
    """
    T = seqs.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=seqs.device).tril()  # (T, T)
    keys = (seqs != 0)[:, None, None, :]  # (B, 1, 1, T)
    eye = torch.eye(T, dtype=torch.bool, device=seqs.device)
    return (causal & keys) | eye  # (B, 1, T, T)


def last_key_mask(seqs: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, T) boolean: the keys the last position may attend to (not padding, or itself,
    as in :func:`attention_mask`). Built from an arange only, so it also exports to ONNX."""
    t = torch.arange(seqs.shape[1], device=seqs.device)  # (T,)
    return ((seqs != 0) | (t == seqs.shape[1] - 1)[None, :])[:, None, None, :]


class SASRec(nn.Module):
    """Causal transformer over item sequences with a tied item table for scoring."""

    def __init__(self, cfg: ModelConfig, items: nn.Module | None = None) -> None:
        super().__init__()
        if cfg.n_items <= 0:
            raise ValueError("ModelConfig.n_items must be set (catalogue size) before building")
        self.cfg = cfg
        self.items = items if items is not None else build_item_embedder(cfg)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.emb_drop = nn.Dropout(cfg.emb_dropout)
        post = cfg.norm == "post"
        self.blocks = nn.ModuleList((PostNormBlock if post else Block)(cfg)
                                    for _ in range(cfg.n_layers))
        # post-norm: LayerNorm over item + position vectors, none after the last block
        self.emb_ln = nn.LayerNorm(cfg.d_model) if post else nn.Identity()
        self.ln_f = nn.Identity() if post else nn.LayerNorm(cfg.d_model)

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> SASRec:
        return cls(cfg)

    def _inputs(self, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(trimmed seqs (B, T), input vectors (B, T, D)) for left-padded item indices."""
        if seqs.shape[1] > self.cfg.max_len:
            seqs = seqs[:, -self.cfg.max_len :]
        return seqs, self.emb_drop(embed_inputs(self, self.items(seqs), seqs))  # (B,T), (B,T,D)

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        """Hidden state at every position. seqs: (B, T) left-padded item indices, T <= max_len."""
        seqs, x = self._inputs(seqs)  # (B, T), (B, T, D)
        mask = attention_mask(seqs)  # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, mask)  # (B, T, D)
        return self.ln_f(x)  # (B, T, D)

    def encode_users(self, seqs: torch.Tensor) -> torch.Tensor:
        """User vector = hidden state at the last (most recent) position. (B, T) -> (B, D).

        In eval mode the last block runs for the last position only (its other outputs are
        never read); :meth:`encode_users_reference` is the plain path, and a test compares them.
        """
        if self.training or not self.blocks or not all(hasattr(b, "forward_last")
                                                       for b in self.blocks):
            return self.encode_users_reference(seqs)
        seqs, x = self._inputs(seqs)  # (B, T), (B, T, D)
        *first, last = self.blocks
        if first:
            mask = attention_mask(seqs)  # (B, 1, T, T)
            for block in first:
                x = block(x, mask)  # (B, T, D)
        return self.ln_f(last.forward_last(x, last_key_mask(seqs)))[:, 0]  # (B, D)

    def encode_users_reference(self, seqs: torch.Tensor) -> torch.Tensor:
        """Reference path of :meth:`encode_users`: every position through every block."""
        return self.encode(seqs)[:, -1]

    def item_table(self) -> torch.Tensor:
        """Output item vectors, (N + 1, D); row 0 is padding and never recommended."""
        return self.items.table()

    def score(self, seqs: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of all items (B, N + 1), or of given items (B, K) when item_ids is (B, K)."""
        u = self.encode_users(seqs)  # (B, D)
        if item_ids is None and hasattr(self.items, "score_users"):
            return self.items.score_users(u)  # (B, N + 1), e.g. a factored table
        table = self.item_table()
        if item_ids is None:
            return u @ table.T  # (B, N + 1)
        return torch.einsum("bd,bkd->bk", u, table[item_ids])  # (B, K)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training loss. batch["input"], batch["target"]: (B, T); target 0 = no supervision."""
        h = self.encode(batch["input"])  # (B, T, D)
        sel = batch["target"] != 0  # (B, T)
        return next_item_loss(h[sel], batch["target"][sel], self.item_table(), self.cfg)
