"""How much of a table-dominated teacher's quality can a student with ~25% of its parameters keep?

    python benchmarks/distill_headroom.py runs/beauty [--name beauty]

Two measurements on the validation split, no training:
1. the share of the teacher's NDCG@20 earned on targets among the K most frequent items;
2. the teacher itself with its item table cut to a student-sized mixed-dimension table (the K
   most frequent items keep their rows, the rest a rank-r SVD projection: the starting point
   of the distilled student; or, where the catalogue has attributes, each remaining row
   replaced by the mean of attribute vectors fitted by least squares), with the table
   parameters that leaves;
3. the teacher's item table product-quantized as the distilled student starts from it
   (init_pq_from_teacher: k-means per sub-space, M sub-spaces x 256 centroids, one byte per
   item per sub-space, codebooks as parameters), with parameters, codes and bytes;
4. a one-layer student made of the teacher's first block and final LayerNorm over the full
   table (how much the transformer, not the table, costs).
Writes benchmarks/results/distill_headroom_<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

import liverec
from liverec.compress.distill import copy_matching, init_pq_from_teacher, student_config
from liverec.compress.variants import prepare_for
from liverec.evaluate import metrics
from liverec.evaluate.protocol import evaluate_model, model_score_fn, rank_targets
from liverec.model.items import PQItemEmbedder

RESULTS = Path(__file__).parent / "results"


def ndcg_per_case(model, prepared, stage: str, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(NDCG@k of every case, its target index): the evaluation protocol's ranks, per case."""
    _, hist, targets = prepared.eval_cases(stage)
    with torch.no_grad():
        ranked = rank_targets(model_score_fn(model, model.cfg.max_len), hist, targets, 512, k)
    return metrics.ndcg_per_case(ranked.ranks, k), np.asarray(targets)


def attribute_matrix(run_dir: Path, n: int) -> torch.Tensor | None:
    """Row-normalised item x attribute incidence (N + 1, n_attr) from the run's catalogue, or
    None when it has no attributes."""
    import polars as pl

    items = pl.read_parquet(run_dir / "items.parquet")
    if "attributes" not in items.columns:
        return None
    rows = list(zip(items["index"].to_list(), items["attributes"].to_list()))
    names = sorted({a for _, attrs in rows for a in (attrs or [])})
    if not names:
        return None
    col = {a: j for j, a in enumerate(names)}
    mat = torch.zeros(n + 1, len(names))
    for i, attrs in rows:
        for a in attrs or []:
            mat[i, col[a]] = 1.0
    return mat / mat.sum(1, keepdim=True).clamp_min(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--name", default="beauty")
    ap.add_argument("--stage", default="valid", choices=["valid", "test"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = liverec.load(args.run_dir).model.eval()
    prepared = prepare_for(Path(args.run_dir))
    counts = prepared.train_item_counts()
    order = np.argsort(-counts[1:], kind="stable") + 1  # most frequent first
    pos = np.full(len(counts), len(counts))  # popularity rank of every item index
    pos[order] = np.arange(len(order))
    nd, targets = ndcg_per_case(model, prepared, args.stage)
    share = [{"top_k": k, "target_share": float((pos[targets] < k).mean()),
              "ndcg_share": float(nd[pos[targets] < k].sum() / nd.sum())}
             for k in (500, 1000, 2000, 3000, 5000)]
    table = model.items.emb.weight.detach().clone()  # (N + 1, D)
    n, d = table.shape[0] - 1, table.shape[1]
    n_params = sum(p.numel() for p in model.parameters())
    cuts = []
    for k, r in ((2000, 2), (2000, 4), (2000, 8), (3000, 4), (12101, 0)):
        k = min(k, n)
        tail = torch.from_numpy(order[k:].copy())
        cut = table.clone()
        if len(tail):
            u, sv, vh = torch.linalg.svd(table[tail], full_matrices=False)
            cut[tail] = (u[:, :r] * sv[:r]) @ vh[:r]
        with torch.no_grad():
            model.items.emb.weight.copy_(cut)
            m = evaluate_model(model, prepared, args.stage, (20,))
        cuts.append({"head_items": k, "tail_dim": r, "table_params": k * d + (n - k) * r + r * d,
                     "ndcg@20": m["ndcg@20"], "hr@20": m["hr@20"]})
    attr = attribute_matrix(Path(args.run_dir), n)  # (N + 1, n_attr) or None
    for k in (2000, 3000) if attr is not None else ():
        tail = torch.from_numpy(order[k:].copy())
        emb = torch.linalg.lstsq(attr[tail], table[tail], driver="gelsd").solution  # min-norm
        cut = table.clone()
        cut[tail] = attr[tail] @ emb  # tail rows = mean of fitted attribute vectors
        with torch.no_grad():
            model.items.emb.weight.copy_(cut)
            m = evaluate_model(model, prepared, args.stage, (20,))
        cuts.append({"head_items": k, "tail_dim": f"attributes ({attr.shape[1]})",
                     "table_params": k * d + attr.shape[1] * d,
                     "ndcg@20": m["ndcg@20"], "hr@20": m["hr@20"]})
    pq = []
    for m_sub in (8, 16, 32):  # the distilled student's own quantizer and initialisation
        coded = PQItemEmbedder(dataclasses.replace(model.cfg, item_repr="pq",
                                                   pq_subspaces=m_sub, pq_bits=8))
        init_pq_from_teacher(coded, table)
        with torch.no_grad():
            model.items.emb.weight.copy_(coded.eval().table())
            m = evaluate_model(model, prepared, args.stage, (20,))
        pq.append({"subspaces": m_sub, "codebook_params": 256 * d, "code_bytes": n * m_sub,
                   "table_bytes": n * m_sub + 4 * 256 * d, "ndcg@20": m["ndcg@20"],
                   "hr@20": m["hr@20"]})
    with torch.no_grad():
        model.items.emb.weight.copy_(table)
    one_layer = None
    if len(model.blocks) > 1:
        from liverec.model import build_model

        student = build_model(student_config(model.cfg, ["n_layers=1"]))
        copy_matching(student, model)
        with torch.no_grad():
            student.items.emb.weight.copy_(table)
        m = evaluate_model(student.eval(), prepared, args.stage, (20,))
        one_layer = {"parameters": sum(p.numel() for p in student.parameters()),
                     "transformer_parameters": sum(p.numel() for k, p in
                                                   student.named_parameters()
                                                   if not k.startswith("items.")),
                     "ndcg@20": m["ndcg@20"], "hr@20": m["hr@20"]}
    result = {"run_dir": args.run_dir, "stage": args.stage, "teacher_ndcg@20": float(nd.mean()),
              "teacher_parameters": n_params, "share": share, "cuts": cuts, "pq": pq,
              "one_layer": one_layer}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"distill_headroom_{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Distillation headroom `{args.name}` ({args.run_dir}, {args.stage} split)\n",
             f"Teacher NDCG@20 {nd.mean():.4f}, {n_params:,} parameters ({n:,} x {d} item table "
             f"= {n * d / n_params:.0%}); 25% of it = {n_params // 4:,}.\n",
             "| K most frequent items | share of targets | share of the teacher's NDCG@20 |",
             "|---|---|---|"]
    lines += [f"| {s['top_k']:,} | {s['target_share']:.1%} | {s['ndcg_share']:.1%} |"
              for s in share]
    lines += ["\nThe teacher with its table cut (no training): K rows kept, the rest rank r "
              "(SVD), or the least-squares fit of catalogue attribute vectors.\n",
              "| K | r | table parameters | NDCG@20 | of the teacher |", "|---|---|---|---|---|"]
    lines += [f"| {c['head_items']:,} | {c['tail_dim']} | {c['table_params']:,} | "
              f"{c['ndcg@20']:.4f} | {c['ndcg@20'] / nd.mean():.1%} |" for c in cuts]
    lines += ["\nThe teacher with its table product-quantized (no training; a code is one byte "
              "per item per sub-space, fixed after k-means; the codebooks are the parameters).\n",
              "| sub-spaces | codebook parameters | code bytes | table bytes (fp32 = "
              f"{4 * n * d:,}) | NDCG@20 | of the teacher |", "|---|---|---|---|---|---|"]
    lines += [f"| {q['subspaces']} | {q['codebook_params']:,} | {q['code_bytes']:,} | "
              f"{q['table_bytes']:,} | {q['ndcg@20']:.4f} | {q['ndcg@20'] / nd.mean():.1%} |"
              for q in pq]
    if one_layer:
        lines += [f"\nOne layer (the teacher's first block and final LayerNorm, no training) "
                  f"over the full table: NDCG@20 {one_layer['ndcg@20']:.4f} = "
                  f"{one_layer['ndcg@20'] / nd.mean():.1%} of the teacher, "
                  f"{one_layer['transformer_parameters']:,} transformer parameters "
                  f"({one_layer['parameters']:,} in all)."]
    (RESULTS / f"distill_headroom_{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
