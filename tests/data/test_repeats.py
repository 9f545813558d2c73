"""The repeat rate (fast path vs reference) and the data-adaptive protocol choice."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import polars as pl
import pytest

from liverec.config import DataConfig, EvalConfig, RunConfig, SyntheticConfig, apply_overrides
from liverec.data.prepare import prepare
from liverec.data.repeats import (
    choose_protocol,
    repeat_flags,
    repeat_rate,
    repeat_rate_reference,
    resolve_protocol,
)
from liverec.data.synthetic import generate
from liverec.data.tables import Dataset, empty_items
from liverec.errors import ConfigError

LISTENING = SyntheticConfig(kind="listening", n_users=300, n_items=90, n_categories=4,
                            min_len=5, max_len=40, seed=2)


def table(seqs: dict[str, list[str]]) -> Dataset:
    rows = [(u, i, t) for u, items in seqs.items() for t, i in enumerate(items)]
    df = pl.DataFrame({"user": [r[0] for r in rows], "item": [r[1] for r in rows],
                       "ts": pl.Series([r[2] for r in rows], dtype=pl.Int64)})
    return Dataset("t", df, empty_items(df["item"]))


def test_known_answer_counts():
    """u1: a b a c a | valid, test -> training part a b a (1 repeat of 2 next events);
    u2: x y z w -> training x y (0 of 1); u3: q q q -> training q (no next event)."""
    p = prepare(table({"u1": ["a", "b", "a", "c", "a"], "u2": ["x", "y", "z", "w"],
                       "u3": ["q", "q", "q"]}), DataConfig())
    assert repeat_rate(p.sequences, p.split.train_end) == {
        "rate": 1 / 3, "repeats": 1, "next_events": 3}
    full = repeat_rate(p.sequences, p.sequences.lengths)
    assert full["repeats"] == 2 + 0 + 2 and full["next_events"] == 4 + 3 + 2
    flags = repeat_flags(p.sequences, p.sequences.lengths)
    assert flags.tolist() == [False, False, True, False, True,  # u1 (users sort as u1, u2, u3)
                              False, False, False, False, False, True, True]


@pytest.mark.parametrize("cfg", [LISTENING, dataclasses.replace(LISTENING, kind="shop"),
                                 dataclasses.replace(LISTENING, repeat_share=0.2, seed=9)])
def test_fast_path_equals_reference(cfg):
    p = prepare(generate(cfg), DataConfig())
    for ends in (p.split.train_end, p.sequences.lengths, np.zeros(p.sequences.n_users)):
        assert repeat_rate(p.sequences, ends) == repeat_rate_reference(p.sequences, ends)


def test_no_next_events_give_zero():
    p = prepare(table({"u1": ["a", "a", "a", "a"], "u2": ["b", "b", "b"]}), DataConfig())
    for ends in ([0, 0], [1, 1]):  # nothing, or one event each: no next event
        assert repeat_rate(p.sequences, np.array(ends)) == {
            "rate": 0.0, "repeats": 0, "next_events": 0}
    assert repeat_rate(p.sequences, p.split.train_end)["rate"] == 1.0


def test_choice_rule_and_threshold():
    assert choose_protocol(0.0, 0.2) == "masked"
    assert choose_protocol(0.2, 0.2) == "repeat"
    assert choose_protocol(0.65, 0.2) == "repeat"
    with pytest.raises(ConfigError, match=r"eval.repeat_threshold must be in \(0, 1\]"):
        apply_overrides(RunConfig(), ["eval.repeat_threshold=0"])
    with pytest.raises(ConfigError, match="eval.protocol: 'unmasked' is not supported; valid "
                                          "values: auto, masked, repeat"):
        apply_overrides(RunConfig(), ["eval.protocol=unmasked"])


def test_auto_switches_on_a_repeat_heavy_log_and_stays_masked_on_the_shop(caplog):
    listening = prepare(generate(LISTENING), DataConfig())
    shop = prepare(generate(SyntheticConfig()), DataConfig())  # the demo's shop: 14.3%
    with caplog.at_level(logging.INFO, logger="liverec.data.repeats"):
        cfg, info = resolve_protocol(RunConfig(), listening)
    assert cfg.eval.protocol == "repeat" and info["chosen_by"] == "auto"
    assert info["rate"] > 0.6 and info["threshold"] == EvalConfig().repeat_threshold
    assert "protocol repeat (data-adaptive default" in caplog.text
    cfg, info = resolve_protocol(RunConfig(), shop)
    assert cfg.eval.protocol == "masked" and info["rate"] < EvalConfig().repeat_threshold
    # a protocol set in the config is kept, whatever the data
    forced = apply_overrides(RunConfig(), ["eval.protocol=masked"])
    cfg, info = resolve_protocol(forced, listening)
    assert cfg.eval.protocol == "masked" and info["chosen_by"] == "config"


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["beauty", "lastfm"])
def test_published_datasets_stay_masked(name):
    """Beauty and LastFM (S3-Rec files) have no repeats at all: the default stays masked."""
    from liverec.data.pipeline import load_and_prepare
    from liverec.data.registry import default_data_root

    if not (default_data_root(None) / ("Beauty" if name == "beauty" else "LastFM")).is_dir():
        pytest.skip("benchmark data not found")
    p = load_and_prepare(DataConfig(source=name))
    cfg, info = resolve_protocol(RunConfig(), p)
    assert cfg.eval.protocol == "masked" and info["rate"] == 0.0 and info["next_events"] > 40_000
