"""Text-aware items benchmark: id vs text vs fusion, cold start, transfer, PEFT, encoding speed.

    python benchmarks/text_bench.py --smoke                       # synthetic, about a minute
    python benchmarks/text_bench.py --parts encode quality coldstart transfer --tag beauty \
        [--set train.num_threads=2] [--runs runs/text_bench]

Parts (each writes into benchmarks/results/text_bench_<tag>.{json,md,png} as soon as it ends,
so parts can run on different days; earlier parts' results are kept):
- encode: 10,000 item texts through the text encoder with an empty cache (fp32 reference and
  bf16 fast path), then again (every vector from the cache).
- quality: configs/beauty/{sasrec,text_only,text_fusion}.json trained and evaluated on test
  (full ranking, the run directory reloaded as ``liverec eval`` does).
- coldstart: 10% of items held out of training (evaluate/coldstart.py), added after training
  from text; HR/NDCG@K on cold vs warm test targets; an id-only model beside (its cold items
  get zero vectors: it has nothing to go on).
- transfer: text-only model pretrained on Beauty (the quality run, else trained here),
  fine-tuned on ml-100k with 100% / 25% / 10% of its users' training sequences vs from scratch;
  PEFT (LoRA, adaptor-only) vs full fine-tuning on 100% and 10% of users.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import liverec
from liverec.config import RunConfig, apply_overrides, load_config
from liverec.data.pipeline import load_and_prepare
from liverec.data.subsets import subsample_train_users
from liverec.evaluate.coldstart import evaluate_coldstart, hold_out_items
from liverec.evaluate.protocol import evaluate_model
from liverec.evaluate.report import evaluate_run
from liverec.model.items import uses_text
from liverec.model.text_items import extend_embedding
from liverec.train.loop import train
from liverec.train.setup import pretrained_state

RESULTS = Path(__file__).parent / "results"
CONFIGS = Path(__file__).parent.parent / "configs"
log = logging.getLogger("text_bench")


@dataclasses.dataclass
class Context:
    configs: dict[str, RunConfig]  # id, text, fusion (source data) and target (transfer)
    runs: Path
    encoder: str
    peft_lr: float
    fractions: tuple[float, ...]
    results: dict
    models: tuple[str, ...] = ("id", "text", "fusion")  # quality and coldstart parts


def build_context(args: argparse.Namespace) -> Context:
    if args.smoke:
        smoke = load_config(CONFIGS / "transfer" / "smoke.json")
        configs = {"id": apply_overrides(smoke, ["model.item_repr=id"]), "text": smoke,
                   "fusion": apply_overrides(smoke, ["model.item_repr=fusion",
                                                     "model.adaptor=linear"]),
                   "target": apply_overrides(smoke, ["data.synthetic.seed=8",
                                                     "data.synthetic.n_items=90"])}
    else:
        configs = {"id": load_config(CONFIGS / "beauty" / "sasrec.json"),
                   "text": load_config(CONFIGS / "beauty" / "text_only.json"),
                   "fusion": load_config(CONFIGS / "beauty" / "text_fusion.json"),
                   "target": load_config(CONFIGS / "transfer" / "ml-100k_text.json")}
    configs = {k: apply_overrides(v, list(args.overrides)) for k, v in configs.items()}
    path = RESULTS / f"text_bench_{args.tag}.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    return Context(configs, Path(args.runs), args.encoder or configs["text"].model.text_encoder,
                   args.peft_lr, tuple(args.fractions), results)


def test_metrics(run_dir: Path, prepared) -> dict:
    """Test metrics of a run directory's best checkpoint, reloaded from disk."""
    model = liverec.load(run_dir).model
    return evaluate_model(model, prepared, "test", (5, 10, 20))


def train_row(cfg: RunConfig, prepared, out: Path, init: Path | None = None) -> dict:
    state = pretrained_state(init) if init is not None else None
    res = train(cfg, prepared, out, init_state=state)
    return {"run_dir": str(out), "best_epoch": res.best_epoch, "wall_s": res.wall_s,
            "n_parameters": res.n_parameters, "n_trainable": res.n_trainable,
            "trainable_fraction": res.n_trainable / max(res.n_parameters, 1),
            "stopped": res.stopped}


def bench_encode(ctx: Context) -> dict:
    from liverec.text import VectorCache, build_encoder, encode_cached, item_text

    prepared = load_and_prepare(ctx.configs["text"].data)
    texts = item_text(prepared.items, ctx.configs["text"].model.text_template)
    texts = (texts * (10_000 // len(texts) + 1))[:10_000] if len(texts) < 10_000 else texts[:10_000]
    if len(set(texts)) < len(texts):
        texts = [f"{t} #{i}" for i, t in enumerate(texts)]  # every text a new one
    out: dict = {"texts": len(texts), "encoder": ctx.encoder, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        variants = [ctx.encoder] + (["minilm-bf16"] if ctx.encoder == "minilm" else [])
        for variant in variants:
            enc = build_encoder(variant)
            enc.encode(["warm up"])  # model load is not encoding time
            cache = VectorCache(Path(tmp) / f"{variant}.sqlite")
            t0 = time.perf_counter()
            first = encode_cached(enc, texts, cache)
            t1 = time.perf_counter()
            second = encode_cached(enc, texts, VectorCache(cache.path))
            t2 = time.perf_counter()
            out[variant] = {"first_s": t1 - t0, "second_s": t2 - t1,
                            "texts_per_s": len(texts) / (t1 - t0), "cache_hits_second": len(texts)
                            if np.array_equal(first, second) else 0}
    return out


def bench_quality(ctx: Context) -> dict:
    out = {}
    for name in ctx.models:
        cfg = ctx.configs[name]
        prepared = load_and_prepare(cfg.data)
        run = ctx.runs / f"quality_{name}"
        row = train_row(cfg, prepared, run)
        metrics = evaluate_run(run, baselines=())
        row.update(test=metrics["model"]["test"], valid=metrics["model"]["valid"])
        out[name] = row
        log.info("quality %s: test ndcg@20 %.4f hr@20 %.4f", name, row["test"]["ndcg@20"],
                 row["test"]["hr@20"])
    return out


def add_cold_items(rec, split) -> None:
    """Text-aware: from text through the API. Id-only: zero vectors (nothing to go on)."""
    if uses_text(rec.model.cfg):
        rec.add_items(split.cold_items)
        return
    extend_embedding(rec.model.items.emb, len(split.cold_items))
    rec.model.cfg = dataclasses.replace(rec.model.cfg, n_items=split.full.vocab.n_items)


def bench_coldstart(ctx: Context, fraction: float = 0.1) -> dict:
    prepared = load_and_prepare(ctx.configs["text"].data)
    split = hold_out_items(prepared, fraction, seed=0)
    out: dict = {"fraction": fraction, "cold_items": len(split.cold_items)}
    for name in ctx.models:
        run = ctx.runs / f"coldstart_{name}"
        row = train_row(ctx.configs[name], split.train, run)
        rec = liverec.load(run)
        add_cold_items(rec, split)
        row.update(evaluate_coldstart(rec.model, split))
        row.pop("protocol")
        out[name] = row
        log.info("coldstart %s: cold hr@20 %.4f warm hr@20 %.4f", name,
                 row["cold"].get("hr@20", 0), row["warm"].get("hr@20", 0))
    return out


def pretrained_run(ctx: Context) -> Path:
    run = ctx.runs / "quality_text"
    if not (run / "model.safetensors").is_file() or not (run / "train_log.json").is_file():
        train(ctx.configs["text"], load_and_prepare(ctx.configs["text"].data), run)
    return run


def bench_transfer(ctx: Context) -> dict:
    pre = pretrained_run(ctx)
    cfg = ctx.configs["target"]
    target = load_and_prepare(cfg.data)
    out: dict = {"pretrained": str(pre), "target": cfg.data.source, "rows": [],
                 "peft_lr": ctx.peft_lr}
    for frac in ctx.fractions:
        sub = subsample_train_users(target, frac, seed=0)
        modes = [("scratch", None), ("full", "full")]
        if frac in (1.0, min(ctx.fractions)):
            modes += [("lora", "lora"), ("adaptor", "adaptor")]
        for label, mode in modes:
            over = [] if mode is None else [f"model.finetune={mode}"]
            if mode in ("lora", "adaptor"):
                over.append(f"train.lr={ctx.peft_lr}")
            run = ctx.runs / f"transfer_{label}_{frac:g}"
            row = train_row(apply_overrides(cfg, over), sub, run, None if mode is None else pre)
            row.update(fraction=frac, mode=label, test=test_metrics(run, target))
            out["rows"].append(row)
            log.info("transfer %s %.0f%%: test ndcg@20 %.4f (%d trainable)", label, 100 * frac,
                     row["test"]["ndcg@20"], row["n_trainable"])
    return out


PARTS = {"encode": bench_encode, "quality": bench_quality, "coldstart": bench_coldstart,
         "transfer": bench_transfer}


def main() -> None:
    from text_bench_report import write_report

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    p.add_argument("--smoke", action="store_true", help="synthetic data, hash encoder, minutes")
    p.add_argument("--tag", default=None, help="results name (default: beauty or smoke)")
    p.add_argument("--runs", default=None, help="where run directories go")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="override applied to every config, e.g. train.max_time_s=1800")
    p.add_argument("--encoder", default=None, help="encoder for the encode part")
    p.add_argument("--peft-lr", type=float, default=1e-2,
                   help="learning rate for LoRA/adaptor (few trainable weights: higher than full)")
    p.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.25, 0.1])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", nargs="+", default=["id", "text", "fusion"],
                   choices=["id", "text", "fusion"],
                   help="item representations compared in the quality and coldstart parts")
    args = p.parse_args()
    args.tag = args.tag or ("smoke" if args.smoke else "beauty")
    args.runs = args.runs or f"runs/text_bench_{args.tag}"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    ctx = build_context(args)
    ctx.models = tuple(args.models)
    ctx.results.setdefault("meta", {})
    for part in args.parts:
        t0 = time.perf_counter()
        new = PARTS[part](ctx)
        new["part_wall_s"] = time.perf_counter() - t0
        new["overrides"] = list(args.overrides)  # each part keeps the settings it ran with
        if part in ("quality", "coldstart"):  # rows of models not re-run this time are kept
            for name in ctx.models:
                new[name]["overrides"] = list(args.overrides)
            new = {**ctx.results.get(part, {}), **new}
        ctx.results[part] = new
        ctx.results["meta"].update(tag=args.tag, smoke=args.smoke, overrides=args.overrides,
                                   torch=torch.__version__, threads=args.threads)
        write_report(ctx.results, RESULTS / f"text_bench_{args.tag}")
        print(f"{part}: done in {ctx.results[part]['part_wall_s']:.0f}s")


if __name__ == "__main__":
    main()
