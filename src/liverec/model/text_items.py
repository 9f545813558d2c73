"""Text-aware item representations: frozen language-model vectors through a trainable adaptor.

Legend: N items (+1 padding row 0), D model dimension, E text dimension (cfg.text_dim),
K experts. The frozen text vectors are buffers, so they are saved in model.safetensors with the
weights and a loaded model needs no text encoder until new items arrive (:meth:`add_items`).

- ``TextItemEmbedder``: item = adaptor(whitened text vector) — any item with text has a
  representation, including one added after training (cold start) or from another catalogue.
- ``FusionItemEmbedder``: item = id embedding + text part (sum, or a learned gate).
Adaptors: ``linear`` (one projection) or ``moe`` (UniSRec's mixture of parametric-whitening
experts: sum_k softmax(g(x))_k (x - b_k) W_k).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch import nn

from liverec.config import ModelConfig
from liverec.model.items import IdItemEmbedder


class TextVectors(nn.Module):
    """Frozen, optionally whitened text vectors (N + 1, E); row 0 (padding) is zero.

    Whitening statistics come from the catalogue passed to :meth:`set`; vectors appended later
    (:meth:`append`) reuse them, so a new item lands in the space the adaptor was trained on.
    """

    def __init__(self, n_items: int, dim: int, whiten: bool) -> None:
        super().__init__()
        self.whiten = whiten
        self.register_buffer("vectors", torch.zeros(n_items + 1, dim))  # (N + 1, E)
        self.register_buffer("mean", torch.zeros(dim))  # (E,)
        self.register_buffer("proj", torch.eye(dim))  # (E, E)

    def set(self, raw: torch.Tensor) -> None:
        """Fill from raw encoder vectors of items 1..N. raw: (N, E)."""
        if raw.shape != (self.vectors.shape[0] - 1, self.vectors.shape[1]):
            raise ValueError(f"text vectors {tuple(raw.shape)} do not fit the table "
                             f"{tuple(self.vectors.shape)} (padding row excluded)")
        raw = raw.float()
        if self.whiten and raw.shape[0] > 1:
            mean = raw.mean(0)  # (E,)
            cov = torch.cov((raw - mean).T)  # (E, E)
            eigval, eigvec = torch.linalg.eigh(cov)
            eigval = eigval.clamp_min(0) + 0.05 * eigval.clamp_min(0).mean() + 1e-12
            # ZCA, scaled so whitened rows have about unit norm like the raw ones
            proj = eigvec @ torch.diag(eigval.rsqrt()) @ eigvec.T / raw.shape[1] ** 0.5
            self.mean.copy_(mean)
            self.proj.copy_(proj)
        self.vectors.zero_()
        self.vectors[1:] = self.transform(raw)

    def transform(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw encoder vectors -> the stored (whitened) space. (k, E) -> (k, E)."""
        return (raw.float().to(self.mean.device) - self.mean) @ self.proj

    def append(self, raw: torch.Tensor) -> None:
        """Add rows for new items N+1..N+k. raw: (k, E)."""
        self.vectors = torch.cat([self.vectors, self.transform(raw)])  # (N + 1 + k, E)


class LinearAdaptor(nn.Module):
    """x W + b: text space -> model space. (..., E) -> (..., D)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(cfg.text_dim, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class MoEAdaptor(nn.Module):
    """UniSRec's MoE adaptor: K parametric-whitening experts mixed by a softmax gate."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(cfg.n_experts, cfg.text_dim))  # (K, E)
        self.experts = nn.ModuleList(
            nn.Linear(cfg.text_dim, cfg.d_model, bias=False) for _ in range(cfg.n_experts)
        )
        self.gate = nn.Linear(cfg.text_dim, cfg.n_experts, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.gate(x).softmax(-1)  # (..., K)
        out = torch.stack([e(x - b) for e, b in zip(self.experts, self.bias)], dim=-1)  # (..,D,K)
        return (out * gate.unsqueeze(-2)).sum(-1)  # (..., D)


ADAPTORS: dict[str, type[nn.Module]] = {"linear": LinearAdaptor, "moe": MoEAdaptor}


class TextItemEmbedder(nn.Module):
    """Item = adaptor(frozen text vector); the adaptor is the only trainable part."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.text_dim <= 0:
            raise ValueError("ModelConfig.text_dim must be set (text encoder dimension)")
        if cfg.adaptor not in ADAPTORS:
            raise ValueError(f"unknown adaptor {cfg.adaptor!r}; known: {sorted(ADAPTORS)}")
        self.text = TextVectors(cfg.n_items, cfg.text_dim, cfg.whiten)
        self.adaptor = ADAPTORS[cfg.adaptor](cfg)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out = self.adaptor(self.text.vectors[idx])  # (..., D)
        return out * (idx != 0).unsqueeze(-1)  # padding -> zero

    def table(self) -> torch.Tensor:
        out = self.adaptor(self.text.vectors)  # (N + 1, D)
        keep = torch.ones(out.shape[0], 1, device=out.device)
        keep[0] = 0
        return out * keep

    def set_text(self, raw: torch.Tensor) -> None:
        """Fill the frozen text vectors of items 1..N from raw encoder output (N, E)."""
        self.text.set(raw)

    def add_items(self, raw: torch.Tensor) -> None:
        """Append items N+1..N+k from their raw text vectors (k, E); no retraining."""
        self.text.append(raw)


class FusionItemEmbedder(nn.Module):
    """Item = id embedding (+) text part; ``cfg.fusion``: "sum" or "gate" (learned mix)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.fusion not in ("sum", "gate"):
            raise ValueError(f"unknown fusion {cfg.fusion!r}; use 'sum' or 'gate'")
        self.id = IdItemEmbedder(cfg)
        self.txt = TextItemEmbedder(cfg)
        self.gate = nn.Linear(2 * cfg.d_model, cfg.d_model) if cfg.fusion == "gate" else None

    def _mix(self, e_id: torch.Tensor, e_txt: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return e_id + e_txt
        g = torch.sigmoid(self.gate(torch.cat([e_id, e_txt], dim=-1)))  # (..., D)
        return g * e_id + (1 - g) * e_txt

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out = self._mix(self.id(idx), self.txt(idx))  # (..., D)
        return out * (idx != 0).unsqueeze(-1)

    def table(self) -> torch.Tensor:
        out = self._mix(self.id.table(), self.txt.table())  # (N + 1, D)
        keep = torch.ones(out.shape[0], 1, device=out.device)
        keep[0] = 0
        return out * keep

    def set_text(self, raw: torch.Tensor) -> None:
        self.txt.set_text(raw)

    def add_items(self, raw: torch.Tensor) -> None:
        """Append items from text; their id rows start at zero (text alone represents them)."""
        self.txt.add_items(raw)
        extend_embedding(self.id.emb, raw.shape[0])


def extend_embedding(emb: nn.Embedding, k: int) -> None:
    """Append ``k`` zero rows to an embedding table in place (new items, no id signal yet)."""
    w = emb.weight
    emb.weight = nn.Parameter(torch.cat([w.detach(), w.new_zeros(k, w.shape[1])]),
                              requires_grad=w.requires_grad)
    emb.num_embeddings += k


def new_catalogue_rows(items: pl.DataFrame, known: dict[str, int], start: int) -> pl.DataFrame:
    """Catalogue rows (item, index, title, text, attributes, count) for items not yet known.

    Args:
        items: rows with ``item`` and any of title, text, attributes.
        known: external id -> index of the current catalogue.
        start: the index the first new item gets.

    Raises:
        ValueError: when an id is already in the catalogue or repeated.
    """
    ids = items["item"].cast(pl.Utf8)
    clash = sorted({i for i in ids.to_list() if i in known})
    if clash or ids.n_unique() != len(ids):
        raise ValueError(f"items already in the catalogue or repeated: {clash[:10] or 'repeats'}")
    defaults = {"title": pl.lit(""), "text": pl.lit(""),
                "attributes": pl.lit([], dtype=pl.List(pl.Utf8))}
    rows = items.with_columns(ids.alias("item"), *[
        v.alias(k) for k, v in defaults.items() if k not in items.columns])
    return rows.select(
        "item",
        pl.Series("index", np.arange(start, start + rows.height, dtype=np.int64)),
        pl.col("title").fill_null(""), pl.col("text").fill_null(""),
        pl.col("attributes").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))),
        pl.lit(0, dtype=pl.Int64).alias("count"),
    )
