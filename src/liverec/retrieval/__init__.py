"""Top-k retrieval over item vectors: exact (the reference path) and FAISS ANN.

Legend: B batch of queries, D dim, N rows (items, row 0 = padding in liverec tables).
"""

from __future__ import annotations

from liverec.retrieval.base import Retriever, build_retriever
from liverec.retrieval.exact import ExactRetriever

RETRIEVERS: dict[str, type] = {"exact": ExactRetriever}

try:  # faiss is the optional ``ann`` extra
    from liverec.retrieval.ann import HNSWRetriever, IVFFlatRetriever

    RETRIEVERS.update({"hnsw": HNSWRetriever, "ivf": IVFFlatRetriever})
except ImportError:  # pragma: no cover - depends on the installed extras
    pass

__all__ = ["RETRIEVERS", "ExactRetriever", "Retriever", "build_retriever"]
