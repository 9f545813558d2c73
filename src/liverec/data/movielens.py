"""MovieLens loaders (100K, latest-small, 1M) and the GroupLens download helper.

Items get the movie title and ``genre:<name>`` attributes; ``text`` is left empty (the text
module builds it). Downloads only happen when :func:`download_movielens` is called explicitly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl

from liverec.config import DataConfig
from liverec.data.loaders import (
    items_for,
    load_table,
    parse_int_column,
    read_lines,
    split_fields,
)
from liverec.data.tables import Dataset, sort_interactions
from liverec.errors import DataError

logger = logging.getLogger(__name__)

BASE_URL = "https://files.grouplens.org/datasets/movielens/"
MD5 = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-latest-small": "be5b02baacd9e70dd97734ea0e19528a",
}
ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip
NO_GENRES = "(no genres listed)"


def _genre_list(genres: pl.Expr, sep: str = "|") -> pl.Expr:
    """``"A|B"`` -> ``["genre:A", "genre:B"]`` (empty or ``(no genres listed)`` -> ``[]``)."""
    parts = genres.str.split(sep).list.eval(
        pl.element().filter((pl.element() != "") & (pl.element() != NO_GENRES))
    )
    return parts.list.eval(pl.lit("genre:") + pl.element())


def _ratings(fields: pl.DataFrame, path: Path) -> pl.DataFrame:
    """user/item/ts interactions from split rating fields (user, item, rating, ts)."""
    for col in ("user", "item", "ts"):
        parse_int_column(fields, col, path)
    return fields.select(
        pl.col("user").str.strip_chars(),
        pl.col("item").str.strip_chars(),
        pl.col("ts").str.strip_chars().cast(pl.Int64),
    )


def _finish(name: str, inter: pl.DataFrame, catalogue: pl.DataFrame | None, src: Path) -> Dataset:
    return Dataset(name, sort_interactions(inter), items_for(inter["item"], catalogue, src))


def _ml100k_genres(root: Path) -> list[str]:
    path = root / "u.genre"
    if not path.is_file():
        return ML100K_GENRES
    fields = split_fields(read_lines(path, "latin-1"), "|", ["name", "index"], path)
    return fields.sort(parse_int_column(fields, "index", path))["name"].to_list()


def load_ml100k(root: str | Path, *, ratings: str | Path | None = None) -> Dataset:
    """Load MovieLens 100K: ``u.data`` (TAB: user item rating ts) and ``u.item`` (``|``, latin-1).

    Args:
        root: The ``ml-100k`` directory.
        ratings: The ratings file (default ``root/u.data``).

    Raises:
        DataError: Missing/empty files or malformed lines (naming file and line).
    """
    root = Path(root)
    ratings = Path(ratings) if ratings else root / "u.data"
    fields = split_fields(read_lines(ratings), "\t", ["user", "item", "rating", "ts"], ratings)
    inter = _ratings(fields, ratings)
    item_path = root / "u.item"
    if not item_path.is_file():
        logger.info("%s not found: items get ids only", item_path)
        return _finish("ml-100k", inter, None, ratings)
    genres = _ml100k_genres(root)
    names = ["item", "title", "release", "video", "url", *genres]
    lines = read_lines(item_path, "latin-1")
    movies = split_fields(lines, "|", names, item_path)
    flags = [pl.when(pl.col(g).str.strip_chars() == "1").then(pl.lit(f"genre:{g}")) for g in genres]
    catalogue = movies.select(
        pl.col("item").str.strip_chars(),
        pl.col("title"),
        attributes=pl.concat_list(flags).list.drop_nulls(),
    )
    return _finish("ml-100k", inter, catalogue, item_path)


def load_ml_latest_small(root: str | Path, *, ratings: str | Path | None = None) -> Dataset:
    """Load MovieLens latest-small: ``ratings.csv`` and ``movies.csv`` (``|``-joined genres).

    Args:
        root: The ``ml-latest-small`` directory.
        ratings: The ratings file (default ``root/ratings.csv``).
    """
    root = Path(root)
    ratings = Path(ratings) if ratings else root / "ratings.csv"
    cfg = DataConfig(user_col="userId", item_col="movieId", time_col="timestamp")
    inter = load_table(ratings, cfg, fmt="csv").interactions
    movies_path = root / "movies.csv"
    catalogue = None
    if movies_path.is_file():
        try:
            movies = pl.read_csv(movies_path, infer_schema=False)
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"{movies_path}: cannot read as csv: {exc}") from None
        missing = [c for c in ("movieId", "title", "genres") if c not in movies.columns]
        if missing:
            raise DataError(
                f"{movies_path}: missing column(s) {missing}; columns present: {movies.columns}"
            )
        catalogue = movies.select(
            item=pl.col("movieId").str.strip_chars(),
            title=pl.col("title"),
            attributes=_genre_list(pl.col("genres").fill_null("")),
        )
    return _finish("ml-latest-small", inter, catalogue, movies_path)


def load_ml1m(root: str | Path, *, ratings: str | Path | None = None) -> Dataset:
    """Load MovieLens 1M: ``ratings.dat`` or ``ratings.dat.gz`` and ``movies.dat`` (latin-1).

    Lines are ``::``-separated: ``user::item::rating::ts`` and ``item::title::genres``.

    Args:
        root: The ``ml-1m`` directory.
        ratings: The ratings file (default ``ratings.dat``, else ``ratings.dat.gz``).
    """
    root = Path(root)
    if ratings is None:
        plain = root / "ratings.dat"
        ratings = plain if plain.is_file() else root / "ratings.dat.gz"
    ratings = Path(ratings)
    fields = split_fields(read_lines(ratings), "::", ["user", "item", "rating", "ts"], ratings)
    inter = _ratings(fields, ratings)
    movies_path = root / "movies.dat"
    catalogue = None
    if movies_path.is_file():
        lines = read_lines(movies_path, "latin-1")
        movies = split_fields(lines, "::", ["item", "title", "genres"], movies_path)
        catalogue = movies.select(
            pl.col("item").str.strip_chars(),
            pl.col("title"),
            attributes=_genre_list(pl.col("genres")),
        )
    return _finish("ml-1m", inter, catalogue, movies_path)


_VARIANT_FILES: dict[str, Callable[..., Dataset]] = {
    "u.data": load_ml100k,
    "ratings.csv": load_ml_latest_small,
    "ratings.dat": load_ml1m,
    "ratings.dat.gz": load_ml1m,
}


def load_movielens(path: str | Path, name: str | None = None) -> Dataset:
    """Load a MovieLens directory or ratings file, detecting the variant from the file names.

    Args:
        path: A directory holding ``u.data``, ``ratings.csv`` or ``ratings.dat[.gz]``, or one
            of those files (other names are read as 1M ``::`` files when they contain ``::``,
            else as 100K TAB files).
        name: Dataset name (default: the variant).

    Raises:
        DataError: When no MovieLens ratings file is found.
    """
    path = Path(path)
    if path.is_dir():
        found = [f for f in _VARIANT_FILES if (path / f).is_file()]
        if not found:
            raise DataError(
                f"{path}: no MovieLens ratings file (expected one of {list(_VARIANT_FILES)})"
            )
        ds = _VARIANT_FILES[found[0]](path)
    elif path.is_file():
        loader = _VARIANT_FILES.get(path.name)
        if loader is None:
            loader = load_ml1m if "::" in read_lines(path)["line"][0] else load_ml100k
        ds = loader(path.parent, ratings=path)
    else:
        raise DataError(f"file not found: {path}")
    return Dataset(name, ds.interactions, ds.items, ds.order) if name else ds


# --------------------------------------------------------------------------- download


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The dataset cache: ``cache_dir``, else ``$LIVEREC_CACHE/datasets``, else
    ``~/.cache/liverec/datasets``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("LIVEREC_CACHE")
    if env:
        return Path(env).expanduser() / "datasets"
    return Path.home() / ".cache" / "liverec" / "datasets"


def verify_md5(path: str | Path, expected: str) -> None:
    """Check a file's MD5 checksum.

    Raises:
        DataError: Naming the file, the expected and the actual checksum.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    if actual != expected.lower():
        raise DataError(f"{path}: md5 checksum {actual} does not match the expected {expected}")


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a zip into ``dest``, refusing members that would land outside it."""
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            target = (dest / member).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise DataError(f"{archive}: member {member!r} would extract outside {dest}")
        zf.extractall(dest)


def _fetch(url: str, target: Path) -> None:
    """Download ``url`` to ``target`` (network; never called in tests)."""
    logger.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=60) as resp, open(target, "wb") as fh:  # noqa: S310
        shutil.copyfileobj(resp, fh)


def download_movielens(variant: str, cache_dir: str | Path | None = None) -> Path:
    """Download, verify and extract a MovieLens archive from GroupLens (once; then cached).

    Args:
        variant: ``ml-100k``, ``ml-latest-small`` or ``ml-1m``.
        cache_dir: Where to keep it (default: see :func:`cache_root`).

    Returns:
        The extracted directory (``<cache>/<variant>``), ready for :func:`load_movielens`.

    Raises:
        DataError: Unknown variant, failed download, or checksum mismatch.
    """
    if variant not in MD5:
        raise DataError(f"unknown MovieLens variant {variant!r}; known: {sorted(MD5)}")
    root = cache_root(cache_dir)
    dest = root / variant
    if dest.is_dir() and any(dest.iterdir()):
        return dest
    root.mkdir(parents=True, exist_ok=True)
    url = f"{BASE_URL}{variant}.zip"
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / f"{variant}.zip"
        try:
            _fetch(url, archive)
        except OSError as exc:
            raise DataError(f"cannot download {url}: {exc}") from None
        verify_md5(archive, MD5[variant])
        _safe_extract(archive, Path(tmp) / "x")
        extracted = Path(tmp) / "x" / variant
        if not extracted.is_dir():
            raise DataError(f"{url}: archive has no top-level {variant}/ folder")
        shutil.move(str(extracted), dest)
    return dest
