"""Repeat-aware mode: a repeat-explore mixture on top of a sequence model's scores.

RepeatNet's decomposition (Ren et al., "RepeatNet: A Repeat Aware Neural Recommendation Machine
for Session-based Recommendation", AAAI 2019): the next item is either a repeat of a history
item (repeat mode) or a new one (explore mode), and

    P(i | h) = P(repeat | h) P_r(i | h) + P(explore | h) P_e(i | h),

with P_r over the history items only and P_e over the other items only. Here P_e is the
sequence model's softmax restricted to items not in the history (so the mixture ranks new items
exactly as the masked model does), and the repeat side is a small data-fitted model in the
spirit of ReCANet (Ariannezhad et al., SIGIR 2022: a user's repeat behaviour from each item's
frequency and recency in the history):

- P_r(i | h) = softmax over the history items of ``w . f_i``, f_i = [log(1 + count of i in h),
  -log(lag since the last play of i), log(1 + count of i in the last ``RECENT`` events), the
  sequence model's log-probability of i];
- P(repeat | h) = sigmoid(``v . g``), g = [1, the logit of the user's own repeat share so far,
  log(1 + |h|), the logit of the sequence model's total probability on history items,
  log(distinct items / |h|)].

The 9 weights are fitted by maximum likelihood (L-BFGS) on the validation cases (histories and
next items the sequence model was not trained on), after the sequence model is trained; they
are saved as ``repeat.json`` in the run directory. Features use the full history, not only the
model's ``max_len`` window.

Legend: B histories, N items (+1 padding column 0), E (history, item) cells, F = 4 item
features, G = 5 gate features.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from liverec.evaluate.protocol import pad_left

log = logging.getLogger(__name__)

FEATURES = ("log_count", "neg_log_lag", "log_recent_count", "base_log_prob")
GATE_FEATURES = ("bias", "own_repeat_logit", "log_length", "base_repeat_logit",
                 "log_distinct_share")
RECENT = 10  # the short-term window of log_recent_count
FILE = "repeat.json"
_EPS = 1e-6


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(_EPS, 1 - _EPS)
    return torch.log(p) - torch.log1p(-p)


def _device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s tensors are: its first parameter's or buffer's device (a compressed
    variant may hold buffers only, e.g. ONNX with an int8 item table), else CPU."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def segment_logsumexp(values: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    """logsumexp of ``values`` (E,) grouped by ``rows`` (E,) into (n,); -inf for empty rows."""
    top = torch.full((n,), float("-inf"), dtype=values.dtype, device=values.device)
    top = top.scatter_reduce(0, rows, values.detach(), "amax")
    safe = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # (n,)
    total = torch.zeros(n, dtype=values.dtype, device=values.device)
    total = total.index_add(0, rows, torch.exp(values - safe[rows]))
    return safe + torch.log(total)  # log(0) = -inf for empty rows


class Cells:
    """The (history, item) cells of B histories and their repeat features.

    Attributes:
        rows, cols: (E,) int64 history index and item index of each distinct history item.
        item_feats: (E, 3) float32 [log(1 + count), -log(lag), log(1 + recent count)].
        gate_feats: (B, 3) float32 [own repeat logit, log(1 + length), log distinct share].
        lengths: (B,) int64 history lengths.
    """

    def __init__(self, histories: Sequence[np.ndarray], recent: int = RECENT) -> None:
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        rows = np.repeat(np.arange(len(histories)), lengths)
        items = (np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])
                 if len(histories) else np.zeros(0, dtype=np.int64))
        pos = np.arange(len(items)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        key = rows * (int(items.max(initial=0)) + 1) + items
        uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        count = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
        last = np.zeros(len(uniq), dtype=np.int64)
        np.maximum.at(last, inverse, pos)
        lag = lengths[rows[first]] - last  # 1 for the most recent item
        recent_n = np.bincount(inverse, weights=pos >= lengths[rows] - recent,
                               minlength=len(uniq))
        self.rows = torch.from_numpy(rows[first])
        self.cols = torch.from_numpy(items[first])
        self.item_feats = torch.from_numpy(np.stack(
            [np.log1p(count), -np.log(lag), np.log1p(recent_n)], 1).astype(np.float32))
        distinct = np.bincount(rows[first], minlength=len(histories))
        repeats = lengths - distinct  # positions >= 1 whose item was seen before
        own = np.log((repeats + 1.0) / (np.maximum(lengths - 1, 0) - repeats + 1.0))
        share = np.log(np.maximum(distinct, 1) / np.maximum(lengths, 1))
        self.gate_feats = torch.from_numpy(
            np.stack([own, np.log1p(lengths), share], 1).astype(np.float32))
        self.lengths = torch.from_numpy(lengths)


class RepeatExplore:
    """The repeat-explore mixture over a sequence model (see the module docstring).

    sklearn-style: ``RepeatExplore(model).fit(histories, targets)`` returns self; the learned
    weights are ``item_weights_`` (F,) and ``gate_weights_`` (G,).

    Args:
        model: a sequence model with ``score(seqs)`` -> (B, N + 1) and ``cfg.max_len``.
        recent: the window (events) of the short-term count feature.
    """

    def __init__(self, model: torch.nn.Module, recent: int = RECENT) -> None:
        self.model, self.recent = model, recent
        self.item_weights_ = torch.zeros(len(FEATURES))
        self.gate_weights_ = torch.zeros(len(GATE_FEATURES))
        self.fit_info_: dict = {}

    @torch.no_grad()
    def _base(self, histories: Sequence[np.ndarray],
              logits: torch.Tensor | None = None) -> torch.Tensor:
        """The sequence model's log-probabilities over items 1..N (over the columns of
        ``logits`` (B, R) when given). -> (B, N + 1) or (B, R), col 0 -inf."""
        if logits is None:
            dev = _device(self.model)
            seqs = torch.from_numpy(pad_left(histories, self.model.cfg.max_len)).to(dev)
            logits = self.model.score(seqs)  # (B, N + 1)
        logits = logits.float().cpu().clone()  # the caller's tensor stays as it was
        logits[:, 0] = float("-inf")
        return torch.log_softmax(logits, dim=1)

    def _parts(self, histories: Sequence[np.ndarray], logits: torch.Tensor | None = None
               ) -> tuple[Cells, torch.Tensor, dict]:
        """Cells, their full feature matrix (E, F) and the base model's per-history terms."""
        cells = Cells(histories, self.recent)
        base = self._base(histories, logits)  # (B, N + 1) or (B, R)
        cell_lp = base[cells.rows, cells.cols]  # (E,)
        hist = base.clone()
        hist[cells.rows, cells.cols] = float("-inf")  # (B, N + 1) the unseen items only
        lse_unseen = torch.logsumexp(hist, dim=1)  # (B,) log P_base(explore)
        base_repeat = segment_logsumexp(cell_lp, cells.rows, len(histories))  # (B,)
        gate = torch.cat([torch.ones(len(histories), 1), cells.gate_feats[:, :1],
                          cells.gate_feats[:, 1:2], _logit(base_repeat.exp())[:, None],
                          cells.gate_feats[:, 2:3]], 1)  # (B, G)
        feats = torch.cat([cells.item_feats, cell_lp[:, None]], 1)  # (E, F)
        return cells, feats, {"base": base, "lse_unseen": lse_unseen, "gate": gate}

    @staticmethod
    def _log_gates(gate: torch.Tensor, v: torch.Tensor,
                   lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log P(repeat), log P(explore)), (B,) each; an empty history always explores."""
        z = gate @ v  # (B,)
        empty = lengths == 0
        log_r = torch.where(empty, torch.full_like(z, float("-inf")), -F.softplus(-z))
        log_e = torch.where(empty, torch.zeros_like(z), -F.softplus(z))
        return log_r, log_e

    def score_histories(self, histories: Sequence[np.ndarray],
                        logits: torch.Tensor | None = None) -> torch.Tensor:
        """log P(i | h) of every item for each history (full, untruncated). -> (B, N + 1);
        column 0 (padding) is -inf, every other entry finite when the model's scores are.

        ``logits``: (B, R) the sequence model's scores of every column, when the caller has
        them already (a service that also scores items added past N: R >= N + 1, every history
        item < R); the mixture is then over those R columns. -> (B, R). Default: ``score`` of
        the model over each history's last ``max_len`` items.
        """
        cells, feats, parts = self._parts(histories, logits)
        n = len(histories)
        log_r, log_e = self._log_gates(parts["gate"], self.gate_weights_, cells.lengths)
        out = parts["base"] - parts["lse_unseen"][:, None] + log_e[:, None]  # (B, N + 1)
        r = feats @ self.item_weights_  # (E,)
        lse_r = segment_logsumexp(r, cells.rows, n)  # (B,)
        out[cells.rows, cells.cols] = log_r[cells.rows] + r - lse_r[cells.rows]
        out[:, 0] = float("-inf")
        return out

    def __call__(self, histories: list[np.ndarray]) -> torch.Tensor:
        """A protocol ScoreFn: histories -> (B, N + 1) scores."""
        return self.score_histories(histories)

    def fit(self, histories: Sequence[np.ndarray], targets: np.ndarray,
            batch_size: int = 1024, l2: float = 1e-3) -> RepeatExplore:
        """Fit the 9 weights by maximum likelihood of ``targets`` given ``histories``.

        Args:
            histories: C item-index arrays (the validation histories).
            targets: (C,) the items that came next.
            batch_size: histories scored by the sequence model at a time.
            l2: ridge penalty on the weights (keeps them finite when one mode never occurs).

        Returns:
            self, with ``fit_info_`` = {"cases", "repeat_cases", "nll_start", "nll", ...}.
        """
        targets = np.asarray(targets, dtype=np.int64)
        if len(targets) == 0:
            raise ValueError("RepeatExplore.fit needs at least one (history, target) case")
        data = [self._fit_batch(histories[a:a + batch_size], targets[a:a + batch_size])
                for a in range(0, len(targets), batch_size)]
        cat = {k: torch.cat([d[k] for d in data]) for k in ("feats", "gate", "lengths",
                                                            "explore_lp", "is_repeat")}
        case_off = np.cumsum([0] + [len(d["gate"]) for d in data[:-1]])
        cell_off = np.cumsum([0] + [len(d["rows"]) for d in data[:-1]])
        cat["rows"] = torch.cat([d["rows"] + int(o) for d, o in zip(data, case_off)])
        cat["target_cell"] = torch.cat([torch.where(d["is_repeat"], d["target_cell"] + int(o), 0)
                                        for d, o in zip(data, cell_off)])  # 0: unused
        w = torch.zeros(len(FEATURES), requires_grad=True)
        v = torch.zeros(len(GATE_FEATURES), requires_grad=True)
        opt = torch.optim.LBFGS([w, v], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")
        n = len(targets)

        def nll() -> torch.Tensor:
            log_r, log_e = self._log_gates(cat["gate"], v, cat["lengths"])
            r = cat["feats"] @ w  # (E,)
            lse_r = segment_logsumexp(r, cat["rows"], n)
            rep = log_r + r[cat["target_cell"]] - lse_r  # (C,) repeat targets' log-prob
            lp = torch.where(cat["is_repeat"], rep, log_e + cat["explore_lp"])
            return -lp.mean() + l2 * (w.square().sum() + v.square().sum())

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = nll()
            loss.backward()
            return loss

        with torch.no_grad():
            start = float(nll())
        opt.step(closure)
        with torch.no_grad():
            end = float(nll())
        if not (math.isfinite(end) and torch.isfinite(w).all() and torch.isfinite(v).all()):
            raise ValueError(f"RepeatExplore.fit did not converge (NLL {end})")
        self.item_weights_, self.gate_weights_ = w.detach(), v.detach()
        self.fit_info_ = {"cases": n, "repeat_cases": int(cat["is_repeat"].sum()),
                          "nll_start": start, "nll": end, "l2": l2}
        log.info("repeat-explore mixture fitted on %d cases (%d repeats): NLL %.4f -> %.4f",
                 n, self.fit_info_["repeat_cases"], start, end)
        return self

    def _fit_batch(self, histories: Sequence[np.ndarray], targets: np.ndarray) -> dict:
        """One batch's fitting data: features and, per case, the target's explore log-prob or
        its cell (-1 for an explore target)."""
        cells, feats, parts = self._parts(histories)
        tgt = torch.from_numpy(targets)
        explore_lp = parts["base"].gather(1, tgt[:, None])[:, 0] - parts["lse_unseen"]  # (C,)
        match = (cells.cols == tgt[cells.rows]).nonzero()[:, 0]  # the target's cell, if any
        target_cell = torch.full((len(targets),), -1, dtype=torch.long)
        target_cell[cells.rows[match]] = match
        is_repeat = target_cell >= 0
        explore_lp = torch.where(is_repeat, torch.zeros_like(explore_lp), explore_lp)
        return {"feats": feats, "gate": parts["gate"], "lengths": cells.lengths,
                "rows": cells.rows, "explore_lp": explore_lp, "is_repeat": is_repeat,
                "target_cell": target_cell}

    def to_dict(self) -> dict:
        return {"method": "repeat-explore mixture (RepeatNet decomposition, fitted features)",
                "recent": self.recent,
                "item_weights": dict(zip(FEATURES, self.item_weights_.tolist())),
                "gate_weights": dict(zip(GATE_FEATURES, self.gate_weights_.tolist())),
                "fit": self.fit_info_}

    def save(self, run_dir: Path) -> Path:
        """Write ``repeat.json`` into ``run_dir``."""
        path = Path(run_dir) / FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict, model: torch.nn.Module) -> RepeatExplore:
        """Rebuild from :meth:`to_dict` output (raises ValueError on a malformed record)."""
        try:
            head = cls(model, int(data["recent"]))
            w = [float(data["item_weights"][k]) for k in FEATURES]
            v = [float(data["gate_weights"][k]) for k in GATE_FEATURES]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a repeat-explore record: {exc!r}") from None
        if not all(math.isfinite(x) for x in w + v):
            raise ValueError("repeat-explore weights must be finite")
        head.item_weights_, head.gate_weights_ = torch.tensor(w), torch.tensor(v)
        head.fit_info_ = dict(data.get("fit") or {})
        return head


def carry_repeat(src_dir: Path, out_dir: Path) -> bool:
    """Copy ``src_dir``'s ``repeat.json`` into ``out_dir`` as it is, or, when the source has
    none, remove a stale one an earlier build left in ``out_dir`` (a run derived from a masked
    run must never load a mixture). Returns whether a mixture was carried."""
    src, out = Path(src_dir) / FILE, Path(out_dir) / FILE
    if src.is_file():
        shutil.copy2(src, out)
        return True
    out.unlink(missing_ok=True)
    return False


def load_repeat(run_dir: Path, model: torch.nn.Module) -> RepeatExplore | None:
    """The run's repeat-explore mixture (``repeat.json``), or None when it has none.

    Raises:
        ArtifactError: ``repeat.json`` exists but cannot be read (an I/O error, not JSON, not
            a repeat-explore record, or non-finite weights).
    """
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    from liverec.errors import ArtifactError

    try:
        return RepeatExplore.from_dict(json.loads(path.read_text()), model)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: {exc}") from None


def fit_repeat_for_run(run_dir: Path, model: torch.nn.Module, prepared) -> RepeatExplore:
    """After training: load the run's best weights into ``model``, fit the mixture on the
    validation cases and write ``repeat.json``. ``prepared``: the training data."""
    from safetensors.torch import load_file

    state = load_file(str(Path(run_dir) / "model.safetensors"))
    dev = next(model.parameters()).device
    model.load_state_dict({k: v.to(dev) for k, v in state.items()})
    model.eval()
    _, histories, targets = prepared.eval_cases("valid")
    head = RepeatExplore(model).fit(histories, targets)
    head.save(run_dir)
    return head
