"""A deterministic Anthropic Messages upstream for tests, over real HTTP (see ServerThread).

Replies echo the last user message; `stream: true` sends the Messages SSE events
(message_start, content_block_delta per word, message_delta with the stop reason and usage,
message_stop). The request log is kept on the config object the test holds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from keelwork.testing.upstream import count_tokens


@dataclass
class AnthropicConfig:
    api_key: str = "sk-ant-test"
    token_delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"type": "error", "error": {"type": kind, "message": message}}, status_code=status
    )


def anthropic_app(config: AnthropicConfig | None = None) -> Starlette:
    cfg = config if config is not None else AnthropicConfig()

    async def messages(request: Request) -> Response:
        if request.headers.get("x-api-key") != cfg.api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "invalid_request_error", "body is not JSON")
        cfg.requests.append(body)
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs or "max_tokens" not in body:
            return _error(400, "invalid_request_error", "messages and max_tokens are required")
        last: dict[str, Any] = next((m for m in reversed(msgs) if m.get("role") == "user"), {})
        content = last.get("content", "")
        text = f"echo: {content if isinstance(content, str) else json.dumps(content)}"
        usage_in = sum(count_tokens(str(m.get("content", ""))) for m in msgs)
        words = text.split(" ")
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": f"msg_{len(cfg.requests)}",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model"),
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": usage_in, "output_tokens": len(words)},
                }
            )

        async def events() -> AsyncIterator[bytes]:
            def ev(kind: str, data: dict[str, Any]) -> bytes:
                return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

            yield ev(
                "message_start",
                {
                    "message": {
                        "id": f"msg_{len(cfg.requests)}",
                        "usage": {"input_tokens": usage_in},
                    }
                },
            )
            yield ev(
                "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            )
            for i, w in enumerate(words):
                await asyncio.sleep(cfg.token_delay_s)
                yield ev(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": w if i == 0 else " " + w}},
                )
            yield ev("content_block_stop", {"index": 0})
            yield ev(
                "message_delta",
                {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": len(words)}},
            )
            yield ev("message_stop", {})

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
