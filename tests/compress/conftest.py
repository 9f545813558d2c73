"""Variants of the tiny trained model, built once for the whole folder."""

from __future__ import annotations

import pytest

from liverec.compress.variants import CompressConfig, build_variants

# a student with under 25% of the tiny teacher's parameters (d=16, 2 layers, d_ff=32)
STUDENT = ("d_model=8", "n_layers=1", "n_heads=1", "d_ff=16")

TINY = CompressConfig(int8=True, half="bf16", prune=0.5, prune_kinds=("structured", "magnitude"),
                      distill=STUDENT, onnx=True, onnx_of=("distilled",), finetune_epochs=1,
                      distill_epochs=4, bench_histories=10, repeats=1, throughput_batch=32,
                      throughput_repeats=1)


@pytest.fixture(scope="session")
def variants(trained_run, known_answer_data, tmp_path_factory) -> dict:
    """name -> run directory; "fp32" is the trained reference."""
    run_dir, _ = trained_run
    out = tmp_path_factory.mktemp("variants")
    made = build_variants(run_dir, out, TINY, known_answer_data)
    return {"fp32": run_dir, **made}
