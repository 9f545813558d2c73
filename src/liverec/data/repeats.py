"""The data's repeat rate and the data-adaptive choice of evaluation protocol and model mode.

Repeat rate = the share of next events in the training split whose item is already in the
user's history (positions 1.. of each user's training part; the first event has no history).
Reviews and purchase logs hardly repeat (Beauty and LastFM in S3-Rec form: 0.0%), listening
and check-in logs mostly do (60-70%). Under the masked protocol a repeat target can never be
hit, so for such data liverec switches to the repeat-aware protocol and model mode
(``eval.protocol="auto"``: ``"repeat"`` when the rate is >= ``eval.repeat_threshold``, else
``"masked"``).

Why 20% (benchmarks/results/repeat_threshold.md and repeat_threshold_habit07.md: listening logs
with the repeat share varied, the same default model): the repeat-aware mode's gain in test
NDCG@20 over the masked default grows with the rate, and it reaches +10% at a training repeat
rate of about 14% when discoveries are hard to predict (habit 0.3: +6% at 10%, +12% at 15%,
+21% at 20%) and about 22% when they are easy (habit 0.7: +4% at 10%, +8% at 20%, +16% at 29%),
while it costs the explore targets 8-17% of their NDCG@20 at 10-20% (habit 0.3; 1-2% with
habit 0.7). 20% lies between the two
crossovers; it keeps review logs masked (the published protocol; e.g. 6.7% repeats) and the
synthetic shop (14.3%), and switches logs where people come back (listening, check-ins: 60-70%).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from liverec.config import RunConfig
from liverec.data.prepare import Prepared, Sequences

log = logging.getLogger(__name__)


def _training_events(seqs: Sequences, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user index, item index) of every event in each user's first ``ends[u]`` events."""
    ends = np.clip(np.asarray(ends, dtype=np.int64), 0, seqs.lengths)
    users = np.repeat(np.arange(seqs.n_users), ends)
    starts = np.repeat(seqs.indptr[:-1], ends)
    within = np.arange(len(users)) - np.repeat(np.cumsum(ends) - ends, ends)
    return users, seqs.items[starts + within]


def repeat_flags(seqs: Sequences, ends: np.ndarray) -> np.ndarray:
    """Whether each event of the users' first ``ends[u]`` events repeats an earlier one of the
    same user. -> (sum(ends),) bool, user-major, time order (a first event is never a repeat)."""
    users, items = _training_events(seqs, ends)
    key = users * (int(seqs.items.max(initial=0)) + 1) + items  # (E,) one key per (user, item)
    order = np.argsort(key, kind="stable")  # same key: earlier events first
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    flags = np.ones(len(key), dtype=bool)
    flags[order[first]] = False
    return flags


def repeat_rate(seqs: Sequences, ends: np.ndarray) -> dict:
    """The repeat rate of the users' first ``ends[u]`` events (the training split's ``train_end``).

    Returns:
        {"rate": repeats / next_events (0.0 when there are none), "repeats": int,
        "next_events": int (events at positions >= 1)}.
    """
    flags = repeat_flags(seqs, ends)
    ends = np.clip(np.asarray(ends, dtype=np.int64), 0, seqs.lengths)
    nexts = int(np.maximum(ends - 1, 0).sum())
    repeats = int(flags.sum())
    return {"rate": repeats / nexts if nexts else 0.0, "repeats": repeats, "next_events": nexts}


def repeat_rate_reference(seqs: Sequences, ends: np.ndarray) -> dict:
    """:func:`repeat_rate` with a Python set per user (the reference path for tests)."""
    repeats = nexts = 0
    for u in range(seqs.n_users):
        seen: set[int] = set()
        for pos, item in enumerate(seqs.of(u)[: max(int(ends[u]), 0)].tolist()):
            if pos:
                nexts += 1
                repeats += item in seen
            seen.add(item)
    return {"rate": repeats / nexts if nexts else 0.0, "repeats": repeats, "next_events": nexts}


def choose_protocol(rate: float, threshold: float) -> str:
    """The data-adaptive rule: ``"repeat"`` when ``rate >= threshold``, else ``"masked"``."""
    return "repeat" if rate >= threshold else "masked"


def resolve_protocol(cfg: RunConfig, prepared: Prepared) -> tuple[RunConfig, dict]:
    """``cfg`` with ``eval.protocol`` resolved ("auto" -> "masked" or "repeat"), and the record.

    The repeat rate is measured on the training split (``Split.train_end``), so the choice
    never looks at validation or test targets. Logged at INFO.

    Returns:
        (config with a concrete ``eval.protocol``, {"rate", "repeats", "next_events",
        "threshold", "protocol", "chosen_by": "auto" | "config"}).
    """
    stats = repeat_rate(prepared.sequences, prepared.split.train_end)
    ec = cfg.eval
    auto = ec.protocol == "auto"
    chosen = choose_protocol(stats["rate"], ec.repeat_threshold) if auto else ec.protocol
    info = {**stats, "threshold": ec.repeat_threshold, "protocol": chosen,
            "chosen_by": "auto" if auto else "config"}
    log.info("repeat rate of %s's training split: %.1f%% (%d of %d next events); protocol %s "
             "(%s; repeat-aware when the rate is >= %.0f%%)", prepared.name,
             100 * stats["rate"], stats["repeats"], stats["next_events"], chosen,
             "data-adaptive default" if auto else "set by eval.protocol",
             100 * ec.repeat_threshold)
    return dataclasses.replace(cfg, eval=dataclasses.replace(ec, protocol=chosen)), info
