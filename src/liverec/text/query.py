"""Recommendations for a free-text query: item-text similarity, optionally blended with a
sequence model's scores.

Legend: B queries (or histories), N items (+1 padding column 0), E text dimension.

Scoring (one row per request):

- text score ``t_i = cos(encode(query), encode(item_text_i))``: the text encoder's vectors are
  unit-norm, so a dot product (``TextIndex.similarity``);
- with no history, the answer is ranked by ``t`` alone and the scores returned are the cosines;
- with a history, each of the two score rows is normalised over the request's candidates (the
  items not masked: padding, seen items and excluded items are -inf and take no part) and then
  mixed: ``s_i = w * norm(t)_i + (1 - w) * norm(m)_i``, ``m`` the sequence model's scores and
  ``w = QueryConfig.weight`` (1 = the query alone, 0 = the history alone). Normalisations:

  - ``"zscore"`` (default): ``(x - mean) / std`` over the candidates (a constant row -> 0), so
    both parts are in standard deviations of their own spread over the same items;
  - ``"softmax"``: log-softmax over the candidates, the cosines first divided by
    ``temperature``: the blend is then a weighted product of the two distributions
    (``p_query^w * p_model^(1 - w)``, a product of experts).

``blend_scores`` is the batched torch path; ``blend_scores_reference`` does the same per item
with plain Python and the tests compare them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from liverec.errors import ConfigError, LiverecError
from liverec.text.cache import VectorCache, encode_cached
from liverec.text.encoder import TextEncoder, normalise
from liverec.text.template import DEFAULT_TEMPLATE, item_text

NORMALISATIONS = ("zscore", "softmax")
MAX_QUERY_CHARS = 1000


class QueryError(LiverecError, ValueError):
    """A query that cannot be scored (empty, not text, too long)."""


@dataclass(frozen=True)
class QueryConfig:
    """How a query's text scores are mixed with a sequence model's scores.

    Attributes:
        weight: the query's share ``w`` in ``w * norm(text) + (1 - w) * norm(model)``, in
            [0, 1]; used only when a history is given (a query alone is ranked by text).
            Default 0.7 with z-scores: the best z-score weight on Beauty's validation split,
            averaged over title-word queries of 1, 2, 3 words and whole titles
            (benchmarks/results/query_eval_beauty.md).
        normalise: ``"zscore"`` or ``"softmax"`` (module docstring).
        temperature: softmax only: cosines are divided by it before the log-softmax (> 0).
    """

    weight: float = 0.7
    normalise: str = "zscore"
    temperature: float = 0.05

    def __post_init__(self) -> None:
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) \
                or not 0.0 <= w <= 1.0:
            raise ConfigError(f"query weight must be a number in [0, 1], got {w!r}")
        if self.normalise not in NORMALISATIONS:
            raise ConfigError(f"query normalise must be one of {list(NORMALISATIONS)}, "
                              f"got {self.normalise!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) \
                or t <= 0:
            raise ConfigError(f"query temperature must be a finite number > 0, got {t!r}")


def check_query(query: object) -> str:
    """The query stripped of surrounding blanks; QueryError when it is not usable text.

    Raises:
        QueryError: not a string, no letter or digit in it, or over MAX_QUERY_CHARS characters.
    """
    if not isinstance(query, str):
        raise QueryError(f"query must be a string, got {type(query).__name__}")
    text = query.strip()
    if not re.search(r"\w", text):
        raise QueryError("query must contain at least one letter or digit")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"query is {len(text)} characters, above the limit of "
                         f"{MAX_QUERY_CHARS}")
    return text


def _normalise_rows(x: torch.Tensor, ok: torch.Tensor, how: str,
                    temperature: float = 1.0) -> torch.Tensor:
    """Normalise each row over its entries where ``ok``; the others come out arbitrary (the
    caller masks them). x: (B, M) with finite values where ``ok`` (0 elsewhere) -> (B, M).

    Sums are taken in float64; the (B, M) work stays in x's dtype (one pass per step)."""
    n = ok.sum(1, keepdim=True).clamp_min(1).double()  # (B, 1)
    if how == "zscore":
        mean = x.sum(1, keepdim=True, dtype=torch.float64) / n  # (B, 1), masked entries are 0
        sq = (x * x).sum(1, keepdim=True, dtype=torch.float64) / n
        std = (sq - mean * mean).clamp_min(0).sqrt()
        # a constant row (std 0) gives 0 everywhere: dividing by inf
        std = torch.where(std > 1e-12 * mean.abs().clamp_min(1.0), std, math.inf)
        return (x - mean.to(x.dtype)).div_(std.to(x.dtype))
    y = (x / temperature).masked_fill_(~ok, float("-inf"))
    return y.log_softmax(1)


def blend_scores(text: torch.Tensor, model: torch.Tensor | None,
                 config: QueryConfig = QueryConfig()) -> torch.Tensor:
    """Scores of a query (with a history's model scores, when given) over every item.

    Args:
        text: (B, M) cosines of the queries to the items; -inf where masked (padding, seen or
            excluded items).
        model: (B, M) sequence-model scores of the histories, masked the same way, or None
            (no history: the cosines are the scores).
        config: weight and normalisation.

    Returns:
        (B, M) float32 scores, -inf wherever either input is -inf.

    Raises:
        QueryError: NaN or +inf among the inputs (a broken encoder or model).
    """
    for name, x in (("text", text), ("model", model)):
        if x is not None and bool((torch.isnan(x) | torch.isposinf(x)).any()):
            raise QueryError(f"the {name} scores contain NaN or +inf: nothing can be ranked")
    if model is None:
        return text.float()
    if model.shape != text.shape:
        raise ValueError(f"text scores {tuple(text.shape)} and model scores "
                         f"{tuple(model.shape)} differ in shape")
    masked = torch.isneginf(text) | torch.isneginf(model)  # (B, M)
    ok = ~masked
    w = float(config.weight)
    t = _normalise_rows(text.float().masked_fill(masked, 0.0), ok, config.normalise,
                        config.temperature)
    m = _normalise_rows(model.float().masked_fill(masked, 0.0), ok, config.normalise, 1.0)
    mixed = t.mul_(w).add_(m, alpha=1.0 - w)  # (B, M)
    return mixed.masked_fill_(masked, float("-inf"))


def blend_scores_reference(text: Sequence[Sequence[float]],
                           model: Sequence[Sequence[float]] | None,
                           config: QueryConfig = QueryConfig()) -> list[list[float]]:
    """:func:`blend_scores` with plain Python loops (the reference path)."""
    if model is None:
        return [[float(v) for v in row] for row in text]
    out = []
    for trow, mrow in zip(text, model):
        keep = [i for i, (a, b) in enumerate(zip(trow, mrow))
                if a != -math.inf and b != -math.inf]
        t = _normalise_list([trow[i] for i in keep], config.normalise, config.temperature)
        m = _normalise_list([mrow[i] for i in keep], config.normalise, 1.0)
        row = [-math.inf] * len(trow)
        for j, i in enumerate(keep):
            row[i] = config.weight * t[j] + (1 - config.weight) * m[j]
        out.append(row)
    return out


def _normalise_list(x: list[float], how: str, temperature: float) -> list[float]:
    if not x:
        return []
    if how == "zscore":
        mean = sum(x) / len(x)
        std = math.sqrt(sum((v - mean) ** 2 for v in x) / len(x))
        return [(v - mean) / std if std > 0 else 0.0 for v in x]
    y = [v / temperature for v in x]
    top = max(y)
    log_z = top + math.log(sum(math.exp(v - top) for v in y))
    return [v - log_z for v in y]


class TextIndex:
    """Item texts as unit vectors, searchable by a free-text query (sklearn style: ``fit``
    returns self, learned attributes end in ``_``).

    Args:
        encoder: the text encoder (queries and items are encoded by the same one).
        template: item text template (``liverec.text.item_text``) over the catalogue columns.
        cache: the on-disk vector cache for item texts (None = the default one); queries are
            not cached.

    Attributes:
        ids_: (N + 1,) item ids, row 0 the padding placeholder ``""``.
        vectors_: (N + 1, E) float32 unit item vectors, row 0 zero.
    """

    def __init__(self, encoder: TextEncoder, template: str = DEFAULT_TEMPLATE,
                 cache: VectorCache | None = None) -> None:
        self.encoder = encoder
        self.template = template
        self.cache = cache

    def fit(self, items: pl.DataFrame) -> TextIndex:
        """Encode the catalogue: row i of ``items`` becomes index i + 1.

        Args:
            items: rows with ``item`` (ids) and any of title, text, attributes.
        """
        if "item" not in items.columns:
            raise ValueError("items need an 'item' column (the item ids)")
        ids = [str(i) for i in items["item"].to_list()]
        if len(set(ids)) != len(ids):
            raise ValueError("items: repeated item ids")
        vecs = self._encode_items(items)  # (N, E)
        self.ids_ = ["", *ids]
        self.vectors_ = np.concatenate([np.zeros((1, vecs.shape[1]), np.float32), vecs])
        self._lookup = {i: row for row, i in enumerate(self.ids_) if row}
        return self

    def _encode_items(self, items: pl.DataFrame) -> np.ndarray:
        texts = item_text(items, self.template)
        vecs = encode_cached(self.encoder, texts, self.cache)  # (n, E)
        if vecs.ndim != 2 or len(vecs) != len(texts) or not np.isfinite(vecs).all():
            raise QueryError(f"the text encoder returned {vecs.shape} vectors for "
                             f"{len(texts)} items, or non-finite values")
        return normalise(vecs)

    def add(self, items: pl.DataFrame) -> np.ndarray:
        """Append new items (ids not yet indexed) at the end; returns their indices (k,)."""
        ids = [str(i) for i in items["item"].to_list()]
        clash = [i for i in ids if i in self._lookup]
        if clash or len(set(ids)) != len(ids):
            raise ValueError(f"items already indexed or repeated: {clash[:10] or 'repeats'}")
        start = len(self.ids_)
        self.vectors_ = np.concatenate([self.vectors_, self._encode_items(items)])
        self.ids_ += ids
        self._lookup.update({i: start + j for j, i in enumerate(ids)})
        return np.arange(start, start + len(ids), dtype=np.int64)

    @property
    def n_items(self) -> int:
        return len(self.ids_) - 1

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Unit vectors of checked queries. -> (B, E) float32."""
        texts = [check_query(q) for q in queries]
        vecs = np.asarray(self.encoder.encode(texts), dtype=np.float32)
        if vecs.shape != (len(texts), self.vectors_.shape[1]) or not np.isfinite(vecs).all():
            raise QueryError("the text encoder returned query vectors of the wrong shape or "
                             "with non-finite values")
        return normalise(vecs)

    def similarity(self, queries: Sequence[str]) -> torch.Tensor:
        """Cosine of each query to every item; padding column -inf. -> (B, N + 1) float32."""
        q = torch.from_numpy(self.encode_queries(queries))  # (B, E)
        out = q @ torch.from_numpy(self.vectors_).T  # (B, N + 1)
        out[:, 0] = float("-inf")
        return out

    def similarity_reference(self, queries: Sequence[str]) -> list[list[float]]:
        """:meth:`similarity` item by item (the reference path)."""
        out = []
        for q in self.encode_queries(queries):
            row = [-math.inf]
            for v in self.vectors_[1:]:
                row.append(float(sum(float(a) * float(b) for a, b in zip(q, v))))
            out.append(row)
        return out

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        """The k items whose text is most similar to ``query``: ``[(item_id, cosine), ...]``,
        best first (ties to the lower index)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        sims = self.similarity([query])[0].numpy()  # (N + 1,)
        order = np.argsort(-sims[1:], kind="stable")[:k] + 1
        return [(self.ids_[i], float(sims[i])) for i in order]
