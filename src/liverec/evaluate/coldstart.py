"""Cold-start evaluation: hold a share of items out of training entirely, add them afterwards
from their text (no retraining), and measure HR/NDCG@K separately for cold and warm targets.

Protocol: a random ``fraction`` of catalogue items becomes *cold*. Their interactions are
removed from every training sequence (and validation cases whose target is cold are dropped),
so the model never sees them: the training catalogue holds only the warm items, indices
1..W. After training, the cold items are appended (indices W+1..N) through the model's
``add_items`` path, and the usual full-ranking leave-one-out test runs over all N items;
test cases are then grouped by whether their target is cold or warm.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from liverec.data.prepare import ItemVocab, Prepared, Sequences, Split
from liverec.evaluate.metrics import all_metrics
from liverec.evaluate.protocol import model_score_fn, rank_targets

PROTOCOL = {
    "cold_items": "a random share of items held out of training entirely (interactions removed "
                  "from training sequences, validation cases with a cold target dropped)",
    "after_training": "cold items appended to the catalogue from their text, no retraining",
    "ranking": "full ranking over all items (warm + cold), history items masked; ranks, ties, "
               "non-finite scores and repeat targets as in liverec.evaluate.protocol.PROTOCOL",
    "groups": "test cases grouped by whether the target item is cold or warm",
}


@dataclass(frozen=True)
class ColdStartSplit:
    """The two views of one cold-start split.

    Attributes:
        train: warm catalogue only (indices 1..n_warm); train on this.
        full: every item, warm first then cold (n_warm+1..N); evaluate on this.
        n_warm: W, the number of warm items.
        cold_items: catalogue rows of the cold items in index order (to add after training).
    """

    train: Prepared
    full: Prepared
    n_warm: int
    cold_items: pl.DataFrame


def hold_out_items(prepared: Prepared, fraction: float = 0.1, seed: int = 0) -> ColdStartSplit:
    """Split ``prepared`` into a warm training view and a full evaluation view."""
    n = prepared.vocab.n_items
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(np.arange(1, n + 1), size=max(1, round(fraction * n)),
                              replace=False))
    is_cold = np.zeros(n + 1, dtype=bool)
    is_cold[cold] = True
    order = np.concatenate([np.flatnonzero(~is_cold[1:]) + 1, cold])  # new index -> old index
    remap = np.zeros(n + 1, dtype=np.int64)
    remap[order] = np.arange(1, n + 1)
    n_warm = n - len(cold)
    seqs, split = _drop_cold_from_training(prepared, remap, n_warm)
    vocab = ItemVocab(np.concatenate([prepared.vocab.ids[:1], prepared.vocab.ids[order]]))
    items = prepared.items.sort("index")[order - 1].with_columns(
        pl.Series("index", np.arange(1, n + 1, dtype=np.int64)))
    stats = {**prepared.stats, "cold_items": len(cold), "warm_items": n_warm}
    full = Prepared(prepared.name, vocab, items, seqs, split, stats)
    has_valid = split.valid_pos > 0
    valid_tgt = np.zeros(seqs.n_users, dtype=np.int64)
    valid_tgt[has_valid] = seqs.items[seqs.indptr[:-1][has_valid] + split.valid_pos[has_valid]]
    train_split = dataclasses.replace(
        split, valid_pos=np.where(valid_tgt > n_warm, -1, split.valid_pos),
        test_pos=np.full_like(split.test_pos, -1))
    train = Prepared(prepared.name, ItemVocab(vocab.ids[: n_warm + 1]), items[:n_warm], seqs,
                     train_split, {**stats, "items": n_warm})
    return ColdStartSplit(train, full, n_warm, items[n_warm:])


def _drop_cold_from_training(prepared: Prepared, remap: np.ndarray,
                             n_warm: int) -> tuple[Sequences, Split]:
    s, sp = prepared.sequences, prepared.split
    items = remap[s.items]  # (E,) new indices
    user = np.repeat(np.arange(s.n_users), s.lengths)  # (E,)
    pos = np.arange(len(items)) - s.indptr[user]  # position within the user's sequence
    in_train = pos < sp.train_end[user]
    keep = ~(in_train & (items > n_warm))
    removed = np.bincount(user[~keep], minlength=s.n_users)  # (U,)
    lengths = np.bincount(user[keep], minlength=s.n_users)
    indptr = np.zeros(s.n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    seqs = Sequences(s.users, indptr, items[keep], s.ts[keep])
    valid_pos = np.where(sp.valid_pos >= 0, sp.valid_pos - removed, -1)
    test_pos = np.where(sp.test_pos >= 0, sp.test_pos - removed, -1)
    split = Split(sp.kind, sp.train_end - removed, valid_pos, test_pos)
    return seqs, split


def evaluate_coldstart(model: torch.nn.Module, split: ColdStartSplit,
                       ks: tuple[int, ...] = (5, 10, 20), batch_size: int = 1024) -> dict:
    """Test metrics for all, cold-target and warm-target cases of ``split.full``.

    The model must already score all N items (cold ones added, e.g. by ``add_items``).
    """
    if model.item_table().shape[0] != split.full.vocab.n_items + 1:
        raise ValueError("the model does not score the cold items yet: add them first "
                         "(Recommender.add_items)")
    _, histories, targets = split.full.eval_cases("test")
    model.eval()
    fn = model_score_fn(model, model.cfg.max_len)
    ranked = rank_targets(fn, histories, targets, batch_size, max(ks))
    cold = targets > split.n_warm
    out: dict = {"protocol": PROTOCOL, "n_cold_items": split.full.vocab.n_items - split.n_warm,
                 "n_warm_items": split.n_warm}
    for name, sel in (("all", np.ones_like(cold)), ("cold", cold), ("warm", ~cold)):
        out[name] = ({**all_metrics(ranked.ranks[sel], ks), "cases": int(sel.sum()),
                      "repeat_targets": int(ranked.repeats[sel].sum())} if sel.any() else {})
    k = max(ks)
    warm_hr = out["warm"].get(f"hr@{k}", 0.0)
    out[f"cold_warm_hr@{k}_ratio"] = out["cold"].get(f"hr@{k}", 0.0) / warm_hr if warm_hr else 0.0
    return out
