"""Building the model a training run starts from: text vectors, pretrained weights, freezing.

``liverec train --init RUN_DIR`` lands here: the model architecture comes from the pretrained
run (``model.*`` overrides still apply), its weights load where they fit (model/finetune.py)
and the text vectors are encoded from the *new* catalogue through the on-disk cache.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file

from liverec.config import ModelConfig, RunConfig, apply_overrides, from_dict, to_dict
from liverec.data.prepare import Prepared
from liverec.model import build_model
from liverec.model.finetune import load_pretrained, set_trainable
from liverec.model.items import uses_text

log = logging.getLogger(__name__)


def catalogue_text_vectors(cfg: ModelConfig, items: pl.DataFrame) -> np.ndarray:
    """Raw encoder vectors of a catalogue's items in index order (through the cache). -> (N, E)"""
    from liverec.text import build_encoder, encode_cached, item_text

    if "index" in items.columns:
        items = items.sort("index")
    texts = item_text(items, cfg.text_template)
    return encode_cached(build_encoder(cfg.text_encoder), texts)


TEXT_SHARE = 0.5  # item_repr "auto" picks fusion when at least this share of items has text


def resolve_item_repr(cfg: ModelConfig, items: pl.DataFrame) -> ModelConfig:
    """``cfg`` with ``item_repr="auto"`` resolved from the catalogue: "fusion" when at least
    :data:`TEXT_SHARE` of its items have a non-empty ``title`` or ``text`` (attribute ids alone
    do not count: S3-Rec's are anonymised numbers), else "id". Other values pass unchanged.
    Logged at INFO."""
    if cfg.item_repr != "auto":
        return cfg
    has = pl.lit(False)
    for col in ("title", "text"):
        if col in items.columns:
            has = has | (pl.col(col).cast(pl.Utf8).fill_null("").str.strip_chars() != "")
    share = float(items.select(has.mean()).item() or 0.0) if items.height else 0.0
    choice = "fusion" if share >= TEXT_SHARE else "id"
    log.info("item_repr auto -> %s: %.0f%% of %d items have a title or text (fusion from %.0f%%)",
             choice, 100 * share, items.height, 100 * TEXT_SHARE)
    return dataclasses.replace(cfg, item_repr=choice)


def build_for_training(cfg: RunConfig, prepared: Prepared, out_dir: Path,
                       init_state: dict[str, torch.Tensor] | None = None,
                       ) -> tuple[RunConfig, torch.nn.Module, dict]:
    """The model to train, with ``cfg.model`` completed from the data (n_items, text_dim).

    Args:
        cfg: the run configuration.
        prepared: the training data (its catalogue gives the text vectors).
        out_dir: the run directory; ``item_text.npy`` is written there when text is used.
        init_state: pretrained weights (same or another catalogue).

    Returns:
        (completed config, model, parameter stats {"n_parameters", "n_trainable", ...}).
    """
    mcfg = resolve_item_repr(dataclasses.replace(cfg.model, n_items=prepared.vocab.n_items),
                             prepared.items)
    vectors = None
    if uses_text(mcfg):
        vectors = catalogue_text_vectors(mcfg, prepared.items)  # (N, E)
        mcfg = dataclasses.replace(mcfg, text_dim=int(vectors.shape[1]))
        out_dir.mkdir(parents=True, exist_ok=True)
        np.save(out_dir / "item_text.npy", vectors)
    cfg = dataclasses.replace(cfg, model=mcfg)
    model = build_model(mcfg)
    if vectors is not None:
        model.items.set_text(torch.from_numpy(vectors))
    stats: dict = {}
    if init_state is not None:
        report = load_pretrained(model, init_state)
        stats["init_loaded"], stats["init_skipped"] = len(report["loaded"]), report["skipped"]
    stats.update(set_trainable(model, mcfg.finetune))
    return cfg, model, stats


def pretrained_state(run_dir: Path) -> dict[str, torch.Tensor]:
    """The weights of a run directory (safetensors; never unpickled)."""
    path = Path(run_dir) / "model.safetensors"
    if not path.is_file():
        from liverec.errors import ArtifactError

        raise ArtifactError(f"--init: {run_dir} has no model.safetensors")
    return load_file(str(path))


def inherit_model_config(cfg: RunConfig, run_dir: Path, overrides: list[str]) -> RunConfig:
    """``cfg`` with the pretrained run's model settings, then ``model.*`` overrides re-applied."""
    meta = json.loads((Path(run_dir) / "config.json").read_text())
    model = from_dict(ModelConfig, meta["model"], where="init config.json model")
    cfg = dataclasses.replace(cfg, model=model)
    model_over = [o for o in overrides if o.strip().startswith("model.")]
    cfg = apply_overrides(cfg, model_over)
    log.info("model settings from the pretrained run %s: %s", run_dir, to_dict(cfg.model))
    return cfg
