"""The write-behind journal: every request's record leaves the hot path through a bounded queue.

One writer task drains the queue in batches and commits each batch in a single transaction on
its own thread. ``batched`` durability answers at once and commits within the flush interval;
``sync`` makes the caller wait until its batch is committed (group commit: requests that arrive
while a commit is in flight share the next one). A full queue is refused loudly (503), never
dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from keelwork.errors import OverloadedError
from keelwork.store.engine import Store

log = logging.getLogger("keelwork.journal")


@dataclass(slots=True)
class _Entry:
    journal: dict[str, Any] | None
    quarantine: dict[str, Any] | None
    done: asyncio.Future[None] | None
    at: float


@dataclass(frozen=True, slots=True)
class JournalStats:
    depth: int
    written: int
    batches: int
    write_errors: int


class Journal:
    """Bounded queue + one writer task + one writer thread."""

    def __init__(
        self,
        store: Store,
        *,
        sync: bool = False,
        flush_interval: float = 0.1,
        max_batch: int = 512,
        queue_size: int = 10_000,
        commit_timeout: float = 10.0,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.store = store
        self.sync = sync
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.queue_size = queue_size
        self.commit_timeout = commit_timeout
        self._on_error = on_error
        self._queue: asyncio.Queue[_Entry] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._closing = False
        self.written = 0
        self.batches = 0
        self.write_errors = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def stats(self) -> JournalStats:
        depth = self._queue.qsize() if self._queue else 0
        return JournalStats(depth, self.written, self.batches, self.write_errors)

    async def start(self) -> None:
        if self.running:
            return
        self._closing = False
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keelwork-journal")
        self._task = asyncio.create_task(self._run(), name="keelwork-journal")

    async def close(self) -> None:
        """Flush everything queued, then stop the writer."""
        if self._task is None or self._queue is None:
            return
        self._closing = True
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def submit(
        self, journal: dict[str, Any] | None, quarantine: dict[str, Any] | None = None
    ) -> asyncio.Future[None] | None:
        """Queue one record; in sync mode return the future that resolves on commit."""
        if self._queue is None or self._closing:
            raise OverloadedError(
                "the journal is not running; the service is starting or stopping",
                code="journal.unavailable",
                headers={"Retry-After": "1"},
            )
        done: asyncio.Future[None] | None = (
            asyncio.get_running_loop().create_future() if self.sync else None
        )
        try:
            self._queue.put_nowait(_Entry(journal, quarantine, done, time.monotonic()))
        except asyncio.QueueFull:
            raise OverloadedError(
                f"the journal queue is full ({self.queue_size} records waiting for the store); "
                "retry shortly",
                code="journal.backpressure",
                headers={"Retry-After": "1"},
            ) from None
        return done

    async def record(
        self, journal: dict[str, Any] | None, quarantine: dict[str, Any] | None = None
    ) -> None:
        """Queue one record and, with sync durability, wait until it is committed."""
        done = self.submit(journal, quarantine)
        if done is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(done), self.commit_timeout)
        except TimeoutError:
            raise OverloadedError(
                f"the store did not commit this request's record within {self.commit_timeout:g} s;"
                " it stays queued and will be written when the store recovers",
                code="journal.unavailable",
                headers={"Retry-After": "5"},
            ) from None

    async def _run(self) -> None:
        assert self._queue is not None
        q = self._queue
        while True:
            first = await q.get()
            batch = [first]
            if not self.sync:
                wait = first.at + self.flush_interval - time.monotonic()
                if wait > 0 and q.qsize() < self.max_batch:
                    await asyncio.sleep(wait)
            while len(batch) < self.max_batch and not q.empty():
                batch.append(q.get_nowait())
            await self._commit(batch)
            for _ in batch:
                q.task_done()

    async def _commit(self, batch: list[_Entry]) -> None:
        jrows = [e.journal for e in batch if e.journal is not None]
        qrows = [e.quarantine for e in batch if e.quarantine is not None]
        loop = asyncio.get_running_loop()
        delay = 0.05
        while True:
            try:
                await loop.run_in_executor(self._pool, self.store.write, jrows, qrows)
                break
            except Exception as exc:  # the store is down: keep the batch, retry, never drop
                self.write_errors += 1
                log.error("journal write failed (%s); retrying in %.2fs", exc, delay)
                if self._on_error is not None:
                    self._on_error(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.written += len(batch)
        self.batches += 1
        for e in batch:
            if e.done is not None and not e.done.done():
                e.done.set_result(None)
