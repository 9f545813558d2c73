"""Access: which routes need which key, keys from the environment or a file (rotation, scopes),
the check before the body is read, reload only from the models root, no filesystem facts in
answers. Cases: unauth-personal-data, auth-after-body-parse (../shared/cases/service/)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal

import pytest

from liverec.errors import ConfigError
from liverec.serve import keys as keys_mod
from liverec.serve.access import ACCESS, openapi_path
from liverec.serve.keys import KeyRing, Scope, client_key

ADMIN, WRITE, READ = "admin-key-0123456789abcdef", "write-key-0123456789abcdef", "read-key-0123"
KEYS = f"{ADMIN},write:{WRITE},read:{READ}"
PERSONAL = [("/v1/users/victim-42", {}), ("/v1/explain", {"user_id": "victim-42", "item_id": "4"}),
            ("/v1/stats", {}), ("/v1/recommend", {"user_id": "victim-42"})]


@pytest.fixture
def keyed(make_client):
    client = make_client(api_key=KEYS)
    r = client.post("/v1/events", headers={"X-API-Key": WRITE},
                    json=[{"user_id": "victim-42", "item_id": i} for i in ("1", "2", "3")])
    assert r.status_code == 200, r.text
    return client


def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"] and body["detail"]
    return body


@pytest.mark.parametrize("path, params", PERSONAL)
def test_personal_data_needs_a_read_key(keyed, path, params):
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"X-API-Key": READ + "x"}):
        r = keyed.get(path, params=params, headers=headers)
        body = _problem(r, 401)
        assert "victim-42" not in r.text and body["type"].endswith(":unauthorized")
        assert r.headers["www-authenticate"].startswith("ApiKey")
    for key in (READ, WRITE, ADMIN):  # scopes nest
        r = keyed.get(path, params=params, headers={"X-API-Key": key})
        assert r.status_code == 200, r.text


def test_user_and_stats_bodies_with_the_key(keyed):
    h = {"X-API-Key": READ}
    user = keyed.get("/v1/users/victim-42", headers=h).json()
    assert [e["item_id"] for e in user["history"]] == ["1", "2", "3"]
    assert keyed.get("/v1/stats", headers=h).json()["recent_users"] == ["victim-42"]


def test_a_cached_answer_is_not_served_without_the_key(keyed):
    h = {"X-API-Key": READ}
    first = keyed.get("/v1/recommend", params={"user_id": "victim-42"}, headers=h)
    again = keyed.get("/v1/recommend", params={"user_id": "victim-42"}, headers=h)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    r = keyed.get("/v1/recommend", params={"user_id": "victim-42"})  # in the answer cache
    _problem(r, 401)


def test_scopes_of_write_and_admin_routes(keyed, serve_run):
    ev = {"user_id": "u", "item_id": "3"}
    calls = [("/v1/events", ev, Scope.WRITE), ("/v1/items", {"item_id": "q"}, Scope.WRITE),
             ("/admin/reload", {"run_dir": str(serve_run)}, Scope.ADMIN)]
    for path, body, need in calls:
        _problem(keyed.post(path, json=body), 401)
        for key, scope in ((READ, Scope.READ), (WRITE, Scope.WRITE), (ADMIN, Scope.ADMIN)):
            r = keyed.post(path, json=body, headers={"X-API-Key": key})
            if scope < need:
                assert _problem(r, 403)["type"].endswith(":forbidden")
            else:
                assert r.status_code == 200, r.text


@pytest.mark.parametrize("path, body", [
    ("/v1/items", b"\xff\xfe"), ("/admin/reload", b"{"), ("/v1/events", b"{not json"),
    ("/v1/events", b'{"user_id": 5}'), ("/v1/items", b'{"item_id": "z"}'), ("/admin/reload", b""),
])
def test_no_key_is_401_before_the_body_is_read(keyed, path, body):
    r = keyed.post(path, content=body, headers={"content-type": "application/json"})
    _problem(r, 401)
    r = keyed.post(path, content=b"[" + b" " * 2_000_000 + b"]",
                   headers={"content-type": "application/json"})
    _problem(r, 401)  # not even the size cap speaks to a caller without a key
    assert keyed.get("/v1/items/z").status_code == 404  # nothing was stored


def test_a_proxy_prefix_does_not_open_a_route(make_client):
    from fastapi.testclient import TestClient

    client = make_client(api_key=KEYS)
    with TestClient(client.app, root_path="/api") as prefixed:
        _problem(prefixed.post("/api/v1/events", content=b"{"), 401)  # before the body
        assert prefixed.get("/api/v1/users/nobody", headers={"X-API-Key": READ}).status_code \
            == 404


def test_open_routes_stay_open(keyed):
    assert keyed.post("/v1/recommend", json={"history": ["3"]}).status_code == 200
    for path in ("/v1/items/3", "/v1/items/3/similar", "/v1/model", "/healthz", "/readyz",
                 "/metrics", "/openapi.json", "/ui/"):
        assert keyed.get(path).status_code == 200, path


def test_without_keys_everything_is_open(client):
    assert client.post("/v1/events", json={"user_id": "u", "item_id": "3"}).status_code == 200
    assert client.get("/v1/users/u").status_code == 200
    assert client.get("/v1/stats").status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json()["components"]


def test_openapi_declares_each_protected_route(keyed):
    spec = keyed.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    for (method, path), scope in ACCESS.items():
        op = spec["paths"][openapi_path(path)][method.lower()]
        assert op["security"] == [{"ApiKey": []}] and {"401", "403"} <= set(op["responses"])
        assert f"a {scope.name.lower()} key" in op["description"]
    assert "security" not in spec["paths"]["/v1/recommend"]["post"]


def test_rotation_from_the_environment(make_client, monkeypatch):
    monkeypatch.setenv("LIVEREC_SERVE_API_KEY", "old-key-0123456789, new-key-0123456789")
    client = make_client()
    for key in ("old-key-0123456789", "new-key-0123456789"):
        assert client.get("/v1/stats", headers={"X-API-Key": key}).status_code == 200
    _problem(client.get("/v1/stats"), 401)


def test_key_file_is_reread_when_it_changes(make_client, tmp_path, monkeypatch):
    monkeypatch.setattr(keys_mod, "RECHECK_S", 0.0)
    path = tmp_path / "keys"
    path.write_text("# service keys\nold-key-0123456789\n\nread:reader-0123456789\n")
    path.chmod(0o600)
    client = make_client(api_key_file=path)
    assert client.get("/v1/stats", headers={"X-API-Key": "reader-0123456789"}).status_code == 200
    _problem(client.post("/v1/items", json={"item_id": "q"},
                         headers={"X-API-Key": "reader-0123456789"}), 403)
    path.write_text("new-key-0123456789\n")
    os.utime(path, ns=(1, 1))  # another mtime even within the clock's resolution
    assert client.get("/v1/stats", headers={"X-API-Key": "new-key-0123456789"}).status_code == 200
    _problem(client.get("/v1/stats", headers={"X-API-Key": "old-key-0123456789"}), 401)
    path.unlink()  # unreadable now: the keys read before stay (logged)
    assert client.get("/v1/stats", headers={"X-API-Key": "new-key-0123456789"}).status_code == 200
    path.write_text("# everyone revoked\n")
    os.utime(path, ns=(2, 2))
    _problem(client.get("/v1/stats", headers={"X-API-Key": "new-key-0123456789"}), 401)
    _problem(client.get("/v1/stats"), 401)  # no key left never means open


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")
def test_sighup_rereads_the_key_file(tmp_path):
    from liverec.serve.app import _reload_keys_on_sighup

    path = tmp_path / "keys"
    path.write_text("first-key-0123456789\n")
    ring = KeyRing(path=path)
    path.write_text("second-key-0123456789\n")

    async def hup():  # the lifespan installs the handler on the serving loop (main thread)
        loop = _reload_keys_on_sighup(ring)
        assert loop is not None
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                if ring.scope_of("second-key-0123456789"):
                    break
                await asyncio.sleep(0.01)
        finally:
            loop.remove_signal_handler(signal.SIGHUP)

    asyncio.run(hup())
    assert ring.scope_of("second-key-0123456789") == Scope.ADMIN
    assert ring.scope_of("first-key-0123456789") is None


def test_every_key_is_compared_in_constant_time(monkeypatch):
    calls = []
    real = keys_mod.hmac.compare_digest
    monkeypatch.setattr(keys_mod.hmac, "compare_digest",
                        lambda a, b: calls.append((len(a), len(b))) or real(a, b))
    ring = KeyRing("a-first-key-0123456, read:b-second-key-012345, c")
    assert ring.scope_of("a-first-key-0123456") == Scope.ADMIN
    assert ring.scope_of("nope") is None and ring.scope_of("b-second-key-012345") == Scope.READ
    assert len(calls) == 9 and {c for c in calls} == {(32, 32)}  # digests: equal lengths


@pytest.mark.parametrize("inline, path_text, message", [
    (" , ", None, "no API key"), ("bad key", None, "white space"),
    ("read:", None, "empty"), (None, "\n# none\n", "no API key"),
])
def test_bad_key_settings_are_one_clear_error(tmp_path, inline, path_text, message):
    path = None
    if path_text is not None:
        path = tmp_path / "keys"
        path.write_text(path_text)
    with pytest.raises(ConfigError, match=message) as err:
        KeyRing(inline, path)
    assert "bad" not in str(err.value)  # never the key itself


def test_missing_key_file_is_refused_before_start(make_client, tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        make_client(api_key_file=tmp_path / "nope")


def test_client_key_sources_in_order(tmp_path, monkeypatch):
    monkeypatch.delenv("LIVEREC_SERVE_API_KEY", raising=False)
    monkeypatch.delenv("LIVEREC_SERVE_API_KEY_FILE", raising=False)
    assert client_key() is None
    path = tmp_path / "keys"
    path.write_text("read:r-0123456789012345\nadmin-0123456789012345\n")
    monkeypatch.setenv("LIVEREC_SERVE_API_KEY_FILE", str(path))
    assert client_key() == "admin-0123456789012345"  # the first admin key
    monkeypatch.setenv("LIVEREC_SERVE_API_KEY", "read:r1-0123456789012, e-0123456789012345")
    assert client_key() == "e-0123456789012345"
    assert client_key(path=path) == "admin-0123456789012345"
    assert client_key("argv-0123456789012345") == "argv-0123456789012345"
    with pytest.raises(ConfigError, match="no key with the admin scope"):
        client_key("read:only-0123456789012")


# ---- reload only from the models root; no filesystem facts in answers -------------------


@pytest.fixture
def rooted(make_client, serve_run, tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(serve_run, root / "v1")
    shutil.copytree(serve_run, root / "v2")
    return root, make_client(run_dir=root / "v1", models_root=None)  # default: v1's parent


def test_reload_inside_the_root_by_name_or_absolute_path(rooted):
    root, client = rooted
    r = client.post("/admin/reload", json={"run_dir": "v2"})
    assert r.status_code == 200 and r.json()["model_version"].startswith("v2@")
    r = client.post("/admin/reload", json={"run_dir": str(root / "v1")})
    assert r.status_code == 200 and r.json()["model_version"].startswith("v1@")
    assert client.post("/admin/reload").json()["model_version"].startswith("v1@")  # current


def test_reload_outside_the_root_is_403(rooted, serve_run, tmp_path):
    root, client = rooted
    (root / "link").symlink_to(serve_run, target_is_directory=True)  # a valid run, outside
    for run_dir in ("../../", "v2/../..", str(serve_run), "/", "link", str(root / "link")):
        r = client.post("/admin/reload", json={"run_dir": run_dir})
        body = _problem(r, 403)
        assert body["type"].endswith(":outside-models-root")
        assert "/" not in body["detail"].replace(repr(run_dir), "")  # only what was sent
    assert client.get("/readyz").json()["model_version"].startswith("v1@")


@pytest.mark.parametrize("breakage", ["missing", "no_weights", "bad_config", "nul", "long"])
def test_refused_reload_names_no_server_path(rooted, breakage):
    root, client = rooted
    name = {"nul": "v\x002", "long": "x" * 3000}.get(breakage, "broken")
    if breakage in ("no_weights", "bad_config"):
        shutil.copytree(root / "v1", root / name)
        if breakage == "no_weights":
            (root / name / "model.safetensors").unlink()
        else:
            (root / name / "config.json").write_text("{")
    r = client.post("/admin/reload", json={"run_dir": name})
    body = _problem(r, 409)
    assert body["type"].endswith(":reload-refused") and "not found or invalid" in body["detail"]
    assert str(root) not in r.text and "/tmp" not in r.text and "safetensors" not in r.text


def test_store_failure_messages_name_no_path(make_client, tmp_path, monkeypatch):
    import sqlite3

    client = make_client(store=f"sqlite:///{tmp_path / 'events.db'}")

    def broken():
        raise sqlite3.OperationalError(f"unable to open database file {tmp_path}/events.db")

    monkeypatch.setattr(client.app.state.engine.store, "stats", broken)
    r = client.get("/readyz")
    assert _problem(r, 503)["detail"] == "store not reachable"
    assert str(tmp_path) not in r.text and r.headers["retry-after"] == "1"
