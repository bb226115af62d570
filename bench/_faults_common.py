"""Processes of the fault-tolerance benchmark: the servers it starts and its load generator.

Each server runs in its own process with the same ``uvicorn.Config`` as ``bench/_common.py``
(one worker, uvloop, httptools, access log off), so keelwork, the upstreams and the chaos proxy
do not share an event loop or a GIL with each other or with the load:

    python bench/_faults_common.py upstream --port P [--delay-s S]
    python bench/_faults_common.py chaos --port P --upstream URL --faults JSON
    python bench/_faults_common.py keelwork --port P --database-url URL --service DIR [...]
    python bench/_faults_common.py floor --port P
    python bench/_faults_common.py load PLAN.json OUT.json

The load generator is asyncio in its own process, with one of two clients per phase: httpx
(what a Python caller would use; about 1 ms of CPU per request here) or the light client below
(raw keep-alive HTTP/1.1 on asyncio with httptools parsing, about 0.05 ms), for phases where the
generator's own cost would otherwise be measured instead of the server's. It records every
request (latency, status, whether the answer is the exact expected text, which model
answered) so the orchestrator can split latencies by outcome, which wrk cannot.
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

UVICORN_SETTINGS = (
    "1 worker, loop=uvloop, http=httptools, access_log off, log_level warning, keep-alive 30 s"
)
_CUT_LOG = "ASGI callable returned without completing response."
_SERIES = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# --- servers ----------------------------------------------------------------------------------


def _run(app: Any, port: int, graceful_s: int = 10) -> None:
    """The settings of ``bench/_common.py serve`` (plus a longer keep-alive), for every server."""
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
        # Rounds alternate between servers, so a client's connection can sit idle 8-11 s; with
        # uvicorn's default of 5 s the next round's first request raced the server's close
        # (ReadError, the request never reached the app). Production servers sit behind load
        # balancers whose idle timeouts are set the same way: longer than the client's.
        timeout_keep_alive=30,
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises SIGINT after shutdown
        uvicorn.Server(config).run()


class _HideIntendedCuts(logging.Filter):
    """The proxy's ``reset`` fault returns mid-response on purpose; uvicorn logs each one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _CUT_LOG


_FLOOR_BODY = b'{"error":{"code":"overloaded","message":"at the limit; retry shortly"}}'
_FLOOR_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_FLOOR_BODY)).encode()),
    (b"retry-after", b"1"),
]


async def _floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the request, answer 503 at once: the least any ASGI app on uvicorn can do."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/ready":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 503, "headers": _FLOOR_HEADERS})
    await send({"type": "http.response.body", "body": _FLOOR_BODY})


def serve_floor(port: int) -> None:
    """The floor of shedding on this machine: a bare ASGI app that refuses every request."""
    _run(_floor_app, port)


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


class _LightConnection(asyncio.Protocol):
    """One keep-alive connection of the light client: request bytes out, httptools parses in."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.done: asyncio.Future[None] | None = None
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.keep_alive = True

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # a malformed answer fails this request, visibly
            self._finish(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(ConnectionError(f"connection lost: {exc!r}"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self._finish(None)

    def _finish(self, exc: Exception | None) -> None:
        d = self.done
        if d is not None and not d.done():
            if exc is None:
                d.set_result(None)
            else:
                d.set_exception(exc)


@dataclass
class LightResponse:
    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode()


class LightClient:
    """A client for one server with one connection, at a fraction of httpx's cost per request.

    It sends each request in one write and parses answers in C, reconnecting when the server
    closes the connection. Failures raise httpx's ``TransportError`` so the phase loop treats
    both clients alike. Plain http only: the benchmark's servers are all local.
    """

    def __init__(self, origin: str, timeout: float) -> None:
        import httpx

        url = httpx.URL(origin)
        self.host, self.port = url.host, url.port or 80
        self.host_header = f"{self.host}:{self.port}".encode()
        self.timeout = timeout
        self.conn: _LightConnection | None = None

    async def _request(self, method: bytes, url: str, body: bytes, headers: dict[str, str]) -> Any:
        import httpx

        path = httpx.URL(url).raw_path
        head = [method, b" ", path, b" HTTP/1.1\r\nhost: ", self.host_header, b"\r\n"]
        for k, v in headers.items():
            head += [k.encode(), b": ", v.encode(), b"\r\n"]
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        loop = asyncio.get_running_loop()
        try:
            conn = self.conn
            if conn is None or conn.closed:
                _, conn = await loop.create_connection(_LightConnection, self.host, self.port)
                self.conn = conn
            conn.headers, conn.body = {}, []
            conn.done = loop.create_future()
            assert conn.transport is not None
            conn.transport.write(b"".join(head) + body)
            async with asyncio.timeout(self.timeout):
                await conn.done
        except TimeoutError:
            self._drop()
            raise httpx.ReadTimeout("light client: no answer in time") from None
        except OSError as exc:
            self._drop()
            raise httpx.ConnectError(f"light client: {exc}") from None
        status = conn.parser.get_status_code()
        if not conn.keep_alive:
            self._drop()
        return LightResponse(status, conn.headers, b"".join(conn.body))

    def _drop(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        self.conn = None

    async def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> Any:
        return await self._request(b"POST", url, content, headers)

    async def get(self, url: str, headers: dict[str, str] | None = None) -> Any:
        return await self._request(b"GET", url, b"", headers or {})

    async def aclose(self) -> None:
        self._drop()


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
    """Load in phases: closed-loop clients (each sends its next request as soon as the last
    one answered), or open-loop arrivals at a fixed rate (``rate_rps``, light client)."""

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
        self.clients: dict[tuple[str, str], list[Any]] = {}
        for phase in plan["phases"]:
            urls = [t["url"] for t in phase["targets"]]
            if phase.get("until_metric"):
                urls.append(phase["until_metric"]["url"])
            for url in urls:
                if "concurrency" in phase:
                    self.client(url, int(phase["concurrency"]) - 1, phase.get("client", "httpx"))
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

    def client(self, url: str, worker: int, kind: str = "httpx") -> Any:
        """The ``kind`` client of simulated client ``worker`` for the server at ``url``."""
        import httpx

        origin = str(httpx.URL(url).copy_with(path="/", query=None))
        pool = self.clients.setdefault((origin, kind), [])
        while len(pool) <= worker:
            if kind == "light":
                pool.append(LightClient(origin, float(self.plan.get("timeout_s", 30.0))))
                continue
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
        kind = str(spec.get("client", "httpx"))
        rng = random.Random(f"stagger:{spec['label']}")
        offsets = [rng.uniform(0.0, stagger) for _ in range(int(spec.get("concurrency", 0)))]
        # let the server finish what the last phase left (journal backlog, closing sockets)
        await asyncio.sleep(float(spec.get("settle_s", 0.0)))
        tw_port: int | None = self.plan.get("time_wait_port")
        tw0 = time_wait_to(tw_port) if tw_port else None
        log = PhaseLog()
        issued = 0
        stop = False
        cpu0 = {k: _cpu_seconds(p) for k, p in self.pids.items()}
        t_start = time.perf_counter_ns()
        t_end = t_start + int(seconds * 1e9) if seconds else None

        async def send(client: Any, k: int, t0: int) -> tuple[int, float]:
            """One request to target ``k``, logged; latency from ``t0`` (its send or arrival)."""
            self.seq += 1
            text = f"question {self.seq}"
            t = targets[k]
            body = json.dumps(
                {"model": t.model, "messages": [{"role": "user", "content": text}]}
            ).encode()
            retry_after = 0.0
            try:
                r = await client.post(t.url, content=body, headers=headers[k])
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
            return status, retry_after

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
                client = self.client(targets[k].url, w, kind)
                _, retry_after = await send(client, k, time.perf_counter_ns())
                if until is not None:
                    auth = {"Authorization": f"Bearer {until['key']}"}
                    got = await self.client(until["url"], w, kind).get(until["url"], headers=auth)
                    if got.status_code != 200:
                        raise RuntimeError(f"GET {until['url']}: {got.status_code} {got.text}")
                    page = got.text
                    value = metric_value(page, until["name"], **until["labels"])
                    log.metric.append(value)
                    if value == until["value"] or issued >= until["max_requests"]:
                        stop = True
                if honour and retry_after > 0:
                    await asyncio.sleep(retry_after)

        async def arrivals() -> None:
            """Open loop: Poisson arrivals at ``rate``; each request timed from its arrival.

            A request that finds every connection busy opens another, so a slow answer never
            delays the next arrival (no coordinated omission); how late the generator itself
            sent each request is logged as ``lag_us``.
            """
            assert rate is not None and t_end is not None
            idle: list[LightClient] = []
            running: set[asyncio.Task[None]] = set()
            arrival = t_start

            async def one(due: int) -> None:
                client = idle.pop() if idle else LightClient(origin, timeout)
                lag.append((time.perf_counter_ns() - due) // 1000)
                try:
                    await send(client, 0, due)
                finally:
                    idle.append(client)

            while True:
                arrival += int(rng.expovariate(rate) * 1e9)
                if arrival >= t_end:
                    break
                wait = arrival - time.perf_counter_ns()
                if wait > 0:
                    await asyncio.sleep(wait / 1e9)
                task = asyncio.create_task(one(arrival))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.gather(*running)
            for c in idle:
                await c.aclose()

        lag: list[int] = []
        rate: float | None = spec.get("rate_rps")
        if rate is not None:
            origin = str(httpx.URL(targets[0].url).copy_with(path="/", query=None))
            timeout = float(self.plan.get("timeout_s", 30.0))
            await arrivals()
        else:
            await asyncio.gather(*(worker(w) for w in range(int(spec["concurrency"]))))
        elapsed = (time.perf_counter_ns() - t_start) / 1e9
        cpu1 = {k: _cpu_seconds(p) for k, p in self.pids.items()}
        cpu: dict[str, float | None] = {}
        for k in self.pids:
            a, b = cpu0[k], cpu1[k]
            cpu[k] = None if a is None or b is None else b - a
        return {
            "label": spec["label"],
            "concurrency": spec.get("concurrency"),
            "rate_rps": rate,
            "lag_us": lag,
            "stagger_s": stagger,
            "client": kind,
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
    f = sub.add_parser("floor")
    f.add_argument("--port", type=int, required=True)
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
    elif a.cmd == "floor":
        serve_floor(a.port)
    else:
        run_load(a.plan, a.out)


if __name__ == "__main__":
    main()
