"""The chaos proxy: forwards HTTP to an upstream and injects the faults of a ``FaultsSpec``.

It sits between a client (say, an OpenAI SDK pointed at it with ``base_url``) and the real
upstream, so retries, timeouts, fallbacks and stream handling can be tested against the
failures production sees, reproducibly from a seed.

How the faults look on the wire:

- ``latency``: sleep, then forward.
- ``timeout``: read the request, then wait for the client to disconnect; never answer.
- ``status``: answer the configured status with an OpenAI-style error body (and Retry-After).
- ``reset``: send a status line and headers, then close the connection without a body. Under
  uvicorn an exception before ``http.response.start`` becomes a 500, not a dropped connection,
  so the cut is made after the headers: the client sees ``httpx.RemoteProtocolError``
  (incomplete body) rather than any usable response.
- ``malformed``: answer 200 ``application/json`` with a body that does not parse.
- ``truncate_stream``: forward; if the answer is ``text/event-stream``, pass ``after_chunks``
  SSE events and then close the connection (an incomplete chunked body to the client). On a
  non-SSE answer it does nothing; the request is counted as ``none`` and under ``skipped``.

Faults that answer in the upstream's place (timeout, status, reset, malformed) never reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from keelwork.chaos.faults import (
    FAULT_KINDS,
    Fault,
    FaultsSpec,
    LatencyFault,
    MalformedFault,
    ResetFault,
    StatusFault,
    TimeoutFault,
    TruncateStreamFault,
    load_faults,
)
from keelwork.errors import KeelworkError

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_JSON = ((b"content-type", b"application/json"),)
_MALFORMED_BODY = b'{"id": "chatcmpl-chaos", "object": "chat.completion", "choices": [{"index": 0'
_SSE_SEPARATORS = (b"\r\n\r\n", b"\n\n", b"\r\r")
_CUT_LOG = "ASGI callable returned without completing response."


class ChaosStats:
    """What the proxy did, per fault kind and per rule; ``sum(counts) == requests`` always."""

    def __init__(self, spec: FaultsSpec) -> None:
        self.spec = spec
        self.requests = 0
        self.counts: dict[str, int] = dict.fromkeys(("none", *FAULT_KINDS), 0)
        self.rules: list[int] = [0] * len(spec.faults)
        self.skipped: dict[str, int] = {"truncate_stream": 0}
        self.upstream_errors = 0

    def next_index(self) -> int:
        """The arrival index of a new request (no await in between: safe on one event loop)."""
        n = self.requests
        self.requests += 1
        return n

    def applied(self, index: int, fault: Fault) -> None:
        self.counts[fault.kind] += 1
        self.rules[index] += 1

    def passed(self) -> None:
        self.counts["none"] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.spec.seed,
            "requests": self.requests,
            "counts": dict(self.counts),
            "rules": [
                {"index": i, **f.model_dump(), "count": self.rules[i]}
                for i, f in enumerate(self.spec.faults)
            ],
            "skipped": dict(self.skipped),
            "upstream_errors": self.upstream_errors,
        }


def _forward_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Request headers minus hop-by-hop ones; Host and Content-Length are httpx's to set."""
    named = {
        token.strip().lower()
        for name, value in raw
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    drop = _HOP_BY_HOP | named | {b"host", b"content-length"}
    return [(k, v) for k, v in raw if k.lower() not in drop]


def _response_headers(resp: httpx.Response) -> list[tuple[bytes, bytes]]:
    """Upstream headers minus hop-by-hop; the body is relayed decoded, so drop its encoding."""
    encoded = "content-encoding" in resp.headers
    drop = set(_HOP_BY_HOP)
    if encoded:
        drop |= {b"content-encoding", b"content-length"}
    return [(k, v) for k, v in resp.headers.raw if k.lower() not in drop]


def _split_event(buf: bytes) -> tuple[bytes, bytes] | None:
    """The first complete SSE event (with its blank line) and the rest, if one is complete."""
    best: tuple[int, int] | None = None
    for sep in _SSE_SEPARATORS:
        i = buf.find(sep)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, len(sep))
    if best is None:
        return None
    end = best[0] + best[1]
    return buf[:end], buf[end:]


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            break
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            break
    return b"".join(chunks)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_all(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class ChaosProxy:
    """The proxying ASGI endpoint; holds the pooled upstream client and the stats."""

    def __init__(self, upstream: str, spec: FaultsSpec) -> None:
        url = httpx.URL(upstream)
        if url.scheme not in ("http", "https") or not url.host:
            raise KeelworkError(
                f"upstream {upstream!r}: expected an http(s) URL such as http://127.0.0.1:8000",
                code="chaos.upstream_invalid",
                status=400,
            )
        self.upstream = str(url.copy_with(query=None, fragment=None)).rstrip("/")
        self.spec = spec
        self.stats = ChaosStats(spec)
        self._client: httpx.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """One pooled client for the app's lifetime (opened by the Starlette lifespan)."""
        try:
            yield
        finally:
            if self._client is not None:
                await self._client.aclose()
                self._client = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                # no read timeout: a slow stream is the client's to give up on, not ours
                timeout=httpx.Timeout(connect=10.0, read=None, write=60.0, pool=10.0),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
                follow_redirects=False,
                # the upstream is named explicitly; an HTTP(S)_PROXY variable must not reroute it
                trust_env=False,
            )
        return self._client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        n = self.stats.next_index()
        picked = self.spec.pick(n)
        body = await _read_body(receive)
        marks: list[tuple[bytes, bytes]] = [(b"x-chaos-request", str(n).encode())]
        if picked is None:
            self.stats.passed()
            await self._forward(scope, receive, send, body, marks, cut=None)
            return
        index, fault = picked
        if not isinstance(fault, TruncateStreamFault):
            self.stats.applied(index, fault)
        marks.append((b"x-chaos-fault", fault.kind.encode()))
        match fault:
            case LatencyFault(ms=ms):
                await asyncio.sleep(ms / 1000)
                await self._forward(scope, receive, send, body, marks, cut=None)
            case TimeoutFault():
                await _wait_disconnect(receive)
            case StatusFault(status=status, retry_after=retry_after):
                if retry_after is not None:
                    marks.append((b"retry-after", str(retry_after).encode()))
                await _send_all(send, status, [*marks, *_JSON], _error_body(status))
            case ResetFault():
                # Headers, then return without a body: uvicorn closes the connection.
                await send({"type": "http.response.start", "status": 200, "headers": [*_JSON]})
            case MalformedFault():
                await _send_all(send, 200, [*marks, *_JSON], _MALFORMED_BODY)
            case TruncateStreamFault():
                await self._forward(scope, receive, send, body, marks, cut=(index, fault))

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        marks: list[tuple[bytes, bytes]],
        cut: tuple[int, TruncateStreamFault] | None,
    ) -> None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        url = self.upstream + raw_path.decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        client = self.client()
        request = client.build_request(
            scope["method"], url, headers=_forward_headers(scope["headers"]), content=body
        )
        try:
            resp = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            if cut is not None:  # never got to a stream to cut
                self.stats.passed()
                self.stats.skipped["truncate_stream"] += 1
            self.stats.upstream_errors += 1
            message = f"chaos proxy: upstream {self.upstream} failed: {type(exc).__name__}: {exc}"
            await _send_all(send, 502, [*marks, *_JSON], _error_body(502, message))
            return
        try:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    # stop reading the upstream as soon as the client goes away
                    await _wait_disconnect(receive)
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                await self._relay(resp, send, marks, cut)
                tg.cancel_scope.cancel()
        finally:
            await resp.aclose()

    async def _relay(
        self,
        resp: httpx.Response,
        send: Send,
        marks: list[tuple[bytes, bytes]],
        cut: tuple[int, TruncateStreamFault] | None,
    ) -> None:
        is_sse = resp.headers.get("content-type", "").startswith("text/event-stream")
        if cut is not None and not is_sse:
            self.stats.passed()
            self.stats.skipped["truncate_stream"] += 1
            cut = None
            marks = [m for m in marks if m[0] != b"x-chaos-fault"]
        start: Message = {
            "type": "http.response.start",
            "status": resp.status_code,
            "headers": [*_response_headers(resp), *marks],
        }
        await send(start)
        if cut is None:
            async for chunk in resp.aiter_bytes():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        index, fault = cut
        left = fault.after_chunks
        if left == 0:
            self.stats.applied(index, fault)
            return  # headers only; returning unfinished makes uvicorn close the connection
        buf = b""
        async for chunk in resp.aiter_bytes():
            buf += chunk
            while (split := _split_event(buf)) is not None:
                event, buf = split
                await send({"type": "http.response.body", "body": event, "more_body": True})
                left -= 1
                if left == 0:
                    self.stats.applied(index, fault)
                    return  # the cut: the response is left incomplete and the socket closed
        # the stream ended before the cut point: it went through whole
        self.stats.passed()
        self.stats.skipped["truncate_stream"] += 1
        await send({"type": "http.response.body", "body": buf, "more_body": False})


def _error_body(status: int, message: str | None = None) -> bytes:
    kind = (
        "rate_limit_error"
        if status == 429
        else ("server_error" if status >= 500 else "invalid_request_error")
    )
    error = {
        "message": message or f"chaos: injected HTTP {status}",
        "type": kind,
        "param": None,
        "code": "chaos_injected" if message is None else "chaos_upstream_error",
    }
    return json.dumps({"error": error}).encode()


def chaos_app(upstream: str, spec: FaultsSpec) -> Starlette:
    """The proxy as a Starlette app; ``GET /_chaos/stats`` reports what it has injected."""
    proxy = ChaosProxy(upstream, spec)

    async def stats(request: Request) -> Response:
        return JSONResponse(proxy.stats.as_dict())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with proxy.running():
            yield

    app = Starlette(
        routes=[
            Route("/_chaos/stats", stats, methods=["GET"]),
            Route("/{path:path}", proxy),
        ],
        lifespan=lifespan,
    )
    app.state.chaos = proxy
    return app


class _HideIntendedCuts(logging.Filter):
    """uvicorn logs every deliberately unfinished response as an error; those are the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _CUT_LOG


def serve_chaos(upstream: str, listen: int, faults_path: Path, host: str = "127.0.0.1") -> None:
    """Load the faults file and run the proxy on uvicorn until interrupted (`keelwork chaos`)."""
    spec = load_faults(faults_path)
    app = chaos_app(upstream, spec)
    hide = _HideIntendedCuts()
    log = logging.getLogger("uvicorn.error")
    log.addFilter(hide)
    try:
        uvicorn.run(
            app,
            host=host,
            port=listen,
            access_log=False,
            server_header=False,  # pass the upstream's Server/Date through, not uvicorn's
            date_header=False,
            timeout_graceful_shutdown=2,  # held (`timeout`) requests must not block shutdown
        )
    finally:
        log.removeFilter(hide)
