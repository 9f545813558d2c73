#!/usr/bin/env python
# ruff: noqa: E501  (a standalone script run in its own RecBole venv; long report strings)
"""Peer baseline: RecBole 1.2.1 SASRec (CE loss) on Amazon Beauty, with per-epoch timing.

Runs RecBole's own pipeline (Config -> create_dataset -> data_preparation -> SASRec ->
Trainer.fit) and wraps the trainer's ``_train_epoch`` / ``_valid_epoch`` with
``time.perf_counter()`` so that each epoch's training and validation wall time and the
validation metrics are recorded. After training, the best-validation checkpoint is
reloaded (with ``weights_only=False``: torch >= 2.6 defaults to ``weights_only=True``,
which breaks RecBole's own ``evaluate(load_best_model=True)``) and evaluated on the
test split.

Must be run with a separate venv that has recbole==1.2.1 (see README.md here); it does
not import anything from liverec.

Input: ``<data-root>/Beauty/Beauty.txt`` -- one line per user, ``user item item ...`` in
chronological order. It is converted to a RecBole atomic file
``<workdir>/dataset/Beauty/Beauty.inter`` (timestamp = position in the user's sequence),
outside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
THRESHOLD = 0.040


def portable(path) -> str:
    """A path as recorded in the results: relative to the repository root (no machine paths)."""
    return os.path.relpath(Path(path).resolve(), REPO_ROOT)


def default_data_root() -> str:
    env = os.environ.get("LIVEREC_DATA")
    if env:
        return env
    return str((REPO_ROOT / ".." / "shared" / "data").resolve())


def convert_beauty(src: Path, dst: Path) -> dict:
    """Convert the ``user item item ...`` file to a RecBole .inter atomic file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    n_users = n_inter = 0
    items: set[str] = set()
    tmp = dst.with_suffix(".inter.tmp")
    with open(src) as fin, open(tmp, "w") as fout:
        fout.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in fin:
            parts = line.split()
            if not parts:
                continue
            user, seq = parts[0], parts[1:]
            n_users += 1
            for pos, item in enumerate(seq):
                fout.write(f"{user}\t{item}\t{pos}\n")
                items.add(item)
                n_inter += 1
    os.replace(tmp, dst)
    return {"users": n_users, "items": len(items), "interactions": n_inter}


def build_config_dict(workdir: Path, epochs: int, eval_batch_size: int) -> dict:
    return {
        # model (peer protocol)
        "model": "SASRec",
        "loss_type": "CE",
        "hidden_size": 64,
        "inner_size": 256,
        "n_layers": 2,
        "n_heads": 2,
        "hidden_dropout_prob": 0.5,
        "attn_dropout_prob": 0.5,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "MAX_ITEM_LIST_LENGTH": 50,
        # training
        "train_batch_size": 256,
        "eval_batch_size": eval_batch_size,
        "learning_rate": 0.001,
        "epochs": epochs,
        "eval_step": 1,
        "stopping_step": 10,
        "seed": 2020,
        "reproducibility": True,
        "train_neg_sample_args": None,
        # evaluation
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "mode": "full",
            "group_by": "user",
        },
        "metrics": ["Recall", "MRR", "NDCG", "Hit"],
        "topk": [5, 10, 20],
        "valid_metric": "NDCG@10",
        # data
        "data_path": str(workdir / "dataset"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        # environment
        "device": "cpu",
        "use_gpu": False,
        "show_progress": False,
        "checkpoint_dir": str(workdir / "saved"),
        "log_wandb": False,
    }


def to_float_dict(result) -> dict:
    return {str(k): float(v) for k, v in dict(result).items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default=default_data_root(),
                    help="folder holding Beauty/Beauty.txt (default: $LIVEREC_DATA or ../shared/data)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--workdir", default=os.getcwd(),
                    help="work dir outside the repo for the .inter file, logs and checkpoints (default: cwd)")
    ap.add_argument("--eval-batch-size", type=int, default=2048)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "recbole_sasrec_beauty.json"))
    args = ap.parse_args()

    workdir = Path(args.workdir).resolve()
    args.out = str(Path(args.out).resolve())  # before the chdir below
    src = Path(args.data_root) / "Beauty" / "Beauty.txt"
    if not src.is_file():
        sys.exit(f"missing {src}")
    inter = workdir / "dataset" / "Beauty" / "Beauty.inter"
    conv_stats = convert_beauty(src, inter)
    print(f"converted {src} -> {inter}: {conv_stats}", flush=True)

    os.chdir(workdir)  # RecBole writes log/ and log_tensorboard/ into cwd

    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    config_dict = build_config_dict(workdir, args.epochs, args.eval_batch_size)
    config = Config(model="SASRec", dataset="Beauty", config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    t0 = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_prep_s = time.perf_counter() - t0
    print(dataset, flush=True)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    n_params = sum(p.numel() for p in model.parameters())

    records: list[dict] = []

    class TimedTrainer(Trainer):
        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            t = time.perf_counter()
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func,
                                        show_progress=show_progress)
            dt = time.perf_counter() - t
            total = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
            records.append({"epoch": epoch_idx + 1, "train_s": dt, "train_loss": total})
            print(f"[timing] epoch {epoch_idx + 1} train {dt:.2f}s loss {total:.4f}", flush=True)
            return loss

        def _valid_epoch(self, valid_data, show_progress=False):
            t = time.perf_counter()
            score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
            dt = time.perf_counter() - t
            rec = records[-1]
            rec["valid_s"] = dt
            rec["valid"] = to_float_dict(result)
            print(f"[timing] epoch {rec['epoch']} valid {dt:.2f}s ndcg@10 {float(score):.4f}", flush=True)
            return score, result

    trainer = TimedTrainer(config, model)
    t_fit = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=True, show_progress=False)
    fit_wall_s = time.perf_counter() - t_fit

    cumulative = 0.0
    first_hit = None
    for rec in records:
        cumulative += rec["train_s"] + rec.get("valid_s", 0.0)
        rec["cumulative_s"] = cumulative
        if first_hit is None and rec.get("valid", {}).get("ndcg@10", 0.0) >= THRESHOLD:
            first_hit = rec
    best = max((r for r in records if "valid" in r), key=lambda r: r["valid"]["ndcg@10"])

    # Test of the best-validation checkpoint (torch >= 2.6: weights_only must be False).
    ckpt_path = trainer.saved_model_file
    checkpoint = torch.load(ckpt_path, map_location=config["device"], weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    t = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    test_s = time.perf_counter() - t

    out = {
        "baseline": "RecBole SASRec (CE loss), Amazon Beauty, peer protocol",
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "machine": {
            "nproc": os.cpu_count(),
            "sched_affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch_num_threads": torch.get_num_threads(),
            "torch_num_interop_threads": torch.get_num_interop_threads(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "device": str(config["device"]),
        },
        "data": {
            "source": portable(src),
            "inter_file": portable(inter),
            **conv_stats,
            "recbole_user_num": int(dataset.user_num),  # includes [PAD]
            "recbole_item_num": int(dataset.item_num),  # includes [PAD]
            # after SequentialDataset augmentation: one sample per (user, prefix) whose target is
            # not the user's first item, i.e. interactions - users (all interactions are kept)
            "recbole_augmented_samples": int(dataset.inter_num),
        },
        "config": {**config_dict, "data_path": portable(config_dict["data_path"]),
                   "checkpoint_dir": portable(config_dict["checkpoint_dir"])},
        "n_params": int(n_params),
        "data_prep_s": data_prep_s,
        "fit_wall_s": fit_wall_s,
        "epochs_run": len(records),
        "per_epoch": records,
        "valid_ndcg10_threshold": THRESHOLD,
        "first_epoch_valid_ndcg10_ge_0.040": first_hit["epoch"] if first_hit else None,
        "cumulative_s_at_first_valid_ndcg10_ge_0.040": first_hit["cumulative_s"] if first_hit else None,
        "cumulative_s_note": "sum of per-epoch training + validation wall time up to and including that epoch "
                             "(excludes data preparation and checkpoint saving)",
        "best_valid_epoch": best["epoch"],
        "best_valid_score_ndcg10": float(best_valid_score),
        "best_valid": to_float_dict(best_valid_result) if best_valid_result is not None else None,
        "checkpoint": portable(ckpt_path),
        "checkpoint_epoch": int(checkpoint.get("epoch", -1)) + 1,
        "test_s": test_s,
        "test": to_float_dict(test_result),
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    out_path.with_suffix(".md").write_text(render_markdown(out))
    print(json.dumps({k: out[k] for k in ("first_epoch_valid_ndcg10_ge_0.040",
                                           "cumulative_s_at_first_valid_ndcg10_ge_0.040",
                                           "best_valid_epoch", "test")}, indent=2), flush=True)
    print(f"wrote {out_path} and {out_path.with_suffix('.md')}", flush=True)
    return 0


def render_markdown(out: dict) -> str:
    m = out["machine"]
    lines = [
        "# RecBole SASRec (CE) on Amazon Beauty — peer baseline timing",
        "",
        f"RecBole {out['recbole_version']}, torch {out['torch_version']}, Python {out['python_version']}; "
        f"CPU only, nproc={m['nproc']}, torch threads={m['torch_num_threads']}. "
        f"{out['epochs_run']} epochs (peer protocol runs 50; truncated for cost). "
        f"Model parameters: {out['n_params']:,}. Data preparation: {out['data_prep_s']:.1f} s.",
        "",
        "Config: hidden 64, inner 256, 2 layers, 2 heads, dropout 0.5/0.5, max len 50, "
        "batch 256, lr 1e-3, seed 2020, full ranking over all items, leave-one-out (valid/test), "
        "valid metric NDCG@10.",
        "",
        "| epoch | train s | valid s | cumulative s | train loss | val NDCG@10 | val NDCG@20 | val HR@10 | val HR@20 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["per_epoch"]:
        v = r.get("valid", {})
        lines.append(
            f"| {r['epoch']} | {r['train_s']:.1f} | {r.get('valid_s', float('nan')):.1f} | "
            f"{r['cumulative_s']:.1f} | {r['train_loss']:.1f} | {v.get('ndcg@10', float('nan')):.4f} | "
            f"{v.get('ndcg@20', float('nan')):.4f} | {v.get('hit@10', float('nan')):.4f} | "
            f"{v.get('hit@20', float('nan')):.4f} |")
    fe = out["first_epoch_valid_ndcg10_ge_0.040"]
    lines += [""]
    if fe is None:
        lines.append(f"Validation NDCG@10 did not reach {out['valid_ndcg10_threshold']:.3f} "
                     f"within {out['epochs_run']} epochs.")
    else:
        lines.append(f"Validation NDCG@10 first >= {out['valid_ndcg10_threshold']:.3f} after epoch {fe}, "
                     f"at cumulative wall time {out['cumulative_s_at_first_valid_ndcg10_ge_0.040']:.1f} s "
                     "(training + validation; excludes data preparation and checkpoint saving).")
    t = out["test"]
    lines += [
        "",
        f"Test metrics of the best-validation checkpoint (epoch {out['best_valid_epoch']}):",
        "",
        "| HR@5 | HR@10 | HR@20 | NDCG@5 | NDCG@10 | NDCG@20 | MRR@20 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {t['hit@5']:.4f} | {t['hit@10']:.4f} | {t['hit@20']:.4f} | {t['ndcg@5']:.4f} | "
        f"{t['ndcg@10']:.4f} | {t['ndcg@20']:.4f} | {t['mrr@20']:.4f} |",
        "",
        "Produced by `benchmarks/recbole/run_recbole_sasrec.py` (see README.md).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
