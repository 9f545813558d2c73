"""A Catalogue for a trained model: its item vectors, the catalogue's attributes and flags."""

from __future__ import annotations

import numpy as np
import torch

from liverec.errors import ConfigError
from liverec.rerank.catalogue import (
    AVAILABLE_COLUMN,
    FLAG_COLUMNS,
    Catalogue,
    categories_from_attributes,
    flags_from_columns,
)


def catalogue_for(recommender, popularity: np.ndarray | None = None,
                  categories: np.ndarray | None = None) -> Catalogue:
    """Catalogue of a :class:`liverec.model.recommender.Recommender`.

    Vectors are the model's output item table (what it scores against); flags are the OR of the
    item table's ``flagged``/``unsafe``/``unavailable`` columns and ``available == False``
    when present; categories default to :func:`categories_from_attributes` of the
    ``attributes`` column.

    Args:
        recommender: a loaded model (``liverec.load``).
        popularity: (N + 1,) interaction counts for exposure control (default: the item
            table's ``count`` column when present, else zeros).
        categories: (N + 1,) category codes (default from attributes).
    """
    ids = np.asarray(recommender.vocab.ids, dtype=object)  # (N + 1,)
    n = len(ids)
    with torch.no_grad():
        vectors = recommender.model.items.table().float().cpu().numpy()[:n]  # (N + 1, D)
    items = recommender.items
    by_index = items.sort("index") if "index" in items.columns else items
    if by_index.height != n - 1:
        raise ConfigError(f"item table has {by_index.height} rows, vocabulary {n - 1} items")
    attrs = [[]] + (by_index["attributes"].to_list() if "attributes" in by_index.columns
                    else [[]] * (n - 1))
    attrs = [a or [] for a in attrs]
    if popularity is None and "count" in by_index.columns:
        popularity = np.concatenate([[0.0], by_index["count"].fill_null(0).to_numpy()])
    cols = {c: [None] + by_index[c].to_list() for c in (*FLAG_COLUMNS, AVAILABLE_COLUMN)
            if c in by_index.columns}
    return Catalogue.build(
        list(ids), vectors,
        categories=categories if categories is not None else categories_from_attributes(attrs),
        flagged=flags_from_columns(cols, n), popularity=popularity, attributes=attrs)
