"""Item text from catalogue columns through a configurable template."""

from __future__ import annotations

import re

import polars as pl

DEFAULT_TEMPLATE = "{title}. {text}. {attributes}"


def format_attributes(attributes: list[str] | None) -> str:
    """Readable attributes: ``"brand:Kaiyo"`` -> ``"brand Kaiyo"``; bare numeric ids are dropped
    (S3-Rec attribute ids carry no words a language model could read)."""
    words = [a.replace(":", " ").replace("_", " ") for a in attributes or []
             if a and not a.isdigit()]
    return ", ".join(words)


def _clean(text: str) -> str:
    text = re.sub(r"(\s*\.\s*){2,}", ". ", text)  # empty fields leave ". ." behind
    text = re.sub(r"\s+", " ", text).strip(" .,;:|-")
    return text if re.search(r"\w", text) else ""


def item_text(items: pl.DataFrame, template: str = DEFAULT_TEMPLATE) -> list[str]:
    """One text per catalogue row.

    Args:
        items: catalogue with columns title, text, attributes (any may be missing) and others.
        template: a ``str.format`` template over the row's columns; ``{attributes}`` is the
            readable attribute list; ``{text}`` is dropped when it repeats the title.

    Returns:
        Texts in row order (an item without any text gets its id, so it is never empty).
    """
    out = []
    for row in items.iter_rows(named=True):
        fields = {k: ("" if v is None else v) for k, v in row.items()}
        fields["attributes"] = format_attributes(row.get("attributes"))
        fields.setdefault("title", "")
        fields.setdefault("text", "")
        if fields["text"] == fields["title"]:
            fields["text"] = ""
        text = _clean(template.format(**fields))
        out.append(text or f"item {row.get('item', '')}")
    return out
