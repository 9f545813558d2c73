"""Per-epoch time breakdown of training: data, forward, backward, optimiser, validation, other.

    LIVEREC_DATA=../shared/data OMP_NUM_THREADS=1 PYTHONPATH=src \
        python benchmarks/train_breakdown.py --data beauty --config configs/beauty/sasrec.json \
        --epochs 2 --threads 1 --label before

Two measurements, both on the configured device (train.device, default cpu):

1. an instrumented copy of one epoch of the loop, built from the library's own pieces
   (liverec.train.batches, the model's loss, liverec.train.optim, the validation evaluator the
   loop uses), timing each phase in wall time and process CPU time (on an accelerator each phase
   ends with a synchronisation, so the phases are honest but slightly slower than the loop);
2. the real ``liverec.train.loop.train`` for the same epochs (train_log.json: train_s, valid_s,
   and the wall time of the whole run, so "other" = what the loop spends outside both).

The machine is shared: the 1-minute load average is recorded before and after, and the CPU time
and the shares of each phase are the figures to compare between runs.
Writes benchmarks/results/train_breakdown_<label>.{json,md}.

    python benchmarks/train_breakdown.py --compare before_cpu after_cpu

puts two such results side by side (mean CPU seconds per epoch and phase) in
benchmarks/results/train_breakdown_<before>_vs_<after>.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from liverec.config import apply_overrides, load_config
from liverec.evaluate import protocol
from liverec.train import batches as batches_mod
from liverec.train.loop import train
from liverec.train.optim import build_optimizer, build_schedule
from liverec.train.setup import build_for_training

OUT = Path(__file__).parent / "results"
PHASES = ("data", "forward", "backward", "optimiser", "validation", "other")


class Clock:
    """Accumulates wall and process-CPU seconds per phase (synchronising an accelerator)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.wall = dict.fromkeys(PHASES, 0.0)
        self.cpu = dict.fromkeys(PHASES, 0.0)
        self._mark()

    def _mark(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.w, self.c = time.perf_counter(), time.process_time()

    def lap(self, phase: str) -> None:
        w, c = self.w, self.c
        self._mark()
        self.wall[phase] += self.w - w
        self.cpu[phase] += self.c - c


def instrumented_epochs(cfg, prepared, epochs: int) -> list[dict]:
    """Epochs of the loop's work with each phase timed (the library's current pieces)."""
    tc = cfg.train
    device = torch.device(tc.device if tc.device != "auto" else
                          "cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(tc.seed)
    with tempfile.TemporaryDirectory() as tmp:
        cfg, model, _ = build_for_training(cfg, prepared, Path(tmp))
    model.to(device)
    new = hasattr(batches_mod.TrainBatches, "take")  # device-resident batches, no sync per step
    if new:
        stream = batches_mod.TrainBatches(prepared.train_sequences(), cfg.model.max_len,
                                          tc.batch_size, tc.seed, device=device)
    else:
        stream = batches_mod.TrainBatches(prepared.train_sequences(), cfg.model.max_len,
                                          tc.batch_size, tc.seed)
    fast_eval = getattr(protocol, "evaluate_on_device", None)
    cases = (protocol.DeviceCases.build(prepared, "valid", cfg.model.max_len, device)
             if fast_eval is not None else None)
    opt = build_optimizer(model, tc)
    sched = build_schedule(opt, tc, total_steps=len(stream) * epochs)
    rows = []
    for epoch in range(1, epochs + 1):
        model.train()
        clock, t0 = Clock(device), time.perf_counter()
        c0 = time.process_time()
        total = torch.zeros((), device=device)
        it = iter(stream)
        steps = 0
        while True:
            try:
                batch = next(it)
            except StopIteration:
                break
            if device.type != "cpu" and batch["input"].device != device:
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            clock.lap("data")
            loss = model(batch)
            clock.lap("forward")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clock.lap("backward")
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            if not new:  # the old loop read the loss and the norm every step
                float(loss.detach())
                bool(torch.isfinite(norm))
            else:
                total += loss.detach()
            opt.step()
            sched.step()
            steps += 1
            clock.lap("optimiser")
        float(total)
        clock.lap("other")
        if fast_eval is not None:
            valid = fast_eval(model, cases, cfg.eval.ks, cfg.eval.batch_size)
        else:
            valid = protocol.evaluate_model(model, prepared, "valid", cfg.eval.ks,
                                            cfg.eval.batch_size)
        clock.lap("validation")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows.append({"epoch": epoch, "steps": steps, "wall_s": wall, "cpu_s": cpu,
                     "phases_wall_s": clock.wall, "phases_cpu_s": clock.cpu,
                     "valid_ndcg@10": valid["ndcg@10"]})
    return rows


def real_run(cfg, prepared, epochs: int) -> dict:
    """The real training loop for ``epochs`` epochs: its own per-epoch figures and the rest."""
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        result = train(cfg, prepared, Path(tmp) / "run")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ep = result.epochs
    train_s = sum(e["train_s"] for e in ep)
    valid_s = sum(e.get("valid_s", 0.0) for e in ep)
    return {"wall_s": wall, "cpu_s": cpu, "train_s": train_s, "valid_s": valid_s,
            "other_s": wall - train_s - valid_s,
            "epochs": [{k: e.get(k) for k in ("epoch", "loss", "train_s", "valid_s")}
                       | {"valid_ndcg@10": e.get("valid", {}).get("ndcg@10")} for e in ep]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="beauty")
    ap.add_argument("--config", default="configs/beauty/sasrec.json")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--label", default="before")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--real-only", action="store_true",
                    help="only the real loop; appends a line to train_loop_<label>.jsonl")
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare)
        return
    from liverec.data.pipeline import load_and_prepare  # (gpu_check.py imports this file)

    torch.set_num_threads(args.threads)
    cfg = apply_overrides(load_config(args.config),
                          [f"data.source={json.dumps(args.data)}", f"train.epochs={args.epochs}",
                           f"train.num_threads={args.threads}", "train.progress=false",
                           "train.eval_every=1", *args.overrides])
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, patience=10**6))
    prepared = load_and_prepare(cfg.data)
    load_before = os.getloadavg()
    if args.real_only:
        real = real_run(cfg, prepared, args.epochs) | {"loadavg": [load_before,
                                                                   os.getloadavg()]}
        OUT.mkdir(exist_ok=True)
        with open(OUT / f"train_loop_{args.label}.jsonl", "a") as f:
            f.write(json.dumps(real) + "\n")
        print(json.dumps({k: real[k] for k in ("wall_s", "cpu_s", "train_s", "valid_s")}))
        return
    inst = instrumented_epochs(cfg, prepared, args.epochs)
    real = real_run(cfg, prepared, args.epochs)
    load_after = os.getloadavg()
    payload = {"label": args.label, "data": args.data, "config": args.config,
               "epochs": args.epochs, "threads": args.threads, "device": cfg.train.device,
               "torch": torch.__version__, "cpu_count": os.cpu_count(),
               "loadavg_before": load_before, "loadavg_after": load_after,
               "instrumented": inst, "real_loop": real}
    OUT.mkdir(exist_ok=True)
    stem = OUT / f"train_breakdown_{args.label}"
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    stem.with_suffix(".md").write_text(render(payload))
    print(render(payload))


def compare(before: str, after: str) -> None:
    """Mean CPU seconds per epoch and phase of two results, side by side."""
    b, a = (json.loads((OUT / f"train_breakdown_{x}.json").read_text()) for x in (before, after))

    def mean_phase(p: dict, ph: str) -> float:
        return sum(r["phases_cpu_s"][ph] for r in p["instrumented"]) / len(p["instrumented"])

    def mean_total(p: dict) -> float:
        return sum(r["cpu_s"] for r in p["instrumented"]) / len(p["instrumented"])

    lines = [f"# Training breakdown: {before} vs {after} (CPU seconds per epoch, mean of "
             f"{len(b['instrumented'])} and {len(a['instrumented'])} epochs)", "",
             f"load average (1 min) during {before}: {b['loadavg_before'][0]:.2f} -> "
             f"{b['loadavg_after'][0]:.2f}; during {after}: {a['loadavg_before'][0]:.2f} -> "
             f"{a['loadavg_after'][0]:.2f}. Process CPU time, one thread.", "",
             f"| phase | {before} CPU s | {after} CPU s | {after} / {before} |",
             "|---|---|---|---|"]
    for ph in PHASES:
        x, y = mean_phase(b, ph), mean_phase(a, ph)
        lines.append(f"| {ph} | {x:.2f} | {y:.2f} | {y / x if x else float('nan'):.2f} |")
    x, y = mean_total(b), mean_total(a)
    lines.append(f"| **epoch** | {x:.2f} | {y:.2f} | {y / x:.2f} |")
    rb, ra = b["real_loop"], a["real_loop"]
    lines += ["", "The real loop (train(), whole run of "
              f"{len(rb['epochs'])} epochs): CPU {rb['cpu_s']:.1f} s -> {ra['cpu_s']:.1f} s "
              f"({ra['cpu_s'] / rb['cpu_s']:.2f}); wall {rb['wall_s']:.1f} s -> "
              f"{ra['wall_s']:.1f} s (wall depends on the other jobs); validation "
              f"{rb['valid_s']:.1f} s -> {ra['valid_s']:.1f} s wall; valid NDCG@10 per epoch "
              f"{[round(e['valid_ndcg@10'], 4) for e in rb['epochs']]} -> "
              f"{[round(e['valid_ndcg@10'], 4) for e in ra['epochs']]}."]
    path = OUT / f"train_breakdown_{before}_vs_{after}.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())


def render(p: dict) -> str:
    lines = [f"# Training breakdown ({p['label']}): {p['data']}, {p['config']}, "
             f"{p['epochs']} epoch(s), {p['threads']} thread(s), device {p['device']}", "",
             f"torch {p['torch']}, {p['cpu_count']} CPUs shared with other jobs; load average "
             f"(1/5/15 min) before {tuple(round(x, 2) for x in p['loadavg_before'])}, after "
             f"{tuple(round(x, 2) for x in p['loadavg_after'])}. Compare CPU seconds and "
             "shares, not wall seconds.", "",
             "## Instrumented epoch (phases)", "",
             "| epoch | steps | phase | wall s | CPU s | share of epoch CPU |",
             "|---|---|---|---|---|---|"]
    for r in p["instrumented"]:
        for ph in PHASES:
            lines.append(f"| {r['epoch']} | {r['steps']} | {ph} | {r['phases_wall_s'][ph]:.2f} "
                         f"| {r['phases_cpu_s'][ph]:.2f} | "
                         f"{r['phases_cpu_s'][ph] / max(r['cpu_s'], 1e-9):.1%} |")
        lines.append(f"| {r['epoch']} | | **total** | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
                     f"valid NDCG@10 {r['valid_ndcg@10']:.4f} |")
    r = p["real_loop"]
    lines += ["", "## The real loop (liverec.train.loop.train)", "",
              f"whole run: wall {r['wall_s']:.2f} s, CPU {r['cpu_s']:.2f} s; train "
              f"{r['train_s']:.2f} s, validation {r['valid_s']:.2f} s, other (setup, artifact, "
              f"checks, checkpoint, log, plot) {r['other_s']:.2f} s", "",
              "| epoch | loss | train s | valid s | valid NDCG@10 |", "|---|---|---|---|---|"]
    for e in r["epochs"]:
        lines.append(f"| {e['epoch']} | {e['loss']:.4f} | {e['train_s']:.2f} | "
                     f"{(e['valid_s'] or 0):.2f} | {(e['valid_ndcg@10'] or 0):.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
