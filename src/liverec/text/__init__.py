"""Item text -> vectors: the TextEncoder protocol, encoders, an on-disk vector cache, templates.

Nothing here loads a model at import time; sentence-transformers is imported on first encode.
"""

from __future__ import annotations

from liverec.text.cache import VectorCache, encode_cached
from liverec.text.encoder import (
    ENCODERS,
    HashEncoder,
    SentenceTransformerEncoder,
    TextEncoder,
    build_encoder,
)
from liverec.text.template import DEFAULT_TEMPLATE, item_text

__all__ = [
    "DEFAULT_TEMPLATE",
    "ENCODERS",
    "HashEncoder",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "VectorCache",
    "build_encoder",
    "encode_cached",
    "item_text",
]
