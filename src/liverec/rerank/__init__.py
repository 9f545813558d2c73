"""Re-ranking after scoring: hard rules (allow/deny, flags, attribute filters, category caps),
diversity (MMR), category calibration (Steck 2018) and exposure control (head-item cap).

Usage::

    cat = Catalogue.build(ids, vectors, categories=..., flagged=..., popularity=...)
    rr = build_reranker(cat, RerankConfig(mmr=MMRConfig(0.3)))
    items, scores = rr.rerank(candidates, candidate_scores, k=20, history=history)
"""

from liverec.rerank.build import catalogue_for
from liverec.rerank.catalogue import Catalogue, categories_from_attributes, flags_from_columns
from liverec.rerank.config import (
    AttributeFilter,
    CalibrationConfig,
    ExposureConfig,
    HardRules,
    MMRConfig,
    RerankConfig,
)
from liverec.rerank.reference import ReferenceReranker
from liverec.rerank.stage import GreedyReranker, Reranker

RERANKERS = {"greedy": GreedyReranker, "reference": ReferenceReranker}


def build_reranker(catalogue: Catalogue, config: RerankConfig | None = None,
                   kind: str = "greedy") -> Reranker:
    """A Reranker by registry name ("greedy" = the fast path, "reference" = the slow one)."""
    from liverec.errors import ConfigError

    if kind not in RERANKERS:
        raise ConfigError(f"unknown reranker {kind!r}; choose one of {sorted(RERANKERS)}")
    return RERANKERS[kind](catalogue, config)


__all__ = [
    "RERANKERS", "AttributeFilter", "CalibrationConfig", "Catalogue", "ExposureConfig",
    "GreedyReranker", "HardRules", "MMRConfig", "ReferenceReranker", "RerankConfig", "Reranker",
    "build_reranker", "catalogue_for", "categories_from_attributes", "flags_from_columns",
]
