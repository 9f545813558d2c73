"""``liverec compress``: build the variants of a run, then measure them beside it."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from liverec.compress.report import compare, write_report
from liverec.compress.variants import (
    CompressConfig,
    build_variants,
    check_source,
    prepare_for,
)
from liverec.data.prepare import Prepared

log = logging.getLogger(__name__)

# one layer and a product-quantized item table (d_model / 2 sub-spaces of 2 dims, 256
# centroids or fewer for small catalogues): on Beauty 95.4% of the teacher's NDCG@20 at 7.9%
# of its parameters (benchmarks/results/compress_beauty.md); d_model=16 students kept 64%
DEFAULT_STUDENT = ("item_repr=pq", "n_layers=1")


def student_overrides(values: Sequence[str] | None) -> tuple[str, ...]:
    """``--distill`` values: none -> the default student; a JSON file of ModelConfig fields;
    or ``key=value`` items (commas allowed: ``d_model=16,n_layers=1``)."""
    if values is None:
        return ()
    if not values:
        return DEFAULT_STUDENT
    if len(values) == 1 and values[0].endswith(".json"):
        data = json.loads(Path(values[0]).read_text())
        return tuple(f"{k}={json.dumps(v)}" for k, v in data.items() if not k.startswith("_"))
    return tuple(part for v in values for part in v.split(",") if part)


def compress_run(run_dir: Path, out_dir: Path, cc: CompressConfig,
                 prepared: Prepared | None = None, stem: str = "compression") -> dict:
    """Build the variants ``cc`` asks for under ``out_dir`` and, if ``cc.report``, compare
    them with the fp32 run on the test split.

    Returns:
        {"variants": name -> run dir, "report": result dict or None, "files": written paths}.
    """
    cc.check()  # nothing asked for, or a bad setting: one line before any work
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    check_source(run_dir)  # a compressed or incomplete run: one line before loading data
    needs_data = cc.report or cc.prune > 0 or bool(cc.distill)
    if needs_data and prepared is None:
        prepared = prepare_for(run_dir)
    made = build_variants(run_dir, out_dir, cc, prepared)
    if not cc.report:
        return {"variants": made, "report": None, "files": []}
    result = compare({"fp32": run_dir, **made}, prepared, cc.bench_histories, cc.repeats,
                     cc.throughput_batch, cc.throughput_repeats, cc.threads)
    result["compression"] = {n: json.loads((p / "config.json").read_text())["compression"]
                             for n, p in made.items()}  # how each variant was made
    files = write_report(result, out_dir, stem)
    return {"variants": made, "report": result, "files": files}
