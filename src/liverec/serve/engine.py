"""The serving engine: user state from the store, cached answers, micro-batched inference,
retrieval, new items and the atomic model hot-swap.

Hot path of ``recommend_user``: read the user's store version; a cached answer for that
version, model generation and request is returned as ready-made JSON bytes. A miss reads the
history, computes the user vector (one forward pass per micro-batch) and the top-k (one
retrieval per micro-batch) on the inference thread, then caches both.

Events: a timestamp more than ``FUTURE_TOLERANCE_S`` (one day) ahead of the server's clock is
refused (:class:`EventTimeError`, 422: almost always milliseconds sent as seconds); a missing
or 0 timestamp means "now" (the server's clock). Histories are ordered by these times.

Re-ranking: every answer goes through the deployment's rules (:mod:`liverec.serve.rerank`,
a request may override them); flagged and denied items are left out of retrieval itself and
checked again on the answer, and every catalogue change (a flag included) drops the cached
answers.

Versions: a run is refused (at start and at reload, the old model keeps serving) when its
item table, user vectors or scores are not finite, or when item ids the stored histories may
use (the served catalogue, recorded in the store) are missing from it or describe other items
(title, text, attributes), unless the caller allows a catalogue change explicitly.

Legend: B batch, D dim, R item rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from liverec.errors import LiverecError, UnservableModelError
from liverec.explain import POPULAR_REASON, Explainer
from liverec.model.recommender import UnknownItemError
from liverec.serve.batching import MicroBatcher
from liverec.serve.cache import UserCache
from liverec.serve.metrics import Metrics
from liverec.serve.model_handle import ModelHandle
from liverec.serve.query import QueryScorer
from liverec.serve.rerank import Plan, RerankView, ServedRerank
from liverec.serve.rerank_config import DEFAULT_REQUEST, RerankRequest, load_rerank_file
from liverec.serve.settings import ServeSettings
from liverec.serve.stores import Event, EventStore

log = logging.getLogger(__name__)

ItemVectorHook = Callable[[dict], "np.ndarray | None"]
FUTURE_TOLERANCE_S = 86_400.0
ITEM_FIELDS = ("title", "text", "attributes", "unsafe", "available")


class EventTimeError(LiverecError):
    """An event's timestamp is too far in the future (HTTP 422; nothing stored)."""


class CatalogueChangeError(UnservableModelError):
    """A run's catalogue gives stored item ids another meaning (or lacks them)."""


@dataclass
class Query:
    """One recommendation to compute (the micro-batcher's input)."""

    handle: ModelHandle
    history: np.ndarray  # (T,) item indices
    vector: np.ndarray | None  # (D,) a cached user vector, or None = encode
    k: int  # rows to retrieve
    exclude: np.ndarray  # row indices never returned


def compute_batch(queries: Sequence[Query]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(user vector, ids, scores) per query: one forward pass and one retrieval per handle."""
    out: list = [None] * len(queries)
    for handle in {id(q.handle): q.handle for q in queries}.values():
        rows = [i for i, q in enumerate(queries) if q.handle is handle]
        todo = [i for i in rows if queries[i].vector is None]
        vecs = {i: queries[i].vector for i in rows}
        if todo:
            enc = handle.user_vectors([queries[i].history for i in todo])  # (b, D)
            vecs.update(zip(todo, enc))
        u = np.stack([vecs[i] for i in rows])  # (B, D)
        k = max(queries[i].k for i in rows)
        ids, scores = handle.search(u, [queries[i].history for i in rows], k,
                                    [queries[i].exclude for i in rows])
        for r, i in enumerate(rows):
            keep = ids[r, : queries[i].k] >= 0
            out[i] = (vecs[i], ids[r, : queries[i].k][keep], scores[r, : queries[i].k][keep])
    return out


def _retrieve(handle: ModelHandle, vector: np.ndarray, history: np.ndarray,
              exclude: np.ndarray):
    """The top-n again for one user (the stage widens its pool with it)."""
    def more(n: int) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = handle.search(vector[None], [history], n, [exclude])  # (1, n)
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    return more


class Engine:
    """State, cache, batching and model versions behind the routes.

    Args:
        settings: the service settings.
        store: the event store.
        metrics: the app's Prometheus metrics.
    """

    def __init__(self, settings: ServeSettings, store: EventStore, metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.handle = ModelHandle(settings.run_dir, settings.retriever,
                                  settings.mask_cache_bytes)
        self._check_catalogue(self.handle, None, settings.allow_catalogue_change)
        self.cache = UserCache(settings.cache_users if settings.cache and not settings.naive
                               else 0, max_bytes=settings.cache_bytes)
        metrics.track_cache("answers", lambda: self.cache.stats()["answers"])
        metrics.track_cache("vectors", lambda: self.cache.stats()["vectors"])
        metrics.track_cache("filter_masks", lambda: self.handle.masks.stats())
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="liverec-infer")
        self.batcher = MicroBatcher(compute_batch, self.executor, settings.batch_window_ms,
                                    settings.max_batch, on_batch=metrics.batch_size.observe)
        self.item_vector_for: ItemVectorHook | None = None  # e.g. a text encoder, see add_item
        self._reload_lock = asyncio.Lock()
        self._explainers: weakref.WeakKeyDictionary[ModelHandle, Explainer] = \
            weakref.WeakKeyDictionary()
        self.recent_users: deque[str] = deque(maxlen=200)  # of the latest events (dashboard)
        self.shared = None  # a liverec.serve.shared.SharedState when replicas share the store
        self.rerank_file = load_rerank_file(settings.rerank) if settings.rerank else None
        self._reranks: weakref.WeakKeyDictionary[ModelHandle, ServedRerank] = \
            weakref.WeakKeyDictionary()
        # handles made ready by stage() and not installed yet (an aborted reload's go away)
        self._staged: weakref.WeakKeyDictionary[ModelHandle, bool] = weakref.WeakKeyDictionary()
        self.query_scorer = QueryScorer()  # query= on /v1/recommend (serve/query.py)
        for item in store.items():
            self._apply_item(self.handle, item)
        self.rerank(self.handle)

    @property
    def use_batching(self) -> bool:
        return self.settings.batching and not self.settings.naive

    def rerank(self, handle: ModelHandle) -> ServedRerank:
        """The deployment's re-ranking over a model version (built on first use)."""
        served = self._reranks.get(handle)
        if served is None:
            served = self._reranks[handle] = ServedRerank(self.rerank_file, handle)
        return served

    async def _topk(self, q: Query) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.settings.naive:
            loop = asyncio.get_running_loop()
            ids, scores = await loop.run_in_executor(
                None, q.handle.naive_topk, q.history, q.k, q.exclude)
            return np.zeros(0), ids, scores
        if self.use_batching:
            return await self.batcher.submit(q)
        loop = asyncio.get_running_loop()
        return (await loop.run_in_executor(self.executor, compute_batch, [q]))[0]

    def _exclude(self, handle: ModelHandle, seen: np.ndarray, exclude: Sequence[str],
                 attribute: str | None, plan: Plan) -> np.ndarray:
        parts = [seen, handle.encode(exclude)[0], plan.view.hidden(plan.allow, plan.attributes)]
        if attribute is not None:
            parts.append(handle.not_matching(attribute))
        return np.concatenate(parts)

    async def cached_answer(self, user_id: str, key: object) -> bytes | None:
        """The cached answer to request ``key`` for the user's current state, or None.

        Raises:
            StoreUnavailable: the store cannot tell the user's version now (HTTP 503).
        """
        body = self.cache.answer(user_id, await self.store.aversion(user_id), key)
        if body is not None:
            self.metrics.cache_hits.inc()
        return body

    async def _ranked(self, handle: ModelHandle, plan: Plan, history: np.ndarray,
                      vector: np.ndarray | None, k: int, exclude: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user vector, ids, scores): the plan's candidates, then the stage.

        The stage runs here, on the event loop (about 0.1-0.9 ms of numpy calls): on the
        inference thread, each call handed the GIL back and forth with the loop, which cost
        uncached throughput 0.37x of no stage against 0.55-0.6x here (benchmarks/
        rerank_latency.py, every rule on, A/B on the loaded 2-core machine)."""
        q = Query(handle, history, vector, plan.candidates(k), exclude)
        vec, ids, scores = await self._topk(q)
        if self.settings.naive:  # the reference path: widening recomputes too, off the loop
            def naive():
                return plan.view.rank(plan, k, ids, scores, history,
                                      lambda n: handle.naive_topk(history, n, exclude))

            ids, scores = await asyncio.get_running_loop().run_in_executor(None, naive)
        else:
            ids, scores = plan.view.rank(plan, k, ids, scores, history,
                                         _retrieve(handle, vec, history, exclude))
        return vec, ids, scores

    async def recommend_user(self, user_id: str, k: int, exclude: Sequence[str] = (),
                             exclude_seen: bool | None = None, attribute: str | None = None,
                             key: object = None, explain: bool = False,
                             rerank: RerankRequest = DEFAULT_REQUEST) -> bytes:
        """The JSON answer for a stored user (popular items for an unknown one).

        ``key`` identifies the request in the answer cache (the route passes the raw query
        string, which :mod:`liverec.serve.fastpath` looks up before routing). Answers for
        users without events are not cached. ``rerank``: the request's overrides of the
        deployment's re-ranking rules. ``exclude_seen`` None: as the served run's protocol
        (:meth:`ModelHandle.exclude_seen`: seen items stay out unless it is repeat-aware).

        Raises:
            Invalid: overrides the deployment does not allow (HTTP 422).
        """
        key = key if key is not None else (k, tuple(exclude), exclude_seen, attribute, explain,
                                           rerank)
        handle, generation = self.handle, self.cache.generation
        body = await self.cached_answer(user_id, key)
        if body is not None:
            return body
        plan = self.rerank(handle).current().plan(rerank)
        self.metrics.cache_misses.inc()
        history, version = await self.store.astate(user_id)
        idx = handle.encode([item for item, _ in history])[0]
        seen = idx if handle.exclude_seen(exclude_seen) else idx[:0]
        ex = self._exclude(handle, seen, exclude, attribute, plan)
        if not len(idx[idx <= handle.n_model]):
            body = self._popular(handle, user_id, k, ex, version, explain, plan)
        else:
            vec = self.cache.vector(user_id, version)
            vec, ids, scores = await self._ranked(handle, plan, idx, vec, k, ex)
            if len(vec):
                self.cache.put_vector(user_id, version, generation, vec)
            reasons = await self._reasons(handle, plan.view, idx, ids) if explain else None
            body = self._answer(handle, user_id, ids, scores, version, None, reasons, plan)
        if version:  # an unknown user's answer (popular items) is cheap and not cached: no
            # anonymous request may take cache space from, or evict, the answers of real users
            self.cache.put_answer(user_id, version, generation, key, body)
        return body

    async def recommend_history(self, history: Sequence[str], k: int, exclude: Sequence[str],
                                exclude_seen: bool | None, attribute: str | None,
                                ignore_unknown: bool, explain: bool = False,
                                rerank: RerankRequest = DEFAULT_REQUEST) -> bytes:
        """The JSON answer for an anonymous history of item ids (oldest first);
        ``exclude_seen`` None: as the served run's protocol (see :meth:`recommend_user`)."""
        handle = self.handle
        plan = self.rerank(handle).current().plan(rerank)
        idx, unknown = handle.encode(history)
        if unknown and not ignore_unknown:
            raise UnknownItemError(unknown)
        seen = idx if handle.exclude_seen(exclude_seen) else idx[:0]
        ex = self._exclude(handle, seen, exclude, attribute, plan)
        if not len(idx[idx <= handle.n_model]):
            return self._popular(handle, None, k, ex, len(history), explain, plan)
        _, ids, scores = await self._ranked(handle, plan, idx, None, k, ex)
        reasons = await self._reasons(handle, plan.view, idx, ids) if explain else None
        return self._answer(handle, None, ids, scores, len(history), None, reasons, plan)

    def explainer(self, handle: ModelHandle) -> Explainer:
        """The model version's explainer (built on first use; reads the live catalogue)."""
        explainer = self._explainers.get(handle)
        if explainer is None:
            explainer = self._explainers[handle] = Explainer(handle.rec.model, handle)
        return explainer

    async def _reasons(self, handle: ModelHandle, view: RerankView, history: np.ndarray,
                       ids: np.ndarray) -> list[str]:
        """One-line reasons for the answer's items: one batched forward on the model thread
        (hidden history items are not named)."""
        if not len(ids):
            return []

        def run() -> list[str]:
            return [view.shown_reason(e)
                    for e in self.explainer(handle).explain_indices(history, ids)]

        return await asyncio.get_running_loop().run_in_executor(self.executor, run)

    def _popular(self, handle: ModelHandle, user_id: str | None, k: int, exclude: np.ndarray,
                 n_events: int, explain: bool, plan: Plan) -> bytes:
        ranked = handle.popular[~np.isin(handle.popular, exclude)]

        def top(n: int) -> tuple[np.ndarray, np.ndarray]:
            return ranked[:n], np.array([handle.catalogue[i].get("popularity", 0)
                                         for i in ranked[:n]], dtype=float)

        cand, pops = plan.view.rank(plan, k, *top(plan.candidates(k)), more=top)
        reasons = [POPULAR_REASON] * len(cand) if explain else None
        return self._answer(handle, user_id, cand, pops, n_events, "popular", reasons, plan)

    def _answer(self, handle: ModelHandle, user_id: str | None, ids: np.ndarray,
                scores: np.ndarray, n_events: int, fallback: str | None,
                reasons: list[str] | None, plan: Plan) -> bytes:
        keep = plan.view.visible(ids)  # a flag set while the answer was computed
        if not keep.all():
            ids, scores = ids[keep], scores[keep]
            reasons = None if reasons is None else [r for r, ok in zip(reasons, keep) if ok]
        names = handle.ids
        items = [{"item_id": names[i], "score": round(float(s), 6)}
                 for i, s in zip(ids.tolist(), scores.tolist())]
        if reasons is not None:  # explain=true: each item's title and one-line reason
            for item, i, reason in zip(items, ids.tolist(), reasons):
                item.update(title=handle.catalogue[i].get("title", ""), reason=reason)
        return orjson.dumps({"user_id": user_id, "items": items,
                             "model_version": handle.version, "fallback": fallback,
                             "events_seen": n_events, "rerank": plan.info})

    def add_events(self, events: Sequence[dict]) -> list[tuple[str, bool]]:
        """Validate, store durably, invalidate: (event_id, stored) per event (False = duplicate).

        Raises:
            UnknownItemError: naming every unknown item id (nothing is stored).
        """
        handle = self.handle
        unknown = [e["item_id"] for e in events if e["item_id"] not in handle.lookup]
        if unknown and self.shared is not None:  # added through another replica just now?
            unknown = self.shared.fetch_items(list(dict.fromkeys(unknown)))
        if unknown:
            raise UnknownItemError(list(dict.fromkeys(unknown)))
        now = time.time()
        late = [e["timestamp"] for e in events
                if e.get("timestamp") and e["timestamp"] > now + FUTURE_TOLERANCE_S]
        if late:
            raise EventTimeError(
                f"timestamp {late[0]} is more than a day after the server's time {now:.0f} "
                "(seconds since the epoch; milliseconds?); nothing stored")
        evs = [Event(e["user_id"], e["item_id"], e["event_id"],
                     float(e.get("timestamp") or now), e.get("type") or "view",
                     bool(e.get("timestamp"))) for e in events]
        stored = self.store.append(evs)  # durable on return; EventConflict: nothing stored
        for e, new in zip(evs, stored):
            if new:
                self.cache.invalidate(e.user_id)
                self.recent_users.append(e.user_id)
        self.metrics.events.labels("stored").inc(sum(stored))
        self.metrics.events.labels("duplicate").inc(len(stored) - sum(stored))
        return [(e.event_id, new) for e, new in zip(evs, stored)]

    def _apply_item(self, handle: ModelHandle, item: dict) -> tuple[int, str]:
        if item["item_id"] in handle.lookup:
            return handle.upsert(item, None), "model" if \
                handle.lookup[item["item_id"]] <= handle.n_model else "added"
        vec = self.item_vector_for(item) if self.item_vector_for is not None else None
        source = "hook"
        if vec is None:
            vec, source = handle.vector_from_attributes(item.get("attributes") or ())
        return handle.upsert(item, np.asarray(vec, dtype=np.float32)), source

    def add_item(self, item: dict) -> tuple[int, str, bool]:
        """Add or update an item: (index, vector source, created).

        A new item's vector comes from ``item_vector_for(item)`` when that hook is set (e.g. a
        text encoder) and returns a vector; otherwise it is the mean vector of the model's
        items sharing one of its attributes, else the catalogue mean. A known item keeps its
        vector; only the fields ``item`` names (title, text, attributes) change, the others
        keep their values (PATCH semantics).
        """
        handle = self.handle
        idx = handle.lookup.get(item["item_id"])
        created = idx is None
        if created:
            item = {"title": "", "text": "", "attributes": [], **item}
        else:
            known = handle.catalogue[idx]
            item = {"item_id": item["item_id"],
                    **{k: known[k] for k in ITEM_FIELDS if k in known}, **item}
        self.store.put_item(item)
        idx, source = self._apply_item(handle, item)
        self.rerank(handle).rebuild()  # a new row or attributes: the stage's catalogue
        self.cache.clear()  # answers may now include (or filter, a flag) this item
        return idx, source, created

    def _check_catalogue(self, new: ModelHandle, old: ModelHandle | None,
                         allow: bool) -> None:
        """Refuse ``new`` if item ids of the served (or recorded) catalogue lose their meaning.

        The reference is ``old`` (reload) or the catalogue recorded in the store (start); a
        store without one, or without events and items, accepts any catalogue. On success the
        new catalogue is recorded in the store.

        Raises:
            CatalogueChangeError: ids missing or changed, and ``allow`` is false.
        """
        fingerprint, record = new.fingerprint(), None
        if old is not None:
            reference, name = old.digests, old.version
        else:
            raw = self.store.get_meta("catalogue")
            record = json.loads(raw) if raw else None
            if record is None or record["fingerprint"] == fingerprint or not (
                    self.store.stats()["events"] or self.store.items()):
                reference, name = {}, ""
            else:
                reference, name = record["digests"], record["model_version"]
        missing, changed = new.catalogue_changes(reference)
        if missing or changed:
            what = "; ".join(f"{len(ids)} {label} (e.g. {ids[:3]})" for ids, label in (
                (missing, "are missing from it"), (changed, "name other items in it")) if ids)
            msg = (f"{new.version} is over another catalogue than {name}, whose item ids the "
                   f"stored histories use: {what}")
            if not allow:
                raise CatalogueChangeError(
                    f"{msg}. Refused; to serve it anyway, reload with "
                    '{"allow_catalogue_change": true} (at start: '
                    "LIVEREC_SERVE_ALLOW_CATALOGUE_CHANGE=true)")
            log.warning("%s (allowed by the caller)", msg)
        if record is None or record["fingerprint"] != fingerprint:
            self.store.put_meta("catalogue", json.dumps({
                "fingerprint": fingerprint, "model_version": new.version,
                "digests": new.digests}))

    def _recent_histories(self, n: int = 8) -> list[list[str]]:
        users = list(dict.fromkeys(reversed(self.recent_users)))[:n]
        return [[i for i, _ in self.store.state(u)[0]] for u in users]

    def load_handle(self, target: str | Path, allow_catalogue_change: bool = False
                    ) -> ModelHandle:
        """Load and check a run beside the served one (blocking): finite tables and scores on
        recent users' histories, and the same catalogue unless ``allow_catalogue_change``.

        Raises:
            ArtifactError: not a loadable run, non-finite tables or scores, or
                (``CatalogueChangeError``) another catalogue that was not allowed.
        """
        new = ModelHandle(Path(target), self.settings.retriever, self.settings.mask_cache_bytes,
                          self._recent_histories())
        self._check_catalogue(new, self.handle, allow_catalogue_change)
        return new

    async def reload(self, run_dir: str | Path | None = None,
                     allow_catalogue_change: bool = False) -> tuple[str, str]:
        """Load a model beside the current one, then swap atomically: (old, new) versions.

        With a shared store every replica loads and checks the new run before any switches
        (:meth:`liverec.serve.shared.SharedState.reload`).

        Raises:
            ArtifactError: the directory is not a loadable run, its tables or scores are not
                finite, or (``CatalogueChangeError``) it is over another catalogue and
                ``allow_catalogue_change`` is false; nothing changes.
        """
        async with self._reload_lock:
            target = Path(run_dir) if run_dir else self.handle.run_dir
            if self.shared is not None:
                return await self.shared.reload(target, allow_catalogue_change)
            loop = asyncio.get_running_loop()
            new = await loop.run_in_executor(None, self.load_handle, target,
                                             allow_catalogue_change)
            return await loop.run_in_executor(None, self.install, new)

    def stage(self, new: ModelHandle) -> ModelHandle:
        """Get ``new`` ready to serve without serving it: the catalogue's added items and its
        re-ranking stage. Replicas stage before voting on a coordinated reload, so that the
        commit is only the swap (:meth:`install`). Blocking (reads the store's items)."""
        for item in self.store.items():
            self._apply_item(new, item)
        self.rerank(new)  # built before the swap: the first answers do not wait for it
        self._staged[new] = True
        return new

    def install(self, new: ModelHandle) -> tuple[str, str]:
        """Give ``new`` the catalogue's added items and swap it in: (old, new) versions.

        Items added since :meth:`stage` (if it ran) are applied after the swap. In-flight
        requests keep their old handle. Blocking (reads the store's items)."""
        if not self._staged.pop(new, False):
            self.stage(new)
            self._staged.pop(new, None)
        old, self.handle = self.handle, new
        for item in self.store.items():  # added while the first pass ran (idempotent)
            if item["item_id"] not in new.lookup:
                self._apply_item(new, item)
        self.rerank(new).rebuild()
        self.cache.clear()
        self.metrics.reloads.inc()
        log.info("model %s replaced by %s", old.version, new.version)
        return old.version, new.version

    def apply_item(self, item: dict) -> None:
        """Apply a catalogue change made elsewhere (another replica) to the served model."""
        handle = self.handle
        self._apply_item(handle, item)
        self.rerank(handle).rebuild()
        self.cache.clear()

    def close(self) -> None:
        self.executor.shutdown(wait=False)
        self.query_scorer.close()
        self.store.close()
