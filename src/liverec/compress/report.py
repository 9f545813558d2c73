"""The trade-off report: every variant beside the fp32 reference, same split, same inputs,
one run. Quality (full-ranking NDCG@20, HR@20 under the reference run's protocol: masked, or
repeat-aware with the carried repeat-explore mixture; top-10 agreement with fp32 on the
sequence model's masked lists), size (bytes on
disk, stored weight elements), batch-1 latency (p50/p99 with variants interleaved call by
call; p50 warm, each variant's calls back to back) and
batch-B throughput. Writes JSON, markdown and a plot (NDCG@20 vs latency, marker = size).

A variant with a NaN or infinite score (marked broken when it was built, or found so on the
benchmark histories here) is not measured: its row says ``broken: non-finite scores (...)``
and carries no quality figure, so it never shows as a share of the reference.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from liverec.data.prepare import Prepared
from liverec.errors import ArtifactError
from liverec.evaluate.protocol import evaluate_model, mask_seen, pad_left, top_items
from liverec.model.artifact import load_model
from liverec.model.health import score_check

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "*.onnx")


def weight_bytes(run_dir: Path) -> int:
    """Bytes of the weight files (model.safetensors and any .onnx), catalogue excluded."""
    return sum(p.stat().st_size for pat in WEIGHT_FILES for p in Path(run_dir).glob(pat))


def weight_elements(run_dir: Path) -> int:
    """Stored weight elements (any dtype) in model.safetensors and .onnx initializers."""
    from safetensors import safe_open

    n = 0
    with safe_open(str(Path(run_dir) / "model.safetensors"), "pt") as f:
        for key in f.keys():
            n += int(np.prod(f.get_slice(key).get_shape()))
    for path in Path(run_dir).glob("*.onnx"):
        import onnx

        n += sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
    return n


def _time_score(model, seqs: torch.Tensor) -> float:
    t0 = time.perf_counter()
    with torch.no_grad():
        model.score(seqs)
    return time.perf_counter() - t0


def latency(models: dict, histories: list[np.ndarray], repeats: int) -> dict[str, list[float]]:
    """Batch-1 ``score`` seconds per call; variants interleaved call by call (same inputs)."""
    names = list(models)
    seqs = {n: [torch.from_numpy(pad_left([h], models[n].cfg.max_len)) for h in histories]
            for n in names}
    for n in names:  # warm-up (lazy init, allocator, ORT arena)
        for s in seqs[n][:5]:
            _time_score(models[n], s)
    times: dict[str, list[float]] = {n: [] for n in names}
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        for i in range(len(histories)):
            for n in rng.permutation(names):
                times[n].append(_time_score(models[n], seqs[n][i]))
    return times


def latency_warm(models: dict, histories: list[np.ndarray], repeats: int
                 ) -> dict[str, list[float]]:
    """Batch-1 ``score`` seconds per call, each variant's calls back to back (its weights and
    table stay in cache, as in a server running one model); the variants' order is shuffled
    in every repeat so drift hits them all alike. :func:`latency` interleaves call by call,
    so every call there starts with the other variants' data in the caches."""
    names = list(models)
    seqs = {n: [torch.from_numpy(pad_left([h], models[n].cfg.max_len)) for h in histories]
            for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    rng = np.random.default_rng(1)
    for _ in range(repeats):
        for n in rng.permutation(names):
            for s in seqs[n][:5]:  # back in cache
                _time_score(models[n], s)
            times[n] += [_time_score(models[n], s) for s in seqs[n]]
    return times


def throughput(models: dict, histories: list[np.ndarray], batch: int,
               repeats: int) -> dict[str, float]:
    """Sequences per second at batch ``batch`` (median over interleaved repeats)."""
    hist = (histories * (batch // max(len(histories), 1) + 1))[:batch]
    times: dict[str, list[float]] = {n: [] for n in models}
    for m in models.values():
        _time_score(m, torch.from_numpy(pad_left(hist, m.cfg.max_len)))
    for _ in range(repeats):
        for n, m in models.items():
            times[n].append(_time_score(m, torch.from_numpy(pad_left(hist, m.cfg.max_len))))
    return {n: batch / float(np.median(t)) for n, t in times.items()}


def top10(model, histories: list[np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        s = model.score(torch.from_numpy(pad_left(histories, model.cfg.max_len))).float()
    return top_items(mask_seen(s, histories), 10).numpy()  # (B, 10), the protocol's order


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of shared items between two top-10 lists, row by row."""
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)]))


def compare(variants: dict[str, Path], prepared: Prepared, bench_histories: int = 200,
            repeats: int = 5, throughput_batch: int = 256, throughput_repeats: int = 5,
            threads: int = 1) -> dict:
    """Measure every run directory in ``variants`` (the first is the reference)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # before loading: ONNX Runtime sessions copy it
    try:
        _, histories, _ = prepared.eval_cases("test")
        idx = np.random.default_rng(0).permutation(len(histories))[:bench_histories]
        bench = [histories[i] for i in idx]
        models, broken = _load_healthy(variants, bench)
        if next(iter(variants)) in broken:
            ref = next(iter(variants))
            raise ArtifactError(f"the reference {variants[ref]} is {broken[ref]}")
        protocol = reference_protocol(next(iter(variants.values())), prepared)
        ref_top = top10(models[next(iter(models))], bench)
        lat = latency(models, bench, repeats)
        warm = latency_warm(models, bench, repeats)
        thr = throughput(models, bench, throughput_batch, throughput_repeats)
        rows = {}
        for n, m in models.items():
            q = variant_quality(variants[n], m, prepared, protocol)
            t = np.array(lat[n]) * 1e3
            rows[n] = {"run_dir": str(variants[n]), "ndcg@20": q["ndcg@20"], "hr@20": q["hr@20"],
                       "ndcg@10": q["ndcg@10"], "top10_overlap_fp32": overlap(top10(m, bench),
                                                                              ref_top),
                       "weight_bytes": weight_bytes(variants[n]),
                       "weight_elements": weight_elements(variants[n]),
                       "p50_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)),
                       "warm_p50_ms": float(np.median(warm[n]) * 1e3),
                       f"throughput_b{throughput_batch}": thr[n]}
    finally:
        torch.set_num_threads(before)
    for n, reason in broken.items():
        rows[n] = {"run_dir": str(variants[n]), "broken": reason,
                   "weight_bytes": weight_bytes(variants[n]),
                   "weight_elements": weight_elements(variants[n])}
    rows = {n: rows[n] for n in variants}  # the caller's order
    return {"reference": next(iter(rows)), "protocol": protocol,
            "threads": threads, "cases": len(histories),
            "latency_calls": len(bench) * repeats, "throughput_batch": throughput_batch,
            "variants": _with_ratios(rows, throughput_batch)}


def reference_protocol(ref_dir: Path, prepared: Prepared) -> str:
    """The evaluation protocol the reference run was trained and reported under ("masked" or
    "repeat"; ``eval.protocol`` "auto" resolved as its own report resolves it)."""
    from liverec.evaluate.report import run_protocol
    from liverec.model.artifact import read_meta, read_run_config

    return run_protocol(read_run_config(ref_dir), read_meta(ref_dir), prepared)[0]


def variant_quality(run_dir: Path, model: torch.nn.Module, prepared: Prepared,
                 protocol: str) -> dict:
    """Test HR/NDCG@10/20 of one variant under the reference's protocol: masked, or
    repeat-aware with the variant's repeat-explore mixture (carried from the reference,
    ``repeat.json``), as ``liverec eval`` scores the reference itself."""
    if protocol != "repeat":
        return evaluate_model(model, prepared, "test", (10, 20))
    from liverec.evaluate.protocol import evaluate_scores
    from liverec.evaluate.report import repeat_scorer

    scorer, _ = repeat_scorer(run_dir, model)
    return evaluate_scores(scorer, prepared, "test", (10, 20), protocol="repeat")


def _load_healthy(variants: dict[str, Path], histories: list[np.ndarray]
                  ) -> tuple[dict, dict[str, str]]:
    """(name -> model of the variants with finite scores, name -> why the others are broken)."""
    models, broken = {}, {}
    for name, path in variants.items():
        comp = json.loads((Path(path) / "config.json").read_text()).get("compression") or {}
        if comp.get("broken"):
            broken[name] = f"broken: {comp['broken']}"
            continue
        model = load_model(path, check=False)[0]
        found = score_check(model, histories)
        if found.ok:
            models[name] = model
        else:
            broken[name] = f"broken: {found.describe()}"
            log.warning("%s (%s) is %s", name, path, broken[name])
    return models, broken


def _with_ratios(rows: dict, batch: int) -> dict:
    ref = rows[next(iter(rows))]
    for r in rows.values():
        if "broken" in r:
            continue
        r["ndcg@20_rel"] = r["ndcg@20"] / max(ref["ndcg@20"], 1e-12)
        r["smaller_x"] = ref["weight_bytes"] / r["weight_bytes"]
        r["speedup_p50_x"] = ref["p50_ms"] / r["p50_ms"]
        if "warm_p50_ms" in r:
            r["warm_speedup_x"] = ref["warm_p50_ms"] / r["warm_p50_ms"]
        r["throughput_x"] = r[f"throughput_b{batch}"] / ref[f"throughput_b{batch}"]
    return rows


def render_markdown(result: dict, title: str = "Compression trade-offs") -> str:
    b = result["throughput_batch"]
    lines = [
        f"# {title}\n",
        f"Reference: `{result['reference']}`. Test split, full ranking, "
        + ("repeat-aware protocol (history not masked; each variant scored with the "
           "reference's repeat-explore mixture, as `liverec eval` scores the reference)"
           if result.get("protocol") == "repeat" else "history masked")
        + f", {result['cases']} users; "
        f"latency = `model.score` over the full catalogue at batch 1, {result['latency_calls']} "
        f"calls per variant interleaved call by call (each call starts with the other "
        f"variants' data in the caches), and warm: the same calls back to back per variant "
        f"(as a server running one model), {result['threads']} thread(s); throughput at batch "
        f"{b} (median of repeats). Sizes are the weight files (catalogue excluded).\n",
        f"| variant | NDCG@20 | rel. | HR@20 | top-10 overlap | MB | smaller | weights | "
        f"p50 ms | p99 ms | speed-up | warm p50 ms | warm speed-up | seq/s (b{b}) | x |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in result["variants"].items():
        if "broken" in r:  # no quality or speed figure: never a share of the reference
            cells = [n, r["broken"], *"———", f"{r['weight_bytes'] / 1e6:.3f}", *"—" * 9]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        warm = (f"{r['warm_p50_ms']:.3f} | {r['warm_speedup_x']:.2f}x" if "warm_p50_ms" in r
                else "— | —")
        lines.append(
            f"| {n} | {r['ndcg@20']:.4f} | {r['ndcg@20_rel']:.1%} | {r['hr@20']:.4f} | "
            f"{r['top10_overlap_fp32']:.2f} | {r['weight_bytes'] / 1e6:.3f} | "
            f"{r['smaller_x']:.2f}x | {r['weight_elements']:,} | {r['p50_ms']:.3f} | "
            f"{r['p99_ms']:.3f} | {r['speedup_p50_x']:.2f}x | {warm} | "
            f"{r[f'throughput_b{b}']:.0f} | {r['throughput_x']:.2f}x |")
    lines += _distill_lines(result)
    return "\n".join(lines) + "\n"


def _distill_lines(result: dict) -> list[str]:
    """How a distilled student's size counts: parameters, stored elements, bytes."""
    rows, ref = result["variants"], result["variants"][result["reference"]]
    out = []
    for name, comp in (result.get("compression") or {}).items():
        if comp.get("method") != "distill" or name not in rows:
            continue
        if "broken" in rows[name]:
            continue
        r, sp, tp = rows[name], comp["student_parameters"], comp["teacher_parameters"]
        ft = comp.get("finetune", {})
        out.append(
            f"\n`{name}` ({' '.join(comp.get('student', []))}): {sp:,} parameters = "
            f"{sp / tp:.1%} of the teacher's {tp:,}; {r['weight_elements']:,} stored elements "
            f"({r['weight_elements'] / ref['weight_elements']:.1%}: integer codes and index maps "
            f"count one each) in {r['weight_bytes'] / ref['weight_bytes']:.1%} of the reference's "
            f"weight bytes; best distillation epoch {ft.get('best_epoch', '?')} of "
            f"{ft.get('epochs', '?')} (0 = as initialised from the teacher).")
    return out


def plot(result: dict, path: Path) -> None:
    """NDCG@20 against batch-1 p50 latency; marker area proportional to weight bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {n: r for n, r in result["variants"].items() if "broken" not in r}
    biggest = max(r["weight_bytes"] for r in rows.values())
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    markers = "os^Dv<>ph*"
    for i, (n, r) in enumerate(rows.items()):  # a legend, not labels: close points overlap
        ax.scatter(r["p50_ms"], r["ndcg@20"], s=40 + 800 * r["weight_bytes"] / biggest,
                   alpha=0.6, marker=markers[i % len(markers)],
                   label=f"{n} ({r['weight_bytes'] / 1e6:.2f} MB)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=0.5,
              frameon=False)
    ax.margins(0.12)  # big markers at the edges stay inside the axes
    ax.set_xlabel("batch-1 latency p50 (ms)")
    ax.set_ylabel("NDCG@20 (test, full ranking)")
    ax.set_title("Compression: quality vs latency (marker area = weight size)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(result: dict, out_dir: Path, stem: str = "compression",
                 title: str = "Compression trade-offs") -> list[Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md", out_dir / f"{stem}.png"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    paths[1].write_text(render_markdown(result, title))
    try:
        plot(result, paths[2])
    except (ImportError, ValueError, OSError) as exc:
        log.warning("could not draw the trade-off plot: %s", exc)
        paths.pop()
    return paths
