"""Explanation faithfulness and latency on a trained run's test users.

    LIVEREC_DATA=../shared/data python benchmarks/faithfulness.py runs/beauty --name beauty

For each sampled test user, the item explained is the model's top-1 recommendation (seen
items masked; ``--target test`` explains the held-out test item instead). Each method ranks
the history items; the benchmark then deletes the method's top item, and a random item, and
measures the real score change with a forward pass (drop = score before - score after), plus
the item's rank among all unseen items after each deletion.

Note on deletion: the primary method ranks history items by exactly this drop, so its top
item has the largest drop by construction; its ratio to a random deletion says how
concentrated the evidence is. Integrated gradients, attention and embedding similarity rank
the items without deleting anything, so their ratios are a real faithfulness test.

Latency: the whole explanation (batched deletion + evidence + reason) of the top-1 item for
50-item histories, batch 1, ``--threads`` threads (default 1), beside the per-deletion
reference loop and the k=10 reasons that ``explain=true`` adds, interleaved in one run.
Writes benchmarks/results/faithfulness_<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import liverec
from liverec.compress.variants import prepare_for
from liverec.evaluate.protocol import count_ahead, pad_left
from liverec.explain import Explainer
from liverec.explain.attribution import (
    attention_weights,
    deletion_batched,
    integrated_gradients,
    window_positions,
)
from liverec.explain.evidence import cosine_to

RESULTS = Path(__file__).parent / "results"
METHODS = ("deletion", "integrated_gradients", "attention", "similarity")


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def method_scores(ex: Explainer, hist: np.ndarray, item: int, row: torch.Tensor,
                  drops: np.ndarray) -> dict[str, np.ndarray]:
    """Each method's score per window position (higher = more responsible). -> {name: (P,)}."""
    att = attention_weights(ex.model, hist, ex.max_len)
    return {"deletion": drops,
            "integrated_gradients": integrated_gradients(ex.model, hist, row, ex.max_len),
            "attention": att if att is not None else np.full(len(drops), np.nan),
            "similarity": cosine_to(ex.items, item, hist[window_positions(hist, ex.max_len)])}


@torch.no_grad()
def rank_after(ex: Explainer, seqs: list[np.ndarray], item: int, seen: np.ndarray) -> list[float]:
    """Rank (1 = best, ties pessimistic, inf for a non-finite score) of ``item`` among all
    unseen items after each sequence. -> len(seqs)."""
    u = ex.model.encode_users(torch.from_numpy(pad_left(seqs, ex.max_len))).float()  # (B, D)
    s = u @ torch.from_numpy(np.ascontiguousarray(ex.items.table, dtype=np.float32)).T  # (B, N)
    own = s[:, item : item + 1].clone()  # (B, 1)
    s[:, 0] = float("-inf")
    s[:, torch.from_numpy(seen)] = float("-inf")
    s[:, item] = float("-inf")  # rank the item among the others, by the protocol's rule
    return count_ahead(s, own).add(1).tolist()


def faithfulness(ex: Explainer, cases: list[tuple[np.ndarray, int]], seed: int) -> dict:
    """Per method: mean drop of its top item vs a random item, and ranks after deletion."""
    rng = np.random.default_rng(seed)
    acc: dict[str, dict[str, list]] = {m: {"top": [], "rank": []} for m in METHODS}
    rand_drop, rand_exp, rand_rank, base_rank = [], [], [], []
    for hist, item in cases:
        row = torch.from_numpy(ex.items.table[item].astype(np.float32))
        _, drops = deletion_batched(ex.model, hist, row[None], ex.max_len)
        drops = drops[:, 0]  # (P,)
        pos = window_positions(hist, ex.max_len)
        r = int(rng.integers(len(pos)))
        rand_drop.append(drops[r])
        rand_exp.append(drops.mean())  # the expectation over a uniform random deletion
        scores = method_scores(ex, hist, item, row, drops)
        tops = {m: int(np.nanargmax(s)) if np.isfinite(s).any() else r
                for m, s in scores.items()}
        seqs = [hist] + [np.delete(hist, pos[j]) for j in (r, *tops.values())]
        ranks = rank_after(ex, seqs, item, np.unique(hist))
        base_rank.append(ranks[0])
        rand_rank.append(ranks[1])
        for (m, j), rk in zip(tops.items(), ranks[2:]):
            acc[m]["top"].append(drops[j])
            acc[m]["rank"].append(rk)
    out = {"cases": len(cases), "random": {
        "mean_drop_sampled": float(np.mean(rand_drop)),
        "mean_drop_expected": float(np.mean(rand_exp)),
        "median_rank_after": float(np.median(rand_rank)),
        "share_out_of_top10": float(np.mean(np.array(rand_rank) > 10))},
        "median_rank_before": float(np.median(base_rank)), "methods": {}}
    for m in METHODS:
        top = np.array(acc[m]["top"])
        out["methods"][m] = {
            "mean_drop_top": float(top.mean()),
            "drop_ratio": float(top.mean() / np.mean(rand_exp)),
            "drop_ratio_vs_sampled": float(top.mean() / np.mean(rand_drop)),
            "share_top_beats_random": float(np.mean(top > np.array(rand_drop))),
            "median_rank_after": float(np.median(acc[m]["rank"])),
            "share_out_of_top10": float(np.mean(np.array(acc[m]["rank"]) > 10))}
    return out


def latency(ex: Explainer, cases: list[tuple[np.ndarray, int]], top10: list[np.ndarray],
            repeats: int) -> dict:
    """ms per call, interleaved: explanation (batched), reference loop, reasons for 10 items."""
    paths = {"explain_top1": lambda h, i, t: ex.explain_indices(h, np.array([i])),
             "explain_top1_reference_loop": lambda h, i, t: ex.explain_indices(
                 h, np.array([i]), reference=True),
             "reasons_k10": lambda h, i, t: ex.reasons(h, t)}
    times: dict[str, list[float]] = {n: [] for n in paths}
    for h, i in cases[:5]:  # warm-up
        for fn in paths.values():
            fn(h, i, top10[0])
    for _ in range(repeats):
        for (h, i), t in zip(cases, top10):
            for n, fn in paths.items():
                t0 = time.perf_counter()
                fn(h, i, t)
                times[n].append((time.perf_counter() - t0) * 1e3)
    out = {n: {"p50_ms": float(np.median(v)), "p99_ms": float(np.percentile(v, 99)),
               "calls": len(v)} for n, v in times.items()}
    out["reference_over_batched_p50"] = (out["explain_top1_reference_loop"]["p50_ms"]
                                         / out["explain_top1"]["p50_ms"])
    return out


def long_histories(histories: list[np.ndarray], length: int, n: int,
                   rng: np.random.Generator) -> tuple[list[np.ndarray], str]:
    """``n`` histories of exactly ``length`` items: real ones (their last ``length``) when
    enough users have that many, else real ones topped up by concatenating other users'."""
    real = [h[-length:] for h in histories if len(h) >= length]
    if len(real) >= n:
        idx = rng.choice(len(real), n, replace=False)
        return [real[i] for i in idx], f"real test histories (last {length} items)"
    out = list(real)
    while len(out) < n:
        parts: list[np.ndarray] = []
        while sum(len(p) for p in parts) < length:
            parts.append(histories[int(rng.integers(len(histories)))])
        out.append(np.concatenate(parts)[-length:])
    return out, (f"{len(real)} real test histories with >= {length} items, "
                 f"{n - len(real)} made by concatenating random users' histories")


def top1(rec, histories: list[np.ndarray], batch: int = 256) -> np.ndarray:
    out = [rec.topk_indices(histories[s : s + batch], 10)[0]
           for s in range(0, len(histories), batch)]
    return np.concatenate(out)  # (B, 10)


def render(r: dict) -> str:
    f, lat = r["faithfulness"], r["latency"]
    lines = [f"# Explanation faithfulness: {r['name']}\n",
             f"`{r['command']}`\n",
             f"Run `{r['run_dir']}` (commit {r['commit']}), {f['cases']} test users (seed "
             f"{r['seed']}), item explained: {r['target']}; {r['threads']} thread(s). Drop = "
             f"score before - score after deleting one history item (real forward pass); "
             f"random = uniform over the model's window (expectation; one sampled draw per "
             f"user also shown). Median rank of the item before any deletion: "
             f"{f['median_rank_before']:.0f}.\n",
             "| method ranking the history | mean drop, its top item | ratio to random | "
             "ratio to sampled random | top beats sampled random | median rank after | "
             "out of top-10 after |", "|---|---:|---:|---:|---:|---:|---:|"]
    for m, v in f["methods"].items():
        lines.append(f"| {m} | {v['mean_drop_top']:.4f} | {v['drop_ratio']:.2f}x | "
                     f"{v['drop_ratio_vs_sampled']:.2f}x | {v['share_top_beats_random']:.1%} | "
                     f"{v['median_rank_after']:.0f} | {v['share_out_of_top10']:.1%} |")
    rd = f["random"]
    lines.append(f"| random item | {rd['mean_drop_expected']:.4f} (sampled "
                 f"{rd['mean_drop_sampled']:.4f}) | 1.00x | | | {rd['median_rank_after']:.0f} | "
                 f"{rd['share_out_of_top10']:.1%} |")
    lines += ["", "Deletion ranks history items by this very drop, so its top item has the "
              "largest drop by construction; the other rows are independent checks.", "",
              f"Latency, {lat['histories']} ({lat['n']} histories x {lat['repeats']} "
              f"repeats, batch 1, interleaved):\n", "| path | p50 ms | p99 ms | calls |",
              "|---|---:|---:|---:|"]
    for n in ("explain_top1", "explain_top1_reference_loop", "reasons_k10"):
        lines.append(f"| {n} | {lat[n]['p50_ms']:.2f} | {lat[n]['p99_ms']:.2f} | "
                     f"{lat[n]['calls']} |")
    lines += ["", f"Batched deletion is {lat['reference_over_batched_p50']:.1f}x faster than the "
              "per-deletion loop (p50).", "", "| criterion | value | target | pass |",
              "|---|---:|---|---|"]
    for k, c in r["criteria"].items():
        lines.append(f"| {k} | {c['value']:.2f} | {c['target']} | {c['pass']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a trained run directory (e.g. runs/beauty)")
    ap.add_argument("--name", default="beauty", help="results file stem suffix")
    ap.add_argument("--users", type=int, default=1000, help="test users sampled")
    ap.add_argument("--target", choices=("top1", "test"), default="top1")
    ap.add_argument("--latency-histories", type=int, default=200)
    ap.add_argument("--history-length", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    run_dir = Path(args.run_dir)
    rec = liverec.load(run_dir)
    ex = Explainer.from_recommender(rec)
    prepared = prepare_for(run_dir)
    _, histories, targets = prepared.eval_cases("test")
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(histories), min(args.users, len(histories)), replace=False)
    hists = [histories[i] for i in pick]
    items = top1(rec, hists)[:, 0] if args.target == "top1" else targets[pick]
    faith = faithfulness(ex, list(zip(hists, items.tolist())), args.seed)
    long, how = long_histories(histories, args.history_length, args.latency_histories, rng)
    tops = top1(rec, long)
    lat = latency(ex, list(zip(long, tops[:, 0].tolist())), list(tops), args.repeats)
    lat.update(histories=how, n=len(long), repeats=args.repeats)
    ratio = faith["methods"]["deletion"]["drop_ratio"]
    p99 = lat["explain_top1"]["p99_ms"]
    result = {"name": args.name, "run_dir": str(run_dir), "commit": git_commit(),
              "command": "python benchmarks/faithfulness.py " + " ".join(sys.argv[1:]),
              "target": "the model's top-1 recommendation" if args.target == "top1"
              else "the held-out test item", "seed": args.seed, "threads": args.threads,
              "faithfulness": faith, "latency": lat,
              "criteria": {"drop_ratio_deletion": {"value": ratio, "target": ">= 2",
                                                   "pass": bool(ratio >= 2)},
                           "drop_ratio_integrated_gradients": {
                               "value": faith["methods"]["integrated_gradients"]["drop_ratio"],
                               "target": "> 1 (context)", "pass": bool(
                                   faith["methods"]["integrated_gradients"]["drop_ratio"] > 1)},
                           "latency_p99_ms_50_items": {"value": p99, "target": "<= 50",
                                                       "pass": bool(p99 <= 50)}},
              "machine": {"python": sys.version.split()[0], "torch": torch.__version__,
                          "platform": platform.platform()},
              "wall_s": time.perf_counter() - t0}
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"faithfulness_{args.name}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(render(result))
    print(render(result))
    print(f"wrote {stem}.json and {stem}.md ({result['wall_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
