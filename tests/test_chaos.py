"""The chaos proxy in front of the real test upstream, both on uvicorn over sockets: each fault
shows up the way a client sees it, the stats agree with what was seen, and a seed replays a run."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from keelwork.chaos import (
    FaultsError,
    FaultsSpec,
    LatencyFault,
    StatusFault,
    TruncateStreamFault,
    chaos_app,
    load_faults,
    parse_faults,
)
from keelwork.errors import KeelworkError
from keelwork.testing import ServerThread, UpstreamConfig, UpstreamServer

MODEL = "m"
LATENCY_MS = 80
CUT_AFTER = 3
READ_TIMEOUT_S = 1.5  # how long the client waits before giving up on a held (`timeout`) request
N = 36
# Seed 5 over 36 requests fires every rule, with exactly one `timeout` (each costs the client
# READ_TIMEOUT_S); test_seed_covers_every_fault pins that, so the run stays short.
SPEC: dict[str, Any] = {
    "seed": 5,
    "faults": [
        {"kind": "latency", "rate": 0.15, "ms": LATENCY_MS},
        {"kind": "timeout", "rate": 0.05},
        {"kind": "status", "rate": 0.1, "status": 429, "retry_after": 2},
        {"kind": "status", "rate": 0.1, "status": 503},
        {"kind": "reset", "rate": 0.1},
        {"kind": "malformed", "rate": 0.1},
        {"kind": "truncate_stream", "rate": 0.15, "after_chunks": CUT_AFTER},
    ],
}

Outcome = tuple[Any, ...]


def is_stream(n: int) -> bool:
    return n % 2 == 1


def prompt(n: int) -> str:
    return f"request {n} asks for a fairly long answer please"


def expected(spec: FaultsSpec, n: int) -> Outcome:
    """What the client must see for request n, from the seeded plan alone."""
    picked = spec.pick(n)
    fault = picked[1] if picked else None
    if fault is None or isinstance(fault, LatencyFault):
        return ("ok", f"echo: {prompt(n)}")
    if isinstance(fault, StatusFault):
        retry = None if fault.retry_after is None else str(fault.retry_after)
        return ("status", fault.status, retry)
    if isinstance(fault, TruncateStreamFault):
        return ("cut", fault.after_chunks) if is_stream(n) else ("ok", f"echo: {prompt(n)}")
    return {"timeout": ("timeout",), "reset": ("conn_error",), "malformed": ("malformed",)}[
        fault.kind
    ]


def observe(client: httpx.Client, n: int) -> Outcome:
    """Send request n through the proxy and classify what came back."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt(n)}],
        "stream": is_stream(n),
    }
    try:
        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                r.read()
                return ("status", r.status_code, r.headers.get("retry-after"))
            events: list[str] = []
            try:
                if r.headers["content-type"].startswith("text/event-stream"):
                    for line in r.iter_lines():
                        if line.startswith("data: "):
                            events.append(line.removeprefix("data: "))
                else:
                    r.read()
            except (httpx.RemoteProtocolError, httpx.ReadError):
                return ("cut", len(events)) if events else ("conn_error",)
            if not events:
                try:
                    return ("ok", r.json()["choices"][0]["message"]["content"])
                except ValueError:
                    return ("malformed",)
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            return ("ok", "".join(c["choices"][0]["delta"].get("content", "") for c in chunks))
    except httpx.ReadTimeout:
        return ("timeout",)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return ("conn_error",)


@dataclass
class Run:
    outcomes: list[Outcome]
    seconds: list[float]
    stats: dict[str, Any]
    upstream_calls: int


def run_once(upstream: UpstreamServer, spec: FaultsSpec) -> Run:
    """A fresh proxy (request counter at 0), N sequential requests, then its stats."""
    before = upstream.config.request_count
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
    with (
        ServerThread(chaos_app(upstream.base_url, spec)) as proxy,
        httpx.Client(base_url=proxy.base_url, timeout=timeout, trust_env=False) as client,
    ):
        outcomes, seconds = [], []
        for n in range(N):
            t0 = time.monotonic()
            outcomes.append(observe(client, n))
            seconds.append(time.monotonic() - t0)
        stats = client.get("/_chaos/stats").json()
    return Run(outcomes, seconds, stats, upstream.config.request_count - before)


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer(UpstreamConfig(models=(MODEL,))) as server:
        yield server


@pytest.fixture(scope="module")
def spec() -> FaultsSpec:
    return parse_faults(SPEC)


@pytest.fixture(scope="module")
def runs(upstream: UpstreamServer, spec: FaultsSpec) -> list[Run]:
    return [run_once(upstream, spec), run_once(upstream, spec)]


def test_seed_covers_every_fault(spec: FaultsSpec) -> None:
    rules = [p[0] if p else None for p in (spec.pick(n) for n in range(N))]
    assert set(rules) == {None, *range(len(spec.faults))}
    assert rules.count(1) == 1  # one held request: keeps the run short
    cut = [n for n, r in enumerate(rules) if r == 6]
    assert any(is_stream(n) for n in cut) and not all(is_stream(n) for n in cut)
    reset = [n for n, r in enumerate(rules) if r == 4]
    assert any(is_stream(n) for n in reset) and not all(is_stream(n) for n in reset)


def test_client_sees_every_fault_as_planned(runs: list[Run], spec: FaultsSpec) -> None:
    run = runs[0]
    assert run.outcomes == [expected(spec, n) for n in range(N)]
    kinds = {o[0] for o in run.outcomes}
    assert kinds == {"ok", "status", "timeout", "conn_error", "malformed", "cut"}
    assert ("status", 429, "2") in run.outcomes
    assert ("status", 503, None) in run.outcomes
    assert ("cut", CUT_AFTER) in run.outcomes


def test_latency_is_at_least_the_configured_delay(runs: list[Run], spec: FaultsSpec) -> None:
    slow = [n for n in range(N) if (p := spec.pick(n)) and isinstance(p[1], LatencyFault)]
    assert slow
    for run in runs:
        assert all(run.seconds[n] >= LATENCY_MS / 1000 for n in slow)  # lower bound only
        held = [n for n, o in enumerate(run.outcomes) if o == ("timeout",)]
        assert all(run.seconds[n] >= READ_TIMEOUT_S for n in held)


def test_stats_match_what_the_client_saw(runs: list[Run], spec: FaultsSpec) -> None:
    run = runs[0]
    stats = run.stats
    assert stats["seed"] == 5
    assert stats["requests"] == N
    plan = [spec.pick(n) for n in range(N)]
    seen: Counter[str] = Counter()
    skipped = 0
    for n, p in enumerate(plan):
        if p is None:
            seen["none"] += 1
        elif p[1].kind == "truncate_stream" and not is_stream(n):
            seen["none"] += 1
            skipped += 1
        else:
            seen[p[1].kind] += 1
    assert stats["counts"] == {k: seen.get(k, 0) for k in stats["counts"]}
    assert sum(stats["counts"].values()) == N
    assert stats["skipped"] == {"truncate_stream": skipped}
    assert stats["upstream_errors"] == 0
    # per rule: the two status rules are told apart
    for i, rule in enumerate(stats["rules"]):
        fired = sum(1 for n, p in enumerate(plan) if p and p[0] == i)
        if rule["kind"] == "truncate_stream":
            fired -= skipped
        assert rule["count"] == fired, rule
    status = {r["status"]: r["count"] for r in stats["rules"] if r["kind"] == "status"}
    assert status[429] == run.outcomes.count(("status", 429, "2"))
    assert status[503] == run.outcomes.count(("status", 503, None))
    # faults that answer in the upstream's place never reach it
    forwarded = seen["none"] + seen["latency"] + seen["truncate_stream"]
    assert run.upstream_calls == forwarded


def test_same_seed_same_outcomes(runs: list[Run]) -> None:
    first, second = runs
    assert first.outcomes == second.outcomes
    assert first.stats == second.stats


def test_another_seed_another_plan(spec: FaultsSpec) -> None:
    other = spec.model_copy(update={"seed": 6})
    assert [spec.pick(n) for n in range(N)] != [other.pick(n) for n in range(N)]
    assert [spec.pick(n) for n in range(N)] == [parse_faults(SPEC).pick(n) for n in range(N)]


def test_draw_frequencies_follow_the_rates() -> None:
    spec = parse_faults(
        {"seed": 1, "faults": [{"kind": "reset", "rate": 0.3}, {"kind": "malformed", "rate": 0.2}]}
    )
    counts = Counter(p[0] if p else None for p in (spec.pick(n) for n in range(5000)))
    assert abs(counts[0] / 5000 - 0.3) < 0.03
    assert abs(counts[1] / 5000 - 0.2) < 0.03
    assert abs(counts[None] / 5000 - 0.5) < 0.03


def test_passthrough_forwards_request_and_streams_chunk_by_chunk() -> None:
    config = UpstreamConfig(models=(MODEL,), token_delay_s=0.05)
    with (
        UpstreamServer(config) as upstream,
        ServerThread(chaos_app(upstream.base_url, FaultsSpec())) as proxy,
        httpx.Client(base_url=proxy.base_url, trust_env=False, timeout=10) as client,
    ):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "one two three four five six"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        arrivals: list[float] = []
        with client.stream(
            "POST",
            "/v1/chat/completions?trace=7",
            json=body,
            headers={"x-custom": "kept", "connection": "keep-alive, x-hop", "x-hop": "dropped"},
        ) as r:
            assert r.status_code == 200
            assert r.headers["x-chaos-request"] == "0"
            assert "x-chaos-fault" not in r.headers
            for line in r.iter_lines():
                if line.startswith("data: "):
                    arrivals.append(time.monotonic())
        # 7 words -> 7 chunks 50 ms apart upstream; a buffering proxy would deliver them at once
        assert arrivals[-1] - arrivals[0] >= 0.1
        assert len(arrivals) == 1 + 7 + 1 + 1 + 1  # role, words, finish, usage, [DONE]
    [seen] = config.recorded("/v1/chat/completions")
    assert seen.method == "POST"
    assert seen.query == "trace=7"
    assert seen.headers["x-custom"] == "kept"
    assert "x-hop" not in seen.headers
    assert seen.body == body


def only(kind: str, **extra: Any) -> FaultsSpec:
    return parse_faults({"seed": 0, "faults": [{"kind": kind, "rate": 1.0, **extra}]})


def test_reset_is_a_connection_error_for_httpx(upstream: UpstreamServer) -> None:
    with (
        ServerThread(chaos_app(upstream.base_url, only("reset"))) as proxy,
        httpx.Client(base_url=proxy.base_url, trust_env=False, timeout=10) as client,
    ):
        for _ in range(2):
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                client.post("/v1/chat/completions", json={"model": MODEL})


def test_truncated_stream_passes_n_events_then_breaks(upstream: UpstreamServer) -> None:
    with (
        ServerThread(chaos_app(upstream.base_url, only("truncate_stream", after_chunks=2))) as p,
        httpx.Client(base_url=p.base_url, trust_env=False, timeout=10) as client,
    ):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "a b c d e f"}],
            "stream": True,
        }
        events: list[dict[str, Any]] = []
        with (
            pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
            client.stream("POST", "/v1/chat/completions", json=body) as r,
        ):
            assert r.headers["x-chaos-fault"] == "truncate_stream"
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line.removeprefix("data: ")))
        assert [e["choices"][0]["delta"].get("content") for e in events] == ["", "echo:"]


def test_unreachable_upstream_is_a_502_and_counted() -> None:
    with (
        ServerThread(chaos_app("http://127.0.0.1:9", FaultsSpec())) as proxy,
        httpx.Client(base_url=proxy.base_url, trust_env=False, timeout=10) as client,
    ):
        r = client.post("/v1/chat/completions", json={})
        assert r.status_code == 502
        assert r.json()["error"]["code"] == "chaos_upstream_error"
        stats = client.get("/_chaos/stats").json()
    assert stats["upstream_errors"] == 1
    assert stats["counts"]["none"] == 1


def test_bad_upstream_url_is_refused() -> None:
    with pytest.raises(KeelworkError, match="http"):
        chaos_app("localhost:8000", FaultsSpec())


def test_rates_over_one_name_the_key() -> None:
    data = {"seed": 1, "faults": [{"kind": "reset", "rate": 0.7}, {"kind": "timeout", "rate": 0.4}]}
    with pytest.raises(ValidationError) as exc:
        FaultsSpec.model_validate(data)
    [error] = exc.value.errors()
    assert error["loc"] == ("faults",)
    assert "rate" in error["msg"] and "1.1" in error["msg"]
    with pytest.raises(FaultsError) as loaded:
        parse_faults(data, source="faults.yaml")
    assert [d.path for d in loaded.value.details] == ["faults"]
    assert "faults.yaml" in loaded.value.message and "faults: the rates sum to 1.1" in str(
        loaded.value
    )


@pytest.mark.parametrize(
    ("fault", "path", "words"),
    [
        ({"kind": "latency", "rate": 0.1, "msec": 5}, "faults[0].msec", "did you mean 'ms'"),
        ({"kind": "latency", "rate": 0.1}, "faults[0].ms", "required"),
        ({"kind": "status", "rate": 0.1, "status": 200}, "faults[0].status", "400"),
        ({"kind": "reset", "rate": 1.5}, "faults[0].rate", "1"),
        ({"kind": "rest", "rate": 0.1}, "faults[0].kind", "did you mean 'reset'"),
        ({"rate": 0.1}, "faults[0].kind", "required"),
    ],
)
def test_validation_errors_name_the_key(fault: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(FaultsError) as exc:
        parse_faults({"seed": 1, "faults": [fault]})
    problems = {d.path: d.message for d in exc.value.details}
    assert words in problems[path], problems


def test_load_faults_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(
        """
seed: 42
faults:
  - {kind: latency, rate: 0.2, ms: 300}
  - {kind: timeout, rate: 0.05}          # hold the request, never answer
  - {kind: status, rate: 0.05, status: 429, retry_after: 2}
  - {kind: status, rate: 0.05, status: 503}
  - {kind: reset, rate: 0.05}
  - {kind: malformed, rate: 0.05}
  - {kind: truncate_stream, rate: 0.1, after_chunks: 3}
"""
    )
    spec = load_faults(path)
    assert spec.seed == 42
    assert [f.kind for f in spec.faults] == [
        "latency",
        "timeout",
        "status",
        "status",
        "reset",
        "malformed",
        "truncate_stream",
    ]
    path.write_text("seed: 1\nfaults: [{kind: latency, rate: 0.1, ms: [}\n")
    with pytest.raises(FaultsError, match="not valid YAML"):
        load_faults(path)
    path.write_text("seed: 1\nfault: []\n")
    with pytest.raises(FaultsError, match="did you mean 'faults'"):
        load_faults(path)
    with pytest.raises(FaultsError, match="cannot read"):
        load_faults(tmp_path / "missing.yaml")
