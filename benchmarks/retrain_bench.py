"""Re-fine-tuning from the service's own events, end to end, on a real run.

    LIVEREC_DATA=../shared/data python benchmarks/retrain_bench.py runs/beauty [--name beauty]

1. ``liverec serve RUN_DIR`` on a fresh SQLite store; every user's validation item (the next
   event after the training part the model learnt from) is POSTed to /v1/events.
2. ``liverec retrain`` (the CLI, a separate process) reads the store, fine-tunes from the
   served model with replay of its training data, checks the held-out new events and, when it
   is not worse there, writes a new version and hot-swaps it into the running server.
3. Independently of retrain's own check: test-split NDCG/HR@20 (each user's last item, full
   ranking, history masked) of the served model and the new version, and the model version
   the server reports before and after.
Writes benchmarks/results/retrain_<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
from serve_common import free_port, start_server, stop_server

import liverec
from liverec.compress.variants import prepare_for
from liverec.evaluate.protocol import evaluate_model

OUT = Path(__file__).parent / "results"


def post(url: str, body) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def ready(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
        return json.loads(r.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--name", default="beauty")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir).resolve()
    prepared = prepare_for(run_dir)
    users, hist, targets = prepared.eval_cases("valid")
    new_events = [{"user_id": str(prepared.sequences.users[u]), "item_id": str(item),
                   "event_id": f"valid-{u}", "timestamp": 1.8e9 + i}
                  for i, (u, item) in enumerate(zip(users, prepared.vocab.decode(targets)))]
    tmp = Path(tempfile.mkdtemp(prefix="retrain-bench-"))
    store = f"sqlite:///{tmp / 'events.db'}"
    port = free_port()
    proc = start_server(run_dir, port, "--store", store, log_path=tmp / "serve.log")
    try:
        before = ready(port)
        t = time.perf_counter()
        for i in range(0, len(new_events), 1000):
            post(f"http://127.0.0.1:{port}/v1/events", new_events[i : i + 1000])
        post_s = time.perf_counter() - t
        stored = ready(port)["events"]
        cmd = [sys.executable, "-m", "liverec", "retrain", str(run_dir), "--events", store,
               "--out", str(tmp / "v2"), "--epochs", str(args.epochs),
               "--server", f"http://127.0.0.1:{port}"]
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ,
                                   "OMP_NUM_THREADS": str(args.threads)})
        retrain_s = time.perf_counter() - t
        print(done.stdout, done.stderr[-2000:])
        after = ready(port)
    finally:
        stop_server(proc)
    report = json.loads((tmp / "v2" / "retrain.json").read_text())
    test = {}
    for name, path in (("served", run_dir), ("retrained", tmp / "v2")):
        if (path / "model.safetensors").is_file():
            model = liverec.load(path).model
            test[name] = evaluate_model(model, prepared, "test", (10, 20))
    result = {
        "run_dir": str(args.run_dir), "events_posted": len(new_events), "events_stored": stored,
        "post_s": post_s, "retrain_cli_s": retrain_s, "retrain_exit": done.returncode,
        "version_before": before["model_version"], "version_after": after["model_version"],
        "retrain": {k: report[k] for k in ("data", "current", "new", "best_epoch", "epochs",
                                           "published", "reason", "lr", "wall_s", "settings")},
        "test": test,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / f"retrain_{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    d, r = report["data"], report
    lines = [f"# Re-fine-tuning from served events `{args.name}` ({args.run_dir})\n",
             f"{len(new_events):,} events (each user's validation item) POSTed to a running "
             f"`liverec serve` in {post_s:.1f} s ({stored:,} in its SQLite log); `liverec "
             f"retrain --epochs {args.epochs} --server ...` took {retrain_s:.0f} s "
             f"(fine-tune {r['wall_s']:.0f} s, lr {r['lr']:g}, {args.threads} thread(s)), "
             f"exit {done.returncode}.\n",
             f"- events used {d['events_used']:,}, skipped {d['events_skipped_unknown_item']:,}; "
             f"held out {d['selection_cases']:,} (epoch choice) + {d['decision_cases']:,} "
             "(publish decision)",
             f"- held-out NDCG@20 {r['current']['ndcg@20']:.4f} -> {r['new']['ndcg@20']:.4f}, "
             f"HR@20 {r['current']['hr@20']:.4f} -> {r['new']['hr@20']:.4f}; best epoch "
             f"{r['best_epoch']}; published: {r['published']} ({r['reason']})",
             f"- server model version {before['model_version']} -> {after['model_version']}\n",
             "Test split (each user's last item; not used by retrain):\n",
             "| model | NDCG@10 | NDCG@20 | HR@20 |", "|---|---|---|---|"]
    lines += [f"| {n} | {m['ndcg@10']:.4f} | {m['ndcg@20']:.4f} | {m['hr@20']:.4f} |"
              for n, m in test.items()]
    if len(test) == 2:
        gain = test["retrained"]["ndcg@20"] / test["served"]["ndcg@20"] - 1
        lines.append(f"\nNDCG@20 {gain:+.1%} after re-fine-tuning on the served events.")
    (OUT / f"retrain_{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
