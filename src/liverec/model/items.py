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


class CachedTableEmbedder(nn.Module):
    """An item table computed from smaller tensors (:meth:`_build_table`), cached in eval
    mode without gradients until one of :meth:`_cache_tensors` changes (storage or in-place
    version), so inference does not rebuild it per call."""

    _cache: tuple[tuple, torch.Tensor] | None = None

    def _cache_tensors(self) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _build_table(self) -> torch.Tensor:
        raise NotImplementedError

    def table(self) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return self._build_table()
        key = tuple((t.data_ptr(), t._version) for t in self._cache_tensors())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._build_table())
        return self._cache[1]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table()[idx]  # (..., D)


class MixedDimItemEmbedder(CachedTableEmbedder):
    """Frequency-aware id table: the ``K = cfg.head_items`` most frequent items get a full
    D-dim vector, every other item an r-dim one (``r = cfg.tail_dim``) projected to D
    (mixed-dimension embeddings, Ginart et al. 2019). Parameters: K*D + (N - K)*r + r*D
    instead of N*D, which is what lets a small distilled student keep the popular items
    exact when the item table dominates the model.

    ``slot`` (a buffer, saved with the weights) maps item index -> row of the concatenated
    [head; tail; zero] table; items 1..K are the head until :meth:`set_head` says otherwise.
    In eval mode without gradients the materialised (N + 1, D) table is cached.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        n, k, r = cfg.n_items, cfg.head_items, cfg.tail_dim
        if not 0 < k <= n:
            raise ValueError(f"head_items must be in 1..n_items ({n}), got {k}")
        if r < 1 and k < n:
            raise ValueError(f"tail_dim must be >= 1 when head_items < n_items, got {r}")
        self.head = nn.Parameter(torch.randn(k, cfg.d_model) * 0.02)  # (K, D)
        self.tail = nn.Parameter(torch.randn(n - k, r) * 0.02)  # (N - K, r)
        self.proj = nn.Linear(r, cfg.d_model, bias=False)  # r -> D
        # (N + 1,) int32 (half the bytes of int64); padding -> the zero row
        self.register_buffer("slot", torch.cat([torch.tensor([n]), torch.arange(n)]).int())

    @torch.no_grad()
    def set_head(self, head_items: torch.Tensor) -> None:
        """Make ``head_items`` (K item indices, e.g. the most frequent) the full-dim rows."""
        n, k = self.slot.shape[0] - 1, self.head.shape[0]
        head_items = torch.as_tensor(head_items, dtype=torch.long)
        if head_items.shape != (k,) or head_items.min() < 1 or head_items.max() > n \
                or head_items.unique().numel() != k:
            raise ValueError(f"set_head needs {k} distinct item indices in 1..{n}")
        is_head = torch.zeros(n + 1, dtype=torch.bool)
        is_head[head_items] = True
        tail_items = torch.nonzero(~is_head[1:]).squeeze(1) + 1  # (N - K,)
        self.slot[head_items] = torch.arange(k, dtype=torch.int32)
        self.slot[tail_items] = torch.arange(k, n, dtype=torch.int32)
        self.slot[0] = n

    def _cache_tensors(self) -> tuple[torch.Tensor, ...]:
        return self.head, self.tail, self.proj.weight, self.slot

    def _build_table(self) -> torch.Tensor:
        zero = self.head.new_zeros(1, self.head.shape[1])
        return torch.cat([self.head, self.proj(self.tail), zero])[self.slot]  # (N + 1, D)

    def score_users(self, u: torch.Tensor) -> torch.Tensor:
        """Scores of every item without materialising the table: K*D + (N - K)*r + r*D
        multiply-adds per user instead of N*D. u: (B, D) -> (B, N + 1); reference
        ``u @ table().T`` (a test compares them)."""
        zero = u.new_zeros(u.shape[0], 1)  # the padding column
        parts = [u @ self.head.T, (u @ self.proj.weight) @ self.tail.T, zero]  # (B,K),(B,N-K)
        return torch.cat(parts, 1).index_select(1, self.slot)  # (B, N + 1)


class PQItemEmbedder(CachedTableEmbedder):
    """Product-quantized id table: item i's vector is M = ``cfg.pq_subspaces`` sub-vectors of
    D / M dims, the m-th being centroid ``codes[i, m]`` of sub-space m's codebook of
    K = 2**``cfg.pq_bits`` centroids (product quantization, Jegou et al. 2011; as learned item
    codes in LightRec / DPQ). Parameters: the codebooks, M * K * D / M = K * D; the codes are
    one byte per item per sub-space (a uint8 buffer saved with the weights, N * M bytes), fixed
    after k-means of a teacher's table (:func:`liverec.compress.distill.init_pq_from_teacher`).
    In eval mode without gradients the materialised (N + 1, D) table is cached.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        m, bits, d = cfg.pq_subspaces, cfg.pq_bits, cfg.d_model
        if m < 1 or d % m:
            raise ValueError(f"pq_subspaces must divide d_model ({d}), got {m}")
        if not 1 <= bits <= 8:
            raise ValueError(f"pq_bits must be in 1..8 (codes are one byte), got {bits}")
        k = 2**bits
        self.codebooks = nn.Parameter(torch.randn(m, k, d // m) * 0.02)  # (M, K, D / M)
        gen = torch.Generator().manual_seed(0)
        codes = torch.randint(0, k, (cfg.n_items, m), generator=gen, dtype=torch.uint8)
        self.register_buffer("codes", codes)  # (N, M): row i - 1 = item i

    @torch.no_grad()
    def set_codes(self, codes: torch.Tensor, codebooks: torch.Tensor) -> None:
        """Install k-means codes (N, M) in 0..K-1 and their codebooks (M, K, D / M)."""
        if codes.shape != self.codes.shape or codebooks.shape != self.codebooks.shape:
            raise ValueError(f"set_codes needs codes {tuple(self.codes.shape)} and codebooks "
                             f"{tuple(self.codebooks.shape)}")
        if codes.min() < 0 or codes.max() >= self.codebooks.shape[1]:
            raise ValueError(f"codes must be in 0..{self.codebooks.shape[1] - 1}")
        self.codes.copy_(codes.to(torch.uint8))
        self.codebooks.copy_(codebooks)

    def _cache_tensors(self) -> tuple[torch.Tensor, ...]:
        return self.codebooks, self.codes

    def _build_table(self) -> torch.Tensor:
        m, k, ds = self.codebooks.shape
        offsets = torch.arange(m, device=self.codes.device) * k  # (M,)
        rows = self.codebooks.reshape(m * k, ds)[self.codes.long() + offsets]  # (N, M, D / M)
        rows = rows.reshape(self.codes.shape[0], m * ds)  # (N, D)
        return torch.cat([rows.new_zeros(1, m * ds), rows])  # (N + 1, D), padding row zero


def _text_embedder(cfg: ModelConfig) -> nn.Module:
    from liverec.model.text_items import TextItemEmbedder

    return TextItemEmbedder(cfg)


def _fusion_embedder(cfg: ModelConfig) -> nn.Module:
    from liverec.model.text_items import FusionItemEmbedder

    return FusionItemEmbedder(cfg)


ITEM_EMBEDDERS = {"id": IdItemEmbedder, "mixed": MixedDimItemEmbedder, "pq": PQItemEmbedder,
                  "text": _text_embedder, "fusion": _fusion_embedder}


def build_item_embedder(cfg: ModelConfig) -> nn.Module:
    """The item representation named by ``cfg.item_repr`` ("id", "mixed", "pq", "text",
    "fusion")."""
    if cfg.item_repr == "auto":
        raise ValueError("item_repr 'auto' is chosen from the catalogue at train time "
                         "(liverec.train.setup.resolve_item_repr); build a model from a "
                         "concrete one")
    if cfg.item_repr not in ITEM_EMBEDDERS:
        raise ValueError(f"unknown item_repr {cfg.item_repr!r}; known: {sorted(ITEM_EMBEDDERS)}")
    return ITEM_EMBEDDERS[cfg.item_repr](cfg)


def uses_text(cfg: ModelConfig) -> bool:
    """Whether the item representation reads frozen text vectors."""
    return cfg.item_repr in ("text", "fusion")
