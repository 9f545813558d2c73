"""From a Dataset to model-ready arrays: k-core, item vocabulary, per-user sequences, splits.

Sequences are stored CSR-style: ``items[indptr[u]:indptr[u + 1]]`` is user ``u``'s time-ordered
item indices (1..N; 0 is padding). A split is three per-user cut points into that sequence:
training uses ``seq[:train_end]``, validation predicts ``seq[valid_pos]`` from ``seq[:valid_pos]``,
test predicts ``seq[test_pos]`` from ``seq[:test_pos]`` (-1 = the user has no such case).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from liverec.config import DataConfig, to_dict
from liverec.data.tables import Dataset, sort_interactions
from liverec.errors import DataError

log = logging.getLogger(__name__)
PAD = 0


@dataclass(frozen=True)
class ItemVocab:
    """External item id (str) <-> index; index 0 is padding."""

    ids: np.ndarray  # (N + 1,) object array of str; ids[0] == "<pad>"

    @classmethod
    def from_ids(cls, ids: list[str] | np.ndarray) -> ItemVocab:
        arr = np.empty(len(ids) + 1, dtype=object)
        arr[0] = "<pad>"
        arr[1:] = [str(i) for i in ids]
        return cls(arr)

    @property
    def n_items(self) -> int:
        """Catalogue size without padding."""
        return len(self.ids) - 1

    def index_map(self) -> dict[str, int]:
        """A dict from external id to index (built on demand)."""
        return {str(x): i for i, x in enumerate(self.ids) if i > 0}

    def encode(self, ids: list[str], lookup: dict[str, int] | None = None) -> np.ndarray:
        """Indices of known ids; raises KeyError naming the first unknown id."""
        lookup = lookup or self.index_map()
        return np.array([lookup[str(i)] for i in ids], dtype=np.int64)

    def decode(self, idx: np.ndarray) -> list[str]:
        return [str(x) for x in self.ids[np.asarray(idx)]]


@dataclass(frozen=True)
class Sequences:
    """Per-user time-ordered item indices in CSR form."""

    users: np.ndarray  # (U,) external user ids (str)
    indptr: np.ndarray  # (U + 1,) int64
    items: np.ndarray  # (E,) int64 item indices
    ts: np.ndarray  # (E,) int64

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def of(self, u: int) -> np.ndarray:
        return self.items[self.indptr[u] : self.indptr[u + 1]]


@dataclass(frozen=True)
class Split:
    """Per-user cut points (see module docstring)."""

    kind: str
    train_end: np.ndarray  # (U,)
    valid_pos: np.ndarray  # (U,) -1 = none
    test_pos: np.ndarray  # (U,) -1 = none


@dataclass(frozen=True)
class Prepared:
    """Everything training and evaluation need from the data."""

    name: str
    vocab: ItemVocab
    items: pl.DataFrame  # catalogue rows aligned with vocab indices 1..N (column "index")
    sequences: Sequences
    split: Split
    stats: dict

    def train_sequences(self) -> list[np.ndarray]:
        """Each user's training part (users with at least two training events)."""
        seqs = self.sequences
        out = []
        for u in np.flatnonzero(self.split.train_end >= 2):
            start = seqs.indptr[u]
            out.append(seqs.items[start : start + self.split.train_end[u]])
        return out

    def train_item_counts(self) -> np.ndarray:
        """Training occurrences of every item index (N + 1,); index 0 (padding) counts 0."""
        seqs = self.train_sequences()
        flat = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        return np.bincount(flat, minlength=self.vocab.n_items + 1)

    def eval_cases(self, stage: str) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """(user indices, histories, targets) for ``stage`` in {"valid", "test"}."""
        pos = self.split.valid_pos if stage == "valid" else self.split.test_pos
        if stage not in ("valid", "test"):
            raise ValueError(f"stage must be 'valid' or 'test', not {stage!r}")
        users = np.flatnonzero(pos > 0)
        seqs = self.sequences
        starts = seqs.indptr[users]
        histories = [seqs.items[s : s + p] for s, p in zip(starts, pos[users])]
        targets = seqs.items[starts + pos[users]]
        return users, histories, targets


def k_core(df: pl.DataFrame, min_user: int, min_item: int) -> pl.DataFrame:
    """Iteratively keep users/items with at least the given numbers of interactions."""
    if min_user <= 1 and min_item <= 1:
        return df
    while True:
        before = df.height
        if min_item > 1:
            df = df.filter(pl.len().over("item") >= min_item)
        if min_user > 1:
            df = df.filter(pl.len().over("user") >= min_user)
        if df.height == before:
            return df


def _sorted_ids(values: pl.Series) -> list[str]:
    uniq = values.unique()
    numeric = uniq.str.contains(r"^\d+$").all()
    if numeric:
        return uniq.cast(pl.Int64).sort().cast(pl.Utf8).to_list()
    return uniq.sort().to_list()


def build_vocab(df: pl.DataFrame) -> ItemVocab:
    """Vocabulary over the items that occur, in natural id order (numeric ids numerically)."""
    return ItemVocab.from_ids(_sorted_ids(df["item"]))


def build_sequences(df: pl.DataFrame, vocab: ItemVocab) -> Sequences:
    """CSR sequences from sorted interactions (vectorised join on the vocabulary)."""
    lookup = pl.DataFrame(
        {"item": vocab.ids[1:].astype(str), "idx": np.arange(1, len(vocab.ids), dtype=np.int64)}
    )
    df = df.join(lookup, on="item", how="inner", maintain_order="left")
    counts = df.group_by("user", maintain_order=True).len()
    indptr = np.zeros(counts.height + 1, dtype=np.int64)
    np.cumsum(counts["len"].to_numpy(), out=indptr[1:])
    return Sequences(
        users=counts["user"].to_numpy().astype(object),
        indptr=indptr,
        items=df["idx"].to_numpy().astype(np.int64),
        ts=df["ts"].to_numpy().astype(np.int64),
    )


def leave_one_out(seqs: Sequences) -> Split:
    """Last event = test, second last = validation, the rest = training (needs >= 3 events)."""
    n = seqs.lengths
    ok = n >= 3
    return Split(
        kind="leave_one_out",
        train_end=np.where(ok, n - 2, n),
        valid_pos=np.where(ok, n - 2, -1),
        test_pos=np.where(ok, n - 1, -1),
    )


def temporal_split(seqs: Sequences, test_fraction: float) -> Split:
    """Global time cut-offs: the last ``test_fraction`` of time is test, the one before valid.

    Each user contributes at most one validation case (their first event in the validation
    window) and one test case (their first event in the test window).
    """
    if not 0.0 < test_fraction < 0.5:
        raise DataError(f"temporal_test_fraction must be in (0, 0.5), got {test_fraction}")
    t_valid, t_test = np.quantile(seqs.ts, [1 - 2 * test_fraction, 1 - test_fraction])
    starts, n = seqs.indptr[:-1], seqs.lengths
    # every user has at least one event, so reduceat's segments are never empty
    before_valid = np.add.reduceat((seqs.ts < t_valid).astype(np.int64), starts)
    before_test = np.add.reduceat((seqs.ts < t_test).astype(np.int64), starts)
    valid_pos = np.where((before_test > before_valid) & (before_valid >= 1), before_valid, -1)
    test_pos = np.where((n > before_test) & (before_test >= 1), before_test, -1)
    return Split("temporal", train_end=before_valid, valid_pos=valid_pos, test_pos=test_pos)


def prepare(
    dataset: Dataset, cfg: DataConfig, vocab: ItemVocab | None = None
) -> Prepared:
    """k-core, vocabulary (or map onto a given one), sequences and split.

    Args:
        dataset: the loaded tables.
        cfg: data settings (k-core thresholds, split kind).
        vocab: an existing vocabulary (e.g. a trained model's); items outside it are dropped
            with a count in the log.

    Returns:
        The prepared data.
    """
    df = sort_interactions(dataset.interactions)
    n0 = df.height
    df = k_core(df, cfg.min_user_interactions, cfg.min_item_interactions)
    if df.height < n0:
        log.info("k-core filtering dropped %d of %d interactions", n0 - df.height, n0)
    if vocab is None:
        vocab = build_vocab(df)
    else:
        kept = df.join(pl.DataFrame({"item": vocab.ids[1:].astype(str)}), on="item",
                       how="semi", maintain_order="left")
        if kept.height < df.height:
            log.warning("dropped %d interactions with items outside the model's vocabulary",
                        df.height - kept.height)
        df = kept
    if df.height == 0:
        raise DataError(f"{dataset.name}: no interactions left after filtering")
    seqs = build_sequences(df, vocab)
    if cfg.split == "leave_one_out":
        split = leave_one_out(seqs)
    elif cfg.split == "temporal":
        split = temporal_split(seqs, cfg.temporal_test_fraction)
    else:
        raise DataError(f"unknown split {cfg.split!r}; use 'leave_one_out' or 'temporal'")
    short = int((seqs.lengths < 3).sum())
    if short:
        log.warning("%d users have fewer than 3 events: they get no validation/test case", short)
    if int((split.test_pos > 0).sum()) == 0:
        raise DataError(
            f"{dataset.name}: no user has enough events for a {split.kind} test case "
            "(leave-one-out needs at least 3 events per user)"
        )
    items = _align_items(dataset.items, vocab)
    stats = {
        "users": seqs.n_users,
        "items": vocab.n_items,
        "interactions": int(len(seqs.items)),
        "mean_seq_len": float(seqs.lengths.mean()),
        "valid_cases": int((split.valid_pos > 0).sum()),
        "test_cases": int((split.test_pos > 0).sum()),
        "dropped_kcore": n0 - df.height,
    }
    return Prepared(dataset.name, vocab, items, seqs, split, stats)


def _align_items(items: pl.DataFrame, vocab: ItemVocab) -> pl.DataFrame:
    ids = pl.DataFrame(
        {"item": vocab.ids[1:].astype(str), "index": np.arange(1, len(vocab.ids), dtype=np.int64)}
    )
    out = ids.join(items.unique("item", keep="first"), on="item", how="left", maintain_order="left")
    return out.with_columns(
        pl.col("title").fill_null(""),
        pl.col("text").fill_null(""),
        pl.col("attributes").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))),
    )


# ---------------------------------------------------------------------------------------------
# On-disk cache of prepared data


def cache_dir() -> Path:
    """``$LIVEREC_CACHE`` or ``~/.cache/liverec``."""
    return Path(os.environ.get("LIVEREC_CACHE", Path.home() / ".cache" / "liverec"))


def cache_key(cfg: DataConfig, source_files: list[Path]) -> str:
    """A digest of the data settings and the source files' sizes and mtimes."""
    payload = {k: v for k, v in to_dict(cfg).items() if k not in ("cache", "data_root")}
    payload["files"] = sorted(
        (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in source_files
    )
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def save_prepared(p: Prepared, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    s, sp = p.sequences, p.split
    np.savez(
        path / "arrays.npz",
        vocab=p.vocab.ids[1:].astype(str), users=s.users.astype(str), indptr=s.indptr,
        items=s.items, ts=s.ts, train_end=sp.train_end, valid_pos=sp.valid_pos,
        test_pos=sp.test_pos,
    )
    p.items.write_parquet(path / "items.parquet")
    meta = {"name": p.name, "split": sp.kind, "stats": p.stats}
    (path / "meta.json").write_text(json.dumps(meta))


def load_prepared(path: Path) -> Prepared:
    meta = json.loads((path / "meta.json").read_text())
    with np.load(path / "arrays.npz", allow_pickle=False) as z:
        vocab = ItemVocab.from_ids(z["vocab"].tolist())
        seqs = Sequences(z["users"].astype(object), z["indptr"], z["items"], z["ts"])
        split = Split(meta["split"], z["train_end"], z["valid_pos"], z["test_pos"])
    items = pl.read_parquet(path / "items.parquet")
    return Prepared(meta["name"], vocab, items, seqs, split, meta["stats"])
