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
    ap.add_argument("--run", type=Path, help="the finished run: its metrics.json gives test")
    ap.add_argument("--config", default="configs/beauty/sasrec.json",
                    help="the config file the experiment overrides (for the report)")
    ap.add_argument("--extra-log", type=Path, action="append", default=[],
                    help="a later log of the same run (after --resume); later epochs win")
    args = ap.parse_args()
    exp = {}
    for log in [args.log, *args.extra_log]:
        exp.update({int(m[1]): {"loss": float(m[2]), "ndcg@10": float(m[3]),
                                "elapsed_s": int(m[4])} for m in LINE.finditer(log.read_text())})
    default = json.loads(args.default.read_text())
    test = None
    if args.run is not None and (args.run / "metrics.json").is_file():
        metrics = json.loads((args.run / "metrics.json").read_text())
        test = {"experiment": metrics["model"]["test"], "default": default["test"],
                "training_s": metrics.get("training", {}).get("wall_s"),
                "best_epoch": metrics.get("training", {}).get("best_epoch"),
                "stopped": metrics.get("training", {}).get("stopped", "")}
    base = {e["epoch"]: e["valid"]["ndcg@10"]
            for e in default["train"]["epochs"] if "valid" in e}
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
    (OUT / f"{args.out}.json").write_text(json.dumps({"summary": summary, "test": test,
                                                      "epochs": rows}, indent=2) + "\n")
    lines = [f"# Experiment: {args.what} (Beauty, {args.config} otherwise)", ""]
    if test is None:
        lines += [f"Stopped at epoch {last['epoch']} (CPU time); validation NDCG@10, full "
                  f"ranking. Best so far {best_exp:.4f} against the default's "
                  f"{best_base_same:.4f} over the same epochs "
                  f"({summary['ratio_same_epochs']:.3f}x); the default's full run peaks at "
                  f"{summary['best_valid_ndcg10_default_full_run']:.4f}. Test metrics: not "
                  "measured (the run did not finish).", ""]
    else:
        e, d = test["experiment"], test["default"]
        how = "to early stop" if "early" in (test["stopped"] or "") else "to its last epoch"
        lines += [f"Trained {how} ({last['epoch']}; best validation epoch "
                  f"{test['best_epoch']}, {test['training_s'] or 0:,.0f} s of training on one "
                  f"thread); best validation NDCG@10 {best_exp:.4f} against the default's "
                  f"{summary['best_valid_ndcg10_default_full_run']:.4f} (full run).", "",
                  "Test (full ranking, history masked, 22,363 users):", "",
                  "| | HR@10 | NDCG@10 | HR@20 | NDCG@20 |", "|---|---|---|---|---|"]
        for name, m in (("experiment", e), ("default", d)):
            lines.append(f"| {name} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} | {m['hr@20']:.4f} "
                         f"| {m['ndcg@20']:.4f} |")
        lines += [f"| ratio | {e['hr@10'] / d['hr@10']:.3f} | {e['ndcg@10'] / d['ndcg@10']:.3f} "
                  f"| {e['hr@20'] / d['hr@20']:.3f} | {e['ndcg@20'] / d['ndcg@20']:.3f} |", ""]
    lines += ["Validation NDCG@10 per epoch:", "",
              "| epoch | experiment | default | ratio |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['epoch']} | {r['experiment']:.4f} | "
                     f"{r['default'] if r['default'] is None else format(r['default'], '.4f')} | "
                     f"{'' if r['ratio'] is None else format(r['ratio'], '.3f')} |")
    (OUT / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:3]))


if __name__ == "__main__":
    main()
