"""Top-k retrieval over item vectors: exact (the reference path) and FAISS ANN.

Legend: B batch of queries, D dim, N rows (items, row 0 = padding in liverec tables).
"""

from __future__ import annotations

from importlib.util import find_spec

from liverec.retrieval.ann import HNSWRetriever, IVFFlatRetriever
from liverec.retrieval.base import Retriever, build_retriever
from liverec.retrieval.exact import ExactRetriever

RETRIEVERS: dict[str, type] = {"exact": ExactRetriever}
if find_spec("faiss") is not None:  # the optional ``ann`` extra (imported on first use)
    RETRIEVERS.update({"hnsw": HNSWRetriever, "ivf": IVFFlatRetriever})

__all__ = ["RETRIEVERS", "ExactRetriever", "Retriever", "build_retriever"]
