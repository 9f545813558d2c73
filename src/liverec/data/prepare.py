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

from liverec import __version__
from liverec.config import DataConfig, to_dict
from liverec.data.tables import Dataset, sort_interactions
from liverec.errors import DataError

log = logging.getLogger(__name__)
PAD = 0
# Version of the preparation code, part of the cache key: bump it whenever a change would make
# prepare() give different output for the same input (2: ids are opaque strings, shortlex
# vocabulary order, id columns read as text; split checks; cache stores ids as Parquet).
PREP_VERSION = 2


@dataclass(frozen=True)
class ItemVocab:
    """External item id (str) <-> index; index 0 is padding.

    Ids are opaque strings: they are never parsed, stripped or cast, so ``"01"``, ``"1"`` and
    ``"001"`` are three items and :meth:`decode` returns exactly the strings given.
    """

    ids: np.ndarray  # (N + 1,) object array of str; ids[0] == "<pad>"

    @classmethod
    def from_ids(cls, ids: list[str] | np.ndarray) -> ItemVocab:
        """A vocabulary over ``ids`` (in that order; index 1 is ``ids[0]``).

        Raises:
            DataError: An id that is not a non-empty ``str``, or a repeated id.
        """
        ids = list(ids)
        bad = next((i for i in ids if not isinstance(i, str) or i == ""), None)
        if bad is not None:
            raise DataError(f"item ids must be non-empty strings; got {bad!r} "
                            f"({type(bad).__name__})")
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))
            raise DataError(f"item id {dup!r} occurs twice in the vocabulary")
        arr = np.empty(len(ids) + 1, dtype=object)
        arr[0] = "<pad>"
        arr[1:] = ids
        return cls(arr)

    @property
    def n_items(self) -> int:
        """Catalogue size without padding."""
        return len(self.ids) - 1

    def series(self, name: str = "item") -> pl.Series:
        """The external ids of indices 1..N as a Utf8 series (exact strings, no numpy casting)."""
        return pl.Series(name, self.ids[1:].tolist(), dtype=pl.Utf8)

    def index_map(self) -> dict[str, int]:
        """A dict from external id to index (built on demand)."""
        return {x: i for i, x in enumerate(self.ids) if i > 0}

    def encode(self, ids: list[str], lookup: dict[str, int] | None = None) -> np.ndarray:
        """Indices (len(ids),) int64 of known ids, matched byte for byte (no casting).

        Raises:
            KeyError: Naming the first unknown id (a non-``str`` id is never known).
        """
        lookup = lookup or self.index_map()
        return np.array([lookup[i] for i in ids], dtype=np.int64)

    def decode(self, idx: np.ndarray) -> list[str]:
        """External ids (n,) of the indices ``idx`` (n,), exactly the strings that were loaded."""
        return list(self.ids[np.asarray(idx)])


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
        return self._heads(self.split.train_end)

    def refit_sequences(self) -> list[np.ndarray]:
        """Each user's training part plus their validation event, when they have one (users
        with at least two such events): what the test step's input holds up to its last event
        under leave-one-out. For a temporal split only the user's first validation-window event
        is added. Used by the refit on validation events (``train.refit_epochs``)."""
        split = self.split
        return self._heads(np.where(split.valid_pos > 0, split.valid_pos + 1, split.train_end))

    def _heads(self, ends: np.ndarray) -> list[np.ndarray]:
        """Each user's first ``ends[u]`` events (users with ``ends[u] >= 2``), as views."""
        seqs = self.sequences
        return [seqs.items[seqs.indptr[u] : seqs.indptr[u] + ends[u]]
                for u in np.flatnonzero(ends >= 2)]

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


def sorted_ids(values: pl.Series) -> list[str]:
    """The distinct ids in ``values`` in shortlex order: by UTF-8 byte length, then bytewise.

    Ids are never parsed: for canonical decimal ids (``1``, ``2``, ``10``) this is numeric order,
    and ``1``, ``01`` and ``001`` stay three ids (``1`` < ``01`` < ``001``).
    """
    frame = values.unique().to_frame("id")
    return frame.sort(pl.col("id").str.len_bytes(), pl.col("id"))["id"].to_list()


def build_vocab(df: pl.DataFrame) -> ItemVocab:
    """Vocabulary over the items that occur, in :func:`sorted_ids` order."""
    return ItemVocab.from_ids(sorted_ids(df["item"]))


def build_sequences(df: pl.DataFrame, vocab: ItemVocab) -> Sequences:
    """CSR sequences from sorted interactions (vectorised join on the vocabulary)."""
    lookup = pl.DataFrame(
        [vocab.series("item"), pl.Series("idx", np.arange(1, len(vocab.ids), dtype=np.int64))]
    )
    df = df.join(lookup, on="item", how="inner", maintain_order="left")
    counts = df.group_by("user", maintain_order=True).len()
    indptr = np.zeros(counts.height + 1, dtype=np.int64)
    np.cumsum(counts["len"].to_numpy(), out=indptr[1:])
    return Sequences(
        users=np.array(counts["user"].to_list(), dtype=object),
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


def split_counts(split: Split) -> dict[str, int]:
    """Training next-item pairs, validation cases and test cases of a split.

    A user whose training part has ``t >= 2`` events gives ``t - 1`` (input, next item) pairs.
    """
    return {
        "train_pairs": int(np.maximum(split.train_end - 1, 0).sum()),
        "valid_cases": int((split.valid_pos > 0).sum()),
        "test_cases": int((split.test_pos > 0).sum()),
    }


def check_split(name: str, seqs: Sequences, split: Split, cfg: DataConfig, *,
                training: bool = True) -> None:
    """Fail before any work when a split leaves nothing to train on or to evaluate.

    Args:
        name: The dataset name, for the message.
        seqs: The sequences the split cuts.
        split: The split.
        cfg: Data settings (named in the hint).
        training: Require training pairs and validation cases too (not only test cases).

    Raises:
        DataError: One line naming the counts, the history lengths and what to change.
    """
    counts = split_counts(split)
    need = ("train_pairs", "valid_cases", "test_cases") if training else ("test_cases",)
    labels = {"train_pairs": "training pairs", "valid_cases": "validation cases",
              "test_cases": "test cases"}
    empty = [labels[k] for k in need if counts[k] == 0]
    if not empty:
        return
    n = seqs.lengths
    lo, hi = int(n.min()), int(n.max())
    each = f"{lo} events each" if lo == hi else \
        f"{lo}-{hi} events each (median {float(np.median(n)):g})"
    found = (f"{seqs.n_users} users with {each} give {counts['train_pairs']} training pairs, "
             f"{counts['valid_cases']} validation and {counts['test_cases']} test cases")
    if split.kind == "leave_one_out":
        hint = ("leave-one-out keeps each user's last 2 events for validation and test, so a "
                "user needs at least 3 events for a test case and 4 for a training pair: "
                "supply longer histories or try data.split=temporal")
    else:
        hint = (f"the temporal split cuts at the last {2 * cfg.temporal_test_fraction:g} of "
                "the time range: change data.temporal_test_fraction or use "
                "data.split=leave_one_out")
    if cfg.min_user_interactions > 1 or cfg.min_item_interactions > 1:
        hint += (f", or lower data.min_user_interactions ({cfg.min_user_interactions}) / "
                 f"data.min_item_interactions ({cfg.min_item_interactions})")
    raise DataError(f"{name}: the {split.kind} split leaves no {' and no '.join(empty)}: "
                    f"{found}; {hint}")


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

    Raises:
        DataError: Nothing left after filtering, or a split without training pairs,
            validation or test cases (only test cases are required when ``vocab`` is given,
            i.e. when evaluating a trained model) -- see :func:`check_split`.
    """
    df = sort_interactions(dataset.interactions)
    n0 = df.height
    df = k_core(df, cfg.min_user_interactions, cfg.min_item_interactions)
    if df.height < n0:
        log.info("k-core filtering dropped %d of %d interactions", n0 - df.height, n0)
    building = vocab is None
    if vocab is None:
        vocab = build_vocab(df)
    else:
        kept = df.join(vocab.series("item").to_frame(), on="item",
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
    check_split(dataset.name, seqs, split, cfg, training=building)
    items = _align_items(dataset.items, vocab)
    stats = {
        "users": seqs.n_users,
        "items": vocab.n_items,
        "interactions": int(len(seqs.items)),
        "mean_seq_len": float(seqs.lengths.mean()),
        "valid_cases": int((split.valid_pos > 0).sum()),
        "test_cases": int((split.test_pos > 0).sum()),
        "dropped_kcore": n0 - df.height,
        "train_pairs": split_counts(split)["train_pairs"],
        "order": dataset.order,
    }
    return Prepared(dataset.name, vocab, items, seqs, split, stats)


def _align_items(items: pl.DataFrame, vocab: ItemVocab) -> pl.DataFrame:
    ids = pl.DataFrame(
        [vocab.series("item"), pl.Series("index", np.arange(1, len(vocab.ids), dtype=np.int64))]
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
    """A digest of the data settings, the source files' sizes and mtimes, the liverec version
    and :data:`PREP_VERSION`, so that a cache written by other preparation code is never reused.
    """
    payload = {k: v for k, v in to_dict(cfg).items() if k not in ("cache", "data_root")}
    payload["files"] = sorted(
        (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in source_files
    )
    payload["liverec_version"] = __version__
    payload["prep_version"] = PREP_VERSION
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def save_prepared(p: Prepared, path: Path) -> None:
    """Write prepared data to ``path``: integer arrays in ``arrays.npz``, the item and user
    ids as Utf8 Parquet columns (exact strings), the catalogue and ``meta.json``."""
    path.mkdir(parents=True, exist_ok=True)
    s, sp = p.sequences, p.split
    np.savez(
        path / "arrays.npz", indptr=s.indptr, items=s.items, ts=s.ts, train_end=sp.train_end,
        valid_pos=sp.valid_pos, test_pos=sp.test_pos,
    )
    p.vocab.series("item").to_frame().write_parquet(path / "vocab.parquet")
    pl.Series("user", s.users.tolist(), dtype=pl.Utf8).to_frame().write_parquet(
        path / "users.parquet")
    p.items.write_parquet(path / "items.parquet")
    meta = {"name": p.name, "split": sp.kind, "stats": p.stats, "prep_version": PREP_VERSION}
    (path / "meta.json").write_text(json.dumps(meta))


def load_prepared(path: Path) -> Prepared:
    """Read what :func:`save_prepared` wrote."""
    meta = json.loads((path / "meta.json").read_text())
    with np.load(path / "arrays.npz", allow_pickle=False) as z:
        seqs_arrays = {k: z[k] for k in ("indptr", "items", "ts")}
        split = Split(meta["split"], z["train_end"], z["valid_pos"], z["test_pos"])
    vocab = ItemVocab.from_ids(pl.read_parquet(path / "vocab.parquet")["item"].to_list())
    users = np.array(pl.read_parquet(path / "users.parquet")["user"].to_list(), dtype=object)
    seqs = Sequences(users, **seqs_arrays)
    items = pl.read_parquet(path / "items.parquet")
    return Prepared(meta["name"], vocab, items, seqs, split, meta["stats"])
