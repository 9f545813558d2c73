"""``liverec export-web``: a run as a static bundle that a browser recommends from.

Legend: N model items, D model dimension, T history length.

A bundle is a directory of static files (served as they are, by the service or any web server):

``manifest.json``     format, version (a hash of the contents), the source run's model version and
                      catalogue fingerprint, model sizes, how the encoder and the table were
                      stored and why, every file's bytes / gzip bytes / sha256
``encoder.onnx``      the sequence encoder: (item vectors (1, T, D), seqs (1, T)) -> user (1, D),
                      :func:`liverec.compress.export.export_onnx` (int8 weights where it pays)
``items.*``           the item table in compact form (:mod:`liverec.edge.table`)
``catalogue.json``    item ids and titles in index order, and the most popular items
``runtime/``          the JavaScript client and onnxruntime-web's WebAssembly files, copied from
                      the built client (``clients/js``: ``npm ci && npm run build``)
``*.gz``              a gzip copy of every file: the transfer form a server may send

The browser computes the user vector with ONNX Runtime (WebAssembly, one thread), scores the
catalogue against the compact table, masks the history and keeps the top k; it never sends the
history anywhere. :mod:`liverec.edge.reference` does the same in Python (the reference path).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from liverec.compress.export import export_onnx
from liverec.edge.catalogue import catalogue_fingerprint, model_version, popular_indices
from liverec.edge.table import TABLE_KINDS, CompactTable, compact_table
from liverec.errors import ArtifactError, ConfigError
from liverec.model.artifact import library_version, load_model, read_meta

log = logging.getLogger(__name__)

FORMAT = "liverec-web/1"
MANIFEST = "manifest.json"
ENCODER = "encoder.onnx"
CATALOGUE = "catalogue.json"
RUNTIME = "runtime"
RUNTIME_INDEX = "runtime.json"  # written by the client's build: the files the runtime needs
EXPORTABLE = (None, "distill", "magnitude", "structured")  # fp32 transformers (compression)
REPO_RUNTIME = Path(__file__).resolve().parents[3] / "clients" / "js" / "dist"


@dataclass(frozen=True)
class WebExportConfig:
    """How to build a bundle.

    Attributes:
        weights: the encoder's weights: "int8" (onnxruntime ``quantize_dynamic``), "fp32", or
            "auto": int8 when it makes the gzip-compressed encoder at least ``min_saving``
            smaller and keeps ``min_overlap`` of the fp32 encoder's top-``k`` lists on the
            check histories, else fp32.
        table: "pq" (a product-quantized model's codes + codebooks), "int8", "fp32", or
            "auto" (pq when the model's table is product-quantized, else int8).
        runtime: the built JavaScript client to copy into ``runtime/``: a directory, "auto"
            (the repository's ``clients/js/dist`` when built; none otherwise) or "none".
        gzip: write a ``.gz`` copy beside every file.
        check_histories: histories the int8 decision is measured on.
    """

    weights: str = "auto"
    table: str = "auto"
    runtime: str = "auto"
    gzip: bool = True
    check_histories: int = 200
    min_overlap: float = 0.95
    min_saving: float = 0.2
    k: int = 10

    def check(self) -> None:
        """ConfigError (one line) for a setting that cannot work."""
        if self.weights not in ("auto", "int8", "fp32"):
            raise ConfigError(f"weights: unknown {self.weights!r}; use auto, int8 or fp32")
        if self.table not in ("auto", *TABLE_KINDS):
            raise ConfigError(f"table: unknown {self.table!r}; use auto, {', '.join(TABLE_KINDS)}")
        if self.runtime not in ("auto", "none"):
            runtime_files(Path(self.runtime))  # a clear error now, before any work
        if self.check_histories < 1 or self.k < 1:
            raise ConfigError("check_histories and k must be >= 1")
        if not (0.0 <= self.min_overlap <= 1.0 and 0.0 <= self.min_saving < 1.0):
            raise ConfigError("min_overlap must be in [0, 1] and min_saving in [0, 1)")


def runtime_files(dist: Path) -> list[str]:
    """The files of a built client (its runtime.json), all present; ConfigError otherwise."""
    index = Path(dist) / RUNTIME_INDEX
    if not index.is_file():
        raise ConfigError(f"runtime: {dist} is not a built liverec web client (no "
                          f"{RUNTIME_INDEX}; run 'npm ci && npm run build' in clients/js)")
    names = json.loads(index.read_text())["files"]
    missing = [n for n in names if not (Path(dist) / n).is_file()]
    if missing:
        raise ConfigError(f"runtime: {dist} lacks {missing}; rebuild it (npm run build)")
    return [RUNTIME_INDEX, *names]


def _runtime_dir(cfg: WebExportConfig) -> Path | None:
    if cfg.runtime == "none":
        return None
    if cfg.runtime != "auto":
        return Path(cfg.runtime)
    if (REPO_RUNTIME / RUNTIME_INDEX).is_file():
        return REPO_RUNTIME
    log.warning("no built web client at %s: the bundle has no runtime/ (build it with "
                "'npm ci && npm run build' in clients/js, or pass --runtime DIR)", REPO_RUNTIME)
    return None


def load_exportable(run_dir: Path) -> tuple[torch.nn.Module, pl.DataFrame, dict]:
    """(model, catalogue, config.json) of a run whose transformer can go to ONNX.

    Raises:
        ArtifactError: not a complete run; a variant that is already quantized or exported
            (int8, half, onnx: export the run it came from); an item table whose input rows are
            not its scoring rows (the bundle stores one table).
    """
    meta = read_meta(run_dir)
    method = (meta.get("compression") or {}).get("method")
    if method not in EXPORTABLE:
        raise ArtifactError(f"{run_dir} is a {method} variant; export-web needs an fp32 "
                            "transformer (a trained, distilled or pruned run): export the run "
                            f"it came from ({(meta.get('compression') or {}).get('source')})")
    model, _, items, _ = load_model(Path(run_dir))
    if not all(hasattr(model, a) for a in ("pos", "blocks", "ln_f", "items", "item_table")):
        raise ArtifactError(f"{run_dir}: {type(model).__name__} is not a SASRec-style model")
    with torch.no_grad():
        table = model.item_table().float()  # (N + 1, D)
        probe = torch.arange(model.cfg.n_items + 1)
        if not torch.allclose(model.items(probe).float(), table, atol=1e-6):
            raise ArtifactError(f"{run_dir}: its input item vectors differ from its scoring "
                                "table (untied); a web bundle stores one table")
    return model, items.sort("index"), meta


def probe_histories(n_items: int, max_len: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """Seeded random histories of item indices (when the run's data is not at hand)."""
    gen = np.random.default_rng(seed)
    return [gen.integers(1, n_items + 1, size=int(gen.integers(1, max_len + 1)))
            for _ in range(n)]


def _gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def _choose_weights(model, out: Path, tmp: Path, table: CompactTable, cfg: WebExportConfig,
                    histories: list[np.ndarray]) -> dict:
    """Export the encoder as fp32 and (unless weights=fp32) int8; keep the one the rule picks.

    Returns the manifest's ``encoder`` entry (the measured sizes and overlap, the choice)."""
    from liverec.edge.reference import encoder_session, overlap_at_k, topk_indices

    fp32 = export_onnx(model, tmp / "fp32.onnx")
    info = {"fp32_bytes": fp32.stat().st_size, "fp32_gzip_bytes": _gzip_size(fp32.read_bytes())}
    chosen = fp32
    if cfg.weights != "fp32":
        int8 = export_onnx(model, tmp / "int8.onnx", int8=True)
        rows = table.rows()
        ref, new = (topk_indices(encoder_session(p), rows, table, histories, cfg.k,
                                 model.cfg.max_len) for p in (fp32, int8))
        overlap = overlap_at_k(ref, new)
        saving = 1 - _gzip_size(int8.read_bytes()) / info["fp32_gzip_bytes"]
        info |= {"int8_bytes": int8.stat().st_size,
                 "int8_gzip_bytes": _gzip_size(int8.read_bytes()),
                 f"int8_top{cfg.k}_overlap_with_fp32": round(overlap, 4),
                 "int8_gzip_saving": round(saving, 4), "histories": len(histories)}
        pays = saving >= cfg.min_saving and overlap >= cfg.min_overlap
        if cfg.weights == "int8" or pays:
            chosen = int8
        info["rule"] = (f"int8 when the gzip size falls by >= {cfg.min_saving:.0%} and the "
                        f"top-{cfg.k} overlap with fp32 is >= {cfg.min_overlap}"
                        if cfg.weights == "auto" else f"asked for {cfg.weights}")
    info["weights"] = "int8" if chosen.name == "int8.onnx" else "fp32"
    if info["weights"] == "int8":
        info["quantization"] = "onnxruntime quantize_dynamic, int8 per channel"
    shutil.copyfile(chosen, out / ENCODER)
    return info


def _catalogue(items: pl.DataFrame) -> dict:
    titles = items["title"].fill_null("").to_list() if "title" in items.columns \
        else [""] * items.height
    counts = items["count"].fill_null(0).to_numpy() if "count" in items.columns \
        else np.zeros(items.height)
    return {"ids": [str(i) for i in items["item"].to_list()], "titles": titles,
            "popular": popular_indices(counts).tolist()}


def _file_entry(path: Path, write_gzip: bool, packed_copy: Path | None = None) -> dict:
    """Size, gzip size and sha256 of ``path``; its ``.gz`` copy written beside it (taken from
    ``packed_copy`` when that one decompresses to the same bytes)."""
    data = path.read_bytes()
    packed = packed_copy.read_bytes() if packed_copy is not None and packed_copy.is_file() \
        else None
    if packed is None or gzip.decompress(packed) != data:
        packed = gzip.compress(data, compresslevel=9, mtime=0)
    if write_gzip:
        path.with_name(path.name + ".gz").write_bytes(packed)
    return {"bytes": len(data), "gzip_bytes": len(packed),
            "sha256": hashlib.sha256(data).hexdigest()}


def _totals(files: dict) -> dict:
    return {"bytes": sum(f["bytes"] for f in files.values()),
            "gzip_bytes": sum(f["gzip_bytes"] for f in files.values())}


def _check_out(out_dir: Path, run_dir: Path) -> None:
    if out_dir.resolve() == Path(run_dir).resolve():
        raise ArtifactError("--out must not be the run directory itself (use RUN_DIR/web)")
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtifactError(f"--out {out_dir} is a file, not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise ArtifactError(f"--out {out_dir} is a non-empty directory that is not a web "
                            "bundle (no manifest.json); refusing to write into it")


def export_web(run_dir: Path, out_dir: Path, cfg: WebExportConfig = WebExportConfig(),
               histories: list[np.ndarray] | None = None) -> dict:
    """Write the web bundle of ``run_dir`` to ``out_dir``; returns its manifest.

    Args:
        run_dir: a complete fp32 run (trained, distilled or pruned).
        out_dir: the bundle directory (created; an existing bundle there is replaced whole,
            any other non-empty directory is refused).
        cfg: the export settings.
        histories: item-index histories for the int8 decision (default: seeded probes).

    Raises:
        ConfigError, ArtifactError: a bad setting or run, before anything is written.
    """
    cfg.check()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    _check_out(out_dir, run_dir)
    runtime = _runtime_dir(cfg)
    model, items, meta = load_exportable(run_dir)
    kind = cfg.table if cfg.table != "auto" else (
        "pq" if hasattr(model.items, "codebooks") else "int8")
    with torch.no_grad():
        table = compact_table(model.items, model.item_table(), kind)
    if histories is None:
        histories = probe_histories(model.cfg.n_items, model.cfg.max_len, cfg.check_histories)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        work = tmp / "bundle"
        work.mkdir()
        encoder = _choose_weights(model, work, tmp, table, cfg, histories[: cfg.check_histories])
        names = [ENCODER, *table.write(work)]
        (work / CATALOGUE).write_text(json.dumps(_catalogue(items), ensure_ascii=False))
        names.append(CATALOGUE)
        files = {n: _file_entry(work / n, cfg.gzip) for n in names}
        manifest = _manifest(run_dir, model, items, meta, table, encoder, files)
        if runtime is not None:
            manifest["runtime"] = _copy_runtime(runtime, work / RUNTIME, cfg.gzip)
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_in(work, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote web bundle %s: %d bytes, %d gzip (encoder %s, table %s)", out_dir,
             manifest["total"]["bytes"], manifest["total"]["gzip_bytes"], encoder["weights"],
             kind)
    return manifest


def _manifest(run_dir: Path, model, items: pl.DataFrame, meta: dict, table: CompactTable,
              encoder: dict, files: dict) -> dict:
    version = hashlib.sha256("".join(f"{n}:{f['sha256']};" for n, f in sorted(files.items()))
                             .encode()).hexdigest()[:16]
    mcfg = model.cfg
    return {
        "format": FORMAT, "version": version, "liverec_version": library_version(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {"run": run_dir.resolve().name, "model_version": model_version(run_dir),
                   "compression": (meta.get("compression") or {}).get("method")},
        "catalogue_fingerprint": catalogue_fingerprint(items),
        "model": {"n_items": mcfg.n_items, "d_model": mcfg.d_model, "max_len": mcfg.max_len,
                  "n_layers": mcfg.n_layers, "n_heads": mcfg.n_heads,
                  "item_repr": mcfg.item_repr,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "encoder": {"file": ENCODER, "inputs": {"item_vecs": "float32 (B, T, D)",
                                                "seqs": "int64 (B, T), left-padded indices"},
                    "output": "user float32 (B, D)", **encoder},
        "table": table.spec(), "catalogue": CATALOGUE,
        "files": files, "total": _totals(files), "runtime": None,
    }


def _copy_runtime(dist: Path, dest: Path, write_gzip: bool) -> dict:
    dest.mkdir()
    names = runtime_files(dist)
    for name in names:
        shutil.copyfile(dist / name, dest / name)
    files = {n: _file_entry(dest / n, write_gzip, dist / f"{n}.gz") for n in names}
    index = json.loads((dist / RUNTIME_INDEX).read_text())
    return {"dir": RUNTIME, "entry": index.get("entry"), "onnxruntime_web":
            index.get("onnxruntime_web"), "files": files, "total": _totals(files)}


def _swap_in(work: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``work`` (renames: a reader sees the old or the new bundle)."""
    old = None
    if out_dir.exists():
        old = work.parent / "old"
        os.replace(out_dir, old)
    os.replace(work, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(bundle_dir: Path) -> dict:
    """A bundle's manifest (ArtifactError when the directory is not a bundle)."""
    path = Path(bundle_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{bundle_dir} is not a web bundle: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def verify_bundle(bundle_dir: Path) -> dict:
    """Check every file's size and sha256 against the manifest; returns the manifest.

    Raises:
        ArtifactError: a missing, truncated or changed file (its name in the message).
    """
    manifest = read_manifest(bundle_dir)
    for name, entry in manifest["files"].items():
        path = Path(bundle_dir) / name
        if not path.is_file():
            raise ArtifactError(f"{bundle_dir}: {name} is missing")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise ArtifactError(f"{bundle_dir}: {name} does not match the manifest (sha256 "
                                f"{digest[:12]}..., expected {entry['sha256'][:12]}...)")
    return manifest

