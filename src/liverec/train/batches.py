"""Training batches: every position of every training sequence is a next-item target.

Each user's training sequence s (its last max_len + 1 items) becomes input s[:-1] and target
s[1:], left-padded into one (U, max_len) matrix once, and the two matrices are moved to the
training device once. Each epoch shuffles users, groups users of similar length into the same
batch (within chunks, so order stays random) and trims the padding columns a batch does not
need: the transformer does no work on padding it can avoid.

Per step there is no host work beyond slicing: the epoch's order (all batches' user indices,
one (U,) int64 tensor) is moved to the device once per epoch, and each batch is a gather of
its rows from the device-resident matrices (``take``), trimmed to the batch's width (a host
integer computed with the order).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from liverec.config import RunConfig
from liverec.evaluate.protocol import pad_left

log = logging.getLogger(__name__)
MIN_BATCH = 16  # the data-adaptive rule never goes below this many sequences per step


def resolve_batch_and_patience(cfg: RunConfig, n_sequences: int) -> tuple[RunConfig, dict]:
    """``cfg`` with ``train.batch_size`` and ``train.patience`` fitted to the data, and the
    record of the choice.

    With ``train.min_steps_per_epoch`` = m > 0 the batch size is halved, not below
    :data:`MIN_BATCH`, until an epoch of ``n_sequences`` training sequences has at least m
    steps (one rule for every dataset: with m = 64, Beauty's 22,363 users keep 128, LastFM's
    1,090 get 16). With ``train.min_patience_steps`` = p > 0 the patience (in evaluations,
    one per ``eval_every`` epochs) is raised until it covers at least p steps (p = 1,400:
    Beauty keeps 8 epochs of 175 steps, LastFM gets 21 of 69). Zero keeps the configured
    value. Logged at INFO.

    Returns:
        (config with the values used, {"batch_size", "configured", "steps_per_epoch",
        "min_steps_per_epoch", "sequences", "patience", "configured_patience",
        "min_patience_steps"}).
    """
    tc = cfg.train
    size, m = tc.batch_size, tc.min_steps_per_epoch
    while m and size > MIN_BATCH and -(-n_sequences // size) < m:
        size = max(MIN_BATCH, size // 2)
    steps = -(-n_sequences // size)
    p = tc.min_patience_steps
    patience = max(tc.patience, -(-p // (steps * tc.eval_every))) if p else tc.patience
    info = {"batch_size": size, "configured": tc.batch_size, "min_steps_per_epoch": m,
            "sequences": n_sequences, "steps_per_epoch": steps, "patience": patience,
            "configured_patience": tc.patience, "min_patience_steps": p}
    if m or p:
        log.info("batch size %d (configured %d; %d training sequences -> %d steps per epoch, "
                 "at least %d asked); patience %d evaluations (configured %d, at least %d "
                 "steps asked)", size, tc.batch_size, n_sequences, steps, m, patience,
                 tc.patience, p)
    return dataclasses.replace(cfg, train=dataclasses.replace(tc, batch_size=size,
                                                              patience=patience)), info


def training_windows(seqs: Sequence[np.ndarray], max_len: int,
                     mode: str = "last") -> list[np.ndarray]:
    """The training sequences (each at most max_len + 1 events, at least 2) cut from users'
    training histories.

    "last": each history's last max_len + 1 events (SASRec; older events never train).
    "all": also the windows before it, max_len apart, so consecutive windows share one event
    (the earlier one's last target is the later one's first input) and every event after a
    history's first is a target exactly once. On LastFM (median 19 events, 10% above 123) the
    last window alone leaves 47% of the training events out.
    "prefixes": one sequence per training event after a history's first: the event with the
    (at most max_len) events before it, trained at its last position only (BSARec / FMLP-Rec's
    training data; the only way to train a mixer that sees later positions, model.mixer
    "fourier"). Every event is a target exactly once, each from its own window.
    """
    if mode not in ("last", "all", "prefixes"):
        raise ValueError(f"unknown windows mode {mode!r}; use 'last', 'all' or 'prefixes'")
    out = []
    for s in seqs:
        if mode == "prefixes":
            out += [s[max(0, end - (max_len + 1)) : end] for end in range(2, len(s) + 1)]
            continue
        end = len(s)
        while end >= 2:
            out.append(s[max(0, end - (max_len + 1)) : end])
            if mode == "last":
                break
            end -= max_len
    return out


class TrainBatches:
    """Iterable of {"input", "target"} (B, T) int64 tensors on ``device``, reshuffled every
    epoch (the order depends only on ``seed`` and the epoch, not on the device).

    ``windows``: which part of each history trains (:func:`training_windows`); with
    "prefixes" only each sequence's last position is a target.
    """

    def __init__(self, seqs: Sequence[np.ndarray], max_len: int, batch_size: int,
                 seed: int = 0, bucket_chunks: int = 50,
                 device: torch.device | str = "cpu", windows: str = "last") -> None:
        mode, windows = windows, training_windows(seqs, max_len, windows)
        if not windows:
            raise ValueError("no training sequence has two or more events")
        self.inputs = pad_left([w[:-1] for w in windows], max_len)  # (U, max_len) host
        self.targets = pad_left([w[1:] for w in windows], max_len)  # (U, max_len) host
        self.lengths = np.array([len(w) - 1 for w in windows])  # input length per row
        self.supervised = self.lengths  # supervised positions per row
        if mode == "prefixes":
            self.targets[:, :-1] = 0  # the last position only
            self.supervised = np.ones_like(self.lengths)
        self.batch_size = batch_size
        self.bucket_chunks = bucket_chunks
        self.rng = np.random.default_rng(seed)
        self.device = torch.device(device)
        self._inputs = torch.from_numpy(self.inputs).to(self.device)  # (U, max_len)
        self._targets = torch.from_numpy(self.targets).to(self.device)  # (U, max_len)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    @property
    def n_targets(self) -> int:
        return int(self.supervised.sum())

    def _batch_order(self) -> list[np.ndarray]:
        order = self.rng.permutation(len(self.lengths))
        chunk = self.batch_size * self.bucket_chunks
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        return [batches[i] for i in self.rng.permutation(len(batches))]

    def take(self, idx: torch.Tensor, width: int) -> dict[str, torch.Tensor]:
        """Rows ``idx`` ((B,) int64 on the device) trimmed to their last ``width`` columns."""
        return {"input": self._inputs[idx, -width:], "target": self._targets[idx, -width:]}

    def epoch(self) -> Iterator[tuple[torch.Tensor, int, np.ndarray]]:
        """One epoch's batches as (device index tensor, width, host indices): one transfer."""
        parts = self._batch_order()
        if not parts:
            return
        flat = torch.from_numpy(np.concatenate(parts)).to(self.device)  # (U,)
        start = 0
        for idx in parts:
            yield flat[start : start + len(idx)], int(self.lengths[idx].max()), idx
            start += len(idx)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for idx, width, _ in self.epoch():
            yield self.take(idx, width)
