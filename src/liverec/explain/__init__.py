"""Why an item is recommended: history attribution, shared attributes, similar items, a reason.

``Explainer.from_recommender(liverec.load(run_dir)).explain(history, item_id)``.
"""

from __future__ import annotations

from liverec.explain.attribution import ExplainError
from liverec.explain.evidence import ItemSource, RunItems, SharedAttribute
from liverec.explain.explainer import Explainer, Explanation, HistoryEffect
from liverec.explain.reason import POPULAR_REASON, explanation_text, reason_text

__all__ = ["POPULAR_REASON", "ExplainError", "Explainer", "Explanation", "HistoryEffect",
           "ItemSource", "RunItems", "SharedAttribute", "explanation_text", "reason_text"]
