"""Re-fine-tuning from new events: known answer (a drifted rule is learned and published),
the held-out gate (a worse model is not published), bad input (clear errors, nothing
written), the CLI on a SQLite event log, and the hot-swap request."""

from __future__ import annotations

import http.server
import json
import threading

import numpy as np
import polars as pl
import pytest
from tests.conftest import N_ITEMS

import liverec
from liverec.cli import main
from liverec.errors import ArtifactError, DataError
from liverec.retrain import RetrainConfig, events_frame, merge_events, notify_reload, retrain
from liverec.serve.stores import Event, SQLiteStore

ORDER = np.random.default_rng(5).permutation(N_ITEMS)  # a new cyclic order of the items


def drift_events(n_users: int = 200, length: int = 10, order=ORDER, seed: int = 1):
    """New users walking ``order`` cyclically: a rule the model (next = last + 1) never saw."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(0, N_ITEMS))
        rows += [(f"new{u:04d}", str(order[(start + t) % N_ITEMS]), float(t))
                 for t in range(length)]
    return pl.DataFrame(rows, schema={"user_id": pl.Utf8, "item_id": pl.Utf8,
                                      "ts": pl.Float64}, orient="row")


FAST = RetrainConfig(epochs=4, lr=1e-2, holdout=0.3, min_cases=5)


def test_learns_a_drifted_rule_and_publishes_a_loadable_version(trained_run, known_answer_data,
                                                                tmp_path):
    run_dir, _ = trained_run
    report = retrain(run_dir, drift_events(), tmp_path / "v2", FAST, base=known_answer_data)
    assert report["data"]["new_users"] == 200 and report["data"]["events_used"] == 2000
    assert report["current"]["ndcg@20"] < 0.3  # the old rule says last + 1
    assert report["new"]["ndcg@20"] > report["current"]["ndcg@20"] + 0.3, report["new"]
    assert report["published"] and report["best_epoch"] > 0
    rec = liverec.load(tmp_path / "v2")
    top = rec.recommend([str(i) for i in ORDER[10:14]], k=3)
    assert str(ORDER[14]) in [item for item, _ in top]
    meta = json.loads((tmp_path / "v2" / "config.json").read_text())
    assert meta["retrain"]["events_used"] == 2000
    assert json.loads((tmp_path / "v2" / "retrain.json").read_text())["published"]


def test_a_worse_model_is_not_published(trained_run, known_answer_data, tmp_path):
    run_dir, _ = trained_run
    rc = RetrainConfig(epochs=2, lr=50.0, holdout=0.3, min_cases=5)  # wrecks the weights
    same_rule = drift_events(order=np.arange(N_ITEMS))
    report = retrain(run_dir, same_rule, tmp_path / "v2", rc, base=known_answer_data)
    assert not report["published"] and report["best_epoch"] == 0
    assert not (tmp_path / "v2" / "model.safetensors").exists()  # the report only
    assert json.loads((tmp_path / "v2" / "retrain.json").read_text())["reason"]


def test_merge_appends_events_and_holds_out_new_ones(known_answer_data):
    ev = pl.DataFrame({"user_id": ["u0000", "u0000", "zz", "zz", "zz"],
                       "item_id": ["3", "4", "7", "nope", "8"], "ts": [1.0] * 5})
    prep, stats = merge_events(known_answer_data, known_answer_data.vocab, ev, 0.99, 0)
    assert stats["events_used"] == 4 and stats["events_skipped_unknown_item"] == 1
    assert stats["new_users"] == 1 and stats["users"] == known_answer_data.sequences.n_users + 1
    s, split = prep.sequences, prep.split
    u0 = list(s.users).index("u0000")
    base0 = known_answer_data.sequences.of(0)[: known_answer_data.split.train_end[0]]
    idx = known_answer_data.vocab.index_map()
    assert s.of(u0).tolist() == base0.tolist() + [idx["3"], idx["4"]]
    zz = list(s.users).index("zz")
    assert s.of(zz).tolist() == [idx["7"], idx["8"]]
    held = {u0, zz}  # both users with new events are held out (holdout 0.99)
    for u in held:
        pos = max(split.valid_pos[u], split.test_pos[u])
        assert pos == len(s.of(u)) - 1 and split.train_end[u] == pos
    assert (split.valid_pos > 0).sum() + (split.test_pos > 0).sum() == 2
    others = [u for u in range(s.n_users) if u not in held]
    assert (split.train_end[others] == s.lengths[others]).all()


def test_bad_input_is_refused_and_nothing_is_written(trained_run, known_answer_data, tmp_path):
    run_dir, _ = trained_run
    unknown = pl.DataFrame({"user_id": ["a"] * 3, "item_id": ["x", "y", "z"], "ts": [1.0] * 3})
    with pytest.raises(DataError, match="none of the 3 events"):
        retrain(run_dir, unknown, tmp_path / "v", FAST, base=known_answer_data)
    with pytest.raises(DataError, match="too few held-out cases"):
        retrain(run_dir, drift_events(n_users=4), tmp_path / "v", FAST, base=known_answer_data)
    with pytest.raises(DataError, match="missing"):
        events_frame(pl.DataFrame({"user": ["a"], "item_id": ["1"], "ts": [1.0]}))
    with pytest.raises(ArtifactError, match="must differ"):
        retrain(run_dir, drift_events(), run_dir, FAST, base=known_answer_data)
    with pytest.raises(DataError, match="no events"):
        retrain(run_dir, [], tmp_path / "v", FAST, base=known_answer_data)
    with pytest.raises(ValueError, match="holdout"):
        RetrainConfig(holdout=1.0)
    assert not (tmp_path / "v").exists()


def test_cli_retrains_from_a_sqlite_event_log(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    store = SQLiteStore(tmp_path / "events.db")
    store.append([Event(r["user_id"], r["item_id"], f"e{i}", r["ts"])
                  for i, r in enumerate(drift_events().iter_rows(named=True))])
    store.close()
    rc = main(["retrain", str(run_dir), "--events", f"sqlite:///{tmp_path / 'events.db'}",
               "--out", str(tmp_path / "v2"), "--no-replay", "--epochs", "4", "--lr", "0.01",
               "--holdout", "0.3", "--min-cases", "5"])
    out = capsys.readouterr().out
    assert rc == 0 and "published" in out and "2,000 used" in out
    assert liverec.load(tmp_path / "v2").model is not None
    assert main(["retrain", str(run_dir), "--events", str(tmp_path / "none.parquet"),
                 "--out", str(tmp_path / "v3")]) == 2
    assert "no such file" in capsys.readouterr().err


class _Reload(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Reload.seen.append((self.path, self.headers.get("X-API-Key"), body))
        out = json.dumps({"previous_version": "a", "model_version": "b"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def test_notify_reload_posts_the_new_version(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Reload)
    threading.Thread(target=server.handle_request, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    answer = notify_reload(url, tmp_path / "v2", api_key="k")
    server.server_close()
    assert answer["model_version"] == "b"
    path, key, body = _Reload.seen[-1]
    assert path == "/admin/reload" and key == "k"
    assert body == {"run_dir": str((tmp_path / "v2").resolve())}
    with pytest.raises(ArtifactError, match="cannot reach"):
        notify_reload(url, tmp_path / "v2", timeout=2)


def test_every_round_starts_from_the_newest_version(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    path = tmp_path / "events.parquet"
    drift_events().write_parquet(path)
    args = ["retrain", str(run_dir), "--events", str(path), "--out", str(tmp_path / "versions"),
            "--no-replay", "--epochs", "4", "--lr", "0.01", "--holdout", "0.3",
            "--min-cases", "5", "--every", "0.01", "--rounds", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2,000 events; retraining" in out and "published" in out
    assert "no new events" in out  # the second round: the log did not grow
    versions = [p for p in (tmp_path / "versions").iterdir() if (p / "model.safetensors").is_file()]
    assert len(versions) == 1 and liverec.load(versions[0]).model is not None


def test_new_items_get_rows_learnt_from_the_events(trained_run, known_answer_data, tmp_path):
    """New users walk a cycle of 10 items the model has never seen: the current model cannot
    recommend them at all; the retrained one learns their rows and is published."""
    run_dir, _ = trained_run
    new_cycle = np.array([f"new{i}" for i in range(10)], dtype=object)
    rows = []
    for u in range(150):
        rows += [(f"nu{u}", str(new_cycle[(u + t) % 10]), float(t)) for t in range(8)]
    events = pl.DataFrame(rows, schema={"user_id": pl.Utf8, "item_id": pl.Utf8,
                                        "ts": pl.Float64}, orient="row")
    rc = RetrainConfig(epochs=6, lr=1e-2, holdout=0.3, min_cases=5)
    report = retrain(run_dir, events, tmp_path / "v2", rc, base=known_answer_data)
    d = report["data"]
    assert d["new_items"] == 10 and d["events_skipped_unknown_item"] == 0
    assert report["current"]["ndcg@20"] == 0.0  # it has no row for any target
    assert report["published"] and report["new"]["ndcg@20"] > 0.3
    rec = liverec.load(tmp_path / "v2")
    assert rec.model.cfg.n_items == N_ITEMS + 10 and rec.vocab.n_items == N_ITEMS + 10
    top = [i for i, _ in rec.recommend(["new1", "new2", "new3"], k=3)]
    assert set(top) <= set(new_cycle)  # the new rows are learnt and recommended
    rc_skip = RetrainConfig(epochs=1, lr=1e-2, holdout=0.3, min_cases=5, new_item_min_events=0)
    with pytest.raises(DataError, match="none of the 1200 events"):
        retrain(run_dir, events, tmp_path / "v3", rc_skip, base=known_answer_data)
