"""Training batches: every position of every training sequence is a next-item target.

Each user's training sequence s (its last max_len + 1 items) becomes input s[:-1] and target
s[1:], left-padded into one (U, max_len) matrix once. Each epoch shuffles users, groups users of
similar length into the same batch (within chunks, so order stays random) and trims the padding
columns a batch does not need: the transformer does no work on padding it can avoid.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from liverec.evaluate.protocol import pad_left


class TrainBatches:
    """Iterable of {"input", "target"} (B, T) tensors, reshuffled every epoch."""

    def __init__(self, seqs: Sequence[np.ndarray], max_len: int, batch_size: int,
                 seed: int = 0, bucket_chunks: int = 50) -> None:
        windows = [s[-(max_len + 1) :] for s in seqs if len(s) >= 2]
        if not windows:
            raise ValueError("no training sequence has two or more events")
        self.inputs = pad_left([w[:-1] for w in windows], max_len)  # (U, max_len)
        self.targets = pad_left([w[1:] for w in windows], max_len)  # (U, max_len)
        self.lengths = np.array([len(w) - 1 for w in windows])
        self.batch_size = batch_size
        self.bucket_chunks = bucket_chunks
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    @property
    def n_targets(self) -> int:
        return int(self.lengths.sum())

    def _batch_order(self) -> list[np.ndarray]:
        order = self.rng.permutation(len(self.lengths))
        chunk = self.batch_size * self.bucket_chunks
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        return [batches[i] for i in self.rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for idx in self._batch_order():
            width = int(self.lengths[idx].max())
            yield {
                "input": torch.from_numpy(self.inputs[idx, -width:]),
                "target": torch.from_numpy(self.targets[idx, -width:]),
            }
