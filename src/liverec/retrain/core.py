"""Re-fine-tune a served model on the events it has received, check it, publish a new version.

Legend: U users, E events.

The new training data is the run's own training part (replay, so the model does not forget
what it knew) with each user's new events appended, in arrival order, plus the users the
model never saw. A seeded share of the users with new events has its last new event held out:
half of those cases pick the fine-tuning epoch (epoch 0 = the current model), the other half
decide whether to publish (new NDCG@20 >= current NDCG@20 on the same cases). A version that
is not better on cases it never trained on is not published; nothing is written but the report.

A run in the repeat-aware mode (``repeat.json``, model/repeat.py) gives its new version a
repeat-explore mixture refitted on the selection cases (as training fits it on validation: the
model's log-probabilities are one of its features, and the model changed), or the old mixture
as it was when that fit fails; config.json's ``retrain.repeat`` records which.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from liverec.config import TrainConfig
from liverec.data.prepare import ItemVocab, Prepared, Sequences, Split
from liverec.errors import ArtifactError, DataError
from liverec.evaluate.protocol import evaluate_model, evaluate_scores, pad_left
from liverec.model.artifact import (
    COMPLETE,
    load_model,
    mark_complete,
    read_run_config,
    save_artifact,
)
from liverec.model.items import IdItemEmbedder
from liverec.model.repeat import RepeatExplore, carry_repeat, load_repeat
from liverec.model.text_items import extend_embedding
from liverec.train.loop import fit

log = logging.getLogger(__name__)

REPORT = "retrain.json"
EVENT_COLUMNS = ("user_id", "item_id", "ts")


@dataclass(frozen=True)
class RetrainConfig:
    """How a served model is re-fine-tuned from new events.

    Attributes:
        epochs: fine-tuning passes over the merged data (the best held-out epoch is kept).
        lr: learning rate; 0 = the run's own training rate (benchmarks/results/
            retrain_beauty.md; a tenth of it, tried first, never beat the served model there).
        holdout: share of users with new events whose last new event is held out.
        min_cases: fewest held-out cases per half (epoch choice, publish decision).
        replay: also train on the run's own training data (needs the run's data source).
        tolerance: publish when new NDCG@20 >= (1 - tolerance) * current NDCG@20.
        new_item_min_events: an item the model has no row for gets one (id models), learnt
            from the events, once it has this many events; 0 = skip such events.
        seed: the held-out users and the batch order.
    """

    epochs: int = 4
    lr: float = 0.0
    holdout: float = 0.2
    min_cases: int = 10
    replay: bool = True
    tolerance: float = 0.0
    new_item_min_events: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        if self.lr < 0 or self.tolerance < 0 or self.min_cases < 1 or \
                self.new_item_min_events < 0:
            raise ValueError("lr, tolerance and new_item_min_events must be >= 0 and "
                             "min_cases >= 1")


def events_frame(events) -> pl.DataFrame:
    """Events as a (user_id, item_id, ts) frame, in the order given (arrival order).

    Accepts a polars DataFrame with those columns or an iterable of objects with those
    attributes (the service's ``Event``)."""
    if isinstance(events, pl.DataFrame):
        missing = [c for c in EVENT_COLUMNS if c not in events.columns]
        if missing:
            raise DataError(f"events need columns {list(EVENT_COLUMNS)}; missing {missing}")
        return events.select(pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8),
                             pl.col("ts").cast(pl.Float64))
    rows = [(str(e.user_id), str(e.item_id), float(e.ts)) for e in events]
    return pl.DataFrame(rows, schema={"user_id": pl.Utf8, "item_id": pl.Utf8, "ts": pl.Float64},
                        orient="row")


def merge_events(base: Prepared | None, vocab: ItemVocab, events: pl.DataFrame,
                 holdout: float, seed: int) -> tuple[Prepared, dict]:
    """The base training parts with the new events appended, and the held-out split.

    Returns (prepared data in the model's vocabulary, counts for the report). Events on items
    outside the vocabulary are skipped and counted (an id model has no row for them)."""
    lookup = vocab.index_map()
    idx = np.array([lookup.get(i, 0) for i in events["item_id"].to_list()], dtype=np.int64)
    known = idx > 0
    users_new = events["user_id"].to_numpy()[known]
    items_new = idx[known]
    if not known.any():
        raise DataError(f"none of the {events.height} events is on an item the model knows "
                        "(an id model cannot learn items it has no row for)")
    by_user: dict[str, list[int]] = {}
    for u, i in zip(users_new.tolist(), items_new.tolist()):
        by_user.setdefault(u, []).append(i)
    seqs: dict[str, list[int]] = {}
    if base is not None:
        s = base.sequences
        for u, user in enumerate(s.users.tolist()):
            start = s.indptr[u]
            seqs[str(user)] = s.items[start : start + base.split.train_end[u]].tolist()
    n_old_users = sum(1 for u in by_user if u in seqs)
    for u, new in by_user.items():
        seqs.setdefault(u, []).extend(new)
    users = np.array(list(seqs), dtype=object)
    lengths = np.array([len(seqs[u]) for u in users], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.fromiter((i for u in users for i in seqs[u]), dtype=np.int64, count=indptr[-1])
    n_new = np.array([len(by_user.get(u, ())) for u in users], dtype=np.int64)
    # a held-out case needs a new event as its target and at least one item before it
    eligible = np.flatnonzero((n_new > 0) & (lengths >= 2))
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(eligible)[: int(round(holdout * len(eligible)))]
    select, decide = chosen[::2], chosen[1::2]
    train_end = lengths.copy()
    train_end[chosen] -= 1  # the held-out event is never trained on
    valid_pos = np.full(len(users), -1, dtype=np.int64)
    test_pos = np.full(len(users), -1, dtype=np.int64)
    valid_pos[select] = lengths[select] - 1
    test_pos[decide] = lengths[decide] - 1
    sequences = Sequences(users=users, indptr=indptr, items=flat,
                          ts=np.zeros(len(flat), dtype=np.int64))
    split = Split(kind="retrain", train_end=train_end, valid_pos=valid_pos, test_pos=test_pos)
    items = base.items if base is not None else pl.DataFrame({"index": np.arange(1, vocab.n_items
                                                                                + 1)})
    stats = {"events": events.height, "events_used": int(known.sum()),
             "events_skipped_unknown_item": int((~known).sum()),
             "users_with_events": len(by_user), "new_users": len(by_user) - n_old_users,
             "users": len(users), "interactions": int(indptr[-1]),
             "selection_cases": len(select), "decision_cases": len(decide)}
    return Prepared("retrain", vocab, items, sequences, split, stats), stats


def add_new_items(model: torch.nn.Module, vocab: ItemVocab, items: pl.DataFrame,
                  events: pl.DataFrame, min_events: int
                  ) -> tuple[ItemVocab, pl.DataFrame, list[str]]:
    """Give items first seen in ``events`` (at least ``min_events`` each) a zero row at the end
    of an id model's table, in place, so fine-tuning can learn them. Returns the extended
    vocabulary and catalogue and the new ids (first-seen order); other item representations
    are left as they are (their events stay skipped)."""
    if min_events < 1 or not isinstance(getattr(model, "items", None), IdItemEmbedder):
        return vocab, items, []
    known = vocab.index_map()
    counts = (events.filter(~pl.col("item_id").is_in(list(known)))
              .group_by("item_id", maintain_order=True).len())
    new = counts.filter(pl.col("len") >= min_events)
    ids = new["item_id"].to_list()
    if not ids:
        return vocab, items, []
    n = vocab.n_items
    extend_embedding(model.items.emb, len(ids))
    model.cfg = dataclasses.replace(model.cfg, n_items=n + len(ids))
    rows = {c: [None] * len(ids) for c in items.columns}
    rows.update({"item": ids, "index": list(range(n + 1, n + 1 + len(ids)))})
    if "count" in rows:
        rows["count"] = new["len"].to_list()
    if "attributes" in rows:
        rows["attributes"] = [[] for _ in ids]
    extra = pl.DataFrame(rows, schema=items.schema)
    return (ItemVocab.from_ids(list(vocab.ids[1:]) + ids), pl.concat([items, extra]), ids)


def known_items_score_fn(model: torch.nn.Module, n_items: int):
    """The current model as the service runs it once the catalogue has grown to ``n_items``:
    items it has no row for are dropped from histories and never recommended (-inf)."""
    known = model.cfg.n_items

    def score(histories: list[np.ndarray]) -> torch.Tensor:
        hist = [h[h <= known] for h in histories]
        with torch.no_grad():
            s = model.score(torch.from_numpy(pad_left(hist, model.cfg.max_len)))  # (B, N0 + 1)
        pad = s.new_full((s.shape[0], n_items - known), float("-inf"))
        return torch.cat([s, pad], 1)  # (B, N + 1)

    return score


def refit_repeat(model: torch.nn.Module, prepared: Prepared
                 ) -> tuple[RepeatExplore | None, dict]:
    """A new version's repeat-explore mixture, fitted on ``prepared``'s selection cases (the
    "valid" split: held-out events the model never trained on).

    Returns:
        (the mixture, {"mode": "refitted", "cases": C}), or (None, {"mode": "carried", "why":
        ...}) when the fit fails (the caller then keeps the old ``repeat.json``).
    """
    _, histories, targets = prepared.eval_cases("valid")
    try:
        head = RepeatExplore(model.eval()).fit(histories, targets)
    except ValueError as exc:
        log.warning("repeat-explore mixture not refitted (%s): the old one is carried", exc)
        return None, {"mode": "carried", "why": str(exc)}
    return head, {"mode": "refitted", "cases": len(targets)}


def retrain(run_dir: Path, events, out_dir: Path, rc: RetrainConfig = RetrainConfig(),
            base: Prepared | None = None) -> dict:
    """Fine-tune ``run_dir``'s model on ``events``; write a new run directory if it is better.

    Args:
        run_dir: the current (fp32) run directory.
        events: the new events (see :func:`events_frame`).
        out_dir: where the new version goes (only when published); the report
            (``retrain.json``) is written there either way.
        rc: settings.
        base: the run's data in its vocabulary (default: loaded from the run's own data
            config when ``rc.replay``).

    Returns:
        The report: counts, current and new held-out metrics, epochs, ``published``.

    Raises:
        ArtifactError: ``out_dir`` is the run or holds a model, the run is a compressed
            variant, or its ``repeat.json`` cannot be read (before any work).
        DataError: no usable events, or too few held-out cases.
    """
    t0 = time.perf_counter()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.resolve() == run_dir.resolve():
        raise ArtifactError("retrain writes a new version: --out must differ from the run")
    if (out_dir / "model.safetensors").exists():
        raise ArtifactError(f"{out_dir} already holds a model; choose a new version directory")
    model, vocab, items, meta = load_model(run_dir)
    if meta.get("compression"):
        raise ArtifactError(f"{run_dir} is a compressed variant ({meta['compression']['method']}"
                            "); retrain the fp32 run and compress the new version")
    repeat_aware = load_repeat(run_dir, model) is not None  # a bad repeat.json: refused now
    cfg = read_run_config(run_dir)
    frame = events_frame(events)
    if frame.height == 0:
        raise DataError("no events to retrain on")
    if base is None and rc.replay:
        from liverec.compress.variants import prepare_for

        base = prepare_for(run_dir)
    candidate = copy.deepcopy(model)
    vocab, items, new_ids = add_new_items(candidate, vocab, items, frame,
                                          rc.new_item_min_events)
    prepared, stats = merge_events(base if rc.replay else None, vocab, frame, rc.holdout,
                                   rc.seed)
    stats["new_items"] = len(new_ids)
    if min(stats["selection_cases"], stats["decision_cases"]) < rc.min_cases:
        raise DataError(
            f"too few held-out cases to check a new version ({stats['selection_cases']} + "
            f"{stats['decision_cases']}, need {rc.min_cases} each): wait for more events, "
            "raise --holdout or lower --min-cases")
    model.eval()
    current = evaluate_scores(known_items_score_fn(model, vocab.n_items), prepared, "test",
                              (10, 20))
    # no refit on validation events here: the selection cases pick the epoch and the
    # decision cases judge the version, as measured in benchmarks/results/retrain*
    tc: TrainConfig = dataclasses.replace(cfg.train, lr=rc.lr or cfg.train.lr,
                                          warmup_steps=0, seed=rc.seed, progress=False,
                                          refit_epochs=0)
    # the shared training loop (liverec.train.loop.fit): on the run's train.device, best
    # selection-case epoch kept in memory (epoch 0 = the current model)
    log_ = fit(candidate, prepared, tc, rc.epochs)
    new = evaluate_model(candidate, prepared, "test", (10, 20))
    better = log_["best_epoch"] > 0 and new["ndcg@20"] >= (1 - rc.tolerance) * current["ndcg@20"]
    report = {
        "source": str(run_dir), "out": str(out_dir), "settings": dataclasses.asdict(rc),
        "lr": tc.lr, "data": stats, "current": current, "new": new,
        "best_epoch": log_["best_epoch"],
        "epochs": [{"epoch": e["epoch"], "loss": e["loss"], "valid_ndcg@20": e["valid"]["ndcg@20"]}
                   for e in log_["epochs"]],
        "published": bool(better), "wall_s": time.perf_counter() - t0,
        "reason": ("held-out NDCG@20 not worse than the current model" if better else
                   "no epoch beat the current model on the selection cases"
                   if log_["best_epoch"] == 0 else
                   "worse than the current model on the decision cases"),
    }
    if better:
        head, repeat = refit_repeat(candidate, prepared) if repeat_aware else (None, None)
        if repeat:
            report["repeat"] = repeat
        save_artifact(out_dir, dataclasses.replace(cfg, model=candidate.cfg), candidate, items,
                      extra={"retrain": {
            "source": str(run_dir), "events_used": stats["events_used"],
            "current_ndcg@20": current["ndcg@20"], "new_ndcg@20": new["ndcg@20"],
            **({"repeat": repeat} if repeat else {})}},
                      complete=None)
        if (run_dir / "item_text.npy").is_file():  # text-aware models' frozen vectors
            shutil.copy2(run_dir / "item_text.npy", out_dir / "item_text.npy")
        if head is not None:
            head.save(out_dir)
        else:  # the old mixture when the refit failed; a masked run's: no stale file left
            carry_repeat(run_dir, out_dir)
        mark_complete(out_dir, by="retrain")  # last: only now may it be loaded or served
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT).write_text(json.dumps(report, indent=2, default=float) + "\n")
    log.info("retrain %s: held-out NDCG@20 %.4f -> %.4f (%s)", run_dir, current["ndcg@20"],
             new["ndcg@20"], "published" if better else "not published")
    return report


def latest_version(root: Path) -> Path | None:
    """The newest published version under ``root`` (sub-directories named by UTC time; only
    complete ones: a version whose writing was interrupted is skipped)."""
    versions = sorted(p for p in Path(root).glob("*") if (p / COMPLETE).is_file())
    return versions[-1] if versions else None


def notify_reload(server: str, run_dir: Path, api_key: str | None = None,
                  timeout: float = 60.0) -> dict:
    """Ask a running ``liverec serve`` to hot-swap to ``run_dir`` (POST /admin/reload).

    Returns the server's answer (previous and new model version); a refusal (the server keeps
    serving its model) or an unreachable server raises ArtifactError with the reason."""
    import urllib.error
    import urllib.request

    body = json.dumps({"run_dir": str(Path(run_dir).resolve())}).encode()
    req = urllib.request.Request(server.rstrip("/") + "/admin/reload", data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"X-API-Key": api_key} if api_key else {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise ArtifactError(f"{server} refused the new version ({exc.code}): "
                            f"{exc.read().decode(errors='replace')[:500]}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ArtifactError(f"cannot reach {server} to hot-swap: {exc}") from None
