"""Is a model usable? Finite scores over the whole catalogue for a few histories.

Legend: B histories, T max_len, N items (+1 padding row, column 0, never checked).

A diverged model (NaN weights) or a broken compressed variant (fp16 overflow) scores NaN or
+-inf; every full-ranking metric is meaningless then, so training, compression and loading all
ask :func:`score_check` before a model is kept, written or served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from liverec.errors import NonFiniteError

PROBES = 16  # synthetic probe histories when no real ones are at hand


@dataclass(frozen=True)
class ScoreCheck:
    """What :func:`score_check` found: how many of the checked numbers were not finite."""

    histories: int
    scores: int  # B * N scores checked (padding column excluded)
    nonfinite_scores: int
    table_rows: int  # rows of the item table checked (0: the model has no table)
    nonfinite_table: int

    @property
    def ok(self) -> bool:
        return self.nonfinite_scores == 0 and self.nonfinite_table == 0

    def describe(self) -> str:
        """One phrase, e.g. ``non-finite scores (21 of 21 on 1 histories; item table ok)``."""
        table = (f"; item table {self.nonfinite_table} non-finite values"
                 if self.nonfinite_table else "; item table ok" if self.table_rows else "")
        return (f"non-finite scores ({self.nonfinite_scores:,} of {self.scores:,} on "
                f"{self.histories} histories{table})")

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def probe_histories(n_items: int, max_len: int, n: int = PROBES, seed: int = 0
                    ) -> list[np.ndarray]:
    """``n`` seeded histories of item indices in 1..n_items (lengths 1 to max_len), the
    stand-in for real histories when a run directory is loaded without its data."""
    rng = np.random.default_rng(seed)
    lengths = np.linspace(1, max(max_len, 1), num=n).round().astype(int)
    return [rng.integers(1, n_items + 1, size=int(t)).astype(np.int64) for t in lengths]


def _pad(histories: Sequence[np.ndarray], length: int) -> torch.Tensor:
    out = np.zeros((len(histories), length), dtype=np.int64)  # (B, T), left-padded
    for row, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-length:]
        if len(h):
            out[row, length - len(h):] = h
    return torch.from_numpy(out)


@torch.no_grad()
def score_check(model: torch.nn.Module, histories: Sequence[np.ndarray] | None = None,
                batch_size: int = 256) -> ScoreCheck:
    """Score ``histories`` (default: :func:`probe_histories`) against every item, and check the
    item table when the model has one (``item_table()``).

    Args:
        model: a sequence model with ``score(seqs) -> (B, N + 1)`` and ``cfg`` (eval mode).
        histories: item-index arrays, oldest first (any length; left-truncated to max_len).
        batch_size: histories scored per forward pass.

    Returns:
        A :class:`ScoreCheck` (``ok`` when every number was finite).
    """
    cfg = model.cfg
    if histories is None or len(histories) == 0:
        histories = probe_histories(cfg.n_items, cfg.max_len)
    bad = total = 0
    for start in range(0, len(histories), batch_size):
        scores = model.score(_pad(histories[start:start + batch_size], cfg.max_len))[:, 1:]
        bad += int((~torch.isfinite(scores)).sum())
        total += scores.numel()
    rows = bad_table = 0
    if hasattr(model, "item_table"):
        table = model.item_table()[1:]  # (N, D)
        rows, bad_table = int(table.shape[0]), int((~torch.isfinite(table)).sum())
    return ScoreCheck(len(histories), total, bad, rows, bad_table)


def require_finite_scores(model: torch.nn.Module, histories: Sequence[np.ndarray] | None = None,
                          what: str = "the model") -> ScoreCheck:
    """:func:`score_check`, raising NonFiniteError (one line) when anything is not finite."""
    check = score_check(model, histories)
    if not check.ok:
        raise NonFiniteError(f"{what} is broken: {check.describe()}")
    return check


def nonfinite_parameters(model: torch.nn.Module) -> list[str]:
    """Names of the floating-point parameters and buffers that hold a NaN or +-inf."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return [name for name, t in tensors
            if t.is_floating_point() and not bool(torch.isfinite(t).all())]
