"""API keys: where they come from, their scopes, and the constant-time check.

Keys come from ``LIVEREC_SERVE_API_KEY`` (several separated by commas, for rotation) and/or a
key file (``--api-key-file`` / ``LIVEREC_SERVE_API_KEY_FILE``: one key per line, blank lines and
``#`` comments skipped). A key may start with its scope, ``read:KEY``, ``write:KEY`` or
``admin:KEY``; a key without one is an admin key. Scopes nest: admin > write > read.

- read: a person's data (``GET /v1/users/{id}``, ``/v1/explain``, ``/v1/stats``,
  ``GET /v1/recommend?user_id=...``);
- write: read + ``POST /v1/events`` and ``POST /v1/items``;
- admin: write + ``POST /admin/reload``.

Only SHA-256 digests of the keys are kept; a presented key is compared with every one of them
with :func:`hmac.compare_digest` (time independent of which key, if any, matches). The key file
is re-read when its modification time or size changes (looked at most once a second) and on
``SIGHUP``; a key file that cannot be read any more leaves the keys as they were (logged).

Nothing here imports FastAPI: ``liverec retrain`` reads its key with :func:`client_key`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from enum import IntEnum
from pathlib import Path

from liverec.errors import ConfigError

log = logging.getLogger(__name__)

ENV_KEY = "LIVEREC_SERVE_API_KEY"
ENV_KEY_FILE = "LIVEREC_SERVE_API_KEY_FILE"
HEADER = "X-API-Key"
SHORT_KEY = 16  # keys shorter than this are accepted with a warning
RECHECK_S = 1.0


class Scope(IntEnum):
    """What a key may do; a higher scope includes the lower ones."""

    READ = 1
    WRITE = 2
    ADMIN = 3


def parse_entry(text: str, where: str) -> tuple[Scope, str] | None:
    """``"read:KEY"`` -> (READ, "KEY"); ``"KEY"`` -> (ADMIN, "KEY"); blank/comment -> None.

    Raises:
        ConfigError: a key with white space inside (naming ``where``, never the key).
    """
    text = text.strip()
    if not text or text.startswith("#"):
        return None
    scope = Scope.ADMIN
    head, sep, rest = text.partition(":")
    if sep and head.lower() in ("read", "write", "admin"):
        scope, text = Scope[head.upper()], rest.strip()
    if not text or any(c.isspace() for c in text):
        raise ConfigError(f"{where}: an API key is empty or has white space inside")
    return scope, text


def parse_keys(text: str, where: str, sep: str = "\n") -> list[tuple[Scope, str]]:
    """Every (scope, key) in ``text`` (entries separated by ``sep``)."""
    out = []
    for n, part in enumerate(text.split(sep), 1):
        entry = parse_entry(part, f"{where} entry {n}")
        if entry is not None:
            out.append(entry)
    return out


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _read_file(path: Path) -> list[tuple[Scope, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"API key file {path}: cannot read it ({type(exc).__name__})") from None
    return parse_keys(text, f"API key file {path.name}")


class KeyRing:
    """The service's keys: ``scope_of(presented)`` -> the key's scope or None.

    Args:
        inline: keys separated by commas (the ``api_key`` setting), or None.
        path: a key file, or None.

    Raises:
        ConfigError: no key at all, an unreadable key file, or a malformed entry.
    """

    def __init__(self, inline: str | None = None, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._inline = parse_keys(inline or "", "API key setting", sep=",")
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._entries: list[tuple[bytes, Scope]] = []
        self.reload(strict=True)
        if not self._entries:
            raise ConfigError("no API key given: the key setting and the key file are empty")

    def __len__(self) -> int:
        return len(self._entries)

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def reload(self, strict: bool = False) -> None:
        """Read the key file again (``SIGHUP`` does this); keep the old keys if it fails."""
        entries = list(self._inline)
        stamp = None
        if self.path is not None:
            stamp = self._file_stamp()
            try:
                entries += _read_file(self.path)
            except ConfigError as exc:
                if strict:
                    raise
                log.error("%s; keeping the %d keys read before", exc, len(self._entries))
                return
            mode = os.stat(self.path).st_mode if stamp is not None else 0
            if mode & 0o077 and strict:
                log.warning("API key file %s can be read by other users (mode %o); "
                            "chmod 600 it", self.path, mode & 0o777)
        short = sum(len(k) < SHORT_KEY for _, k in entries)
        if short:
            log.warning("%d API key(s) shorter than %d characters", short, SHORT_KEY)
        with self._lock:
            self._entries = [(_digest(k), s) for s, k in entries]
            self._stamp = stamp
        if not strict:
            log.info("API keys re-read: %d keys", len(entries))

    def refresh(self) -> None:
        """Re-read the key file if it changed (stat at most once per ``RECHECK_S``)."""
        if self.path is None:
            return
        now = time.monotonic()
        if now - self._checked < RECHECK_S:
            return
        self._checked = now
        stamp = self._file_stamp()
        if stamp is not None and stamp != self._stamp:
            self.reload()

    def scope_of(self, presented: str | None) -> Scope | None:
        """The highest scope of a key equal to ``presented`` (None: no such key).

        Every stored digest is compared (constant time each), whichever matches."""
        if not presented:
            return None
        d = _digest(presented)
        best = None
        for digest, scope in self._entries:
            if hmac.compare_digest(d, digest) and (best is None or scope > best):
                best = scope
        return best


def client_key(key: str | None = None, path: str | Path | None = None,
               scope: Scope = Scope.ADMIN) -> str | None:
    """The key a client (``liverec retrain --server``) sends: the first one of at least
    ``scope`` from ``key``, else the file ``path``, else ``LIVEREC_SERVE_API_KEY``, else
    ``LIVEREC_SERVE_API_KEY_FILE``; None when none is set.

    Raises:
        ConfigError: a key file that cannot be read, or keys of none of them of ``scope``.
    """
    path = path or None
    sources: list[tuple[str, list[tuple[Scope, str]]]] = []
    if key:
        sources.append(("--api-key", parse_keys(key, "--api-key", sep=",")))
    elif path:
        sources.append(("--api-key-file", _read_file(Path(path))))
    elif os.environ.get(ENV_KEY):
        sources.append((ENV_KEY, parse_keys(os.environ[ENV_KEY], ENV_KEY, sep=",")))
    elif os.environ.get(ENV_KEY_FILE):
        sources.append((ENV_KEY_FILE, _read_file(Path(os.environ[ENV_KEY_FILE]))))
    for name, entries in sources:
        for s, k in entries:
            if s >= scope:
                return k
        raise ConfigError(f"{name}: no key with the {scope.name.lower()} scope")
    return None
