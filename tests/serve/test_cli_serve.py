"""``liverec serve`` arguments and the checks made before uvicorn starts."""

from __future__ import annotations

import pytest

from liverec.cli import build_parser
from liverec.errors import ArtifactError, ConfigError
from liverec.serve.server import serve


def test_serve_arguments():
    args = build_parser().parse_args(["serve", "runs/x", "--port", "9000", "--workers", "2",
                                      "--store", "redis://h:1/0", "--api-key", "k", "--naive"])
    assert (args.run_dir, args.port, args.workers, args.store, args.api_key, args.naive) == \
        ("runs/x", 9000, 2, "redis://h:1/0", "k", True)


def test_serve_refuses_broken_run_dir(tmp_path):
    with pytest.raises(ArtifactError, match="run directory not found"):
        serve(tmp_path / "missing")


def test_serve_refuses_workers_without_shared_store(serve_run):
    with pytest.raises(ConfigError, match="needs a shared store"):
        serve(serve_run, workers=2, store="memory://")


# ---- case api-key-in-argv: keys from the environment or a file, not the command line -------


def test_serve_takes_a_key_file_and_warns_about_argv(monkeypatch, capsys, tmp_path):
    import liverec.serve.server as server
    from liverec.cli import main

    seen = {}
    monkeypatch.setattr(server, "serve", lambda run_dir, **kw: seen.update(kw))
    keys = tmp_path / "keys"
    keys.write_text("admin-key-0123456789\n")
    assert main(["serve", "runs/x", "--api-key-file", str(keys), "--models-root", "runs"]) == 0
    assert seen["api_key_file"] == str(keys) and "api_key" not in seen
    assert seen["models_root"] == "runs" and "warning" not in capsys.readouterr().err
    assert main(["serve", "runs/x", "--api-key", "k"]) == 0
    err = capsys.readouterr().err
    assert "warning: --api-key" in err and "ps" in err and "LIVEREC_SERVE_API_KEY" in err


def test_serve_refuses_a_missing_key_file_in_one_line(serve_run, tmp_path):
    with pytest.raises(ConfigError, match="api_key_file.*no such file"):
        serve(serve_run, api_key_file=tmp_path / "nope")


def test_retrain_sends_the_key_from_the_environment(monkeypatch, serve_run, tmp_path):
    import liverec.cli as cli
    import liverec.retrain as retrain_mod

    sent = []
    report = {"data": {k: 0 for k in ("events_used", "events_skipped_unknown_item",
                                      "new_items", "users_with_events", "new_users",
                                      "selection_cases", "decision_cases")},
              "current": {"ndcg@20": 0.1, "hr@20": 0.2}, "new": {"ndcg@20": 0.1, "hr@20": 0.2},
              "best_epoch": 1, "epochs": [1], "wall_s": 0.0, "published": True}
    monkeypatch.setattr(cli, "_read_events", lambda source: None)
    monkeypatch.setattr(retrain_mod, "retrain", lambda *a: report)
    monkeypatch.setattr(retrain_mod, "notify_reload",
                        lambda server, out, key: sent.append(key) or {"model_version": "v"})
    argv = ["retrain", str(serve_run), "--events", "x.csv", "--out", str(tmp_path / "v2"),
            "--server", "http://127.0.0.1:1"]
    monkeypatch.setenv("LIVEREC_SERVE_API_KEY", "read:r-0123456789012, admin-0123456789012")
    assert cli.main(argv) == 0
    monkeypatch.delenv("LIVEREC_SERVE_API_KEY")
    keys = tmp_path / "keys"
    keys.write_text("file-admin-0123456789\n")
    monkeypatch.setenv("LIVEREC_SERVE_API_KEY_FILE", str(keys))
    assert cli.main(argv) == 0
    assert sent == ["admin-0123456789012", "file-admin-0123456789"]
    monkeypatch.setenv("LIVEREC_SERVE_API_KEY_FILE", str(tmp_path / "missing"))
    assert cli.main(argv) == 2  # one line, before any work


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # a real process: ~5 s alone, more on a busy machine
def test_served_process_keeps_the_key_out_of_argv(serve_run, tmp_path):
    """The documented way (a key file; the environment likewise) leaves no key in
    /proc/PID/cmdline, which every local user can read; the key still guards the data."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    key = "argv-test-key-0123456789"
    keys = tmp_path / "keys"
    keys.write_text(key + "\n")
    keys.chmod(0o600)
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "liverec", "serve", str(serve_run), "--port",
                             str(port), "--store", "memory://", "--api-key-file", str(keys)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            assert key.encode() not in f.read()
        assert httpx.get(f"{base}/v1/users/someone").status_code == 401
        r = httpx.get(f"{base}/v1/users/someone", headers={"X-API-Key": key})
        assert r.status_code == 404  # authorised; nobody of that name
    finally:
        proc.terminate()
        proc.wait(20)
