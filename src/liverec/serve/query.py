"""Recommendations for a free-text query in the service (``query`` on /v1/recommend).

Per served model version, the catalogue's item texts (the run's ``text_template`` over each
row's title, text and attributes, items added through the API included) are encoded by the run's
``text_encoder`` on the first query (through the on-disk vector cache) and kept up to date: an
added item's row is encoded when a query first sees it, an updated item's row when its text
changed. Scoring is exact over every row: the query's cosines, blended with the user vector's
inner products (a repeat-aware run: its mixture's log-probabilities, ``ModelHandle.row_scores``)
when the history has items (``liverec.text.query.blend_scores``, the same rule
as ``Recommender.recommend(query=...)``); excluded rows (seen, ``exclude``, attribute filter,
and the rows the deployment's rules hide: flagged, denied, ...) score -inf and are never
returned. The top candidates then go through the same re-ranking stage as every answer
(``liverec.serve.rerank``). The scoring runs on a thread of its own, so a first query that
encodes the catalogue does not hold up other recommendations.

Legend: R rows (items, padding row 0 and added items included), E text dimension.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import torch

from liverec.serve.rerank_config import DEFAULT_REQUEST, RerankRequest
from liverec.text import build_encoder, encode_cached, item_text
from liverec.text.encoder import normalise
from liverec.text.query import QueryConfig, QueryError, blend_scores, check_query

QUERY_REASON = "Matches your query (text similarity {:.2f})"


class CatalogueText:
    """Unit text vectors of a model version's rows, refreshed as its catalogue changes.

    Args:
        handle: a ``liverec.serve.model_handle.ModelHandle``.
    """

    def __init__(self, handle) -> None:
        cfg = handle.rec.model.cfg
        self.template = cfg.text_template
        self.encoder = build_encoder(cfg.text_encoder)
        self.texts: list[str] = []
        self.vectors = np.zeros((0, 0), dtype=np.float32)  # (R, E)
        self._gen = -1

    def refresh(self, handle) -> np.ndarray:
        """The (R, E) vectors for the handle's current rows (row 0 zero)."""
        if handle._gen == self._gen and len(self.texts) == handle.n_rows:
            return self.vectors
        gen = handle._gen  # read first: a change after it is picked up by the next query
        n = min(len(handle.catalogue), len(handle.ids))  # an upsert appends to both
        texts = [""] + item_text(_frame(handle.ids[1:n], handle.catalogue[1:n]), self.template)
        todo = [i for i in range(1, len(texts))
                if i >= len(self.texts) or self.texts[i] != texts[i]]
        if todo:
            try:
                new = normalise(encode_cached(self.encoder, [texts[i] for i in todo]))  # (t,E)
            except ImportError as exc:
                raise QueryError(f"query recommendations need the text encoder: {exc} "
                                 "(pip install 'liverec[text]')") from None
            dim = new.shape[1]
            grown = np.zeros((len(texts), dim), dtype=np.float32)
            keep = min(len(self.texts), len(texts))
            if self.vectors.shape[1] == dim and keep:
                grown[:keep] = self.vectors[:keep]
            grown[todo] = new
            self.vectors = grown
        self.texts, self._gen = texts, gen
        return self.vectors

    def encode_query(self, query: str) -> np.ndarray:
        """The query's unit vector. -> (E,)."""
        return normalise(np.asarray(self.encoder.encode([query]), dtype=np.float32))[0]


def top_rows(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows (m,), scores (m,)) of the k best finite scores, best first, m <= k."""
    top = scores.topk(min(k, len(scores)))
    keep = torch.isfinite(top.values)
    return top.indices[keep].numpy(), top.values[keep].numpy()


def _frame(ids: Sequence[str], rows: Sequence[dict]) -> pl.DataFrame:
    return pl.DataFrame({
        "item": list(ids), "title": [r.get("title", "") or "" for r in rows],
        "text": [r.get("text", "") or "" for r in rows],
        "attributes": [list(r.get("attributes", ()) or ()) for r in rows],
    }, schema={"item": pl.Utf8, "title": pl.Utf8, "text": pl.Utf8,
               "attributes": pl.List(pl.Utf8)})


class QueryScorer:
    """Query scoring for an engine: one text index per model version, one worker thread.

    Args:
        config: the blend (weight, normalisation); default ``QueryConfig()``.
    """

    def __init__(self, config: QueryConfig | None = None) -> None:
        self.config = config or QueryConfig()
        self._texts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="liverec-query")

    def texts(self, handle) -> CatalogueText:
        with self._lock:
            found = self._texts.get(handle)
            if found is None:
                found = self._texts[handle] = CatalogueText(handle)
            return found

    @torch.no_grad()
    def scores(self, handle, query: str, history: np.ndarray,
               exclude: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores (n,), cosines (n,)) of every row for one request (blocking); excluded rows
        and padding are -inf in both.

        Args:
            handle: the model version.
            query: checked query text.
            history: (T,) row indices (added items are skipped by the model).
            exclude: row indices never returned (seen, excluded, hidden by the rules).
        """
        texts = self.texts(handle)
        vectors = texts.refresh(handle)  # (R', E)
        table = handle.table  # (R, D): rows added meanwhile are scored next time
        n = min(len(vectors), len(table))
        cos = torch.from_numpy(vectors[:n] @ texts.encode_query(query))[None, :]  # (1, n)
        cos[0, 0] = float("-inf")
        ex = exclude[exclude < n]
        cos[0, torch.from_numpy(ex.astype(np.int64))] = float("-inf")
        model = None
        if len(history[history <= handle.n_model]):
            u = handle.user_vectors([history])  # (1, D)
            model = handle.row_scores(u, [history], table[:n])  # (1, n); the mixture if any
            model[torch.isneginf(cos)] = float("-inf")
        return blend_scores(cos, model, self.config)[0], cos[0]

    def topk(self, handle, query: str, history: np.ndarray, exclude: np.ndarray,
             k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids (m,), scores (m,), cosines (m,)) of the best rows, m <= k, no re-ranking
        (blocking; the reference the tests compare the service with)."""
        scores, cos = self.scores(handle, query, history, exclude)
        ids, vals = top_rows(scores, k)
        return ids, vals, cos[ids].numpy()

    async def recommend(self, engine, query: str, history: Sequence[str] | None,
                        user_id: str | None, k: int, exclude: Sequence[str],
                        exclude_seen: bool | None, attribute: str | None, ignore_unknown: bool,
                        explain: bool, rerank: RerankRequest = DEFAULT_REQUEST) -> bytes:
        """The JSON answer (same shape as every /v1/recommend answer) for a query, alone or
        with an anonymous history or a stored user's history, after the deployment's
        re-ranking rules (overridden by ``rerank``): hidden rows are excluded from the scores,
        the stage re-ranks the top candidates, and the answer drops rows flagged meanwhile.

        Raises:
            QueryError: an unusable query (422); UnknownItemError: unknown history ids (422);
            Invalid: overrides the deployment does not allow (422); StoreUnavailable: the store
            cannot give the user's history (503).
        """
        from liverec.model.recommender import UnknownItemError

        query = check_query(query)
        handle = engine.handle
        plan = engine.rerank(handle).current().plan(rerank)
        if user_id is not None:
            stored, _ = await engine.store.astate(user_id)
            idx = handle.encode([item for item, _ in stored])[0]
            n_events = len(stored)
        else:
            idx, unknown = handle.encode(history or ())
            if unknown and not ignore_unknown:
                raise UnknownItemError(unknown)
            n_events = len(history or ())
        seen = idx if handle.exclude_seen(exclude_seen) else idx[:0]
        ex = engine._exclude(handle, seen, exclude, attribute, plan)
        loop = asyncio.get_running_loop()
        scores, cos = await loop.run_in_executor(self.executor, self.scores, handle, query,
                                                 idx, ex)
        ids, vals = plan.view.rank(plan, k, *top_rows(scores, plan.candidates(k)), idx,
                                   lambda m: top_rows(scores, m))
        reasons = None
        if explain:
            blended = len(idx[idx <= handle.n_model]) > 0
            reasons = await engine._reasons(handle, plan.view, idx, ids) if blended else \
                [QUERY_REASON.format(c) for c in cos[ids].tolist()]
        return engine._answer(handle, user_id, ids, vals, n_events, None, reasons, plan)

    def close(self) -> None:
        self.executor.shutdown(wait=False)
