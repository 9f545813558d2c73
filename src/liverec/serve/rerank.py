"""Re-ranking in the service, and the guarantee that hidden items never reach an answer.

One :class:`ServedRerank` per model version (handle) holds the deployment's rules
(:mod:`liverec.serve.rerank_config`) over that version's live catalogue: a
:class:`liverec.rerank.Catalogue` of its rows (items added through the API included) and the
vectorised :class:`liverec.rerank.GreedyReranker`. A request's overrides become a
:class:`Plan` (cached per distinct override).

*Hidden* items are those flagged (``unsafe``, or ``available: false``, from the run's
``items.parquet`` or ``PATCH /v1/items``) or on the deployment's deny list. Three layers keep
them out, each enough alone:

1. retrieval: hidden rows (and, while those rules are on, rows outside the allow list or
   failing the attribute filters) are excluded from the top-k search itself, exact or ANN, so
   lists are still filled;
2. the stage: the library's hard rules drop them again from the candidates;
3. the answer: rows flagged or denied when it is written are dropped (a flag that changed
   while the answer was computed).

Cached answers are dropped on every catalogue change, flags included (``Engine.add_item``).

Categories (for caps and calibration): an item's ``category:<name>`` attribute when the
catalogue uses that convention (some item has one, as ``GET /v1/recommend?category=`` does),
else :func:`liverec.rerank.categories_from_attributes` (each item's most common attribute).

Legend: R rows of the served table (row 0 = padding), C candidates, k slots.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from liverec.explain import Explanation
from liverec.explain.evidence import label_of
from liverec.explain.explainer import NAMED_SHARE
from liverec.explain.reason import reason_text
from liverec.rerank import (
    AttributeFilter,
    CalibrationConfig,
    Catalogue,
    ExposureConfig,
    GreedyReranker,
    HardRules,
    MMRConfig,
    RerankConfig,
    categories_from_attributes,
)
from liverec.rerank.rules import CompiledRules
from liverec.serve.model_handle import ModelHandle
from liverec.serve.problems import Invalid
from liverec.serve.rerank_config import (
    ALWAYS,
    RULES,
    WEIGHTS,
    RerankFile,
    RerankRequest,
)

log = logging.getLogger(__name__)
CATEGORY_PREFIX = "category:"
_PLANS = 256  # distinct request overrides kept planned per model version
WIDEN = 4  # a short list retrieves a pool this many times larger (up to max_candidates)
Retrieve = Callable[[int], tuple[np.ndarray, np.ndarray]]  # n -> the top-n (rows, scores)


@dataclass(frozen=True)
class Plan:
    """What the stage does for one request.

    Attributes:
        view: the catalogue snapshot the plan was made for (its category codes).
        config: the library stage's settings, or None when only flags and deny apply (they are
            enforced at retrieval and on the answer; no candidates are needed).
        on: the rules in effect, in :data:`RULES` order.
        allow, attributes: whether retrieval leaves out rows outside the allow list / failing
            the attribute filters.
        info: the answer's ``rerank`` member.
    """

    view: RerankView
    config: RerankConfig | None
    on: tuple[str, ...]
    allow: bool
    attributes: bool
    info: dict

    widen_to: int = 0  # the largest pool a short list re-ranks (0: none)

    def candidates(self, k: int) -> int:
        """How many top-scored items retrieval returns for a list of k."""
        return k if self.config is None else max(k, self.config.n_candidates)


def category_codes(rows: Sequence[dict]) -> tuple[np.ndarray, dict[str, int]]:
    """(R,) category code per catalogue row (-1 none) and category name -> code.

    ``category:<name>`` attributes when any row has one (the first per row), else the item's
    most common attribute (codes equal to :func:`categories_from_attributes`).
    """
    attrs = [r.get("attributes") or () for r in rows]
    names: dict[str, int] = {}
    codes = np.full(len(rows), -1, dtype=np.int64)
    if any(a.startswith(CATEGORY_PREFIX) for x in attrs[1:] for a in x):
        for r, x in enumerate(attrs):
            first = next((a for a in x if a.startswith(CATEGORY_PREFIX)), None) if r else None
            if first is not None:
                codes[r] = names.setdefault(first, len(names))
        return codes, names
    codes = categories_from_attributes(attrs)
    counts = Counter(a for x in attrs for a in x)
    rows_with = np.flatnonzero(codes >= 0)
    for r in np.unique(codes[rows_with], return_index=True)[1]:  # first row of each code
        row = rows_with[r]
        names[min(attrs[row], key=lambda a: (-counts[a], a))] = int(codes[row])
    return codes, names


class ServedRerank:
    """The deployment's re-ranking over one model version: keeps a :class:`RerankView` of its
    live catalogue, rebuilt when rows are added or attributes change (flags are read live).

    Args:
        file: the deployment's rules (None: flags only).
        handle: the served model version.
    """

    def __init__(self, file: RerankFile | None, handle: ModelHandle) -> None:
        self.file = file or RerankFile()
        self.handle = handle
        self._lock = threading.Lock()
        self._view: RerankView | None = None
        self.rebuild()

    def rebuild(self) -> RerankView:
        """The view of the handle's current rows (built again only if the layout changed).
        Blocking, O(R D) (0.16 s for Beauty's 12,101 items); the engine calls it in the
        thread that changes the catalogue, before the change is acknowledged."""
        h = self.handle
        with self._lock:
            view = self._view
            if view is not None and view.layout == h.layout_gen:
                return view
            with h._lock:  # one consistent snapshot; writers append under this lock
                layout, n = h.layout_gen, h.n_rows
                ids, rows, table = list(h.ids[:n]), list(h.catalogue[:n]), h.table[:n]
                flags = h.flagged_rows[:n]  # a live view: flag changes need no rebuild
            self._view = RerankView(self.file, h, layout, ids, rows, table, flags)
            return self._view

    def current(self) -> RerankView:
        """The latest view, never waiting for a rebuild (the event loop calls it): while one
        is under way, rows added since are not shown yet (``RerankView.visible``); flags are
        read live either way."""
        return self._view


class RerankView:
    """The rules over one snapshot of a version's rows (plans and hidden rows cached)."""

    def __init__(self, file: RerankFile, handle: ModelHandle, layout: int, ids: list[str],
                 rows: list[dict], table: np.ndarray, flags: np.ndarray) -> None:
        self.file, self.handle, self.layout = file, handle, layout
        self.configured = file.configured()
        self.locked = ALWAYS | set(file.locked)
        codes, self.names = category_codes(rows)
        self.catalogue = Catalogue.build(
            ids, table, categories=codes, flagged=flags,
            popularity=np.array([r.get("popularity", 0) for r in rows], dtype=float),
            attributes=[r.get("attributes") or () for r in rows])
        unknown = sorted(set(file.rules.category_caps) - set(self.names))
        if unknown:
            log.warning("rerank: category_caps name categories no item has (yet): %s",
                        unknown[:5])
        self.reranker = GreedyReranker(self.catalogue)
        self._compiled = CompiledRules(self.catalogue)
        self.deny_rows = self.catalogue.indices_of(sorted(file.rules.deny))  # sorted
        self._shown = np.ones(len(ids), dtype=bool)  # (R,) not denied
        self._shown[self.deny_rows] = False
        r = file.rules
        self._filters = tuple(AttributeFilter(
            None if a.include is None else frozenset(a.include), frozenset(a.exclude))
            for a in r.attributes)
        self._allow = frozenset(r.allow) if r.allow is not None else None
        self._deny = frozenset(r.deny)
        self._plans: dict[RerankRequest, Plan] = {}
        self._hidden: dict[tuple, np.ndarray] = {}

    # --- plans ------------------------------------------------------------------------

    def plan(self, req: RerankRequest) -> Plan:
        """The request's plan (cached).

        Raises:
            Invalid: a locked rule switched off, or weights above 1 together (HTTP 422).
        """
        plan = self._plans.get(req)
        if plan is None:
            plan = self._plan(req)
            if len(self._plans) >= _PLANS:
                self._plans.clear()
            self._plans[req] = plan
        return plan

    def _switches(self, req: RerankRequest) -> tuple[set[str], set[str]]:
        locked = set(req.off) & self.locked
        if locked:
            raise Invalid((req.where, "rules_off"), f"rule(s) {sorted(locked)} are locked by "
                          "the deployment: a request cannot switch them off", "locked_rule")
        on = set(self.configured)
        off = (set(req.off) if req.enabled else on - self.locked) & on
        return on - off, off

    def _plan(self, req: RerankRequest) -> Plan:
        f, r = self.file, self.file.rules
        on, off = self._switches(req)
        mmr = f.mmr.lam if "mmr" in on else 0.0
        cal = f.calibration.lam if "calibration" in on else 0.0
        alpha = f.calibration.alpha if f.calibration else 0.01
        exp = f.exposure if "exposure" in on else None
        head, share, pen = (exp.head_fraction, exp.max_head_share, exp.penalty) if exp \
            else (f.exposure.head_fraction if f.exposure else 0.2, 1.0, 0.0)
        mmr = mmr if req.mmr_lambda is None else req.mmr_lambda
        cal = cal if req.calibration_lambda is None else req.calibration_lambda
        pen = pen if req.exposure_penalty is None else req.exposure_penalty
        share = share if req.max_head_share is None else req.max_head_share
        cap = r.max_per_category if "category_caps" in on else None
        cap = cap if req.max_per_category is None else req.max_per_category
        caps = r.category_caps if "category_caps" in on else {}
        for name, now in (("mmr", mmr > 0), ("calibration", cal > 0),
                          ("exposure", pen > 0 or share < 1),
                          ("category_caps", bool(cap or caps))):
            if now:
                on.add(name)
                off.discard(name)
            elif name in on:
                on.discard(name)
                off.add(name)
        if mmr + cal + pen > 1 + 1e-12:
            given = [w for w in WEIGHTS if getattr(req, w) is not None] or list(WEIGHTS)
            raise Invalid((req.where, given[0]), f"mmr_lambda + calibration_lambda + "
                          f"exposure_penalty in effect is {mmr + cal + pen:g}, above 1 (the "
                          "relevance weight is 1 minus their sum)", "weights_above_one")
        config = None
        if on - ALWAYS:
            config = RerankConfig(
                rules=HardRules(
                    allow=self._allow if "allow" in on else None, deny=self._deny,
                    attributes=self._filters if "attributes" in on else (),
                    max_per_category=cap,
                    category_caps=tuple((self.names[c], n) for c, n in caps.items()
                                        if c in self.names)),
                mmr=MMRConfig(mmr, f.mmr.similarity if f.mmr else "max") if mmr > 0 else None,
                calibration=CalibrationConfig(cal, alpha) if cal > 0 else None,
                exposure=ExposureConfig(head, share, pen) if "exposure" in on else None,
                n_candidates=f.candidates, relevance=f.relevance, order=f.order)
        exposure = "exposure" in on
        info = {"applied": [n for n in RULES if n in on and (n != "deny" or r.deny)],
                "switched_off": [n for n in RULES if n in off],
                "candidates": 0 if config is None else f.candidates,
                "mmr_lambda": mmr if mmr > 0 else None,
                "calibration_lambda": cal if cal > 0 else None,
                "exposure_penalty": pen if exposure else None,
                "max_head_share": share if exposure else None,
                "max_per_category": cap}
        return Plan(self, config, tuple(info["applied"]), "allow" in on, "attributes" in on,
                    info, f.pool_limit() if config is not None else 0)

    # --- hidden rows ------------------------------------------------------------------

    def hidden(self, allow: bool = False, attributes: bool = False) -> np.ndarray:
        """Sorted rows no answer may hold: flagged, denied, and (when asked) outside the
        allow list or failing the attribute filters. -> (M,) int64 (cached per flag state)."""
        h = self.handle
        allow, attributes = allow and self._allow is not None, attributes and \
            bool(self._filters)
        key = (h.flag_gen, allow, attributes)
        out = self._hidden.get(key)
        if out is None:
            rules = HardRules(allow=self._allow if allow else None, deny=self._deny,
                              attributes=self._filters if attributes else ())
            n = len(self.catalogue.ids)
            ok = self._compiled.allowed(np.arange(n), rules)  # (R,)
            live = h.flagged_rows[: h.n_rows]  # rows added since the snapshot too
            out = np.flatnonzero(~np.concatenate([ok & ~live[:n], ~live[n:]]))
            out = out[out > 0]  # padding is never retrieved anyway
            if len(self._hidden) > 16:
                self._hidden.clear()
            self._hidden[key] = out
        return out

    def locked_hidden(self) -> np.ndarray:
        """Rows no request can show (flags, deny, and the locked rules): what explanations
        refuse and leave out."""
        return self.hidden("allow" in self.locked, "attributes" in self.locked)

    def default_hidden(self) -> np.ndarray:
        """Rows the deployment's hard rules hide by default (similar items)."""
        return self.hidden("allow" in self.configured, "attributes" in self.configured)

    def never_shown(self, rows: np.ndarray) -> np.ndarray:
        """Which rows no request can show (flags read live, deny, locked rules). -> bool."""
        rows = np.asarray(rows, dtype=np.int64)
        return np.isin(rows, self.locked_hidden()) | ~self.visible(rows)

    def visible(self, rows: np.ndarray) -> np.ndarray:
        """Which rows may be shown now: not flagged (read live), not denied, and known to
        this snapshot (a row added since waits for the rebuild, which follows at once).
        (M,) -> (M,) bool."""
        rows = np.asarray(rows, dtype=np.int64)
        known = rows < len(self._shown)
        ok = known & ~self.handle.flagged_rows[rows]
        ok[known] &= self._shown[rows[known]]
        return ok

    # --- the stage --------------------------------------------------------------------

    def rank(self, plan: Plan, k: int, rows: np.ndarray, scores: np.ndarray,
             history: np.ndarray | None = None, more: Retrieve | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Retrieved rows (C,) and their scores (C,), best first -> the list (at most k).

        When the rules leave fewer than k items and retrieval may hold more (it returned all
        it was asked for), ``more(n)`` retrieves the top n again for a pool :data:`WIDEN`
        times larger, up to the file's ``max_candidates``: caps and filters that reject most
        of the top candidates still fill the list when the catalogue can.
        """
        out = self._rank(plan, k, rows, scores, history)
        asked = plan.candidates(k)
        while (more is not None and plan.config is not None and len(out[0]) < k
               and len(rows) >= asked and asked < plan.widen_to):
            asked = min(plan.widen_to, asked * WIDEN)
            rows, scores = more(asked)
            out = self._rank(plan, k, rows, scores, history)
        return out

    def _rank(self, plan: Plan, k: int, rows: np.ndarray, scores: np.ndarray,
              history: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, dtype=np.int64)
        scores = np.asarray(scores)
        if plan.config is not None:
            known = rows < len(self.catalogue.ids)  # rows added after the snapshot: not yet
            rows, scores = self.reranker.rerank(rows[known], scores[known], k, history,
                                                plan.config)
        keep = self.visible(rows)
        return rows[keep][:k], scores[keep][:k]

    # --- explanations and the dashboard -------------------------------------------------

    def _gone(self, e: Explanation) -> set[str]:
        """The hidden items an explanation lists (no request can show them)."""
        listed = list(dict.fromkeys([h.item_id for h in e.history]
                                    + [i for s in e.shared_attributes for i in s.items]))
        rows = np.array([self.handle.lookup[i] for i in listed], dtype=np.int64)
        return {i for i, b in zip(listed, self.never_shown(rows).tolist()) if b}

    def _reason(self, drivers: list, shared: list, gone: set[str]) -> str:
        """The library's reason (explainer._one) over the visible drivers and attributes."""
        drivers = [d for d in drivers if d.item_id not in gone]
        named = [d for d in drivers[:2] if d.drop >= NAMED_SHARE * drivers[0].drop]
        label = next((s.label for s in shared if set(s.items) - gone), None)
        return reason_text([label_of(self.handle, self.handle.lookup[d.item_id])
                            for d in named], label)

    def shown_reason(self, e: Explanation) -> str:
        """The explanation's one-line reason, naming no hidden item."""
        gone = self._gone(e)
        return self._reason(e.drivers, e.shared_attributes, gone) if gone else e.reason

    def shown_explanation(self, e: Explanation) -> dict:
        """An explanation as a dict without hidden items in what it lists or names (their
        effect on the score stays; the reason is worded again from the visible drivers)."""
        out = e.to_dict()
        gone = self._gone(e)
        if not gone:
            return out
        for name in ("history", "drivers", "similar"):
            out[name] = [h for h in out[name] if h["item_id"] not in gone]
        shared = [{**s, "items": [i for i in s["items"] if i not in gone]}
                  for s in out["shared_attributes"]]
        out["shared_attributes"] = [s for s in shared if s["items"]]
        out["reason"] = self._reason(e.drivers, e.shared_attributes, gone)
        return out

    def describe(self) -> dict:
        """The rules in effect by default, for the dashboard (lists as counts)."""
        f, r = self.file, self.file.rules
        n_flagged = int(self.handle.flagged_rows[: self.handle.n_rows].sum())
        def count(n: int, what: str) -> str:
            return f"{n} {what}" + ("" if n == 1 else "s")

        detail = {
            "flags": count(n_flagged, "item") + " flagged", "deny": count(len(r.deny), "id"),
            "allow": count(len(r.allow or ()), "id"),
            "attributes": count(len(r.attributes), "filter"),
            "category_caps": f"at most {r.max_per_category} per category"
            if r.max_per_category else count(len(r.category_caps), "category cap"),
            "mmr": f"lambda {f.mmr.lam:g}, {f.mmr.similarity} similarity" if f.mmr else "",
            "calibration": f"lambda {f.calibration.lam:g}" if f.calibration else "",
            "exposure": f"head {f.exposure.head_fraction:g}: at most "
                        f"{f.exposure.max_head_share:g} of a list, penalty "
                        f"{f.exposure.penalty:g}" if f.exposure else ""}
        rules = [{"name": n, "on": n in self.configured, "locked": n in self.locked,
                  "detail": detail[n] if n in self.configured else ""} for n in RULES]
        return {"rules": rules, "candidates": f.candidates, "max_candidates": f.pool_limit(),
                "relevance": f.relevance, "order": f.order,
                "hidden_items": int(len(self.locked_hidden()))}
