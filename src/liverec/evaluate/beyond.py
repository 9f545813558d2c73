"""Beyond-accuracy metrics of top-K lists: diversity, coverage, novelty, popularity bias,
calibration.

Every function takes ``tops``: (C, K) item indices of C lists, best first, 0 for an empty slot
(padding is never an item; protocol.py's ``top_items`` fills short lists with 0). Empty slots are
skipped everywhere. Every result is a finite float; over zero lists it is 0.0.

- intra-list diversity (Ziegler et al., WWW 2005): mean over lists of the mean pairwise cosine
  distance ``1 - cos(v_i, v_j)`` of the list's item vectors (lists with < 2 items are skipped);
- catalogue coverage: share of the N items in at least one list (metrics.coverage);
- novelty (Zhou et al., PNAS 2010): mean over listed items of ``-log2(pop_i / n_users)``, an item
  with no recorded interaction counted as one;
- average recommendation popularity, ARP (Abdollahpouri et al., FLAIRS 2019): mean over lists of
  the mean interaction count of the list's items;
- Gini of exposure: Gini coefficient of how often each of the N items is listed (0 = every item
  equally often, -> 1 = one item takes all the exposure);
- calibration error (Steck, RecSys 2018): mean over lists of ``KL(p || q~)``, p the category mix of
  the user's history, q the list's, ``q~ = (1 - alpha) q + alpha p``; users with an empty history
  or an empty list are skipped.

Legend: C lists, K slots, N items (+1 padding row 0), D vector size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from liverec.evaluate.metrics import coverage


def _rows(tops: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(tops, dtype=np.int64))


def intra_list_diversity(tops: np.ndarray, vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance within each list, averaged over lists.

    Args:
        tops: (C, K) item indices, 0 = empty.
        vectors: (N + 1, D) item vectors; a zero vector has cosine 0 with everything.
    """
    vec = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    unit = vec / np.where(norms > 0, norms, 1.0)  # (N + 1, D)
    tops = _rows(tops)
    dist = [_mean_distance(tops[s : s + 1024], unit) for s in range(0, len(tops), 1024)]
    dist = np.concatenate(dist) if dist else np.zeros(0)
    dist = dist[np.isfinite(dist)]  # lists with < 2 items give NaN here and are skipped
    return float(dist.mean()) if len(dist) else 0.0


def _mean_distance(tops: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Mean pairwise cosine distance per list; NaN for lists with < 2 items. -> (C,)."""
    filled = tops > 0  # (C, K)
    n = filled.sum(1)  # (C,)
    u = unit[tops] * filled[..., None]  # (C, K, D) empty slots -> zero vectors
    s = u.sum(1)  # (C, D)
    # sum over ordered pairs i != j of cos = |sum u|^2 - sum |u|^2
    pair_sim = ((s * s).sum(1) - (u * u).sum((1, 2))) / 2.0  # (C,) over unordered pairs
    pairs = n * (n - 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, 1.0 - pair_sim / pairs, np.nan)


def intra_list_diversity_reference(tops: np.ndarray, vectors: np.ndarray) -> float:
    """:func:`intra_list_diversity` with explicit loops over pairs (the reference)."""
    out = []
    for row in _rows(tops):
        items = [int(i) for i in row if i > 0]
        dists = []
        for a in range(len(items)):
            for b in range(a + 1, len(items)):
                va, vb = vectors[items[a]], vectors[items[b]]
                na, nb = float(np.linalg.norm(va)), float(np.linalg.norm(vb))
                cos = float(np.dot(va, vb) / (na * nb)) if na > 0 and nb > 0 else 0.0
                dists.append(1.0 - cos)
        if dists:
            out.append(sum(dists) / len(dists))
    return float(np.mean(out)) if out else 0.0


def catalogue_coverage(tops: np.ndarray, n_items: int) -> float:
    """Share of the N items listed at least once (metrics.coverage)."""
    return coverage(_rows(tops), n_items)


def novelty(tops: np.ndarray, popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information ``-log2(max(pop_i, 1) / n_users)`` of the listed items (bits).

    Args:
        popularity: (N + 1,) interaction counts (training data).
        n_users: users behind the counts (> 0).
    """
    tops = _rows(tops)
    items = tops[tops > 0]
    if not len(items) or n_users <= 0:
        return 0.0
    pop = np.maximum(np.asarray(popularity, dtype=np.float64)[items], 1.0)
    return float(np.mean(-np.log2(pop / n_users)))


def average_popularity(tops: np.ndarray, popularity: np.ndarray) -> float:
    """ARP: mean over lists of the mean interaction count of the list's items."""
    tops = _rows(tops)
    filled = tops > 0
    n = filled.sum(1)
    pop = np.asarray(popularity, dtype=np.float64)[tops] * filled  # (C, K)
    ok = n > 0
    return float(np.mean(pop.sum(1)[ok] / n[ok])) if ok.any() else 0.0


def exposure_counts(tops: np.ndarray, n_items: int) -> np.ndarray:
    """How often each item is listed. -> (N + 1,) int64, row 0 (padding) always 0."""
    tops = _rows(tops)
    out = np.bincount(tops[tops > 0], minlength=n_items + 1)[: n_items + 1]
    return out.astype(np.int64)


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: ``sum_i (2i - n - 1) x_(i) / (n sum x)``, x sorted
    ascending, i = 1..n. 0 for equal values (or all zero, or n < 2)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = len(x), x.sum()
    if n < 2 or total <= 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def exposure_gini(tops: np.ndarray, n_items: int) -> float:
    """Gini of exposure over all N catalogue items (items never listed count as 0)."""
    return gini(exposure_counts(tops, n_items)[1:])


def calibration_error(tops: np.ndarray, histories: Sequence[np.ndarray],
                      categories: np.ndarray, alpha: float = 0.01) -> float:
    """Steck's miscalibration ``C_KL``: mean over lists of KL(p_history || q~_list).

    Args:
        tops: (C, K) item indices.
        histories: C index arrays (padding 0 skipped).
        categories: (N + 1,) category code per item (-1 = unknown, a bucket of its own).
        alpha: smoothing of q, in (0, 1].
    """
    cats = np.asarray(categories)
    out = []
    for row, hist in zip(_rows(tops), histories):
        hist = np.asarray(hist, dtype=np.int64)
        hist, row = hist[hist > 0], row[row > 0]
        if not len(hist) or not len(row):
            continue
        hc, hn = np.unique(cats[hist], return_counts=True)
        p = hn / hn.sum()  # (H,)
        lc, ln = np.unique(cats[row], return_counts=True)
        q = dict(zip(lc.tolist(), (ln / ln.sum()).tolist()))
        qh = np.array([q.get(c, 0.0) for c in hc.tolist()])  # (H,)
        out.append(float(np.sum(p * np.log(p / ((1 - alpha) * qh + alpha * p)))))
    return float(np.mean(out)) if out else 0.0


def beyond_metrics(tops: np.ndarray, *, n_items: int, vectors: np.ndarray | None = None,
                   popularity: np.ndarray | None = None, n_users: int = 0,
                   histories: Sequence[np.ndarray] | None = None,
                   categories: np.ndarray | None = None) -> dict[str, float]:
    """Every beyond-accuracy metric whose inputs are given, keyed like ``diversity``."""
    out = {"coverage": catalogue_coverage(tops, n_items),
           "exposure_gini": exposure_gini(tops, n_items)}
    if vectors is not None:
        out["diversity"] = intra_list_diversity(tops, vectors)
    if popularity is not None:
        out["novelty"] = novelty(tops, popularity, n_users)
        out["arp"] = average_popularity(tops, popularity)
    if histories is not None and categories is not None:
        out["calibration_error"] = calibration_error(tops, histories, categories)
    return out


BEYOND_DEFINITIONS = {
    "diversity": "intra-list diversity (ILD): mean pairwise cosine distance of a list's items "
                 "(Ziegler et al. 2005), over the model's own item vectors for every row",
    "coverage": "share of the catalogue in at least one list",
    "novelty": "mean -log2(training count / users) of the listed items (Zhou et al. 2010)",
    "arp": "average recommendation popularity: mean training count of a list's items "
           "(Abdollahpouri et al. 2019)",
    "exposure_gini": "Gini of how often each catalogue item is listed (0 = even, 1 = one "
                     "item takes all exposure)",
    "calibration_error": "Steck's (2018) KL(history category mix || list mix), alpha 0.01",
}


@dataclass(frozen=True)
class ListFacts:
    """What the beyond-accuracy metrics need besides the lists, built once per evaluation.

    Attributes:
        n_items: N.
        popularity: (N + 1,) training interaction counts.
        n_users: users with a training sequence.
        vectors: (N + 1, D) item vectors for diversity, or None (no diversity).
        categories: (N + 1,) category codes for calibration, or None (no categories known).
    """

    n_items: int
    popularity: np.ndarray
    n_users: int
    vectors: np.ndarray | None = None
    categories: np.ndarray | None = None

    @classmethod
    def build(cls, prepared, vectors: np.ndarray | None, items=None) -> ListFacts:
        """From prepared data (training counts), the model's item vectors (N + 1, D) and the
        item table (sorted by index; categories from its ``attributes``: each item's most
        common attribute, ``liverec.rerank.categories_from_attributes``)."""
        from liverec.rerank.catalogue import categories_from_attributes

        n = prepared.vocab.n_items
        cats = None
        if items is not None and "attributes" in items.columns:
            attrs = [[]] + [a or [] for a in items["attributes"].to_list()]
            if len(attrs) == n + 1 and any(attrs):
                cats = categories_from_attributes(attrs)
        if vectors is not None and (len(vectors) < n + 1 or not np.isfinite(vectors).all()):
            vectors = None
        return cls(n, prepared.train_item_counts().astype(np.float64),
                   len(prepared.train_sequences()),
                   None if vectors is None else np.asarray(vectors[: n + 1]), cats)

    def describe(self) -> dict[str, str]:
        return {"popularity": f"training interaction counts of {self.n_users:,} users",
                "categories": "each item's most common attribute in the catalogue"
                if self.categories is not None else "none known: no calibration error"}


def list_metrics(tops: np.ndarray, histories: Sequence[np.ndarray],
                 facts: ListFacts) -> dict[str, float | None]:
    """Every beyond-accuracy metric of C lists (C, K); None where the facts lack an input."""
    out: dict[str, float | None] = dict.fromkeys(BEYOND_DEFINITIONS)
    out.update(beyond_metrics(tops, n_items=facts.n_items, vectors=facts.vectors,
                              popularity=facts.popularity, n_users=facts.n_users,
                              histories=histories if facts.categories is not None else None,
                              categories=facts.categories))
    return out
