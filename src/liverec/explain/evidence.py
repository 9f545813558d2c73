"""Catalogue evidence for an explanation: titles, shared attributes, similar history items.

Legend: T history length, N rows of the item table (row 0 = padding), D dim.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

TITLE_CHARS = 60


class ItemSource(Protocol):
    """What an explanation reads about items (a serving ``ModelHandle`` has the same shape).

    ``ids[i]``/``catalogue[i]`` describe row ``i`` (row 0 = padding); ``catalogue`` rows are
    dicts with optional ``title`` and ``attributes``; ``table`` holds the output vectors.
    """

    ids: Sequence[str]
    lookup: Mapping[str, int]
    catalogue: Sequence[dict]
    table: np.ndarray  # (N, D)


@dataclass
class RunItems:
    """An :class:`ItemSource` over a loaded run (a :class:`~liverec.model.Recommender`)."""

    ids: list[str]
    lookup: dict[str, int]
    catalogue: list[dict]
    table: np.ndarray  # (N, D)

    @classmethod
    def from_recommender(cls, rec) -> RunItems:
        import torch

        with torch.no_grad():
            table = rec.model.item_table().float().numpy()  # (N, D)
        rows = [{}] + [{"title": r.get("title") or "", "attributes": list(r.get("attributes")
                                                                         or ())}
                       for r in rec.items.to_dicts()]
        return cls([str(x) for x in rec.vocab.ids], rec.vocab.index_map(), rows, table)


@dataclass(frozen=True)
class SharedAttribute:
    """An attribute of the explained item that history items have too."""

    attribute: str
    label: str  # e.g. "category skincare" for "category:skincare"
    items: list[str]  # history item ids having it, most recent first
    catalogue_share: float  # share of catalogue items with it (rarer = more telling)


def title_of(items: ItemSource, i: int) -> str:
    """The item's title ("" when the catalogue has none)."""
    return str(items.catalogue[i].get("title") or "")


def label_of(items: ItemSource, i: int) -> str:
    """A short human name: the title (shortened), else ``item <id>``."""
    title = " ".join(title_of(items, i).split())
    if not title:
        return f"item {items.ids[i]}"
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"


def attribute_label(attribute: str) -> str:
    """``key:value`` -> ``key value``; a bare attribute (e.g. an S3-Rec number) is named so."""
    key, sep, value = attribute.partition(":")
    return f"{key} {value}" if sep and key and value else f"attribute {attribute}"


class AttributeIndex:
    """How many catalogue items carry each attribute (recounted when the catalogue grows)."""

    def __init__(self) -> None:
        self.counts_: Counter[str] = Counter()
        self.n_rows_ = -1

    def counts(self, items: ItemSource) -> tuple[Counter[str], int]:
        if self.n_rows_ != len(items.catalogue):
            self.counts_ = Counter(a for row in items.catalogue[1:]
                                   for a in set(row.get("attributes") or ()))
            self.n_rows_ = len(items.catalogue)
        return self.counts_, max(1, self.n_rows_ - 1)


def shared_attributes(items: ItemSource, index: AttributeIndex, item: int,
                      history: np.ndarray, max_share: float = 0.5) -> list[SharedAttribute]:
    """Attributes of ``item`` that history items share, rarest first.

    Attributes carried by more than ``max_share`` of the catalogue say nothing and are left out.
    """
    counts, n = index.counts(items)
    own = dict.fromkeys(items.catalogue[item].get("attributes") or ())
    out = []
    for attr in own:
        share = counts.get(attr, 0) / n
        if share > max_share:
            continue
        having = [items.ids[h] for h in dict.fromkeys(history[::-1].tolist())
                  if attr in (items.catalogue[h].get("attributes") or ())]
        if having:
            out.append(SharedAttribute(attr, attribute_label(attr), having, share))
    return sorted(out, key=lambda s: (s.catalogue_share, -len(s.items)))


def cosine_to(items: ItemSource, item: int, history: np.ndarray) -> np.ndarray:
    """Cosine similarity of the item's output vector with each history item's. -> (T,)."""
    t = items.table
    h = t[history]  # (T, D)
    v = t[item]  # (D,)
    norms = np.linalg.norm(h, axis=1) * np.linalg.norm(v)  # (T,)
    return (h @ v) / np.maximum(norms, 1e-12)
