"""ANN retrieval at catalogue scale: recall@50 against exact top-k, and per-request latency.

    LIVEREC_DATA=../shared/data python benchmarks/ann_scale.py runs/beauty --items 1000000

Catalogue: the run's trained item table (12,102 rows, padding first) followed by synthetic rows
up to ``--items``: each a random trained row plus Gaussian noise of half the per-dimension spread,
so the vectors are clustered like real item vectors rather than uniform. Queries: the run's user
vectors for real test-split histories. Retrievers: the library's exact, HNSW and IVF-flat (what
``liverec serve --retriever`` builds), one thread, one query per request, k=50 with the history's
items excluded as the service does; several query-time settings from one built index each.
Writes benchmarks/results/ann_scale_<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import liverec
from liverec.compress.variants import prepare_for
from liverec.evaluate.protocol import pad_left
from liverec.retrieval.ann import HNSWRetriever, IVFFlatRetriever, _faiss
from liverec.retrieval.exact import ExactRetriever

RESULTS = Path(__file__).parent / "results"
K = 50


def catalogue(table: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """(n, D) float32: the trained rows, then noisy copies of random trained rows."""
    rng = np.random.default_rng(seed)
    real = table[1:]
    extra = n - len(table)
    if extra <= 0:
        return table[:n].astype(np.float32)
    src = real[rng.integers(0, len(real), extra)]  # (extra, D)
    noise = rng.standard_normal(src.shape).astype(np.float32) * (0.5 * real.std(0))
    return np.concatenate([table, src + noise]).astype(np.float32)


def run_queries(ret, queries: np.ndarray, excludes: list[np.ndarray]) -> tuple[np.ndarray, list]:
    """Top-K ids per query, and the seconds of each one-query search."""
    ids, secs = [], []
    for q, ex in zip(queries, excludes):
        t = time.perf_counter()
        top, _ = ret.search(q[None, :], K, [ex])
        secs.append(time.perf_counter() - t)
        ids.append(top[0])
    return np.stack(ids), secs


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--name", default="beauty_1m")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rec = liverec.load(args.run_dir)
    model = rec.model
    prepared = prepare_for(Path(args.run_dir))
    _, hist, _ = prepared.eval_cases("test")
    pick = np.random.default_rng(1).permutation(len(hist))[: args.queries]
    hists = [hist[i] for i in pick]
    with torch.no_grad():
        queries = np.concatenate([
            model.encode_users(torch.from_numpy(pad_left(hists[i : i + 256], model.cfg.max_len)))
            .float().numpy() for i in range(0, len(hists), 256)])  # (Q, D)
    items = catalogue(model.item_table().detach().float().numpy(), args.items)
    print(f"catalogue {items.shape}, {len(queries)} queries", flush=True)
    rows = []
    t = time.perf_counter()
    exact = ExactRetriever(skip_rows=1).build(items)
    truth, secs = run_queries(exact, queries, hists)
    rows.append({"retriever": "exact", "setting": "-", "build_s": time.perf_counter() - t,
                 "recall@50": 1.0, "p50_ms": 1e3 * float(np.median(secs)),
                 "p99_ms": 1e3 * float(np.percentile(secs, 99))})
    print(rows[-1], flush=True)
    _faiss().omp_set_num_threads(2)  # building may use both cores; searching uses one
    builds = [("hnsw", HNSWRetriever(m=32, ef_construction=200, skip_rows=1),
               "efSearch", (128, 256, 512, 1024)),
              ("ivf_flat", IVFFlatRetriever(skip_rows=1), "nprobe", (32, 64, 128, 256))]
    for name, ret, knob, values in builds:
        t = time.perf_counter()
        ret.build(items)
        build_s = time.perf_counter() - t
        for v in values:
            if name == "hnsw":
                ret.index_.hnsw.efSearch = v
            else:
                ret.index_.nprobe = v
            found, secs = run_queries(ret, queries, hists)
            rows.append({"retriever": name, "setting": f"{knob}={v}", "build_s": build_s,
                         "recall@50": recall(found, truth),
                         "p50_ms": 1e3 * float(np.median(secs)),
                         "p99_ms": 1e3 * float(np.percentile(secs, 99))})
            print(rows[-1], flush=True)
        del ret
    result = {"run_dir": args.run_dir, "items": int(items.shape[0]), "dim": int(items.shape[1]),
              "queries": len(queries), "k": K, "threads_search": 1, "rows": rows,
              "target": "recall@50 >= 0.95 against exact top-k, p99 <= 15 ms per request"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"ann_scale_{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# ANN retrieval at scale `{args.name}` ({args.run_dir})\n",
             f"{items.shape[0]:,} items x {items.shape[1]} dims (the trained table + noisy copies "
             f"of its rows), {len(queries):,} real user vectors (test histories), top-{K} with "
             "the history excluded, one query per request, one search thread. Target: "
             f"{result['target']}.\n",
             "| retriever | setting | build s | recall@50 | p50 ms | p99 ms |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['retriever']} | {r['setting']} | {r['build_s']:.0f} | {r['recall@50']:.3f} "
              f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |" for r in rows]
    (RESULTS / f"ann_scale_{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
