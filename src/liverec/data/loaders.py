"""File-format loaders: S3-Rec sequences, BERT4Rec pairs and generic CSV/TSV/Parquet tables.

Every loader returns a :class:`~liverec.data.tables.Dataset`. Parsing is vectorised with polars:
a file is read as one column of lines, split into tokens and exploded. Every bad input raises a
:class:`~liverec.errors.DataError` naming the file and the line (or column); rows that are
dropped on purpose (blank lines, null ids, exact duplicates) are counted in the log.
"""

from __future__ import annotations

import difflib
import gzip
import io
import json
import logging
from pathlib import Path

import polars as pl

from liverec.config import DataConfig
from liverec.data.tables import Dataset, empty_items, sort_interactions
from liverec.errors import DataError

logger = logging.getLogger(__name__)

TABLE_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_INT_RE = r"^-?\d+$"


# --------------------------------------------------------------------------- shared helpers


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """Read a whole text file (gzip when it ends in ``.gz``), checking it exists and is not empty.

    Args:
        path: The file.
        encoding: Text encoding (MovieLens 100K/1M files are ``latin-1``).

    Returns:
        The decoded text with ``\\r\\n`` line ends normalised to ``\\n``.

    Raises:
        DataError: When the file is missing, not decodable or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: not a valid gzip file ({exc})") from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}, line {line}: not valid {encoding} text ({exc.reason})") from None
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    return text.replace("\r\n", "\n")


def read_lines(path: str | Path, encoding: str = "utf-8") -> pl.DataFrame:
    """The non-blank lines of a text file as a frame with ``line_no`` (1-based) and ``line``.

    Blank lines are skipped and counted in the log.
    """
    lines = read_text(path, encoding).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    df = pl.DataFrame({"line": lines}, schema={"line": pl.Utf8}).with_row_index("line_no", 1)
    df = df.with_columns(pl.col("line_no").cast(pl.Int64))
    blank = df["line"].str.strip_chars() == ""
    n_blank = int(blank.sum())
    if n_blank:
        logger.info("%s: skipped %d blank line(s)", path, n_blank)
        df = df.filter(~blank)
    return df


def split_fields(
    lines: pl.DataFrame, sep: str, names: list[str], path: str | Path, *, rest_in_last: bool = False
) -> pl.DataFrame:
    """Split each line on a literal separator into exactly ``len(names)`` string columns.

    Args:
        lines: Frame from :func:`read_lines` (``line_no``, ``line``).
        sep: The literal separator (``"\\t"``, ``"|"``, ``"::"`` ...).
        names: Column names, in order.
        path: The file, for error messages.
        rest_in_last: Allow more separators; the last column keeps the rest of the line.

    Returns:
        ``line_no`` plus one Utf8 column per name.

    Raises:
        DataError: Naming the first line with the wrong number of fields.
    """
    n = len(names)
    counts = lines["line"].str.count_matches(sep, literal=True) + 1
    bad = (counts < n) if rest_in_last else (counts != n)
    if bad.any():
        i = int(bad.arg_true()[0])
        raise DataError(
            f"{path}, line {lines['line_no'][i]}: expected {n} {sep!r}-separated fields "
            f"({', '.join(names)}), found {counts[i]}"
        )
    field = pl.col("line").str.splitn(sep, n).struct.rename_fields(names).alias("_fields")
    return lines.select("line_no", field).unnest("_fields")


def parse_int_column(df: pl.DataFrame, col: str, path: str | Path) -> pl.Series:
    """Parse a Utf8 column of ``df`` (which has ``line_no``) as Int64, naming the first bad line."""
    stripped = df[col].str.strip_chars()
    parsed = stripped.cast(pl.Int64, strict=False)
    bad = parsed.is_null()
    if bad.any():
        i = int(bad.arg_true()[0])
        raise DataError(
            f"{path}, line {df['line_no'][i]}: column {col!r} value {stripped[i]!r} "
            "is not an integer"
        )
    return parsed


def _tokens(path: Path, integer_ids: bool) -> pl.DataFrame:
    """``line_no`` and ``tok`` (whitespace-separated tokens) for every non-blank line."""
    df = read_lines(path).select("line_no", tok=pl.col("line").str.extract_all(r"\S+"))
    if integer_ids:
        flat = df.explode("tok")
        bad = flat.filter(~pl.col("tok").str.contains(_INT_RE))
        if bad.height:
            line_no, tok = bad.row(0)
            raise DataError(f"{path}, line {line_no}: token {tok!r} is not an integer id")
    return df


def items_for(
    item_ids: pl.Series, catalogue: pl.DataFrame | None, source: str | Path
) -> pl.DataFrame:
    """The Items table for exactly the items in ``item_ids``, filled from a catalogue.

    Args:
        item_ids: Item ids of the interactions (duplicates allowed).
        catalogue: Frame with ``item`` and any of ``title``/``text``/``attributes``, or None.
        source: Where the catalogue came from, for the log.

    Returns:
        Items sorted by id in shortlex order (byte length, then bytes; ids are not parsed);
        unknown title/text ``""`` and unknown attributes ``[]``.
    """
    base = empty_items(item_ids)
    base = base.sort(pl.col("item").str.len_bytes(), pl.col("item"))
    if catalogue is None or catalogue.height == 0:
        return base
    catalogue = catalogue.unique("item", keep="first", maintain_order=True)
    unused = catalogue.height - catalogue.join(base.select("item"), on="item").height
    if unused:
        logger.info("%s: %d catalogue item(s) never occur in the interactions", source, unused)
    cols = [c for c in ("title", "text", "attributes") if c in catalogue.columns]
    merged = base.drop(cols).join(catalogue.select("item", *cols), on="item", how="left")
    fill = {"title": pl.lit(""), "text": pl.lit(""), "attributes": pl.lit([], pl.List(pl.Utf8))}
    merged = merged.with_columns(pl.col(c).fill_null(fill[c]) for c in cols)
    return merged.select("item", "title", "text", "attributes")


# --------------------------------------------------------------------------- S3-Rec and pairs


def read_item_attributes(path: str | Path) -> pl.DataFrame:
    """Read an S3-Rec ``*_item2attributes.json`` (``{"<item>": [attr, ...]}``).

    Returns:
        ``item`` (Utf8) and ``attributes`` (List[Utf8]).

    Raises:
        DataError: Invalid JSON (with line and column), not an object, or a non-list value.
    """
    path = Path(path)
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}, line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object mapping item id to a list of attributes")
    values = pl.Series("attributes", list(data.values()), strict=False)
    if not isinstance(values.dtype, pl.List):
        key = next(k for k, v in data.items() if not isinstance(v, list))
        raise DataError(f"{path}: item {key!r} has attributes {data[key]!r}, expected a list")
    return pl.DataFrame(
        {"item": pl.Series(list(data.keys()), dtype=pl.Utf8), "attributes": values}
    ).with_columns(pl.col("attributes").cast(pl.List(pl.Utf8)))


def read_item_titles(path: str | Path) -> pl.DataFrame:
    """Read an S3-Rec titles TSV with header ``item_id<TAB>asin<TAB>title``.

    Returns:
        ``item`` and ``title`` (Utf8).

    Raises:
        DataError: Missing ``item_id``/``title`` header columns or a line with too few fields.
    """
    lines = read_lines(path)
    header = lines["line"][0].split("\t")
    missing = [c for c in ("item_id", "title") if c not in header]
    if missing:
        raise DataError(f"{path}, line 1: header lacks column(s) {missing}; found {header}")
    rest_in_last = header[-1] == "title"
    fields = split_fields(lines.slice(1), "\t", header, path, rest_in_last=rest_in_last)
    return fields.select(item=pl.col("item_id").str.strip_chars(), title=pl.col("title"))


def load_s3rec(
    path: str | Path,
    attributes_path: str | Path | None = None,
    titles_path: str | Path | None = None,
    name: str | None = None,
    *,
    integer_ids: bool = True,
) -> Dataset:
    """Load an S3-Rec sequence file: one line per user, ``user item item ...`` in time order.

    Args:
        path: The sequence file.
        attributes_path: Optional ``*_item2attributes.json``.
        titles_path: Optional titles TSV (``item_id``, ``asin``, ``title``).
        name: Dataset name (default: the file stem).
        integer_ids: Require every token to be an integer (the S3-Rec convention).

    Returns:
        The dataset; ``ts`` is the position within the user's sequence.

    Raises:
        DataError: Missing/empty file, a line with a user but no items, a non-integer token.
    """
    path = Path(path)
    df = _tokens(path, integer_ids)
    short = df.filter(pl.col("tok").list.len() < 2)
    if short.height:
        line_no, tok = short.row(0)
        raise DataError(
            f"{path}, line {line_no}: user {tok[0]!r} has no items (expected 'user item item ...')"
        )
    inter = (
        df.select(user=pl.col("tok").list.first(), item=pl.col("tok").list.slice(1))
        .explode("item")
        .with_columns(ts=pl.int_range(pl.len(), dtype=pl.Int64).over("user"))
    )
    catalogue = None
    if attributes_path is not None:
        catalogue = read_item_attributes(attributes_path)
    if titles_path is not None:
        titles = read_item_titles(titles_path)
        if catalogue is None:
            catalogue = titles
        else:
            catalogue = catalogue.join(titles, on="item", how="full", coalesce=True)
    items = items_for(inter["item"], catalogue, attributes_path or titles_path or path)
    return Dataset(name or path.stem, sort_interactions(inter), items, order="sequence")


def load_pairs(path: str | Path, name: str | None = None, *, integer_ids: bool = True) -> Dataset:
    """Load a BERT4Rec pair file: ``user item`` per line, grouped by user in time order.

    Args:
        path: The pair file.
        name: Dataset name (default: the file stem).
        integer_ids: Require both tokens to be integers.

    Returns:
        The dataset; ``ts`` is the position within the user's lines.

    Raises:
        DataError: Missing/empty file, a line without exactly two fields, a non-integer token.
    """
    path = Path(path)
    df = _tokens(path, integer_ids)
    n_tok = df["tok"].list.len()
    bad = n_tok != 2
    if bad.any():
        i = int(bad.arg_true()[0])
        raise DataError(
            f"{path}, line {df['line_no'][i]}: expected 2 fields (user item), found {n_tok[i]}"
        )
    inter = df.select(
        user=pl.col("tok").list.get(0), item=pl.col("tok").list.get(1)
    ).with_columns(ts=pl.int_range(pl.len(), dtype=pl.Int64).over("user"))
    items = items_for(inter["item"], None, path)
    return Dataset(name or path.stem, sort_interactions(inter), items, order="sequence")


# --------------------------------------------------------------------------- generic tables


def _read_table_frame(path: Path, fmt: str) -> pl.DataFrame:
    """Read CSV/TSV (every column as text) or Parquet, turning polars errors into DataError."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        if fmt == "parquet":
            return pl.read_parquet(path)
        sep = "," if fmt == "csv" else "\t"
        return pl.read_csv(path, separator=sep, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read as {fmt}: {first}") from None


def _table_format(path: Path, fmt: str | None) -> str:
    fmt = fmt or TABLE_FORMATS.get(path.suffix.lower())
    if fmt not in ("csv", "tsv", "parquet"):
        raise DataError(
            f"{path}: cannot tell the table format from the name; set data.format to "
            "csv, tsv or parquet"
        )
    return fmt


def parse_time(values: pl.Series, where: str, first_line: int = 2) -> pl.Series:
    """Turn a time column into int64 unix seconds.

    Accepts integers, floats (floored), datetimes/dates and text holding any of those or
    ISO-8601 datetimes (naive ones are read as UTC).

    Args:
        values: The column.
        where: ``"<file>, column 'x'"`` for error messages.
        first_line: File line of the first value (2 for a CSV with a header; 0 = no lines).

    Raises:
        DataError: Naming the first empty or unparsable value.
    """
    dtype = values.dtype
    if dtype != pl.Utf8:
        return _seconds(values, where, first_line)
    text = values.str.strip_chars()
    best = None
    for parse in (_as_int, _as_float, _as_datetime):
        parsed = parse(text)
        if parsed.null_count() == 0:
            return _seconds(parsed, where, first_line)
        if best is None or parsed.null_count() < best.null_count():
            best = parsed
    _check_nulls(best, text, where, first_line)  # raises, naming the first value `best` missed
    raise AssertionError("unreachable")


def _as_int(text: pl.Series) -> pl.Series:
    return text.cast(pl.Int64, strict=False)


def _as_float(text: pl.Series) -> pl.Series:
    return text.cast(pl.Float64, strict=False)


def _as_datetime(text: pl.Series) -> pl.Series:
    try:
        return text.str.to_datetime(strict=False, time_zone="UTC")
    except pl.exceptions.PolarsError:
        return pl.Series(text.name, [None] * len(text), dtype=pl.Datetime("us", "UTC"))


def _seconds(values: pl.Series, where: str, first_line: int) -> pl.Series:
    _check_nulls(values, values, where, first_line)
    if values.dtype.is_integer():
        return values.cast(pl.Int64)
    if values.dtype.is_float():
        return values.floor().cast(pl.Int64)
    if values.dtype == pl.Date or isinstance(values.dtype, pl.Datetime):
        return values.cast(pl.Datetime("us")).dt.epoch("s")
    raise DataError(f"{where}: cannot use {values.dtype} values as times")


def _check_nulls(parsed: pl.Series, original: pl.Series, where: str, first_line: int) -> None:
    bad = parsed.is_null()
    if bad.any():
        i = int(bad.arg_true()[0])
        at = f", line {first_line + i}" if first_line else f", row {i}"
        raise DataError(f"{where}{at}: cannot parse time value {original[i]!r}")


# Column names tried, in this order and ignoring case, when data.time_col is not set.
TIME_ALIASES = (
    "timestamp", "time", "ts", "datetime", "date", "event_time", "event_timestamp",
    "time_stamp", "created_at", "unix_time", "unixtime", "epoch",
)


def resolve_time_col(columns: list[str], cfg: DataConfig, path: str | Path) -> str | None:
    """The time column of a table with ``columns``, or None for file order.

    ``data.time_col`` unset (None): the first column named like one of :data:`TIME_ALIASES`
    (case-insensitive; said at INFO unless it is ``timestamp``), else file order with a
    WARNING. ``data.time_col=""``: file order on purpose. Any other name must exist.

    Raises:
        DataError: An explicitly named time column that the file lacks, listing its columns.
    """
    taken = {cfg.user_col, cfg.item_col, cfg.event_col}
    if cfg.time_col == "":
        logger.info("%s: data.time_col is empty: events are ordered by file position", path)
        return None
    if cfg.time_col is not None:
        if cfg.time_col in columns:
            return cfg.time_col
        close = [c for c in columns if c.lower() == cfg.time_col.lower()]
        close = close or difflib.get_close_matches(cfg.time_col, columns, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"{path}: no time column {cfg.time_col!r} (data.time_col); columns present: "
            f"{columns}{hint} (data.time_col=\"\" orders events by file position)"
        )
    by_lower = {}
    for c in columns:
        if c not in taken:
            by_lower.setdefault(c.lower(), c)
    for alias in TIME_ALIASES:
        if alias in by_lower:
            col = by_lower[alias]
            if col != TIME_ALIASES[0]:
                logger.info("%s: no column 'timestamp'; using %r as the time column "
                            "(set data.time_col to choose another)", path, col)
            return col
    logger.warning(
        "%s: no time column (looked for %s; columns: %s): events are ordered by file "
        "position; set data.time_col to name one", path, ", ".join(TIME_ALIASES), columns)
    return None


def id_column(values: pl.Series, where: str) -> pl.Series:
    """An id column as Utf8 without changing any id: text stays as it is, integers become
    their decimal string, categoricals their labels.

    Raises:
        DataError: Any other type (floats, dates, ...), which has no exact text form.
    """
    dtype = values.dtype
    if dtype == pl.Utf8:
        return values
    if dtype.is_integer() or dtype == pl.Categorical or isinstance(dtype, pl.Enum):
        return values.cast(pl.Utf8)
    raise DataError(
        f"{where}: ids must be text or integers, not {dtype} (a {dtype} id has no exact text "
        "form); store the column as text"
    )


def load_table(path: str | Path, cfg: DataConfig, fmt: str | None = None) -> Dataset:
    """Load a generic CSV/TSV/Parquet interaction table using the config's column mapping.

    CSV/TSV columns are read as text, so ids keep leading zeros, long digit strings etc.;
    Parquet integer id columns become their decimal strings.

    Args:
        path: The table.
        cfg: Supplies ``user_col``, ``item_col``, ``time_col`` (see :func:`resolve_time_col`)
            and ``event_col`` (optional).
        fmt: ``csv``, ``tsv`` or ``parquet``; default ``cfg.format`` or the file extension.

    Returns:
        The dataset with an id-only items table; ``order`` is ``"file"`` when no time column
        was used.

    Raises:
        DataError: Unreadable file, a missing mapped column (time included when named),
            ids that are neither text nor integers, unparsable times.
    """
    path = Path(path)
    fmt = _table_format(path, fmt or cfg.format)
    df = _read_table_frame(path, fmt)
    first_line = 2 if fmt != "parquet" else 0
    required = [cfg.user_col, cfg.item_col] + ([cfg.event_col] if cfg.event_col else [])
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns present: {df.columns}")
    time_col = resolve_time_col(df.columns, cfg, path)
    if df.height == 0:
        raise DataError(f"{path}: no rows")
    if time_col is not None:
        ts = parse_time(df[time_col], f"{path}, column {time_col!r}", first_line)
    else:
        ts = pl.int_range(df.height, dtype=pl.Int64, eager=True)
    cols = {
        "user": id_column(df[cfg.user_col], f"{path}, column {cfg.user_col!r}"),
        "item": id_column(df[cfg.item_col], f"{path}, column {cfg.item_col!r}"),
        "ts": ts,
    }
    if cfg.event_col:
        cols["event"] = df[cfg.event_col].cast(pl.Utf8)
    inter = pl.DataFrame(cols)
    inter = _drop_unusable(inter, path)
    name = path.stem
    order = "time" if time_col is not None else "file"
    return Dataset(name, sort_interactions(inter), items_for(inter["item"], None, path), order)


def _drop_unusable(inter: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Drop rows with a null/empty user or item and exact duplicate rows, logging the counts."""
    ok = inter.filter(
        pl.col("user").is_not_null() & pl.col("item").is_not_null()
        & (pl.col("user").str.strip_chars() != "") & (pl.col("item").str.strip_chars() != "")
    )
    if ok.height < inter.height:
        n_bad = inter.height - ok.height
        logger.warning("%s: dropped %d row(s) with an empty user or item", path, n_bad)
    if ok.height == 0:
        raise DataError(f"{path}: no rows with both a user and an item")
    unique = ok.unique(maintain_order=True)
    if unique.height < ok.height:
        logger.info("%s: dropped %d exact duplicate row(s)", path, ok.height - unique.height)
    return unique


def table_from_text(text: str, sep: str) -> pl.DataFrame:
    """Parse CSV text with a header into an all-Utf8 frame (used by the MovieLens loaders)."""
    return pl.read_csv(io.StringIO(text), separator=sep, infer_schema=False)
