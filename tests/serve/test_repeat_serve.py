"""A served run in the repeat-aware mode answers /v1/recommend with its repeat-explore mixture
(``repeat.json``): the same lists and scores as ``liverec.load(run).recommend``, seen items
recommendable unless the request excludes them, on every path (batched, cached, naive,
stored users, queries), and after a hot swap to or from such a version."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import liverec
from liverec.model.repeat import FILE


@pytest.fixture(scope="module")
def served(repeat_run, tmp_path_factory):
    """(repeat-aware run, the same run without its mixture, histories of item ids): both
    with the hash text encoder (queries need no language model)."""
    run_dir, prepared = repeat_run
    root = tmp_path_factory.mktemp("repeat-serve")
    runs = []
    for name in ("repeat", "masked"):
        out = root / name
        shutil.copytree(run_dir, out)
        cfg = json.loads((out / "config.json").read_text())
        cfg["model"]["text_encoder"] = "hash:128"
        (out / "config.json").write_text(json.dumps(cfg))
        runs.append(out)
    (runs[1] / FILE).unlink()
    _, histories, _ = prepared.eval_cases("test")
    ids = prepared.vocab.ids
    return runs[0], runs[1], [[str(x) for x in ids[h]] for h in histories[:12]]


def _post(client, **body) -> dict:
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _same(body: dict, ref: list[tuple[str, float]]) -> None:
    assert [i["item_id"] for i in body["items"]] == [i for i, _ in ref]
    np.testing.assert_allclose([i["score"] for i in body["items"]], [s for _, s in ref],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("settings", [{}, {"batching": True, "batch_window_ms": 5},
                                      {"naive": True}, {"cache": False, "batching": False}])
def test_history_answers_are_the_mixtures(make_client, served, settings):
    run, _, histories = served
    rec = liverec.load(run)
    assert rec.repeat is not None
    client = make_client(run_dir=run, **settings)
    repeats = 0
    for hist in histories:
        body = _post(client, history=hist, k=10)
        _same(body, rec.recommend(hist, k=10))  # exclude_seen as the run's protocol
        repeats += len({i["item_id"] for i in body["items"]} & set(hist))
        _same(_post(client, history=hist, k=10, exclude_seen=True),
              rec.recommend(hist, k=10, exclude_seen=True))
    assert repeats > len(histories)  # seen items are recommended, as the mixture ranks them


def test_stored_users_get_the_mixture_cached_or_fresh(make_client, served):
    run, _, histories = served
    rec = liverec.load(run)
    client = make_client(run_dir=run, cache=True, batching=True)
    for u, hist in enumerate(histories[:4]):
        events = [{"user_id": f"u{u}", "item_id": i, "timestamp": 1e9 + t}
                  for t, i in enumerate(hist)]
        assert client.post("/v1/events", json=events).status_code == 200
        for _ in range(2):  # a miss, then the cached answer
            r = client.get("/v1/recommend", params={"user_id": f"u{u}", "k": 8})
            assert r.status_code == 200, r.text
            _same(r.json(), rec.recommend(hist, k=8))


def test_queries_blend_the_mixture(make_client, served, text_cache):
    run, _, histories = served
    rec = liverec.load(run)
    client = make_client(run_dir=run)
    for hist, query in zip(histories[:3], ("rock", "jazz Midnight", "Echoes")):
        _same(_post(client, history=hist, query=query, k=6), rec.recommend(hist, k=6, query=query))


def test_hot_swap_to_and_from_a_repeat_aware_version(make_client, served):
    run, masked, histories = served
    client = make_client(run_dir=masked)
    hist = histories[0]
    plain = liverec.load(masked)
    assert plain.repeat is None
    _same(_post(client, history=hist, k=10), plain.recommend(hist, k=10))
    for target, rec in ((run, liverec.load(run)), (masked, plain)):
        r = client.post("/admin/reload", json={"run_dir": str(target)})
        assert r.status_code == 200, r.text
        _same(_post(client, history=hist, k=10), rec.recommend(hist, k=10))
