"""The browser's computation in Python: the reference path of the JavaScript client.

Legend: T history length (<= max_len), D model dimension, N model items, R rows (N + 1 +
items added since the bundle was built).

For one history of item indices (oldest first) the client (``clients/js/src/core.js``,
``liverec-edge.js``) and :class:`BundleReference` both

1. keep the model's own items (indices 1..N; added items have no input embedding) and the
   last ``max_len`` of them: the window, T long;
2. look their vectors up in the decoded table (``CompactTable.rows``) -> (1, T, D) and run the
   encoder on (vectors, window) -> the user vector (D,); an empty window falls back to the
   most popular items, as the service does;
3. score every row (``CompactTable.scores``, plus added rows in fp32), set the padding row and
   every history item to -inf, and keep the k best (ties: the lower index first).

The tests compare this with the service's answers and with the browser's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from liverec.edge.bundle import CATALOGUE, ENCODER, verify_bundle
from liverec.edge.table import CompactTable


def encoder_session(path: Path):
    """An ONNX Runtime CPU session on one thread (as the browser's WebAssembly backend)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def window(history: np.ndarray, n_model: int, max_len: int) -> np.ndarray:
    """The encoder's input: the model's items of ``history``, the last ``max_len``. -> (T,)"""
    h = np.asarray(history, dtype=np.int64)
    return h[(h >= 1) & (h <= n_model)][-max_len:]


def user_vector(session, rows: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """The encoder on one window. rows: (>= N + 1, D) decoded table, seq: (T,) -> (D,)."""
    (u,) = session.run(["user"], {"item_vecs": rows[seq][None].astype(np.float32),
                                  "seqs": seq[None].astype(np.int64)})
    return u[0]


def top_k(scores: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, padding and ``seen`` masked; ties by lower index.
    scores: (R,) -> (<= k,)"""
    s = scores.astype(np.float64).copy()
    s[0] = -np.inf
    s[np.asarray(seen, dtype=np.int64)] = -np.inf
    s[~np.isfinite(s)] = -np.inf
    order = np.lexsort((np.arange(len(s)), -s))[:k]  # by score desc, then index asc
    return order[np.isfinite(s[order])]


def topk_indices(session, rows: np.ndarray, table: CompactTable,
                 histories: Sequence[np.ndarray], k: int,
                 max_len: int | None = None) -> list[np.ndarray]:
    """Top-k item indices of each history (non-empty windows only; others give [])."""
    n = table.n_items
    max_len = max_len or n
    out = []
    for h in histories:
        seq = window(h, n, max_len)
        if not len(seq):
            out.append(np.zeros(0, dtype=np.int64))
            continue
        scores = table.scores(user_vector(session, rows, seq)[None])[0]
        out.append(top_k(scores, h, k))
    return out


def overlap_at_k(ref: Sequence[Sequence[int]], new: Sequence[Sequence[int]]) -> float:
    """Mean share of each reference list found in the other list (1.0 = the same items)."""
    shares = [len(set(np.asarray(a).tolist()) & set(np.asarray(b).tolist())) / len(a)
              for a, b in zip(ref, new) if len(a)]
    return float(np.mean(shares)) if shares else 1.0


class BundleReference:
    """A web bundle run in Python exactly as the JavaScript client runs it.

    Args:
        bundle_dir: a directory written by :func:`liverec.edge.bundle.export_web` (checked
            against its manifest first).

    Raises:
        ArtifactError: a file is missing or does not match the manifest.
    """

    def __init__(self, bundle_dir: str | Path) -> None:
        self.dir = Path(bundle_dir)
        self.manifest = verify_bundle(self.dir)
        self.table = CompactTable.read(self.dir, self.manifest["table"])
        self.rows = self.table.rows()  # (N + 1, D)
        cat = json.loads((self.dir / CATALOGUE).read_text())
        self.ids, self.titles = cat["ids"], cat["titles"]
        self.popular = np.asarray(cat["popular"], dtype=np.int64)
        self.lookup = {item: i + 1 for i, item in enumerate(self.ids)}
        self.max_len = int(self.manifest["model"]["max_len"])
        self.session = encoder_session(self.dir / ENCODER)

    def recommend(self, history: Sequence[str], k: int = 10) -> list[tuple[str, float]]:
        """(item id, score) of the top k for a history of ids (unknown ids are ignored);
        an empty window gives the most popular unseen items with score 0."""
        idx = np.array([self.lookup[i] for i in history if i in self.lookup], dtype=np.int64)
        seq = window(idx, self.table.n_items, self.max_len)
        if not len(seq):
            top = self.popular[~np.isin(self.popular, idx)][:k]
            return [(self.ids[i - 1], 0.0) for i in top]
        scores = self.table.scores(user_vector(self.session, self.rows, seq)[None])[0]
        return [(self.ids[i - 1], float(scores[i])) for i in top_k(scores, idx, k)]
