"""Micro-batching: requests arriving within a short window share one forward pass.

The first request of a batch waits at most ``window_ms`` (bounded wait) for others, or less
when ``max_batch`` fills first; the batch runs on one worker thread so the event loop never
blocks on the model. While a batch runs, the next one collects, so under load batches grow
by themselves. The reference path is calling ``fn([x])`` per request (batching off).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    """Collect ``submit`` calls into batches for ``fn`` (list in -> list out, same order).

    Args:
        fn: the batch function, run on ``executor``.
        executor: where ``fn`` runs (one thread: forward passes do not compete).
        window_ms: longest wait of a request for others to join its batch.
        max_batch: batch size that flushes at once.
        on_batch: called with each batch size (metrics).
    """

    def __init__(self, fn: Callable[[Sequence[In]], list[Out]], executor: Executor,
                 window_ms: float = 2.0, max_batch: int = 64,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.fn = fn
        self.executor = executor
        self.window_s = window_ms / 1000
        self.max_batch = max_batch
        self.on_batch = on_batch
        self._pending: list[tuple[In, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()  # strong references until each batch is done

    async def submit(self, item: In) -> Out:
        """Queue one input; returns its output once its batch has run."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((item, fut))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.window_s, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.ensure_future(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[In, asyncio.Future]]) -> None:
        if self.on_batch is not None:
            self.on_batch(len(batch))
        loop = asyncio.get_running_loop()
        try:
            outs = await loop.run_in_executor(self.executor, self.fn, [x for x, _ in batch])
        except Exception as exc:  # every waiter gets the error, none hangs
            log.exception("batch of %d failed", len(batch))
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), out in zip(batch, outs):
            if not fut.done():
                fut.set_result(out)
