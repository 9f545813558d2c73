"""A learnable S3-Rec file (cyclic sequences) and tiny, dropout-free settings for CLI runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# deterministic and fast: no dropout, small model, one thread, no progress bar, no data cache
TINY = ["--set", "model.d_model=16", "--set", "model.d_ff=32", "--set", "model.max_len=16",
        "--set", "model.n_heads=2", "--set", "model.dropout=0.0",
        "--set", "model.attn_dropout=0.0", "--set", "model.emb_dropout=0.0",
        "--set", "train.lr=0.01", "--set", "train.batch_size=64",
        "--set", "train.warmup_steps=5", "--set", "train.num_threads=1",
        "--set", "train.progress=false", "--set", "data.cache=false",
        "--set", "eval.baselines=[]"]


def write_shop(path: Path, n_users: int = 300, n_items: int = 40, seed: int = 3) -> Path:
    """One line per user, items in time order; the next item is always last + 1 (mod N)."""
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(1, n_users + 1):
        start, n = rng.integers(1, n_items + 1), rng.integers(5, 12)
        items = [(start + t - 1) % n_items + 1 for t in range(n)]
        lines.append(" ".join(str(x) for x in [u, *items]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def shop_file(tmp_path) -> Path:
    return write_shop(tmp_path / "Shop.txt")
