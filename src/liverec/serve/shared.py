"""One service across workers and replicas that share a Redis store.

Each process (uvicorn worker or replica) is a *replica* with an id. It:

- says it is alive every ``HEARTBEAT_S`` (a hash of replicas with the model each serves);
- tails the store's ``changes`` stream (a blocking XREAD, so a change arrives in
  milliseconds) and applies catalogue changes (``item``) to its served model;
- follows the shared *model record* (run directory and version): a replica that starts while
  others are alive serves the recorded run, not its own command line's;
- takes part in coordinated reloads, a two-phase commit through Redis:

  1. the replica that received ``POST /admin/reload`` takes the reload lock (one reload at a
     time across replicas; a second is refused), loads and checks the run, then publishes
     ``prepare`` (tx id, run directory, version);
  2. every live replica loads and checks the same run and votes ``ok`` or an error (a
     different version, say: the files differ between machines);
  3. once every live replica voted ok, the coordinator writes the model record and publishes
     ``commit``; every replica then swaps in the handle it prepared. Any error, or a replica
     that does not answer within ``reload_timeout_s``, publishes ``abort``: nobody switches,
     the old model keeps serving, and the caller gets the reason (HTTP 409).

A replica that was cut off from Redis resumes the stream where it stopped, and re-applies the
whole shared catalogue once it reads again (the stream keeps only the last ~10,000 changes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from pathlib import Path

from liverec.errors import ArtifactError
from liverec.serve.errors import ReloadRefused, StoreUnavailable
from liverec.serve.model_handle import ModelHandle

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
ALIVE_S = 3.0  # a replica without a heartbeat for this long is not waited for
VOTE_POLL_S = 0.01


def replica_id() -> str:
    """``host:pid:random`` (unique even when a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class SharedState:
    """Keeps one engine in step with the others sharing its Redis store.

    Args:
        engine: the :class:`liverec.serve.engine.Engine` of this process.
        reload_timeout_s: how long a coordinated reload waits for every replica's vote.
    """

    def __init__(self, engine, reload_timeout_s: float = 120.0) -> None:
        self.engine = engine
        self.store = engine.store
        self.id = replica_id()
        self.reload_timeout_s = reload_timeout_s
        self._after = "0-0"
        self._prepared: dict[str, asyncio.Task] = {}
        self._tasks: list[asyncio.Task] = []
        self._committed: set[str] = set()
        self.draining = False

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # --- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Join: follow the model record (when other replicas are alive), catch up on the
        catalogue, then start the heartbeat and the change listener."""
        self._after = await self._run(self.store.last_change)
        others = {k: v for k, v in (await self._run(self.store.replicas, ALIVE_S)).items()
                  if k != self.id}
        record = await self._run(self.store.get_model)
        handle = self.engine.handle
        if record and others and record["version"] != handle.version:
            log.info("joining replicas that serve %s (not %s)", record["version"],
                     handle.version)
            try:
                # the replicas already serve it: its catalogue was checked when it was loaded
                new = await self._load(record["run_dir"], record["version"], allow=True)
                await self._run(self.engine.install, new)
            except ArtifactError as exc:
                log.error("cannot serve the shared model %s, serving %s: %s",
                          record["version"], handle.version, exc)
        elif not others:
            await self._run(self.store.set_model, self._record(handle, "start"))
        for item in await self._run(self.store.items):  # added since the engine read them
            if item["item_id"] not in self.engine.handle.lookup:
                await self._run(self.engine.apply_item, item)
        await self._run(self.store.heartbeat, self.id, self._info())
        self._tasks = [asyncio.create_task(self._heartbeat(), name="liverec-heartbeat"),
                       asyncio.create_task(self._listen(), name="liverec-changes")]

    async def stop(self) -> None:
        """Leave: stop the tasks and remove this replica from the live set."""
        for task in [*self._tasks, *self._prepared.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._prepared.values(), return_exceptions=True)
        self._tasks = []
        try:
            await self._run(self.store.forget_replica, self.id)
        except StoreUnavailable as exc:
            log.warning("could not deregister replica %s: %s", self.id, exc)

    def _info(self) -> dict:
        return {"version": self.engine.handle.version, "pid": os.getpid(),
                "draining": self.draining}

    @staticmethod
    def _record(handle: ModelHandle, tx: str) -> dict:
        return {"run_dir": str(handle.run_dir.resolve()), "version": handle.version, "tx": tx}

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self._run(self.store.heartbeat, self.id, self._info())
            except StoreUnavailable as exc:
                log.debug("heartbeat failed: %s", exc)
            await asyncio.sleep(HEARTBEAT_S)

    # --- changes --------------------------------------------------------------------------

    async def _listen(self) -> None:
        resync = False
        while True:
            try:
                rows = await self.store.read_changes(self._after)
                if resync:  # changes may have been trimmed from the stream meanwhile
                    for item in await self._run(self.store.items):
                        await self._run(self.engine.apply_item, item)
                    resync = False
            except StoreUnavailable as exc:
                log.debug("change stream: %s", exc)
                resync = True
                await asyncio.sleep(0.25)
                continue
            for entry_id, kind, payload in rows:
                self._after = entry_id
                try:
                    await self._apply(kind, payload)
                except (StoreUnavailable, ArtifactError) as exc:
                    log.warning("change %s %s not applied: %s", kind, entry_id, exc)

    async def _apply(self, kind: str, payload: dict) -> None:
        if kind == "item":
            await self._run(self.engine.apply_item, payload)
        elif kind == "prepare" and payload["coordinator"] != self.id:
            self._prepared[payload["tx"]] = asyncio.create_task(self._prepare(payload))
        elif kind == "commit":
            await self._commit(payload)
        elif kind == "abort":
            task = self._prepared.pop(payload["tx"], None)
            if task is not None:
                task.cancel()

    async def _load(self, run_dir: str | Path, version: str, allow: bool = False
                    ) -> ModelHandle:
        new = await self._run(self.engine.load_handle, Path(run_dir), allow)
        if new.version != version:
            raise ArtifactError(f"{run_dir} is {new.version} on replica {self.id}, "
                                f"not {version}")
        return await self._run(self.engine.stage, new)  # so that the commit is a swap

    async def _prepare(self, payload: dict) -> ModelHandle | None:
        tx = payload["tx"]
        try:
            new = await self._load(payload["run_dir"], payload["version"],
                                   payload.get("allow_catalogue_change", False))
        except Exception as exc:  # any load failure is this replica's "no" vote, with why
            await self._run(self.store.vote, tx, self.id, False, f"{type(exc).__name__}: {exc}")
            return None
        await self._run(self.store.vote, tx, self.id, True, "")
        return new

    async def _commit(self, payload: dict) -> None:
        tx = payload["tx"]
        if tx in self._committed:
            return
        self._committed.add(tx)
        task = self._prepared.pop(tx, None)
        new = await task if task is not None else None
        if new is None and payload["version"] != self.engine.handle.version:
            new = await self._load(payload["run_dir"], payload["version"],  # missed prepare
                                   payload.get("allow_catalogue_change", False))
        if new is not None:
            await self._run(self.engine.install, new)

    def fetch_items(self, item_ids: list[str]) -> list[str]:
        """Apply items of the shared catalogue not seen yet; returns the ids it lacks too.
        Blocking (called from a worker thread)."""
        for item in self.store.get_items(item_ids):
            self.engine.apply_item(item)
        return [i for i in item_ids if i not in self.engine.handle.lookup]

    # --- coordinated reload ---------------------------------------------------------------

    async def reload(self, target: Path, allow_catalogue_change: bool = False
                     ) -> tuple[str, str]:
        """Two-phase reload of every live replica (see the module docstring).

        Raises:
            ArtifactError: this or another replica cannot load the run, a replica did not
                answer in time, or another reload holds the lock; nobody switched.
        """
        tx = uuid.uuid4().hex
        holder = await self._run(self.store.lock, "reload", tx, self.reload_timeout_s + 30)
        if holder is not None:
            raise ReloadRefused(f"another reload is in progress (transaction {holder}); "
                                "try again when it has finished")
        try:
            return await self._reload(target, tx, allow_catalogue_change)
        finally:
            await self._run(self.store.unlock, "reload", tx)

    async def _reload(self, target: Path, tx: str, allow: bool) -> tuple[str, str]:
        new = await self._run(self.engine.load_handle, target, allow)
        await self._run(self.engine.stage, new)
        payload = {"tx": tx, "run_dir": str(Path(target).resolve()), "version": new.version,
                   "coordinator": self.id, "allow_catalogue_change": allow}
        await self._run(self.store.vote, tx, self.id, True, "")
        await self._run(self.store.publish, "prepare", payload)
        deadline = time.monotonic() + self.reload_timeout_s
        while True:
            votes = await self._run(self.store.votes, tx)
            refused = {k: v["message"] for k, v in votes.items() if not v["ok"]}
            live = set(await self._run(self.store.replicas, ALIVE_S)) | {self.id}
            missing = live - set(votes)
            if refused or (missing and time.monotonic() > deadline):
                await self._run(self.store.publish, "abort", {"tx": tx})
                why = "; ".join(f"{k}: {v}" for k, v in refused.items()) or \
                    f"no answer in {self.reload_timeout_s:.0f} s from {sorted(missing)}"
                raise ReloadRefused(f"reload aborted on every replica: {why}")
            if not missing:
                break
            await asyncio.sleep(VOTE_POLL_S)
        self._committed.add(tx)
        await self._run(self.store.set_model, self._record(new, tx))
        await self._run(self.store.publish, "commit", payload)
        return await self._run(self.engine.install, new)
