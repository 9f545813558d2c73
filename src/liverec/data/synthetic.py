"""A synthetic beauty shop: attribute-rich items and users with tastes and sequential habits.

Each item has a category, brand, colour and price band. Each user likes 2-3 categories
(Dirichlet weights); with probability ``habit_strength`` the next item is the next one in the
current category's fixed chain, otherwise a fresh item drawn from the user's taste, popular items
(Zipf-like within a category) more likely. With ``known_answer`` every sequence is cyclic
(next item = last + 1 mod n_items), so a model can be checked against a known answer.
``kind="listening"`` generates a repeat-heavy listening log instead (data/listening.py).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from liverec.config import SyntheticConfig
from liverec.data.tables import Dataset, sort_interactions
from liverec.errors import ConfigError

CATEGORIES: dict[str, list[str]] = {
    "skincare": ["Night Cream", "Serum", "Cleanser", "Toner", "Day Moisturiser"],
    "haircare": ["Shampoo", "Conditioner", "Hair Mask", "Hair Oil"],
    "fragrance": ["Eau de Parfum", "Eau de Toilette", "Body Mist"],
    "makeup": ["Foundation", "Concealer", "Blush", "Highlighter"],
    "nails": ["Nail Lacquer", "Top Coat", "Cuticle Oil"],
    "bath": ["Bath Salts", "Shower Gel", "Bubble Bath"],
    "tools": ["Brush Set", "Blending Sponge", "Eyelash Curler"],
    "men": ["Beard Oil", "Aftershave Balm", "Shaving Foam"],
    "sun care": ["Sunscreen SPF 50", "After-Sun Gel", "Tanning Lotion"],
    "lips": ["Lipstick", "Lip Gloss", "Lip Balm"],
    "eyes": ["Mascara", "Eyeliner", "Eyeshadow Palette"],
    "body": ["Body Lotion", "Body Scrub", "Hand Cream"],
}
BRANDS = [
    "Lumière", "Verdant", "Aurelle", "Nordbloom", "Kaiyo", "Maison Clé", "Solenne", "Petalwork"
]  # fmt: skip
ADJECTIVES = ["Hydrating", "Radiant", "Gentle", "Intense", "Velvet", "Nourishing", "Soothing"]
COLORS = ["rose", "nude", "coral", "ivory", "plum", "amber", "clear", "noir"]
SIZES = ["15 ml", "30 ml", "50 ml", "100 ml", "200 ml"]
PRICES = ["budget", "mid", "premium", "luxury"]
START_TS = 1_700_000_000


def category_names(n: int) -> list[str]:
    """``n`` category names, cycling the base list with a suffix (``"skincare 2"``) when needed."""
    base = list(CATEGORIES)
    suffix = [f" {i // len(base) + 1}" if i >= len(base) else "" for i in range(n)]
    return [base[i % len(base)] + suffix[i] for i in range(n)]


def _check(cfg: SyntheticConfig) -> None:
    if min(cfg.n_users, cfg.n_items, cfg.n_categories) < 1:
        raise ConfigError("data.synthetic: n_users, n_items and n_categories must be >= 1")
    if not 1 <= cfg.min_len <= cfg.max_len:
        raise ConfigError(
            f"data.synthetic: need 1 <= min_len <= max_len, got {cfg.min_len}, {cfg.max_len}"
        )
    if not 0.0 <= cfg.habit_strength <= 1.0:
        raise ConfigError(
            f"data.synthetic.habit_strength must be in [0, 1], got {cfg.habit_strength}"
        )


def _pick(values: list[str], index: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(values, dtype=object)[index], dtype=pl.Utf8)


def _nouns(cat: np.ndarray, rng: np.random.Generator) -> pl.Series:
    """A product noun for each item, from its (base) category's list."""
    lists = list(CATEGORIES.values())
    flat = [noun for nouns in lists for noun in nouns]
    lens = np.array([len(nouns) for nouns in lists])
    offsets = np.concatenate([[0], np.cumsum(lens)[:-1]])
    base = cat % len(lists)
    k = rng.integers(1 << 30, size=len(cat)) % lens[base]
    return _pick(flat, offsets[base] + k)


def _items(
    cfg: SyntheticConfig, rng: np.random.Generator, ids: pl.Series
) -> tuple[pl.DataFrame, np.ndarray]:
    """The catalogue and each item's category index (every category non-empty when possible)."""
    n = cfg.n_items
    cat = rng.permutation(np.arange(n) % cfg.n_categories)
    df = pl.DataFrame(
        {
            "item": ids,
            "category": _pick(category_names(cfg.n_categories), cat),
            "noun": _nouns(cat, rng),
            "brand": _pick(BRANDS, rng.integers(len(BRANDS), size=n)),
            "adj": _pick(ADJECTIVES, rng.integers(len(ADJECTIVES), size=n)),
            "color": _pick(COLORS, rng.integers(len(COLORS), size=n)),
            "size": _pick(SIZES, rng.integers(len(SIZES), size=n)),
            "price": _pick(PRICES, rng.integers(len(PRICES), size=n)),
        }
    )
    title = pl.format("{} {} {} — {}, {}", "brand", "adj", "noun", "color", "size")
    text = pl.format(
        "{}. A {}-priced {} product by {} in {}.", "title", "price", "category", "brand", "color"
    )
    attributes = pl.concat_list(
        pl.lit("category:") + pl.col("category"),
        pl.lit("brand:") + pl.col("brand"),
        pl.lit("color:") + pl.col("color"),
        pl.lit("price:") + pl.col("price"),
    )
    items = df.with_columns(title=title).with_columns(text=text, attributes=attributes)
    return items.select("item", "title", "text", "attributes"), cat


def _group_bounds(sorted_cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each position of a sorted array: the start and end of its run of equal values."""
    return (
        np.searchsorted(sorted_cat, sorted_cat, side="left"),
        np.searchsorted(sorted_cat, sorted_cat, side="right"),
    )


def _chains(cat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``next[i]``: the item after ``i`` in its category's fixed random (cyclic) chain."""
    n = len(cat)
    order = np.lexsort((rng.random(n), cat))
    starts, ends = _group_bounds(cat[order])
    pos = np.arange(n)
    nxt = np.empty(n, dtype=np.int64)
    nxt[order] = order[np.where(pos + 1 < ends, pos + 1, starts)]
    return nxt


def _popularity(cat: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Items ordered by category, and a CDF where category ``c`` spans ``(c, c + 1]``.

    Within a category the item of popularity rank ``r`` has weight ``1 / (r + 1)`` (Zipf).
    """
    n = len(cat)
    order = np.lexsort((rng.random(n), cat))
    sorted_cat = cat[order]
    starts, ends = _group_bounds(sorted_cat)
    cs = np.cumsum(1.0 / (np.arange(n) - starts + 1))
    within = cs - np.where(starts > 0, cs[starts - 1], 0.0)
    return order, sorted_cat + within / within[ends - 1]


def _tastes(cfg: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each user's 2-3 favourite categories and the cumulative Dirichlet weights over them."""
    n_eff = min(cfg.n_categories, cfg.n_items)
    k = min(3, n_eff)
    fav = np.argsort(rng.random((cfg.n_users, n_eff)), axis=1)[:, :k]
    weights = rng.dirichlet(np.ones(k), size=cfg.n_users)
    if k == 3:
        weights[rng.random(cfg.n_users) < 0.5, 2] = 0.0
        weights /= weights.sum(axis=1, keepdims=True)
    return fav, np.cumsum(weights, axis=1)


def taste_world(cfg: SyntheticConfig, cat: np.ndarray, rng: np.random.Generator) -> dict:
    """What users draw from: each item's chain successor ``next``, the popularity ``order`` and
    ``cdf`` (:func:`_popularity`), and each user's favourite categories ``fav`` with their
    cumulative weights ``cum_w`` (:func:`_tastes`)."""
    nxt = _chains(cat, rng)
    order, cdf = _popularity(cat, rng)
    fav, cum_w = _tastes(cfg, rng)
    return {"next": nxt, "order": order, "cdf": cdf, "fav": fav, "cum_w": cum_w}


def draw_fresh(rows: np.ndarray, world: dict, rng: np.random.Generator) -> np.ndarray:
    """One item per user in ``rows``: a favourite category by taste, then an item of it by
    (Zipf) popularity. -> (len(rows),) int64."""
    fav, cum_w = world["fav"][rows], world["cum_w"][rows]
    which = np.minimum((rng.random(len(rows))[:, None] > cum_w).sum(axis=1), fav.shape[1] - 1)
    c = fav[np.arange(len(rows)), which]
    u = np.minimum(rng.random(len(rows)), 1.0 - 1e-9)
    return world["order"][np.searchsorted(world["cdf"], c + u, side="right")]


def _habit_sequences(cfg: SyntheticConfig, cat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[n_users, max_len]`` item indices following tastes and category-chain habits."""
    world = taste_world(cfg, cat, rng)
    nxt = world["next"]
    users = np.arange(cfg.n_users)
    seq = np.empty((cfg.n_users, cfg.max_len), dtype=np.int64)
    for t in range(cfg.max_len):  # loop over positions; each step is vectorised over users
        fresh = draw_fresh(users, world, rng)
        if t == 0:
            seq[:, 0] = fresh
        else:
            habit = rng.random(cfg.n_users) < cfg.habit_strength
            seq[:, t] = np.where(habit, nxt[seq[:, t - 1]], fresh)
    return seq


def _ids(prefix: str, n: int, pad: bool) -> pl.Series:
    """``prefix`` + 1-based zero-padded numbers, or plain ``"0".."n-1"`` when not padded."""
    if not pad:
        return pl.int_range(n, eager=True).cast(pl.Utf8)
    width = len(str(n)) + 1
    return prefix + pl.int_range(1, n + 1, eager=True).cast(pl.Utf8).str.zfill(width)


def generate(cfg: SyntheticConfig) -> Dataset:
    """Generate the synthetic shop, deterministically from ``cfg.seed``.

    Args:
        cfg: Sizes, sequence lengths, habit strength, seed, the known-answer switch and the
            kind (``"listening"``: :func:`liverec.data.listening.generate_listening`).

    Returns:
        A dataset named ``synthetic`` (or ``synthetic-known-answer``,
        ``synthetic-listening``). Users are ``U00001``..., items ``I0001``...
        (``"0".."n_items-1"`` with ``known_answer``); ``ts`` is unix seconds.

    Raises:
        ConfigError: For sizes < 1, ``min_len > max_len`` or a habit strength outside [0, 1].
    """
    _check(cfg)
    if cfg.kind == "listening":
        from liverec.data.listening import generate_listening

        return generate_listening(cfg)
    rng = np.random.default_rng(cfg.seed)
    item_ids = _ids("I", cfg.n_items, pad=not cfg.known_answer)
    items, cat = _items(cfg, rng, item_ids)
    lengths = rng.integers(cfg.min_len, cfg.max_len + 1, size=cfg.n_users)
    if cfg.known_answer:
        start = rng.integers(cfg.n_items, size=cfg.n_users)
        seq = (start[:, None] + np.arange(cfg.max_len)[None, :]) % cfg.n_items
    else:
        seq = _habit_sequences(cfg, cat, rng)
    offset = rng.integers(0, 30 * 86_400, size=cfg.n_users)
    gaps = rng.integers(60, 3 * 86_400, size=(cfg.n_users, cfg.max_len))
    ts = START_TS + offset[:, None] + np.cumsum(gaps, axis=1)
    mask = np.arange(cfg.max_len)[None, :] < lengths[:, None]
    user_idx = np.repeat(np.arange(cfg.n_users), lengths)
    inter = pl.DataFrame(
        {
            "user": _ids("U", cfg.n_users, pad=True).gather(user_idx),
            "item": item_ids.gather(seq[mask]),
            "ts": pl.Series(ts[mask], dtype=pl.Int64),
        }
    )
    name = "synthetic-known-answer" if cfg.known_answer else "synthetic"
    return Dataset(name, sort_interactions(inter), items)
