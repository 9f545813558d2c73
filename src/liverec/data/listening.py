"""A repeat-heavy synthetic listening log: users replay what they played before.

Most next events in listening and check-in logs are repeats (the user already had the item);
this generator makes such a log with the two laws the repeat-consumption literature measures:

- **Replay by recency and frequency.** With probability ``p_u`` (the user's repeat propensity,
  Beta-distributed around ``repeat_share``; step 0 always explores) the user replays a past
  play: a lag ``l`` in 1..t is drawn with weight ``l ** -recency_decay`` and the item played
  ``l`` steps ago is played again. An item's replay probability is therefore the sum of a
  power-law recency kernel over all its past plays, so frequent *and* recent items come back
  most: the copying model of Anderson et al., "The dynamics of repeat consumption" (WWW 2014),
  and ACT-R's base-level activation used for music relistening by Reiter-Haas et al.,
  "Predicting Music Relistening Behavior Using the ACT-R Framework" (RecSys 2021).
- **Exploration by taste and habit.** Otherwise the user discovers an item not yet played:
  with probability ``habit_strength`` the next unplayed item in the genre's fixed chain after
  the last play ("similar artists": a sequential signal a sequence model can learn), else an
  unplayed item drawn from the user's 2-3 favourite genres, popular ones (Zipf within a
  genre) more likely. A draw that finds only played items after a few tries takes any
  unplayed item of the catalogue instead (so an exploration is always new while one is left).

With the defaults (``repeat_share=0.65``) about 65% of next events in the training split are
repeats (tests/data/test_listening.py measures it); ``data.synthetic.kind="listening"`` selects
this generator (``liverec train --data synthetic --set data.synthetic.kind=listening``).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from liverec.config import SyntheticConfig
from liverec.data.tables import Dataset, sort_interactions

GENRES = ["rock", "jazz", "hip hop", "electronic", "classical", "folk", "pop", "metal", "soul",
          "reggae", "blues", "country"]
WORDS_A = ["Midnight", "Golden", "Electric", "Silent", "Neon", "Velvet", "Broken", "Wild",
           "Paper", "Crystal", "Summer", "Hollow"]
WORDS_B = ["Echoes", "Rivers", "Lights", "Dreams", "Hearts", "Roads", "Skies", "Waves",
           "Fires", "Gardens", "Mirrors", "Engines"]
DECADES = ["1970s", "1980s", "1990s", "2000s", "2010s", "2020s"]
TRIES = 8  # redraws of an exploration step that found an item already played
CONCENTRATION = 4.0  # Beta(a, b) of the repeat propensity: a + b


def genre_names(n: int) -> list[str]:
    """``n`` genre names, cycling the base list with a suffix (``"rock 2"``) when needed."""
    return [GENRES[i % len(GENRES)] + (f" {i // len(GENRES) + 1}" if i >= len(GENRES) else "")
            for i in range(n)]


def _pick(values: list[str], index: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(values, dtype=object)[index], dtype=pl.Utf8)


def _tracks(cfg: SyntheticConfig, rng: np.random.Generator,
            ids: pl.Series) -> tuple[pl.DataFrame, np.ndarray]:
    """The catalogue (tracks with a genre, an artist and a decade) and each item's genre."""
    n = cfg.n_items
    genre = rng.permutation(np.arange(n) % cfg.n_categories)
    n_artists = max(1, n // 4)
    df = pl.DataFrame({
        "item": ids,
        "genre": _pick(genre_names(cfg.n_categories), genre),
        "a": _pick(WORDS_A, rng.integers(len(WORDS_A), size=n)),
        "b": _pick(WORDS_B, rng.integers(len(WORDS_B), size=n)),
        "artist": pl.Series([f"Artist {k + 1}" for k in rng.integers(n_artists, size=n)],
                            dtype=pl.Utf8),
        "decade": _pick(DECADES, rng.integers(len(DECADES), size=n)),
    })
    items = df.with_columns(title=pl.format("{} {}", "a", "b")).with_columns(
        text=pl.format("{} by {}: a {} track from the {}.", "title", "artist", "genre", "decade"),
        attributes=pl.concat_list(pl.lit("genre:") + pl.col("genre"),
                                  pl.lit("artist:") + pl.col("artist"),
                                  pl.lit("decade:") + pl.col("decade")))
    return items.select("item", "title", "text", "attributes"), genre


def _lags(t: int, decay: float, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` lags in 1..t drawn with weight ``lag ** -decay``. -> (n,) int64."""
    cdf = np.cumsum(np.arange(1, t + 1, dtype=np.float64) ** -decay)
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), t - 1) + 1


def _explore(cfg: SyntheticConfig, rng: np.random.Generator, rows: np.ndarray, last: np.ndarray,
             seen: np.ndarray, world: dict) -> np.ndarray:
    """One unplayed item for each user in ``rows`` (chain habit or taste x popularity)."""
    from liverec.data.synthetic import draw_fresh

    out = draw_fresh(rows, world, rng)
    habit = rng.random(len(rows)) < cfg.habit_strength
    out[habit] = world["next"][last[habit]]
    for _ in range(TRIES):  # habit: walk the chain on; taste: draw again
        again = seen[rows, out]
        if not again.any():
            break
        walk, redraw = again & habit, again & ~habit
        out[walk] = world["next"][out[walk]]
        out[redraw] = draw_fresh(rows[redraw], world, rng)
    for i in np.flatnonzero(seen[rows, out]):  # still played: any unplayed item, if one is left
        unplayed = np.flatnonzero(~seen[rows[i]])
        if len(unplayed):
            out[i] = rng.choice(unplayed)
    return out


def listening_sequences(cfg: SyntheticConfig, genre: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """``[n_users, max_len]`` item indices: replays by recency x frequency, else exploration."""
    from liverec.data.synthetic import taste_world

    world = taste_world(cfg, genre, rng)
    users = np.arange(cfg.n_users)
    mean = cfg.repeat_share
    propensity = (rng.beta(CONCENTRATION * mean, CONCENTRATION * (1.0 - mean), size=cfg.n_users)
                  if mean > 0 else np.zeros(cfg.n_users))
    seq = np.zeros((cfg.n_users, cfg.max_len), dtype=np.int64)
    seen = np.zeros((cfg.n_users, cfg.n_items), dtype=bool)
    for t in range(cfg.max_len):  # each step is vectorised over users
        replay = (rng.random(cfg.n_users) < propensity) if t else np.zeros(cfg.n_users, bool)
        if replay.any():
            rows = users[replay]
            seq[rows, t] = seq[rows, t - _lags(t, cfg.recency_decay, rng, len(rows))]
        rows = users[~replay]
        seq[rows, t] = _explore(cfg, rng, rows, seq[rows, t - 1] if t else seq[rows, 0],
                                seen, world)
        seen[users, seq[:, t]] = True
    return seq


def generate_listening(cfg: SyntheticConfig) -> Dataset:
    """Generate the listening log, deterministically from ``cfg.seed``.

    Args:
        cfg: sizes (``n_categories`` = genres), lengths, ``repeat_share``, ``recency_decay``,
            ``habit_strength`` (share of explorations that follow the genre chain) and seed.

    Returns:
        A dataset named ``synthetic-listening``; users ``U00001``..., items ``I0001``...;
        ``ts`` in unix seconds (minutes to hours apart).
    """
    from liverec.data.synthetic import START_TS, _ids

    rng = np.random.default_rng(cfg.seed)
    item_ids = _ids("I", cfg.n_items, pad=True)
    items, genre = _tracks(cfg, rng, item_ids)
    lengths = rng.integers(cfg.min_len, cfg.max_len + 1, size=cfg.n_users)
    seq = listening_sequences(cfg, genre, rng)
    offset = rng.integers(0, 30 * 86_400, size=cfg.n_users)
    gaps = rng.integers(120, 6 * 3600, size=(cfg.n_users, cfg.max_len))
    ts = START_TS + offset[:, None] + np.cumsum(gaps, axis=1)
    mask = np.arange(cfg.max_len)[None, :] < lengths[:, None]
    user_idx = np.repeat(np.arange(cfg.n_users), lengths)
    inter = pl.DataFrame({
        "user": _ids("U", cfg.n_users, pad=True).gather(user_idx),
        "item": item_ids.gather(seq[mask]),
        "ts": pl.Series(ts[mask], dtype=pl.Int64),
    })
    return Dataset("synthetic-listening", sort_interactions(inter), items)
