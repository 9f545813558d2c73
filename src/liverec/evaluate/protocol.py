"""Full-ranking leave-one-out evaluation: every item is a candidate, seen items are masked.

The rules (also written into every metrics.json as ``PROTOCOL`` and into report.md) are those
of the masked protocol, the one published results use. The repeat-aware protocol
(``REPEAT_PROTOCOL``, ``protocol="repeat"``; chosen by ``eval.protocol``) differs in one rule:
nothing but padding is masked, so an item already in the history is a candidate like any other
and a repeat target can be hit; its metrics are reported overall and, apart, for repeat targets
(keys ``repeat/...``) and explore targets (``explore/...``).

- Candidates of a case are the catalogue items not in the user's history (padding excluded).
- rank (0-based) of the target = the number of candidates other than the target whose score is
  finite and >= the target's score. Ties are pessimistic: the target is placed after every
  candidate with an equal score (a random or averaged tie-break would give a constant scorer
  about chance level; pessimistic gives it 0 below the candidate count).
- Non-finite scores (NaN, +inf, -inf) rank last: such an item never outranks a finite target and
  is never in a top-K list; a target whose own score is non-finite is a miss at every K.
- A target that is already in the history is masked like every other history item, so it cannot
  be recommended: it is a miss at every K (its rank is ``MISS``), and the number and share of
  such repeat targets are reported.
- K larger than the number of candidates is allowed: the target is then a hit whenever it is
  finite and unmasked; top-K lists hold only the recommendable items (finite, unmasked), so they
  can be shorter than K, and coverage@K is always a number in [0, 1].

``reference.py`` evaluates the same rules with plain Python loops; tests compare the two.

Legend: B batch of users, C cases, T history length, N items (+1 padding column 0).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from liverec.data.prepare import Prepared
from liverec.evaluate.metrics import MISS, all_metrics, coverage

log = logging.getLogger(__name__)

PROTOCOL = {
    "split": "leave-one-out per user in time order (last = test, second last = validation)",
    "ranking": "full ranking over every catalogue item, no sampled negatives",
    "masking": "items already in the user's history are masked (never ranked, never recommended)",
    "rank": "0-based rank = number of unmasked items other than the target with a finite score "
            ">= the target's score",
    "ties": "pessimistic: the target is ranked after every item with an equal score "
            "(a constant scorer gets HR@K = NDCG@K = MRR@K = 0 for every K below the number "
            "of candidates)",
    "non_finite": "NaN and +-inf scores rank last: such items never outrank the target and are "
                  "never in a top-K list; a target with a non-finite score is a miss at every K",
    "repeat_targets": "a target already in the history is masked, so it is a miss at every K; "
                      "their count and share are reported (repeat_targets, repeat_share)",
    "k_above_catalogue": "K may exceed the number of candidates: a finite unmasked target is "
                         "then always a hit, and top-K lists hold every recommendable item",
    "coverage": "coverage@K = share of catalogue items in at least one user's top-K list of "
                "recommendable (unmasked, finite-score) items, ties broken by lower item index; "
                "always in [0, 1]",
}
REPEAT_PROTOCOL = {
    "name": "repeat-aware (history not masked)",
    **PROTOCOL,
    "masking": "history NOT masked: items already in the user's history are candidates and "
               "may be recommended (only padding is excluded)",
    "rank": "0-based rank = number of catalogue items other than the target with a finite "
            "score >= the target's score",
    "repeat_targets": "a target already in the history is ranked like any other target; metrics "
                      "are reported overall and apart for repeat targets (repeat/...) and "
                      "explore targets, new to the user (explore/...), with their counts",
    "k_above_catalogue": "K may exceed the catalogue: a finite target is then always a hit",
}
PROTOCOLS = {"masked": {"name": "masked (history items masked)", **PROTOCOL},
             "repeat": REPEAT_PROTOCOL}

ScoreFn = Callable[[list[np.ndarray]], torch.Tensor]  # histories -> (B, N + 1) scores


@dataclass(frozen=True)
class Ranked:
    """The protocol's outcome for C cases.

    Attributes:
        ranks: (C,) float64 0-based ranks; ``MISS`` (inf) for masked or non-finite targets.
        tops: (C, k) item indices of each case's top-k list, best first; 0 fills the slots
            beyond the number of recommendable items.
        repeats: (C,) bool, the target is in the case's history (masked, so a miss).
        non_finite: (C,) bool, the target's own score is non-finite (and it is not a repeat).
    """

    ranks: np.ndarray
    tops: np.ndarray
    repeats: np.ndarray
    non_finite: np.ndarray


def pad_left(seqs: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Left-pad (and left-truncate) index sequences to ``length`` columns. -> (B, length)."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for row, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[row, length - len(s) :] = s
    return out


def _history_cells(histories: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every history item. -> two (E,) int64 arrays."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate(histories) if len(histories) else np.zeros(0, dtype=np.int64)
    return rows, cols.astype(np.int64)


def check_protocol(protocol: str) -> bool:
    """Whether ``protocol`` masks the history ("masked": True, "repeat": False).

    Raises:
        ValueError: any other name (``"auto"`` must be resolved first: data/repeats.py).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; known: "
                         f"{', '.join(PROTOCOLS)} (resolve 'auto' with "
                         "liverec.data.repeats.resolve_protocol)")
    return protocol == "masked"


def mask_seen(scores: torch.Tensor, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """Set padding and every history item to -inf, in place. scores: (B, N + 1)."""
    scores[:, 0] = float("-inf")
    rows, cols = _history_cells(histories)
    scores[torch.from_numpy(rows), torch.from_numpy(cols)] = float("-inf")
    return scores


def repeat_targets(histories: Sequence[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """Whether each target is already in its history. -> (B,) bool."""
    rows, cols = _history_cells(histories)
    out = np.zeros(len(targets), dtype=bool)
    out[rows[cols == np.asarray(targets, dtype=np.int64)[rows]]] = True
    return out


def count_ahead(scores: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
    """The protocol's rank rule: how many entries of each row rank ahead of a target score.

    An entry ranks ahead when its score is finite and >= the target score (ties pessimistic,
    non-finite entries last); a non-finite target score gives ``MISS``. Exclude the target's own
    column (mask it to -inf) or subtract 1 for it.

    Args:
        scores: (B, M) scores.
        target_scores: (B,) or (B, 1) scores to rank.

    Returns:
        (B,) float64 counts, ``MISS`` (inf) where the target score is non-finite.
    """
    t = target_scores.reshape(-1, 1).to(scores.dtype)  # (B, 1)
    ahead = (scores >= t).sum(1, dtype=torch.int32)  # (B,)
    top = scores.max()  # NaN when any entry is NaN
    if torch.isposinf(top) or torch.isnan(top):
        # for a finite t, NaN and -inf are never >= t; only +inf must be taken out again
        ahead -= torch.isposinf(scores).sum(1, dtype=torch.int32)
    ahead = ahead.double()
    return torch.where(torch.isfinite(t[:, 0]), ahead, torch.full_like(ahead, MISS))


def target_ranks(masked: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based ranks of each target among its row's unmasked items.

    Args:
        masked: (B, N + 1) scores with padding and history items already set to -inf
            (``mask_seen``), so a masked (repeat) target is non-finite and a miss.
        targets: (B,) int64 item indices.

    Returns:
        (B,) float64 ranks, ``MISS`` (inf) for a masked or non-finite target.
    """
    t = masked.gather(1, targets[:, None].long())  # (B, 1)
    return count_ahead(masked, t) - 1.0  # the target itself is counted once (t >= t)


def _finite_or_neginf(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` with NaN and +inf set to -inf (a copy only when there are any)."""
    if torch.isfinite(scores.max()):  # max is NaN/+inf when any entry is; one cheap pass
        return scores
    inf = float("-inf")
    return scores.nan_to_num(nan=inf, posinf=inf, neginf=inf)


def _within_row(rows: torch.Tensor, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For row-major nonzero rows: (position of each entry within its row, count per row)."""
    counts = torch.bincount(rows, minlength=n_rows)  # (R,)
    return torch.arange(len(rows), device=rows.device) - (counts.cumsum(0) - counts)[rows], counts


def _cut_ties(clean: torch.Tensor, thr: torch.Tensor, k: int) -> torch.Tensor:
    """Selection mask of exactly the k best finite items, ties at ``thr`` by lower index."""
    sel = clean > thr  # (R, M)
    _, above = _within_row(sel.nonzero(as_tuple=True)[0], len(sel))
    tr, tc = (clean == thr).nonzero(as_tuple=True)  # row-major: lower index first
    pos, _ = _within_row(tr, len(sel))
    keep = pos < (k - above)[tr]
    sel[tr[keep], tc[keep]] = True
    return sel


def top_items(masked: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k recommendable items per row, best first, ties broken by lower item index.

    Args:
        masked: (B, N + 1) scores, padding and history already -inf.
        k: list length; may exceed N.

    Returns:
        (B, k) int64 item indices; 0 fills the slots beyond the row's recommendable
        (finite-score) items.
    """
    n_rows, width = masked.shape
    kk = min(k, width)
    clean = _finite_or_neginf(masked)  # (B, N + 1)
    thr = clean.topk(kk, dim=1).values[:, -1:]  # (B, 1) the k-th best score
    thr = thr.clamp(min=torch.finfo(clean.dtype).min)  # -inf (too few finite): every finite
    sel = clean >= thr  # (B, N + 1)
    rows = sel.nonzero(as_tuple=True)[0]
    over = torch.bincount(rows, minlength=n_rows) > kk  # (B,) ties at thr to cut
    if over.any():
        sel[over] = _cut_ties(clean[over], thr[over], kk)
    rows, cols = sel.nonzero(as_tuple=True)  # row-major, so index order within a row
    pos, counts = _within_row(rows, n_rows)  # counts (B,) <= kk
    out = torch.zeros(n_rows, kk, dtype=torch.long, device=masked.device)
    out[rows, pos] = cols
    filled = torch.arange(kk, device=masked.device)[None, :] < counts[:, None]  # (B, kk)
    vals = torch.where(filled, clean.gather(1, out), torch.full_like(thr, float("-inf")))
    out = out.gather(1, torch.sort(vals, dim=1, descending=True, stable=True).indices)
    if kk < k:
        out = torch.cat([out, out.new_zeros(n_rows, k - kk)], 1)
    return out


def rank_targets(
    score_fn: ScoreFn,
    histories: Sequence[np.ndarray],
    targets: np.ndarray,
    batch_size: int = 1024,
    top_k: int = 20,
    mask_history: bool = True,
) -> Ranked:
    """Score, mask and rank each case under the protocol's rules (see the module docstring).

    Args:
        score_fn: histories -> (B, N + 1) scores.
        histories: C index arrays (what the scorer sees and, by default, what is masked).
        targets: (C,) held-out item indices.
        batch_size: cases scored per call of ``score_fn``.
        top_k: length of the returned top lists (may exceed N).
        mask_history: mask history items (the masked protocol); False = repeat-aware, only
            padding is masked and a repeat target is ranked like any other.

    Returns:
        Ranked: ranks (C,), tops (C, top_k), repeats (C,), non_finite (C,).
    """
    targets = np.asarray(targets, dtype=np.int64)
    ranks = np.empty(len(targets), dtype=np.float64)
    tops = np.zeros((len(targets), top_k), dtype=np.int64)
    non_finite = np.zeros(len(targets), dtype=bool)
    for start in range(0, len(targets), batch_size):
        hist = histories[start : start + batch_size]
        tgt = torch.from_numpy(targets[start : start + batch_size])
        raw = score_fn(list(hist)).float()  # (B, N + 1)
        non_finite[start : start + len(tgt)] = (~torch.isfinite(raw.gather(1, tgt[:, None])))[
            :, 0].numpy()
        if mask_history:
            scores = mask_seen(raw, hist)
        else:
            scores = raw
            scores[:, 0] = float("-inf")  # padding is never a candidate
        ranks[start : start + len(tgt)] = target_ranks(scores, tgt).numpy()
        tops[start : start + len(tgt)] = top_items(scores, top_k).numpy()
    repeats = repeat_targets(histories, targets)
    return Ranked(ranks, tops, repeats, non_finite & ~repeats if mask_history else non_finite)


def summarize(ranked: Ranked, n_items: int, ks: tuple[int, ...],
              by_kind: bool = False) -> dict[str, float]:
    """Metrics of ranked cases: HR/NDCG/MRR at each K, coverage@max(K), case counts; with
    ``by_kind`` (the repeat-aware protocol) also HR/NDCG/MRR of the repeat targets alone
    (``repeat/ndcg@10``, ...) and of the explore targets alone (``explore/...``) and their
    case counts (``repeat/cases``, ``explore/cases``)."""
    out = all_metrics(ranked.ranks, ks)
    if by_kind:
        for kind, rows in (("repeat", ranked.repeats), ("explore", ~ranked.repeats)):
            part = all_metrics(ranked.ranks[rows], ks)
            out.update({f"{kind}/{key}": v for key, v in part.items()})
            out[f"{kind}/cases"] = float(rows.sum())
    out[f"coverage@{max(ks)}"] = coverage(ranked.tops, n_items)
    n = len(ranked.ranks)
    out["cases"] = float(n)
    out["repeat_targets"] = float(ranked.repeats.sum())
    out["repeat_share"] = float(ranked.repeats.mean()) if n else 0.0
    out["non_finite_targets"] = float(ranked.non_finite.sum())
    if ranked.non_finite.any():
        log.warning("%d of %d targets have a non-finite score (counted as misses)",
                    int(ranked.non_finite.sum()), n)
    return out


def evaluate_cases(
    score_fn: ScoreFn,
    histories: Sequence[np.ndarray],
    targets: np.ndarray,
    n_items: int,
    ks: tuple[int, ...] = (5, 10, 20),
    batch_size: int = 1024,
    protocol: str = "masked",
) -> dict[str, float]:
    """Metrics of one scorer on explicit cases (histories, targets) over ``n_items`` items,
    under ``protocol`` ("masked" or "repeat": ``PROTOCOLS``)."""
    if not ks or min(ks) < 1:
        raise ValueError(f"every K must be a positive integer, got {list(ks)}")
    masked = check_protocol(protocol)
    ranked = rank_targets(score_fn, histories, targets, batch_size, max(ks), masked)
    return summarize(ranked, n_items, ks, by_kind=not masked)


def evaluate_scores(
    score_fn: ScoreFn,
    prepared: Prepared,
    stage: str = "test",
    ks: tuple[int, ...] = (5, 10, 20),
    batch_size: int = 1024,
    protocol: str = "masked",
) -> dict[str, float]:
    """Metrics for one scorer on one stage: HR/NDCG/MRR at each K, coverage@max(K), the number
    of cases, of repeat targets (and their share) and of targets with a non-finite score
    (and, under the repeat-aware protocol, the metrics of repeat and explore targets apart)."""
    _, histories, targets = prepared.eval_cases(stage)
    return evaluate_cases(score_fn, histories, targets, prepared.vocab.n_items, ks, batch_size,
                          protocol)


def model_score_fn(model: torch.nn.Module, max_len: int) -> ScoreFn:
    """Wrap a sequence model's ``score`` as a ScoreFn (eval mode, no grad)."""

    def score(histories: list[np.ndarray]) -> torch.Tensor:
        seqs = torch.from_numpy(pad_left(histories, max_len))
        with torch.no_grad():
            return model.score(seqs)

    return score


def evaluate_model(
    model: torch.nn.Module,
    prepared: Prepared,
    stage: str = "test",
    ks: tuple[int, ...] = (5, 10, 20),
    batch_size: int = 1024,
    protocol: str = "masked",
) -> dict[str, float]:
    """Full-ranking metrics of a sequence model (switched to eval mode and back)."""
    was_training = model.training
    model.eval()
    try:
        fn = model_score_fn(model, model.cfg.max_len)
        return evaluate_scores(fn, prepared, stage, ks, batch_size, protocol)
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class DeviceCases:
    """One stage's cases prepared once for ``evaluate_on_device`` (the fast path).

    The cases are stored sorted by history length (stable), so that a batch of them needs only
    its longest history's columns: the model does no work on padding it can avoid (positions
    count from the right edge of the max_len window, so trimming left padding changes nothing
    but the amount of work). Metrics do not depend on the order; ``rank_on_device`` returns
    its per-case arrays in the original order.

    Attributes:
        seqs: (C, T) int64 left-padded model inputs on the device, in sorted order.
        targets: (C,) int64 on the device, sorted order.
        cell_rows, cell_cols: (E,) int64 on the device, every (case, item) history cell (the
            full history, as ``mask_seen`` masks it), rows in sorted order, case-major.
        offsets: (C + 1,) host int64, sorted case c's cells are ``cell_*[offsets[c]:offsets[c+1]]``.
        widths: (C,) host int64, columns sorted case c needs (its history length, 1 to T).
        order: (C,) host int64, sorted position -> original case index.
        repeats: (C,) host bool, the target is in the history (``repeat_targets``), original
            order.
        n_items: catalogue size N.
    """

    seqs: torch.Tensor
    targets: torch.Tensor
    cell_rows: torch.Tensor
    cell_cols: torch.Tensor
    offsets: np.ndarray
    widths: np.ndarray
    order: np.ndarray
    repeats: np.ndarray
    n_items: int

    @classmethod
    def build(cls, prepared: Prepared, stage: str, max_len: int,
              device: torch.device | str = "cpu") -> DeviceCases:
        _, histories, targets = prepared.eval_cases(stage)
        return cls.from_cases(histories, targets, prepared.vocab.n_items, max_len, device)

    @classmethod
    def from_cases(cls, histories: Sequence[np.ndarray], targets: np.ndarray, n_items: int,
                   max_len: int, device: torch.device | str = "cpu") -> DeviceCases:
        device = torch.device(device)
        targets = np.asarray(targets, dtype=np.int64)
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        hist = [histories[i] for i in order]
        rows, cols = _history_cells(hist)
        offsets = np.zeros(len(hist) + 1, dtype=np.int64)
        np.cumsum(lengths[order], out=offsets[1:])
        return cls(torch.from_numpy(pad_left(hist, max_len)).to(device),
                   torch.from_numpy(targets[order]).to(device), torch.from_numpy(rows).to(device),
                   torch.from_numpy(cols).to(device), offsets,
                   np.clip(lengths[order], 1, max_len), order,
                   repeat_targets(histories, targets), n_items)


def rank_on_device(model: torch.nn.Module, cases: DeviceCases, top_k: int = 20,
                   batch_size: int = 1024) -> Ranked:
    """``rank_targets`` of a sequence model with everything on the cases' device.

    Same rules and the same helpers (``target_ranks``, ``top_items``) as the reference path
    ``rank_targets(model_score_fn(...))``; scores, masks, ranks and top lists stay on the
    device and come back in one transfer at the end. ``model.score`` must accept (B, T)
    sequences on that device (T = the batch's longest history, at most max_len).

    Returns:
        Ranked, its arrays in the original case order.
    """
    n_cases = len(cases.repeats)
    dev = cases.seqs.device
    ranks = torch.empty(n_cases, dtype=torch.float64, device=dev)
    tops = torch.zeros(n_cases, top_k, dtype=torch.long, device=dev)
    non_finite = torch.zeros(n_cases, dtype=torch.bool, device=dev)
    with torch.no_grad():
        for a in range(0, n_cases, batch_size):
            b = min(a + batch_size, n_cases)
            tgt = cases.targets[a:b]
            width = int(cases.widths[b - 1])  # sorted: the batch's longest history
            raw = model.score(cases.seqs[a:b, -width:]).float()  # (B, N + 1)
            non_finite[a:b] = ~torch.isfinite(raw.gather(1, tgt[:, None]))[:, 0]
            raw[:, 0] = float("-inf")  # padding, then every history cell (mask_seen)
            lo, hi = int(cases.offsets[a]), int(cases.offsets[b])
            raw[cases.cell_rows[lo:hi] - a, cases.cell_cols[lo:hi]] = float("-inf")
            ranks[a:b] = target_ranks(raw, tgt)
            tops[a:b] = top_items(raw, top_k)
    back = np.empty_like(cases.order)
    back[cases.order] = np.arange(len(cases.order))  # original case -> sorted position
    repeats = cases.repeats
    return Ranked(ranks.cpu().numpy()[back], tops.cpu().numpy()[back], repeats,
                  non_finite.cpu().numpy()[back] & ~repeats)


def evaluate_on_device(model: torch.nn.Module, cases: DeviceCases,
                       ks: tuple[int, ...] = (5, 10, 20), batch_size: int = 1024) -> dict:
    """``evaluate_model`` on prepared ``DeviceCases`` (the fast path; same metrics).

    The model must be on the cases' device; it is switched to eval mode and back."""
    if not ks or min(ks) < 1:
        raise ValueError(f"every K must be a positive integer, got {list(ks)}")
    was_training = model.training
    model.eval()
    try:
        ranked = rank_on_device(model, cases, max(ks), batch_size)
    finally:
        model.train(was_training)
    return summarize(ranked, cases.n_items, ks)
