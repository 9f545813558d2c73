"""Re-ranking trade-off on Beauty: accuracy vs diversity / exposure / calibration per lambda.

    LIVEREC_DATA=../shared/data OMP_NUM_THREADS=1 \
        python benchmarks/rerank_tradeoff.py --data beauty [--run runs/x] [--epochs 3]

Without ``--run`` it first trains a SHORT SASRec (configs/beauty/sasrec.json with
train.epochs=--epochs, one thread: a few minutes on this CPU), not the README's converged model.
Then, on the test split (leave-one-out, full ranking, history masked), each user's top-200
items go through the re-ranking stage to a list of 20, for a sweep of settings: MMR lambda,
calibration lambda (Steck 2018), exposure cap (share of head items). Per setting: NDCG@20,
HR@20 (target position in the final list), intra-list diversity, exposure Gini, coverage,
novelty, ARP, calibration error, and the stage's latency (p50/p99 per request). Writes
benchmarks/results/rerank_tradeoff_<data>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import liverec
from liverec.config import DataConfig, apply_overrides, load_config
from liverec.data.pipeline import load_and_prepare
from liverec.evaluate.beyond import beyond_metrics
from liverec.evaluate.metrics import MISS, hit_rate, ndcg
from liverec.evaluate.protocol import mask_seen, pad_left, rank_targets, top_items
from liverec.rerank import (
    CalibrationConfig,
    ExposureConfig,
    GreedyReranker,
    HardRules,
    MMRConfig,
    RerankConfig,
    catalogue_for,
    categories_from_attributes,
)

RESULTS = Path(__file__).parent / "results"
SHORT_RUN = "A short-trained SASRec, not the README's converged model"
ROOT = Path(__file__).parent.parent
log = logging.getLogger("rerank_tradeoff")


@dataclass(frozen=True)
class Setting:
    """One point of the sweep: the stage's config, the catalogue it reads (``model``: the
    model's item vectors and training popularity; ``exposure``: popularity = how often the
    model lists each item without re-ranking; ``centred``: the item vectors minus their mean)
    and the relevance transform (None = the scores; ``T``: ``exp((s - max s) / T)`` per user,
    which keeps the order and concentrates relevance on the head of the list)."""

    config: RerankConfig
    catalogue: str = "model"
    sharpen: float | None = None
    budget: int | None = None
    pool: int | None = None  # re-rank only the model's top ``pool`` candidates


def settings() -> dict[str, RerankConfig | Setting]:
    """The sweep: one family per objective, lambda (or cap) from mild to strong. The first
    block is the original sweep; the second (issue 17, step 6) tries to reach the target with
    a sharper relevance for MMR, a centred similarity, and a penalty on the model's own
    exposure."""
    out: dict[str, RerankConfig | Setting] = {"none": RerankConfig()}
    for lam in (0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.7):
        out[f"mmr {lam}"] = RerankConfig(mmr=MMRConfig(lam))
    for lam in (0.1, 0.3, 0.5, 0.7, 0.9):
        out[f"calibration {lam}"] = RerankConfig(calibration=CalibrationConfig(lam))
    for lam in (0.1, 0.2, 0.3, 0.4, 0.5, 0.7):
        out[f"popularity penalty {lam}"] = RerankConfig(exposure=ExposureConfig(penalty=lam))
    for share in (0.75, 0.5, 0.25):
        out[f"head cap top10% <= {share}"] = RerankConfig(exposure=ExposureConfig(0.1, share))
    out["all: cap 4/cat, mmr 0.2, cal 0.2, pop 0.2"] = RerankConfig(
        rules=HardRules(max_per_category=4), mmr=MMRConfig(0.2),
        calibration=CalibrationConfig(0.2), exposure=ExposureConfig(0.1, 1.0, 0.2))
    for temp in (1.0, 0.5, 0.25):
        for lam in (0.3, 0.5, 0.7, 0.8, 0.9):
            out[f"mmr-sharp T={temp} {lam}"] = Setting(RerankConfig(mmr=MMRConfig(lam)),
                                                      sharpen=temp)
    for lam in (0.3, 0.45, 0.5):
        out[f"mmr-centred {lam}"] = Setting(RerankConfig(mmr=MMRConfig(lam)), "centred")
    for lam in (0.3, 0.5, 0.7, 0.9):
        out[f"exposure penalty {lam}"] = Setting(
            RerankConfig(exposure=ExposureConfig(penalty=lam)), "exposure")
    for lam in (0.3, 0.5, 0.7):
        out[f"exposure-sharp T=0.5 {lam}"] = Setting(
            RerankConfig(exposure=ExposureConfig(penalty=lam)), "exposure", sharpen=0.5)
    for share in (0.5, 0.25):
        out[f"exposure cap top10% <= {share}"] = Setting(
            RerankConfig(exposure=ExposureConfig(0.1, share)), "exposure")
    for budget in (800, 400, 200, 100, 50):
        out[f"exposure budget {budget}"] = Setting(RerankConfig(), budget=budget)
    for budget in (400, 200, 100):
        out[f"exposure budget + mmr 0.3, budget {budget}"] = Setting(
            RerankConfig(mmr=MMRConfig(0.3)), budget=budget)
    # round 2: spend the accuracy a popularity or exposure penalty gains on MMR; MMR over a
    # smaller pool; the exposure penalty's cliff between 0.3 and 0.5
    for m, q in ((0.3, 0.3), (0.4, 0.3), (0.45, 0.3), (0.5, 0.3), (0.4, 0.4), (0.5, 0.4)):
        out[f"mmr {m} + popularity penalty {q}"] = RerankConfig(
            mmr=MMRConfig(m), exposure=ExposureConfig(penalty=q))
    for m, q in ((0.3, 0.2), (0.4, 0.2), (0.5, 0.2)):
        out[f"mmr {m} + exposure penalty {q}"] = Setting(
            RerankConfig(mmr=MMRConfig(m), exposure=ExposureConfig(penalty=q)), "exposure")
    for pool in (50, 100):
        for lam in (0.5, 0.6, 0.7):
            out[f"mmr top-{pool} pool {lam}"] = Setting(RerankConfig(mmr=MMRConfig(lam)),
                                                       pool=pool)
    for q in (0.31, 0.32, 0.33, 0.34, 0.35, 0.4, 0.45):
        out[f"exposure penalty {q}"] = Setting(
            RerankConfig(exposure=ExposureConfig(penalty=q)), "exposure")
    # round 3: the same picks listed by score (the set, hence diversity, is unchanged), and
    # max-sum diversification of the list's ILD against the model's probabilities: the greedy
    # list maximises (1 - lam) * expected hit rate + lam * ILD, then is listed by score
    for lam in (0.4, 0.5, 0.6):
        out[f"mmr by score {lam}"] = RerankConfig(mmr=MMRConfig(lam), order="score")
    for lam in ILD_LAMBDAS:
        out[f"max-sum ILD, probability {lam}"] = RerankConfig(
            mmr=MMRConfig(lam, "sum"), relevance="probability", order="score")
    return out


ILD_LAMBDAS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)


def sharpen(vals: np.ndarray, temp: float | None) -> np.ndarray:
    """``exp((s - max s) / T)`` per row (order kept, -inf stays -inf). (C, n) -> (C, n)."""
    if temp is None:
        return vals
    top = np.max(np.where(np.isfinite(vals), vals, -np.inf), axis=1, keepdims=True)
    out = np.exp((vals - np.where(np.isfinite(top), top, 0.0)) / temp)
    return np.where(np.isfinite(vals), out, -np.inf)


def get_run(args) -> Path:
    if args.run:
        return Path(args.run)
    from liverec.train.loop import train

    cfg = apply_overrides(load_config(ROOT / "configs/beauty/sasrec.json"),
                          [f"train.epochs={args.epochs}", f"data.source={args.data}"])
    out = ROOT / "runs" / f"rerank_tradeoff_{args.data}_e{args.epochs}"
    log.info("training a short SASRec (%d epochs) into %s", args.epochs, out)
    train(cfg, load_and_prepare(cfg.data), out)
    return out


def candidates(rec, histories, n_cand: int) -> tuple[np.ndarray, np.ndarray]:
    """Top n_cand items per case with their scores (history masked). -> (C, n), (C, n)."""
    cands = np.zeros((len(histories), n_cand), dtype=np.int64)
    vals = np.full((len(histories), n_cand), -np.inf)
    for s in range(0, len(histories), 1024):
        hist = histories[s : s + 1024]
        with torch.no_grad():
            scores = mask_seen(rec.model.score(torch.from_numpy(
                pad_left(hist, rec.max_len))).float(), hist)  # (B, N + 1)
        top = top_items(scores, n_cand)  # (B, n)
        cands[s : s + len(hist)] = top.numpy()
        vals[s : s + len(hist)] = scores.gather(1, top).numpy()
    return cands, vals


def run_setting(rr, cfg, cands, vals, histories, k, budget: int | None = None,
                order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank every case. -> (C, k) lists (0 = empty slot), (C, 2) seconds per request: wall
    clock and this thread's CPU time (the shared machine preempts the process, which inflates
    the wall-clock tail but not the CPU time).

    ``budget``: a cross-user exposure budget (FairRec-style cap, Patro et al. WWW 2020): users
    are served in ``order`` and an item already listed ``budget`` times is no longer a
    candidate (a shared counter a service keeps per item); the masking is timed with the
    stage."""
    tops = np.zeros((len(cands), k), dtype=np.int64)
    secs = np.zeros((len(cands), 2))
    shown = np.zeros(rr.catalogue.n_items + 1, dtype=np.int64)
    for c in (range(len(cands)) if order is None else order):
        t, cpu = time.perf_counter_ns(), time.thread_time_ns()
        row = vals[c]
        if budget is not None:
            row = np.where(shown[cands[c]] >= budget, -np.inf, row)
        items, _ = rr.rerank(cands[c], row, k, history=histories[c], config=cfg)
        if budget is not None:
            shown[items] += 1
        secs[c] = (time.perf_counter_ns() - t) * 1e-9, (time.thread_time_ns() - cpu) * 1e-9
        tops[c, : len(items)] = items
    return tops, secs


def accuracy(tops: np.ndarray, targets: np.ndarray, k: int) -> dict[str, float]:
    hit = tops == targets[:, None]  # (C, k)
    ranks = np.where(hit.any(1), hit.argmax(1), MISS).astype(np.float64)
    return {f"ndcg@{k}": ndcg(ranks, k), f"hr@{k}": hit_rate(ranks, k)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="beauty")
    ap.add_argument("--run", help="a trained run directory (default: train a short one)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--users", type=int, default=0, help="first N test users (0 = all)")
    ap.add_argument("--render", help="re-write the md and png from a results JSON, no run")
    ap.add_argument("--about", help="what the model is, for the report (with --run)")
    ap.add_argument("--training", help="how the --run was trained (its command), for the report")
    args = ap.parse_args()
    if args.render:
        payload = json.loads(Path(args.render).read_text())
        stem = Path(args.render).with_suffix("")
        plot(payload["settings"], payload["k"], stem.with_suffix(".png"))
        stem.with_suffix(".md").write_text(render(payload))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    run = get_run(args)
    rec = liverec.load(run)
    data_cfg = DataConfig(**{**rec.meta.get("data", {}), "source": args.data}) \
        if isinstance(rec.meta.get("data"), dict) else DataConfig(source=args.data)
    prepared = load_and_prepare(data_cfg, vocab=rec.vocab)
    _, histories, targets = prepared.eval_cases("test")
    if args.users:
        histories, targets = histories[: args.users], targets[: args.users]
    pop = prepared.train_item_counts().astype(np.float64)  # (N + 1,) training counts
    attrs = [[]] + [a or [] for a in rec.items.sort("index")["attributes"].to_list()]
    cats = categories_from_attributes(attrs)
    catalogue = catalogue_for(rec, popularity=pop, categories=cats)
    t0 = time.perf_counter()
    cands, vals = candidates(rec, histories, args.candidates)
    shown = np.bincount(cands[:, : args.k][cands[:, : args.k] > 0].ravel(),
                        minlength=catalogue.n_items + 1).astype(np.float64)
    centred = catalogue.vectors - catalogue.vectors[1:].mean(0)
    centred[0] = 0.0
    order = np.random.default_rng(0).permutation(len(targets))  # serving order (budgets)
    rerankers = {"model": GreedyReranker(catalogue),
                 "exposure": GreedyReranker(dataclasses.replace(catalogue, popularity=shown)),
                 "centred": GreedyReranker(dataclasses.replace(catalogue, vectors=centred))}
    protocol = rank_targets(lambda h: rec.model.score(torch.from_numpy(
        pad_left(h, rec.max_len))).float(), histories, targets, top_k=args.k)
    log.info("scored %d cases in %.1f s", len(targets), time.perf_counter() - t0)
    rows = {}
    for name, setting in settings().items():
        if not isinstance(setting, Setting):
            setting = Setting(setting)
        cfg = setting.config
        t0 = time.perf_counter()
        pool = setting.pool or cands.shape[1]
        tops, secs = run_setting(rerankers[setting.catalogue], cfg, cands[:, :pool],
                                 sharpen(vals[:, :pool], setting.sharpen), histories, args.k,
                                 setting.budget, order)
        row = accuracy(tops, targets, args.k)
        if setting.budget is not None:  # served first vs served last: what the budget costs
            quarter = len(order) // 4
            row["ndcg_first_quarter"] = accuracy(tops[order[:quarter]], targets[order[:quarter]],
                                                 args.k)[f"ndcg@{args.k}"]
            row["ndcg_last_quarter"] = accuracy(tops[order[-quarter:]],
                                                targets[order[-quarter:]], args.k)[f"ndcg@{args.k}"]
        row.update(beyond_metrics(tops, n_items=catalogue.n_items, vectors=catalogue.vectors,
                                  popularity=pop, n_users=len(prepared.train_sequences()),
                                  histories=histories, categories=cats))
        row["latency_ms_p50"] = float(np.percentile(secs[:, 0], 50) * 1e3)
        row["latency_ms_p99"] = float(np.percentile(secs[:, 0], 99) * 1e3)
        row["cpu_ms_p50"] = float(np.percentile(secs[:, 1], 50) * 1e3)
        row["cpu_ms_p99"] = float(np.percentile(secs[:, 1], 99) * 1e3)
        row["config"] = cfg.describe()
        row["catalogue"], row["sharpen"] = setting.catalogue, setting.sharpen
        row["budget"], row["pool"] = setting.budget, pool
        rows[name] = row
        log.info("%s: ndcg@20 %.4f div %.3f gini %.3f cal %.3f p99 %.3f ms (%.0f s)", name,
                 row[f"ndcg@{args.k}"], row["diversity"], row["exposure_gini"],
                 row["calibration_error"], row["latency_ms_p99"], time.perf_counter() - t0)
    payload = {
        "data": args.data, "run": str(run),
        "about": args.about or ("a given run" if args.run else SHORT_RUN),
        "training": (args.training or f"given run directory {run}" if args.run else
                     f"trained here: configs/beauty/sasrec.json, train.epochs={args.epochs}, "
                     "one thread"),
        "model_test_metrics": json.loads((run / "metrics.json").read_text()).get("model", {})
        .get("test", {}) if (run / "metrics.json").is_file() else {},
        "protocol_ndcg@20_no_rerank": ndcg(protocol.ranks, args.k),
        "cases": len(targets), "candidates": args.candidates, "k": args.k,
        "n_items": catalogue.n_items,
        "categories": "per item, its most common attribute in the catalogue (a proxy: Beauty's "
                      "attribute ids are anonymised categories and brands)",
        "diversity_vectors": "the model's output item embeddings (the vectors MMR uses)",
        "popularity": "training interaction counts; head = the 10% most popular items; "
                      "the popularity penalty uses log(1 + count) / log(1 + max count); the "
                      "'exposure' settings use, instead of training counts, how often the model "
                      "lists each item in the users' top-k without re-ranking (the two-pass "
                      "exposure a service can count from its own answers)",
        "sharpen": "'-sharp T=t' settings pass exp((s - max s) / t) instead of the raw scores "
                   "(same order; the stage's min-max relevance then favours the list's head); "
                   "'mmr-centred' measures MMR's similarity on the item vectors minus their "
                   "mean; diversity is always measured on the model's own item vectors",
        "budget": "'exposure budget B': users served one by one in a seeded random order, an "
                  "item listed B times (over all users so far) is no longer a candidate "
                  "(FairRec-style cap, Patro et al. WWW 2020); ndcg_first/last_quarter compare "
                  "the first and last quarter of users served",
        "settings": rows,
        "verdict": verdict(rows, args.k),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"rerank_tradeoff_{args.data}"
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(rows, args.k, stem.with_suffix(".png"))
    stem.with_suffix(".md").write_text(render(payload))
    return 0


def verdict(rows: dict, k: int) -> dict:
    """Settings that cut exposure Gini or raise diversity by >= 20% at >= 95% of NDCG@k."""
    base = rows["none"]
    out = {}
    for name, r in rows.items():
        keep = r[f"ndcg@{k}"] / base[f"ndcg@{k}"] if base[f"ndcg@{k}"] else 0.0
        gini_cut = 1 - r["exposure_gini"] / base["exposure_gini"]
        div_gain = r["diversity"] / base["diversity"] - 1
        out[name] = {"ndcg_kept": keep, "gini_cut": gini_cut, "diversity_gain": div_gain,
                     "meets": bool(keep >= 0.95 and (gini_cut >= 0.2 or div_gain >= 0.2))}
    return out


def plot(rows: dict, k: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    colours = {"mmr": "tab:blue", "calibration": "tab:green", "popularity": "tab:orange",
               "head": "tab:purple", "none": "black", "all:": "grey",
               "mmr-sharp": "tab:cyan", "mmr-centred": "tab:olive", "exposure": "tab:brown",
               "exposure-sharp": "tab:pink", "max-sum": "tab:red"}
    # "exposure budget ..." shares "exposure"
    groups: dict[str, list[str]] = {}
    for n in rows:  # a family per name without its numbers; a line when only the last differs
        groups.setdefault(re.sub(r"\d+(\.\d+)?", "#", n), []).append(n)
    markers = "os^vD<>p*h"
    for ax, metric, label in ((axes[0], "diversity", "intra-list diversity (cosine distance)"),
                              (axes[1], "exposure_gini", "exposure Gini (lower = fairer)")):
        for g, (fam, names) in enumerate(groups.items()):
            line = len(names) > 1 and len({n.rpartition(" ")[0] for n in names}) == 1
            if line:  # along the swept value
                names = sorted(names, key=lambda n: float(n.rpartition(" ")[2]))
            xs = [rows[n][metric] for n in names]
            ys = [rows[n][f"ndcg@{k}"] for n in names]
            colour = colours.get(fam.split()[0], "grey")
            ax.plot(xs, ys, markers[g % len(markers)] + ("-" if line else ""),
                    color=colour, label=fam[:32], ms=4)
            for n, x, y in zip(names, xs, ys):
                ax.annotate(n.rpartition(" ")[2] if len(names) > 1 else "",
                            (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0.95 * rows["none"][f"ndcg@{k}"], ls="--", color="grey", lw=0.8,
                   label="95% of no re-ranking")
        ax.set_xlabel(label)
        ax.set_ylabel(f"NDCG@{k}")
    axes[1].legend(fontsize=6, loc="lower left", ncol=2)
    fig.suptitle(f"Re-ranking top-200 to {k}: accuracy vs diversity / exposure (Beauty test)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render(p: dict) -> str:
    k = p["k"]
    rows, v = p["settings"], p["verdict"]
    base = rows["none"]
    lines = [
        f"# Re-ranking trade-off on {p['data']} (test split, {p['cases']:,} users)\n",
        f"Model: `{p['run']}`. **{p.get('about', SHORT_RUN)}**: its "
        f"test NDCG@{k} without re-ranking is {base[f'ndcg@{k}']:.4f} (the protocol's own "
        f"figure: {p['protocol_ndcg@20_no_rerank']:.4f}). Each user's top-{p['candidates']} "
        f"items (history masked, full ranking) are re-ranked to {k}; NDCG/HR count the held-out "
        f"item's position in the final list.\n",
        f"Training: {p.get('training', 'see the run directory')}\n",
        f"Categories: {p['categories']}. Diversity vectors: {p['diversity_vectors']}. "
        f"Popularity: {p['popularity']}. Score transforms: {p.get('sharpen', 'none')}.\n",
        f"| setting | NDCG@{k} | HR@{k} | kept | diversity | Gini | coverage | novelty | ARP | "
        "cal. error | p50 ms | p99 ms | CPU p99 ms | meets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in rows.items():
        lines.append(
            f"| {n} | {r[f'ndcg@{k}']:.4f} | {r[f'hr@{k}']:.4f} | {v[n]['ndcg_kept']:.1%} | "
            f"{r['diversity']:.3f} | {r['exposure_gini']:.3f} | {r['coverage']:.3f} | "
            f"{r['novelty']:.2f} | {r['arp']:.1f} | {r['calibration_error']:.3f} | "
            f"{r['latency_ms_p50']:.3f} | {r['latency_ms_p99']:.3f} | {r['cpu_ms_p99']:.3f} | "
            f"{'yes' if v[n]['meets'] else 'no'} |")
    ok = [n for n in v if v[n]["meets"]]
    lines += ["", "Goal: a setting that cuts the exposure Gini or raises intra-list diversity by "
              f">= 20% while keeping >= 95% of NDCG@{k}.", ""]
    if ok:
        lines.append("Met by: " + "; ".join(
            f"`{n}` (NDCG kept {v[n]['ndcg_kept']:.1%}, Gini {-v[n]['gini_cut']:+.1%}, "
            f"diversity {v[n]['diversity_gain']:+.1%})" for n in ok) + ".")
    else:
        best = max(v, key=lambda n: max(v[n]["gini_cut"], v[n]["diversity_gain"])
                   if v[n]["ndcg_kept"] >= 0.95 else -1)
        lines.append(f"Not met by any of the {len(v) - 1} settings tried (every one is a row "
                     f"above). Closest at >= 95% NDCG: `{best}` (Gini "
                     f"{-v[best]['gini_cut']:+.1%}, diversity {v[best]['diversity_gain']:+.1%}).")
        fine = [n for n in v if v[n]["ndcg_kept"] >= 0.95]
        for key, what in (("diversity_gain", "diversity gain"), ("gini_cut", "Gini cut")):
            n = max(fine, key=lambda x: v[x][key])
            lines.append(f"Largest {what} at >= 95% NDCG: `{n}` ({v[n][key]:+.1%}, NDCG kept "
                         f"{v[n]['ndcg_kept']:.1%}).")
    lines += ["", "Other effects at >= 95% of NDCG@20 (best setting per metric):", ""]
    for metric, better, what in (("calibration_error", -1, "calibration error"),
                                 ("coverage", 1, "catalogue coverage"),
                                 ("novelty", 1, "novelty"), ("arp", -1, "ARP")):
        fine = [n for n in rows if v[n]["ndcg_kept"] >= 0.95 and n != "none"]
        if fine and base[metric]:
            n = max(fine, key=lambda x: better * rows[x][metric])
            lines.append(f"- {what}: `{n}` {base[metric]:.3f} -> {rows[n][metric]:.3f} "
                         f"({rows[n][metric] / base[metric] - 1:+.1%}), NDCG kept "
                         f"{v[n]['ndcg_kept']:.1%}.")
    lines += ["", f"The exposure Gini is taken over all {p.get('n_items', 0):,} items; without "
              f"re-ranking {1 - base['coverage']:.0%} of them are in no list at all (coverage "
              f"{base['coverage']:.3f}). Re-ranking each user's own top-{p['candidates']} can "
              "only reorder what the model already ranks high, so the Gini moves only as far as "
              "the candidates reach into the tail; a cross-user exposure budget (the 'exposure "
              "budget' rows) spreads the slots over more items.", ""]
    budget = [n for n in rows if rows[n].get("budget") is not None]
    if budget:
        lines += [f"Budgets: {p.get('budget', '')}.", "",
                  f"| setting | NDCG@{k} | kept | first quarter served | last quarter served | "
                  "Gini | coverage |", "|---|---|---|---|---|---|---|"]
        for n in budget:
            r = rows[n]
            lines.append(f"| {n} | {r[f'ndcg@{k}']:.4f} | {v[n]['ndcg_kept']:.1%} | "
                         f"{r['ndcg_first_quarter']:.4f} | {r['ndcg_last_quarter']:.4f} | "
                         f"{r['exposure_gini']:.3f} | {r['coverage']:.3f} |")
        lines.append("")
    lines += ["", f"Latency is the stage alone per request (k={k} from {p['candidates']} "
              "candidates, one thread, on a 2-core machine shared with other jobs): wall clock "
              "p50/p99, and the p99 of the thread's CPU time (what the stage itself costs; the "
              "wall-clock tail includes time the process waited for a core).", "",
              f"![trade-off](rerank_tradeoff_{p['data']}.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
