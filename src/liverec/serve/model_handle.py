"""A loaded model version with everything the hot path needs, swapped as one reference.

Items added through the API after training get rows past the model's ``N`` (the vocabulary
extension): they are retrievable and count as seen, but the model has no input embedding for
them, so they are left out of the sequence fed to the encoder until a retrain.

Flags: an item is *flagged* (never shown; see :mod:`liverec.serve.rerank`) when its row says
``unsafe: true`` or ``available: false``; rows take them from the run's ``items.parquet``
(columns ``unsafe``/``flagged``, ``available``/``unavailable``) and from the API
(``PATCH /v1/items/{id}``). ``flagged_rows`` holds them per row, set before a new row can be
retrieved.

Before a version serves (at start and at every reload) it is checked: every item row must be
finite, and so must the user vectors and scores of a few histories (short, long, popular and
any the caller passes); a run that fails is refused with an :class:`ArtifactError`. The
catalogue's per-item fingerprints (title, text, attributes of every model item) let the
engine refuse a run whose item ids mean other products (see ``catalogue_changes``).

Repeat-aware runs (``repeat.json``, :mod:`liverec.model.repeat`, loaded by ``liverec.load``):
a version scores with the run's repeat-explore mixture, the log-probabilities of every row
(added items included) from the user vector's inner products and the full history's repeat
features, and its top-k is exact over the whole table whatever the retriever (the mixture
needs the softmax over every item); a request's seen items are then recommendable unless it
excludes them (:meth:`ModelHandle.exclude_seen`, as ``Recommender.recommend``).

Legend: B batch, T history length, D dim, N model items, R rows (N + 1 + added items).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import liverec
from liverec.errors import ArtifactError, UnservableModelError
from liverec.evaluate.protocol import pad_left
from liverec.model.artifact import digests_fingerprint, item_digest, model_version, read_meta
from liverec.retrieval import build_retriever
from liverec.serve.cache import ByteLRU

log = logging.getLogger(__name__)


class ModelHandle:
    """One model version: recommender, item table, retriever, catalogue, popularity.

    Args:
        run_dir: a run directory written by ``liverec train``.
        retriever: a name in ``liverec.retrieval.RETRIEVERS``.
        mask_bytes: byte budget of the attribute-filter masks cache.
        check_histories: histories (item ids) scored by the check, besides its own.

    Raises:
        ArtifactError: not a run, or its item table, user vectors or scores are not finite.
    """

    def __init__(self, run_dir: str | Path, retriever: str = "exact", mask_bytes: int = 16 << 20,
                 check_histories: Sequence[Sequence[str]] = ()) -> None:
        self.run_dir = Path(run_dir)
        read_meta(self.run_dir)  # clear ArtifactError for a directory that is not a run
        self.version = model_version(self.run_dir)
        self.rec = liverec.load(self.run_dir)
        model = self.rec.model
        if not (hasattr(model, "encode_users") and hasattr(model, "item_table")):
            raise ArtifactError(f"{run_dir}: the model has no encode_users/item_table")
        with torch.no_grad():
            table = model.item_table().float().numpy()  # (N + 1, D)
        self.n_model = self.rec.vocab.n_items
        self.max_len = int(model.cfg.max_len)
        self._buf = np.ascontiguousarray(table)  # (capacity, D): rows past n_rows unused
        self.table = self._buf  # (R, D) view of the used rows
        self.ids: list[str] = [str(x) for x in self.rec.vocab.ids]
        self.lookup: dict[str, int] = self.rec.vocab.index_map()
        self.catalogue: list[dict] = [{}] + [_row(r) for r in self.rec.items.to_dicts()]
        self.popular = np.argsort(-np.array([c.get("popularity", 0) for c in self.catalogue[1:]]),
                                  kind="stable") + 1  # (N,) indices, most popular first
        self._check_finite([self.encode(h)[0] for h in check_histories])
        self.digests = {self.ids[i]: item_digest(self.catalogue[i])
                        for i in range(1, self.n_model + 1)}  # the model's catalogue
        self.retriever = build_retriever(retriever, self.table, skip_rows=1)
        self._lock = threading.Lock()
        self._attr_index: dict[str, np.ndarray] | None = None  # attribute -> rows having it
        self._gen = 0  # catalogue changes (upserts) so far
        self.flagged_rows = np.zeros(len(self._buf), dtype=bool)  # (capacity,) by row
        self.flagged_rows[: self.n_rows] = [is_flagged(c) for c in self.catalogue]
        self.flag_gen = 0  # flag changes so far
        self.layout_gen = 0  # rows added or attributes changed so far (re-ranking rebuilds)
        self.masks = ByteLRU(mask_bytes)  # attribute -> rows without it (filter exclusions)

    def _check_finite(self, extra: Sequence[np.ndarray]) -> None:
        """Refuse non-finite item rows, user vectors or scores (nothing would rank)."""
        rows = self.table[1 : self.n_model + 1]  # (N, D); row 0 is padding, never scored
        bad = np.flatnonzero(~np.isfinite(rows).all(axis=1)) + 1
        if len(bad):
            raise UnservableModelError(
                f"{self.run_dir}: {len(bad)} of {self.n_model} item rows are not finite "
                f"(NaN or inf), e.g. items {[self.ids[i] for i in bad[:5]]}: refused")
        n, t = self.n_model, self.max_len
        gen = np.random.default_rng(0)
        hists = [np.array([1]), np.array([n]), self.popular[:t],
                 gen.integers(1, n + 1, size=t), *extra]
        hists = [h for h in (np.asarray(h, dtype=np.int64) for h in hists)
                 if len(h[(h >= 1) & (h <= n)])][:16]
        u = self.user_vectors(hists)  # (B, D)
        if u.shape != (len(hists), self.table.shape[1]):
            raise ArtifactError(f"{self.run_dir}: user vectors {u.shape} do not match the "
                                f"item table {self.table.shape}")
        scores = u @ rows.T  # (B, N)
        if not (np.isfinite(u).all() and np.isfinite(scores).all()):
            raise UnservableModelError(f"{self.run_dir}: the user vectors or scores of "
                                f"{int((~np.isfinite(scores).all(1)).sum())} of {len(hists)} "
                                "checked histories are not finite (NaN or inf): refused")

    def catalogue_changes(self, digests: dict[str, str]) -> tuple[list[str], list[str]]:
        """(ids missing here, ids with other details here) of another catalogue's items.

        Args:
            digests: item id -> fingerprint of a catalogue (e.g. the served model's
                ``digests``, or the one recorded in the store).
        """
        missing = [i for i in digests if i not in self.digests]
        changed = [i for i, d in digests.items() if i in self.digests and self.digests[i] != d]
        return missing, changed

    def fingerprint(self) -> str:
        """One hash of the whole model catalogue (ids and their details)."""
        return digests_fingerprint(self.digests)

    @property
    def n_rows(self) -> int:
        return len(self.ids)

    @torch.no_grad()
    def user_vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """One forward pass for many histories of indices (added items dropped). -> (B, D)."""
        hist = [h[h <= self.n_model][-self.max_len:] for h in histories]
        t = max(1, max(len(h) for h in hist))
        seqs = torch.from_numpy(pad_left(hist, t))  # (B, T), trimmed padding = same result
        return self.rec.model.encode_users(seqs).float().numpy()  # (B, D)

    @property
    def repeat(self):
        """The run's repeat-explore mixture (``RepeatExplore``), or None (masked mode)."""
        return self.rec.repeat

    def exclude_seen(self, asked: bool | None) -> bool:
        """Whether a request's history items are left out: as ``asked``, else (None) as the
        run's protocol: yes, unless the run is in the repeat-aware mode."""
        return self.repeat is None if asked is None else bool(asked)

    @torch.no_grad()
    def row_scores(self, vectors: np.ndarray, histories: Sequence[np.ndarray],
                   table: np.ndarray | None = None) -> torch.Tensor:
        """Scores of every row for B requests. -> (B, R) float32.

        The user ``vectors`` (B, D)' inner products with ``table`` (R, D; default the current
        rows); in the repeat-aware mode, the mixture's log-probabilities over those rows for
        the ``histories`` (B row-index arrays, full: the repeat features read all of them;
        rows past R are left out), row 0 -inf.
        """
        table = self.table if table is None else table
        scores = torch.from_numpy(np.asarray(vectors, dtype=np.float32) @ table.T)  # (B, R)
        if self.repeat is None:
            return scores
        return self.repeat.score_histories([h[h < len(table)] for h in histories], scores)

    def search(self, vectors: np.ndarray, histories: Sequence[np.ndarray], k: int,
               exclude: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(rows (B, m), scores (B, m)), m <= k, best first, -1 past the rows found: the
        retriever's search over the user ``vectors`` (B, D), or in the repeat-aware mode the
        exact top-k of :meth:`row_scores` over ``histories``. ``exclude``: B arrays of rows
        never returned."""
        if self.repeat is None:
            return self.retriever.search(vectors, k, exclude)
        scores = self.row_scores(vectors, histories)  # (B, R)
        scores[:, 0] = float("-inf")
        for r, ex in enumerate(exclude):
            ex = ex[ex < scores.shape[1]].astype(np.int64)
            scores[r, torch.from_numpy(ex)] = float("-inf")
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        ids, vals = top.indices.numpy(), top.values.numpy()
        return np.where(np.isfinite(vals), ids, -1), vals

    @torch.no_grad()
    def naive_topk(self, history: np.ndarray, k: int,
                   exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The reference path: full ``model.score`` over a max_len window (in the repeat-aware
        mode the mixture's ``score_histories`` of the model items), mask, top-k."""
        hist = history[history <= self.n_model]
        if self.repeat is not None:
            scores = self.repeat.score_histories([hist]).float()  # (1, N + 1)
        else:
            scores = self.rec.model.score(
                torch.from_numpy(pad_left([hist], self.max_len))).float()
        scores[0, 0] = float("-inf")
        ex = exclude[exclude < scores.shape[1]]
        scores[0, torch.from_numpy(ex.astype(np.int64))] = float("-inf")
        top = scores[0].topk(min(k, scores.shape[1]))
        vals, ids = top.values.numpy(), top.indices.numpy()
        return ids[np.isfinite(vals)], vals[np.isfinite(vals)]

    def encode(self, item_ids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """(indices of known ids, unknown ids)."""
        idx, unknown = [], []
        for i in item_ids:
            j = self.lookup.get(i)
            if j is None:
                unknown.append(i)
            else:
                idx.append(j)
        return np.array(idx, dtype=np.int64), unknown

    def not_matching(self, attribute: str) -> np.ndarray:
        """Indices of items without ``attribute`` (the rows a filter excludes). -> (M,) sorted.

        Computed from a per-attribute index of the catalogue (one array of row indices per
        attribute value, all together the size of the catalogue's attribute lists), kept in
        the byte-bounded ``masks`` cache; ``not_matching_reference`` is the reference path.
        """
        out = self.masks.get(attribute)
        if out is None:
            with self._lock:
                index, n_rows, gen = self._attribute_index(), self.n_rows, self._gen
            have = index.get(attribute, np.zeros(0, dtype=np.int64))
            keep = np.ones(n_rows, dtype=bool)
            keep[0] = False
            keep[have] = False
            out = np.flatnonzero(keep)
            with self._lock:
                if gen == self._gen:  # no item changed meanwhile
                    self.masks.put(attribute, out)
        return out

    def not_matching_reference(self, attribute: str) -> np.ndarray:
        """The reference path of ``not_matching``: one pass over the catalogue."""
        return np.array([i for i, c in enumerate(self.catalogue)
                         if i and attribute not in c.get("attributes", ())], dtype=np.int64)

    def _attribute_index(self) -> dict[str, np.ndarray]:
        if self._attr_index is None:
            rows: dict[str, list[int]] = {}
            for i, c in enumerate(self.catalogue):
                for a in dict.fromkeys(c.get("attributes", ())) if i else ():
                    rows.setdefault(a, []).append(i)
            self._attr_index = {a: np.array(r, dtype=np.int64) for a, r in rows.items()}
        return self._attr_index

    def vector_from_attributes(self, attributes: Sequence[str]) -> tuple[np.ndarray, str]:
        """Mean vector of model items sharing an attribute, else of the whole catalogue."""
        wanted = set(attributes)
        rows = [i for i in range(1, self.n_model + 1)
                if wanted & set(self.catalogue[i].get("attributes", ()))]
        if rows:
            return self.table[rows].mean(0), "attributes"
        return self.table[1 : self.n_model + 1].mean(0), "catalogue-mean"

    def upsert(self, item: dict, vector: np.ndarray | None) -> int:
        """Add an item (with its vector) or update a known one's metadata; returns its index."""
        with self._lock:
            idx = self.lookup.get(item["item_id"])
            if idx is not None:
                old = self.catalogue[idx]
                new = self.catalogue[idx] = {**old, **_row(item)}
                if is_flagged(new) != self.flagged_rows[idx]:
                    self.flagged_rows[idx] = is_flagged(new)
                    self.flag_gen += 1
                if new.get("attributes") != old.get("attributes"):
                    self.layout_gen += 1
                self._attr_index, self._gen = None, self._gen + 1
                self.masks.clear()
                return idx
            row = np.asarray(vector, dtype=np.float32).reshape(1, -1)  # (1, D)
            if not np.isfinite(row).all():
                raise ArtifactError(f"item {item['item_id']!r}: its vector is not finite")
            n = len(self.table)
            if n == len(self._buf):  # full: double the capacity (amortised O(1) per item)
                grown = np.empty((2 * n, row.shape[1]), dtype=np.float32)
                grown[:n] = self._buf[:n]
                self._buf = grown
                flags = np.zeros(2 * n, dtype=bool)
                flags[:n] = self.flagged_rows[:n]
                self.flagged_rows = flags
            new = {**_row(item), "popularity": 0, "added": True}
            self.flagged_rows[n] = is_flagged(new)  # before any search can return the row
            self._buf[n] = row[0]
            self.table = self._buf[: n + 1]  # readers holding the old view keep their rows
            self.catalogue.append(new)
            self.ids.append(item["item_id"])
            (idx,) = self.retriever.add(row)
            if int(idx) != n:
                raise ArtifactError(f"the retriever put item {item['item_id']!r} at row {idx}, "
                                    f"the table at {n}")
            self.lookup[item["item_id"]] = int(idx)
            self._attr_index, self._gen = None, self._gen + 1
            self.flag_gen += 1
            self.layout_gen += 1
            self.masks.clear()
            return int(idx)


def is_flagged(row: dict) -> bool:
    """Whether a catalogue row is flagged: ``unsafe`` or not ``available``."""
    return bool(row.get("unsafe")) or row.get("available") is False


def _row(r: dict) -> dict:
    """A catalogue row from an items.parquet row or an API item: the fields it names only
    (flag columns ``flagged``/``unavailable`` fold into ``unsafe``/``available``)."""
    out = {k: r[k] for k in ("title", "text") if r.get(k) is not None}
    if r.get("attributes") is not None:
        out["attributes"] = [str(a) for a in r["attributes"]]
    if r.get("count") is not None:
        out["popularity"] = int(r["count"])
    if r.get("unsafe") is not None or r.get("flagged") is not None:
        out["unsafe"] = bool(r.get("unsafe")) or bool(r.get("flagged"))
    if r.get("available") is not None or r.get("unavailable") is not None:
        out["available"] = r.get("available") is not False and not r.get("unavailable")
    return out
