"""Text bias report: where item-text vectors tilt exposure, text-only vs id-only vs fusion.

    python benchmarks/text_bias.py --run id=runs/beauty_id_e10 --run text=runs/beauty_text_e10 \
        --run fusion=runs/beauty_fusion_e10 [--users 0] [--k 20]

For every model (and a "text similarity" scorer with no training: the cosine between the mean
all-MiniLM-L6-v2 vector of the user's history items and each item's vector, i.e. what the
language model alone would show), each test user's top-k list (full ranking, history masked)
is collected and the report gives:

- exposure share by category (share of all list slots), beside the category's share of the
  catalogue and of the training interactions; categories are each item's most common attribute
  (Beauty's S3-Rec attribute ids are anonymised: each category is labelled by its most
  distinctive title words, computed here from the titles);
- how far each model's category exposure is from the interaction mix (total variation distance)
  and which categories text-based models raise or lower against the id-only model;
- exposure Gini over items, coverage, average recommendation popularity;
- hubness: how often an item is among the 10 nearest neighbours of other items in the
  MiniLM space (k-occurrence, Radovanovic et al. 2010); the Spearman correlation between an
  item's exposure and its hubness shows whether a model inherits the text space's hubs.

Writes benchmarks/results/text_bias_<data>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

import liverec
from liverec.config import DataConfig
from liverec.data.pipeline import load_and_prepare
from liverec.evaluate.beyond import average_popularity, exposure_counts, gini
from liverec.evaluate.metrics import all_metrics
from liverec.evaluate.protocol import mask_seen, target_ranks, top_items
from liverec.rerank.catalogue import categories_from_attributes

RESULTS = Path(__file__).parent / "results"
log = logging.getLogger("text_bias")
STOP = frozenset("""a an and or the of for with to in on by from oz ml fl fluid ounce ounces
pack count set size inch x new piece pieces""".split())


def category_labels(cats: np.ndarray, titles: list[str], attrs: list[list[str]],
                    top: int = 3) -> dict[int, str]:
    """Code -> "attr <id>: word, word, word": the attribute that defines the code (as
    ``categories_from_attributes`` chose it) and the words most particular to its titles
    (count in the category x log(categories / categories using the word))."""
    freq = Counter(a for row in attrs for a in row)
    code_attr: dict[int, str] = {}
    counts: dict[int, Counter] = {}
    for i in range(1, len(cats)):
        c = int(cats[i])
        if c < 0:
            continue
        code_attr.setdefault(c, min(attrs[i], key=lambda a: (-freq[a], a)))
        words = {w for w in re.findall(r"[a-z]{3,}", titles[i].lower()) if w not in STOP}
        counts.setdefault(c, Counter()).update(words)
    df: Counter = Counter()
    for ctr in counts.values():
        df.update(set(ctr))
    n = max(1, len(counts))
    out = {}
    for c, ctr in counts.items():
        score = {w: k * math.log(n / df[w]) for w, k in ctr.items() if k >= 2}
        words = sorted(score, key=lambda w: (-score[w], w))[:top]
        out[c] = f"attr {code_attr[c]}: {', '.join(words) or '-'}"
    return out


def hubness(vectors: np.ndarray, k: int = 10, chunk: int = 1024) -> np.ndarray:
    """k-occurrence of every item among the others' k nearest neighbours (cosine). -> (N + 1,)."""
    v = torch.from_numpy(vectors[1:].astype(np.float32))  # (N, E), unit rows
    occ = torch.zeros(len(v), dtype=torch.long)
    for s in range(0, len(v), chunk):
        sim = v[s : s + chunk] @ v.T  # (b, N)
        sim[torch.arange(sim.shape[0]), torch.arange(s, s + sim.shape[0])] = -2.0  # not self
        occ += torch.bincount(sim.topk(k, dim=1).indices.flatten(), minlength=len(v))
    return np.concatenate([[0], occ.numpy()])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den else 0.0


def lists_of(score_fn, histories, targets, k: int, batch: int = 1024):
    """(tops (C, k), ranks (C,)) under the protocol (history masked, pessimistic ties)."""
    tops = np.zeros((len(targets), k), dtype=np.int64)
    ranks = np.zeros(len(targets))
    for s in range(0, len(targets), batch):
        hist = histories[s : s + batch]
        with torch.no_grad():
            scores = mask_seen(score_fn(hist).float(), hist)  # (B, N + 1)
        tops[s : s + len(hist)] = top_items(scores, k).numpy()
        ranks[s : s + len(hist)] = target_ranks(scores, torch.from_numpy(
            targets[s : s + len(hist)])).numpy()
    return tops, ranks


def text_profile_scorer(vectors: np.ndarray):
    """Scores = cosine(mean of the history's text vectors, item vector). (B, N + 1)."""
    table = torch.from_numpy(vectors)

    def score(histories):
        prof = torch.stack([table[torch.from_numpy(h)].mean(0) for h in histories])  # (B, E)
        prof = prof / prof.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return prof @ table.T

    return score


def category_shares(tops: np.ndarray, cats: np.ndarray, n_codes: int) -> np.ndarray:
    """Share of the filled list slots per category code (-1 = no category, last bucket)."""
    items = tops[tops > 0]
    codes = np.where(cats[items] >= 0, cats[items], n_codes)
    return np.bincount(codes, minlength=n_codes + 1) / max(1, len(items))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], metavar="NAME=DIR",
                    help="a model to compare (repeatable), e.g. id=runs/beauty_id_e10")
    ap.add_argument("--data", default="beauty")
    ap.add_argument("--users", type=int, default=0, help="test users sampled (0 = all)")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top-categories", type=int, default=12)
    ap.add_argument("--render", metavar="JSON", help="re-write the md and png from a results "
                                                     "JSON, no run")
    args = ap.parse_args()
    if args.render:
        payload = json.loads(Path(args.render).read_text())
        stem = Path(args.render).with_suffix("")
        plot(payload, stem.with_suffix(".png"), args.top_categories)
        stem.with_suffix(".md").write_text(render(payload, args.top_categories))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if not args.run:
        ap.error("give --run NAME=DIR at least once (or --render)")
    runs = dict(r.split("=", 1) for r in args.run)
    recs = {name: liverec.load(path) for name, path in runs.items()}
    first = next(iter(recs.values()))
    for name, rec in recs.items():
        if list(rec.vocab.ids) != list(first.vocab.ids):
            raise SystemExit(f"{name}: another catalogue than {next(iter(recs))}")
    data_cfg = DataConfig(**{**first.meta.get("data", {}), "source": args.data})
    prepared = load_and_prepare(data_cfg, vocab=first.vocab)
    _, histories, targets = prepared.eval_cases("test")
    if args.users and args.users < len(targets):
        pick = np.sort(np.random.default_rng(args.seed).choice(len(targets), args.users,
                                                               replace=False))
        histories, targets = [histories[i] for i in pick], targets[pick]
    items = first.items
    titles = [""] + [t or "" for t in items["title"].to_list()]
    attrs = [[]] + [a or [] for a in items["attributes"].to_list()]
    cats = categories_from_attributes(attrs)
    n_codes = int(cats.max()) + 1
    labels = category_labels(cats, titles, attrs)
    pop = prepared.train_item_counts().astype(np.float64)
    t0 = time.perf_counter()
    text_vectors = first.text_index().vectors_  # (N + 1, E) unit MiniLM vectors
    hubs = hubness(text_vectors)
    log.info("text vectors and hubness in %.0f s", time.perf_counter() - t0)
    scorers = {"text similarity (no training)": text_profile_scorer(text_vectors)}
    scorers.update({name: rec.checked_scores for name, rec in recs.items()})
    rows = {}
    for name, fn in scorers.items():
        t0 = time.perf_counter()
        tops, ranks = lists_of(fn, histories, targets, args.k)
        exp = exposure_counts(tops, prepared.vocab.n_items)
        rows[name] = {
            "accuracy": all_metrics(ranks, (args.k,)),
            "category_share": category_shares(tops, cats, n_codes).tolist(),
            "exposure_gini": gini(exp[1:]),
            "coverage": float((exp[1:] > 0).mean()),
            "arp": average_popularity(tops, pop),
            "hubness_spearman": spearman(exp[1:], hubs[1:]),
            "top_hub_share": float(exp[np.argsort(-hubs)[: len(hubs) // 100]].sum()
                                   / max(1, exp.sum())),
            "seconds": time.perf_counter() - t0,
        }
        log.info("%s: ndcg@%d %.4f gini %.3f hub rho %.3f", name, args.k,
                 rows[name]["accuracy"][f"ndcg@{args.k}"], rows[name]["exposure_gini"],
                 rows[name]["hubness_spearman"])
    catalogue_share = np.bincount(np.where(cats[1:] >= 0, cats[1:], n_codes),
                                  minlength=n_codes + 1) / (len(cats) - 1)
    item_codes = np.where(cats >= 0, cats, n_codes)
    inter_share = np.bincount(item_codes, weights=pop, minlength=n_codes + 1) / pop.sum()
    for r in rows.values():
        r["tv_distance_to_interactions"] = float(0.5 * np.abs(
            np.array(r["category_share"]) - inter_share).sum())
    payload = {
        "command": "python benchmarks/text_bias.py " + " ".join(f"--run {r}" for r in args.run)
                   + f" --data {args.data} --users {args.users} --k {args.k} --seed {args.seed}",
        "data": args.data,
        "runs": {n: {"dir": p, "item_repr": recs[n].model.cfg.item_repr,
                     "training": _training(Path(p))} for n, p in runs.items()},
        "cases": len(targets), "k": args.k, "n_items": prepared.vocab.n_items,
        "n_categories": n_codes, "labels": {str(c): v for c, v in labels.items()},
        "catalogue_share": catalogue_share.tolist(), "interaction_share": inter_share.tolist(),
        "hubness": {"k": 10, "max": int(hubs.max()), "mean": float(hubs[1:].mean()),
                    "items_with_0": int((hubs[1:] == 0).sum()),
                    "top1pct_share_of_occurrences": float(
                        np.sort(hubs[1:])[::-1][: len(hubs) // 100].sum() / hubs.sum())},
        "rows": rows, "wall_s": time.perf_counter() - t_start,
        "cpu_s": time.process_time() - cpu_start,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"text_bias_{args.data}"
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(payload, stem.with_suffix(".png"), args.top_categories)
    stem.with_suffix(".md").write_text(render(payload, args.top_categories))
    log.info("wrote %s.{json,md,png}", stem)
    return 0


def _training(run: Path) -> str:
    log_file = run / "train_log.json"
    if not log_file.is_file():
        return "unknown"
    tl = json.loads(log_file.read_text())
    return (f"{len(tl.get('epochs', []))} epochs (best {tl.get('best_epoch')}), "
            f"{tl.get('wall_s', 0):.0f} s")


def _top_codes(p: dict, n: int) -> list[int]:
    share = np.array(p["interaction_share"][:-1])
    return [int(c) for c in np.argsort(-share, kind="stable")[:n]]


def plot(p: dict, path: Path, n_top: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes = _top_codes(p, n_top)
    names = list(p["rows"])
    series = {"training interactions": p["interaction_share"], **{
        n: p["rows"][n]["category_share"] for n in names}}
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.2), gridspec_kw={"width_ratios": [2.2, 1]})
    width = 0.8 / len(series)
    for j, (name, share) in enumerate(series.items()):
        axes[0].bar(np.arange(len(codes)) + j * width, [share[c] for c in codes], width,
                    label=name, color="black" if j == 0 else None)
    axes[0].set_xticks(np.arange(len(codes)) + 0.4 - width / 2)
    axes[0].set_xticklabels([p["labels"][str(c)] for c in codes], rotation=55, ha="right",
                            fontsize=7)
    axes[0].set_ylabel(f"share of top-{p['k']} slots")
    axes[0].set_title(f"Exposure by category (the {len(codes)} largest by interactions)")
    axes[0].legend(fontsize=8)
    for name in names:
        r = p["rows"][name]
        axes[1].scatter(r["exposure_gini"], r["hubness_spearman"], s=40)
        axes[1].annotate(name, (r["exposure_gini"], r["hubness_spearman"]), fontsize=8,
                         xytext=(4, 3), textcoords="offset points")
    axes[1].set_xlabel("exposure Gini over items")
    axes[1].set_ylabel("Spearman(item exposure, MiniLM hubness)")
    axes[1].set_title("Concentration and text-space hubs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render(p: dict, n_top: int) -> str:
    k = p["k"]
    rows = p["rows"]
    lines = [f"# Text bias on {p['data']}: exposure under "
             "text-only, id-only and fusion models\n",
             f"Command: `{p['command']}`\n",
             f"Test split, {p['cases']:,} users, top-{k} lists over {p['n_items']:,} items "
             "(full ranking, history masked). Models: " + "; ".join(
                 f"`{n}` = {r['dir']} (item_repr {r['item_repr']}, {r['training']})"
                 for n, r in p["runs"].items()) + ". `text similarity (no training)` ranks "
             "by the cosine between the mean MiniLM vector of the history and each item.\n",
             f"Categories: each item's most common attribute ({p['n_categories']} codes; "
             "Beauty's attribute ids are anonymised, so each is labelled by its most "
             "particular title words).\n",
             f"| scorer | NDCG@{k} | HR@{k} | exposure Gini | coverage | ARP | TV distance "
             "to interaction mix | Spearman(exposure, hubness) | share on the 1% hubs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n, r in rows.items():
        a = r["accuracy"]
        lines.append(f"| {n} | {a[f'ndcg@{k}']:.4f} | {a[f'hr@{k}']:.4f} | "
                     f"{r['exposure_gini']:.3f} | {r['coverage']:.3f} | {r['arp']:.1f} | "
                     f"{r['tv_distance_to_interactions']:.3f} | {r['hubness_spearman']:.3f} | "
                     f"{r['top_hub_share']:.3f} |")
    codes = _top_codes(p, n_top)
    names = list(rows)
    lines += ["", f"Exposure share by category (the {len(codes)} largest by training "
              "interactions; "
              "catalogue and interaction shares for reference):", "",
              "| category | catalogue | interactions | " + " | ".join(names) + " |",
              "|---|---|---|" + "---|" * len(names)]
    for c in codes:
        lines.append(f"| {p['labels'][str(c)]} | {p['catalogue_share'][c]:.3f} | "
                     f"{p['interaction_share'][c]:.3f} | " + " | ".join(
                         f"{rows[n]['category_share'][c]:.3f}" for n in names) + " |")
    lines += ["", _shifts(p), "", _hubs(p), "", f"![text bias](text_bias_{p['data']}.png)", "",
              f"Wall time {p['wall_s']:.0f} s, CPU {p['cpu_s']:.0f} s, one thread.", ""]
    return "\n".join(lines)


def _shifts(p: dict) -> str:
    rows = p["rows"]
    if "id" not in rows:
        return ""
    base = np.array(rows["id"]["category_share"])
    out = []
    for name in rows:
        if name == "id":
            continue
        diff = np.array(rows[name]["category_share"]) - base
        up = [int(c) for c in np.argsort(-diff)[:3] if c < p["n_categories"]]
        down = [int(c) for c in np.argsort(diff)[:3] if c < p["n_categories"]]
        out.append(f"- `{name}` vs `id`: raises " + ", ".join(
            f"{p['labels'][str(c)]} ({diff[c]:+.3f})" for c in up) + "; lowers " + ", ".join(
            f"{p['labels'][str(c)]} ({diff[c]:+.3f})" for c in down) + ".")
    return "Largest shifts of category exposure against the id-only model (share points):\n\n" \
        + "\n".join(out)


def _hubs(p: dict) -> str:
    h = p["hubness"]
    return (f"MiniLM hubness (10-NN k-occurrence over the catalogue's title vectors): max "
            f"{h['max']}, mean {h['mean']:.1f}, {h['items_with_0']:,} items are nobody's "
            f"neighbour, and the top 1% of items hold {h['top1pct_share_of_occurrences']:.1%} "
            "of all neighbour slots. A positive Spearman correlation means a scorer shows the "
            "text space's hubs more; `share on the 1% hubs` is the share of list slots taken "
            "by those items.")


if __name__ == "__main__":
    raise SystemExit(main())
