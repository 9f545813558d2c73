"""A random catalogue for the re-ranking tests."""

from __future__ import annotations

import numpy as np

from liverec.rerank import Catalogue


def random_catalogue(n: int = 300, d: int = 16, n_cats: int = 8, n_attrs: int = 12,
                     flag_share: float = 0.05, seed: int = 0) -> Catalogue:
    """n items (+ padding): random vectors, categories (some -1), attributes, flags, popularity."""
    rng = np.random.default_rng(seed)
    cats = rng.integers(-1, n_cats, n + 1)
    attrs = [[f"a{x}" for x in rng.choice(n_attrs, rng.integers(0, 4), replace=False)]
             for _ in range(n + 1)]
    return Catalogue.build(
        [f"id-{j:04d}" for j in range(n + 1)], rng.normal(size=(n + 1, d)), categories=cats,
        flagged=rng.random(n + 1) < flag_share,
        popularity=rng.zipf(1.5, n + 1).clip(max=10_000).astype(float), attributes=attrs)
