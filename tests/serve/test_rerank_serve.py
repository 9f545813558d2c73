"""Re-ranking in the service: the deployment's file, per-request overrides, the rules an answer
says it applied, item flags (catalogue columns and PATCH), hidden items in every route."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

import liverec
from liverec.errors import ConfigError
from liverec.rerank import GreedyReranker, HardRules, MMRConfig, RerankConfig, catalogue_for
from liverec.rerank.catalogue import categories_from_attributes
from liverec.serve.rerank import category_codes
from liverec.serve.rerank_config import load_rerank_file
from liverec.serve.server import serve

N = 40  # items "0".."39", next = last + 1 (the serve_run fixture)


def categories(i: int) -> str:
    return f"category:c{i % 4}"


@pytest.fixture(scope="module")
def rerank_run(serve_run, tmp_path_factory):
    """serve_run with categories (``category:c{i % 4}``) and flag columns: item 3 unsafe
    (column ``unsafe``), item 7 unavailable (column ``available`` false)."""
    out = tmp_path_factory.mktemp("rerank") / "tiny-flags"
    shutil.copytree(serve_run, out)
    items = pl.read_parquet(out / "items.parquet")
    ids = items["item"].to_list()
    items = items.with_columns(
        pl.Series("attributes", [[categories(int(i)), f"family:f{int(i) // 5}"] for i in ids]),
        pl.Series("unsafe", [i == "3" for i in ids]),
        pl.Series("available", [None if i != "7" else False for i in ids], dtype=pl.Boolean))
    items.write_parquet(out / "items.parquet")
    return out


def write(tmp_path, name: str, content) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def ids(answer) -> list[str]:
    return [i["item_id"] for i in answer["items"]]


# ---- the deployment's file ------------------------------------------------------------------


def test_file_in_toml_and_json_is_read_and_checked(tmp_path):
    toml = write(tmp_path, "r.toml", 'candidates = 50\nlocked = ["allow"]\n[rules]\n'
                 'deny = ["5"]\nmax_per_category = 2\n[mmr]\nlambda = 0.3\n')
    cfg = load_rerank_file(toml)
    assert cfg.candidates == 50 and cfg.rules.deny == ["5"] and cfg.mmr.lam == 0.3
    assert cfg.configured() == {"flags", "deny", "category_caps", "mmr"}
    same = load_rerank_file(write(tmp_path, "r.json", {
        "candidates": 50, "locked": ["allow"], "rules": {"deny": ["5"], "max_per_category": 2},
        "mmr": {"lambda": 0.3}}))
    assert same == cfg


@pytest.mark.parametrize("name,content,message", [
    ("a.toml", "[mmr]\nlambda = 1.5\n", r"mmr\.lambda: Input should be less than or equal to 1"),
    ("b.toml", "[rules]\ndenny = [1]\n", r"rules\.denny: Extra inputs are not permitted"),
    ("c.toml", "[rules]\ndeny = [5]\n", r"rules\.deny\.0: Input should be a valid string"),
    ("d.toml", "[mmr]\nlambda = 0.6\n[calibration]\nlambda = 0.6\n", r"must be <= 1, got 1\.2"),
    ("e.toml", 'locked = ["deny"]\n', r"locked\.0: Input should be 'allow'"),
    ("f.toml", "candidates = [", "not valid TOML"),
    ("g.yaml", "candidates: 3", "give a .json or .toml file"),
    ("h.json", "[1]", "expected an object at the top"),
])
def test_a_wrong_file_is_one_clear_line(tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    with pytest.raises(ConfigError, match=message) as info:
        load_rerank_file(path)
    assert "\n" not in str(info.value) and name in str(info.value)


def test_the_service_refuses_a_wrong_file_before_it_starts(serve_run, tmp_path, make_client):
    bad = write(tmp_path, "bad.toml", "[mmr]\nlambda = 2\n")
    with pytest.raises(ConfigError, match=r"rerank file .*bad\.toml: mmr\.lambda"):
        serve(serve_run, rerank=bad)
    with pytest.raises(ValidationError, match="mmr.lambda"):
        make_client(rerank=bad)
    with pytest.raises(ConfigError, match="cannot read it"):
        serve(serve_run, rerank=tmp_path / "missing.toml")


def test_cli_passes_the_file(monkeypatch, tmp_path):
    import liverec.serve.server as server
    from liverec.cli import main

    seen = {}
    monkeypatch.setattr(server, "serve", lambda run_dir, **kw: seen.update(kw))
    assert main(["serve", "runs/x", "--rerank", "rules.toml"]) == 0
    assert seen["rerank"] == "rules.toml"


# ---- answers say which rules were applied ---------------------------------------------------


def test_without_a_file_only_flags_apply(client):
    a = client.post("/v1/recommend", json={"history": ["3", "4"], "k": 5}).json()
    assert a["rerank"] == {"applied": ["flags"], "switched_off": [], "candidates": 0,
                           "mmr_lambda": None, "calibration_lambda": None,
                           "exposure_penalty": None, "max_head_share": None,
                           "max_per_category": None}
    assert ids(a)[0] == "5"
    b = client.post("/v1/recommend", json={"history": ["3", "4"], "k": 5, "mmr_lambda": 0.4,
                                           "max_per_category": 3}).json()
    assert b["rerank"]["applied"] == ["flags", "category_caps", "mmr"]
    assert b["rerank"]["mmr_lambda"] == 0.4 and b["rerank"]["candidates"] == 200


@pytest.fixture
def ruled(make_client, rerank_run, tmp_path):
    rules = write(tmp_path, "rules.toml", 'candidates = 100\nlocked = ["attributes"]\n'
                  '[rules]\ndeny = ["10", "no-such-id"]\nmax_per_category = 2\n'
                  'attributes = [{exclude = ["family:f7"]}]\n[mmr]\nlambda = 0.2\n')
    return make_client(run_dir=rerank_run, rerank=rules)


def test_deployment_rules_and_request_overrides(ruled):
    base = {"history": ["8", "9"], "k": 8}
    a = ruled.post("/v1/recommend", json=base).json()
    assert a["rerank"]["applied"] == ["flags", "deny", "attributes", "category_caps", "mmr"]
    assert a["rerank"]["candidates"] == 100 and a["rerank"]["max_per_category"] == 2
    got = ids(a)
    assert len(got) == 8 and "10" not in got and not {"35", "36", "37", "38", "39"} & set(got)
    cats = [int(i) % 4 for i in got]
    assert max(cats.count(c) for c in set(cats)) <= 2  # at most 2 per category
    b = ruled.post("/v1/recommend", json={**base, "rules_off": ["category_caps", "mmr"]}).json()
    assert b["rerank"]["applied"] == ["flags", "deny", "attributes"]
    assert b["rerank"]["switched_off"] == ["category_caps", "mmr"]
    scores = [i["score"] for i in b["items"]]
    assert scores == sorted(scores, reverse=True) and "10" not in ids(b)  # the model's order
    c = ruled.post("/v1/recommend", json={**base, "rerank": False}).json()
    assert c["rerank"]["applied"] == ["flags", "deny", "attributes"]  # attributes is locked
    assert ids(c) == ids(b)
    d = ruled.post("/v1/recommend", json={**base, "rerank": False, "mmr_lambda": 0.5}).json()
    assert d["rerank"]["applied"] == ["flags", "deny", "attributes", "mmr"]
    assert d["rerank"]["switched_off"] == ["category_caps"] and d["rerank"]["mmr_lambda"] == 0.5
    e = ruled.get("/v1/recommend", params={"user_id": "nobody", "k": 5, "mmr_lambda": 0,
                                           "max_per_category": 1}).json()
    assert e["fallback"] == "popular" and e["rerank"]["switched_off"] == ["mmr"]
    cats = [int(i) % 4 for i in ids(e)]
    assert len(cats) == 4 and len(set(cats)) == 4  # popular items, one per category


def test_bad_overrides_are_clear_422s(ruled, client):
    r = ruled.post("/v1/recommend", json={"history": ["8"], "rules_off": ["attributes"]})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"] == [{"loc": ["body", "rules_off"], "type": "locked_rule",
                                   "msg": r.json()["detail"]}]
    assert "locked" in r.json()["detail"]
    r = ruled.get("/v1/recommend", params={"user_id": "u", "calibration_lambda": 0.9})
    assert r.status_code == 422 and r.json()["errors"][0]["type"] == "weights_above_one"
    assert r.json()["errors"][0]["loc"] == ["query", "calibration_lambda"]
    assert "1.1" in r.json()["detail"]
    for params in ({"mmr_lambda": 1.5}, {"mmr_lambda": "nan"}, {"rules_off": "flags"},
                   {"rules_off": "deny"}, {"max_per_category": 0}, {"rerank": "maybe"}):
        r = client.get("/v1/recommend", params={"user_id": "u", **params})
        assert r.status_code == 422, params
    r = client.post("/v1/recommend", json={"history": ["8"], "mmr_lambda": True})
    assert r.status_code == 422  # strict body: a boolean is not a number


def test_served_list_equals_the_python_api_with_the_same_rules(make_client, rerank_run,
                                                               tmp_path):
    """The reference: liverec.load(run).recommend(..., rerank=GreedyReranker(...))."""
    client = make_client(run_dir=rerank_run, rerank=write(
        tmp_path, "r.json", {"rules": {"max_per_category": 2}, "mmr": {"lambda": 0.3},
                             "calibration": {"lambda": 0.2}}))
    rec = liverec.load(rerank_run)
    codes, _ = category_codes([{}] + [{"attributes": a} for a in rec.items.sort("index")[
        "attributes"].to_list()])
    cfg = RerankConfig(rules=HardRules(max_per_category=2), mmr=MMRConfig(0.3),
                       calibration=liverec.rerank.CalibrationConfig(0.2))
    reranker = GreedyReranker(catalogue_for(rec, categories=codes), cfg)
    for hist in (["8", "9"], ["20", "21", "22"], ["0"]):
        served = client.post("/v1/recommend", json={"history": hist, "k": 10}).json()
        local = rec.recommend(hist, k=10, rerank=reranker)
        assert ids(served) == [i for i, _ in local if i not in ("3", "7")][:len(ids(served))]
        assert not {"3", "7"} & set(ids(served))


def test_category_codes_without_the_prefix_are_the_library_s():
    rows = [{}, {"attributes": ["17", "a"]}, {"attributes": ["a", "b"]}, {"attributes": []},
            {"attributes": ["b", "17"]}, {"attributes": ["17"]}]
    codes, names = category_codes(rows)
    assert codes.tolist() == categories_from_attributes([r.get("attributes", [])
                                                         for r in rows]).tolist()
    assert names == {"17": 0, "a": 1}
    codes, names = category_codes([{}, {"attributes": ["x", "category:k"]}, {"attributes": []}])
    assert codes.tolist() == [-1, 0, -1] and names == {"category:k": 0}


# ---- flags --------------------------------------------------------------------------------


def test_catalogue_flags_and_patch_hide_items_at_once(make_client, rerank_run):
    c = make_client(run_dir=rerank_run)
    assert c.get("/v1/items/3").json()["unsafe"] is True
    assert c.get("/v1/items/7").json() | {} == {**c.get("/v1/items/7").json(),
                                                "available": False, "hidden": True}
    assert c.post("/v1/events", json={"user_id": "u", "item_id": "5"}).status_code == 200
    first = c.get("/v1/recommend", params={"user_id": "u", "k": 5})
    assert ids(first.json())[0] == "6" and not {"3", "7"} & set(ids(first.json()))
    again = c.get("/v1/recommend", params={"user_id": "u", "k": 5})
    assert again.content == first.content  # a cached answer
    r = c.patch("/v1/items/6", json={"unsafe": True})
    assert r.status_code == 200 and r.json()["hidden"] and r.json()["title"]
    after = c.get("/v1/recommend", params={"user_id": "u", "k": 5}).json()
    assert "6" not in ids(after) and len(ids(after)) == 5  # the cached list is gone at once
    assert "6" not in ids(c.post("/v1/recommend", json={"history": ["5"], "k": 5}).json())
    assert "6" not in ids(c.get("/v1/items/5/similar", params={"k": 10}).json())
    r = c.get("/v1/explain", params={"user_id": "u", "item_id": "6"})
    assert r.status_code == 422 and r.json()["errors"][0]["type"] == "hidden_item"
    c.patch("/v1/items/6", json={"unsafe": False, "title": "back"})
    assert ids(c.get("/v1/recommend", params={"user_id": "u", "k": 5}).json())[0] == "6"
    # available=false through the query-id route, then a new item flagged at creation
    c.patch("/v1/items", params={"item_id": "6"}, json={"available": False})
    assert "6" not in ids(c.get("/v1/recommend", params={"user_id": "u", "k": 40}).json())
    r = c.post("/v1/items", json={"item_id": "new", "attributes": ["family:f1"],
                                  "unsafe": True})
    assert r.status_code == 200 and c.get("/v1/items/new").json()["hidden"]
    everything = c.get("/v1/recommend", params={"user_id": "u", "k": 60}).json()
    assert not {"3", "6", "7", "new"} & set(ids(everything))
    assert c.patch("/v1/items/6", json={"unsafe": "yes"}).status_code == 422


def test_explanations_do_not_name_hidden_history_items(make_client, rerank_run):
    c = make_client(run_dir=rerank_run)
    for item in ("0", "1", "2"):
        c.post("/v1/events", json={"user_id": "h", "item_id": item})
    before = c.get("/v1/explain", params={"user_id": "h", "item_id": "4"}).json()
    assert "2" in {x["item_id"] for x in before["history"]}
    c.patch("/v1/items/2", json={"unsafe": True})
    after = c.get("/v1/explain", params={"user_id": "h", "item_id": "4"}).json()
    for part in ("history", "drivers", "similar"):
        assert "2" not in {x["item_id"] for x in after[part]}
    assert all("2" not in s["items"] for s in after["shared_attributes"])
    assert after["score"] == before["score"]  # the history itself is unchanged
    title2 = c.get("/v1/items/2").json()["title"]
    assert title2 not in after["reason"]
    recs = c.get("/v1/recommend", params={"user_id": "h", "k": 3, "explain": "true"}).json()
    assert all(title2 not in i["reason"] for i in recs["items"])


def test_rerank_route_describes_the_rules(ruled, client):
    d = ruled.get("/v1/rerank").json()
    rules = {r["name"]: r for r in d["rules"]}
    assert list(rules) == ["flags", "deny", "allow", "attributes", "category_caps", "mmr",
                           "calibration", "exposure"]
    assert rules["deny"] == {"name": "deny", "on": True, "locked": True, "detail": "2 ids"}
    assert rules["flags"]["detail"] == "2 items flagged"
    assert rules["attributes"]["locked"] and not rules["mmr"]["locked"]
    assert rules["mmr"]["detail"] == "lambda 0.2, max similarity" and not rules["allow"]["on"]
    assert d["relevance"] == "minmax" and d["order"] == "greedy"
    assert d["candidates"] == 100 and d["max_candidates"] == 400
    assert d["hidden_items"] == 2 + 1 + 5  # flags 3 and 7, deny 10, family f7
    plain = client.get("/v1/rerank").json()
    assert [r["name"] for r in plain["rules"] if r["on"]] == ["flags"]
    assert plain["hidden_items"] == 0


def test_openapi_documents_the_overrides(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/recommend"]["get"]
    names = {p["name"]: p["schema"] for p in op["parameters"]}
    assert names["mmr_lambda"] == {"type": "number", "minimum": 0, "maximum": 1,
                                   "description": names["mmr_lambda"]["description"],
                                   "title": "Mmr Lambda"}
    assert names["rules_off"]["items"]["enum"] == ["allow", "attributes", "category_caps",
                                                   "mmr", "calibration", "exposure"]
    body = spec["components"]["schemas"]["HistoryRecommendIn"]["properties"]
    assert {"rerank", "rules_off", "max_per_category"} <= set(body)
    out = spec["components"]["schemas"]["RecommendOut"]["properties"]["rerank"]
    assert "RerankApplied" in json.dumps(out)
    assert "RerankRulesOut" in json.dumps(spec["paths"]["/v1/rerank"]["get"])
    assert {"unsafe", "available"} <= set(spec["components"]["schemas"]["ItemPatch"][
        "properties"])


def test_similar_items_follow_the_deployment_s_hard_rules(ruled):
    got = ids(ruled.get("/v1/items/9/similar", params={"k": 40}).json())
    assert not {"3", "7", "10", "35", "36", "37", "38", "39"} & set(got)
    assert len(got) == N - 1 - 8


def test_popular_rows_have_finite_scores_after_the_stage(ruled):
    a = ruled.post("/v1/recommend", json={"history": [], "k": 10,
                                          "exposure_penalty": 0.5}).json()
    assert a["fallback"] == "popular" and a["rerank"]["exposure_penalty"] == 0.5
    assert all(np.isfinite(i["score"]) for i in a["items"])
    assert len(a["items"]) == 8  # 4 categories, at most 2 each


def test_a_short_list_widens_the_pool(make_client, rerank_run, tmp_path):
    """5 candidates, at most 1 per category: the top 5 rarely hold all 4 categories, so the
    stage retrieves 20, then 80 (``WIDEN``, up to max_candidates) until the list is full or
    the catalogue ends; with max_candidates = candidates it never widens."""
    c = make_client(run_dir=rerank_run, rerank=write(
        tmp_path, "r.toml", "candidates = 5\nmax_candidates = 100\n[rules]\n"
        "max_per_category = 1\n"))
    for hist in (["8", "9"], ["20", "21", "22"], []):
        a = c.post("/v1/recommend", json={"history": hist, "k": 4}).json()
        cats = [int(i) % 4 for i in ids(a)]
        assert sorted(cats) == [0, 1, 2, 3], (hist, ids(a))
    six = c.post("/v1/recommend", json={"history": ["8"], "k": 6}).json()
    assert len(ids(six)) == 4  # the rules run out: 4 categories, 1 each
    narrow = make_client(run_dir=rerank_run, rerank=write(
        tmp_path, "n.toml", "candidates = 5\nmax_candidates = 5\n[rules]\n"
        "max_per_category = 1\n"))
    short = narrow.post("/v1/recommend", json={"history": ["20", "21", "22"], "k": 4}).json()
    assert len(ids(short)) < 4  # the top 5 alone


def test_naive_reference_path_gives_the_same_lists(make_client, rerank_run, tmp_path):
    rules = write(tmp_path, "r.toml", "candidates = 10\n[rules]\nmax_per_category = 1\n"
                  "deny = [\"9\"]\n[mmr]\nlambda = 0.3\n")
    fast = make_client(run_dir=rerank_run, rerank=rules)
    naive = make_client(run_dir=rerank_run, rerank=rules, naive=True)
    for c in (fast, naive):
        c.post("/v1/events", json=[{"user_id": "n", "item_id": i} for i in ("5", "6", "7")])
    for params in ({"k": 4}, {"k": 4, "rerank": "false"}, {"k": 6, "mmr_lambda": 0}):
        a = fast.get("/v1/recommend", params={"user_id": "n", **params}).json()
        b = naive.get("/v1/recommend", params={"user_id": "n", **params}).json()
        assert ids(a) == ids(b) and a["rerank"] == b["rerank"], params
        assert not {"3", "7", "9"} & set(ids(a))
