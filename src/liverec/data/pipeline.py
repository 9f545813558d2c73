"""Load + prepare with the on-disk cache: the one entry point training and evaluation use."""

from __future__ import annotations

import logging
from pathlib import Path

from liverec.config import DataConfig
from liverec.data.prepare import (
    ItemVocab,
    Prepared,
    cache_dir,
    cache_key,
    load_prepared,
    prepare,
    save_prepared,
)
from liverec.data.registry import default_data_root, load_dataset

log = logging.getLogger(__name__)


def source_files(cfg: DataConfig) -> list[Path]:
    """The files a data source reads (for the cache key); empty for generated data."""
    path = Path(cfg.source).expanduser()
    if path.exists():
        return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    if cfg.source == "synthetic":
        return []
    root = default_data_root(cfg.data_root)
    want = cfg.source.lower().replace("-", "").replace("_", "")
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.is_dir() and folder.name.lower().replace("-", "").replace("_", "") == want:
            return sorted(p for p in folder.rglob("*") if p.is_file())
    return []


def load_and_prepare(cfg: DataConfig, vocab: ItemVocab | None = None) -> Prepared:
    """Load ``cfg.source`` and prepare it, reusing the on-disk cache when nothing changed.

    Args:
        cfg: data settings.
        vocab: map onto this vocabulary (a trained model's) instead of building one; such
            results are not cached.
    """
    use_cache = cfg.cache and vocab is None
    path = cache_dir() / "prepared" / cache_key(cfg, source_files(cfg)) if use_cache else None
    if path is not None and (path / "meta.json").is_file():
        log.info("using prepared data from cache %s", path)
        return load_prepared(path)
    prepared = prepare(load_dataset(cfg), cfg, vocab=vocab)
    if path is not None:
        try:
            save_prepared(prepared, path)
        except OSError as exc:  # a read-only cache must not stop training
            log.warning("could not write the data cache at %s: %s", path, exc)
    return prepared
