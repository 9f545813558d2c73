"""The re-ranking stage: hard rules, then a greedy list under diversity / calibration / exposure.

Order of work for one request (C candidates, k slots, D vector size, G categories):

1. checks: NaN or +inf scores are an error (a broken scorer); -inf means masked and is dropped;
   duplicates keep their first (best-scored) copy; candidates are ordered by score, then index;
2. hard rules (``rules.allowed``): padding, flagged (unsafe/unavailable) items, the deny list,
   items outside an allow list and items failing an attribute filter are removed; no weight of
   any soft objective can bring them back;
3. greedy selection, k steps: among the feasible candidates (category caps and the head-item cap
   not yet reached) take the one with the largest
   ``(1 - lam_mmr - lam_cal - lam_pop) * rel - lam_mmr * sim - lam_cal * KL - lam_pop * pop~``,
   ties to the earlier (better-scored) candidate. ``rel`` is the score min-max scaled to [0, 1]
   (or, with ``relevance="probability"``, the softmax) over the candidates left after step 2;
   ``sim`` is the largest cosine to an item already listed (MMR, 0 for the first pick) or, with
   ``similarity="sum"``, ``2 / (k (k - 1))`` times the sum of those cosines (max-sum
   diversification of the list's ILD); ``KL`` is Steck's miscalibration of the list with the
   item added; ``pop~`` is the item's log popularity scaled to [0, 1] (exposure penalty). With
   one objective on, this is exactly MMR (Carbonell & Goldstein 1998) or calibrated
   recommendations (Steck 2018); with none, it is the score order under the caps;
4. ``order="score"`` lists the picked items by score (same set), else in the order picked.

Cost: O(C log C + k (C D + G)) per request, no loop over the catalogue. ``GreedyReranker`` is the
vectorised path; ``ReferenceReranker`` does the same with plain Python loops; tests compare them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from liverec.errors import NonFiniteError
from liverec.rerank.catalogue import Catalogue
from liverec.rerank.config import RerankConfig
from liverec.rerank.rules import CompiledRules, head_items

IntArray = np.ndarray


class Reranker(Protocol):
    """Turns scored candidates into the list a user sees."""

    config: RerankConfig

    def rerank(self, candidates: IntArray, scores: np.ndarray, k: int,
               history: Sequence[int] | None = None,
               config: RerankConfig | None = None) -> tuple[IntArray, np.ndarray]:
        """Args: candidates (C,) item indices, scores (C,), k slots, the user's history indices
        (for calibration), config = a per-request override of ``self.config``.
        Returns (items (m,) int64, their scores (m,)), m <= k, in list order.
        Raises NonFiniteError on NaN/+inf scores, ValueError on out-of-range indices."""
        ...

    def describe(self) -> dict:
        """The rules in effect (JSON-able)."""
        ...

    def with_config(self, config: RerankConfig) -> Reranker:
        """The same stage (sharing its compiled state) with another default config."""
        ...


def prepare(catalogue: Catalogue, candidates, scores) -> tuple[IntArray, np.ndarray]:
    """Step 1: check, drop masked and duplicate candidates, order by (score desc, index asc)."""
    cands = np.asarray(candidates, dtype=np.int64).reshape(-1)  # (C,)
    vals = np.asarray(scores, dtype=np.float64).reshape(-1)  # (C,)
    if len(cands) != len(vals):
        raise ValueError(f"{len(cands)} candidates but {len(vals)} scores")
    if len(cands) and (cands.min() < 0 or cands.max() > catalogue.n_items):
        raise ValueError(f"candidate indices must be in [0, {catalogue.n_items}]")
    if np.isnan(vals).any() or np.isposinf(vals).any():
        raise NonFiniteError("re-ranking got NaN or +inf scores: the scorer is broken")
    keep = np.isfinite(vals) & (cands > 0)
    cands, vals = cands[keep], vals[keep]
    order = np.lexsort((cands, -vals))
    cands, vals = cands[order], vals[order]
    _, first = np.unique(cands, return_index=True)
    if len(first) < len(cands):
        first.sort()
        cands, vals = cands[first], vals[first]
    return cands, vals


def relevance(vals: np.ndarray, kind: str = "minmax") -> np.ndarray:
    """(C,) scores -> (C,) relevance. "minmax": scaled to [0, 1], all equal -> all 1;
    "probability": the softmax over the candidates (sums to 1)."""
    if not len(vals):
        return vals
    hi = vals.max()
    if kind == "probability":
        e = np.exp(vals - hi)
        return e / e.sum()
    lo = vals.min()
    return np.ones_like(vals) if hi == lo else (vals - lo) / (hi - lo)


def sum_weight(k: int) -> float:
    """``2 / (k (k - 1))``: one pair's share of a k-item list's mean pairwise similarity."""
    return 2.0 / (k * (k - 1)) if k > 1 else 0.0


def history_mix(catalogue: Catalogue, history) -> dict[int, float]:
    """Steck's p: the share of each category code among the history items (padding skipped)."""
    hist = np.asarray(history if history is not None else [], dtype=np.int64).reshape(-1)
    hist = hist[(hist > 0) & (hist <= catalogue.n_items)]
    if not len(hist):
        return {}
    codes, counts = np.unique(catalogue.categories[hist], return_counts=True)
    return {int(c): float(n) / len(hist) for c, n in zip(codes, counts)}


def popularity_norm(popularity: np.ndarray) -> np.ndarray:
    """``log(1 + pop) / log(1 + max pop)`` in [0, 1] (all zero when nothing is popular)."""
    top = np.log1p(popularity.max()) if len(popularity) else 0.0
    return np.log1p(popularity) / top if top > 0 else np.zeros(len(popularity))


class GreedyReranker:
    """The vectorised stage (see the module docstring).

    Args:
        catalogue: item facts aligned with the model's indices.
        config: the deployment's default rules; each request may pass its own.
    """

    def __init__(self, catalogue: Catalogue, config: RerankConfig | None = None) -> None:
        self.catalogue = catalogue
        self.config = config or RerankConfig()
        norms = np.linalg.norm(catalogue.vectors, axis=1, keepdims=True)  # (N + 1, 1)
        self._unit = catalogue.vectors / np.where(norms > 0, norms, 1.0)  # (N + 1, D)
        self._rules = CompiledRules(catalogue)
        self._head: dict[float, np.ndarray] = {}
        self._pop_norm = popularity_norm(catalogue.popularity)  # (N + 1,)

    def describe(self) -> dict:
        return self.config.describe()

    def with_config(self, config: RerankConfig) -> GreedyReranker:
        out = copy.copy(self)
        out.config = config
        return out

    def _is_head(self, fraction: float) -> np.ndarray:
        if fraction not in self._head:
            self._head[fraction] = head_items(self.catalogue.popularity, fraction)
        return self._head[fraction]

    def rerank(self, candidates, scores, k: int, history=None,
               config: RerankConfig | None = None) -> tuple[IntArray, np.ndarray]:
        cfg = config or self.config
        cands, vals = prepare(self.catalogue, candidates, scores)
        ok = self._rules.allowed(cands, cfg.rules)  # (C,)
        cands, vals = cands[ok], vals[ok]
        if k < 1 or not len(cands):
            return cands[:0], vals[:0]
        pick = self._select(cands, relevance(vals, cfg.relevance), k, history, cfg)
        if cfg.order == "score":  # candidates are in score order, so index order is score order
            pick = sorted(pick)
        return cands[pick], vals[pick]

    def _select(self, cands, rel, k, history, cfg: RerankConfig) -> list[int]:
        lam_m = cfg.mmr.lam if cfg.mmr else 0.0
        summed = bool(cfg.mmr) and cfg.mmr.similarity == "sum"
        sim_w = lam_m * sum_weight(k) if summed else lam_m  # the similarity penalty's weight
        p = history_mix(self.catalogue, history) if cfg.calibration else {}
        lam_c = cfg.calibration.lam if p else 0.0
        exp = cfg.exposure
        lam_p = exp.penalty if exp else 0.0
        cats = self.catalogue.categories[cands]  # (C,)
        # base gain, -inf once a candidate is listed or blocked by a cap (blocks only grow)
        base = (1.0 - lam_m - lam_c - lam_p) * rel  # (C,)
        if lam_p:
            base -= lam_p * self._pop_norm[cands]
        capped = cfg.rules.max_per_category is not None or bool(cfg.rules.category_caps)
        if capped:
            codes, cand_code = np.unique(cats, return_inverse=True)  # (G,), (C,)
            counts = np.zeros(len(codes))  # (G,) listed items per category
            cap = self._rules.caps(codes, cfg.rules, k)  # (G,)
            base[cap[cand_code] < 1] = -np.inf
        head = self._is_head(exp.head_fraction)[cands] if exp else np.zeros(len(cands), bool)
        max_head = int(np.floor(exp.max_head_share * k + 1e-9)) if exp else k
        n_head = 0
        if max_head < 1:
            base[head] = -np.inf
        unit = self._unit[cands] if sim_w > 0 else None  # (C, D)
        penalty = np.zeros(len(cands))  # (C,) sim_w * (max or sum of cosines to the list)
        gain = np.empty(len(cands))  # (C,) scratch
        if p:  # only the history's categories change KL; KL_none is the same for all
            h_codes = np.array(sorted(p))  # (H,)
            p_h = np.array([p[c] for c in h_codes.tolist()])  # (H,)
            pos = np.searchsorted(h_codes, cats).clip(max=len(h_codes) - 1)  # (C,)
            cand_h = np.where(h_codes[pos] == cats, pos, len(h_codes))  # (C,) H = outside
            counts_h = np.zeros(len(h_codes))  # (H,)
            delta = np.zeros(len(h_codes) + 1)  # (H + 1,) last = outside, stays 0
            alpha = cfg.calibration.alpha
            lam_p_h = lam_c * p_h  # (H,)
        out: list[int] = []
        for step in range(min(k, len(cands))):
            np.subtract(base, penalty, out=gain)
            if p:
                delta[:-1] = _kl_change(counts_h, p_h, alpha, step + 1, lam_p_h)
                gain -= delta[cand_h]
            i = int(gain.argmax())
            if gain[i] == -np.inf:
                break
            out.append(i)
            base[i] = -np.inf
            if p and cand_h[i] < len(h_codes):
                counts_h[cand_h[i]] += 1
            if capped:
                g = cand_code[i]
                counts[g] += 1
                if counts[g] >= cap[g]:
                    base[cand_code == g] = -np.inf
            if head[i]:
                n_head += 1
                if n_head >= max_head:
                    base[head] = -np.inf
            if unit is not None:
                sims = unit @ (sim_w * unit[i])  # (C,)
                if summed:
                    penalty += sims
                elif step:
                    np.maximum(penalty, sims, out=penalty)
                else:
                    penalty = sims
        return out


def _kl_change(counts_h, p_h, alpha, m, weight) -> np.ndarray:
    """How KL(p || q~) of a list of m items changes with the category of its m-th item. -> (H,).

    With q~_g = (1 - alpha) n_g / m + alpha p_g over the m - 1 items listed (n_g of category g),
    an m-th item of category c adds (1 - alpha) / m to q~_c only, so
    KL_c = KL_none + p_c log(q~_c / (q~_c + (1 - alpha) / m)) for c in the history's categories
    and KL_none otherwise. KL_none is the same for every candidate, so the greedy step needs
    only the change (the reference adds it; the argmax is the same). -> weight * change.
    """
    den = counts_h * ((1 - alpha) / m) + alpha * p_h  # (H,) q~ without the new item
    return weight * np.log(den / (den + (1 - alpha) / m))
