"""FAISS approximate nearest neighbours by inner product (HNSW, IVF-flat), same interface as exact.

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

    def build(self, item_vectors: np.ndarray):
        x = np.ascontiguousarray(item_vectors, dtype=np.float32)  # (N, D)
        self.exact_ = ExactRetriever(self.skip_rows).build(x)
        self.index_ = self._new_index(x.shape[1], x.shape[0])
        if not self.index_.is_trained:
            self.index_.train(x)
        self.index_.add(x)
        return self

    def add(self, vectors: np.ndarray) -> np.ndarray:
        ids = self.exact_.add(vectors)
        self.index_.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return ids

    def search(self, user_vectors: np.ndarray, k: int,
               exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(user_vectors, dtype=np.float32)  # (B, D)
        n = self.exact_.n_rows
        fetch = k + self.skip_rows + n_excluded(exclude, len(q))
        if fetch * 4 >= n:
            return self.exact_.search(q, k, exclude)
        _faiss().omp_set_num_threads(self.threads)
        vals, ids = self.index_.search(q, fetch)  # (B, fetch) each
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
        ef_search: query-time beam width (recall vs speed).
        skip_rows: leading rows never returned (1 = padding row).
        threads: OpenMP threads for a search.
    """

    def __init__(self, m: int = 32, ef_construction: int = 200, ef_search: int = 128,
                 skip_rows: int = 0, threads: int = 1) -> None:
        super().__init__(skip_rows, threads)
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search

    def _new_index(self, d: int, n: int):
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(d, self.m, faiss.METRIC_INNER_PRODUCT)
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
        self.quantizer_ = faiss.IndexFlatIP(d)  # kept: the IVF index does not own it
        index = faiss.IndexIVFFlat(self.quantizer_, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(self.nprobe, nlist)
        return index
