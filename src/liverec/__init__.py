"""liverec: pretrained transformer recommenders, trained, compressed and served in real time.

Importing this package does no work; ``liverec.load`` imports torch on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load", "__version__"]

if TYPE_CHECKING:
    from liverec.model.recommender import Recommender


def load(run_dir: Any) -> Recommender:
    """Load a trained run directory; see :func:`liverec.model.recommender.load`."""
    from liverec.model.recommender import load as _load

    return _load(run_dir)
