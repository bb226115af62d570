"""Test helpers: a deterministic OpenAI-compatible upstream and a thread-hosted uvicorn runner."""

from keelwork.testing.upstream import (
    ApiError,
    RecordedRequest,
    Responder,
    ServerThread,
    UpstreamConfig,
    UpstreamServer,
    count_tokens,
    echo,
    embed,
    message_text,
    openai_app,
)

__all__ = [
    "ApiError",
    "RecordedRequest",
    "Responder",
    "ServerThread",
    "UpstreamConfig",
    "UpstreamServer",
    "count_tokens",
    "echo",
    "embed",
    "message_text",
    "openai_app",
]
