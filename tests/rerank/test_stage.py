"""The re-ranking stage: each rule's behaviour, fast == reference, errors, and its time budget."""

from __future__ import annotations

import gc
import time

import numpy as np
import pytest
from tests.rerank.helpers import random_catalogue

from liverec.errors import ConfigError, NonFiniteError
from liverec.rerank import (
    AttributeFilter,
    CalibrationConfig,
    Catalogue,
    ExposureConfig,
    GreedyReranker,
    HardRules,
    MMRConfig,
    ReferenceReranker,
    RerankConfig,
    build_reranker,
    categories_from_attributes,
)

CONFIGS = [
    RerankConfig(),
    RerankConfig(mmr=MMRConfig(0.5)),
    RerankConfig(calibration=CalibrationConfig(0.7)),
    RerankConfig(exposure=ExposureConfig(0.1, 0.25)),
    RerankConfig(exposure=ExposureConfig(penalty=0.6)),
    RerankConfig(rules=HardRules(max_per_category=2, category_caps=((0, 0), (3, 1)))),
    RerankConfig(rules=HardRules(deny=frozenset({"id-0001", "id-0005"}),
                                 attributes=(AttributeFilter(include=frozenset({"a1", "a2",
                                                                                "a3"})),
                                             AttributeFilter(exclude=frozenset({"a4"}))))),
    RerankConfig(rules=HardRules(max_per_category=3), mmr=MMRConfig(0.3),
                 calibration=CalibrationConfig(0.4), exposure=ExposureConfig(0.2, 0.3, 0.2)),
    RerankConfig(mmr=MMRConfig(0.6, "sum")),
    RerankConfig(mmr=MMRConfig(0.4, "sum"), relevance="probability", order="score"),
    RerankConfig(rules=HardRules(max_per_category=2), mmr=MMRConfig(0.3, "sum"),
                 calibration=CalibrationConfig(0.3), relevance="probability"),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_fast_path_equals_reference(cfg):
    cat = random_catalogue()
    fast, ref = GreedyReranker(cat, cfg), ReferenceReranker(cat, cfg)
    rng = np.random.default_rng(1)
    for _ in range(15):
        cands = rng.choice(np.arange(0, 301), 80, replace=False)
        scores = rng.normal(size=80)
        hist = rng.integers(1, 301, rng.integers(0, 12))
        a, b = fast.rerank(cands, scores, 10, hist), ref.rerank(cands, scores, 10, hist)
        assert a[0].tolist() == b[0].tolist()
        np.testing.assert_array_equal(a[1], b[1])


def test_sum_similarity_is_the_lists_ild_not_the_nearest_item():
    """After A and B are listed, C duplicates A (cosines 1, 0) and D leans on both (0.6, 0.6):
    MMR's max similarity prefers D (0.6 < 1), the list's mean similarity prefers C (1 < 1.2)."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0.6, 0.6, np.sqrt(0.28)]])
    cat = Catalogue.build(["pad", "A", "B", "C", "D"], v)
    scores = np.array([3.0, 2.9, 1.0, 1.0])
    for kind, third in (("max", 4), ("sum", 3)):
        cfg = RerankConfig(mmr=MMRConfig(0.5, kind))
        for rr in (GreedyReranker(cat, cfg), ReferenceReranker(cat, cfg)):
            assert rr.rerank(np.arange(1, 5), scores, 3)[0].tolist() == [1, 2, third]


def test_score_order_lists_the_same_items_by_score():
    cat = random_catalogue(flag_share=0.0)
    rng = np.random.default_rng(3)
    cands, scores = rng.choice(np.arange(1, 301), 100, replace=False), rng.normal(size=100)
    greedy = RerankConfig(mmr=MMRConfig(0.7, "sum"), relevance="probability")
    a, va = GreedyReranker(cat, greedy).rerank(cands, scores, 20)
    b, vb = GreedyReranker(cat, greedy.override(order="score")).rerank(cands, scores, 20)
    assert sorted(a.tolist()) == sorted(b.tolist()) and a.tolist() != b.tolist()
    assert (np.diff(vb) <= 0).all() and not (np.diff(va) <= 0).all()


def test_probability_relevance_is_the_softmax_over_candidates():
    from liverec.rerank.stage import relevance

    vals = np.array([2.0, 1.0, -1.0])
    p = relevance(vals, "probability")
    np.testing.assert_allclose(p, np.exp(vals) / np.exp(vals).sum())
    assert relevance(np.array([1e4, 0.0]), "probability").tolist() == [1.0, 0.0]  # no overflow
    with pytest.raises(ConfigError, match="relevance"):
        RerankConfig(relevance="softmax")
    with pytest.raises(ConfigError, match="similarity"):
        MMRConfig(0.3, "mean")


def test_no_rules_is_the_score_order():
    cat = random_catalogue(flag_share=0.0)
    scores = np.arange(50, dtype=float)
    items, vals = GreedyReranker(cat).rerank(np.arange(1, 51), scores, 5)
    assert items.tolist() == [50, 49, 48, 47, 46]
    assert vals.tolist() == [49.0, 48.0, 47.0, 46.0, 45.0]


def test_ties_go_to_the_lower_index_and_duplicates_keep_the_best_copy():
    cat = random_catalogue(flag_share=0.0)
    items, vals = GreedyReranker(cat).rerank([9, 3, 7, 3], [1.0, 1.0, 1.0, 5.0], 3)
    assert items.tolist() == [3, 7, 9]
    assert vals.tolist() == [5.0, 1.0, 1.0]


def _tiny() -> Catalogue:
    # items 1, 2 identical direction, 3 orthogonal; categories 0, 0, 1; item 1 most popular
    vec = np.array([[0, 0], [1, 0], [1, 0.01], [0, 1]], dtype=float)
    return Catalogue.build(["pad", "x", "y", "z"], vec, categories=np.array([-1, 0, 0, 1]),
                           popularity=np.array([0, 100, 10, 1], dtype=float))


def test_mmr_moves_a_near_duplicate_down():
    cat = _tiny()
    scores = [1.0, 0.9, 0.5]
    plain = GreedyReranker(cat).rerank([1, 2, 3], scores, 3)[0]
    mmr = GreedyReranker(cat, RerankConfig(mmr=MMRConfig(0.6))).rerank([1, 2, 3], scores, 3)[0]
    assert plain.tolist() == [1, 2, 3]
    assert mmr.tolist() == [1, 3, 2]


def test_calibration_follows_the_history_mix():
    cat = _tiny()
    cfg = RerankConfig(calibration=CalibrationConfig(0.9))
    # history half category 0, half category 1: the second slot goes to category 1
    got = GreedyReranker(cat, cfg).rerank([1, 2, 3], [1.0, 0.9, 0.5], 2, history=[1, 3])[0]
    assert got.tolist() == [1, 3]
    # no history: calibration has nothing to follow and is off
    assert GreedyReranker(cat, cfg).rerank([1, 2, 3], [1.0, 0.9, 0.5], 2)[0].tolist() == [1, 2]


def test_exposure_caps_head_items():
    cat = _tiny()  # head_fraction 1/3 -> item 1 alone is head
    cfg = RerankConfig(exposure=ExposureConfig(head_fraction=1 / 3, max_head_share=0.0))
    assert GreedyReranker(cat, cfg).rerank([1, 2, 3], [1.0, 0.9, 0.5], 3)[0].tolist() == [2, 3]


def test_exposure_penalty_lifts_unpopular_items():
    cat = _tiny()  # popularity 100, 10, 1
    # rel 1, 0.5, 0; pop~ 1, 0.52, 0.15: gains -0.6, -0.32, -0.12
    cfg = RerankConfig(exposure=ExposureConfig(penalty=0.8))
    assert GreedyReranker(cat, cfg).rerank([1, 2, 3], [1.0, 0.95, 0.9], 3)[0].tolist() == [3, 2, 1]


def test_hard_rules_allow_deny_attributes_flags():
    cat = Catalogue.build(["pad", "a", "b", "c", "d"], np.eye(5)[:, :4],
                          flagged=np.array([0, 0, 0, 0, 1], bool),
                          attributes=[[], ["red"], ["blue"], ["red", "adult"], ["red"]])
    rr = GreedyReranker(cat)
    allc, sc = [1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0]
    assert rr.rerank(allc, sc, 4)[0].tolist() == [1, 2, 3]  # d is flagged
    deny = RerankConfig(rules=HardRules(deny=frozenset({"a", "unknown"})))
    assert rr.rerank(allc, sc, 4, config=deny)[0].tolist() == [2, 3]
    allow = RerankConfig(rules=HardRules(allow=frozenset({"c", "d"})))
    assert rr.rerank(allc, sc, 4, config=allow)[0].tolist() == [3]
    red_not_adult = RerankConfig(rules=HardRules(attributes=(
        AttributeFilter(include=frozenset({"red"}), exclude=frozenset({"adult"})),)))
    assert rr.rerank(allc, sc, 4, config=red_not_adult)[0].tolist() == [1]


def test_masked_scores_dropped_and_broken_scores_rejected():
    cat = random_catalogue(flag_share=0.0)
    rr = GreedyReranker(cat)
    assert rr.rerank([1, 2, 0], [1.0, -np.inf, 5.0], 5)[0].tolist() == [1]
    for bad in (np.nan, np.inf):
        with pytest.raises(NonFiniteError):
            rr.rerank([1, 2], [1.0, bad], 5)
    with pytest.raises(ValueError):
        rr.rerank([1, 999], [1.0, 2.0], 5)
    assert rr.rerank([], [], 5)[0].tolist() == []
    assert rr.rerank([1, 2], [1.0, 2.0], 0)[0].tolist() == []


@pytest.mark.parametrize("make", [
    lambda: MMRConfig(1.5), lambda: MMRConfig(float("nan")), lambda: CalibrationConfig(alpha=0),
    lambda: ExposureConfig(max_head_share=-0.1), lambda: HardRules(max_per_category=0),
    lambda: HardRules(deny="abc"), lambda: HardRules(allow=[1, 2]),
    lambda: RerankConfig(n_candidates=0),
    lambda: RerankConfig(mmr=MMRConfig(0.6), calibration=CalibrationConfig(0.6)),
    lambda: RerankConfig(mmr=MMRConfig(0.6), exposure=ExposureConfig(penalty=0.6)),
    lambda: RerankConfig().override(bogus=1), lambda: build_reranker(_tiny(), kind="nope"),
])
def test_bad_settings_are_one_clear_error(make):
    with pytest.raises(ConfigError):
        make()


def test_override_and_describe():
    cfg = RerankConfig(mmr=MMRConfig(0.3), rules=HardRules(deny=frozenset({"b", "a"})))
    off = cfg.override(mmr=None)
    assert off.mmr is None and cfg.mmr is not None
    d = cfg.describe()
    assert d["mmr"] == {"lam": 0.3, "similarity": "max"} and d["rules"]["deny"] == ["a", "b"]
    assert d["relevance"] == "minmax" and d["order"] == "greedy"


def test_categories_from_attributes_takes_the_most_common():
    codes = categories_from_attributes([["b", "x"], ["b", "y"], ["y"], [], ["z"]])
    # b (2) and y (2) tie on count -> b; item 2 -> y; z its own; empty -> -1
    assert codes.tolist() == [0, 0, 1, -1, 2]


def test_catalogue_rejects_misaligned_or_broken_facts():
    with pytest.raises(ConfigError):
        Catalogue.build(["p", "a"], np.zeros((3, 2)))
    with pytest.raises(NonFiniteError):
        Catalogue.build(["p", "a"], np.array([[0.0], [np.nan]]))


def test_whole_stage_p99_within_budget():
    """k=20 from 200 candidates with every rule on. The budget is 1 ms; the bounds here are
    generous because CI cores are shared (the thread's CPU time is immune to being preempted,
    wall-clock is not); benchmarks/rerank_tradeoff.py reports the real figures."""
    cat = random_catalogue(n=2000, d=64, n_cats=30)
    cfg = RerankConfig(rules=HardRules(deny=frozenset({"id-0001"}), max_per_category=4,
                                       attributes=(AttributeFilter(exclude=frozenset({"a1"})),)),
                       mmr=MMRConfig(0.3), calibration=CalibrationConfig(0.3),
                       exposure=ExposureConfig(0.2, 0.5, 0.1))
    rr = GreedyReranker(cat, cfg)
    rng = np.random.default_rng(0)
    wall, cpu = [], []
    # a collection of the whole test session's heap (tens of ms late in a full run) would be
    # charged to whichever call it lands in: it is the process's cost, not the stage's
    gc.collect()
    gc.disable()
    try:
        for _ in range(300):
            cands = rng.choice(np.arange(1, 2001), 200, replace=False)
            scores, hist = rng.normal(size=200), rng.integers(1, 2001, 20)
            t, c = time.perf_counter(), time.thread_time()
            items, _ = rr.rerank(cands, scores, 20, hist)
            wall.append(time.perf_counter() - t)
            cpu.append(time.thread_time() - c)
            assert len(items) == 20
    finally:
        gc.enable()
    assert np.percentile(cpu, 99) < 0.005
    assert np.percentile(wall, 99) < 0.05
