"""Anthropic's Messages API as a model (incl. streaming), mapped onto the same chat shape as the
OpenAI-compatible provider: records carry `messages` (a `system` message becomes the `system`
field), answers are `{content, finish_reason}` with token usage, and stream events become
chat.completion.chunk objects so the OpenAI surface can serve them unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from keelwork.errors import ModelError
from keelwork.providers.base import Reply
from keelwork.providers.openai_http import OpenAIProvider, malformed
from keelwork.spec import ModelSpec

API_VERSION = "2023-06-01"
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}


def _usage(u: dict[str, Any] | None) -> dict[str, int] | None:
    if not u:
        return None
    prompt, completion = int(u.get("input_tokens", 0)), int(u.get("output_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class AnthropicProvider(OpenAIProvider):
    """Shares the pooled client, key handling and failure classification of the OpenAI one."""

    def __init__(self, name: str, spec: ModelSpec, service_dir: Path) -> None:
        super().__init__(name, spec, service_dir)

    def client(self) -> httpx.AsyncClient:
        c = super().client()
        if self._key and "x-api-key" not in c.headers:
            c.headers.pop("Authorization", None)
            c.headers["x-api-key"] = self._key
        c.headers.setdefault("anthropic-version", API_VERSION)
        return c

    def payload(self, record: dict[str, Any], stream: bool = False) -> dict[str, Any]:
        system = [m["content"] for m in record["messages"] if m.get("role") == "system"]
        body: dict[str, Any] = {
            "max_tokens": 1024,
            **self.spec.params,
            "model": self.spec.model_name,
            "messages": [m for m in record["messages"] if m.get("role") != "system"],
        }
        if system:
            body["system"] = "\n\n".join(str(s) for s in system)
        for k in ("temperature", "top_p", "max_tokens"):
            if record.get(k) is not None:
                body[k] = record[k]
        if record.get("stop") is not None:
            stop = record["stop"]
            body["stop_sequences"] = [stop] if isinstance(stop, str) else stop
        if stream:
            body["stream"] = True
        return body

    async def __call__(self, record: dict[str, Any]) -> Reply:
        body = await self.post("/messages", self.payload(record))
        try:
            text = "".join(b.get("text", "") for b in body["content"] if b.get("type") == "text")
            finish = _FINISH.get(body.get("stop_reason") or "end_turn", "stop")
            return Reply({"content": text, "finish_reason": finish}, _usage(body.get("usage")))
        except (KeyError, TypeError, AttributeError) as exc:
            raise malformed(f"answer ({type(exc).__name__})") from None

    async def stream(self, record: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        usage: dict[str, Any] = {}
        async for event in self.events("/messages", self.payload(record, stream=True)):
            kind = event.get("type") if isinstance(event, dict) else None
            if kind == "message_start":
                usage.update(event.get("message", {}).get("usage") or {})
            elif kind == "content_block_delta":
                text = (event.get("delta") or {}).get("text")
                if text:
                    yield _chunk({"content": text}, None)
            elif kind == "message_delta":
                usage.update(event.get("usage") or {})
                reason = (event.get("delta") or {}).get("stop_reason")
                yield _chunk({}, _FINISH.get(reason or "end_turn", "stop"))
            elif kind == "error":
                raise ModelError(
                    f"upstream stream error: {event.get('error', {}).get('message')}",
                    code="model.stream_error",
                    retryable=True,
                )
            elif kind == "message_stop":
                yield {"object": "chat.completion.chunk", "choices": [], "usage": _usage(usage)}
                return
        raise ModelError(
            "the upstream stream ended without message_stop", code="model.truncated", retryable=True
        )


def _chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
