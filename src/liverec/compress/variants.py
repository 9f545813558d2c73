"""Build compressed variants of a trained run and write each as a loadable run directory.

Each variant directory has the usual files (config.json, resolved_config.json,
model.safetensors, items.parquet; model.onnx for ONNX; complete.json last) and
``"compression": {...}`` in config.json, which :func:`liverec.compress.loader.load_variant`
reads back. Files of the source that stay valid for a variant are copied as they are
(:data:`CARRIED`, listed as ``"carried"`` in the compression entry): the repeat-explore mixture
``repeat.json`` of a run in the repeat-aware mode (model/repeat.py) — every variant keeps the
source's item indexing and scores that approximate the source's, and the mixture's weights take
the model's log-probabilities as one feature, so the variant stays repeat-aware.

Every variant is scored when it is built (real histories of the run's data when at hand, else
seeded probe histories, against the whole catalogue, plus its item table): one with a NaN or
infinite score is still written, for inspection, but marked ``"broken": "non-finite scores
(...)"`` in its compression entry, which ``liverec.load`` refuses and the report shows as
broken instead of a share of fp32.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch

from liverec.compress.distill import distill, student_config
from liverec.compress.export import ONNX_FILE, OnnxSASRec, export_onnx
from liverec.compress.modules import Int8TableEmbedder, TableEmbedder
from liverec.compress.prune import (
    apply_masks,
    magnitude_prune,
    sparsity_of,
    structured_prune,
)
from liverec.compress.quantize import quantize_int8, to_half
from liverec.config import RunConfig, TrainConfig
from liverec.data.prepare import Prepared
from liverec.errors import ArtifactError, ConfigError
from liverec.model.artifact import (
    load_model,
    mark_complete,
    read_meta,
    read_run_config,
    save_artifact,
)
from liverec.model.health import score_check
from liverec.model.items import MixedDimItemEmbedder, PQItemEmbedder
from liverec.model.repeat import FILE as REPEAT_FILE
from liverec.model.repeat import carry_repeat, load_repeat
from liverec.train.loop import fit

log = logging.getLogger(__name__)

CARRIED = (REPEAT_FILE,)  # source files every variant keeps as they are (when the source has)


@dataclass(frozen=True)
class CompressConfig:
    """Which variants to build and how, and how to measure them."""

    int8: bool = True
    half: str = ""  # "" (none), "bf16" or "fp16"
    prune: float = 0.0  # share of weights (magnitude) or heads/FFN units (structured); 0 = off
    prune_kinds: tuple[str, ...] = ("structured",)  # "structured" and/or "magnitude"
    distill: tuple[str, ...] = ()  # student ModelConfig overrides "key=value"; empty = off
    onnx: bool = False  # ONNX Runtime fp32 and int8
    onnx_of: tuple[str, ...] = ()  # also export these built variants to ONNX ("distilled")
    finetune_epochs: int = 3  # after pruning
    distill_epochs: int = 10
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the KL term in distillation
    distill_copy: bool = False  # start the student's matching transformer tensors at the teacher's
    lr: float = 0.0  # 0 = the run's learning rate
    report: bool = True
    bench_histories: int = 200  # test histories timed at batch 1
    repeats: int = 5  # passes over them (variants interleaved)
    throughput_batch: int = 256
    throughput_repeats: int = 5
    threads: int = 1  # torch / ONNX Runtime intra-op threads while measuring
    check_histories: int = 64  # real histories each built variant must score finitely

    def check(self) -> None:
        """ConfigError (one line) unless at least one variant is asked for, and sensibly."""
        if self.half not in ("", "bf16", "fp16"):
            raise ConfigError(f"half: unknown {self.half!r}; use bf16 or fp16")
        if not 0.0 <= self.prune < 1.0:
            raise ConfigError(f"prune: {self.prune} is not a share in [0, 1)")
        if not (self.int8 or self.half or self.prune > 0 or self.distill or self.onnx):
            raise ConfigError("nothing to build: choose at least one variant (--int8, "
                              "--half bf16|fp16, --prune RATIO, --distill, --onnx)")


@dataclass
class Source:
    """The fp32 reference run, loaded once; ``histories`` check each variant's scores."""

    run_dir: Path
    cfg: RunConfig
    model: torch.nn.Module
    items: pl.DataFrame
    histories: list | None = None  # real item-index histories (None: seeded probes)
    carried: tuple[str, ...] = ()  # the CARRIED files the source has (checked readable)


def check_source(run_dir: Path) -> None:
    """ArtifactError (one line) unless ``run_dir`` is a complete, uncompressed run."""
    comp = read_meta(Path(run_dir)).get("compression")
    if comp:
        raise ArtifactError(f"{run_dir} is already a compressed variant ({comp.get('method')} "
                            f"of {comp.get('source')}); compress the fp32 run it came from")


def load_source(run_dir: Path) -> Source:
    """The fp32 run, with the CARRIED files it has.

    Raises:
        ArtifactError: not a complete, uncompressed run, or its ``repeat.json`` cannot be read
            (before any variant is written).
    """
    check_source(run_dir)
    run_dir = Path(run_dir)
    model, _, items, _ = load_model(run_dir)
    load_repeat(run_dir, model)  # a bad repeat.json: ArtifactError now, not in every variant
    carried = tuple(name for name in CARRIED if (run_dir / name).is_file())
    return Source(run_dir, read_run_config(run_dir), model, items, carried=carried)


def write_variant(src: Source, out: Path, model: torch.nn.Module, compression: dict) -> Path:
    """Save ``model`` as a run directory beside the source's config and catalogue, with its
    finite-score check; a variant with NaN/inf scores is marked broken (``load`` refuses it).
    The source's CARRIED files are copied (a stale one of an earlier build into ``out`` is
    removed) before the completion marker is written."""
    cfg = dataclasses.replace(src.cfg, model=model.cfg, name=f"{src.cfg.name}-{out.name}")
    check = score_check(model.eval(), src.histories)
    compression = {"source": str(src.run_dir), **compression, "score_check": check.to_dict()}
    if src.carried:
        compression["carried"] = list(src.carried)
    if not check.ok:
        compression["broken"] = check.describe()
        log.warning("%s variant %s is broken: %s", compression["method"], out, check.describe())
    save_artifact(out, cfg, model, src.items, extra={"compression": compression}, complete=None)
    carry_repeat(src.run_dir, out)  # CARRIED: repeat.json, or a stale copy removed
    mark_complete(out, by="compress")  # last: only now may it be loaded
    log.info("wrote %s variant to %s", compression["method"], out)
    return out


def finetune_config(src: Source, cc: CompressConfig) -> TrainConfig:
    """The source run's training settings for fine-tuning a variant (pruned, distilled): its
    own lr unless ``cc.lr``, a short warm-up; a source trained with a refit on validation
    events (``train.refit_epochs``) gives its variants the same refit after their selection,
    so they are compared with the reference on the same training data."""
    tc = src.cfg.train
    return dataclasses.replace(tc, lr=cc.lr or tc.lr, progress=False,
                               warmup_steps=min(tc.warmup_steps, 20))


def build_int8(src: Source, out: Path) -> Path:
    return write_variant(src, out, quantize_int8(src.model),
                         {"method": "int8", "linear": "int8 per-row weights, dynamic activations",
                          "table": "int8 per-row scale"})


def build_half(src: Source, out: Path, dtype: str) -> Path:
    return write_variant(src, out, to_half(src.model, dtype), {"method": "half", "dtype": dtype})


def build_magnitude(src: Source, out: Path, ratio: float, cc: CompressConfig,
                    prepared: Prepared) -> Path:
    model, masks = magnitude_prune(src.model, ratio)
    log_ = fit(model, prepared, finetune_config(src, cc), cc.finetune_epochs,
               after_step=lambda _: apply_masks(masks))
    return write_variant(src, out, model, {"method": "magnitude", "sparsity": sparsity_of(model),
                                           "finetune": _summary(log_)})


def build_structured(src: Source, out: Path, ratio: float, cc: CompressConfig,
                     prepared: Prepared) -> Path:
    model, layers = structured_prune(src.model, ratio)
    log_ = fit(model, prepared, finetune_config(src, cc), cc.finetune_epochs)
    return write_variant(src, out, model, {"method": "structured", "ratio": ratio,
                                           "layers": layers, "finetune": _summary(log_)})


def build_distilled(src: Source, out: Path, cc: CompressConfig, prepared: Prepared) -> Path:
    student_cfg = student_config(src.model.cfg, cc.distill)
    tc = dataclasses.replace(finetune_config(src, cc), warmup_steps=src.cfg.train.warmup_steps)
    student, log_ = distill(src.model, prepared, student_cfg, tc, cc.distill_epochs,
                            cc.temperature, cc.alpha, copy_weights=cc.distill_copy)
    teacher_n = sum(p.numel() for p in src.model.parameters())
    return write_variant(src, out, student, {
        "method": "distill", "student": list(cc.distill), "temperature": cc.temperature,
        "alpha": cc.alpha, "teacher_parameters": teacher_n,
        "student_parameters": sum(p.numel() for p in student.parameters()),
        "svd_init": log_["svd_init"], "copied_from_teacher": log_["copied_from_teacher"],
        "finetune": _summary(log_),
    })


def build_onnx(src: Source, out: Path, int8: bool, model: torch.nn.Module | None = None,
               origin: str = "fp32") -> Path:
    """ONNX Runtime variant of ``model`` (default the fp32 source; or a pruned/distilled one)."""
    model = src.model if model is None else model
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(model, out / ONNX_FILE, int8=int8)
    table = model.item_table().detach().float()
    if isinstance(model.items, (MixedDimItemEmbedder, PQItemEmbedder)) and not int8:
        # stays factored / coded (small)
        kind = "mixed" if isinstance(model.items, MixedDimItemEmbedder) else "pq"
        items = copy.deepcopy(model.items).eval()
    elif int8:
        items, kind = Int8TableEmbedder.from_table(table), "int8"
    else:
        items, kind = TableEmbedder.from_table(table), "fp32"
    wrapper = OnnxSASRec(model.cfg, items, out / ONNX_FILE)
    return write_variant(src, out, wrapper, {
        "method": "onnx", "onnx_file": ONNX_FILE, "runtime": "onnxruntime", "from": origin,
        "weights": "int8 (onnxruntime quantize_dynamic, per channel)" if int8 else "fp32",
        "table": kind,
    })


def build_variants(run_dir: Path, out_dir: Path, cc: CompressConfig,
                   prepared: Prepared | None = None) -> dict[str, Path]:
    """Build every variant ``cc`` asks for under ``out_dir``; returns name -> run directory.

    ``prepared`` (the run's data in its vocabulary) is needed for pruning and distillation;
    it is loaded from the run's DataConfig when not given.
    """
    cc.check()
    src = load_source(run_dir)
    out_dir = Path(out_dir)
    needs_data = cc.prune > 0 or bool(cc.distill)
    if needs_data and prepared is None:
        prepared = prepare_for(run_dir)
    if prepared is not None:
        src.histories = check_histories(prepared, cc.check_histories)
    made: dict[str, Path] = {}
    if cc.int8:
        made["int8"] = build_int8(src, out_dir / "int8")
    if cc.half:
        made[cc.half] = build_half(src, out_dir / cc.half, cc.half)
    pct = round(100 * cc.prune)
    for kind in cc.prune_kinds if cc.prune > 0 else ():
        build = {"magnitude": build_magnitude, "structured": build_structured}[kind]
        made[f"{kind}{pct}"] = build(src, out_dir / f"{kind}{pct}", cc.prune, cc, prepared)
    if cc.distill:
        made["distilled"] = build_distilled(src, out_dir / "distilled", cc, prepared)
    if cc.onnx:
        made["onnx-fp32"] = build_onnx(src, out_dir / "onnx-fp32", int8=False)
        made["onnx-int8"] = build_onnx(src, out_dir / "onnx-int8", int8=True)
    for name in cc.onnx_of:
        if name not in made:
            raise ConfigError(f"onnx_of: no variant {name!r} was built; built: {sorted(made)}")
        model = load_model(made[name])[0]
        made[f"{name}-onnx"] = build_onnx(src, out_dir / f"{name}-onnx", False, model, name)
    return made


def check_histories(prepared: Prepared, n: int) -> list:
    """Up to ``n`` test histories (then validation ones) of the run's data, item indices."""
    out: list = []
    for stage in ("test", "valid"):
        out += [h for h in prepared.eval_cases(stage)[1] if len(h)][: n - len(out)]
    return out


def prepare_for(run_dir: Path) -> Prepared:
    """The run's data (its DataConfig) mapped onto the run's vocabulary."""
    from liverec.data.pipeline import load_and_prepare
    from liverec.data.prepare import ItemVocab

    items = pl.read_parquet(Path(run_dir) / "items.parquet").sort("index")
    vocab = ItemVocab.from_ids(items["item"].to_list())
    return load_and_prepare(read_run_config(run_dir).data, vocab=vocab)


def _summary(log_: dict) -> dict:
    refit = log_.get("refit") or {}
    return {"epochs": len(log_["epochs"]), "best_epoch": log_["best_epoch"],
            "best_valid": log_["best_valid"], "stopped": log_.get("stopped", ""),
            "skipped_steps": log_.get("skipped_steps", 0),
            **({"refit": {k: refit[k] for k in ("epochs", "lr", "kept", "why")}}
               if refit else {})}
