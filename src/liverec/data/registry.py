"""Resolve ``data.source`` (a registry name or a path) to a loaded :class:`Dataset`.

Registry names: ``synthetic``, ``beauty``, ``lastfm``, ``beauty-bert4rec``, ``ml-100k``,
``ml-latest-small``, ``ml-1m``; the benchmark files live under the data root (see
:func:`default_data_root`). Any other source must be an existing file or MovieLens directory;
its format comes from ``data.format`` or is detected from the name and the first lines.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path

from liverec.config import DataConfig
from liverec.data import movielens, synthetic
from liverec.data.loaders import TABLE_FORMATS, load_pairs, load_s3rec, load_table
from liverec.data.tables import Dataset
from liverec.errors import DataError

ENV_VAR = "LIVEREC_DATA"
SNIFF_BYTES = 64 * 1024


def default_data_root(cfg_root: str | None, *, must_exist: bool = False) -> Path:
    """The benchmark data root: ``cfg_root``, else ``$LIVEREC_DATA``, else ``../shared/data``.

    Args:
        cfg_root: ``data.data_root`` from the config (None = not set).
        must_exist: Raise when the chosen directory does not exist.

    Raises:
        DataError: (``must_exist`` only) naming all three places that were considered.
    """
    env = os.environ.get(ENV_VAR)
    fallback = Path.cwd() / ".." / "shared" / "data"
    root = Path(cfg_root) if cfg_root else Path(env) if env else fallback
    root = root.expanduser()
    if must_exist and not root.is_dir():
        raise DataError(
            f"data root {root} does not exist; it is taken from data.data_root "
            f"(now {cfg_root!r}), else ${ENV_VAR} (now {env!r}), else ../shared/data relative "
            f"to the current directory ({fallback.resolve()})"
        )
    return root


def s3rec_with_sidecars(path: str | Path, name: str | None = None, *,
                        integer_ids: bool = True) -> Dataset:
    """Load an S3-Rec file ``X.txt`` with ``X_item2attributes.json``/``X_item_titles.tsv``
    from the same folder when they exist (``integer_ids``: see :func:`load_s3rec`)."""
    path = Path(path)
    attrs = path.with_name(f"{path.stem}_item2attributes.json")
    titles = path.with_name(f"{path.stem}_item_titles.tsv")
    return load_s3rec(
        path,
        attrs if attrs.is_file() else None,
        titles if titles.is_file() else None,
        name=name,
        integer_ids=integer_ids,
    )


def _under_root(cfg: DataConfig, *parts: str) -> Path:
    path = default_data_root(cfg.data_root, must_exist=True).joinpath(*parts)
    if not path.exists():
        hint = ""
        if parts[0] in movielens.MD5:
            hint = f" (download it with liverec.data.movielens.download_movielens({parts[0]!r}))"
        raise DataError(f"{path} not found{hint}")
    return path


REGISTRY: dict[str, Callable[[DataConfig], Dataset]] = {
    "synthetic": lambda cfg: synthetic.generate(cfg.synthetic),
    "beauty": lambda cfg: s3rec_with_sidecars(_under_root(cfg, "Beauty", "Beauty.txt"), "beauty"),
    "lastfm": lambda cfg: s3rec_with_sidecars(_under_root(cfg, "LastFM", "LastFM.txt"), "lastfm"),
    "beauty-bert4rec": lambda cfg: load_pairs(
        _under_root(cfg, "Beauty_BERT4Rec", "beauty.txt"), name="beauty-bert4rec"
    ),
    "ml-100k": lambda cfg: movielens.load_movielens(_under_root(cfg, "ml-100k"), "ml-100k"),
    "ml-latest-small": lambda cfg: movielens.load_movielens(
        _under_root(cfg, "ml-latest-small"), "ml-latest-small"
    ),
    "ml-1m": lambda cfg: movielens.load_movielens(_under_root(cfg, "ml-1m"), "ml-1m"),
}

FORMATS: dict[str, Callable[[Path, DataConfig], Dataset]] = {
    # a user's own files may use any id strings (the benchmark files above must be integers)
    "s3rec": lambda path, cfg: s3rec_with_sidecars(path, integer_ids=False),
    "pairs": lambda path, cfg: load_pairs(path, integer_ids=False),
    "csv": lambda path, cfg: load_table(path, cfg, "csv"),
    "tsv": lambda path, cfg: load_table(path, cfg, "tsv"),
    "parquet": lambda path, cfg: load_table(path, cfg, "parquet"),
    "movielens": lambda path, cfg: movielens.load_movielens(path),
}


def _head_lines(path: Path) -> list[str]:
    """The complete, non-blank lines in the first 64 KiB of a (possibly gzipped) text file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    text = head.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if len(head) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut off
    return [line.rstrip("\r") for line in lines if line.strip()]


def detect_format(path: str | Path) -> str:
    """Guess a file's format from its extension, else from its first lines.

    ``.parquet``/``.csv``/``.tsv`` by extension; text: ``::`` -> ``movielens`` (1M ratings),
    4 TAB-separated columns -> ``movielens`` (100K ``u.data``), exactly two tokens per line ->
    ``pairs`` (any id strings), two or more tokens with a varying count -> ``s3rec``.

    Raises:
        DataError: When the file is missing, empty or the format cannot be told.
    """
    path = Path(path)
    by_ext = TABLE_FORMATS.get(path.suffix.lower())
    if by_ext:
        return by_ext
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    lines = _head_lines(path)
    if not lines:
        raise DataError(f"{path}: file is empty")
    if all("::" in line for line in lines):
        return "movielens"
    if all(line.count("\t") == 3 for line in lines):
        return "movielens"
    counts = {len(line.split()) for line in lines}
    if counts == {2}:  # also right for S3-Rec lines with one item each: both mean (user, item)
        return "pairs"
    if min(counts) >= 2 and len(counts) > 1:
        return "s3rec"
    raise DataError(
        f"{path}: cannot detect the format from the first lines; set data.format to one of "
        f"{sorted(FORMATS)}"
    )


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load ``cfg.source``: a registry name, or a path to a file or MovieLens directory.

    Args:
        cfg: The data config (source, format, data_root, column mapping, synthetic settings).

    Raises:
        DataError: Unknown name that is not an existing path (listing the registry names),
            unknown format, or any loader error.
    """
    loader = REGISTRY.get(cfg.source)
    if loader is not None:
        return loader(cfg)
    path = Path(cfg.source).expanduser()
    if not path.exists():
        raise DataError(
            f"data.source {cfg.source!r} is neither a registry name ({', '.join(REGISTRY)}) "
            "nor an existing file or directory"
        )
    fmt = cfg.format or ("movielens" if path.is_dir() else detect_format(path))
    reader = FORMATS.get(fmt)
    if reader is None:
        raise DataError(f"unknown data.format {fmt!r}; known: {', '.join(FORMATS)}")
    return reader(path, cfg)
