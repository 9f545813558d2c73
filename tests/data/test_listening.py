"""The repeat-heavy listening log: schema, determinism, its repeat share and the laws behind it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from liverec.config import DataConfig, RunConfig, SyntheticConfig, apply_overrides
from liverec.data.prepare import prepare
from liverec.data.registry import load_dataset
from liverec.data.repeats import repeat_rate
from liverec.data.synthetic import generate
from liverec.data.tables import INTERACTION_SCHEMA, ITEM_SCHEMA
from liverec.errors import ConfigError

SMALL = SyntheticConfig(kind="listening", n_users=600, n_items=150, n_categories=6, min_len=20,
                        max_len=60, seed=5)


@pytest.fixture(scope="module")
def log():
    return generate(SMALL)


@pytest.fixture(scope="module")
def seqs(log):
    df = log.interactions
    return [g["item"].to_list() for _, g in df.group_by("user", maintain_order=True)]


def test_schema_ids_catalogue_and_lengths(log):
    assert log.name == "synthetic-listening"
    assert dict(log.interactions.schema) == INTERACTION_SCHEMA
    assert dict(log.items.schema) == ITEM_SCHEMA
    assert log.items.height == 150 and log.n_users == 600
    assert set(log.interactions["item"]) <= set(log.items["item"])
    lengths = log.interactions.group_by("user").len()["len"]
    assert lengths.min() >= 20 and lengths.max() <= 60
    row = log.items.row(0, named=True)
    assert [a.split(":")[0] for a in row["attributes"]] == ["genre", "artist", "decade"]
    assert row["text"].startswith(row["title"])


def test_deterministic_by_seed(log):
    assert generate(SMALL).interactions.equals(log.interactions)
    assert not generate(replace(SMALL, seed=6)).interactions.equals(log.interactions)


def test_most_next_events_are_repeats_on_the_training_split(log):
    """The brief's realistic range: 60-70% of next events replay an item already played."""
    prepared = prepare(log, DataConfig())
    rate = repeat_rate(prepared.sequences, prepared.split.train_end)["rate"]
    assert 0.60 <= rate <= 0.70
    _, hist, targets = prepared.eval_cases("test")
    test_share = np.mean([t in set(h.tolist()) for h, t in zip(hist, targets)])
    assert 0.55 <= test_share <= 0.75


def test_repeat_share_sets_the_rate():
    low = prepare(generate(replace(SMALL, repeat_share=0.1)), DataConfig())
    rate = repeat_rate(low.sequences, low.split.train_end)["rate"]
    assert 0.05 <= rate <= 0.2


def test_replays_follow_recency_and_frequency(seqs):
    """A replay copies a recent play more often than an old one (power-law recency), and the
    items a user played most are the ones replayed most (frequency)."""
    lag_one = lag_far = 0
    top_share = []
    for s in seqs:
        for t in range(20, len(s)):
            if s[t] in s[:t]:
                lag = s[:t][::-1].index(s[t]) + 1  # plays since its last play
                lag_one += lag == 1
                lag_far += 8 <= lag < 16
        counts = {x: s[:len(s) // 2].count(x) for x in set(s[:len(s) // 2])}
        fav = max(counts, key=counts.get)
        later = s[len(s) // 2:]
        top_share.append(later.count(fav) / len(later))
    assert lag_one > 4 * lag_far / 8  # per lag, the last play comes back most
    distinct = np.mean([len(set(s)) for s in seqs])
    assert np.mean(top_share) > 3.0 / distinct  # the favourite comes back far above chance


def test_without_replays_every_play_is_new():
    """repeat_share=0: every step explores, and an exploration picks an unplayed item (a draw
    that finds only played items after several tries is the rare exception)."""
    prepared = prepare(generate(replace(SMALL, repeat_share=0.0)), DataConfig())
    assert repeat_rate(prepared.sequences, prepared.split.train_end)["rate"] < 0.01


def test_usable_as_a_data_source_from_the_config():
    cfg = apply_overrides(RunConfig(), ["data.source=synthetic", "data.synthetic.kind=listening",
                                        "data.synthetic.n_users=50", "data.synthetic.min_len=10"])
    ds = load_dataset(cfg.data)
    assert ds.name == "synthetic-listening" and ds.n_users == 50


@pytest.mark.parametrize("override, message", [
    ("data.synthetic.kind=radio", "data.synthetic.kind: 'radio' is not supported"),
    ("data.synthetic.repeat_share=1.0", r"data.synthetic.repeat_share must be in \[0, 1\)"),
    ("data.synthetic.recency_decay=-1", "data.synthetic.recency_decay must be >= 0"),
])
def test_bad_settings_fail_when_read(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(RunConfig(), [override])
    with pytest.raises(ConfigError, match="known_answer is for kind=shop only"):
        SyntheticConfig(kind="listening", known_answer=True)
