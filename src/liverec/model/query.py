"""Query scoring for a loaded model: the catalogue's text index, the model's scores of the
histories that have items, the mask, and the blend (``liverec.text.query``).

Legend: B requests, N items (+1 padding column 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from liverec.evaluate.protocol import mask_seen
from liverec.text.query import QueryConfig, TextIndex, blend_scores


def build_text_index(items, text_encoder: str, template: str, encoder=None) -> TextIndex:
    """A TextIndex over a model's catalogue (rows in index order: row i -> index i + 1).

    Args:
        items: the model's item table (``item`` plus title/text/attributes), sorted by index.
        text_encoder: registry name of the encoder (the model config's ``text_encoder``).
        template: item text template (the model config's ``text_template``).
        encoder: a TextEncoder to use instead of building ``text_encoder``.
    """
    from liverec.text import build_encoder

    enc = encoder if encoder is not None else build_encoder(text_encoder)
    return TextIndex(enc, template).fit(items)


def query_scores(rec, histories: Sequence[np.ndarray], queries: Sequence[str],
                 exclude_seen: bool = True, config: QueryConfig | None = None) -> torch.Tensor:
    """Blended scores of (history, query) requests over every item, masked.

    A request with an empty history is scored by its query alone (cosines); the others by
    ``blend_scores`` of the cosines and the model's scores. Padding (and, with
    ``exclude_seen``, the history's items) are -inf.

    Args:
        rec: a :class:`liverec.model.recommender.Recommender`.
        histories: B index arrays (possibly empty).
        queries: B query strings.
        exclude_seen: mask the history's items.
        config: blend settings (None = ``rec.query_config``).

    Returns:
        (B, N + 1) float32 scores.

    Raises:
        QueryError: an unusable query; NonFiniteError: the model scores NaN/inf.
    """
    if len(queries) != len(histories):
        raise ValueError(f"{len(queries)} queries for {len(histories)} histories")
    config = config if config is not None else rec.query_config
    index = rec.text_index()
    text = index.similarity(queries)  # (B, N + 1)
    if text.shape[1] != rec.vocab.n_items + 1:
        raise ValueError(f"the text index has {text.shape[1] - 1} items, the model "
                         f"{rec.vocab.n_items}")
    seen = [h if exclude_seen else h[:0] for h in histories]
    text = blend_scores(mask_seen(text, seen), None, config)  # the cosines, NaN/+inf checked
    out = text.clone()
    with_hist = [i for i, h in enumerate(histories) if len(h)]
    if with_hist:
        model = rec.checked_scores([histories[i] for i in with_hist])  # (b, N + 1)
        model = mask_seen(model, [seen[i] for i in with_hist])
        rows = torch.tensor(with_hist, dtype=torch.long)
        out[rows] = blend_scores(text[rows], model, config)
    return out
