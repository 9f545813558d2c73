"""The Python API on top of a trained model: recommend for item histories by external id."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch

from liverec.data.prepare import ItemVocab
from liverec.errors import LiverecError, NonFiniteError
from liverec.evaluate.protocol import mask_seen, pad_left
from liverec.text.query import QueryConfig, TextIndex


class UnknownItemError(LiverecError, KeyError):
    """A history names item ids the model does not know."""

    def __init__(self, unknown: list[str]) -> None:
        self.unknown = unknown
        shown = ", ".join(repr(u) for u in unknown[:10])
        more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
        super().__init__(f"unknown item id(s): {shown}{more}")

    def __str__(self) -> str:
        return self.args[0]


class Recommender:
    """A trained sequence model with its vocabulary.

    Args:
        model: a sequence model with ``score(seqs)`` (eval mode).
        vocab: item vocabulary (external id <-> index).
        items: catalogue table aligned with the vocabulary.
        meta: the run's config.json content.
        run_dir: where it was loaded from.
        repeat: the run's repeat-explore mixture (model/repeat.py) in the repeat-aware mode:
            it then scores (full histories) and seen items are recommendable by default.
    """

    def __init__(self, model: torch.nn.Module, vocab: ItemVocab, items: pl.DataFrame,
                 meta: dict | None = None, run_dir: Path | None = None,
                 repeat=None) -> None:
        self.model = model.eval()
        self.repeat = repeat
        self.vocab = vocab
        self.items = items
        self.meta = meta or {}
        self.run_dir = run_dir
        self._lookup = vocab.index_map()
        self.query_config = QueryConfig()  # how a query is blended with a history's scores
        self._text_index: TextIndex | None = None

    @property
    def max_len(self) -> int:
        return self.model.cfg.max_len

    def encode(self, history: Sequence[str], unknown: str = "error") -> np.ndarray:
        """External ids -> indices (n,) int64, matched byte for byte (ids are opaque strings:
        ``"01"`` is not ``"1"``, and a non-``str`` id such as the int ``1`` is never known).

        unknown="error" raises UnknownItemError naming the unknown ids, "ignore" drops them.
        """
        if isinstance(history, str):
            raise TypeError("history must be a sequence of item id strings, not one string")
        idx = [self._lookup.get(i, 0) if isinstance(i, str) else 0 for i in history]
        if unknown == "error" and 0 in idx:
            raise UnknownItemError([h if isinstance(h, str) else repr(h)
                                    for h, i in zip(history, idx) if i == 0])
        return np.array([i for i in idx if i], dtype=np.int64)

    @torch.no_grad()
    def score_indices(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """Scores of every item for each history of indices. -> (B, N + 1). In the
        repeat-aware mode: the mixture's log-probabilities over the full histories."""
        if self.repeat is not None:
            return self.repeat.score_histories(histories)
        seqs = torch.from_numpy(pad_left(histories, self.max_len))
        return self.model.score(seqs).float()

    def checked_scores(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """:meth:`score_indices`, refused when any item's score is NaN or +-inf. -> (B, N + 1).

        Raises NonFiniteError (a broken model: its ranking means nothing, so no list is
        returned, not even an empty one).
        """
        scores = self.score_indices(histories)
        bad = ~torch.isfinite(scores[:, 1:])  # (B, N)
        if bool(bad.any()):
            rows = bad.any(dim=1).nonzero().flatten().tolist()
            raise NonFiniteError(
                f"the model is broken: {int(bad.sum()):,} of {bad.numel():,} scores are NaN or "
                f"infinite (histories {rows[:5]}{' ...' if len(rows) > 5 else ''}); "
                f"{self.run_dir or 'this model'} cannot rank items")
        return scores

    def topk_indices(self, histories: Sequence[np.ndarray], k: int,
                     exclude_seen: bool | None = None, queries: Sequence[str] | None = None,
                     query_config: QueryConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices (B, k), scores (B, k)) of the best items, padding never included.

        With ``queries`` (one string per history), items are scored by
        :func:`liverec.model.query.query_scores` (text similarity, blended with the model's
        scores where the history is not empty); masked items score -inf.
        ``exclude_seen`` None = as the run's protocol: history items are excluded unless the
        run is in the repeat-aware mode.
        Raises NonFiniteError when the model scores any item NaN or +-inf.
        """
        if exclude_seen is None:
            exclude_seen = self.repeat is None
        if queries is not None:
            from liverec.model.query import query_scores

            scores = query_scores(self, histories, queries, exclude_seen, query_config)
        else:
            scores = self.checked_scores(histories)
            if exclude_seen:
                scores = mask_seen(scores, histories)
            else:
                scores[:, 0] = float("-inf")
        k = max(1, min(k, self.vocab.n_items))
        top = scores.topk(k, dim=1)
        return top.indices.numpy(), top.values.numpy()

    def recommend(self, history: Sequence[str] | None = None, k: int = 10,
                  exclude_seen: bool | None = None, rerank=None, query: str | None = None,
                  query_config: QueryConfig | None = None) -> list[tuple[str, float]]:
        """Top-k ``(item_id, score)`` for one history of external item ids (oldest first),
        a free-text ``query``, or both.

        ``query``: items are scored by the cosine between the query's and the items' text
        vectors (the model config's ``text_encoder`` over its ``text_template``; the catalogue
        is encoded on first use, through the on-disk cache). With a non-empty history too, the
        two scores are normalised over the candidates and mixed with weight
        ``query_config.weight`` (default ``self.query_config``: z-scores, 0.7 on the query; see
        :mod:`liverec.text.query`). Scores returned: cosines for a query alone, the blended
        score otherwise, the model's score without a query.

        ``exclude_seen``: leave the history's items out (None = as the run's protocol: out,
        unless the run is in the repeat-aware mode).

        ``rerank``: an optional ``liverec.rerank.Reranker``; the top
        ``rerank.config.n_candidates`` items then go through it (hard rules, diversity,
        calibration, exposure) and the list may be shorter than k when the rules leave fewer.

        Raises:
            ValueError: neither a history nor a query; QueryError: an unusable query;
            UnknownItemError: unknown history ids.
        """
        if history is None:
            if query is None:
                raise ValueError("give a history, a query or both")
            history = []
        return self.recommend_batch([history], k=k, exclude_seen=exclude_seen, rerank=rerank,
                                    queries=None if query is None else [query],
                                    query_config=query_config)[0]

    def recommend_batch(self, histories: Sequence[Sequence[str]], k: int = 10,
                        exclude_seen: bool | None = None, rerank=None,
                        queries: Sequence[str] | None = None,
                        query_config: QueryConfig | None = None) -> list[list[tuple[str, float]]]:
        """:meth:`recommend` for many histories (and optionally one query each) at once."""
        encoded = [self.encode(h) for h in histories]
        n_top = max(k, rerank.config.n_candidates) if rerank is not None else k
        idx, val = self.topk_indices(encoded, n_top, exclude_seen, queries, query_config)
        out = []
        for hist, row_idx, row_val in zip(encoded, idx, val):
            keep = np.isfinite(row_val)
            row_idx, row_val = row_idx[keep], row_val[keep]
            if rerank is not None:
                row_idx, row_val = rerank.rerank(row_idx, row_val, k, history=hist)
            out.append(list(zip(self.vocab.decode(row_idx), row_val.tolist())))
        return out

    def text_index(self, encoder=None) -> TextIndex:
        """The catalogue's text index for queries (built on first use, or again with another
        ``encoder``); items added by :meth:`add_items` are appended to it."""
        if self._text_index is None or encoder is not None:
            from liverec.model.query import build_text_index

            cfg = self.model.cfg
            self._text_index = build_text_index(self.items, cfg.text_encoder,
                                                cfg.text_template, encoder)
        return self._text_index

    def add_items(self, items: pl.DataFrame, encoder=None) -> np.ndarray:
        """Make new items recommendable at once from their text (text-aware models only).

        Their text (the model's template over title/text/attributes) is encoded through the
        on-disk cache and appended to the item table; nothing is retrained.

        Args:
            items: rows with ``item`` (new external ids) and any of title, text, attributes.
            encoder: a TextEncoder; None = the one named by the model config.

        Returns:
            The new items' indices.
        """
        from liverec.model.items import uses_text
        from liverec.model.text_items import new_catalogue_rows

        cfg = self.model.cfg
        if not uses_text(cfg):
            raise LiverecError("add_items needs a text-aware model (model.item_repr 'text' or "
                               "'fusion'): an id-only model has no vector for an unseen item")
        rows = new_catalogue_rows(items, self._lookup, start=self.vocab.n_items + 1)
        raw = self._encode_text(rows, encoder)  # (k, E)
        self.model.items.add_items(torch.from_numpy(raw))
        self.model.cfg = dataclasses.replace(cfg, n_items=cfg.n_items + rows.height)
        self.items = pl.concat([self.items, rows], how="diagonal_relaxed")
        if self._text_index is not None:
            self._text_index.add(rows)
        self.vocab = ItemVocab.from_ids(list(self.vocab.ids[1:]) + rows["item"].to_list())
        self._lookup = self.vocab.index_map()
        return rows["index"].to_numpy()

    def _encode_text(self, rows: pl.DataFrame, encoder) -> np.ndarray:
        from liverec.text import build_encoder, encode_cached, item_text

        if encoder is None:
            encoder = getattr(self, "_encoder", None) or build_encoder(self.model.cfg.text_encoder)
            self._encoder = encoder
        return encode_cached(encoder, item_text(rows, self.model.cfg.text_template))


def load(run_dir: str | Path) -> Recommender:
    """Load a run directory written by ``liverec train`` (no pickle, safetensors + JSON)."""
    from liverec.model.artifact import load_model
    from liverec.model.repeat import load_repeat

    model, vocab, items, meta = load_model(Path(run_dir))
    return Recommender(model, vocab, items, meta, Path(run_dir),
                       repeat=load_repeat(Path(run_dir), model))
