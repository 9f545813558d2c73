"""Edge inference in the browser: bundle size and in-browser latency of the Beauty student
(one layer, product-quantized item table, int8 encoder where it pays) and the fp32 teacher.

Each bundle is made by ``liverec export-web``, served by ``liverec serve`` (the run's
RUN_DIR/web at /edge/) or by the page's test harness, and run by the dashboard's "on this
device" client in Debian's chromium (headless, Playwright): ONNX Runtime Web, WebAssembly, one
thread. Each recommendation (encode + score the catalogue + mask + top-10) is timed by the
client over the test histories; the lists are compared with ``liverec serve``'s answers for the
same histories. Sizes: raw, gzip -9 (what the service sends), brotli q11 (node's zlib).

Command (repository root; the runs from the README's edge section; clients/js built):

    python benchmarks/edge_web.py --teacher runs/beauty-web \
        --student runs/beauty-web-c/distilled --out benchmarks/results/edge_web_beauty
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ui/edge_check.py: the same measurement as the tests
sys.path.insert(0, str(ROOT / "benchmarks"))

from serve_common import free_port, start_server, stop_server  # noqa: E402
from tests.ui.edge_check import (  # noqa: E402
    bundle_transfer,
    differences_beyond_ties,
    fulfil_from,
    histories_of,
    overlap,
    run_in_page,
    server_lists,
)

CHROMIUM = "/usr/bin/chromium"
SIZES = ROOT / "clients" / "js" / "scripts" / "sizes.mjs"
# name -> (source run, export settings, served by liverec serve (else by the harness))
VARIANTS = {
    "student": ("student", {}, True),
    "student-fp32-encoder": ("student", {"weights": "fp32"}, False),
    "teacher-fp32": ("teacher", {"weights": "fp32", "table": "fp32"}, True),
    "teacher-int8": ("teacher", {}, False),
}


def brotli_sizes(folder: Path, names: list[str]) -> dict:
    out = subprocess.run(["node", str(SIZES), *[str(folder / n) for n in names]],
                         check=True, capture_output=True, text=True).stdout
    return {Path(k).name: v for k, v in json.loads(out).items()}


def export_all(runs: dict[str, Path], tmp: Path, histories) -> dict[str, Path]:
    from liverec.edge.bundle import WebExportConfig, export_web

    out = {}
    for name, (source, settings, served) in VARIANTS.items():
        run = runs[source]
        target = run / "web" if served else tmp / name
        runtime = {} if served else {"runtime": "none"}
        export_web(run, target, WebExportConfig(**settings, **runtime), histories)
        out[name] = target
    return out


def size_row(bundle: Path) -> dict:
    m = json.loads((bundle / "manifest.json").read_text())
    names = [*m["files"], "manifest.json"]
    sizes = brotli_sizes(bundle, names)
    files = {n: {k: sizes[n][k] for k in ("bytes", "gzip_bytes", "brotli_bytes")} for n in names}
    total = {k: sum(f[k] for f in files.values()) for k in ("bytes", "gzip_bytes",
                                                             "brotli_bytes")}
    return {"encoder": m["encoder"]["weights"], "table": m["table"]["kind"],
            "parameters": m["model"]["parameters"], "n_layers": m["model"]["n_layers"],
            "encoder_decision": {k: v for k, v in m["encoder"].items()
                                 if k not in ("file", "inputs", "output")},
            "files": files, "total": total}


def measure(page, service: str, bundles: dict, names: list[str], histories, repeats: int,
            manifest: dict, finished: list) -> dict:
    """Lists and latency of each bundle in ``names`` (the first is the served one)."""
    server = server_lists(service, histories)
    rows = {}
    for i, name in enumerate(names):
        url = None if i == 0 else f"/bench-{name}/"
        if url:
            fulfil_from(page, url.strip("/"), bundles[name])
        runs = [run_in_page(page, histories, bundle=url) for _ in range(repeats)]
        times = sorted(r["ms"] for res in runs for r in res["lists"])
        lists = runs[0]["lists"]
        rows[name] = {
            "p50_ms": times[len(times) // 2], "p90_ms": times[int(0.9 * (len(times) - 1))],
            "p99_ms": times[int(0.99 * (len(times) - 1))],
            "mean_ms": round(sum(r["total_ms"] for r in runs) / len(times), 4),
            "recommendations_timed": len(times), "load_ms": round(runs[0]["load_ms"], 1),
            "top10_overlap_with_server": round(overlap(server, lists), 4),
            "lists_differing_beyond_ties": len(differences_beyond_ties(server, lists)),
        }
    rows[names[0]]["wire"] = bundle_transfer(finished, manifest)
    return rows


def browse(runs: dict[str, Path], bundles: dict, histories, repeats: int) -> tuple[dict, str]:
    from playwright.sync_api import sync_playwright

    rows = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        version = browser.version
        for source, names in (("student", ["student", "student-fp32-encoder"]),
                              ("teacher", ["teacher-fp32", "teacher-int8"])):
            port = free_port()
            proc = start_server(runs[source], port, "--store", "memory://")
            try:
                page = browser.new_context().new_page()
                page.set_default_timeout(180_000)
                finished: list = []
                page.on("requestfinished", lambda r, f=finished: f.append(r))
                page.goto(f"http://127.0.0.1:{port}/ui/?device=1&poll=600000")
                page.wait_for_function("window.liverecEdge !== undefined")
                manifest = page.evaluate("window.liverecEdge.rec.manifest")
                rows |= measure(page, f"http://127.0.0.1:{port}", bundles, names, histories,
                                repeats, manifest, finished)
                page.context.close()
            finally:
                stop_server(proc)
        browser.close()
    return rows, version


def render(result: dict) -> str:
    lines = [
        "# Edge inference in the browser (Amazon Beauty)", "",
        f"Command: `{result['command']}`  ",
        f"Teacher: {result['teacher']['run']} ({result['teacher']['epochs']} epochs); "
        f"student: {result['student']['run']}. {result['histories']} test histories, "
        f"{result['repeats']} passes; chromium {result['chromium']}, onnxruntime-web "
        f"{result['onnxruntime_web']} (WebAssembly, 1 thread); {result['machine']}.", "",
        "| bundle | encoder | table | raw | gzip | brotli | over the wire | p50 ms | p90 ms "
        "| mean ms | top-10 overlap with the server | lists differing beyond ties |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["bundles"].items():
        t = r["total"]
        wire = r.get("wire", {}).get("bundle_bytes")
        lines.append(
            f"| {name} | {r['encoder']} | {r['table']} | {t['bytes'] / 1e6:.3f} MB "
            f"| {t['gzip_bytes'] / 1e6:.3f} MB | {t['brotli_bytes'] / 1e6:.3f} MB "
            f"| {f'{wire / 1e6:.3f} MB' if wire else '–'} | {r['p50_ms']:.2f} | "
            f"{r['p90_ms']:.2f} | {r['mean_ms']:.2f} | {r['top10_overlap_with_server']:.4f} "
            f"| {r['lists_differing_beyond_ties']} |")
    rt = result["runtime"]
    lines += ["", f"Runtime (the same for every bundle, cacheable): {rt['bytes'] / 1e6:.2f} MB "
              f"raw, {rt['gzip_bytes'] / 1e6:.2f} MB gzip, {rt['brotli_bytes'] / 1e6:.2f} MB "
              "brotli (onnxruntime-web's WebAssembly build is almost all of it).", "",
              "Sizes are the manifest and the model files (encoder, item table, catalogue ids "
              "and titles); 'over the wire' is what chromium received from `liverec serve` "
              "(gzip). Latency: performance.now() around each recommendation (its resolution "
              "is 0.1 ms in a page that is not cross-origin isolated); the overlap is against "
              "the served model of the same run in PyTorch."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", required=True, type=Path)
    ap.add_argument("--student", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="results path without suffix")
    ap.add_argument("--histories", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from liverec.compress.variants import prepare_for
    from liverec.edge.bundle import REPO_RUNTIME

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        runs = {}
        for name, src in (("teacher", args.teacher), ("student", args.student)):
            runs[name] = tmp / name
            shutil.copytree(src, runs[name], ignore=shutil.ignore_patterns(
                "web", "checkpoint.safetensors"))
        prepared = prepare_for(runs["student"])
        histories = histories_of(prepared, runs["student"], args.histories)
        checks = [h for h in prepared.eval_cases("test")[1] if len(h)][: args.histories]
        bundles = export_all(runs, tmp, checks)
        sizes = {n: size_row(b) for n, b in bundles.items()}
        latency, chromium = browse(runs, bundles, histories, args.repeats)
        index = json.loads((REPO_RUNTIME / "runtime.json").read_text())
        rt = brotli_sizes(REPO_RUNTIME, index["files"])
    teacher_log = json.loads((args.teacher / "train_log.json").read_text()) \
        if (args.teacher / "train_log.json").is_file() else {}
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "teacher": {"run": args.teacher.name, "epochs": len(teacher_log.get("epochs", []))},
        "student": {"run": f"{args.student.parent.name}/{args.student.name}"},
        "histories": len(histories), "repeats": args.repeats, "chromium": chromium,
        "onnxruntime_web": index["onnxruntime_web"],
        "machine": f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f} at the start and "
                   f"{os.getloadavg()[0]:.1f} at the end ({platform.machine()})",
        "bundles": {n: {**sizes[n], **latency[n]} for n in VARIANTS},
        "runtime": {k: sum(f[k] for f in rt.values()) for k in ("bytes", "gzip_bytes",
                                                                 "brotli_bytes")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
