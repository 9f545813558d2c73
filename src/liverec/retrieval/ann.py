"""FAISS approximate nearest neighbours by inner product (HNSW, IVF-flat), same interface as exact.

Maximum inner product is searched as a nearest-neighbour problem: every item x gets one more
coordinate sqrt(R^2 - |x|^2) (R = the largest item norm) and every query a 0 there, so the L2
distance |q|^2 + R^2 - 2 q.x ranks items exactly as the inner product does (Bachrach et al.
2014). Graphs and k-means cells built for inner product directly fail on trained item tables,
whose norms differ and share a dominant direction (a smoke run of benchmarks/ann_scale.py,
``--items 50000 --queries 50``, not kept: HNSW recall@50 0.04-0.07 before, 0.61-0.94 after, for
efSearch 32-256). An added row longer than R rebuilds the index with the new R.

Excluded ids are removed after an over-fetch of ``k + excluded``; when that covers a large
share of the catalogue the exact path answers instead (it is cheaper than ANN there).

Legend: B batch of queries, D dim, N rows.
"""

from __future__ import annotations

import numpy as np

from liverec.retrieval.base import Exclude, n_excluded
from liverec.retrieval.exact import ExactRetriever, _pad


def _faiss():
    import faiss  # the optional ``ann`` extra, imported on first use (slow, chatty import)

    return faiss


class _FaissRetriever:
    def __init__(self, skip_rows: int = 0, threads: int = 1) -> None:
        self.skip_rows = skip_rows
        self.threads = threads

    def _new_index(self, d: int, n: int):
        raise NotImplementedError

    def _augment(self, x: np.ndarray) -> np.ndarray:
        """Items (N, D) -> (N, D + 1) with the norm-completing coordinate."""
        sq = np.maximum(self.radius_**2 - np.einsum("nd,nd->n", x, x), 0.0)
        return np.ascontiguousarray(np.hstack([x, np.sqrt(sq)[:, None]]), dtype=np.float32)

    def _index(self, x: np.ndarray) -> None:
        """(Re)build the index over all rows ``x`` (N, D)."""
        self.radius_ = float(np.sqrt(np.einsum("nd,nd->n", x, x).max())) if len(x) else 0.0
        aug = self._augment(x)
        self.index_ = self._new_index(aug.shape[1], aug.shape[0])
        if not self.index_.is_trained:
            self.index_.train(aug)
        self.index_.add(aug)

    def build(self, item_vectors: np.ndarray):
        x = np.ascontiguousarray(item_vectors, dtype=np.float32)  # (N, D)
        self.exact_ = ExactRetriever(self.skip_rows).build(x)
        self._index(x)
        return self

    def add(self, vectors: np.ndarray) -> np.ndarray:
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = self.exact_.add(v)
        if len(v) and np.sqrt(np.einsum("nd,nd->n", v, v).max()) > self.radius_:
            self._index(self.exact_.vectors_.numpy())  # a row longer than R: rebuild with it
        else:
            self.index_.add(self._augment(v))
        return ids

    def search(self, user_vectors: np.ndarray, k: int,
               exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(user_vectors, dtype=np.float32)  # (B, D)
        n = self.exact_.n_rows
        fetch = k + self.skip_rows + n_excluded(exclude, len(q))
        if fetch * 4 >= n:
            return self.exact_.search(q, k, exclude)
        _faiss().omp_set_num_threads(self.threads)
        aug = np.ascontiguousarray(np.hstack([q, np.zeros((len(q), 1), np.float32)]))
        dist, ids = self.index_.search(aug, fetch)  # (B, fetch) squared L2 each
        # back to inner products: |q - x'|^2 = |q|^2 + R^2 - 2 q.x
        vals = (np.einsum("bd,bd->b", q, q)[:, None] + self.radius_**2 - dist) / 2
        out_ids = np.full((len(q), k), -1, dtype=np.int64)
        out_vals = np.full((len(q), k), -np.inf, dtype=np.float32)
        for r in range(len(q)):
            bad = set(range(self.skip_rows))
            if exclude is not None and exclude[r] is not None:
                bad.update(exclude[r].tolist())
            keep = [(i, v) for i, v in zip(ids[r], vals[r]) if i >= 0 and int(i) not in bad][:k]
            if keep:
                out_ids[r, : len(keep)] = [i for i, _ in keep]
                out_vals[r, : len(keep)] = [v for _, v in keep]
        return _pad(out_ids, out_vals, k)


class HNSWRetriever(_FaissRetriever):
    """FAISS HNSW graph (inner product).

    Args:
        m: graph degree.
        ef_construction: build-time beam width.
        ef_search: query-time beam width (recall vs speed; 512: recall@50 0.96 at p99 2.5 ms
            over 1,000,000 items, benchmarks/results/ann_scale_beauty_1m.md).
        skip_rows: leading rows never returned (1 = padding row).
        threads: OpenMP threads for a search.
    """

    def __init__(self, m: int = 32, ef_construction: int = 200, ef_search: int = 512,
                 skip_rows: int = 0, threads: int = 1) -> None:
        super().__init__(skip_rows, threads)
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search

    def _new_index(self, d: int, n: int):
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(d, self.m, faiss.METRIC_L2)  # on augmented vectors
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index


class IVFFlatRetriever(_FaissRetriever):
    """FAISS inverted lists over k-means cells, exact vectors inside a cell (inner product).

    Args:
        nlist: cells; None = about sqrt(N).
        nprobe: cells visited per query (recall vs speed).
        skip_rows: leading rows never returned (1 = padding row).
        threads: OpenMP threads for a search.
    """

    def __init__(self, nlist: int | None = None, nprobe: int = 16, skip_rows: int = 0,
                 threads: int = 1) -> None:
        super().__init__(skip_rows, threads)
        self.nlist, self.nprobe = nlist, nprobe

    def _new_index(self, d: int, n: int):
        faiss = _faiss()
        nlist = self.nlist or max(1, min(n // 39, int(np.sqrt(n))))
        self.quantizer_ = faiss.IndexFlatL2(d)  # kept: the IVF index does not own it
        index = faiss.IndexIVFFlat(self.quantizer_, d, nlist, faiss.METRIC_L2)  # augmented
        index.nprobe = min(self.nprobe, nlist)
        return index
