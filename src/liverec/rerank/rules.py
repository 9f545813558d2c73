"""Hard rules over candidate indices: flags, allow/deny lists, attribute filters, category caps.

A rule set is compiled once (external ids and attributes -> sorted index arrays, cached per
HardRules value), so a request costs a few ``np.isin`` calls over its C candidates, never a pass
over the catalogue.
"""

from __future__ import annotations

import numpy as np

from liverec.rerank.catalogue import Catalogue
from liverec.rerank.config import HardRules

_CACHE_SIZE = 64  # distinct rule sets kept compiled (per-request overrides included)


def head_items(popularity: np.ndarray, fraction: float) -> np.ndarray:
    """The head: the ``ceil(fraction * N)`` most popular items (ties to the lower index).

    Args:
        popularity: (N + 1,) counts, row 0 padding.
        fraction: share of the catalogue that is head, in [0, 1].

    Returns:
        (N + 1,) bool, padding never head.
    """
    n = len(popularity) - 1
    n_head = int(np.ceil(fraction * n - 1e-9))
    order = np.lexsort((np.arange(n), -popularity[1:]))[:n_head] + 1
    out = np.zeros(len(popularity), dtype=bool)
    out[order] = True
    return out


class CompiledRules:
    """Hard rules turned into index arrays for one catalogue."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._compiled: dict[HardRules, tuple] = {}

    def _compile(self, rules: HardRules) -> tuple:
        got = self._compiled.get(rules)
        if got is None:
            cat = self.catalogue
            allow = None if rules.allow is None else cat.indices_of(sorted(rules.allow))
            deny = cat.indices_of(sorted(rules.deny))
            filters = [(None if f.include is None else cat.having(sorted(f.include)),
                        cat.having(sorted(f.exclude))) for f in rules.attributes]
            got = (allow, deny, filters)
            if len(self._compiled) >= _CACHE_SIZE:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[rules] = got
        return got

    def allowed(self, cands: np.ndarray, rules: HardRules) -> np.ndarray:
        """Whether each candidate may be shown at all. (C,) indices -> (C,) bool."""
        allow, deny, filters = self._compile(rules)
        ok = (cands > 0) & ~self.catalogue.flagged[cands]
        if allow is not None:
            ok &= np.isin(cands, allow)
        if len(deny):
            ok &= ~np.isin(cands, deny)
        for include, exclude in filters:
            if include is not None:
                ok &= np.isin(cands, include)
            if len(exclude):
                ok &= ~np.isin(cands, exclude)
        return ok

    @staticmethod
    def caps(cats: np.ndarray, rules: HardRules, k: int) -> np.ndarray:
        """The cap that applies to each category code. (G,) codes -> (G,) float caps."""
        out = np.full(len(cats), float(rules.max_per_category or k))
        for code, cap in rules.category_caps:
            out[cats == code] = cap
        return out
