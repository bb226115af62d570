"""Crash safety: with `durability: sync`, a kill -9 under concurrent load loses no record of a
request that was answered 2xx."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from keelwork.security.keys import KeyStore
from keelwork.store.engine import Store
from tests.pg import free_port

pytestmark = pytest.mark.slow


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited: {proc.stdout.read().decode() if proc.stdout else ''}"
            )
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("server did not become ready")


class Load:
    """Many clients posting until the server dies; remembers every 2xx request id."""

    def __init__(self, base: str, key: str, workers: int = 32) -> None:
        self.base, self.key, self.workers = base, key, workers
        self.acked: set[str] = set()
        self.failures = 0
        self.killed = asyncio.Event()

    async def _worker(self, client: httpx.AsyncClient, w: int) -> None:
        i = 0
        while not (self.killed.is_set() and self.failures > 0):
            i += 1
            try:
                r = await client.post(
                    "/v1/services/toy/predict",
                    json={"text": f"w{w} r{i}"},
                    headers={"Authorization": f"Bearer {self.key}"},
                )
            except httpx.HTTPError:
                self.failures += 1
                if self.killed.is_set():
                    return
                await asyncio.sleep(0.01)
                continue
            if r.status_code == 200:
                self.acked.add(r.json()["request_id"])

    async def run(self, kill: Callable[[], None], kill_after: int) -> None:
        limits = httpx.Limits(max_connections=self.workers)
        async with httpx.AsyncClient(base_url=self.base, timeout=5, limits=limits) as client:
            tasks = [asyncio.create_task(self._worker(client, w)) for w in range(self.workers)]
            while len(self.acked) < kill_after:
                await asyncio.sleep(0.005)
            kill()  # requests are in flight right now
            self.killed.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)


def test_kill_9_under_load_loses_no_acknowledged_request(
    make_service_dir: Callable[..., Path], db_url: str
) -> None:
    d = make_service_dir({"journal": {"durability": "sync"}})
    store = Store(db_url)
    store.migrate()
    key, _ = KeyStore(store).create("client")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keelwork",
            "serve",
            str(d),
            "--port",
            str(port),
            "--database-url",
            db_url,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(base, proc)

        load = Load(base, key)
        asyncio.run(load.run(lambda: os.kill(proc.pid, signal.SIGKILL), kill_after=300))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    acked = load.acked
    assert len(acked) >= 300, "the load never got going; the test proves nothing"
    assert load.failures > 0, "the kill did not interrupt in-flight requests"
    journaled = store.journal_ids("toy")
    missing = acked - journaled
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged requests are not journaled"
