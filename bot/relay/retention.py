"""The retention sweep: deletes old delivered/failed relay posts and releases old Idempotency-Keys.

Runs once at start and then every ``interval`` seconds, in one process at a time: a pass runs under
``store.lock("relay-retention")`` and is skipped when another process holds it. Each batch
(``batch_size`` rows) is one short statement, and the sweep yields to the event loop between
batches, so the group-commit writer and the HTTP handlers never wait behind a large delete.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.relay.metrics import RelayMetrics
from bot.relay.outbox import Outbox
from bot.storage.errors import StorageError

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 3600.0
BATCH_SIZE = 1000


LOCK_NAME = "relay-retention"


@dataclass(frozen=True, slots=True)
class SweepResult:
    posts_deleted: int
    keys_released: int
    batches: int
    skipped: bool = False  # another process was sweeping


class RetentionSweeper:
    def __init__(
        self,
        outbox: Outbox,
        *,
        retention: float,
        idempotency_window: float,
        metrics: RelayMetrics | None = None,
        clock: Callable[[], float] = time.time,
        interval: float = SWEEP_INTERVAL,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        """``retention`` and ``idempotency_window`` in seconds."""
        self.outbox = outbox
        self.retention = retention
        self.idempotency_window = idempotency_window
        self.clock = clock
        self.interval = interval
        self.batch_size = batch_size
        self.sweeps = 0
        self._swept = asyncio.Condition()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.pruned = metrics.pruned if metrics is not None else None

    async def sweep(self) -> SweepResult:
        """One full pass: batches until nothing old is left (or ``stop()`` was called). Skipped (nothing
        done, ``skipped``) while another process sweeps."""
        async with self.outbox.store.lock(LOCK_NAME) as held:
            result = await self._sweep() if held else SweepResult(0, 0, 0, skipped=True)
        async with self._swept:
            self.sweeps += 1
            self._swept.notify_all()
        return result

    async def _sweep(self) -> SweepResult:
        now = self.clock()
        batches = 0
        released = await self._drain(self.outbox.expire_idempotency_keys, now - self.idempotency_window)
        batches += released[1]
        deleted = await self._drain(self.outbox.prune_finished, now - self.retention)
        batches += deleted[1]
        if self.pruned is not None:
            self.pruned.labels(what="posts").inc(deleted[0])
            self.pruned.labels(what="idempotency_keys").inc(released[0])
        if deleted[0] or released[0]:
            log.info("relay retention: deleted %d post(s), released %d idempotency key(s) in %d batch(es)",
                     deleted[0], released[0], batches)
        return SweepResult(deleted[0], released[0], batches)

    async def _drain(self, step: Callable[[float, int], Awaitable[int]], before: float) -> tuple[int, int]:
        """Run ``step`` batch after batch until one comes back short; return (rows, batches)."""
        total = batches = 0
        while not self._stop.is_set():
            n = await step(before, self.batch_size)
            batches += 1
            total += n
            if n < self.batch_size:
                break
            await asyncio.sleep(0)  # let waiting requests and the outbox writer in between batches
        return total, batches

    async def wait_for_sweeps(self, count: int) -> None:
        """Return once ``count`` sweeps have finished (for tests and start-up checks)."""
        async with self._swept:
            await self._swept.wait_for(lambda: self.sweeps >= count)

    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="relay-retention")

    async def stop(self) -> None:
        """Stop after the current batch (a batch is never cancelled half-way)."""
        if self._task is None:
            return
        task, self._task = self._task, None
        self._stop.set()
        await task

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.sweep()
            except StorageError as exc:  # the database's one-line reason (unreachable, locked …)
                log.warning("relay retention: the sweep failed (%s); retrying at the next interval", exc)
            except Exception:
                log.exception("relay retention: the sweep failed; retrying at the next interval")
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except TimeoutError:
                pass
