"""A loaded model version with everything the hot path needs, swapped as one reference.

Items added through the API after training get rows past the model's ``N`` (the vocabulary
extension): they are retrievable and count as seen, but the model has no input embedding for
them, so they are left out of the sequence fed to the encoder until a retrain.

Legend: B batch, T history length, D dim, N model items, R rows (N + 1 + added items).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import liverec
from liverec.errors import ArtifactError
from liverec.evaluate.protocol import pad_left
from liverec.model.artifact import read_meta
from liverec.retrieval import build_retriever

log = logging.getLogger(__name__)


def model_version(run_dir: Path) -> str:
    """``<run dir name>@<sha1 of model.safetensors and config.json, 10 hex digits>``.

    From the files' contents (not their times), so replicas on other machines that hold a
    copy of the same run agree on its version; a retrain that rewrites the files changes it.
    """
    run_dir = Path(run_dir)
    h = hashlib.sha1()
    for name in ("model.safetensors", "config.json"):
        h.update(f"{name};".encode())
        with open(run_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return f"{run_dir.resolve().name}@{h.hexdigest()[:10]}"


class ModelHandle:
    """One model version: recommender, item table, retriever, catalogue, popularity.

    Args:
        run_dir: a run directory written by ``liverec train``.
        retriever: a name in ``liverec.retrieval.RETRIEVERS``.
    """

    def __init__(self, run_dir: str | Path, retriever: str = "exact") -> None:
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
        self.table = np.ascontiguousarray(table)
        self._check(model)
        self.ids: list[str] = [str(x) for x in self.rec.vocab.ids]
        self.lookup: dict[str, int] = self.rec.vocab.index_map()
        self.catalogue: list[dict] = [{}] + [_row(r) for r in self.rec.items.to_dicts()]
        self.popular = np.argsort(-np.array([c.get("popularity", 0) for c in self.catalogue[1:]]),
                                  kind="stable") + 1  # (N,) indices, most popular first
        self.retriever = build_retriever(retriever, self.table, skip_rows=1)
        self._lock = threading.Lock()
        self._attr_cache: dict[str, np.ndarray] = {}

    def _check(self, model) -> None:
        with torch.no_grad():
            u = model.encode_users(torch.ones(1, 1, dtype=torch.long)).float()  # (1, D)
        if u.shape != (1, self.table.shape[1]) or not torch.isfinite(u).all():
            raise ArtifactError(f"{self.run_dir}: user vectors {tuple(u.shape)} do not match the "
                                f"item table {self.table.shape} or are not finite")

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

    @torch.no_grad()
    def naive_topk(self, history: np.ndarray, k: int,
                   exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The reference path: full ``model.score`` over a max_len window, mask, top-k."""
        hist = history[history <= self.n_model]
        scores = self.rec.model.score(torch.from_numpy(pad_left([hist], self.max_len))).float()
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
        """Indices of items without ``attribute`` (the rows a filter excludes)."""
        out = self._attr_cache.get(attribute)
        if out is None:
            out = np.array([i for i, c in enumerate(self.catalogue)
                            if i and attribute not in c.get("attributes", ())], dtype=np.int64)
            self._attr_cache[attribute] = out
        return out

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
            self._attr_cache.clear()
            idx = self.lookup.get(item["item_id"])
            if idx is not None:
                self.catalogue[idx] = {**self.catalogue[idx], **_row(item)}
                return idx
            (idx,) = self.retriever.add(vector[None, :].astype(np.float32))
            self.table = np.concatenate([self.table, vector[None, :].astype(np.float32)])
            self.catalogue.append({**_row(item), "popularity": 0, "added": True})
            self.ids.append(item["item_id"])
            self.lookup[item["item_id"]] = int(idx)
            return int(idx)


def _row(r: dict) -> dict:
    out = {k: r[k] for k in ("title", "text") if r.get(k) is not None}
    if r.get("attributes") is not None:
        out["attributes"] = [str(a) for a in r["attributes"]]
    if r.get("count") is not None:
        out["popularity"] = int(r["count"])
    return out
