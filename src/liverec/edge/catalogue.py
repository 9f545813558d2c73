"""What a bundle records about its source run, computed as the service computes it.

``model_version`` and the item digests are :mod:`liverec.model.artifact`'s, which the service
uses too; a test checks that the two agree on a real run, so the dashboard can tell whether a
bundle belongs to the model it serves.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from liverec.model.artifact import digests_fingerprint, item_digest, model_version

__all__ = ["catalogue_fingerprint", "flagged_ids", "item_digest", "model_version",
           "popular_indices"]


def catalogue_fingerprint(items: pl.DataFrame) -> str:
    """One sha1 over the catalogue's ids and their details (items.parquet rows)."""
    return digests_fingerprint({str(r["item"]): item_digest(r) for r in items.to_dicts()})


FLAG_COLUMNS = ("unsafe", "flagged", "available", "unavailable")


def flagged_ids(items: pl.DataFrame) -> list[str]:
    """Ids of the items.parquet rows flagged as the service reads them
    (``liverec.serve.model_handle.is_flagged``): ``unsafe`` or ``flagged`` true,
    ``available`` false or ``unavailable`` true (a null says nothing). [] without these
    columns. -> sorted ids."""
    present = [c for c in FLAG_COLUMNS if c in items.columns]
    if not present:
        return []
    out = []
    for r in items.select("item", *present).to_dicts():
        if (bool(r.get("unsafe")) or bool(r.get("flagged")) or r.get("available") is False
                or bool(r.get("unavailable"))):
            out.append(str(r["item"]))
    return sorted(out)


def popular_indices(counts: np.ndarray, n: int = 500) -> np.ndarray:
    """The ``n`` most frequent item indices (1-based), ties by index, as the service ranks
    its fallback for an empty history. counts: (N,) -> (min(n, N),)."""
    return (np.argsort(-np.asarray(counts), kind="stable") + 1)[:n]
