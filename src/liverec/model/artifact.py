"""A trained model as a directory: JSON + safetensors + Parquet, never pickle.

config.json            model + data settings and the library version (enough to rebuild)
resolved_config.json   the full RunConfig of the run
model.safetensors      the weights
items.parquet          vocabulary: external id, index, title, text, attributes, train count
metrics.json           written by evaluation
complete.json          written last, once the directory is whole (see below)

A run directory is loadable only when it is complete: every writer first removes
``complete.json``, writes its files, and writes ``complete.json`` last (:func:`mark_complete`);
:func:`read_meta` (so ``liverec.load``, ``serve`` and its reload, ``eval``, ``compress``,
``retrain``, ``explain``) refuses a directory without it. A training run that crashes or
diverges therefore leaves nothing loadable. Loading also scores a few probe histories against
the whole catalogue (model/health.py) and refuses a model whose scores are not finite.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file, save_file

from liverec.config import ModelConfig, RunConfig, from_dict, to_dict
from liverec.data.prepare import ItemVocab
from liverec.errors import ArtifactError, UnservableModelError

REQUIRED = ("config.json", "model.safetensors", "items.parquet")
COMPLETE = "complete.json"


def library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("liverec")
    except PackageNotFoundError:
        return "0+unknown"


def save_weights(model: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def mark_incomplete(run_dir: Path) -> None:
    """Remove the completion marker: ``run_dir`` is not loadable until :func:`mark_complete`."""
    (Path(run_dir) / COMPLETE).unlink(missing_ok=True)


def mark_complete(run_dir: Path, by: str, **info) -> None:
    """Write ``complete.json`` (atomically, last): ``run_dir`` is whole and may be loaded.

    Args:
        run_dir: the run directory (its REQUIRED files must exist).
        by: what wrote it ("train", "compress", "retrain", ...).
        info: JSON-serialisable facts to record (e.g. the finite-score check).
    """
    run_dir = Path(run_dir)
    missing = [f for f in REQUIRED if not (run_dir / f).is_file()]
    if missing:
        raise ArtifactError(f"{run_dir}: cannot mark complete, missing {missing}")
    payload = {"complete": True, "by": by, "liverec_version": library_version(),
               "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **info}
    tmp = run_dir / f".{COMPLETE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, run_dir / COMPLETE)


def save_artifact(run_dir: Path, cfg: RunConfig, model: torch.nn.Module, items: pl.DataFrame,
                  extra: dict | None = None, complete: str | None = "artifact") -> None:
    """Write config, weights and vocabulary into ``run_dir`` (created if needed).

    The completion marker is removed first; with ``complete`` (the writer's name) it is written
    last, otherwise the caller calls :func:`mark_complete` once it has written the rest.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    mark_incomplete(run_dir)
    meta = {
        "format": "liverec-run/1",
        "liverec_version": library_version(),
        "model": to_dict(model.cfg),
        "data": to_dict(cfg.data),
        **(extra or {}),
    }
    (run_dir / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    (run_dir / "resolved_config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    save_weights(model, run_dir / "model.safetensors")
    items.write_parquet(run_dir / "items.parquet")
    if complete:
        mark_complete(run_dir, by=complete)


def read_meta(run_dir: Path) -> dict:
    """config.json of a run directory, with a clear error when the directory is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"run directory not found: {run_dir}")
    missing = [f for f in REQUIRED if not (run_dir / f).is_file()]
    if missing:
        raise ArtifactError(f"{run_dir} is not a liverec run directory: missing {missing}")
    _require_complete(run_dir)
    try:
        meta = json.loads((run_dir / "config.json").read_text())
    except ValueError as exc:
        raise ArtifactError(f"{run_dir / 'config.json'}: not valid JSON ({exc})") from None
    broken = (meta.get("compression") or {}).get("broken") if isinstance(meta, dict) else None
    if broken:
        raise UnservableModelError(f"{run_dir}: broken: {broken}; refusing to load it")
    return meta


def _require_complete(run_dir: Path) -> None:
    marker = run_dir / COMPLETE
    if not marker.is_file():
        raise ArtifactError(f"incomplete run directory {run_dir}: no {COMPLETE} (training did "
                            "not finish, or it was written before completion markers existed)")
    try:
        done = json.loads(marker.read_text()).get("complete") is True
    except (ValueError, AttributeError):
        done = False
    if not done:
        raise ArtifactError(f"incomplete run directory {run_dir}: {COMPLETE} is damaged")


def read_run_config(run_dir: Path) -> RunConfig:
    read_meta(run_dir)  # a clear error when run_dir is not a run directory
    path = Path(run_dir) / "resolved_config.json"
    if not path.is_file():
        raise ArtifactError(f"{run_dir}: missing resolved_config.json")
    return from_dict(RunConfig, json.loads(path.read_text()))


def load_model(run_dir: Path, check: bool = True
               ) -> tuple[torch.nn.Module, ItemVocab, pl.DataFrame, dict]:
    """Rebuild the model, vocabulary and catalogue from a run directory (eval mode).

    Raises ArtifactError for a directory that is not a complete run directory, whose files do
    not match, or (``check``) whose model scores NaN/inf on the probe histories
    (model/health.py: every item, :data:`~liverec.model.health.PROBES` seeded histories).
    """
    from liverec.model import build_model

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    mcfg = from_dict(ModelConfig, meta["model"], where="config.json model")
    items = pl.read_parquet(run_dir / "items.parquet")
    if items.schema.get("item") != pl.Utf8:  # ids are stored as the exact strings
        raise ArtifactError(f"{run_dir}: items.parquet column 'item' is "
                            f"{items.schema.get('item')}, expected text ids")
    if items.height != mcfg.n_items:
        raise ArtifactError(
            f"{run_dir}: items.parquet has {items.height} items but the model has {mcfg.n_items}"
        )
    if meta.get("compression"):
        # compressed variants (int8, pruned, distilled, ONNX) rebuild their own module types;
        # imported lazily because compress sits above model in the import order
        from liverec.compress.loader import load_variant

        model = load_variant(run_dir, mcfg, meta)
    else:
        model = build_model(mcfg)
        try:
            state = load_file(str(run_dir / "model.safetensors"))
            model.load_state_dict(state)
        except (RuntimeError, OSError, ValueError) as exc:
            weights = run_dir / "model.safetensors"
            raise ArtifactError(f"{weights}: cannot load weights: {exc}") from None
    model.eval()
    vocab = ItemVocab.from_ids(items.sort("index")["item"].to_list())
    if not np.array_equal(items.sort("index")["index"].to_numpy(), np.arange(1, mcfg.n_items + 1)):
        raise ArtifactError(f"{run_dir}: items.parquet indices are not 1..{mcfg.n_items}")
    if check:
        from liverec.model.health import score_check

        found = score_check(model)
        if not found.ok:
            raise UnservableModelError(f"{run_dir}: broken: {found.describe()}; "
                                       "refusing to load it")
    return model, vocab, items.sort("index"), meta


def model_version(run_dir: Path) -> str:
    """``<run dir name>@<sha1 of model.safetensors and config.json, 10 hex digits>``.

    From the files' contents (not their times), so replicas on other machines that hold a
    copy of the same run agree on its version; a retrain that rewrites the files changes it.
    Used by the service (answers say which version made them) and by web bundles.
    """
    run_dir = Path(run_dir)
    h = hashlib.sha1()
    for name in ("model.safetensors", "config.json"):
        h.update(f"{name};".encode())
        with open(run_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return f"{run_dir.resolve().name}@{h.hexdigest()[:10]}"


def item_digest(row: dict) -> str:
    """Fingerprint of what an item id means: its title, text and attributes."""
    attributes = row.get("attributes")
    what = [row.get("title") or "", row.get("text") or "",
            sorted(str(a) for a in attributes) if attributes is not None else []]
    return hashlib.sha1(json.dumps(what).encode()).hexdigest()[:16]


def digests_fingerprint(digests: dict[str, str]) -> str:
    """One sha1 over a catalogue's ``{item id: item_digest}`` (order-independent)."""
    h = hashlib.sha1()
    for i, d in sorted(digests.items()):
        h.update(f"{i}\x00{d}\x01".encode())
    return h.hexdigest()
