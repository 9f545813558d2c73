"""Evaluate a trained run on a new interaction log: ``liverec eval RUN --data NEW``.

The new log's own next events are the test cases: each user's last event in the new log is the
target, their earlier events in the log (in time order) are the history. Nothing is silently
re-targeted:

- a target on an item the model does not know is a miss at every K (it stays in the
  denominator and is counted);
- history events on unknown items are left out of the history (counted);
- users with a single event in the log, or whose history holds no item the model knows, have
  no case (counted).

The counts go to the log as one WARNING and into the report. Results are written beside the
run's own, in ``RUN/eval/<data name>/`` (``metrics.json`` and ``report.md``), never over the
run's ``metrics.json``/``report.md``.

Legend: E events in the new log, U its users, C cases (users with a target), N catalogue size.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from liverec.config import DataConfig, RunConfig
from liverec.data.prepare import ItemVocab, Prepared, Sequences, Split
from liverec.errors import DataError

log = logging.getLogger(__name__)

NEW_DATA_PROTOCOL = {
    "cases": "each user's last event in the new log is the test target; the history is their "
             "earlier events in the log, in time order (no k-core filtering)",
    "unknown_items": "a target on an item the model does not know is a miss at every K; "
                     "history events on unknown items are left out of the history",
    "ranking": "full ranking over every catalogue item, no sampled negatives",
    "masking": "items already in the user's history are masked (never ranked)",
    "coverage": "coverage@K is over the cases whose target the model knows (0 when none)",
}
RANK_METRICS = ("hr@", "ndcg@", "mrr@")  # per-case means: an unscorable case adds 0


@dataclass
class NextEventCases:
    """The new log's next-event cases and what could not be used, with counts."""

    users: np.ndarray  # (C,) user ids (str) of the cases, in log order
    histories: list[np.ndarray]  # C arrays of known item indices (1..N), oldest first
    targets: np.ndarray  # (C,) int64 target item index; 0 = an item the model does not know
    ts: list[np.ndarray]  # C arrays: timestamps of the history events, then the target's
    counts: dict[str, int] = field(default_factory=dict)
    unknown_target_items: list[str] = field(default_factory=list)  # distinct, sorted

    @property
    def known(self) -> np.ndarray:
        """(C,) bool: the target is an item the model knows."""
        return self.targets > 0


def next_event_cases(interactions: pl.DataFrame, vocab: ItemVocab) -> NextEventCases:
    """Split a log (columns user, item, ts) into next-event cases on ``vocab``'s items.

    Events are ordered by user, then time, keeping file order for equal times.

    Raises:
        DataError: the log has no events.
    """
    if interactions.height == 0:
        raise DataError("the new log has no events")
    df = interactions.select(pl.col("user").cast(pl.Utf8), pl.col("item").cast(pl.Utf8),
                             pl.col("ts")).sort(["user", "ts"], maintain_order=True)
    lookup = pl.DataFrame({"item": vocab.ids[1:].astype(str),
                           "idx": np.arange(1, len(vocab.ids), dtype=np.int64)})
    df = df.join(lookup, on="item", how="left", maintain_order="left")
    users = df["user"].to_numpy().astype(object)
    items = df["item"].to_numpy().astype(object)
    idx = df["idx"].fill_null(0).to_numpy().astype(np.int64)  # (E,) 0 = unknown item
    ts = df["ts"].to_numpy().astype(np.int64)
    change = np.flatnonzero(users[1:] != users[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)  # (U,)
    ends = np.concatenate([change, [len(users)]]).astype(np.int64)  # (U,) exclusive
    lengths = ends - starts
    history_mask = np.ones(len(users), dtype=bool)
    history_mask[ends - 1] = False  # every event but each user's last
    known_history = np.add.reduceat((history_mask & (idx > 0)).astype(np.int64), starts)
    single = lengths == 1
    no_known_history = ~single & (known_history == 0)
    has_case = ~single & ~no_known_history
    case_users, histories, targets, case_ts = [], [], [], []
    for s, e in zip(starts[has_case], ends[has_case]):
        h = idx[s : e - 1]
        keep = h > 0
        histories.append(h[keep])
        case_ts.append(np.concatenate([ts[s : e - 1][keep], ts[e - 1 : e]]))
        targets.append(idx[e - 1])
        case_users.append(users[s])
    targets_arr = np.asarray(targets, dtype=np.int64)
    last = ends[has_case] - 1
    unknown_targets = sorted({str(items[p]) for p in last[targets_arr == 0]})
    counts = {
        "events": int(len(users)),
        "users": int(len(starts)),
        "cases": int(has_case.sum()),
        "cases_unknown_target": int((targets_arr == 0).sum()),
        "unknown_target_items": len(unknown_targets),
        "history_events_unknown_item": int((history_mask & (idx == 0))[
            np.repeat(has_case, lengths)].sum()),
        "users_single_event": int(single.sum()),
        "users_no_known_history": int(no_known_history.sum()),
        "events_unknown_item": int((idx == 0).sum()),
    }
    return NextEventCases(np.asarray(case_users, dtype=object), histories, targets_arr,
                          case_ts, counts, unknown_targets)


def cases_as_prepared(cases: NextEventCases, vocab: ItemVocab, catalogue: pl.DataFrame,
                      name: str) -> Prepared:
    """The cases whose target the model knows, as a Prepared with only a test stage (so the
    run's evaluation protocol, baselines included, scores them unchanged)."""
    known = np.flatnonzero(cases.known)
    seqs = [np.append(cases.histories[c], cases.targets[c]) for c in known]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    indptr = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    flat = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
    flat_ts = np.concatenate([cases.ts[c] for c in known]) if seqs else flat.copy()
    sequences = Sequences(cases.users[known], indptr, flat.astype(np.int64),
                          flat_ts.astype(np.int64))
    split = Split("new_log_next_event", train_end=lengths - 1,
                  valid_pos=np.full(len(seqs), -1, dtype=np.int64), test_pos=lengths - 1)
    stats = {"users": len(seqs), "items": vocab.n_items, "interactions": int(len(flat)),
             "valid_cases": 0, "test_cases": len(seqs)}
    return Prepared(name, vocab, catalogue, sequences, split, stats)


def with_misses(metrics: dict[str, float], n_known: int, n_cases: int) -> dict[str, float]:
    """Metrics over the known-target cases -> over all cases, the others being misses.

    HR, NDCG and MRR at K are per-case means and a miss adds 0, so each scales by
    ``n_known / n_cases``; other entries (coverage, counts) are kept.
    """
    share = n_known / n_cases if n_cases else 0.0
    out = {k: (v * share if k.startswith(RANK_METRICS) else v) for k, v in metrics.items()}
    out["cases"] = float(n_cases)
    out["cases_unknown_target"] = float(n_cases - n_known)
    return out


def _zero_metrics(ks: tuple[int, ...]) -> dict[str, float]:
    out = {f"{m}@{k}": 0.0 for k in ks for m in ("hr", "ndcg", "mrr")}
    out[f"coverage@{max(ks)}"] = 0.0  # nothing was ranked
    return out


def data_name(source: str) -> str:
    """A folder name for a data source: a file's stem or a registry name, made path-safe."""
    path = Path(source.rstrip("/\\"))
    stem = path.stem if path.suffix else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "data"


def drop_summary(counts: dict[str, int], source: str) -> str:
    """One line saying what could not be used and why."""
    return (f"{source}: {counts['cases_unknown_target']:,} of {counts['cases']:,} test targets "
            f"are on items the model does not know ({counts['unknown_target_items']:,} "
            "distinct): counted as misses; dropped "
            f"{counts['history_events_unknown_item']:,} history events on unknown items, "
            f"{counts['users_single_event']:,} users with a single event and "
            f"{counts['users_no_known_history']:,} users whose history holds no item the model "
            "knows (no case)")


def evaluate_new_data(run_dir: Path, data: DataConfig, baselines: tuple[str, ...] | None = None,
                      out_dir: Path | None = None) -> dict:
    """Evaluate the run's model (and baselines) on the next events of a new log.

    Args:
        run_dir: a run directory written by ``liverec train``.
        data: where the new log is (source, format, column mapping).
        baselines: baseline names (default: the run's ``eval.baselines``); fitted on the
            cases' histories, as in the run's own evaluation.
        out_dir: where to write metrics.json and report.md (default
            ``run_dir/eval/<data name>``); must not be ``run_dir`` itself.

    Returns:
        The metrics dict written to ``out_dir/metrics.json`` (its "files" entry names the
        written files).

    Raises:
        DataError: the log cannot be read, or no user has a case.
        ArtifactError: ``run_dir`` is not a run directory, or ``out_dir`` is ``run_dir``.
    """
    from liverec.data.registry import load_dataset
    from liverec.errors import ArtifactError
    from liverec.evaluate.protocol import evaluate_model
    from liverec.evaluate.report import evaluate_baselines
    from liverec.model.artifact import load_model, read_run_config

    run_dir = Path(run_dir)
    cfg: RunConfig = read_run_config(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "eval" / data_name(data.source)
    if out.resolve() == run_dir.resolve():
        raise ArtifactError(f"--out {out}: that is the run directory; its own metrics.json "
                            "and report.md are not overwritten by an evaluation on other data")
    model, vocab, catalogue, _ = load_model(run_dir)
    dataset = load_dataset(data)
    cases = next_event_cases(dataset.interactions, vocab)
    counts = cases.counts
    if counts["cases"] == 0:
        raise DataError(f"{data.source}: no user has two or more events with a history item "
                        f"the model knows ({counts['users']:,} users, {counts['events']:,} "
                        "events)")
    if (counts["cases_unknown_target"] or counts["history_events_unknown_item"]
            or counts["users_single_event"] or counts["users_no_known_history"]):
        log.warning("%s", drop_summary(counts, data.source))
    counts["new_users"] = _new_users(cfg, cases.users)
    ks = cfg.eval.ks
    n_known, n_cases = int(cases.known.sum()), counts["cases"]
    prepared = cases_as_prepared(cases, vocab, catalogue, dataset.name)
    if n_known:
        test = evaluate_model(model, prepared, "test", ks, cfg.eval.batch_size)
    else:
        test = _zero_metrics(ks)
    names = cfg.eval.baselines if baselines is None else baselines
    base = evaluate_baselines(prepared, tuple(names), "test", ks) if n_known else \
        {name: _zero_metrics(ks) for name in names}
    result = {
        "run": str(run_dir),
        "protocol": NEW_DATA_PROTOCOL,
        "data": {"source": data.source, "format": data.format, "name": dataset.name,
                 **counts},
        "unknown_target_items": cases.unknown_target_items[:100],
        "model": {"name": cfg.model.name,
                  "test": with_misses(test, n_known, n_cases)},
        "baselines": {name: with_misses(m, n_known, n_cases) for name, m in base.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    files = {"metrics": out / "metrics.json", "report": out / "report.md"}
    result["files"] = {k: str(v) for k, v in files.items()}
    files["metrics"].write_text(json.dumps(result, indent=2) + "\n")
    files["report"].write_text(render_new_data_report(result, cfg))
    return result


def _new_users(cfg: RunConfig, users: np.ndarray) -> int | None:
    """How many case users the run's training data does not have (None: it is not at hand).

    A sequence model scores any user from their history, so these users are evaluated; the
    count says how much of the new log is about people the model never saw in training."""
    from liverec.data.pipeline import load_and_prepare
    from liverec.errors import LiverecError

    try:
        train_users = set(load_and_prepare(cfg.data).sequences.users.astype(str).tolist())
    except (LiverecError, OSError) as exc:
        log.debug("training data of the run not at hand (%s): new users not counted", exc)
        return None
    return int(sum(str(u) not in train_users for u in users))


def render_new_data_report(result: dict, cfg: RunConfig) -> str:
    """report.md for an evaluation on a new log."""
    from liverec.evaluate.report import metrics_table

    d = result["data"]
    rows = {f"{cfg.model.name} (liverec)": result["model"]["test"], **result["baselines"]}
    new_users = "not counted (the run's training data is not at hand)" \
        if d["new_users"] is None else f"{d['new_users']:,}"
    lines = [
        f"# Evaluation on new data: {cfg.name}\n",
        f"Run: `{result['run']}`. New log: `{d['source']}` — {d['events']:,} events, "
        f"{d['users']:,} users; {d['cases']:,} test cases.\n",
        "Protocol: " + "; ".join(result["protocol"].values()) + ".\n",
        "## What could not be used, and why\n",
        "| count | what | how it is counted |",
        "|---:|---|---|",
        f"| {d['cases_unknown_target']:,} | test targets on items the model does not know "
        f"({d['unknown_target_items']:,} distinct) | misses at every K (in the denominator) |",
        f"| {d['history_events_unknown_item']:,} | history events on items the model does not "
        "know | left out of the history |",
        f"| {d['users_single_event']:,} | users with a single event (no history) | no case |",
        f"| {d['users_no_known_history']:,} | users whose history holds no item the model "
        "knows | no case |",
        f"| {new_users} | case users not in the run's training data | evaluated (scored from "
        "their history in the new log) |\n",
        "## Test: each user's next event in the new log (full ranking)\n",
        metrics_table(rows, cfg.eval.ks),
    ]
    if result["unknown_target_items"]:
        shown = ", ".join(f"`{i}`" for i in result["unknown_target_items"][:20])
        more = d["unknown_target_items"] - min(20, len(result["unknown_target_items"]))
        lines.append(f"Unknown target items: {shown}" + (f" and {more:,} more" if more else "")
                     + ".\n")
    return "\n".join(lines)
