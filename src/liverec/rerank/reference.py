"""The re-ranking stage written plainly, one candidate at a time: the reference for stage.py.

Same rules and tie-breaks as ``GreedyReranker`` (see stage.py); every quantity is recomputed from
scratch at each step with Python loops, so it is slow (O(k^2 C D)) and obviously right.
"""

from __future__ import annotations

import math

import numpy as np

from liverec.rerank.catalogue import Catalogue
from liverec.rerank.config import HardRules, RerankConfig
from liverec.rerank.stage import history_mix, prepare, sum_weight


class ReferenceReranker:
    """Reference implementation of :class:`liverec.rerank.stage.Reranker`."""

    def __init__(self, catalogue: Catalogue, config: RerankConfig | None = None) -> None:
        self.catalogue = catalogue
        self.config = config or RerankConfig()

    def describe(self) -> dict:
        return self.config.describe()

    def with_config(self, config: RerankConfig) -> ReferenceReranker:
        return ReferenceReranker(self.catalogue, config)

    def _allowed(self, item: int, rules: HardRules) -> bool:
        cat = self.catalogue
        item_id = str(cat.ids[item])
        if item == 0 or cat.flagged[item] or item_id in rules.deny:
            return False
        if rules.allow is not None and item_id not in rules.allow:
            return False
        attrs = cat.attributes[item] if len(cat.attributes) else frozenset()
        for f in rules.attributes:
            if f.include is not None and not attrs & f.include:
                return False
            if attrs & f.exclude:
                return False
        return True

    def _is_head(self, item: int, fraction: float) -> bool:
        pop = self.catalogue.popularity
        n = len(pop) - 1
        ahead = sum(1 for j in range(1, n + 1) if pop[j] > pop[item] or
                    (pop[j] == pop[item] and j < item))
        return ahead < math.ceil(fraction * n - 1e-9)

    def rerank(self, candidates, scores, k: int, history=None, config=None):
        cfg = config or self.config
        cands, vals = prepare(self.catalogue, candidates, scores)
        pairs = [(int(c), float(v)) for c, v in zip(cands, vals)
                 if self._allowed(int(c), cfg.rules)]
        if k < 1 or not pairs:
            return np.zeros(0, np.int64), np.zeros(0)
        lo, hi = min(v for _, v in pairs), max(v for _, v in pairs)
        if cfg.relevance == "probability":
            total = sum(math.exp(v - hi) for _, v in pairs)
            rel = {c: math.exp(v - hi) / total for c, v in pairs}
        else:
            rel = {c: 1.0 if hi == lo else (v - lo) / (hi - lo) for c, v in pairs}
        chosen: list[int] = []
        for _ in range(k):
            best, best_gain = None, -math.inf
            for c, _v in pairs:
                if c in chosen or not self._feasible(c, chosen, k, cfg):
                    continue
                gain = self._gain(c, rel[c], chosen, history, cfg, k)
                if gain > best_gain:
                    best, best_gain = c, gain
            if best is None:
                break
            chosen.append(best)
        score = dict(pairs)
        if cfg.order == "score":
            rank = {c: r for r, (c, _) in enumerate(pairs)}  # pairs are in score order
            chosen.sort(key=rank.__getitem__)
        return np.array(chosen, dtype=np.int64), np.array([score[c] for c in chosen])

    def _feasible(self, c: int, chosen: list[int], k: int, cfg: RerankConfig) -> bool:
        cats = self.catalogue.categories
        rules = cfg.rules
        cap = dict(rules.category_caps).get(int(cats[c]), rules.max_per_category or k)
        if sum(1 for j in chosen if cats[j] == cats[c]) >= cap:
            return False
        if cfg.exposure is not None and self._is_head(c, cfg.exposure.head_fraction):
            max_head = math.floor(cfg.exposure.max_head_share * k + 1e-9)
            n_head = sum(1 for j in chosen if self._is_head(j, cfg.exposure.head_fraction))
            if n_head >= max_head:
                return False
        return True

    def _gain(self, c: int, rel: float, chosen: list[int], history, cfg: RerankConfig,
              k: int) -> float:
        lam_m = cfg.mmr.lam if cfg.mmr else 0.0
        p = history_mix(self.catalogue, history) if cfg.calibration else {}
        lam_c = cfg.calibration.lam if p else 0.0
        lam_p = cfg.exposure.penalty if cfg.exposure else 0.0
        gain = (1.0 - lam_m - lam_c - lam_p) * rel
        if lam_p:
            pop = self.catalogue.popularity
            top = math.log1p(max(pop)) if len(pop) else 0.0
            gain -= lam_p * (math.log1p(pop[c]) / top if top > 0 else 0.0)
        if lam_m > 0 and chosen and cfg.mmr.similarity == "sum":
            gain -= lam_m * sum_weight(k) * sum(self._cosine(c, j) for j in chosen)
        elif lam_m > 0 and chosen:
            gain -= lam_m * max(self._cosine(c, j) for j in chosen)
        if p:
            gain -= lam_c * self._kl(p, chosen + [c], cfg.calibration.alpha)
        return gain

    def _cosine(self, a: int, b: int) -> float:
        va, vb = self.catalogue.vectors[a], self.catalogue.vectors[b]
        na = math.sqrt(sum(x * x for x in va)) or 1.0
        nb = math.sqrt(sum(x * x for x in vb)) or 1.0
        return sum(x * y for x, y in zip(va, vb)) / (na * nb)

    def _kl(self, p: dict[int, float], items: list[int], alpha: float) -> float:
        cats = self.catalogue.categories
        total = 0.0
        for g, pg in p.items():
            q = sum(1 for j in items if cats[j] == g) / len(items)
            total += pg * math.log(pg / ((1 - alpha) * q + alpha * pg))
        return total
