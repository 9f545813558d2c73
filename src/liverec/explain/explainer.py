"""``Explainer``: why an item is recommended for a history, in one forward pass.

Legend: T history length, P deletable positions (the model's window), K items explained,
D dim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from liverec.explain.attribution import (
    ExplainError,
    attention_weights,
    deletion_batched,
    deletion_reference,
    integrated_gradients,
    window_positions,
)
from liverec.explain.evidence import (
    AttributeIndex,
    ItemSource,
    RunItems,
    SharedAttribute,
    cosine_to,
    label_of,
    shared_attributes,
    title_of,
)
from liverec.explain.reason import reason_text
from liverec.model.recommender import UnknownItemError

NAMED_SHARE = 0.25  # a second driver is named only if its drop is >= this share of the first's


@dataclass(frozen=True)
class HistoryEffect:
    """One history position and what it did to the explained item's score."""

    item_id: str
    title: str
    position: int  # index in the history, oldest = 0
    drop: float  # score(full history) - score(without this position)
    similarity: float  # cosine of the two items' output vectors
    integrated_gradient: float | None = None
    attention: float | None = None


@dataclass(frozen=True)
class Explanation:
    """Why ``item_id`` scores as it does for a history."""

    item_id: str
    title: str
    score: float
    reason: str
    history: list[HistoryEffect]  # the model's window, oldest first
    drivers: list[HistoryEffect]  # positions that raised the score most, largest drop first
    similar: list[HistoryEffect]  # most similar history items, most similar first
    shared_attributes: list[SharedAttribute]
    methods: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class Explainer:
    """Explanations for one model and its catalogue.

    Args:
        model: a sequence model with ``encode_users`` and ``cfg.max_len`` (eval mode).
        items: ids, catalogue rows and output vectors (a :class:`RunItems`, or a serving
            handle); rows past ``model.cfg.n_items`` (items added after training) can be
            explained but have no input embedding, so they are dropped from histories.
        top: how many drivers, similar items and shared attributes to report.
    """

    def __init__(self, model: torch.nn.Module, items: ItemSource, top: int = 3) -> None:
        self.model = model
        self.items = items
        self.top = top
        self.max_len = int(model.cfg.max_len)
        self.n_model = int(model.cfg.n_items)
        self._attributes = AttributeIndex()

    @classmethod
    def from_recommender(cls, rec, top: int = 3) -> Explainer:
        """An explainer over a loaded run (``liverec.load(run_dir)``)."""
        return cls(rec.model, RunItems.from_recommender(rec), top)

    def index(self, item_ids: Sequence[str]) -> np.ndarray:
        """External ids -> indices. Raises UnknownItemError naming every unknown id."""
        idx = [self.items.lookup.get(str(i)) for i in item_ids]
        unknown = [str(i) for i, j in zip(item_ids, idx) if j is None]
        if unknown:
            raise UnknownItemError(list(dict.fromkeys(unknown)))
        return np.array(idx, dtype=np.int64)

    def explain(self, history: Sequence[str], item_id: str, ig: bool = False,
                attention: bool = False) -> Explanation:
        """Why ``item_id`` for ``history`` (external ids, oldest first)."""
        (item,) = self.index([item_id])
        return self.explain_indices(self.index(history), np.array([item]), ig, attention)[0]

    def explain_indices(self, history: np.ndarray, items: np.ndarray, ig: bool = False,
                        attention: bool = False, reference: bool = False) -> list[Explanation]:
        """Explanations of K items for one history of indices; one forward pass for all.

        Args:
            history: (T,) item indices, oldest first.
            items: (K,) indices of the items to explain.
            ig: add integrated gradients (one extra batched forward + backward per item).
            attention: add the last position's attention weights (one extra forward).
            reference: deletion through the per-deletion loop instead of the batched pass.
        """
        history = np.asarray(history, dtype=np.int64)
        history = history[(history > 0) & (history <= self.n_model)]
        if not len(history):
            raise ExplainError("nothing to explain: the history has no item the model knows")
        rows = torch.from_numpy(np.ascontiguousarray(self.items.table[items], dtype=np.float32))
        delete = deletion_reference if reference else deletion_batched
        base, drops = delete(self.model, history, rows, self.max_len)  # (K,), (P, K)
        att = attention_weights(self.model, history, self.max_len) if attention else None
        methods = ["deletion" + (" (reference loop)" if reference else "")]
        methods += ["integrated_gradients"] * ig + ["attention"] * (att is not None)
        out = []
        for j, item in enumerate(items.tolist()):
            igs = integrated_gradients(self.model, history, rows[j], self.max_len) if ig else None
            out.append(self._one(history, item, float(base[j]), drops[:, j], igs, att, methods))
        return out

    def reasons(self, history: np.ndarray, items: np.ndarray) -> list[str]:
        """Only the one-line reasons (what ``explain=true`` on a recommendation adds)."""
        return [e.reason for e in self.explain_indices(history, items)]

    def _one(self, history: np.ndarray, item: int, score: float, drops: np.ndarray,
             igs: np.ndarray | None, att: np.ndarray | None, methods: list[str]) -> Explanation:
        src = self.items
        pos = window_positions(history, self.max_len)  # (P,)
        window = history[pos]
        sims = cosine_to(src, item, window)  # (P,)
        effects = [HistoryEffect(src.ids[h], title_of(src, h), int(p), float(d), float(s),
                                 None if igs is None else float(igs[r]),
                                 None if att is None else float(att[r]))
                   for r, (p, h, d, s) in enumerate(zip(pos, window.tolist(), drops, sims))]
        drivers = _best_per_item([e for e in effects if e.drop > 0], lambda e: e.drop)
        similar = _best_per_item(effects, lambda e: e.similarity)
        shared = shared_attributes(src, self._attributes, item, window)[: self.top]
        named = [e for e in drivers[:2] if e.drop >= NAMED_SHARE * drivers[0].drop]
        reason = reason_text([label_of(src, src.lookup[e.item_id]) for e in named],
                             shared[0].label if shared else None)
        return Explanation(src.ids[item], title_of(src, item), score, reason, effects,
                           drivers[: self.top], similar[: self.top], shared, list(methods))


def _best_per_item(effects: list[HistoryEffect], key) -> list[HistoryEffect]:
    """Sorted by ``key`` (largest first), one entry per item id (its best position)."""
    seen: dict[str, HistoryEffect] = {}
    for e in sorted(effects, key=key, reverse=True):
        seen.setdefault(e.item_id, e)
    return list(seen.values())
