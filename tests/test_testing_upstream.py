"""The deterministic OpenAI-compatible upstream, over real HTTP: answers, SSE framing, embeddings,
models and OpenAI-shaped 400s (the openai SDK is not a dependency, so httpx plays the client)."""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keelwork.testing import ServerThread, UpstreamConfig, UpstreamServer, embed, openai_app

CHAT = "test-chat"
EMBED = "test-embed"


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer(UpstreamConfig(models=(CHAT, EMBED))) as server:
        yield server


@pytest.fixture
def client(upstream: UpstreamServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.url, trust_env=False, timeout=10) as c:
        yield c


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": CHAT,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": content},
        ],
        **extra,
    }


def sse_events(resp: httpx.Response) -> list[str]:
    """The data payloads of an SSE body, checking the framing (`data: ...` + blank line)."""
    text = resp.read().decode()
    assert text.endswith("\n\n")
    blocks = text.split("\n\n")[:-1]
    assert all(b.startswith("data: ") for b in blocks), blocks
    return [b.removeprefix("data: ") for b in blocks]


def test_url_is_the_sdk_base_url(upstream: UpstreamServer) -> None:
    assert upstream.url.startswith("http://127.0.0.1:")
    assert upstream.url.endswith("/v1")
    assert upstream.url == f"{upstream.base_url}/v1"


def test_chat_completion(client: httpx.Client) -> None:
    r = client.post("/chat/completions", json=chat("where is my  parcel"))
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == CHAT
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "echo: where is my  parcel"
    # prompt: "be brief" (2) + "where is my parcel" (4); completion: "echo:" + 4 words
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}


def test_chat_is_deterministic(client: httpx.Client) -> None:
    a = client.post("/chat/completions", json=chat("same")).json()
    b = client.post("/chat/completions", json=chat("same")).json()
    assert a["choices"] == b["choices"]
    assert a["usage"] == b["usage"]


def test_content_parts_and_max_tokens(client: httpx.Client) -> None:
    parts = [{"type": "text", "text": "one two"}, {"type": "text", "text": "three four"}]
    r = client.post(
        "/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": parts}], "max_tokens": 3},
    )
    [choice] = r.json()["choices"]
    assert choice["message"]["content"] == "echo: one two"
    assert choice["finish_reason"] == "length"
    assert r.json()["usage"]["completion_tokens"] == 3


def test_custom_responder_and_request_log() -> None:
    config = UpstreamConfig(models=("m",), responder=lambda req: f"{len(req['messages'])} msgs")
    with (
        UpstreamServer(config) as server,
        httpx.Client(base_url=server.url, trust_env=False) as c,
    ):
        r = c.post(
            "/chat/completions?trace=1",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            headers={"x-test": "yes"},
        )
        assert r.json()["choices"][0]["message"]["content"] == "1 msgs"
        c.get("/models")
    assert config.request_count == 2
    [first] = config.recorded("/v1/chat/completions")
    assert first.method == "POST"
    assert first.query == "trace=1"
    assert first.headers["x-test"] == "yes"
    assert first.body["messages"][0]["content"] == "x"
    config.clear()
    assert config.request_count == 0


def test_stream(client: httpx.Client) -> None:
    body = chat("tell me more", stream=True, stream_options={"include_usage": True})
    with client.stream("POST", "/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    *content_chunks, usage_chunk = chunks
    assert content_chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert content_chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert content_chunks[-1]["choices"][0]["delta"] == {}
    assert all(c["usage"] is None for c in content_chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in content_chunks)
    assert text == "echo: tell me more"
    # one chunk per word, plus the role chunk and the finish chunk
    assert len(content_chunks) == 4 + 2
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def test_stream_without_usage(client: httpx.Client) -> None:
    with client.stream("POST", "/chat/completions", json=chat("hi", stream=True)) as r:
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_stream_and_answer_delays_are_applied() -> None:
    config = UpstreamConfig(models=("m",), delay_s=0.05, token_delay_s=0.02)
    with (
        UpstreamServer(config) as server,
        httpx.Client(base_url=server.url, trust_env=False) as c,
    ):
        t0 = time.monotonic()
        body = {"model": "m", "messages": [{"role": "user", "content": "a b c"}], "stream": True}
        with c.stream("POST", "/chat/completions", json=body) as r:
            sse_events(r)
        # lower bound only: 0.05 s before answering + 4 words x 0.02 s
        assert time.monotonic() - t0 >= 0.05 + 4 * 0.02


def test_embeddings(client: httpx.Client) -> None:
    r = client.post("/embeddings", json={"model": EMBED, "input": ["hello world", "bye"]})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert body["model"] == EMBED
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    a, b = body["data"]
    assert (a["object"], a["index"], b["index"]) == ("embedding", 0, 1)
    assert len(a["embedding"]) == 8
    assert math.isclose(math.fsum(v * v for v in a["embedding"]), 1.0, rel_tol=1e-9)
    assert a["embedding"] != b["embedding"]
    assert a["embedding"] == pytest.approx(embed("hello world", 8))

    again = client.post("/embeddings", json={"model": EMBED, "input": "hello world"}).json()
    assert again["data"][0]["embedding"] == a["embedding"]


def test_embeddings_dimensions_and_base64(client: httpx.Client) -> None:
    r = client.post(
        "/embeddings",
        json={"model": EMBED, "input": "x", "dimensions": 20, "encoding_format": "base64"},
    )
    [item] = r.json()["data"]
    vec = struct.unpack("<20f", base64.b64decode(item["embedding"]))
    assert vec == pytest.approx(embed("x", 20), abs=1e-6)


def test_embedding_dim_is_configurable() -> None:
    with (
        UpstreamServer(UpstreamConfig(models=("e",), embedding_dim=3)) as server,
        httpx.Client(base_url=server.url, trust_env=False) as c,
    ):
        r = c.post("/embeddings", json={"model": "e", "input": "x"})
    assert len(r.json()["data"][0]["embedding"]) == 3


def test_models(client: httpx.Client) -> None:
    body = client.get("/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [CHAT, EMBED]
    assert all(m["object"] == "model" for m in body["data"])
    assert client.get(f"/models/{CHAT}").json()["id"] == CHAT
    r = client.get("/models/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_unknown_model_is_404(client: httpx.Client) -> None:
    r = client.post("/chat/completions", json={**chat("x"), "model": "gpt-9"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("path", "payload", "param"),
    [
        ("/chat/completions", b"{not json", None),
        ("/chat/completions", [1, 2], None),
        ("/chat/completions", {"model": CHAT}, "messages"),
        ("/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, "model"),
        ("/chat/completions", {"model": 3, "messages": []}, "model"),
        ("/chat/completions", {"model": CHAT, "messages": "hi"}, "messages"),
        ("/chat/completions", {"model": CHAT, "messages": []}, "messages"),
        ("/chat/completions", {"model": CHAT, "messages": ["hi"]}, "messages[0]"),
        ("/chat/completions", {"model": CHAT, "messages": [{"content": "x"}]}, "messages[0].role"),
        (
            "/chat/completions",
            {"model": CHAT, "messages": [{"role": "boss", "content": "x"}]},
            "messages[0].role",
        ),
        (
            "/chat/completions",
            {"model": CHAT, "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
        ),
        ("/chat/completions", chat("x", stream="yes"), "stream"),
        ("/chat/completions", chat("x", stream_options={"include_usage": True}), "stream_options"),
        ("/chat/completions", chat("x", max_tokens=0), "max_tokens"),
        ("/chat/completions", chat("x", n=2), "n"),
        ("/embeddings", {"model": EMBED}, "input"),
        ("/embeddings", {"model": EMBED, "input": 5}, "input"),
        ("/embeddings", {"model": EMBED, "input": ["ok", {"a": 1}]}, "input[1]"),
        ("/embeddings", {"model": EMBED, "input": []}, "input"),
        ("/embeddings", {"model": EMBED, "input": "x", "dimensions": 0}, "dimensions"),
        (
            "/embeddings",
            {"model": EMBED, "input": "x", "encoding_format": "hex"},
            "encoding_format",
        ),
    ],
)
def test_bad_requests_are_openai_style_400s(
    client: httpx.Client, path: str, payload: Any, param: str | None
) -> None:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    r = client.post(path, content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def test_unknown_route_is_json_404(client: httpx.Client) -> None:
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_server_thread_stops_and_frees_the_port() -> None:
    server = ServerThread(openai_app()).start()
    url = server.base_url
    assert httpx.get(f"{url}/v1/models", trust_env=False).status_code == 200
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/models", trust_env=False, timeout=2)
    with pytest.raises(RuntimeError, match="not started"):
        _ = ServerThread(openai_app()).base_url
