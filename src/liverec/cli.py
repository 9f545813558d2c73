"""The ``liverec`` command line: parse arguments, call one function, print a readable result.

Each sub-command is a ``_cmd_<name>`` function registered in ``COMMANDS`` with its parser
builder; errors that liverec raises on purpose are printed as one line (no traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from liverec.errors import LiverecError
from liverec.logs import cli_logging

log = logging.getLogger("liverec")


def _data_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--data", required=required, metavar="NAME|PATH",
                   help="registry name (beauty, beauty-bert4rec, lastfm, ml-100k, "
                        "ml-latest-small, ml-1m, synthetic) or a path to a data file")
    p.add_argument("--data-root", help="folder holding the named datasets "
                                       "(default: $LIVEREC_DATA, then ../shared/data)")
    p.add_argument("--format", dest="data_format",
                   help="file format when it cannot be detected: s3rec, pairs, csv, tsv, "
                        "parquet, movielens")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a RunConfig JSON/TOML file (e.g. configs/beauty/...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set train.lr=3e-4 (repeatable)")


def _resolve_config(args: argparse.Namespace):
    """The run config from --config, --data/--data-root/--format and --set, validated (values,
    cross-field rules and the paths it names) before any work starts."""
    from liverec.config import RunConfig, apply_overrides, check_paths, load_config

    cfg = load_config(args.config) if args.config else RunConfig()
    overrides = list(args.overrides)
    if getattr(args, "data", None):
        overrides.insert(0, f"data.source={json.dumps(args.data)}")
    if getattr(args, "data_root", None):
        overrides.insert(0, f"data.data_root={json.dumps(args.data_root)}")
    if getattr(args, "data_format", None):
        overrides.insert(0, f"data.format={json.dumps(args.data_format)}")
    cfg = apply_overrides(cfg, overrides)
    check_paths(cfg)
    return cfg


def _cmd_train(args: argparse.Namespace) -> int:
    from liverec.config import monitor_metric
    from liverec.data.pipeline import load_and_prepare
    from liverec.evaluate.report import evaluate_run
    from liverec.train.distributed import env_context, main_first, process_group, select_device
    from liverec.train.loop import train

    cfg = _resolve_config(args)  # a bad setting fails here, before any worker starts
    if args.init and not Path(args.init).is_dir():
        raise LiverecError(f"--init {args.init}: no such run directory")
    ctx = env_context()
    if args.nproc > 1 and not ctx.enabled:
        from liverec.train.launch import launch_local

        return launch_local(args.nproc, args.argv, Path(args.out))
    if args.name:
        cfg = dataclasses.replace(cfg, name=args.name)
    init_state = None
    if args.init:
        from liverec.train.setup import inherit_model_config, pretrained_state

        cfg = inherit_model_config(cfg, Path(args.init), args.overrides)
        init_state = pretrained_state(Path(args.init))
    out = Path(args.out)
    say = print if ctx.is_main else (lambda *a, **k: None)  # rank 0 speaks for a DDP job
    t0 = time.perf_counter()
    with process_group(ctx, select_device(cfg.train.device, ctx)):
        with main_first(ctx):  # rank 0 fills the prepared-data cache, the others read it
            prepared = load_and_prepare(cfg.data)
        say(f"data: {prepared.name}: {prepared.stats['users']:,} users, "
            f"{prepared.stats['items']:,} items, {prepared.stats['interactions']:,} "
            f"interactions ({time.perf_counter() - t0:.1f}s)"
            + ("; no time column: events in file order" if prepared.stats.get("order") == "file"
               else ""))
        result = train(cfg, prepared, out, init_state=init_state, resume=args.resume)
    if not ctx.is_main:
        return 0
    key = monitor_metric(cfg)
    print(f"trained {result.n_trainable:,} of {result.n_parameters:,} parameters in "
          f"{result.wall_s:.0f}s; best validation "
          f"{key.upper()} {result.best_valid.get(key, 0):.4f} at epoch {result.best_epoch} "
          f"({result.stopped})" + (f" on {ctx.world_size} processes" if ctx.enabled else ""))
    if result.refit:
        r = result.refit
        print(f"refit on the validation events: {r['epochs']} epochs at lr {r['lr']:g}, "
              f"{r['added_targets']:,} targets added, {r['wall_s']:.0f}s; " +
              ("kept (validation scores of this model are no longer held out)" if r["kept"]
               else f"not kept ({r['why']}): the best validation epoch's weights stay"))
    if args.eval:
        metrics = evaluate_run(out, baselines=() if args.no_baselines else None)
        _print_metrics(metrics, cfg.eval.ks)
    print(f"run directory: {out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from liverec.config import apply_overrides, check_paths
    from liverec.evaluate.report import evaluate_run
    from liverec.model.artifact import read_run_config

    run_dir = Path(args.run_dir)
    cfg = read_run_config(run_dir)
    baselines = () if args.no_baselines else None
    over = [f"data.{k}={json.dumps(v)}" for k, v in
            (("source", args.data), ("data_root", args.data_root),
             ("format", args.data_format)) if v]
    if args.data:  # a new log: its own next events, written beside the run's results
        from liverec.evaluate.newdata import evaluate_new_data

        if not args.data_format:  # detect the new log's format, not the training data's
            over.append("data.format=null")
        new = apply_overrides(cfg, over)
        check_paths(new)
        out = Path(args.out) if args.out else None
        metrics = evaluate_new_data(run_dir, new.data, baselines, out)
        d = metrics["data"]
        print(f"new log {args.data}: {d['events']:,} events, {d['users']:,} users -> "
              f"{d['cases']:,} test cases, {d['cases_unknown_target']:,} of them on items the "
              f"model does not know (misses); details in {metrics['files']['report']}")
        if d["new_users"] is not None:
            print(f"{d['new_users']:,} of the {d['cases']:,} case users are not in the run's "
                  "training data (scored from their history in the new log)")
        _print_metrics(metrics, cfg.eval.ks, "Test metrics on the new log's next events "
                       "(full ranking, seen items masked, unknown targets are misses)")
        files = metrics["files"]
        print(f"wrote {files['metrics']} and {files['report']}")
        return 0
    if args.out:
        raise LiverecError("--out is for --data NEW; the run's own evaluation is written "
                           "into the run directory")
    data_cfg = apply_overrides(cfg, over).data if over else None
    metrics = evaluate_run(run_dir, data_cfg, baselines=baselines)
    _print_metrics(metrics, cfg.eval.ks)
    print(f"wrote {run_dir / 'metrics.json'} and {run_dir / 'report.md'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from liverec.demo import run_demo

    return run_demo(Path(args.out), serve=not args.no_serve, port=args.port)


def _cmd_compress(args: argparse.Namespace) -> int:
    from liverec.compress.pipeline import compress_run, student_overrides
    from liverec.compress.report import render_markdown
    from liverec.compress.variants import CompressConfig
    from liverec.model.artifact import read_meta

    if not (args.int8 or args.half or args.prune or args.distill is not None or args.onnx):
        raise LiverecError("nothing to build: choose at least one variant (--int8, --half "
                           "bf16|fp16, --prune RATIO, --distill, --onnx)")
    if not 0.0 <= args.prune < 1.0:
        raise LiverecError(f"--prune {args.prune}: the share of weights to prune must be in "
                           "[0, 1)")
    meta = Path(args.run_dir) / "config.json"  # (a missing run directory: compress_run says so)
    compressed = read_meta(Path(args.run_dir)).get("compression") if meta.is_file() else None
    if compressed:
        kind = compressed.get("method", "?") if isinstance(compressed, dict) else compressed
        raise LiverecError(f"{args.run_dir} is already a compressed variant ({kind}); "
                           "compress the fp32 run it was built from")
    cc = CompressConfig(
        int8=args.int8, half=args.half or "", prune=args.prune,
        prune_kinds=("structured",) if args.structured else ("magnitude",),
        distill=student_overrides(args.distill), onnx=args.onnx,
        finetune_epochs=args.finetune_epochs, distill_epochs=args.distill_epochs,
        distill_copy=args.distill_copy, report=not args.no_report, threads=args.threads,
    )
    result = compress_run(Path(args.run_dir), Path(args.out), cc)
    for name, path in result["variants"].items():
        print(f"{name}: {path}")
    if result["report"]:
        print("\n" + render_markdown(result["report"]))
        print("wrote " + ", ".join(str(p) for p in result["files"]))
    return 0


def _cmd_export_web(args: argparse.Namespace) -> int:
    from liverec.edge.bundle import WebExportConfig, export_web

    cfg = WebExportConfig(weights=args.weights, table=args.table, runtime=args.runtime,
                          gzip=not args.no_gzip)
    cfg.check()  # a bad setting: one line before the data is read
    out = Path(args.out) if args.out else Path(args.run_dir) / "web"
    histories = None
    if args.check_on == "data":
        from liverec.compress.variants import check_histories, prepare_for

        try:
            prepared = prepare_for(Path(args.run_dir))
        except LiverecError as exc:
            raise LiverecError(f"{exc} (the int8 check reads the run's test histories; "
                               "--check-on probe uses seeded random ones instead)") from None
        histories = check_histories(prepared, cfg.check_histories)
    m = export_web(Path(args.run_dir), out, cfg, histories)
    enc = m["encoder"]
    print(f"web bundle {m['version']} of {m['source']['model_version']}: {out}")
    for name, f in m["files"].items():
        print(f"  {name:<24} {f['bytes']:>10,} bytes  {f['gzip_bytes']:>10,} gzip")
    print(f"  {'total':<24} {m['total']['bytes']:>10,} bytes  {m['total']['gzip_bytes']:>10,} gzip")
    overlap = next((v for k, v in enc.items() if k.endswith("_overlap_with_fp32")), None)
    print(f"encoder weights: {enc['weights']}" + (f" (int8 top-10 overlap with fp32 {overlap}, "
          f"gzip saving {enc['int8_gzip_saving']:.0%})" if overlap is not None else ""))
    rt = m["runtime"]
    print(f"runtime: {rt['total']['bytes']:,} bytes, {rt['total']['gzip_bytes']:,} gzip "
          f"(onnxruntime-web {rt['onnxruntime_web']})" if rt else
          "runtime: none (build clients/js: npm ci && npm run build)")
    return 0


ARGV_KEY_WARNING = ("liverec: warning: --api-key puts the key in the process arguments, which "
                    "every local user can read (ps); use LIVEREC_SERVE_API_KEY or --api-key-file")


def _cmd_serve(args: argparse.Namespace) -> int:
    from liverec.serve.server import serve

    if args.api_key:
        print(ARGV_KEY_WARNING, file=sys.stderr)
    extra = {k: v for k, v in (("store", args.store), ("api_key", args.api_key),
                               ("api_key_file", args.api_key_file),
                               ("models_root", args.models_root),
                               ("retriever", args.retriever), ("rerank", args.rerank)) if v}
    if args.naive:
        extra["naive"] = True
    print(f"serving {args.run_dir} on http://{args.host}:{args.port} (docs: /docs)")
    serve(args.run_dir, host=args.host, port=args.port, workers=args.workers, **extra)
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    import liverec
    from liverec.explain import Explainer, explanation_text

    explainer = Explainer.from_recommender(liverec.load(args.run_dir))
    e = explainer.explain(args.history, args.item, ig=args.ig, attention=args.attention)
    print(json.dumps(e.to_dict(), indent=2) if args.json else explanation_text(e))
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from liverec.model.query import recommend_for
    from liverec.text.query import QueryConfig

    cfg = QueryConfig(weight=args.query_weight, normalise=args.query_normalise)
    got = recommend_for(args.run_dir, args.history, args.query, args.k, cfg, args.items,
                        args.encoder)
    if args.json:
        print(json.dumps(got, indent=2))
    for rank, r in enumerate([] if args.json else got, 1):
        print(f"{rank:>3}  {r['item_id']}  {r['score']:.4f}  {r['title'][:80]}")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from liverec.tune.report import render_markdown
    from liverec.tune.search import TuneConfig, run_study
    from liverec.tune.space import SearchSpace

    base = _resolve_config(args)
    if 10 not in base.eval.ks:  # tune/search.py ranks and prunes trials on validation NDCG@10
        raise LiverecError(f"liverec tune ranks trials on validation NDCG@10: eval.ks must "
                           f"include 10 (it is {list(base.eval.ks)})")
    space = None
    if args.space:
        try:
            text = args.space if args.space.lstrip().startswith("{") else \
                Path(args.space).read_text()
            space = SearchSpace.from_dict(json.loads(text))
        except ValueError as exc:
            raise LiverecError(f"--space {args.space}: not valid JSON ({exc})") from None
    tc = TuneConfig(trials=args.trials, sampler=args.sampler, storage=args.storage,
                    study_name=args.study_name, timeout_s=args.timeout, seed=args.seed,
                    trial_time_s=args.trial_time, prune=not args.no_prune,
                    heartbeat_s=args.heartbeat)
    summary = run_study(base, Path(args.out), tc, space)
    print(render_markdown(summary))
    for name, path in summary["files"].items():
        print(f"{name}: {path}")
    if "best_config" in summary["files"]:
        print(f"train it: liverec train --config {summary['files']['best_config']} --out DIR")
    return 0


def _read_events(source: str):
    """New events from a store URL (sqlite:///..., redis://...) or a Parquet/CSV file with
    user_id, item_id, ts columns (in arrival order)."""
    import polars as pl

    from liverec.retrain import events_frame

    if "://" in source:
        from liverec.serve.stores import open_store

        store = open_store(source)
        try:
            return events_frame(store.events())
        finally:
            store.close()
    path = Path(source)
    if not path.is_file():
        raise LiverecError(f"--events {source}: not a store URL (sqlite:///path.db, "
                           "redis://host:port/db) and no such file")
    try:
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(
            path, schema_overrides={"user_id": pl.Utf8, "item_id": pl.Utf8})  # ids: exact text
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise LiverecError(f"--events {source}: cannot read it ({exc})") from None
    return events_frame(frame)


def _retrain_once(args: argparse.Namespace, run_dir: Path, events, out: Path, rc) -> dict:
    from liverec.retrain import notify_reload, retrain

    report = retrain(run_dir, events, out, rc)
    d, cur, new = report["data"], report["current"], report["new"]
    print(f"events: {d['events_used']:,} used, {d['events_skipped_unknown_item']:,} on unknown "
          f"items skipped, {d['new_items']:,} new items given a row; "
          f"{d['users_with_events']:,} users ({d['new_users']:,} new); held out "
          f"{d['selection_cases']:,} (epoch choice) + {d['decision_cases']:,} (decision)")
    print(f"held-out NDCG@20 {cur['ndcg@20']:.4f} -> {new['ndcg@20']:.4f}, HR@20 "
          f"{cur['hr@20']:.4f} -> {new['hr@20']:.4f} (best epoch {report['best_epoch']} of "
          f"{len(report['epochs'])}, {report['wall_s']:.0f} s)")
    if not report["published"]:
        print(f"not published: {report['reason']} (report: {out / 'retrain.json'})")
        return report
    print(f"published {out}")
    if args.server:
        answer = notify_reload(args.server, out, args.server_key)
        print(f"{args.server} now serves {answer.get('model_version')} "
              f"(was {answer.get('previous_version')})")
    return report


def _cmd_retrain(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from liverec.retrain import RetrainConfig, latest_version
    from liverec.serve.keys import client_key

    if args.api_key:
        print(ARGV_KEY_WARNING, file=sys.stderr)
    # read before any work: a wrong key file is one line now, not after the fine-tuning
    args.server_key = client_key(args.api_key, args.api_key_file) if args.server else None
    try:
        rc = RetrainConfig(epochs=args.epochs, lr=args.lr, holdout=args.holdout,
                           min_cases=args.min_cases, replay=not args.no_replay,
                           tolerance=args.tolerance,
                           new_item_min_events=args.new_item_min_events, seed=args.seed)
    except ValueError as exc:
        raise LiverecError(str(exc)) from None
    out = Path(args.out)
    if not args.every:
        report = _retrain_once(args, Path(args.run_dir), _read_events(args.events), out, rc)
        return 0 if report["published"] else 1
    seen = -1
    for round_ in range(args.rounds or 10**9):
        if round_:
            time.sleep(args.every)
        current = latest_version(out) or Path(args.run_dir)
        events = _read_events(args.events)  # the whole log, read once per round
        n = events.height
        if n == seen:
            print(f"{datetime.now(timezone.utc):%H:%M:%S} no new events; serving {current}")
            continue
        version = out / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        print(f"{datetime.now(timezone.utc):%H:%M:%S} {n:,} events; retraining {current}")
        try:
            _retrain_once(args, current, events, version, rc)
        except LiverecError as exc:  # e.g. too few held-out cases yet: try again next round
            print(f"round skipped: {exc}", file=sys.stderr)
        seen = n
    return 0


def _print_metrics(metrics: dict, ks: tuple[int, ...],
                   title: str = "Test metrics (full ranking, seen items masked, ties pessimistic)"
                   ) -> None:
    from liverec.evaluate.report import (
        beyond_table,
        choice_line,
        kind_section,
        metrics_table,
        repeat_line,
    )

    rows = {f"{metrics['model']['name']} (liverec)": metrics["model"]["test"]}
    rows.update(metrics.get("baselines", {}))
    repeat_aware = metrics.get("protocol_choice", {}).get("protocol") == "repeat"
    if repeat_aware:
        title = title.replace("seen items masked", "history NOT masked (repeat-aware)")
    print(f"\n{title}:\n")
    print(metrics_table(rows, ks))
    print(kind_section(metrics, rows, ks) if repeat_aware else
          repeat_line(metrics["model"]["test"]))
    if "protocol_choice" in metrics:
        print(choice_line(metrics["protocol_choice"]))
    if metrics.get("beyond"):
        print(f"Beyond accuracy (test top-{metrics['beyond']['k']} lists; definitions in "
              "report.md):\n")
        print(beyond_table(metrics["beyond"]))


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a sequence model and evaluate it",
                       description="Train a transformer sequence model on a dataset, keep the "
                                   "best validation checkpoint, then evaluate it on test.")
    _data_args(p)
    _config_args(p)
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--name", help="a name for the run (shown in reports)")
    p.add_argument("--init", metavar="RUN_DIR",
                   help="start from a pretrained run (same or another catalogue; text-aware "
                        "models transfer across catalogues); its model settings are used, "
                        "model.* --set overrides (e.g. model.finetune=lora) still apply")
    p.add_argument("--no-eval", dest="eval", action="store_false",
                   help="skip the test evaluation after training")
    p.add_argument("--no-baselines", action="store_true", help="evaluate without baselines")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training on N local processes (runs torchrun; the "
                        "global batch stays train.batch_size)")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>/checkpoint.safetensors (same settings)")
    p.set_defaults(func=_cmd_train)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run directory against baselines",
                       description="Full-ranking leave-one-out evaluation of a trained run "
                                   "(HR/NDCG/MRR@K, coverage) beside popularity, item-kNN "
                                   "and ALS baselines; writes metrics.json and report.md "
                                   "into the run directory. With --data NEW: each user's "
                                   "last event in the new log is the test target (targets "
                                   "on items the model does not know are misses; what is "
                                   "left out is counted), written to RUN/eval/<data name>/.")
    p.add_argument("run_dir", help="a run directory written by 'liverec train'")
    _data_args(p)
    p.add_argument("--out", metavar="DIR", help="with --data: where to write metrics.json and "
                                                "report.md (default RUN/eval/<data name>)")
    p.add_argument("--no-baselines", action="store_true", help="evaluate the model only")
    p.set_defaults(func=_cmd_eval)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on embedded synthetic data",
                       description="Generate the synthetic shop, train, evaluate against "
                                   "baselines, build int8 and ONNX Runtime variants and "
                                   "compare them, then serve the model (offline).")
    p.add_argument("--out", default="runs/demo", help="where to write the demo run")
    p.add_argument("--no-serve", action="store_true", help="stop after the report")
    p.add_argument("--port", type=int, default=8000, help="port to serve on")
    p.set_defaults(func=_cmd_demo)


def _add_compress(sub) -> None:
    p = sub.add_parser("compress", help="int8 / pruned / distilled / ONNX variants + report",
                       description="Build compressed variants of a trained run (each a run "
                                   "directory that 'liverec.load' and 'liverec serve' accept) "
                                   "and compare them with it: NDCG@20, HR@20, size, latency.")
    p.add_argument("run_dir", help="a run directory written by 'liverec train'")
    p.add_argument("--out", required=True, help="folder for the variant run directories")
    p.add_argument("--int8", action="store_true", help="int8 linear layers and item table")
    p.add_argument("--half", choices=("bf16", "fp16"), help="a bf16 or fp16 variant")
    p.add_argument("--prune", type=float, default=0.0, metavar="RATIO",
                   help="prune this share of weights (or heads/FFN units with --structured)")
    p.add_argument("--structured", action="store_true",
                   help="structured pruning (heads, FFN units; smaller tensors)")
    p.add_argument("--distill", nargs="*", metavar="STUDENT",
                   help="distil into a student: a ModelConfig JSON file or key=value items "
                        "(no value: item_repr=pq n_layers=1, one layer and a product-quantized "
                        "item table; with --distill-copy as benchmarked)")
    p.add_argument("--onnx", action="store_true", help="ONNX Runtime variants (fp32 and int8)")
    p.add_argument("--finetune-epochs", type=int, default=3, help="fine-tune after pruning")
    p.add_argument("--distill-epochs", type=int, default=10, help="student training epochs")
    p.add_argument("--distill-copy", action="store_true",
                   help="start the student's transformer tensors that match the teacher's in "
                        "name and shape there (e.g. n_layers=1: the teacher's first block)")
    p.add_argument("--threads", type=int, default=1, help="threads while measuring latency")
    p.add_argument("--no-report", action="store_true", help="build the variants only")
    p.set_defaults(func=_cmd_compress)


def _add_export_web(sub) -> None:
    p = sub.add_parser("export-web", help="a static bundle that recommends in the browser",
                       description="Write a run as a static web bundle: the sequence encoder "
                                   "as ONNX (int8 where it pays), the item table in compact "
                                   "form, the catalogue's ids and titles, a manifest (sizes, "
                                   "sha256, catalogue fingerprint) and the JavaScript runtime "
                                   "(clients/js). 'liverec serve RUN_DIR' serves RUN_DIR/web "
                                   "at /edge/ for the dashboard's 'on this device' mode.")
    p.add_argument("run_dir", help="a trained, distilled or pruned run directory")
    p.add_argument("--out", help="bundle folder (default RUN_DIR/web)")
    p.add_argument("--weights", choices=("auto", "int8", "fp32"), default="auto",
                   help="encoder weights (auto: int8 when it is >= 20%% smaller compressed and "
                        "keeps >= 0.95 of fp32's top-10 lists)")
    p.add_argument("--table", choices=("auto", "pq", "int8", "fp32"), default="auto",
                   help="item table form (auto: pq for a product-quantized model, else int8)")
    p.add_argument("--runtime", default="auto", metavar="DIR|auto|none",
                   help="the built web client to copy (auto: clients/js/dist when built)")
    p.add_argument("--check-on", choices=("data", "probe"), default="data",
                   help="histories the int8 decision is measured on: the run's test "
                        "histories (data) or seeded random ones (probe)")
    p.add_argument("--no-gzip", action="store_true", help="no .gz copies beside the files")
    p.set_defaults(func=_cmd_export_web)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve a run directory over HTTP (FastAPI + uvicorn)",
                       description="Real-time recommendations: per-user state from posted "
                                   "events, durable event log, cached and micro-batched "
                                   "inference, hot-swap (POST /admin/reload). Every setting "
                                   "can also come from LIVEREC_SERVE_<NAME> variables.")
    p.add_argument("run_dir", help="a run directory written by 'liverec train'")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (more than one needs --store redis://...)")
    p.add_argument("--store", help="memory://, sqlite:///path.db or redis://host:port/db "
                                   "(default: sqlite:///<run_dir>/../events.db)")
    p.add_argument("--api-key-file", metavar="FILE",
                   help="API keys, one per line ('KEY' = admin, or 'read:KEY' / 'write:KEY'), "
                        "re-read when the file changes and on SIGHUP (or "
                        "LIVEREC_SERVE_API_KEY=KEY[,KEY...]); with keys, reads of a person's "
                        "data, writes and reload need one")
    p.add_argument("--api-key", help="a key on the command line: every local user can read "
                                     "it (ps); prefer LIVEREC_SERVE_API_KEY or --api-key-file")
    p.add_argument("--models-root", metavar="DIR",
                   help="POST /admin/reload loads runs inside DIR only (default: RUN_DIR's "
                        "parent directory)")
    p.add_argument("--retriever", choices=("exact", "hnsw", "ivf"),
                   help="top-k search (default exact; hnsw/ivf for large catalogues)")
    p.add_argument("--naive", action="store_true",
                   help="reference path: no cache, no batching, full recompute per request")
    p.add_argument("--rerank", metavar="FILE",
                   help="re-ranking rules (JSON or TOML: deny/allow lists, category caps, MMR, "
                        "calibration, exposure), checked at start; requests may override them")
    p.set_defaults(func=_cmd_serve)


def _add_explain(sub) -> None:
    p = sub.add_parser("explain", help="why a run recommends an item after a history",
                       description="Which history items drove the item's score (leave-one-out "
                                   "deletion in one batched forward pass), the attributes and "
                                   "similar items it shares with the history, and a one-line "
                                   "reason.")
    p.add_argument("run_dir", help="a run directory written by 'liverec train'")
    p.add_argument("--history", nargs="+", required=True, metavar="ID",
                   help="item ids the user interacted with, oldest first")
    p.add_argument("--item", required=True, metavar="ID", help="the item to explain")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p.add_argument("--ig", action="store_true", help="add integrated gradients")
    p.add_argument("--attention", action="store_true",
                   help="add the last position's attention weights (a secondary view)")
    p.set_defaults(func=_cmd_explain)


def _add_recommend(sub) -> None:
    p = sub.add_parser("recommend", help="top-k for a history, a free-text query, or both",
                       description="A run's recommendations for a history (item ids, oldest "
                                   "first), a text query (items scored by the text encoder's "
                                   "similarity), or both (the two scores z-scored over the "
                                   "candidates and mixed by --query-weight); or, with --items, "
                                   "a text search of a catalogue alone (e.g. the FAQ demo).")
    p.add_argument("run_dir", nargs="?", help="a run directory written by 'liverec train'")
    p.add_argument("--history", nargs="+", metavar="ID", help="item ids, oldest first")
    p.add_argument("--query", help="free text, e.g. 'vegan lip balm'")
    p.add_argument("-k", type=int, default=10, help="list length (default 10)")
    p.add_argument("--query-weight", type=float, default=0.7, metavar="W",
                   help="the query's share of the blend with a history, in [0, 1] (0.7)")
    p.add_argument("--query-normalise", choices=("zscore", "softmax"), default="zscore",
                   help="how both scores are put on one scale before mixing (zscore)")
    p.add_argument("--items", metavar="faq|FILE",
                   help="search this catalogue by text instead of a run: 'faq' (the built-in "
                        "help-desk FAQ) or a JSONL/CSV/Parquet file with item, title, text")
    p.add_argument("--encoder", help="text encoder for --items (default minilm)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=_cmd_recommend)


def _add_tune(sub) -> None:
    p = sub.add_parser("tune", help="hyper-parameter search (Optuna: TPE, random or grid)",
                       description="Search model and optimiser settings; each trial is a "
                                   "training run under the same wall-time budget, pruned on "
                                   "per-epoch validation NDCG@10; trial 0 is the base config. "
                                   "Writes results.{json,md}, history.png, importance.png "
                                   "and best_config.json; run again to resume the study.")
    _data_args(p)
    _config_args(p)
    p.add_argument("--trials", type=int, required=True, metavar="N",
                   help="finished trials the study should hold (a resumed study runs the rest)")
    p.add_argument("--sampler", choices=("tpe", "grid", "random"), default="tpe")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna RDB storage (default: sqlite:///<out>/study.db)")
    p.add_argument("--study-name", default="liverec", help="study name inside the storage")
    p.add_argument("--timeout", type=float, default=0.0, metavar="S",
                   help="start no new trial after S seconds")
    p.add_argument("--trial-time", type=float, default=0.0, metavar="S",
                   help="each trial's training budget (train.max_time_s: a trial stops at "
                        "the end of the first epoch past it)")
    p.add_argument("--space", metavar="FILE|JSON",
                   help="change the search space (a JSON file or inline JSON), e.g. "
                        "{\"model.d_model\": [32, 64], \"train.lr\": {\"low\": 1e-4, "
                        "\"high\": 1e-2, \"log\": true}, \"model.n_layers\": null}")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument("--no-prune", action="store_true", help="run every trial to its end")
    p.add_argument("--heartbeat", type=int, default=30, metavar="S",
                   help="trials of a dead process are failed after 3x S seconds")
    p.add_argument("--out", default="runs/tune", help="study folder")
    p.set_defaults(func=_cmd_tune)


def _add_retrain(sub) -> None:
    p = sub.add_parser("retrain", help="fine-tune a served model on its new events, check it, "
                                       "publish a new version (and hot-swap it)",
                       description="Fine-tune RUN_DIR's model on its training data plus the "
                                   "new events (appended to each user's history), pick the "
                                   "epoch and decide on held-out new events (a seeded share "
                                   "of users' last new event), and write a new run directory "
                                   "only when it is not worse than the current model there. "
                                   "Exit status 1 when nothing was published.")
    p.add_argument("run_dir", help="the current fp32 run directory")
    p.add_argument("--events", required=True, metavar="URL|FILE",
                   help="the service's store (sqlite:///path.db, redis://host:port/db) or a "
                        "Parquet/CSV file with user_id, item_id, ts")
    p.add_argument("--out", required=True,
                   help="the new version's directory (with --every: the folder of versions)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.0, help="default: the run's training lr")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="share of users with new events whose last one is held out")
    p.add_argument("--min-cases", type=int, default=10,
                   help="fewest held-out cases for each of epoch choice and decision")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="publish when new NDCG@20 >= (1 - tolerance) x current")
    p.add_argument("--new-item-min-events", type=int, default=2, metavar="N",
                   help="items the model has no row for get one once they have N events "
                        "(id models; 0 = skip their events)")
    p.add_argument("--no-replay", action="store_true",
                   help="train on the events only (when the run's data is not at hand)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--server", metavar="URL",
                   help="a running liverec serve to hot-swap (POST /admin/reload)")
    p.add_argument("--api-key-file", metavar="FILE",
                   help="the server's admin key: the first admin key of FILE (default: "
                        "LIVEREC_SERVE_API_KEY, then LIVEREC_SERVE_API_KEY_FILE)")
    p.add_argument("--api-key", help="the server's admin key on the command line: every local "
                                     "user can read it (ps); prefer the variables or the file")
    p.add_argument("--every", type=float, default=0.0, metavar="S",
                   help="repeat every S seconds, each time from the newest published version")
    p.add_argument("--rounds", type=int, default=0, help="with --every: stop after N rounds")
    p.set_defaults(func=_cmd_retrain)


COMMANDS: list[Callable] = [_add_train, _add_eval, _add_demo, _add_compress,
                            _add_export_web, _add_serve,
                            _add_explain, _add_tune, _add_retrain, _add_recommend]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liverec",
        description="Train, evaluate, compress and serve transformer recommenders.",
    )
    verbose = "debug logging, and a traceback with any error"
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    for p in sub.choices.values():  # -v also after the command: liverec train ... -v
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help=verbose)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for relaunching (train --nproc)
    with cli_logging(args.verbose):
        try:
            return int(args.func(args) or 0)
        except LiverecError as exc:
            return _user_error(str(exc), args.verbose)
        except FileNotFoundError as exc:
            return _user_error(f"file not found: {exc.filename or exc}", args.verbose)
        except KeyboardInterrupt:
            print("liverec: interrupted", file=sys.stderr)
            return 130


def _user_error(message: str, verbose: bool) -> int:
    """A user's mistake: one line (exit status 2); with -v the traceback first."""
    if verbose:
        traceback.print_exc(file=sys.stderr)
    print(f"liverec: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
