"""A deterministic OpenAI-compatible upstream served over real HTTP.

Tests of client code, retries and the chaos proxy talk to it through sockets rather than mocks,
so connection handling, SSE framing and timeouts are exercised the way production exercises them.
Every answer is a pure function of the request, so a test can predict it exactly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

Responder = Callable[[dict[str, Any]], str]
"""Turns a validated chat request body into the assistant's reply text."""

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_TOKEN = re.compile(r"\s*\S+|\s+$")
_UNPARSEABLE = object()  # sentinel: the body was not JSON (distinct from a JSON null)


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


def count_tokens(text: str) -> int:
    """Whitespace-separated words: crude, but predictable from the test's side."""
    return len(text.split())


def echo(request: dict[str, Any]) -> str:
    """The default reply, ``echo: <last user message>``, so a test knows the answer in advance."""
    for m in reversed(request["messages"]):
        if m.get("role") == "user":
            return f"echo: {message_text(m.get('content'))}"
    return "echo: "


def embed(text: str, dim: int) -> list[float]:
    """A unit vector derived from a hash of ``text``: same text, same vector, on every machine."""
    words: list[float] = []
    block = 0
    while len(words) < dim:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        words.extend(v / 2**31 - 1.0 for v in struct.unpack("<8I", digest))
        block += 1
    vec = words[:dim]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the upstream received, for assertions (body is the parsed JSON, or None)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any


@dataclass
class UpstreamConfig:
    """What the upstream serves and how slowly; it also keeps the log of what it was asked.

    Every configured model answers both chat and embeddings; any other model name gets the
    404 ``model_not_found`` a real provider would send, so a misconfigured test fails loudly.
    The log lives here (not in a global) because the server runs on another thread and the test
    holds this object.
    """

    models: tuple[str, ...] = ("gpt-4o-mini", "text-embedding-3-small")
    embedding_dim: int = 8
    delay_s: float = 0.0
    token_delay_s: float = 0.0
    responder: Responder = echo
    requests: list[RecordedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, request: Request, body: Any) -> int:
        """Append to the log; returns the request's 0-based index (used in response ids)."""
        entry = RecordedRequest(
            request.method, request.url.path, request.url.query, dict(request.headers), body
        )
        with self._lock:
            self.requests.append(entry)
            return len(self.requests) - 1

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def recorded(self, path: str | None = None) -> list[RecordedRequest]:
        """A snapshot of the log, optionally only the requests to ``path`` (e.g. /v1/embeddings)."""
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()


class ApiError(Exception):
    """An error answered in OpenAI's shape, so SDKs raise their usual exception types."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.error_type = error_type

    def response(self) -> JSONResponse:
        body = {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }
        return JSONResponse(body, status_code=self.status)


def _missing(param: str) -> ApiError:
    return ApiError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _wrong_type(param: str, expected: str, got: Any) -> ApiError:
    return ApiError(
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(got)} instead.",
        param=param,
        code="invalid_type",
    )


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object"


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _UNPARSEABLE


def _object_body(body: Any) -> dict[str, Any]:
    if body is _UNPARSEABLE:
        raise ApiError(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)"
        )
    if not isinstance(body, dict):
        raise ApiError(f"The request body must be a JSON object, but got {_json_type(body)}.")
    return body


def _model(body: dict[str, Any], config: UpstreamConfig) -> str:
    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    if model not in config.models:
        raise ApiError(
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
            status=404,
        )
    return model


def _check_chat(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array", messages)
    if not messages:
        raise ApiError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _wrong_type(where, "an object", m)
        role = m.get("role")
        if role is None:
            raise _missing(f"{where}.role")
        if role not in _ROLES:
            raise ApiError(
                f"Invalid value: {role!r}. Supported values are: "
                + ", ".join(f"'{r}'" for r in sorted(_ROLES))
                + ".",
                param=f"{where}.role",
                code="invalid_value",
            )
        content = m.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _wrong_type(f"{where}.content", "a string or an array", content)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _wrong_type("stream_options", "an object", options)
        if not stream:
            raise ApiError(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
    n = body.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise ApiError(
            f"Invalid 'n': {n!r}; the test upstream answers one choice (n=1).",
            param="n",
            code="invalid_value",
        )
    for key in ("max_tokens", "max_completion_tokens"):
        limit = body.get(key)
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise _wrong_type(key, "an integer", limit)
        if isinstance(limit, int) and limit < 1:
            raise ApiError(
                f"Invalid '{key}': integer below minimum value. Expected a value >= 1, "
                f"but got {limit} instead.",
                param=key,
                code="integer_below_min_value",
            )


def _completion_id(index: int, body: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    return f"chatcmpl-{index:06d}{digest}"


async def _chat(request: Request) -> Response:
    config: UpstreamConfig = request.app.state.config
    raw = await _json_body(request)
    index = config.record(request, None if raw is _UNPARSEABLE else raw)
    body = _object_body(raw)
    model = _model(body, config)
    _check_chat(body)
    if config.delay_s:
        await asyncio.sleep(config.delay_s)

    reply = config.responder(body)
    tokens = _TOKEN.findall(reply)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    finish = "stop"
    if limit is not None and count_tokens(reply) > limit:
        tokens, finish = tokens[:limit], "length"
    content = "".join(tokens)
    prompt = sum(count_tokens(message_text(m.get("content"))) for m in body["messages"])
    completion = count_tokens(content)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    cid = _completion_id(index, body)
    created = int(time.time())

    if not body.get("stream", False):
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            }
        )

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
        out: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            out["usage"] = None
        return _sse(out)

    async def events() -> AsyncIterator[bytes]:
        yield chunk({"role": "assistant", "content": ""}, None)
        for tok in tokens:
            if config.token_delay_s:
                await asyncio.sleep(config.token_delay_s)
            yield chunk({"content": tok}, None)
        yield chunk({}, finish)
        if include_usage:
            yield _sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": None,
                    "choices": [],
                    "usage": usage,
                }
            )
        yield b"data: [DONE]\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _embedding_inputs(body: dict[str, Any]) -> list[tuple[str, int]]:
    """Each input as (hash key, token count); token arrays are accepted like OpenAI does."""
    raw = body.get("input")
    if raw is None:
        raise _missing("input")
    items: list[Any] = raw if isinstance(raw, list) else [raw]
    if isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
        items = [raw]  # one token array
    if not items:
        raise ApiError("'$.input' is invalid: empty array.", param="input", code="invalid_value")
    out: list[tuple[str, int]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise ApiError(
                    "'$.input' is invalid: empty string.", param="input", code="invalid_value"
                )
            out.append((item, count_tokens(item)))
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            out.append((json.dumps(item), len(item)))
        else:
            raise _wrong_type(
                f"input[{i}]" if isinstance(raw, list) else "input",
                "a string or an array of strings or tokens",
                item,
            )
    return out


async def _embeddings(request: Request) -> Response:
    config: UpstreamConfig = request.app.state.config
    raw = await _json_body(request)
    config.record(request, None if raw is _UNPARSEABLE else raw)
    body = _object_body(raw)
    model = _model(body, config)
    inputs = _embedding_inputs(body)
    dim = body.get("dimensions", config.embedding_dim)
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ApiError(
            f"Invalid 'dimensions': {dim!r}; expected a positive integer.",
            param="dimensions",
            code="invalid_value",
        )
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise ApiError(
            f"Invalid value: {fmt!r}. Supported values are: 'float' and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    if config.delay_s:
        await asyncio.sleep(config.delay_s)
    data: list[dict[str, Any]] = []
    for i, (key, _) in enumerate(inputs):
        vec = embed(key, dim)
        # The openai SDK asks for base64 (little-endian float32) by default.
        value: Any = (
            base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode() if fmt == "base64" else vec
        )
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = sum(n for _, n in inputs)
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "keelwork"}


async def _models(request: Request) -> Response:
    config: UpstreamConfig = request.app.state.config
    config.record(request, None)
    return JSONResponse({"object": "list", "data": [_model_card(m) for m in config.models]})


async def _one_model(request: Request) -> Response:
    config: UpstreamConfig = request.app.state.config
    config.record(request, None)
    name = request.path_params["model"]
    if name not in config.models:
        raise ApiError(
            f"The model '{name}' does not exist", param="model", code="model_not_found", status=404
        )
    return JSONResponse(_model_card(name))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return ApiError(
        f"{request.method} {request.url.path}: {exc.detail}",
        status=exc.status_code,
        code="not_found" if exc.status_code == 404 else None,
    ).response()


def openai_app(config: UpstreamConfig | None = None) -> Starlette:
    """The upstream as a Starlette app: chat completions (plain and SSE), embeddings, models."""
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", _chat, methods=["POST"]),
            Route("/v1/embeddings", _embeddings, methods=["POST"]),
            Route("/v1/models", _models, methods=["GET"]),
            Route("/v1/models/{model:path}", _one_model, methods=["GET"]),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
    )
    app.state.config = config if config is not None else UpstreamConfig()
    return app


class ServerThread:
    """Any ASGI app on uvicorn in a background thread, on a port the OS picks.

    The socket is bound here, before uvicorn starts, so there is no window in which another
    process can take a "free" port; ``start`` returns once uvicorn accepts connections.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout_s: float = 10.0,
        graceful_shutdown_s: int = 1,
    ) -> None:
        self.app = app
        self.host = host
        self._want_port = port
        self.port = 0
        self.startup_timeout_s = startup_timeout_s
        self.graceful_shutdown_s = graceful_shutdown_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("the server is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._want_port))
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        self._sock = sock
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_config=None,  # leave logging to the host (pytest captures it)
            access_log=False,
            # a held request (chaos `timeout`) must not block stop() forever
            timeout_graceful_shutdown=self.graceful_shutdown_s,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"uvicorn-{self.port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not server.started:
            if not thread.is_alive():
                self._server = self._thread = None
                sock.close()
                raise RuntimeError(f"uvicorn on {self.host}:{self.port} failed to start")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"uvicorn on {self.host}:{self.port} not up after {self.startup_timeout_s} s"
                )
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._sock
        self._server = self._thread = self._sock = None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=self.graceful_shutdown_s + 5)
            if thread.is_alive():  # graceful shutdown is stuck: stop waiting for connections
                server.force_exit = True
                thread.join(timeout=5)
        if sock is not None:
            sock.close()  # uvicorn closes it on a clean exit; this covers the other paths

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class UpstreamServer(ServerThread):
    """The OpenAI-compatible upstream on a real port; ``url`` is the SDK's ``base_url``."""

    def __init__(
        self, config: UpstreamConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config if config is not None else UpstreamConfig()
        super().__init__(openai_app(self.config), host=host, port=port)

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1"
