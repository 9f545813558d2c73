"""Time to validation NDCG@10 >= .040 on Beauty: liverec against RecBole 1.2.1's SASRec, side by
side on the same machine, one thread each, started at the same moment (issue 16, must-show 2).

RecBole runs in its own virtual environment (benchmarks/recbole/README.md) as a subprocess with
one thread (``OMP_NUM_THREADS=1``; its script records torch's thread count); liverec trains the
frozen default (configs/beauty/sasrec.json, unchanged but for one thread, no progress bar and a
wall-time cap, which stops the run without changing the learning-rate schedule of the epochs
before it) in this process. Both clocks count training + validation from the first epoch
(data preparation excluded on both sides). The machine's load average is recorded.

    PYTHONPATH=src python benchmarks/speed_vs_recbole.py \\
        --recbole-python ../recbole-venv/bin/python --recbole-workdir ../recbole-run

Writes benchmarks/results/speed_vs_recbole.{json,md} and RecBole's own
benchmarks/results/recbole_sasrec_beauty_sbs.{json,md}.

With ``--recbole-json FILE`` RecBole is not started: liverec trains while a RecBole run that
was started separately (same command, its own process) is still going, and the report reads
that run's results when it has finished (``--wait`` polls for the file).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
THRESHOLD = 0.040


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recbole-python")
    ap.add_argument("--recbole-workdir")
    ap.add_argument("--recbole-epochs", type=int, default=5)
    ap.add_argument("--config", default="configs/beauty/sasrec.json")
    ap.add_argument("--max-time-s", type=float, default=600.0,
                    help="liverec's wall-time cap (stops after the epoch that crosses it)")
    ap.add_argument("--name", default="speed_vs_recbole")
    ap.add_argument("--recbole-json", type=Path,
                    help="read RecBole's results from a run already going; do not start one")
    args = ap.parse_args()
    from liverec.config import apply_overrides, load_config
    from liverec.data.pipeline import load_and_prepare
    from liverec.train.loop import train

    torch.set_num_threads(1)
    cfg = apply_overrides(load_config(args.config),
                          ["train.num_threads=1", "train.progress=false",
                           f"train.max_time_s={args.max_time_s}"])
    prepared = load_and_prepare(cfg.data)  # before the clock, as RecBole's data preparation
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH="")
    rb_out = args.recbole_json or OUT / "recbole_sasrec_beauty_sbs.json"
    load_before = os.getloadavg()
    rb = None
    if args.recbole_json is None:
        if not (args.recbole_python and args.recbole_workdir):
            raise SystemExit("give --recbole-python and --recbole-workdir, or --recbole-json")
        Path(args.recbole_workdir).mkdir(parents=True, exist_ok=True)
        log = open(Path(args.recbole_workdir) / "log.txt", "w")  # noqa: SIM115 (child's log)
        rb = subprocess.Popen([args.recbole_python,
                               str(ROOT / "benchmarks/recbole/run_recbole_sasrec.py"),
                               "--epochs", str(args.recbole_epochs),
                               "--workdir", args.recbole_workdir, "--out", str(rb_out)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(cfg, prepared, Path(tmp) / "run")
    load_mid = os.getloadavg()
    for e in result.epochs:
        print(f"liverec epoch {e['epoch']}: elapsed {e['elapsed_s']:.1f} s, valid NDCG@10 "
              f"{e.get('valid', {}).get('ndcg@10', float('nan')):.4f}", flush=True)
    if rb is not None and rb.wait() != 0:
        raise SystemExit(f"RecBole failed (exit {rb.returncode}); see "
                         f"{args.recbole_workdir}/log.txt")
    while not rb_out.exists():  # a separately started RecBole run: wait for its results
        time.sleep(30)
    rbj = json.loads(rb_out.read_text())
    ours = next(({"epoch": e["epoch"], "seconds": e["elapsed_s"]} for e in result.epochs
                 if "valid" in e and e["valid"]["ndcg@10"] >= THRESHOLD), None)
    theirs_s = rbj.get(f"cumulative_s_at_first_valid_ndcg10_ge_{THRESHOLD:.3f}")
    ratio = ours["seconds"] / theirs_s if ours and theirs_s else None
    report = {
        "what": "time to validation NDCG@10 >= 0.040, Beauty, one thread each, side by side",
        "config": args.config, "torch": torch.__version__, "cpus": os.cpu_count(),
        "loadavg": {"start": load_before, "liverec_done": load_mid, "end": os.getloadavg()},
        "liverec": {"time_to_040": ours, "epochs": [
            {"epoch": e["epoch"], "train_s": e["train_s"], "valid_s": e.get("valid_s"),
             "elapsed_s": e["elapsed_s"], "valid_ndcg@10": e.get("valid", {}).get("ndcg@10")}
            for e in result.epochs]},
        "recbole": {"time_to_040_s": theirs_s,
                    "epoch": rbj.get(f"first_epoch_valid_ndcg10_ge_{THRESHOLD:.3f}"),
                    "per_epoch": [{k: e[k] for k in ("epoch", "train_s", "valid_s",
                                                     "cumulative_s")}
                                  | {"valid_ndcg@10": e["valid"]["ndcg@10"]}
                                  for e in rbj["per_epoch"]]},
        "ratio_liverec_over_recbole": ratio,
        "criterion": {"target": "<= 0.1", "pass": ratio is not None and ratio <= 0.1},
    }
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Time to validation NDCG@10 >= {THRESHOLD}: liverec vs RecBole 1.2.1 SASRec "
             "(Beauty, one thread each, side by side)", "",
             f"`{args.config}` unchanged (one thread, wall cap {args.max_time_s:.0f} s); RecBole "
             + ("started by this script at the same moment; " if rb is not None else
                f"run separately ({rb_out.name}), liverec trained while it ran; ")
             + f"torch {torch.__version__}; {os.cpu_count()} CPUs; load average at start "
             f"{load_before[0]:.1f}, when liverec finished {load_mid[0]:.1f}, at the end "
             f"{report['loadavg']['end'][0]:.1f} (other jobs share the machine).", "",
             "| | epoch reaching .040 | wall s to it (train + validation) |", "|---|---|---|",
             f"| liverec | {ours['epoch'] if ours else 'not reached'} | "
             f"{ours['seconds']:.1f} |" if ours else "| liverec | not reached | - |",
             f"| RecBole | {report['recbole']['epoch']} | {theirs_s} |", "",
             (f"Ratio: {ratio:.3f} (target <= 0.1: "
              f"{'pass' if report['criterion']['pass'] else 'FAIL'})")
             if ratio else "Ratio: not measured", "",
             "| liverec epoch | train s | valid s | elapsed s | valid NDCG@10 |",
             "|---|---|---|---|---|"]
    for e in report["liverec"]["epochs"]:
        lines.append(f"| {e['epoch']} | {e['train_s']:.1f} | {e['valid_s'] or 0:.1f} | "
                     f"{e['elapsed_s']:.1f} | {e['valid_ndcg@10'] or float('nan'):.4f} |")
    lines += ["", "| RecBole epoch | train s | valid s | cumulative s | valid NDCG@10 |",
              "|---|---|---|---|---|"]
    for e in report["recbole"]["per_epoch"]:
        lines.append(f"| {e['epoch']} | {e['train_s']:.1f} | {e['valid_s']:.1f} | "
                     f"{e['cumulative_s']:.1f} | {e['valid_ndcg@10']:.4f} |")
    (OUT / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
