"""An on-disk vector cache keyed by (encoder name, text hash), so re-runs do not re-encode.

One SQLite file (WAL mode, safe for several processes) under ``$LIVEREC_CACHE/text`` or
``~/.cache/liverec/text``; vectors are stored as float32 bytes.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from liverec.text.encoder import TextEncoder

log = logging.getLogger(__name__)
_CHUNK = 500  # SQLite bound-parameter batches


def default_cache_path() -> Path:
    from liverec.data.prepare import cache_dir

    return cache_dir() / "text" / "vectors.sqlite"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class VectorCache:
    """Vectors by (encoder, text). Follows sklearn style: ``__init__`` stores the path only.

    Args:
        path: the SQLite file; None = the default location.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.hits_ = 0
        self.misses_ = 0

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE IF NOT EXISTS vectors (encoder TEXT, hash TEXT, dim INTEGER, "
                    "vec BLOB, PRIMARY KEY (encoder, hash))")
        return con

    def get(self, encoder: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``hashes`` (missing ones are absent from the dict)."""
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(hashes))
        with self._connect() as con:
            for start in range(0, len(uniq), _CHUNK):
                part = uniq[start : start + _CHUNK]
                marks = ",".join("?" * len(part))
                rows = con.execute(f"SELECT hash, vec FROM vectors WHERE encoder = ? AND hash IN "
                                   f"({marks})", [encoder, *part])
                for h, blob in rows:
                    found[h] = np.frombuffer(blob, dtype=np.float32)
        con.close()
        return found

    def put(self, encoder: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Store rows of ``vectors`` (n, d) under ``hashes`` (n,)."""
        rows = [(encoder, h, int(v.shape[0]), np.ascontiguousarray(v, np.float32).tobytes())
                for h, v in zip(hashes, vectors)]
        with self._connect() as con:
            con.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)
        con.close()


def encode_cached(encoder: TextEncoder, texts: Sequence[str],
                  cache: VectorCache | None = None) -> np.ndarray:
    """Encode ``texts``, reading known vectors from the cache and storing the new ones.

    Args:
        encoder: the text encoder (its ``name`` keys the cache).
        texts: the texts (duplicates are encoded once).
        cache: the vector cache; None = the default one.

    Returns:
        (n, d) float32 vectors, row i for texts[i].
    """
    cache = cache if cache is not None else VectorCache()
    hashes = [text_hash(t) for t in texts]
    try:
        found = cache.get(encoder.name, hashes)
    except sqlite3.Error as exc:  # a broken or read-only cache must not stop training
        log.warning("text cache %s unreadable (%s); encoding without it", cache.path, exc)
        found = {}
    todo = {h: t for h, t in zip(hashes, texts) if h not in found}
    cache.hits_ += len(hashes) - sum(h in todo for h in hashes)
    cache.misses_ += len(todo)
    if todo:
        log.info("encoding %d new texts with %s (%d cached)", len(todo), encoder.name,
                 len(found))
        new = encoder.encode(list(todo.values()))  # (m, d)
        found.update(zip(todo, new))
        try:
            cache.put(encoder.name, list(todo), new)
        except sqlite3.Error as exc:
            log.warning("could not write the text cache %s: %s", cache.path, exc)
    if not hashes:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.stack([found[h] for h in hashes]).astype(np.float32)  # (n, d)
