"""Subsets of prepared data for data-efficiency studies (e.g. transfer with few users)."""

from __future__ import annotations

import dataclasses

import numpy as np

from liverec.data.prepare import Prepared


def subsample_train_users(prepared: Prepared, fraction: float, seed: int = 0) -> Prepared:
    """Keep the training sequences of a random ``fraction`` of users only.

    Every user keeps their validation and test cases (their histories are model input, not
    training data), so runs with different fractions are evaluated on the same cases.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return prepared
    n = prepared.sequences.n_users
    keep = np.zeros(n, dtype=bool)
    keep[np.random.default_rng(seed).choice(n, size=max(1, round(fraction * n)),
                                             replace=False)] = True
    split = dataclasses.replace(prepared.split,
                                train_end=np.where(keep, prepared.split.train_end, 0))
    stats = {**prepared.stats, "train_users": int(keep.sum()), "train_user_fraction": fraction}
    return dataclasses.replace(prepared, split=split, stats=stats)
