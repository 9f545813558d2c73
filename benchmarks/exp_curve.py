"""Validation curves of a quality experiment against the frozen default, epoch by epoch.

An experiment stopped before its end (CPU time on the 2-core machine) is compared on the epochs
it reached: the training log's "epoch N loss L valid ndcg@10 V" lines against the default run's
per-epoch validation in benchmarks/results/quality_beauty_sasrec.json (the same config file, the
same schedule: only the --set overrides differ).

    python benchmarks/exp_curve.py benchmarks/results/exp_beauty_filter_a07_k8.log \\
        --what "model.mixer=filter (alpha 0.7, kernel 8)" --out exp_beauty_filter_a07_k8
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

OUT = Path(__file__).parent / "results"
LINE = re.compile(r"epoch (\d+) loss ([\d.]+) valid ndcg@10 ([\d.]+) \((\d+)s\)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--what", required=True)
    ap.add_argument("--default", type=Path, default=OUT / "quality_beauty_sasrec.json")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    exp = {int(m[1]): {"loss": float(m[2]), "ndcg@10": float(m[3]), "elapsed_s": int(m[4])}
           for m in LINE.finditer(args.log.read_text())}
    base = {e["epoch"]: e["valid"]["ndcg@10"]
            for e in json.loads(args.default.read_text())["train"]["epochs"] if "valid" in e}
    rows = [{"epoch": k, "experiment": v["ndcg@10"], "default": base.get(k),
             "ratio": v["ndcg@10"] / base[k] if base.get(k) else None}
            for k, v in sorted(exp.items())]
    last = rows[-1]
    best_exp = max(r["experiment"] for r in rows)
    best_base_same = max(base[k] for k in base if k <= last["epoch"])
    summary = {"what": args.what, "epochs_reached": last["epoch"],
               "best_valid_ndcg10_experiment": best_exp,
               "best_valid_ndcg10_default_same_epochs": best_base_same,
               "best_valid_ndcg10_default_full_run": max(base.values()),
               "ratio_same_epochs": best_exp / best_base_same}
    (OUT / f"{args.out}.json").write_text(json.dumps({"summary": summary, "epochs": rows},
                                                     indent=2) + "\n")
    lines = [f"# Experiment: {args.what} (Beauty, configs/beauty/sasrec.json otherwise)", "",
             f"Stopped at epoch {last['epoch']} (CPU time); validation NDCG@10, full ranking. "
             f"Best so far {best_exp:.4f} against the default's {best_base_same:.4f} over the "
             f"same epochs ({summary['ratio_same_epochs']:.3f}x); the default's full run peaks "
             f"at {summary['best_valid_ndcg10_default_full_run']:.4f}. Test metrics: not "
             "measured (the run did not finish).", "",
             "| epoch | experiment | default | ratio |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['epoch']} | {r['experiment']:.4f} | "
                     f"{r['default'] if r['default'] is None else format(r['default'], '.4f')} | "
                     f"{'' if r['ratio'] is None else format(r['ratio'], '.3f')} |")
    (OUT / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:3]))


if __name__ == "__main__":
    main()
