"""Playwright's sync API for the browser tests, safe beside a uvicorn server in the same process."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")


@contextlib.contextmanager
def sync_playwright():
    """``playwright.sync_api.sync_playwright()`` on asyncio's default event loop.

    Older uvicorn (0.29, the declared floor) installs uvloop's event-loop policy process-wide
    when a server starts, and the tests start theirs in a thread. On a uvloop loop Playwright
    1.40's driver never answers, so ``sync_playwright()`` waits forever (it hung CI's
    lowest-versions job). The policy is reset first; running servers keep their own loops.
    """
    from playwright.sync_api import sync_playwright as _sync_playwright

    asyncio.set_event_loop_policy(None)
    with _sync_playwright() as p:
        yield p
