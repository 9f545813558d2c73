"""The Python API hook: Recommender.recommend(..., rerank=...) on a trained tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import liverec
from liverec.rerank import (
    Catalogue,
    GreedyReranker,
    HardRules,
    MMRConfig,
    RerankConfig,
    catalogue_for,
)


@pytest.fixture(scope="module")
def rec(trained_run):
    return liverec.load(trained_run[0])


@pytest.fixture(scope="module")
def catalogue(rec) -> Catalogue:
    return catalogue_for(rec)


def test_catalogue_for_aligns_with_the_vocabulary(rec, catalogue):
    assert catalogue.n_items == rec.vocab.n_items
    assert list(catalogue.ids[1:]) == list(rec.vocab.ids[1:])
    assert catalogue.vectors.shape == (rec.vocab.n_items + 1, rec.model.cfg.d_model)
    assert not catalogue.flagged.any()


def test_no_rules_keeps_the_model_order(rec, catalogue):
    hist = ["3", "4", "5"]
    plain = rec.recommend(hist, k=10)
    ranked = rec.recommend(hist, k=10, rerank=GreedyReranker(catalogue))
    assert [i for i, _ in ranked] == [i for i, _ in plain]
    batch = rec.recommend_batch([hist, ["7"]], k=5, rerank=GreedyReranker(catalogue))
    assert [i for i, _ in batch[0]] == [i for i, _ in ranked[:5]]
    assert [i for i, _ in batch[1]] == [i for i, _ in rec.recommend(["7"], k=5)]


def test_known_answer_survives_and_deny_removes_it(rec, catalogue):
    hist = ["3", "4", "5"]
    assert rec.recommend(hist, k=1)[0][0] == "6"  # cyclic: next is last + 1
    deny = GreedyReranker(catalogue, RerankConfig(rules=HardRules(deny=frozenset({"6"}))))
    got = [i for i, _ in rec.recommend(hist, k=10, rerank=deny)]
    assert "6" not in got and len(got) == 10


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(flag=st.sets(st.integers(1, 50), max_size=20), deny=st.sets(st.integers(0, 49), max_size=10),
       start=st.integers(0, 49), k=st.integers(1, 60), lam=st.sampled_from([0.0, 0.5]))
def test_flagged_or_denied_never_recommended(rec, catalogue, flag, deny, start, k, lam):
    flags = np.zeros(catalogue.n_items + 1, dtype=bool)
    flags[sorted(flag)] = True
    cat = Catalogue.build(list(catalogue.ids), catalogue.vectors, categories=catalogue.categories,
                          flagged=flags, popularity=catalogue.popularity)
    cfg = RerankConfig(rules=HardRules(deny=frozenset(map(str, deny))),
                       mmr=MMRConfig(lam) if lam else None)
    hist = [str((start + j) % 50) for j in range(4)]
    got = [i for i, _ in rec.recommend(hist, k=k, rerank=GreedyReranker(cat, cfg))]
    banned = {str(cat.ids[i]) for i in flag} | {str(d) for d in deny}
    assert not banned & set(got)
    assert len(got) == len(set(got)) <= k
    assert not set(hist) & set(got)  # seen items stay masked
    # every admissible unseen item is listed when k allows
    assert len(got) == min(k, 50 - len(banned | set(hist)))
