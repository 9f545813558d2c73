"""Repeat-aware mode on a repeat-heavy log: the mixture vs the masked default and the baselines.

    python benchmarks/repeat_bench.py --part main        # configs/listening/sasrec.json
    python benchmarks/repeat_bench.py --part threshold   # the sweep behind eval.repeat_threshold
    python benchmarks/repeat_bench.py --part adaptive    # the default's choice on real data

``main`` trains the frozen config (configs/beauty/sasrec.json's settings on the synthetic
listening log, eval.protocol left at "auto") through ``liverec.train.loop.train`` and ranks the
test cases under the repeat-aware protocol (history not masked) with: the masked default (the
same SASRec, history excluded from its list as under the masked protocol), the same SASRec
unmasked, the repeat baseline, pop / item-kNN / ALS, and the repeat-aware mode (the
repeat-explore mixture the run fitted on validation); overall and for repeat and explore
targets apart. It also checks that ``liverec.load(run).recommend_batch`` reproduces the
mixture's HR/NDCG@20. -> benchmarks/results/repeat_listening.{json,md}

``threshold`` generates listening logs with mean repeat propensity 0.05 ... 0.65 (the config's
log otherwise, sizes as overridden), trains the same config (at most ``--epochs`` epochs) with
eval.protocol=repeat and reports, against the measured training-split repeat rate, the
repeat-aware NDCG@20 of the masked default, of the repeat baseline and of the mixture.
-> benchmarks/results/repeat_threshold.{json,md}

``adaptive`` loads Beauty, LastFM (data only, no training), the synthetic shop and the listening
log and records the repeat rate and the protocol the data-adaptive default picks.
-> benchmarks/results/repeat_adaptive.{json,md}

Run with OMP_NUM_THREADS=1 (one thread) from the repository root.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import liverec
from liverec.config import apply_overrides, load_config
from liverec.data.pipeline import load_and_prepare
from liverec.data.repeats import resolve_protocol
from liverec.evaluate.baselines import make_baseline
from liverec.evaluate.metrics import MISS, all_metrics
from liverec.evaluate.protocol import evaluate_scores, mask_seen, model_score_fn
from liverec.model.artifact import load_model
from liverec.model.repeat import load_repeat
from liverec.train.loop import train

RESULTS = Path(__file__).parent / "results"
CONFIG = "configs/listening/sasrec.json"
KS = (5, 10, 20)
SHARES = (0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.65)


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    return {"threads": torch.get_num_threads(), "platform": platform.platform(),
            "torch": torch.__version__, "python": sys.version.split()[0]}


def scorers(run_dir: Path, prepared, baselines: tuple[str, ...]) -> dict:
    """name -> ScoreFn of every model compared under the repeat-aware protocol."""
    model, *_ = load_model(run_dir)
    plain = model_score_fn(model, model.cfg.max_len)
    out = {"masked default (history excluded from its list)":
           lambda h: mask_seen(plain(h), h),
           "SASRec (same model), unmasked": plain}
    _, histories, _ = prepared.eval_cases("test")
    for name in baselines:
        out[f"baseline: {name}"] = make_baseline(name).fit(histories, prepared.vocab.n_items).score
    head = load_repeat(run_dir, model)
    if head is not None:
        out["repeat-aware mode (repeat-explore mixture)"] = head
    return out


def compare(run_dir: Path, prepared, baselines: tuple[str, ...]) -> dict:
    rows = {}
    for name, fn in scorers(run_dir, prepared, baselines).items():
        t0 = time.perf_counter()
        rows[name] = evaluate_scores(fn, prepared, "test", KS, protocol="repeat")
        rows[name]["seconds"] = time.perf_counter() - t0
    model, *_ = load_model(run_dir)
    masked = evaluate_scores(model_score_fn(model, model.cfg.max_len), prepared, "test", KS)
    return {"repeat_aware": rows, "sasrec_masked_protocol": masked}


def api_check(run_dir: Path, prepared) -> dict:
    """HR/NDCG@20 of ``liverec.load(run).recommend_batch`` (default exclude_seen: the run's
    protocol), external ids in and out."""
    rec = liverec.load(run_dir)
    _, histories, targets = prepared.eval_cases("test")
    ids = prepared.vocab.ids
    ranks = []
    for a in range(0, len(targets), 512):
        hist = [[str(x) for x in ids[h]] for h in histories[a:a + 512]]
        for rec_list, t in zip(rec.recommend_batch(hist, k=20), ids[targets[a:a + 512]]):
            top = [i for i, _ in rec_list]
            ranks.append(top.index(t) if t in top else MISS)
    return all_metrics(np.array(ranks, dtype=np.float64), (20,))


def train_run(cfg, out: Path) -> tuple:
    t0 = time.perf_counter()
    prepared = load_and_prepare(cfg.data)
    result = train(cfg, prepared, out)
    cfg_run = json.loads((out / "config.json").read_text())
    return prepared, result, cfg_run.get("protocol_choice"), time.perf_counter() - t0


def part_main(args) -> dict:
    cfg = apply_overrides(load_config(args.config), args.overrides)
    out = Path(args.runs) / "listening"
    prepared, result, choice, wall = train_run(cfg, out)
    cmp = compare(out, prepared, ("repeat", "pop", "itemknn", "als"))
    api = api_check(out, prepared)
    mix = cmp["repeat_aware"].get("repeat-aware mode (repeat-explore mixture)", {})
    return {
        "part": "main", "config": args.config, "overrides": args.overrides,
        "data": prepared.stats, "protocol_choice": choice,
        "train": {"wall_s": result.wall_s, "best_epoch": result.best_epoch,
                  "epochs_run": len(result.epochs), "stopped": result.stopped,
                  "total_s": wall},
        "repeat_head": json.loads((out / "repeat.json").read_text())
        if (out / "repeat.json").is_file() else None,
        **cmp,
        "api_check": {**api, "matches_eval": bool(mix) and bool(
            np.isclose(api["hr@20"], mix["hr@20"], atol=1e-4)
            and np.isclose(api["ndcg@20"], mix["ndcg@20"], atol=1e-4))},
    }


def part_threshold(args) -> dict:
    base = apply_overrides(load_config(args.config), args.overrides)
    points = []
    for share in args.shares:
        cfg = apply_overrides(base, [f"data.synthetic.repeat_share={share}",
                                     f"train.epochs={args.epochs}", "eval.protocol=repeat"])
        out = Path(args.runs) / f"threshold_{share}"
        prepared, result, choice, wall = train_run(cfg, out)
        cmp = compare(out, prepared, ("repeat",))
        points.append({"repeat_share": share, "rate": choice["rate"], "train_s": wall,
                       "best_epoch": result.best_epoch, **cmp})
        logging.info("share %.2f: rate %.3f done in %.0f s", share, choice["rate"], wall)
    return {"part": "threshold", "config": args.config, "overrides": args.overrides,
            "epochs": args.epochs, "points": points}


def part_adaptive(args) -> dict:
    base = load_config(args.config)
    rows = {}
    for name, over in (("beauty", ["data.source=beauty"]), ("lastfm", ["data.source=lastfm"]),
                       ("synthetic shop (defaults)", ["data.source=synthetic",
                                                      "data.synthetic={}"]),
                       ("synthetic listening (configs/listening)", [])):
        cfg = apply_overrides(base, over)
        t0 = time.perf_counter()
        prepared = load_and_prepare(cfg.data)
        _, choice = resolve_protocol(cfg, prepared)
        _, hist, targets = prepared.eval_cases("test")
        test_share = float(np.mean([t in set(h.tolist()) for h, t in zip(hist, targets)]))
        rows[name] = {**choice, "test_repeat_share": test_share, "users": prepared.stats["users"],
                      "load_s": time.perf_counter() - t0}
    return {"part": "adaptive", "config": args.config, "rows": rows}


def fmt_rows(rows: dict, k: int = 20) -> list[str]:
    lines = [f"| model | NDCG@{k} | HR@{k} | MRR@{k} | repeat NDCG@{k} | repeat HR@{k} | "
             f"explore NDCG@{k} | explore HR@{k} |", "|---|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        keys = [f"ndcg@{k}", f"hr@{k}", f"mrr@{k}", f"repeat/ndcg@{k}", f"repeat/hr@{k}",
                f"explore/ndcg@{k}", f"explore/hr@{k}"]
        lines.append(f"| {name} | " + " | ".join(f"{m[x]:.4f}" for x in keys) + " |")
    return lines


def render(p: dict) -> str:
    head = [f"# Repeat-aware mode: `{p['part']}` (commit {p['commit']})\n",
            f"Command: `{p['command']}`; {p['machine']['threads']} thread(s), "
            f"torch {p['machine']['torch']}.\n"]
    if p["part"] == "main":
        return "\n".join(head + render_main(p)) + "\n"
    if p["part"] == "threshold":
        return "\n".join(head + render_threshold(p)) + "\n"
    return "\n".join(head + render_adaptive(p)) + "\n"


def render_main(p: dict) -> list[str]:
    d, c, t = p["data"], p["protocol_choice"], p["train"]
    rows = p["repeat_aware"]
    mix = rows.get("repeat-aware mode (repeat-explore mixture)")
    lines = [f"Config `{p['config']}` {' '.join(p['overrides'])}: {d['users']:,} users, "
             f"{d['items']:,} items, {d['interactions']:,} plays (mean {d['mean_seq_len']:.0f} "
             f"per user). Training-split repeat rate {c['rate']:.1%} -> protocol "
             f"**{c['protocol']}** ({c['chosen_by']}; threshold {c['threshold']:.0%}).\n",
             f"Test, repeat-aware protocol (history NOT masked; full ranking over every item; "
             f"{int(mix['repeat/cases']) if mix else '?'} repeat and "
             f"{int(mix['explore/cases']) if mix else '?'} explore targets):\n", *fmt_rows(rows),
             "", f"The same SASRec under the masked protocol (history masked, repeat targets are "
             f"misses): NDCG@20 {p['sasrec_masked_protocol']['ndcg@20']:.4f}, HR@20 "
             f"{p['sasrec_masked_protocol']['hr@20']:.4f}.\n",
             f"Training: {t['epochs_run']} epochs, best validation epoch {t['best_epoch']} "
             f"({t['stopped']}), {t['wall_s']:.0f} s; data + training + mixture fit "
             f"{t['total_s']:.0f} s.\n"]
    if p.get("repeat_head"):
        h = p["repeat_head"]
        lines.append("Fitted mixture (validation, " + f"{h['fit']['cases']:,} cases, NLL "
                     f"{h['fit']['nll_start']:.3f} -> {h['fit']['nll']:.3f}): item weights "
                     + ", ".join(f"{k} {v:+.3f}" for k, v in h["item_weights"].items())
                     + "; gate weights " + ", ".join(f"{k} {v:+.3f}" for k, v in
                                                     h["gate_weights"].items()) + ".\n")
    a = p["api_check"]
    lines.append(f"API check (`liverec.load(run).recommend_batch`, k=20, default exclude_seen): "
                 f"HR@20 {a['hr@20']:.4f}, NDCG@20 {a['ndcg@20']:.4f}; matches the protocol: "
                 f"{a['matches_eval']}.\n")
    return lines


def render_threshold(p: dict) -> list[str]:
    lines = [f"Config `{p['config']}` with data.synthetic.repeat_share varied, "
             f"train.epochs={p['epochs']}, eval.protocol=repeat. Test NDCG@20 under the "
             "repeat-aware protocol (explore NDCG@20 in brackets: the targets new to the user).\n",
             "| repeat_share | training repeat rate | test repeat share | masked default | "
             "repeat baseline | repeat-aware mode | gain over masked | best epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for q in p["points"]:
        rows = q["repeat_aware"]
        md = rows["masked default (history excluded from its list)"]
        rb = rows["baseline: repeat"]
        mx = rows["repeat-aware mode (repeat-explore mixture)"]
        lines.append(f"| {q['repeat_share']:.2f} | {q['rate']:.1%} | {md['repeat_share']:.1%} | "
                     f"{md['ndcg@20']:.4f} ({md['explore/ndcg@20']:.4f}) | "
                     f"{rb['ndcg@20']:.4f} ({rb['explore/ndcg@20']:.4f}) | "
                     f"{mx['ndcg@20']:.4f} ({mx['explore/ndcg@20']:.4f}) | "
                     f"{mx['ndcg@20'] / md['ndcg@20'] - 1:+.0%} | {q['best_epoch']} |")
    return lines


def render_adaptive(p: dict) -> list[str]:
    lines = ["| data | users | training repeat rate | test repeat share | protocol chosen |",
             "|---|---|---|---|---|"]
    for name, r in p["rows"].items():
        lines.append(f"| {name} | {r['users']:,} | {r['rate']:.1%} ({r['repeats']:,} of "
                     f"{r['next_events']:,}) | {r['test_repeat_share']:.1%} | {r['protocol']} "
                     f"(threshold {r['threshold']:.0%}) |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("main", "threshold", "adaptive"), default="main")
    ap.add_argument("--config", default=CONFIG)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--runs", default="runs/repeat_bench")
    ap.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    ap.add_argument("--epochs", type=int, default=20, help="threshold part: epochs per point")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run = {"main": part_main, "threshold": part_threshold, "adaptive": part_adaptive}[args.part]
    payload = run(args)
    payload.update(commit=git_commit(), machine=machine(),
                   command="python benchmarks/repeat_bench.py " + " ".join(sys.argv[1:]))
    name = {"main": "repeat_listening", "threshold": "repeat_threshold",
            "adaptive": "repeat_adaptive"}[args.part] + args.tag
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(render(payload))
    print(render(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
