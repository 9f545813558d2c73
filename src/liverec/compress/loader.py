"""Rebuild a compressed variant from its run directory (called by ``load_model``).

config.json carries ``"compression": {"method": ..., ...}``; each method has one loader in
``LOADERS`` that builds the right module types and loads model.safetensors into them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from liverec.compress.export import ONNX_FILE, OnnxSASRec
from liverec.compress.modules import Int8TableEmbedder, TableEmbedder
from liverec.compress.prune import apply_structure
from liverec.compress.quantize import half_skeleton, int8_skeleton
from liverec.config import ModelConfig
from liverec.errors import ArtifactError
from liverec.model import build_model
from liverec.model.items import MixedDimItemEmbedder, PQItemEmbedder


def _load_state(model: nn.Module, run_dir: Path, prefix: str = "") -> nn.Module:
    weights = run_dir / "model.safetensors"
    try:
        state = {k.removeprefix(prefix): v for k, v in load_file(str(weights)).items()}
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ArtifactError(f"{weights}: cannot load weights: {exc}") from None
    return model.eval()


def _plain(run_dir: Path, cfg: ModelConfig, comp: dict) -> nn.Module:
    """Magnitude-pruned and distilled models are ordinary models (dense tensors)."""
    return _load_state(build_model(cfg), run_dir)


def _structured(run_dir: Path, cfg: ModelConfig, comp: dict) -> nn.Module:
    return _load_state(apply_structure(build_model(cfg), comp["layers"]), run_dir)


def _int8(run_dir: Path, cfg: ModelConfig, comp: dict) -> nn.Module:
    return _load_state(int8_skeleton(cfg), run_dir)


def _half(run_dir: Path, cfg: ModelConfig, comp: dict) -> nn.Module:
    return _load_state(half_skeleton(cfg, comp["dtype"]), run_dir)


def _onnx(run_dir: Path, cfg: ModelConfig, comp: dict) -> nn.Module:
    n = cfg.n_items + 1
    kind = comp.get("table", "fp32")
    table = (Int8TableEmbedder(n, cfg.d_model) if kind == "int8"
             else MixedDimItemEmbedder(cfg) if kind == "mixed"
             else PQItemEmbedder(cfg) if kind == "pq"
             else TableEmbedder(n, cfg.d_model))
    path = run_dir / comp.get("onnx_file", ONNX_FILE)
    if not path.is_file():
        raise ArtifactError(f"{run_dir}: missing {path.name} for an ONNX variant")
    _load_state(table, run_dir, prefix="items.")  # model.safetensors: the item table only
    return OnnxSASRec(cfg, table, path).eval()


LOADERS: dict[str, Callable[[Path, ModelConfig, dict], nn.Module]] = {
    "magnitude": _plain,
    "distill": _plain,
    "structured": _structured,
    "int8": _int8,
    "half": _half,
    "onnx": _onnx,
}


def load_variant(run_dir: Path, cfg: ModelConfig, meta: dict) -> nn.Module:
    """The model of a compressed run directory (eval mode) from config.json's compression."""
    comp = meta["compression"]
    method = comp.get("method")
    if method not in LOADERS:
        raise ArtifactError(f"{run_dir}: unknown compression method {method!r}; "
                            f"known: {sorted(LOADERS)}")
    with torch.no_grad():
        return LOADERS[method](Path(run_dir), cfg, comp)
