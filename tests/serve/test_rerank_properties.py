"""Property-based: a flagged or denied item never appears in any answer (issue 17, must-show 1).

Over the HTTP API, a hypothesis state machine: each run starts a service with a random
deployment file (deny and allow lists, caps, MMR, calibration, exposure) over a run whose
catalogue carries flag columns, then interleaves random catalogue changes (flags set and
cleared by PATCH or POST, new items with random attributes and flags, attribute changes) and
events with reads of every kind (GET /v1/recommend twice, the second from the cache, for users
with and without events; POST /v1/recommend; similar items; explanations), each with random
request overrides. After every read: no flagged or denied item is listed, named or explained,
and allow lists hold while the answer says they apply.

Over the Python API: random flag columns (``flagged``, ``unsafe``, ``unavailable``,
``available`` with missing values) and rule sets through ``catalogue_for`` and
``Recommender.recommend(..., rerank=...)``.
"""

from __future__ import annotations

import copy
import json
import shutil

import polars as pl
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import liverec
from liverec.rerank import (
    CalibrationConfig,
    GreedyReranker,
    HardRules,
    MMRConfig,
    RerankConfig,
    catalogue_for,
)
from liverec.serve.app import create_app
from liverec.serve.rerank_config import SWITCHABLE

N = 40
IDS = [str(i) for i in range(N)]
NEW = [f"new-{j}" for j in range(4)]
CATS = [f"category:c{j}" for j in range(3)]
START_FLAGS = {"3", "7"}  # the run's catalogue columns


@pytest.fixture(scope="module")
def flagged_run(serve_run, tmp_path_factory):
    """serve_run with categories and flag columns: 3 unsafe, 7 not available."""
    out = tmp_path_factory.mktemp("rerank-props") / "tiny-flags"
    shutil.copytree(serve_run, out)
    items = pl.read_parquet(out / "items.parquet")
    ids = items["item"].to_list()
    items.with_columns(
        pl.Series("attributes", [[CATS[int(i) % 3], f"family:f{int(i) // 5}"] for i in ids]),
        pl.Series("unsafe", [i == "3" for i in ids]),
        pl.Series("available", [False if i == "7" else None for i in ids], dtype=pl.Boolean),
    ).write_parquet(out / "items.parquet")
    return out


weights = st.sampled_from([None, 0.0, 0.2, 0.4])
overrides = st.fixed_dictionaries({}, optional={
    "rerank": st.booleans(), "rules_off": st.lists(st.sampled_from(SWITCHABLE), max_size=3),
    "mmr_lambda": weights, "calibration_lambda": weights, "exposure_penalty": weights,
    "max_head_share": st.sampled_from([None, 0.0, 0.5, 1.0]),
    "max_per_category": st.sampled_from([None, 1, 3])})
deployments = st.fixed_dictionaries({
    "candidates": st.sampled_from([5, 50, 200]),
    "rules": st.fixed_dictionaries({"deny": st.lists(st.sampled_from(IDS + NEW + ["gone"]),
                                                     max_size=8, unique=True)}, optional={
        "allow": st.lists(st.sampled_from(IDS + NEW), min_size=5, max_size=30, unique=True),
        "max_per_category": st.integers(1, 4),
        "attributes": st.just([{"exclude": ["family:f2"]}])}),
}, optional={"mmr": st.fixed_dictionaries({"lambda": st.sampled_from([0.1, 0.3])}, optional={
                 "similarity": st.sampled_from(["max", "sum"])}),
             "relevance": st.sampled_from(["minmax", "probability"]),
             "order": st.sampled_from(["greedy", "score"]),
             "calibration": st.fixed_dictionaries({"lambda": st.sampled_from([0.1, 0.3])}),
             "exposure": st.fixed_dictionaries({"max_head_share": st.sampled_from([0.3, 1.0]),
                                                "penalty": st.sampled_from([0.0, 0.2])}),
             "locked": st.lists(st.sampled_from(["allow", "attributes"]), unique=True)})
items = st.sampled_from(IDS + NEW)


class HiddenNeverShown(RuleBasedStateMachine):
    """The service against a model of what must stay hidden."""

    run_dir = None
    tmp = None

    @initialize(deploy=deployments)
    def start(self, deploy):
        path = self.tmp / "rules.json"
        path.write_text(json.dumps(deploy))
        self.client = TestClient(create_app(run_dir=self.run_dir, store="memory://",
                                            rerank=path, torch_threads=1))
        self.client.__enter__()
        self.flagged = set(START_FLAGS)
        self.deny = set(deploy["rules"]["deny"])
        self.allow = deploy["rules"].get("allow")
        self.known = set(IDS)
        self.reads = 0
        for user, hist in (("a", ["4", "5", "6"]), ("b", ["20", "21"])):
            for item in hist:
                assert self.client.post("/v1/events", json={"user_id": user,
                                                            "item_id": item}).status_code == 200

    def teardown(self):
        if hasattr(self, "client"):
            self.client.__exit__(None, None, None)

    @property
    def hidden(self) -> set[str]:
        return self.flagged | self.deny

    def check_list(self, answer: dict) -> list[str]:
        got = [i["item_id"] for i in answer["items"]]
        assert not self.hidden & set(got), (self.hidden & set(got), answer["rerank"])
        assert len(got) == len(set(got))
        if self.allow is not None and "allow" in answer.get("rerank", {"applied": []})[
                "applied"]:
            assert set(got) <= set(self.allow)
        for item in answer["items"]:  # reasons name no hidden item's title
            for h in self.hidden & self.known:
                title = self.titles.get(h)
                if item.get("reason") and title:
                    assert title not in item["reason"]
        self.reads += 1
        self.last = [i for i in got if i in IDS]
        return got

    @property
    def titles(self) -> dict[str, str]:
        return {i: f"product {i} family{int(i) // 5}" for i in IDS}

    # --- catalogue changes ------------------------------------------------------------

    @rule(item=st.sampled_from(IDS), unsafe=st.none() | st.booleans(),
          available=st.none() | st.booleans(), by_query=st.booleans())
    def patch_flags(self, item, unsafe, available, by_query):
        body = {k: v for k, v in (("unsafe", unsafe), ("available", available)) if v is not None}
        r = (self.client.patch("/v1/items", params={"item_id": item}, json=body) if by_query
             else self.client.patch(f"/v1/items/{item}", json=body))
        assert r.status_code == 200
        self.set_flags(item, unsafe, available, r.json())

    def set_flags(self, item, unsafe, available, shown: dict):
        self.state = getattr(self, "state", {})
        s = self.state.setdefault(item, {"unsafe": item == "3", "available": item != "7"})
        s.update({k: v for k, v in (("unsafe", unsafe), ("available", available))
                  if v is not None})
        (self.flagged.add if s["unsafe"] or not s["available"] else self.flagged.discard)(item)
        assert shown["unsafe"] == s["unsafe"] and shown["available"] == s["available"]
        assert shown["hidden"] == (item in self.hidden)

    @rule(data=st.data(), how=st.sampled_from(["unsafe", "unavailable"]))
    def flag_a_shown_item(self, data, how):
        """Flag an item the last answer listed (that answer may be cached)."""
        if getattr(self, "last", None):
            item = data.draw(st.sampled_from(self.last))
            unsafe, available = (True, None) if how == "unsafe" else (None, False)
            self.patch_flags(item, unsafe, available, by_query=False)

    @rule(item=items, cats=st.lists(st.sampled_from(CATS + ["family:f2", "x"]), max_size=2),
          unsafe=st.none() | st.booleans(), available=st.none() | st.booleans())
    def post_item(self, item, cats, unsafe, available):
        body = {"item_id": item, "attributes": cats}
        body |= {k: v for k, v in (("unsafe", unsafe), ("available", available))
                 if v is not None}
        r = self.client.post("/v1/items", json=body)
        assert r.status_code == 200, r.text
        self.known.add(item)
        self.set_flags(item, unsafe, available, self.client.get(
            "/v1/items", params={"item_id": item}).json())

    @rule(user=st.sampled_from(["a", "b", "c"]), item=st.sampled_from(IDS))
    def event(self, user, item):
        assert self.client.post("/v1/events", json={"user_id": user,
                                                    "item_id": item}).status_code == 200

    # --- reads ------------------------------------------------------------------------

    @rule(user=st.sampled_from(["a", "b", "c", "nobody"]), k=st.integers(1, 45), o=overrides,
          explain=st.booleans())
    def recommend_user(self, user, k, o, explain):
        params = {"user_id": user, "k": k, "explain": str(explain).lower()}
        params |= {key: (str(v).lower() if isinstance(v, bool) else v)
                   for key, v in o.items() if v is not None}
        first = self.client.get("/v1/recommend", params=params)
        if first.status_code == 422:  # weights above 1 together: nothing else is refused
            assert first.json()["errors"][0]["type"] in ("weights_above_one", "locked_rule")
            return
        assert first.status_code == 200, first.text
        self.check_list(first.json())
        self.check_list(self.client.get("/v1/recommend", params=params).json())  # cached
        self.asked = [*getattr(self, "asked", [])[-3:], params]

    @rule(data=st.data())
    def recommend_again(self, data):
        """A request asked before (its answer cached), after the catalogue changes since."""
        if getattr(self, "asked", None):
            params = data.draw(st.sampled_from(self.asked))
            self.check_list(self.client.get("/v1/recommend", params=params).json())

    @rule(history=st.lists(st.sampled_from(IDS), max_size=6), k=st.integers(1, 45),
          o=overrides)
    def recommend_history(self, history, k, o):
        r = self.client.post("/v1/recommend", json={"history": history, "k": k,
                                                    **{key: v for key, v in o.items()
                                                       if v is not None}})
        if r.status_code == 422:
            assert r.json()["errors"][0]["type"] in ("weights_above_one", "locked_rule")
            return
        assert r.status_code == 200, r.text
        self.check_list(r.json())

    @rule(item=st.sampled_from(IDS), k=st.integers(1, 45))
    def similar(self, item, k):
        got = [i["item_id"] for i in self.client.get(f"/v1/items/{item}/similar",
                                                     params={"k": k}).json()["items"]]
        assert not self.hidden & set(got)
        if self.allow is not None:
            assert set(got) <= set(self.allow)

    @rule(user=st.sampled_from(["a", "b"]), item=st.sampled_from(IDS))
    def explain(self, user, item):
        r = self.client.get("/v1/explain", params={"user_id": user, "item_id": item})
        if item in self.hidden:
            assert r.status_code == 422 and r.json()["errors"][0]["type"] == "hidden_item"
            return
        if r.status_code == 422:  # every history item hidden or outside the model
            assert r.json()["errors"][0]["type"] in ("no_known_item", "hidden_item")
            return
        e = r.json()
        listed = {h["item_id"] for part in ("history", "drivers", "similar") for h in e[part]}
        listed |= {i for s in e["shared_attributes"] for i in s["items"]}
        assert not self.hidden & listed
        assert not any(self.titles[h] in e["reason"] for h in self.hidden & set(IDS))

    @invariant()
    def hidden_items_say_so(self):
        if hasattr(self, "client"):
            n = self.client.get("/v1/rerank").json()["hidden_items"]
            assert n >= len(self.hidden & self.known)


def test_http_never_shows_flagged_or_denied_items(flagged_run, tmp_path):
    HiddenNeverShown.run_dir, HiddenNeverShown.tmp = flagged_run, tmp_path
    run_state_machine_as_test(HiddenNeverShown, settings=settings(
        max_examples=20, stateful_step_count=14, deadline=None, derandomize=True,
        database=None, suppress_health_check=list(HealthCheck)))


# ---- the Python API ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rec(flagged_run):
    return liverec.load(flagged_run)


flag_values = st.lists(st.sampled_from([None, False, True]), min_size=N, max_size=N)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(columns=st.dictionaries(st.sampled_from(["flagged", "unsafe", "unavailable",
                                                "available"]), flag_values, max_size=3),
       deny=st.sets(st.sampled_from(IDS), max_size=8),
       allow=st.none() | st.sets(st.sampled_from(IDS), min_size=3, max_size=30),
       cap=st.none() | st.integers(1, 3), lam=st.sampled_from([0.0, 0.3]),
       cal=st.sampled_from([0.0, 0.2]), start=st.integers(0, N - 1), k=st.integers(1, 45))
def test_python_api_never_shows_flagged_or_denied_items(rec, columns, deny, allow, cap, lam,
                                                       cal, start, k):
    local = copy.copy(rec)
    local.items = rec.items.drop([c for c in ("unsafe", "available") if c in rec.items.columns]
                                 ).with_columns(pl.Series(name, values, dtype=pl.Boolean)
                                                for name, values in columns.items())
    flagged = {i for i, *vals in zip(local.items["item"].to_list(),
                                     *[columns.get(c, [None] * N) for c in
                                       ("flagged", "unsafe", "unavailable", "available")])
               if vals[0] or vals[1] or vals[2] or vals[3] is False}
    cfg = RerankConfig(rules=HardRules(allow=None if allow is None else frozenset(allow),
                                       deny=frozenset(deny), max_per_category=cap),
                       mmr=MMRConfig(lam) if lam else None,
                       calibration=CalibrationConfig(cal) if cal else None)
    history = [str((start + j) % N) for j in range(4)]
    got = [i for i, _ in local.recommend(history, k=k,
                                         rerank=GreedyReranker(catalogue_for(local), cfg))]
    assert not (flagged | deny) & set(got)
    assert allow is None or set(got) <= allow
    assert len(got) == len(set(got)) <= k and not set(history) & set(got)
    if cap is None:  # every admissible unseen item is listed when k allows
        admissible = set(IDS) - flagged - deny - set(history)
        admissible &= allow if allow is not None else admissible
        assert len(got) == min(k, len(admissible))
