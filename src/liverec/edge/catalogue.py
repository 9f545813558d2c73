"""What a bundle records about its source run, computed as the service computes it.

``model_version`` and ``catalogue_fingerprint`` follow
:func:`liverec.serve.model_handle.model_version` and ``ModelHandle.fingerprint`` (edge may not
import serve, which sits above it); a test checks that the two agree on a real run, so the
dashboard can tell whether a bundle belongs to the model it serves.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl


def model_version(run_dir: Path) -> str:
    """``<run dir name>@<sha1 of model.safetensors and config.json, 10 hex digits>``."""
    run_dir = Path(run_dir)
    h = hashlib.sha1()
    for name in ("model.safetensors", "config.json"):
        h.update(f"{name};".encode())
        with open(run_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return f"{run_dir.resolve().name}@{h.hexdigest()[:10]}"


def item_digest(row: dict) -> str:
    """Fingerprint of what an item id means: its title, text and attributes."""
    attributes = row.get("attributes")
    what = [row.get("title") or "", row.get("text") or "",
            sorted(str(a) for a in attributes) if attributes is not None else []]
    return hashlib.sha1(json.dumps(what).encode()).hexdigest()[:16]


def catalogue_fingerprint(items: pl.DataFrame) -> str:
    """One sha1 over the catalogue's ids and their details (items.parquet rows)."""
    digests = {str(r["item"]): item_digest(r) for r in items.to_dicts()}
    h = hashlib.sha1()
    for i, d in sorted(digests.items()):
        h.update(f"{i}\x00{d}\x01".encode())
    return h.hexdigest()


def popular_indices(counts: np.ndarray, n: int = 500) -> np.ndarray:
    """The ``n`` most frequent item indices (1-based), ties by index, as the service ranks
    its fallback for an empty history. counts: (N,) -> (min(n, N),)."""
    return (np.argsort(-np.asarray(counts), kind="stable") + 1)[:n]
