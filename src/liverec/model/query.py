"""Query scoring for a loaded model: the catalogue's text index, the model's scores of the
histories that have items, the mask, and the blend (``liverec.text.query``).

Legend: B requests, N items (+1 padding column 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from liverec.evaluate.protocol import mask_seen
from liverec.text.query import QueryConfig, TextIndex, blend_scores, check_query


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
    queries = [check_query(q) for q in queries]  # before any encoding work
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


def recommend_for(run_dir: str | None, history: Sequence[str] | None, query: str | None,
                  k: int = 10, config: QueryConfig | None = None, items: str | None = None,
                  encoder: str | None = None) -> list[dict]:
    """What ``liverec recommend`` prints: a run's recommendations for a history and/or a query,
    or (``items``) a text search of a catalogue alone, with no model.

    Args:
        run_dir: a run directory (None with ``items``).
        history: item ids, oldest first (run only).
        query: free text (required with ``items``).
        k: list length.
        config: blend settings (run with both a history and a query).
        items: ``"faq"`` or a catalogue file (``liverec.data.faq.load_catalogue``).
        encoder: text encoder name for ``items`` (default ``minilm``).

    Returns:
        ``[{"item_id", "score", "title"}, ...]``, best first.

    Raises:
        ConfigError: a wrong combination of arguments.
    """
    from liverec.errors import ConfigError

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if (run_dir is None) == (items is None):
        raise ConfigError("give a run directory or --items, not both and not neither")
    if query is not None:
        query = check_query(query)
    if items is not None:
        from liverec.data.faq import FAQ_TEMPLATE, load_catalogue
        from liverec.text import build_encoder

        if query is None or history:
            raise ConfigError("--items searches a catalogue by text: give --query and no "
                              "--history")
        table = load_catalogue(items)
        index = TextIndex(build_encoder(encoder or "minilm"), FAQ_TEMPLATE).fit(table)
        titles = dict(zip(index.ids_[1:], _titles(table)))
        return [{"item_id": i, "score": s, "title": titles[i]} for i, s in
                index.search(query, k)]
    import liverec

    if not history and query is None:
        raise ConfigError("give --history, --query or both")
    rec = liverec.load(run_dir)
    titles = dict(zip(rec.items["item"].to_list(), _titles(rec.items)))
    got = rec.recommend(list(history or []), k=k, query=query, query_config=config)
    return [{"item_id": i, "score": s, "title": titles.get(i, "")} for i, s in got]


def _titles(items) -> list[str]:
    if "title" not in items.columns:
        return [""] * items.height
    return [t or "" for t in items["title"].cast(str).to_list()]
