"""Data-parallel training with torch.distributed, started by torchrun.

``torchrun --nproc-per-node N -m liverec train ...`` runs N copies of the same command; each
reads its place from the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT). Every
rank builds the same model from the same seed and walks the same global batch order; each
takes a contiguous slice of every global batch (a DistributedSampler-equivalent split: the
global batch is ``train.batch_size``, a rank gets about batch_size / world of it). Ranks weight
their mean loss by their share of the batch's supervised positions, so DDP's averaged gradient
is exactly the gradient of the global batch's mean loss: the same update a single process makes.
Rank 0 alone evaluates, checkpoints and writes the run directory; its stop decision is
broadcast so every rank leaves the loop after the same epoch.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from liverec.errors import ConfigError, LiverecError
from liverec.train.batches import TrainBatches

# what gloo / NCCL say when the other end of a collective went away
_PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe",
              "NCCL communicator was aborted", "DistNetworkError", "Timed out waiting")


class PeerLost(LiverecError):
    """Another rank of the job stopped (killed or crashed) in the middle of a collective."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_context() -> DistContext:
    """The context torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (defaults: alone)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc})") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"invalid distributed environment: RANK={rank} WORLD_SIZE={world}")
    return DistContext(rank, world, local)


def select_device(pref: str, ctx: DistContext) -> torch.device:
    """``train.device``: "cpu", "cuda" (GPU LOCAL_RANK) or "auto" (CUDA when present)."""
    if pref not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"train.device: unknown {pref!r}; use cpu, cuda or auto")
    if pref == "cpu" or (pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but torch sees no CUDA device")
    device = torch.device("cuda", ctx.local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def process_group(ctx: DistContext, device: torch.device) -> Iterator[None]:
    """The default process group (gloo on CPU, NCCL on GPU) for the duration of the block.

    A no-op when running alone or when an outer block already started one.
    """
    if not ctx.enabled or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=ctx.rank, world_size=ctx.world_size)
    try:
        yield
        # a normal exit: every rank is past its last collective before any rank tears down
        # (a rank that destroyed the group while its peer was still in rank-0 work aborted
        # once in gloo: "terminate called without an active exception", SIGABRT)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def main_first(ctx: DistContext) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. fills an on-disk cache), then the other ranks."""
    if not ctx.enabled:
        yield
        return
    if ctx.is_main:
        yield
        dist.barrier()
    else:
        dist.barrier()
        yield


@contextlib.contextmanager
def peer_errors_as_one_line(ctx: DistContext) -> Iterator[None]:
    """Turn a collective's error about a vanished peer into a one-line PeerLost."""
    try:
        yield
    except RuntimeError as exc:
        text = f"{type(exc).__name__}: {exc}"
        if not ctx.enabled or not any(mark in text for mark in _PEER_LOST):
            raise
        # gloo: "[.../pair.cc:537] Read error [127.0.0.1]:18855: Connection reset by peer. ..."
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]
        raise PeerLost(f"rank {ctx.rank}: another worker of the job stopped ({first[:160]})"
                       ) from None


def broadcast_from_main(value, ctx: DistContext):
    """Rank 0's ``value`` on every rank (any picklable value between trusted ranks)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_across_ranks(value: float, ctx: DistContext) -> float:
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item())


def broadcast_state(model: torch.nn.Module, ctx: DistContext) -> None:
    """Rank 0's parameters and buffers copied in place on every rank (unchanged alone)."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for t in model.state_dict().values():  # views of the parameters and buffers
            dist.broadcast(t, src=0)


def wrap_ddp(model: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` (unchanged when running alone)."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


class RankBatches:
    """This rank's slice of every global batch of a TrainBatches, with its loss weight.

    Yields (batch, weight, n_global): the {"input", "target"} (b, T) tensors of this rank,
    the factor for its mean loss (world x its share of the global batch's supervised positions;
    1.0 when alone) and the number of sequences in the global batch. A rank whose slice is empty
    (a last batch smaller than the world) trains on one row with weight 0, so it still joins
    DDP's gradient all-reduce.
    """

    def __init__(self, batches: TrainBatches, ctx: DistContext) -> None:
        self.batches = batches
        self.ctx = ctx

    def __len__(self) -> int:
        return len(self.batches)

    def _tensors(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        b = self.batches
        width = int(b.lengths[idx].max())
        return b.take(torch.from_numpy(idx).to(b.device), width)

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], float, int]]:
        world, supervised = self.ctx.world_size, self.batches.supervised
        for idx_dev, width, idx in self.batches.epoch():
            if world == 1:  # the device-resident path: no host work per step
                yield self.batches.take(idx_dev, width), 1.0, len(idx)
                continue
            mine = np.array_split(idx, world)[self.ctx.rank]
            if len(mine) == 0:
                yield self._tensors(idx[:1]), 0.0, len(idx)
                continue
            weight = world * float(supervised[mine].sum()) / float(supervised[idx].sum())
            yield self._tensors(mine), weight, len(idx)
