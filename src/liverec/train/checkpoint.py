"""Checkpoints that survive a crash: weights and the resume state, written atomically.

Every file is written to a temporary name in the same folder and moved over the old one with
``os.replace`` (atomic on POSIX), so a process killed mid-write leaves the previous file intact.

``checkpoint.safetensors`` holds everything ``liverec train --resume`` needs: the model
(``model.*``), the optimiser moments (``optim.<param>.<name>``) and the torch RNG state as
tensors, and the loop state (epoch, best score, scheduler, batch-order RNG, epoch rows) as JSON
in the safetensors metadata. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from liverec.errors import ArtifactError

CHECKPOINT = "checkpoint.safetensors"
_META_KEY = "liverec_checkpoint"


def atomic_save(tensors: dict[str, torch.Tensor], path: Path,
                metadata: dict[str, str] | None = None) -> None:
    """``save_file`` to a temporary file beside ``path``, then ``os.replace`` it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_weights_atomic(model: torch.nn.Module, path: Path) -> None:
    """The model's state dict as safetensors, replacing ``path`` atomically."""
    atomic_save({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, path)


def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                    sched: torch.optim.lr_scheduler.LRScheduler, state: dict) -> None:
    """Model, optimiser, scheduler, RNG and the loop's JSON ``state`` in one atomic file."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    opt_sd = opt.state_dict()
    scalars: dict[str, dict] = {}
    for pid, entry in opt_sd["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    payload = {"state": state, "param_groups": opt_sd["param_groups"],
               "optim_scalars": scalars, "scheduler": sched.state_dict()}
    atomic_save(tensors, path, metadata={_META_KEY: json.dumps(payload)})


def load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                    sched: torch.optim.lr_scheduler.LRScheduler) -> dict:
    """Restore model, optimiser, scheduler and torch RNG from ``path``; returns the loop state."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"--resume: no checkpoint at {path}")
    try:
        with safe_open(str(path), "pt") as f:
            payload = json.loads((f.metadata() or {})[_META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (KeyError, ValueError, OSError) as exc:
        raise ArtifactError(f"{path}: not a liverec checkpoint ({exc})") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, extra in payload["optim_scalars"].items():
        state.setdefault(int(pid), {}).update(extra)
    opt.load_state_dict({"state": state, "param_groups": payload["param_groups"]})
    sched.load_state_dict(payload["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return payload["state"]
