"""Beauty default on one GPU through the shared training loop: per-epoch seconds, time to
validation NDCG@10 >= .040, time to the best epoch and test metrics, fp32 vs bf16 (+ compile).

On a GPU machine (torch installed; polars, safetensors and tqdm need not be), from the
repository root, with Beauty.txt carried in or already there:

    PYTHONPATH=src python benchmarks/gpu_check.py --beauty /path/to/Beauty/Beauty.txt

It installs nothing: it reads Beauty.txt (``user item item ...`` per line, the S3-Rec
preprocessing) with plain Python into liverec's ``Prepared`` (leave-one-out, items in the
shortlex order of their id strings, users in the string order of their ids: what
``liverec.data.prepare`` builds; ``--check-prep`` compares the two where polars is installed:
identical on Beauty), and stands in minimal stubs for
the few modules the loop imports but does not use on this path (polars, safetensors, tqdm) when
they are missing. Each mode gets ``--mode-budget-s`` of training (``train.max_time_s``), so the
whole check stays under 5 minutes. Writes benchmarks/results/gpu_beauty.{json,md} (``--out``).

CPU dry run (a few seconds): ``--device cpu --epochs 1 --max-users 2000 --modes fp32``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.machinery
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.040  # validation NDCG@10 to reach


def stub_missing_modules() -> list[str]:
    """Stand-ins for modules the training path imports but does not call here."""
    stubbed = []

    class _Any:
        def __init__(self, *a, **k) -> None:
            pass

    def module(name: str, **attrs) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)  # torch._dynamo looks
        mod.__dict__.update(attrs)

        def attr(key: str):
            if key.startswith("__"):
                raise AttributeError(key)
            return _Any

        mod.__getattr__ = attr  # type: ignore[method-assign]
        return mod

    class _Tqdm:  # a pass-through progress bar
        def __init__(self, iterable=None, *a, **k) -> None:
            self.iterable = iterable

        def __iter__(self):
            return iter(self.iterable)

        def set_postfix(self, *a, **k) -> None:
            pass

    stubs = {"polars": {}, "safetensors": {}, "safetensors.torch": {},
             "tqdm": {"tqdm": _Tqdm}, "tqdm.auto": {"tqdm": _Tqdm}}
    for name, attrs in stubs.items():
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = module(name, **attrs)
            stubbed.append(name)
    return stubbed


def read_beauty(path: Path, max_users: int = 0):
    """liverec's Prepared for Beauty.txt, built without polars (leave-one-out)."""
    from liverec.data.prepare import ItemVocab, Prepared, Sequences, leave_one_out

    users, rows = [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                users.append(parts[0])
                rows.append(parts[1:])
            if max_users and len(users) >= max_users:
                break
    order = sorted(range(len(users)), key=users.__getitem__)  # users by id string, as prepare
    users, rows = [users[i] for i in order], [rows[i] for i in order]
    ids = sorted({i for r in rows for i in r}, key=lambda s: (len(s), s))  # shortlex
    vocab = ItemVocab.from_ids(ids)
    lookup = vocab.index_map()
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    items = np.fromiter((lookup[i] for r in rows for i in r), dtype=np.int64, count=indptr[-1])
    seqs = Sequences(np.array(users, dtype=object), indptr, items,
                     np.arange(len(items), dtype=np.int64))
    split = leave_one_out(seqs)
    stats = {"users": len(users), "items": vocab.n_items, "interactions": int(indptr[-1])}
    return Prepared("beauty", vocab, None, seqs, split, stats)


def check_prep(prepared, max_users: int) -> str:
    """Compare with liverec.data.prepare's own Beauty (needs polars and LIVEREC_DATA)."""
    from liverec.config import DataConfig
    from liverec.data.pipeline import load_and_prepare

    ref = load_and_prepare(DataConfig(source="beauty"))
    if max_users:
        return "skipped (--max-users)"
    same = (np.array_equal(ref.vocab.ids, prepared.vocab.ids)
            and np.array_equal(ref.sequences.indptr, prepared.sequences.indptr)
            and np.array_equal(ref.sequences.items, prepared.sequences.items)
            and np.array_equal(ref.sequences.users, prepared.sequences.users))
    return "identical to liverec.data.prepare" if same else "DIFFERENT from liverec.data.prepare"


def run_mode(cfg, prepared, mode: str, device: str, epochs: int, budget_s: float,
             eval_batch: int) -> dict:
    from liverec.evaluate.protocol import DeviceCases, evaluate_on_device
    from liverec.model import build_model
    from liverec.train.loop import fit, fit_device

    tc = dataclasses.replace(cfg.train, device=device, bf16="bf16" in mode,
                             compile="compile" in mode, progress=False, epochs=max(epochs, 1),
                             max_time_s=budget_s, eval_every=1)
    torch.manual_seed(tc.seed)
    model = build_model(dataclasses.replace(cfg.model, n_items=prepared.vocab.n_items))
    t0 = time.perf_counter()
    log_ = fit(model, prepared, tc, epochs, ks=tuple(cfg.eval.ks))
    wall = time.perf_counter() - t0
    dev = fit_device(tc)
    model.to(dev)
    t1 = time.perf_counter()
    test = evaluate_on_device(model, DeviceCases.build(prepared, "test", model.cfg.max_len, dev),
                              tuple(cfg.eval.ks), eval_batch)
    test_s = time.perf_counter() - t1
    eps = log_["epochs"]
    reach = next((e for e in eps if e.get("valid", {}).get("ndcg@10", 0.0) >= TARGET), None)
    return {
        "mode": mode, "epochs_run": len(eps), "best_epoch": log_["best_epoch"],
        "stopped": log_["stopped"] or "max_epochs", "wall_s": wall,
        "time_to_best_s": log_["time_to_best_s"],
        "time_to_ndcg10_040_s": reach["elapsed_s"] if reach else None,
        "epoch_to_ndcg10_040": reach["epoch"] if reach else None,
        "train_s": [e["train_s"] for e in eps], "valid_s": [e.get("valid_s") for e in eps],
        "valid_ndcg@10": [e.get("valid", {}).get("ndcg@10") for e in eps],
        "loss": [e["loss"] for e in eps],
        "best_valid": log_["best_valid"], "test": test, "test_eval_s": test_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beauty", default=os.path.join(os.environ.get("LIVEREC_DATA", "data"),
                                                     "Beauty", "Beauty.txt"))
    ap.add_argument("--config", default=str(ROOT / "configs/beauty/sasrec.json"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--modes", default="fp32,bf16,bf16+compile")
    ap.add_argument("--epochs", type=int, default=None, help="default: the config's")
    ap.add_argument("--mode-budget-s", type=float, default=70.0)
    ap.add_argument("--eval-batch", type=int, default=8192)
    ap.add_argument("--max-users", type=int, default=0, help="first N users only (dry runs)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--check-prep", action="store_true")
    ap.add_argument("--breakdown-epochs", type=int, default=1,
                    help="epochs of the per-phase breakdown (train_breakdown.py), fp32; 0 = none")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/gpu_beauty"))
    args = ap.parse_args()
    stubbed = stub_missing_modules()
    sys.path.insert(0, str(ROOT / "src"))
    from liverec.config import EvalConfig, load_config

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    cfg = dataclasses.replace(cfg, eval=EvalConfig(ks=cfg.eval.ks, batch_size=args.eval_batch,
                                                   baselines=()))
    epochs = cfg.train.epochs if args.epochs is None else args.epochs
    t0 = time.perf_counter()
    prepared = read_beauty(Path(args.beauty), args.max_users)
    prep_s = time.perf_counter() - t0
    prep_check = check_prep(prepared, args.max_users) if args.check_prep else "not run"
    gpu = (torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu"
           else "cpu")
    breakdown = []
    if args.breakdown_epochs:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from train_breakdown import instrumented_epochs

        bcfg = dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, device=args.device, progress=False))
        breakdown = instrumented_epochs(bcfg, prepared, args.breakdown_epochs)
    modes = []
    for mode in args.modes.split(","):
        modes.append(run_mode(cfg, prepared, mode.strip(), args.device, epochs,
                              args.mode_budget_s, args.eval_batch))
        print(summary_line(modes[-1]), flush=True)
    payload = {"device": gpu, "torch": torch.__version__, "config": args.config,
               "epochs": epochs, "max_users": args.max_users, "data": prepared.stats,
               "prep_s": prep_s, "prep_check": prep_check, "stubbed_modules": stubbed,
               "mode_budget_s": args.mode_budget_s, "eval_batch": args.eval_batch,
               "breakdown_fp32": breakdown, "modes": modes}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(payload))
    print(render(payload))


def summary_line(m: dict) -> str:
    return (f"{m['mode']}: {m['epochs_run']} epochs, best {m['best_epoch']}, "
            f"time to best {m['time_to_best_s']:.1f}s, to NDCG@10>=.040 "
            f"{m['time_to_ndcg10_040_s']}, test ndcg@10 {m['test']['ndcg@10']:.4f}")


def render(p: dict) -> str:
    def med(xs):
        xs = [x for x in xs if x is not None]
        return float(np.median(xs)) if xs else float("nan")

    lines = [f"# Beauty default through the shared loop on {p['device']}", "",
             f"torch {p['torch']}, {p['data']['users']:,} users, {p['data']['items']:,} items; "
             f"up to {p['epochs']} epochs, {p['mode_budget_s']:.0f} s of training per mode, "
             f"validation every epoch (eval batch {p['eval_batch']}); data read in "
             f"{p['prep_s']:.1f} s without polars (prep check: {p['prep_check']}); stubbed: "
             f"{p['stubbed_modules'] or 'none'}.", "",
             "| mode | epochs | best epoch | median train s/epoch | median valid s | "
             "time to NDCG@10 >= .040 (s) | time to best (s) | test NDCG@10 | test HR@10 | "
             "stopped |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in p["modes"]:
        t = m["time_to_ndcg10_040_s"]
        lines.append(f"| {m['mode']} | {m['epochs_run']} | {m['best_epoch']} | "
                     f"{med(m['train_s']):.2f} | {med(m['valid_s']):.2f} | "
                     f"{'not reached' if t is None else f'{t:.1f}'} | "
                     f"{m['time_to_best_s']:.1f} | {m['test']['ndcg@10']:.4f} | "
                     f"{m['test']['hr@10']:.4f} | {m['stopped']} |")
    if p["breakdown_fp32"]:
        lines += ["", "Per-phase breakdown of an fp32 epoch (benchmarks/train_breakdown.py; each "
                  "phase ends with a device synchronisation):", "",
                  "| epoch | data | forward | backward | optimiser | validation | total (s) |",
                  "|---|---|---|---|---|---|---|"]
        for r in p["breakdown_fp32"]:
            w = r["phases_wall_s"]
            lines.append(f"| {r['epoch']} | {w['data']:.2f} | {w['forward']:.2f} | "
                         f"{w['backward']:.2f} | {w['optimiser']:.2f} | {w['validation']:.2f} | "
                         f"{r['wall_s']:.2f} |")
    lines += ["", "Times count from the first training step of each mode (the epoch-0 "
              "evaluation before it excluded); the first epoch includes warm-up and, with "
              "compile, compilation. Every epoch's figures are in the JSON."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
