"""A question -> answer demo catalogue written for liverec: a shop help desk's FAQ as items.

``faq.jsonl`` holds 42 entries (``item`` id, ``title`` = the question, ``text`` = the answer,
``topic``); ``questions.jsonl`` holds 84 paraphrased customer questions (two per entry, worded
differently from the entry) with the id of the entry that answers each. Both were written for
this project (no outside source). Usage::

    from liverec.data.faq import load_faq
    from liverec.text import TextIndex, build_encoder

    index = TextIndex(build_encoder("minilm"), template="{title}. {text}").fit(load_faq())
    index.search("my parcel never came", k=3)   # [("faq-05", 0.61), ...]

or ``liverec recommend --items faq --query "my parcel never came"``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import polars as pl

from liverec.errors import DataError

FAQ_TEMPLATE = "{title}. {text}"  # question and answer: both carry the words people ask with


def _read_jsonl(name: str) -> list[dict]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_faq() -> pl.DataFrame:
    """The FAQ catalogue: ``item``, ``title`` (question), ``text`` (answer), ``attributes``
    (``["topic:<topic>"]``). -> 42 rows."""
    rows = _read_jsonl("faq.jsonl")
    return pl.DataFrame({
        "item": [r["item"] for r in rows],
        "title": [r["title"] for r in rows],
        "text": [r["text"] for r in rows],
        "attributes": [[f"topic:{r['topic']}"] for r in rows],
    })


def faq_questions() -> list[tuple[str, str]]:
    """The paraphrased test questions: ``(question, id of the answering entry)``. -> 84."""
    return [(r["question"], r["answer"]) for r in _read_jsonl("questions.jsonl")]


def load_catalogue(name_or_path: str) -> pl.DataFrame:
    """A catalogue for text search: ``"faq"`` (the built-in FAQ) or a JSONL/JSON/CSV/Parquet
    file with an ``item`` column and any of ``title``, ``text``, ``attributes``.

    Raises:
        DataError: the file is missing, of an unknown kind, or has no ``item`` column.
    """
    if name_or_path == "faq":
        return load_faq()
    path = Path(name_or_path)
    if not path.is_file():
        raise DataError(f"catalogue {name_or_path!r}: not 'faq' and no such file")
    readers = {".jsonl": pl.read_ndjson, ".ndjson": pl.read_ndjson, ".json": pl.read_json,
               ".csv": pl.read_csv, ".parquet": pl.read_parquet}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown catalogue format; use one of {sorted(readers)}")
    try:
        items = reader(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the catalogue ({exc})") from None
    if "item" not in items.columns:
        raise DataError(f"{path}: the catalogue needs an 'item' column (the item ids)")
    return items.with_columns(pl.col("item").cast(pl.Utf8))
