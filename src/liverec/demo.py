"""``liverec demo``: the whole pipeline on the embedded synthetic shop, offline."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from liverec.config import DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig

log = logging.getLogger(__name__)


def demo_config() -> RunConfig:
    """Small and quick: a 2-layer model on 3,000 synthetic shoppers, under a minute on 2 cores."""
    return RunConfig(
        name="demo",
        data=DataConfig(source="synthetic"),
        model=ModelConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128, max_len=30,
                          dropout=0.2, attn_dropout=0.2, emb_dropout=0.2),
        train=TrainConfig(lr=3e-3, batch_size=128, epochs=12, patience=3, warmup_steps=50),
        eval=EvalConfig(baselines=("pop", "itemknn", "als")),
    )


def run_demo(out: Path, serve: bool = True, port: int = 8000) -> int:
    """Train -> evaluate -> compress -> serve on synthetic data; prints what it does."""
    from liverec.cli import _print_metrics
    from liverec.compress.pipeline import compress_run
    from liverec.compress.report import render_markdown
    from liverec.compress.variants import CompressConfig
    from liverec.data.pipeline import load_and_prepare
    from liverec.evaluate.report import evaluate_run
    from liverec.train.loop import train

    cfg = demo_config()
    t0 = time.perf_counter()
    prepared = load_and_prepare(cfg.data)
    s = prepared.stats
    print(f"[1/4] data: synthetic shop, {s['users']:,} users, {s['items']:,} items, "
          f"{s['interactions']:,} events")
    result = train(cfg, prepared, out)
    print(f"[2/4] trained in {result.wall_s:.0f}s, best validation NDCG@10 "
          f"{result.best_valid['ndcg@10']:.4f} (epoch {result.best_epoch})")
    metrics = evaluate_run(out)
    print("[3/4] evaluated")
    _print_metrics(metrics, cfg.eval.ks)
    variants = out.parent / f"{out.name}-variants"
    cc = CompressConfig(int8=True, onnx=True, bench_histories=100, repeats=3,
                        throughput_repeats=3)
    result = compress_run(out, variants, cc, prepared=prepared)
    print(f"[4/4] compressed into {variants} (int8, ONNX Runtime fp32/int8)")
    print(render_markdown(result["report"], title="Compression trade-offs (demo)"))
    print(f"run directory: {out} (report.md, metrics.json, training_curve.png); "
          f"total {time.perf_counter() - t0:.0f}s")
    if serve:
        serve_demo(out, port)
    return 0


def serve_demo(run_dir: Path, port: int = 8000) -> None:
    """Serve the demo run (events in ``<run_dir>/../events.db``) until interrupted."""
    from liverec.serve.server import serve

    base = f"http://127.0.0.1:{port}"
    print(f"serving the demo model at {base}  (Ctrl+C to stop)\n"
          f"  API docs:        {base}/docs\n"
          f"  recommend:       {base}/v1/recommend?user_id=demo-user&k=10\n"
          f"  post an event:   curl -X POST {base}/v1/events -H 'content-type: application/json'"
          f" -d '{{\"user_id\": \"demo-user\", \"item_id\": \"<an item id>\"}}'")
    serve(run_dir, port=port)
