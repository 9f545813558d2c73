"""Frozen configuration dataclasses and their JSON/TOML round trip.

One dataclass per concept; :class:`RunConfig` composes them. Overrides use dotted keys
(``train.lr=3e-4``) and are type-checked against the field they set.

Every config is validated when it is built (``__post_init__``), so a bad setting fails when
the config is read, before any data is loaded or any epoch runs: choices are ``Literal`` types
(the message lists the valid values), numbers are finite and within their range, and
cross-field rules hold (``model.n_heads`` divides ``model.d_model``; ``train.monitor`` is a
metric that ``eval.ks`` computes). Each failure is one :class:`ConfigError` line naming the
setting. :func:`check_paths` adds the checks that need the file system (run by the CLI).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from liverec.errors import ConfigError

DataFormat = Literal["s3rec", "pairs", "csv", "tsv", "parquet", "movielens"]
SplitKind = Literal["leave_one_out", "temporal"]
ModelName = Literal["sasrec"]
Loss = Literal["ce", "sampled"]
ItemRepr = Literal["id", "mixed", "pq", "text", "fusion", "auto"]
Adaptor = Literal["linear", "moe"]
Fusion = Literal["sum", "gate"]
Finetune = Literal["full", "lora", "adaptor"]
LoraScope = Literal["blocks", "items"]
Mixer = Literal["attention", "filter", "fourier"]
# where a position embedding counts from: "end" (SASRec: the newest item of a left-padded
# window is position max_len - 1), "start" (the oldest item in the window is 0), "none"
Positions = Literal["end", "start", "none"]
# where LayerNorm goes: "pre" (GPT-2 style blocks, a final LayerNorm, item vectors scaled by
# sqrt(d_model)) or "post" (BERT style, as SASRec/BSARec's reference code: LayerNorm after each
# residual sum and over item + position embeddings, no scaling, no final LayerNorm)
Norm = Literal["pre", "post"]
Optimizer = Literal["adamw", "adam", "sgd"]
# which part of a long training sequence trains: "last" (its last max_len + 1 events, as SASRec)
# or "all" (every event is a target once: earlier windows of max_len + 1, max_len apart), or
# "prefixes" (every event is a target once, at the last position of its own window)
Windows = Literal["last", "all", "prefixes"]
Schedule = Literal["cosine", "constant"]
Amp = Literal["none", "bf16"]
Device = Literal["cpu", "cuda", "auto"]
NonFinite = Literal["stop", "skip"]
Baseline = Literal["pop", "itemknn", "als", "repeat"]
SyntheticKind = Literal["shop", "listening"]
# "masked": history items masked (the published protocol); "repeat": nothing masked, repeat and
# explore targets reported apart (evaluate/protocol.py); "auto": chosen from the training
# split's repeat rate (data/repeats.py)
Protocol = Literal["auto", "masked", "repeat"]
METRICS = ("hr", "ndcg", "mrr")  # the per-K metrics evaluation computes (evaluate/metrics.py)

# Range rules: (low, high, low_inclusive, high_inclusive); None = unbounded.
_GE0 = (0, None, True, True)
_GE1 = (1, None, True, True)
_POS = (0, None, False, True)
_UNIT = (0, 1, True, True)  # [0, 1]
_UNIT_OPEN = (0, 1, True, False)  # [0, 1)


@dataclass(frozen=True)
class SyntheticConfig:
    """Generated data: the synthetic shop (``kind="shop"``: categories, attribute-rich items,
    users with tastes and habits) or a repeat-heavy listening log (``kind="listening"``: users
    return to what they played before, data/listening.py)."""

    n_users: int = 2000
    n_items: int = 500
    n_categories: int = 12
    min_len: int = 6
    max_len: int = 30
    habit_strength: float = 0.7  # share of steps that follow the sequential habit (next in chain)
    seed: int = 7
    known_answer: bool = False  # cyclic sequences: next item = last + 1 (mod n_items)
    kind: SyntheticKind = "shop"  # "shop" | "listening" (repeat-heavy, data/listening.py)
    # listening only: mean of the users' repeat propensities (Beta-distributed; the share of
    # next events that replay an item already in the history) and the power-law exponent of
    # the replay kernel (a past play at lag l is copied with weight l ** -recency_decay)
    repeat_share: float = 0.65
    recency_decay: float = 1.0

    def __post_init__(self) -> None:
        _validate(self, "data.synthetic", {
            "n_users": _GE1, "n_items": (2, None, True, True), "n_categories": _GE1,
            "min_len": _GE1, "max_len": _GE1, "habit_strength": _UNIT,
            "repeat_share": _UNIT_OPEN, "recency_decay": _GE0})
        if self.max_len < self.min_len:
            raise ConfigError(f"data.synthetic.max_len ({self.max_len}) must be >= "
                              f"data.synthetic.min_len ({self.min_len})")
        if self.known_answer and self.kind != "shop":
            raise ConfigError("data.synthetic.known_answer is for kind=shop only (the cyclic "
                              f"known-answer sequences), not kind={self.kind}")


@dataclass(frozen=True)
class DataConfig:
    """Where the interactions come from and how they become sequences."""

    source: str = "synthetic"  # registry name (beauty, ml-100k, ...) or a file path
    format: DataFormat | None = None  # None = detect from the name/extension
    data_root: str | None = None  # None = $LIVEREC_DATA, then ../shared/data
    user_col: str = "user"  # column mapping for generic CSV/Parquet
    item_col: str = "item"
    time_col: str | None = None  # None = auto (timestamp, time, ts, date...); "" = file order
    event_col: str | None = None
    min_user_interactions: int = 0  # k-core filtering (0 = off)
    min_item_interactions: int = 0
    split: SplitKind = "leave_one_out"  # or "temporal"
    temporal_test_fraction: float = 0.1
    cache: bool = True
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        _validate(self, "data", {"min_user_interactions": _GE0, "min_item_interactions": _GE0,
                                 "temporal_test_fraction": (0, 0.5, False, False)})
        for name in ("source", "user_col", "item_col"):
            if not str(getattr(self, name)).strip():
                raise ConfigError(f"data.{name} must not be empty")
        # time_col: None = detect a usual name, "" = file order on purpose (data/loaders.py)
        if self.time_col is not None and self.time_col != "" and not self.time_col.strip():
            raise ConfigError("data.time_col must be a column name, \"\" (file order) or null")
        if self.event_col is not None and not str(self.event_col).strip():
            raise ConfigError("data.event_col must be a column name or null, not empty")


@dataclass(frozen=True)
class ModelConfig:
    """SASRec-style transformer over item sequences."""

    name: ModelName = "sasrec"
    n_items: int = 0  # catalogue size without padding; filled in from the data at train time
    max_len: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    d_ff: int = 256
    dropout: float = 0.2
    attn_dropout: float = 0.2
    emb_dropout: float = 0.2
    loss: Loss = "ce"  # "ce" = full softmax; "sampled" = sampled softmax (large catalogues)
    n_negatives: int = 256  # for the sampled softmax
    label_smoothing: float = 0.0
    # item representation (model/items.py registry): "id", "mixed" (id, frequency-aware
    # dims), "pq" (id, product-quantized), "text" (frozen LM vectors through a trainable
    # adaptor) or "fusion" (id + text)
    # "auto": "fusion" when the catalogue has item text (a title or text for at least half of
    # its items; anonymised attribute ids alone are not language), else "id" (resolved at train
    # time by liverec.train.setup.resolve_item_repr; a run's config.json holds the choice)
    item_repr: ItemRepr = "id"
    text_encoder: str = "minilm"  # text/encoder.py registry name, or a sentence-transformers name
    text_template: str = "{title}. {text}. {attributes}"
    text_dim: int = 0  # filled in from the encoder at train time
    adaptor: Adaptor = "linear"  # "linear" | "moe" (UniSRec-style mixture of experts)
    n_experts: int = 8
    whiten: bool = True  # whiten the frozen text vectors with the catalogue's statistics
    fusion: Fusion = "sum"  # "sum" | "gate" (for item_repr="fusion")
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
    finetune: Finetune = "full"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    # where LoRA goes: "blocks" (attention/FFN projections) and/or "items" (the text adaptor)
    lora_scopes: tuple[LoraScope, ...] = ("blocks", "items")
    # token mixing in each block: "attention" (SASRec) or "filter": attention mixed with a
    # causal low-pass filter of the sequence (BSARec's inductive bias, made causal so every
    # position still trains): filter_alpha = the filter branch's weight, filter_kernel = its
    # length in positions; "fourier": BSARec's own low-pass (the filter_bins lowest Fourier
    # frequencies of the max_len window), which sees later positions, so it needs
    # train.windows="prefixes"
    mixer: Mixer = "attention"
    filter_alpha: float = 0.7
    filter_kernel: int = 8
    filter_bins: int = 3
    # position embeddings (model/sasrec.py position_ids): "end" counts back from the newest item
    # (SASRec), so a training position t < T is told how many items follow it, which no query
    # at serving time ever is; "start" counts from the window's oldest item (the same index for
    # an item in training and at serving); "none" leaves order to the causal mask and filter
    positions: Positions = "end"
    norm: Norm = "pre"

    def __post_init__(self) -> None:
        _validate(self, "model", {
            "n_items": _GE0, "max_len": _GE1, "d_model": _GE1, "n_layers": _GE1,
            "n_heads": _GE1, "d_ff": _GE1, "dropout": _UNIT_OPEN, "attn_dropout": _UNIT_OPEN,
            "emb_dropout": _UNIT_OPEN, "n_negatives": _GE1, "label_smoothing": _UNIT_OPEN,
            "text_dim": _GE0, "n_experts": _GE1, "head_items": _GE0, "tail_dim": _GE0,
            "pq_subspaces": _GE0, "pq_bits": (1, 8, True, True), "lora_rank": _GE1,
            "lora_alpha": _POS, "filter_alpha": _UNIT, "filter_kernel": _GE1,
            "filter_bins": _GE1})
        if self.d_model % self.n_heads:
            raise ConfigError(f"model.n_heads={self.n_heads} does not divide "
                              f"model.d_model={self.d_model} (d_model must be divisible by "
                              "n_heads: each head gets d_model / n_heads dimensions)")
        if self.pq_subspaces and self.d_model % self.pq_subspaces:
            raise ConfigError(f"model.pq_subspaces={self.pq_subspaces} must divide d_model "
                              f"(model.d_model={self.d_model})")
        if not self.lora_scopes:
            raise ConfigError("model.lora_scopes must name 'blocks' and/or 'items'")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule and stopping."""

    optimizer: Optimizer = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd only
    batch_size: int = 128
    # data-adaptive batch size: 0 = off; else batch_size is halved (down to 16) until an epoch
    # has at least this many steps, so a small dataset gets as many updates per epoch as the
    # early-stopping patience (in epochs) assumes (liverec.train.batches.resolve_batch_and_patience)
    min_steps_per_epoch: int = 0
    # "last": a user's last max_len + 1 training events make its one training sequence (SASRec);
    # "all": a longer history also gives earlier windows, so every training event is a target
    # once; "prefixes": one sequence per training event, supervised at its last position only
    # (BSARec's training data; needed by model.mixer="fourier")
    # (liverec.train.batches.training_windows)
    windows: Windows = "last"
    epochs: int = 30
    warmup_steps: int = 100
    schedule: Schedule = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    patience: int = 5  # evaluations without improvement of `monitor` before stopping
    # data-adaptive patience: 0 = off; else patience is raised (never lowered) to cover at
    # least this many optimiser steps (a small dataset's epochs are few steps, its validation
    # noisy), resolved with the batch size (liverec.train.batches.resolve_batch_and_patience)
    min_patience_steps: int = 0
    # refit on the validation events: 0 = off; else, after early stopping, the kept (best
    # validation) weights train this many more epochs on the training events plus each user's
    # validation event (the event the test step already sees in its input, and that the
    # report's baselines are fitted with), with a fresh optimiser and a cosine decay from
    # refit_lr x lr; validation scores after it are no longer held out, so the run keeps the
    # ones from before (liverec.train.loop: _Run.refit)
    refit_epochs: int = 0
    refit_lr: float = 0.5
    # the validation metric that picks the best epoch and drives early stopping: "ndcg@K",
    # "hr@K" or "mrr@K" with K in eval.ks (case-insensitive); "auto" = ndcg@10 when 10 is in
    # eval.ks, else ndcg at the smallest K of eval.ks
    monitor: str = "auto"
    eval_every: int = 1
    seed: int = 42
    num_threads: int = 0  # 0 = torch default
    max_time_s: float = 0.0  # 0 = no wall-time budget
    bf16: bool = False  # CPU/GPU autocast to bfloat16 for the forward pass (same as amp="bf16")
    amp: Amp = "none"  # "none" | "bf16": autocast the forward pass to bfloat16
    compile: bool = False  # torch.compile the training forward pass
    device: Device = "cpu"  # "cpu" | "cuda" (one GPU per rank under torchrun) | "auto"
    checkpoint: bool = True  # checkpoint.safetensors (resume state) after every epoch
    progress: bool = True  # a progress bar per epoch (only when stderr is a terminal)
    nonfinite: NonFinite = "stop"  # NaN/inf loss or gradient: "stop" (one-line error) | "skip"

    def __post_init__(self) -> None:
        _validate(self, "train", {
            "lr": _GE0, "weight_decay": _GE0, "momentum": _UNIT_OPEN, "batch_size": _GE1,
            "epochs": _GE1, "warmup_steps": _GE0, "min_lr_ratio": _UNIT, "grad_clip": _GE0,
            "patience": _GE1, "eval_every": _GE1, "num_threads": _GE0, "max_time_s": _GE0,
            "min_steps_per_epoch": _GE0, "min_patience_steps": _GE0, "refit_epochs": _GE0,
            "refit_lr": (0, 1, False, True)})
        monitor = str(self.monitor).strip().lower()
        if monitor != "auto" and not re.fullmatch(rf"({'|'.join(METRICS)})@[1-9][0-9]*", monitor):
            raise ConfigError(f"train.monitor: {self.monitor!r} is not a metric; use "
                              "ndcg@K, hr@K or mrr@K with K in eval.ks, or auto")
        object.__setattr__(self, "monitor", monitor)  # normalised: "NDCG@10" -> "ndcg@10"


@dataclass(frozen=True)
class EvalConfig:
    """Full-ranking evaluation: leave-one-out; seen items masked, or not (``protocol``)."""

    ks: tuple[int, ...] = (5, 10, 20)
    batch_size: int = 1024
    baselines: tuple[Baseline, ...] = ("pop", "itemknn", "als", "repeat")
    # "auto" = "repeat" (repeat-aware protocol and model mode) when the training split's
    # repeat rate is >= repeat_threshold, else "masked" (data/repeats.py says why 20%, from
    # benchmarks/results/repeat_threshold*.md)
    protocol: Protocol = "auto"
    repeat_threshold: float = 0.2

    def __post_init__(self) -> None:
        _validate(self, "eval", {"batch_size": _GE1, "repeat_threshold": (0, 1, False, True)})
        if not self.ks:
            raise ConfigError("eval.ks must list at least one cut-off K, e.g. [5, 10, 20]")
        if any(k < 1 for k in self.ks) or len(set(self.ks)) != len(self.ks):
            raise ConfigError(f"eval.ks must be distinct positive integers, got {list(self.ks)}")


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs; written as resolved_config.json beside it."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        monitor_metric(self)  # the early-stopping metric must be one evaluation computes
        if self.model.mixer == "fourier" and self.train.windows != "prefixes":
            raise ConfigError(f"model.mixer='fourier' needs train.windows='prefixes' (got "
                              f"{self.train.windows!r}): its low-pass mixes later positions "
                              "into earlier ones, so only a sequence's last position may train")


def monitor_metric(cfg: RunConfig) -> str:
    """The validation metric key (e.g. ``"ndcg@10"``) that picks the best epoch.

    Raises:
        ConfigError: ``train.monitor`` names a K that ``eval.ks`` does not compute.
    """
    ks = cfg.eval.ks
    if cfg.train.monitor == "auto":
        return "ndcg@10" if 10 in ks else f"ndcg@{min(ks)}"
    metric, k = cfg.train.monitor.split("@")
    if int(k) not in ks:
        valid = ", ".join(f"{m}@{x}" for x in ks for m in METRICS)
        raise ConfigError(f"train.monitor={cfg.train.monitor} is not computed: eval.ks is "
                          f"{list(ks)}; add {k} to eval.ks or use one of: {valid}, auto")
    return f"{metric}@{int(k)}"


def check_paths(cfg: RunConfig) -> None:
    """The checks that need the file system, run before any work (by the CLI).

    ``data.data_root``, when set, must be a folder; a ``data.source`` that looks like a path
    (has a folder separator or a file extension) must exist.

    Raises:
        ConfigError: naming the setting and the path.
    """
    d = cfg.data
    if d.data_root is not None and not Path(d.data_root).expanduser().is_dir():
        raise ConfigError(f"data.data_root: no such folder: {d.data_root}")
    src = Path(d.source).expanduser()
    looks_like_path = "/" in d.source or "\\" in d.source or src.suffix != ""
    if looks_like_path and not src.exists():
        raise ConfigError(f"data.source: no such file or folder: {d.source}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _choices(tp: Any) -> tuple | None:
    """The allowed values of a ``Literal`` (or ``Literal | None``) type, else None."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if typing.get_origin(arg) is Literal:
                return typing.get_args(arg)
    return None


def _check_choice(tp: Any, value: Any, path: str) -> None:
    if typing.get_origin(tp) is tuple:
        for v in value:
            _check_choice(typing.get_args(tp)[0], v, path)
        return
    choices = _choices(tp)
    if choices is None or value is None or value in choices:
        return
    raise ConfigError(f"{path}: {value!r} is not supported; valid values: "
                      + ", ".join(str(c) for c in choices))


def _validate(obj: Any, section: str, ranges: dict[str, tuple]) -> None:
    """Choices, finiteness and ranges of one config dataclass (see the module docstring)."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value, path = getattr(obj, f.name), f"{section}.{f.name}" if section else f.name
        _check_choice(hints[f.name], value, path)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{path} must be a finite number, got {value}")
    for name, (low, high, low_in, high_in) in ranges.items():
        value = getattr(obj, name)
        ok = ((low is None or value > low or (low_in and value == low))
              and (high is None or value < high or (high_in and value == high)))
        if not ok:
            if high is None:
                want = f">= {low}" if low_in else f"> {low}"
            else:
                want = f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"
            raise ConfigError(f"{section}.{name} must be {want}, got {value}")


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
    if origin is Literal:
        if value not in args or isinstance(value, bool):
            raise ConfigError(f"{path}: {value!r} is not supported; valid values: "
                              + ", ".join(str(a) for a in args))
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if origin is tuple:
        if isinstance(value, str):  # "a,b" or "[a, b]" as typed on a command line
            value = [v.strip().strip("'\"") for v in value.strip().strip("[]").split(",")]
            value = [v for v in value if v]
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
        if tp is float and not math.isfinite(number):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
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
