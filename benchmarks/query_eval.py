"""Query recommendations on Beauty: the target item's own title words as the query for its
own next purchase; query only vs history only vs blended.

    python benchmarks/query_eval.py --run runs/beauty_id_e10 [--users 0] [--valid-users 4000]

Protocol (full ranking, the evaluation protocol's rules: history masked, pessimistic ties):

- each case is a user's held-out next item (leave-one-out); its query is made from that item's
  title: ``title`` = the whole title, ``k words`` = k distinct words drawn at random (seeded per
  case) from the title's words of >= 2 letters that are not stop words or pure numbers;
  cases whose target has no usable title word are left out (counted);
- query only: cosine of the query's and the items' all-MiniLM-L6-v2 vectors (the item text is
  the run's text template over the catalogue, i.e. the title for Beauty); history only: the
  sequence model's scores; blended: ``liverec.text.query.blend_scores`` (z-scores over the
  unmasked items, weight w on the query), the path ``Recommender.recommend(query=...)`` uses;
- the blend weight (and normalisation) for each query kind is chosen on the validation split
  (each user's second-last item as the target, the history before it) and then reported on the
  test split; the whole validation grid is in the JSON.

Writes benchmarks/results/query_eval_<data>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import time
from pathlib import Path

import numpy as np
import torch

import liverec
from liverec.config import DataConfig
from liverec.data.pipeline import load_and_prepare
from liverec.evaluate.metrics import all_metrics
from liverec.evaluate.protocol import mask_seen, target_ranks
from liverec.text.query import QueryConfig, blend_scores

RESULTS = Path(__file__).parent / "results"
log = logging.getLogger("query_eval")
STOP = frozenset("""a an and or the of for with without to in on by from at as is it its this
that your you new oz ml fl fluid ounce ounces pack count set size inch piece pcs pieces ct x
""".split())
KINDS = {"title": None, "3 words": 3, "2 words": 2, "1 word": 1}
WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
NORMS = (("zscore", 1.0), ("softmax", 0.05), ("softmax", 0.1))
KS = (10, 20)
DEFAULT = "blend w=0.7 zscore"


def title_words(title: str) -> list[str]:
    """Distinct content words of a title, in order (lower case)."""
    words = [w for w in re.findall(r"[a-z0-9']+", title.lower())
             if sum(c.isalpha() for c in w) >= 2 and w not in STOP]
    return list(dict.fromkeys(words))


def make_queries(titles: list[str], targets: np.ndarray, n_words: int | None,
                 seed: int) -> list[str | None]:
    """One query per case (None = no usable title word)."""
    out: list[str | None] = []
    for c, t in enumerate(targets.tolist()):
        title = titles[t]
        words = title_words(title)
        if not words:
            out.append(None)
        elif n_words is None:
            out.append(title)
        else:
            gen = np.random.default_rng([seed, c, n_words])
            pick = gen.choice(len(words), size=min(n_words, len(words)), replace=False)
            out.append(" ".join(words[i] for i in sorted(pick)))
    return out


def stage_ranks(rec, histories, targets, queries_by_kind, batch: int,
                configs: dict[str, dict[str, QueryConfig]]) -> dict[str, dict[str, np.ndarray]]:
    """Ranks of every case under each scorer: {kind: {scorer: (C,) ranks}}; ``configs`` holds
    the blends to score per query kind."""
    index = rec.text_index()
    out: dict[str, dict[str, list]] = {k: {} for k in queries_by_kind}
    for s in range(0, len(targets), batch):
        hist = histories[s : s + batch]
        tgt = torch.from_numpy(targets[s : s + batch])
        with torch.no_grad():
            model = mask_seen(rec.checked_scores(hist), hist)  # (B, N + 1)
        hist_ranks = target_ranks(model.clone(), tgt).numpy()
        for kind, queries in queries_by_kind.items():
            q = queries[s : s + batch]
            text = mask_seen(index.similarity(q), hist)  # (B, N + 1)
            rows = out[kind]
            rows.setdefault("history only", []).append(hist_ranks)
            rows.setdefault("query only", []).append(target_ranks(text.clone(), tgt).numpy())
            for name, cfg in configs[kind].items():
                mixed = blend_scores(text, model, cfg)
                rows.setdefault(name, []).append(target_ranks(mixed, tgt).numpy())
        log.info("scored %d / %d cases", min(s + batch, len(targets)), len(targets))
    return {k: {n: np.concatenate(v) for n, v in rows.items()} for k, rows in out.items()}


def cases(prepared, stage: str, n_users: int, seed: int, titles, kinds):
    _, histories, targets = prepared.eval_cases(stage)
    order = np.arange(len(targets))
    if n_users and n_users < len(order):
        order = np.sort(np.random.default_rng(seed).choice(len(order), n_users, replace=False))
    histories = [histories[i] for i in order]
    targets = targets[order]
    queries = {k: make_queries(titles, targets, n, seed) for k, n in kinds.items()}
    keep = np.array([all(queries[k][c] is not None for k in kinds) for c in range(len(order))])
    histories = [h for h, ok in zip(histories, keep) if ok]
    queries = {k: [q for q, ok in zip(v, keep) if ok] for k, v in queries.items()}
    return histories, targets[keep], queries, int((~keep).sum()), len(order)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a trained run directory")
    ap.add_argument("--data", default="beauty")
    ap.add_argument("--users", type=int, default=0, help="test users sampled (0 = all)")
    ap.add_argument("--valid-users", type=int, default=4000,
                    help="validation users sampled to choose the weight (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--name", default=None, help="results file stem (default query_eval_<data>)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    rec = liverec.load(args.run)
    data_cfg = DataConfig(**{**rec.meta.get("data", {}), "source": args.data})
    prepared = load_and_prepare(data_cfg, vocab=rec.vocab)
    titles = [""] + [t or "" for t in rec.items["title"].to_list()]  # by index
    t0 = time.perf_counter()
    rec.text_index()
    index_s = time.perf_counter() - t0
    configs = {f"blend w={w} {n}" + (f" T={t}" if n == "softmax" else ""):
               QueryConfig(weight=w, normalise=n, temperature=t)
               for n, t in NORMS for w in WEIGHTS}
    results: dict = {}
    for stage, n_users in (("valid", args.valid_users), ("test", args.users)):
        hist, tgt, queries, dropped, sampled = cases(prepared, stage, n_users, args.seed,
                                                     titles, KINDS)
        if stage == "valid":  # the whole grid
            todo = {k: configs for k in KINDS}
        else:  # the blend chosen on validation, and the default
            chosen = summarise_valid(results["valid"], configs)
            todo = {k: {n: configs[n] for n in (chosen[k]["setting"], DEFAULT)} for k in KINDS}
        t0 = time.perf_counter()
        ranks = stage_ranks(rec, hist, tgt, queries, args.batch, todo)
        results[stage] = {
            "cases": len(tgt), "sampled_users": sampled, "dropped_no_title_word": dropped,
            "seconds": time.perf_counter() - t0,
            "examples": {k: v[:5] for k, v in queries.items()},
            "metrics": {k: {n: all_metrics(r, KS) for n, r in rows.items()}
                        for k, rows in ranks.items()},
        }
    payload = summarise(results, configs)
    payload.update({
        "command": "python benchmarks/query_eval.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "run": str(args.run), "data": args.data,
        "model_test_metrics": _run_metrics(Path(args.run)),
        "text_encoder": rec.text_index().encoder.name,
        "text_template": rec.model.cfg.text_template,
        "index_seconds": index_s, "wall_s": time.perf_counter() - t_start,
        "cpu_s": time.process_time() - cpu_start, "threads": 1,
        "machine": platform.processor() or platform.machine(),
        "stop_words": sorted(STOP), "ks": list(KS),
    })
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / (args.name or f"query_eval_{args.data}")
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    stem.with_suffix(".md").write_text(render(payload))
    log.info("wrote %s.{json,md}", stem)
    return 0


def _run_metrics(run: Path) -> dict:
    path = run / "metrics.json"
    return json.loads(path.read_text()).get("model", {}).get("test", {}) if path.is_file() \
        else {}


def summarise_valid(valid: dict, configs: dict) -> dict:
    """Per query kind, the blend with the best validation NDCG@20 (earlier setting on ties)."""
    chosen = {}
    for kind, rows in valid["metrics"].items():
        best = max(configs, key=lambda n: (rows[n]["ndcg@20"], -list(configs).index(n)))
        chosen[kind] = {"setting": best, "valid_ndcg@20": rows[best]["ndcg@20"],
                        "weight": configs[best].weight, "normalise": configs[best].normalise,
                        "temperature": configs[best].temperature}
    return chosen


def summarise(results: dict, configs: dict) -> dict:
    """Per query kind: the blend chosen on validation NDCG@20 and the test rows."""
    chosen, table = summarise_valid(results["valid"], configs), {}
    for kind in chosen:
        best = chosen[kind]["setting"]
        test = results["test"]["metrics"][kind]
        table[kind] = {"query only": test["query only"], "history only": test["history only"],
                       "blended (chosen on valid)": test[best],
                       "blended w=0.7 zscore (the default)": test[DEFAULT]}
        b, q, h = (table[kind][n]["ndcg@20"] for n in
                   ("blended (chosen on valid)", "query only", "history only"))
        table[kind]["blend_beats_both_ndcg@20"] = bool(b > q and b > h)
    return {"stages": results, "chosen": chosen, "test_table": table}


def render(p: dict) -> str:
    st = p["stages"]
    lines = [
        f"# Query recommendations on {p['data']}: title words as the query\n",
        f"Command: `{p['command']}`\n",
        f"Sequence model: `{p['run']}` (test NDCG@20 without a query: "
        f"{p['model_test_metrics'].get('ndcg@20', float('nan')):.4f} in its metrics.json). "
        f"Text: `{p['text_encoder']}` over `{p['text_template']}` (Beauty: the title). "
        f"Cases: test {st['test']['cases']:,} of {st['test']['sampled_users']:,} sampled users "
        f"({st['test']['dropped_no_title_word']} dropped: no usable title word); validation "
        f"{st['valid']['cases']:,} of {st['valid']['sampled_users']:,} sampled users. "
        f"Full ranking over every item, history masked, pessimistic ties.\n",
        "The query for a case is made from its target's own title (the item the user bought "
        "next): the whole title, or k distinct content words drawn from it at random. "
        "The blend's weight and normalisation are chosen per query kind on the validation "
        "split and reported on the test split.\n",
        "| query | scorer | HR@10 | NDCG@10 | HR@20 | NDCG@20 |",
        "|---|---|---|---|---|---|",
    ]
    for kind, rows in p["test_table"].items():
        for name, m in rows.items():
            if not isinstance(m, dict):
                continue
            label = name
            if name == "blended (chosen on valid)":
                c = p["chosen"][kind]
                label = f"**blended**, w={c['weight']} {c['normalise']}" + (
                    f" T={c['temperature']}" if c["normalise"] == "softmax" else "")
            lines.append(f"| {kind} | {label} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} | "
                         f"{m['hr@20']:.4f} | {m['ndcg@20']:.4f} |")
    lines += ["", "Blended beats both query only and history only on test NDCG@20: " + ", ".join(
        f"{k}: {'yes' if r['blend_beats_both_ndcg@20'] else 'no'}"
        for k, r in p["test_table"].items()) + ".", ""]
    lines += ["Examples of test queries: " + "; ".join(
        f"{k}: " + ", ".join(f"`{q}`" for q in v[:3]) for k, v in st["test"]["examples"].items()),
        "", f"Wall time {p['wall_s']:.0f} s, CPU {p['cpu_s']:.0f} s, one thread "
        f"(item texts encoded in {p['index_seconds']:.1f} s; from the on-disk cache when "
        "they were encoded before).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
