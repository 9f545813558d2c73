"""Errors that liverec raises on purpose: each carries a message a user can act on."""

from __future__ import annotations


class LiverecError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class DataError(LiverecError):
    """Input data is missing, malformed or empty. The message names the file and line or column."""


class ConfigError(LiverecError, ValueError):
    """A configuration value or override is invalid (also a ValueError: a bad value)."""


class ArtifactError(LiverecError):
    """A run directory is missing files, or they do not match each other."""


class NonFiniteError(LiverecError):
    """A loss, weight or score is NaN or infinite: a diverged or broken model."""


class UnservableModelError(ArtifactError):
    """A complete run that must not serve: non-finite item rows, user vectors or scores, or a
    catalogue whose ids would change meaning. The message is safe to show a client once its
    paths are removed (it names items and counts, never file contents)."""
