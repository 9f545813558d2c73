"""Frozen configuration dataclasses and their JSON/TOML round trip.

One dataclass per concept; :class:`RunConfig` composes them. Overrides use dotted keys
(``train.lr=3e-4``) and are type-checked against the field they set.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liverec.errors import ConfigError


@dataclass(frozen=True)
class SyntheticConfig:
    """The synthetic shop: categories, attribute-rich items, users with tastes and habits."""

    n_users: int = 2000
    n_items: int = 500
    n_categories: int = 12
    min_len: int = 6
    max_len: int = 30
    habit_strength: float = 0.7  # share of steps that follow the sequential habit (next in chain)
    seed: int = 7
    known_answer: bool = False  # cyclic sequences: next item = last + 1 (mod n_items)


@dataclass(frozen=True)
class DataConfig:
    """Where the interactions come from and how they become sequences."""

    source: str = "synthetic"  # registry name (beauty, ml-100k, ...) or a file path
    format: str | None = None  # None = detect from the name/extension
    data_root: str | None = None  # None = $LIVEREC_DATA, then ../shared/data
    user_col: str = "user"  # column mapping for generic CSV/Parquet
    item_col: str = "item"
    time_col: str | None = None  # None = auto (timestamp, time, ts, date...); "" = file order
    event_col: str | None = None
    min_user_interactions: int = 0  # k-core filtering (0 = off)
    min_item_interactions: int = 0
    split: str = "leave_one_out"  # or "temporal"
    temporal_test_fraction: float = 0.1
    cache: bool = True
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass(frozen=True)
class ModelConfig:
    """SASRec-style transformer over item sequences."""

    name: str = "sasrec"
    n_items: int = 0  # catalogue size without padding; filled in from the data at train time
    max_len: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    d_ff: int = 256
    dropout: float = 0.2
    attn_dropout: float = 0.2
    emb_dropout: float = 0.2
    loss: str = "ce"  # "ce" = full softmax; "sampled" = sampled softmax (large catalogues)
    n_negatives: int = 256  # for the sampled softmax
    label_smoothing: float = 0.0
    # item representation (model/items.py registry): "id", "mixed" (id, frequency-aware
    # dims), "pq" (id, product-quantized), "text" (frozen LM vectors through a trainable
    # adaptor) or "fusion" (id + text)
    item_repr: str = "id"
    text_encoder: str = "minilm"  # text/encoder.py registry name, or a sentence-transformers name
    text_template: str = "{title}. {text}. {attributes}"
    text_dim: int = 0  # filled in from the encoder at train time
    adaptor: str = "linear"  # "linear" | "moe" (UniSRec-style mixture of experts)
    n_experts: int = 8
    whiten: bool = True  # whiten the frozen text vectors with the catalogue's statistics
    fusion: str = "sum"  # "sum" | "gate" (for item_repr="fusion")
    # item_repr="mixed" (frequency-aware id table): the head_items most frequent items get
    # d_model dims, the rest tail_dim dims projected up (compact students)
    head_items: int = 0
    tail_dim: int = 0
    # item_repr="pq" (product-quantized id table): each item's vector is pq_subspaces
    # sub-vectors, each one of 2**pq_bits learned centroids (one code byte per sub-space)
    pq_subspaces: int = 0
    pq_bits: int = 8
    # fine-tuning from a pretrained run (liverec train --init): "full", "lora" (low-rank
    # updates of the transformer/adaptor Linear layers) or "adaptor" (item adaptor only)
    finetune: str = "full"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    # where LoRA goes: "blocks" (attention/FFN projections) and/or "items" (the text adaptor)
    lora_scopes: tuple[str, ...] = ("blocks", "items")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule and stopping."""

    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd only
    batch_size: int = 128
    epochs: int = 30
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    patience: int = 5  # epochs without validation NDCG@10 improvement before stopping
    eval_every: int = 1
    seed: int = 42
    num_threads: int = 0  # 0 = torch default
    max_time_s: float = 0.0  # 0 = no wall-time budget
    bf16: bool = False  # CPU/GPU autocast to bfloat16 for the forward pass (same as amp="bf16")
    amp: str = "none"  # "none" | "bf16": autocast the forward pass to bfloat16
    compile: bool = False  # torch.compile the training forward pass
    device: str = "cpu"  # "cpu" | "cuda" (one GPU per rank under torchrun) | "auto"
    checkpoint: bool = True  # checkpoint.safetensors (resume state) after every epoch
    progress: bool = True


@dataclass(frozen=True)
class EvalConfig:
    """Full-ranking evaluation: leave-one-out, seen items masked."""

    ks: tuple[int, ...] = (5, 10, 20)
    batch_size: int = 1024
    baselines: tuple[str, ...] = ("pop", "itemknn", "als")


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs; written as resolved_config.json beside it."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build ``cls`` from a (possibly partial) dict, checking names and types.

    Unknown keys are an error (a typo must not be silently ignored).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a table/object, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; known: {sorted(names)}"
        )
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        kwargs[key] = _coerce(hints[key], value, path)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], v, path) for v in value)
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        try:
            number = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return str(value)
    return value


def load_config(path: str | Path) -> RunConfig:
    """Read a RunConfig from JSON or TOML (missing keys keep their defaults)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    data.pop("_comment", None)
    return from_dict(RunConfig, data, where="")


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    """Write a config as JSON."""
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2) + "\n")


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.key=value`` overrides (values parsed as JSON when they parse)."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                raise ConfigError(f"override {key!r}: no section {part!r}")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"override {key!r}: unknown key {parts[-1]!r}")
        node[parts[-1]] = value
    return from_dict(RunConfig, data)
