"""Processes of the fault-tolerance benchmark: the servers it starts and its load generator.

Each server runs in its own process with the same ``uvicorn.Config`` as ``bench/_common.py``
(one worker, uvloop, httptools, access log off), so keelwork, the upstreams and the chaos proxy
do not share an event loop or a GIL with each other or with the load:

    python bench/_faults_common.py upstream --port P [--delay-s S]
    python bench/_faults_common.py chaos --port P --upstream URL --faults JSON
    python bench/_faults_common.py keelwork --port P --database-url URL --service DIR [...]
    python bench/_faults_common.py load PLAN.json OUT.json

The load generator is asyncio + httpx in its own process. It records every request (latency,
status, whether the answer is the exact expected text, which model answered) so the
orchestrator can split latencies by outcome, which wrk cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import re
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UVICORN_SETTINGS = "1 worker, loop=uvloop, http=httptools, access_log off, log_level warning"
_CUT_LOG = "ASGI callable returned without completing response."
_SERIES = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# --- servers ----------------------------------------------------------------------------------


def _run(app: Any, port: int, graceful_s: int = 10) -> None:
    """The settings of ``bench/_common.py serve``, for every server of this benchmark."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=graceful_s,
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises SIGINT after shutdown
        uvicorn.Server(config).run()


class _HideIntendedCuts(logging.Filter):
    """The proxy's ``reset`` fault returns mid-response on purpose; uvicorn logs each one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _CUT_LOG


def serve_upstream(port: int, delay_s: float) -> None:
    """keelwork's deterministic OpenAI-compatible upstream (``echo: <last user message>``)."""
    from keelwork.testing import UpstreamConfig, openai_app

    config = UpstreamConfig(delay_s=delay_s)
    # The upstream keeps a log of every request for tests; a benchmark only needs the count,
    # and an ever-growing list would skew long runs. Keep the counter, drop the entries.
    config.record = _counting_recorder(config)
    _run(openai_app(config), port)


def _counting_recorder(config: Any) -> Any:
    counter = {"n": 0}

    def record(request: Any, body: Any) -> int:
        n = counter["n"]
        counter["n"] = n + 1
        return n

    return record


def serve_chaos(port: int, upstream: str, faults: str) -> None:
    """keelwork's seeded chaos proxy in front of ``upstream`` (a root URL, no /v1)."""
    from keelwork.chaos.faults import FaultsSpec
    from keelwork.chaos.proxy import chaos_app

    logging.getLogger("uvicorn.error").addFilter(_HideIntendedCuts())
    app = chaos_app(upstream, FaultsSpec.model_validate(json.loads(faults)))
    _run(app, port, graceful_s=2)  # held (`timeout`) requests must not block shutdown


def serve_keelwork(port: int, database_url: str, service_dirs: Sequence[str]) -> None:
    """``create_app`` over the given service directories, all journaling to one store."""
    import keelwork
    from keelwork.server import create_app

    services = [keelwork.load_service(d, database_url=database_url) for d in service_dirs]
    _run(create_app(services), port)


# --- metrics ----------------------------------------------------------------------------------


def metric_values(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of ``name`` in a Prometheus text page, as (labels, value)."""
    out: list[tuple[dict[str, str], float]] = []
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = _SERIES.match(line.strip())
        if m is None or m.group(1) != name:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.append((labels, float(m.group(3))))
    return out


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels``, or None."""
    for have, value in metric_values(text, name):
        if all(have.get(k) == v for k, v in labels.items()):
            return value
    return None


# --- load generator ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where one kind of request goes: keelwork's OpenAI surface or an upstream directly."""

    name: str
    url: str
    model: str
    key: str | None = None

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.key:
            h["Authorization"] = f"Bearer {self.key}"
        return h


@dataclass
class PhaseLog:
    """Per-request columns of one phase (parallel lists keep the JSON small)."""

    target: list[int] = field(default_factory=list)
    start_us: list[int] = field(default_factory=list)
    lat_us: list[int] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    model: list[str | None] = field(default_factory=list)
    fallback: list[bool | None] = field(default_factory=list)
    request_id: list[str | None] = field(default_factory=list)
    error: list[str | None] = field(default_factory=list)
    metric: list[float | None] = field(default_factory=list)


def _answer_ok(content: bytes, expected: str) -> bool:
    """A 200 only counts when it carries the exact answer the upstream must have given."""
    try:
        body = json.loads(content)
        return bool(body["choices"][0]["message"]["content"] == expected)
    except (ValueError, KeyError, IndexError, TypeError):
        return False


def time_wait_to(port: int) -> int:
    """Sockets in TIME_WAIT towards ``port``: each is a connection that was closed."""
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "06" and int(parts[2].rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LoadGen:
    """Closed-loop clients: each sends its next request as soon as the last one answered."""

    def __init__(self, plan: dict[str, Any]) -> None:
        import httpx

        self.plan = plan
        self.timeout = httpx.Timeout(float(plan.get("timeout_s", 30.0)))
        # One client (one connection) per simulated client and server: httpx's pool gets slow
        # with many connections in one client, which made the generator the bottleneck at 80+
        # clients; per server, so connections survive from one phase to the next.
        # Creating an httpx client builds an SSL context (~10 ms of CPU) unless given one:
        # share one, and create every client before the first phase, outside the timing.
        self.ssl = ssl.create_default_context()
        self.clients: dict[str, list[httpx.AsyncClient]] = {}
        for phase in plan["phases"]:
            urls = [t["url"] for t in phase["targets"]]
            if phase.get("until_metric"):
                urls.append(phase["until_metric"]["url"])
            for url in urls:
                self.client(url, int(phase["concurrency"]) - 1)
        self.seq = 0  # global request number: every body is unique, every answer predictable
        self.pids: dict[str, int] = {k: int(v) for k, v in plan.get("pids", {}).items()}
        self.pids["load"] = os.getpid()

    async def run(self) -> list[dict[str, Any]]:
        out = []
        try:
            for phase in self.plan["phases"]:
                out.append(await self.phase(phase))
        finally:
            for pool in self.clients.values():
                for c in pool:
                    await c.aclose()
        return out

    def client(self, url: str, worker: int) -> Any:
        """The client of simulated client ``worker`` for the server at ``url``."""
        import httpx

        origin = str(httpx.URL(url).copy_with(path="/", query=None))
        pool = self.clients.setdefault(origin, [])
        while len(pool) <= worker:
            pool.append(
                httpx.AsyncClient(
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    timeout=self.timeout,
                    verify=self.ssl,
                    trust_env=False,
                )
            )
        return pool[worker]

    async def phase(self, spec: dict[str, Any]) -> dict[str, Any]:
        import httpx

        targets = [Target(**t) for t in spec["targets"]]
        headers = [t.headers() for t in targets]
        requests: int | None = spec.get("requests")
        seconds: float | None = spec.get("seconds")
        honour = bool(spec.get("honour_retry_after", False))
        until: dict[str, Any] | None = spec.get("until_metric")
        stagger = float(spec.get("stagger_s", 0.0))
        rng = random.Random(f"stagger:{spec['label']}")
        offsets = [rng.uniform(0.0, stagger) for _ in range(int(spec["concurrency"]))]
        tw_port: int | None = self.plan.get("time_wait_port")
        tw0 = time_wait_to(tw_port) if tw_port else None
        log = PhaseLog()
        issued = 0
        stop = False
        cpu0 = {k: _cpu_seconds(p) for k, p in self.pids.items()}
        t_start = time.perf_counter_ns()
        t_end = t_start + int(seconds * 1e9) if seconds else None

        async def worker(w: int) -> None:
            nonlocal issued, stop
            if offsets[w]:  # spread the clients' first requests (not timed, not counted)
                await asyncio.sleep(offsets[w])
            while not stop:
                if requests is not None and issued >= requests:
                    return
                if t_end is not None and time.perf_counter_ns() >= t_end:
                    return
                k = issued % len(targets)
                issued += 1
                self.seq += 1
                text = f"question {self.seq}"
                t = targets[k]
                body = json.dumps(
                    {"model": t.model, "messages": [{"role": "user", "content": text}]}
                ).encode()
                t0 = time.perf_counter_ns()
                retry_after = 0.0
                try:
                    r = await self.client(t.url, w).post(t.url, content=body, headers=headers[k])
                    lat = time.perf_counter_ns() - t0
                    status = r.status_code
                    ok = status == 200 and _answer_ok(r.content, f"echo: {text}")
                    fb = r.headers.get("x-keelwork-fallback")
                    log.model.append(r.headers.get("x-keelwork-model"))
                    log.fallback.append(None if fb is None else fb == "true")
                    log.request_id.append(r.headers.get("x-request-id"))
                    log.error.append(None)
                    if status == 503:
                        retry_after = float(r.headers.get("retry-after", "0") or 0)
                except httpx.HTTPError as exc:
                    lat = time.perf_counter_ns() - t0
                    status, ok = 0, False
                    log.model.append(None)
                    log.fallback.append(None)
                    log.request_id.append(None)
                    log.error.append(type(exc).__name__)
                log.target.append(k)
                log.start_us.append((t0 - t_start) // 1000)
                log.lat_us.append(lat // 1000)
                log.status.append(status)
                log.ok.append(ok)
                if until is not None:
                    page = (await self.client(until["url"], w).get(until["url"])).text
                    value = metric_value(page, until["name"], **until["labels"])
                    log.metric.append(value)
                    if value == until["value"] or issued >= until["max_requests"]:
                        stop = True
                if honour and retry_after > 0:
                    await asyncio.sleep(retry_after)

        await asyncio.gather(*(worker(w) for w in range(int(spec["concurrency"]))))
        elapsed = (time.perf_counter_ns() - t_start) / 1e9
        cpu1 = {k: _cpu_seconds(p) for k, p in self.pids.items()}
        cpu: dict[str, float | None] = {}
        for k in self.pids:
            a, b = cpu0[k], cpu1[k]
            cpu[k] = None if a is None or b is None else b - a
        return {
            "label": spec["label"],
            "concurrency": spec["concurrency"],
            "stagger_s": stagger,
            "time_wait": None if tw_port is None else [tw0, time_wait_to(tw_port)],
            "targets": [t.name for t in targets],
            "elapsed_s": elapsed,
            "cpu_s": cpu,
            "log": log.__dict__,
        }


def run_load(plan_path: Path, out_path: Path) -> None:
    plan = json.loads(plan_path.read_text())
    try:
        import uvloop

        phases = uvloop.run(LoadGen(plan).run())
    except ImportError:
        phases = asyncio.run(LoadGen(plan).run())
    out_path.write_text(json.dumps({"phases": phases}))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="A server of the fault benchmark, or its load.")
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("upstream")
    u.add_argument("--port", type=int, required=True)
    u.add_argument("--delay-s", type=float, default=0.0)
    c = sub.add_parser("chaos")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--upstream", required=True)
    c.add_argument("--faults", required=True, help="a FaultsSpec as JSON")
    k = sub.add_parser("keelwork")
    k.add_argument("--port", type=int, required=True)
    k.add_argument("--database-url", required=True)
    k.add_argument("--service", action="append", required=True)
    g = sub.add_parser("load")
    g.add_argument("plan", type=Path)
    g.add_argument("out", type=Path)
    a = p.parse_args(argv)
    if a.cmd == "upstream":
        serve_upstream(a.port, a.delay_s)
    elif a.cmd == "chaos":
        serve_chaos(a.port, a.upstream, a.faults)
    elif a.cmd == "keelwork":
        serve_keelwork(a.port, a.database_url, a.service)
    else:
        run_load(a.plan, a.out)


if __name__ == "__main__":
    main()
