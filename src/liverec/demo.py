"""``liverec demo``: the whole pipeline on the embedded synthetic shop, offline."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from liverec.config import DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig

log = logging.getLogger(__name__)


def demo_config() -> RunConfig:
    """Small and quick: a 2-layer model on the synthetic shop's 2,000 shoppers and 500 items
    (data.synthetic defaults), at most 12 epochs (about 20-30 s of training on 2 cores)."""
    return RunConfig(
        name="demo",
        data=DataConfig(source="synthetic"),
        model=ModelConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128, max_len=30,
                          dropout=0.2, attn_dropout=0.2, emb_dropout=0.2),
        train=TrainConfig(lr=3e-3, batch_size=128, epochs=12, patience=3, warmup_steps=50),
        eval=EvalConfig(baselines=("pop", "itemknn", "als")),
    )


def run_demo(out: Path, serve: bool = True, port: int = 8000) -> int:
    """Train -> evaluate -> compress (-> serve) on synthetic data; prints what it does.

    Every printed sentence describes what this function ran, with figures from its results.
    """
    from liverec.compress.pipeline import compress_run
    from liverec.compress.report import render_markdown
    from liverec.compress.variants import CompressConfig
    from liverec.config import monitor_metric
    from liverec.data.pipeline import load_and_prepare
    from liverec.evaluate.report import evaluate_run, metrics_table
    from liverec.train.loop import train

    cfg = demo_config()
    t0 = time.perf_counter()
    prepared = load_and_prepare(cfg.data)
    s = prepared.stats
    print(f"[1/4] data: the synthetic shop (generated offline, seed {cfg.data.synthetic.seed}): "
          f"{s['users']:,} users, {s['items']:,} items, {s['interactions']:,} events; "
          "each user's last event is held out for test, the one before for validation")
    result = train(cfg, prepared, out)
    key = monitor_metric(cfg)
    stopped = "the epoch limit" if result.stopped == "max_epochs" else result.stopped
    print(f"[2/4] trained a {cfg.model.n_layers}-layer SASRec ({result.n_parameters:,} "
          f"parameters) for {len(result.epochs)} epochs in {result.wall_s:.0f}s (stopped: "
          f"{stopped}); kept epoch {result.best_epoch}, the best validation "
          f"{key.upper()} ({result.best_valid[key]:.4f})")
    metrics = evaluate_run(out)
    print(f"[3/4] evaluated the kept model and the baselines ({', '.join(cfg.eval.baselines)}) "
          f"on the {s['test_cases']:,} test events")
    rows = {f"{cfg.model.name} (liverec)": metrics["model"]["test"], **metrics["baselines"]}
    print("\nTest metrics (full ranking, seen items masked):\n")
    print(metrics_table(rows, cfg.eval.ks))
    variants = out.parent / f"{out.name}-variants"
    cc = CompressConfig(int8=True, onnx=True, bench_histories=100, repeats=3,
                        throughput_repeats=3)
    result = compress_run(out, variants, cc, prepared=prepared)
    print(f"[4/4] built {', '.join(result['variants'])} variants of it in {variants} and "
          "compared them with it (fp32):")
    print(render_markdown(result["report"], title="Compression trade-offs (demo)"))
    written = [f for f in ("report.md", "metrics.json", "training_curve.png")
               if (out / f).is_file()]
    print(f"run directory: {out} ({', '.join(written)}); "
          f"total {time.perf_counter() - t0:.0f}s")
    if serve:
        serve_demo(out, port)
    return 0


def serve_demo(run_dir: Path, port: int = 8000) -> None:
    """Serve the demo run (events in ``<run_dir>/../events.db``) until interrupted."""
    import polars as pl

    from liverec.serve.server import serve

    item = pl.read_parquet(run_dir / "items.parquet", columns=["item"])["item"][0]
    base = f"http://127.0.0.1:{port}"
    print(f"serving the demo model at {base}  (Ctrl+C to stop)\n"
          f"  API docs:        {base}/docs\n"
          f"  dashboard:       {base}/ui\n"
          f"  recommend:       {base}/v1/recommend?user_id=demo-user&k=10  (popular items "
          "until the user has events)\n"
          f"  post an event:   curl -X POST {base}/v1/events -H 'content-type: application/json'"
          f" -d '{{\"user_id\": \"demo-user\", \"item_id\": \"{item}\"}}'")
    serve(run_dir, port=port)
