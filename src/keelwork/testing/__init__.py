"""Test helpers: a deterministic OpenAI-compatible upstream and a thread-hosted uvicorn runner."""

from keelwork.testing.anthropic import AnthropicConfig, anthropic_app
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
    "AnthropicConfig",
    "ApiError",
    "RecordedRequest",
    "Responder",
    "ServerThread",
    "UpstreamConfig",
    "UpstreamServer",
    "anthropic_app",
    "count_tokens",
    "echo",
    "embed",
    "message_text",
    "openai_app",
]
