"""Fault tolerance and load: does keelwork keep answering, on time, when its models fail?

Four scenarios, each in a fresh set of processes (every server in its own uvicorn process with
the settings of ``bench/_common.py``; the load from a separate asyncio process, with httpx or,
in scenario 3, also a light raw-HTTP client; see ``bench/_faults_common.py``):

1. failing: the primary (an OpenAI-compatible upstream behind keelwork's seeded chaos proxy)
   fails 30% of calls (5xx, timeouts held until the 200 ms model timeout, connection resets);
   a second, healthy upstream is the fallback. 10,000 chat completions at 32 clients.
2. down: the primary's port has nothing listening. Sequential requests until the breaker
   opens, then the open-breaker path against the fallback served alone, interleaved.
3. overload: ``max_concurrency: 8``, ``max_queue: 0``, a 50 ms upstream. p99 at 8 clients,
   then 80 clients: how fast the shed requests get their 503 and what the admitted ones see;
   every phase with both clients, and a bare app that refuses everything as the floor.
4. pass-through: keelwork's OpenAI surface in front of an upstream against the same upstream
   called directly, 200 clients, alternating rounds.

Every scenario also checks that no request was answered 500, the server logged no traceback
and the journal holds exactly one row per request sent (none lost).

    python bench/faults.py [--quick] [--only failing,down,overload,passthrough]

Results are printed as tables and written to bench/results/faults.json
(faults-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from _common import ROOT, check_source, free_port, git_state, machine_info, percentile
from _faults_common import UVICORN_SETTINGS, metric_value, metric_values
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "_faults_common.py"
RESULTS = HERE / "results"
UPSTREAM_MODEL = "gpt-4o-mini"
SCENARIOS = ("failing", "down", "overload", "passthrough")
GENERATORS = ("light", "httpx")  # the load generator's clients; see bench/_faults_common.py
console = Console()

# The fault plan of scenario 1: 30% of the primary's calls fail, in the ways providers fail.
FAULTS_30 = {
    "seed": 20261122,
    "faults": [
        {"kind": "status", "status": 500, "rate": 0.06},
        {"kind": "status", "status": 502, "rate": 0.05},
        {"kind": "status", "status": 503, "rate": 0.04},
        {"kind": "timeout", "rate": 0.08},
        {"kind": "reset", "rate": 0.07},
    ],
}
# Scenarios 1 and 2: a 200 ms per-attempt timeout on the primary, one retry, a 1 s budget.
CHAIN_POLICIES: dict[str, Any] = {
    "timeout_ms": 1000,
    "deadline_ms": 1000,
    "retries": 1,
    "backoff_ms": 20,
    "max_backoff_ms": 200,
}
PRIMARY_TIMEOUT_MS = 200


class BenchError(RuntimeError):
    """The benchmark itself could not run (a server did not start, a load run failed)."""


# --- processes --------------------------------------------------------------------------------


@dataclass
class Proc:
    """One server process and its logs."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Keelwork:
    """The keelwork server of a scenario: its process, store, client key and operator key
    (``/metrics`` needs the ``read_metrics`` right)."""

    proc: Proc
    db_url: str
    key: str
    services: list[str]
    operator_key: str

    def metrics(self) -> str:
        return get_text(self.proc.base + "/metrics", self.operator_key)


@dataclass(frozen=True)
class Cpus:
    """Which cores the server under test gets, and which everything else shares.

    In production the clients and the model provider are other machines. Here they share one
    small VM, and a load generator saturating the core keelwork runs on measures the
    generator, not keelwork. Pinning the server under test (keelwork, or the floor app it is
    compared with) to its own core and the rest (load generator, upstreams, chaos proxy) to
    the others keeps them from taking turns on one core. ``None`` sets: no pinning.
    """

    sut: frozenset[int] | None = None
    rest: frozenset[int] | None = None

    @classmethod
    def split(cls) -> Cpus:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            return cls()
        return cls(frozenset(cores[-1:]), frozenset(cores[:-1]))

    def describe(self) -> str:
        if self.sut is None:
            return "not pinned: every process on every core"
        return (
            f"server under test (keelwork, floor app) pinned to core(s) {sorted(self.sut)}; "
            f"load generator, upstreams, chaos proxy and this script to {sorted(self.rest or ())}"
        )

    def preexec(self, sut: bool) -> Callable[[], None] | None:
        cores = self.sut if sut else self.rest
        if cores is None:
            return None
        return lambda: os.sched_setaffinity(0, cores)


@dataclass
class Stack:
    """The processes of one scenario; ``close`` stops them all (SIGINT, so journals flush)."""

    tmp: Path
    cpus: Cpus
    procs: list[Proc] = field(default_factory=list)

    def _spawn(self, name: str, args: list[str], ready_path: str, *, sut: bool = False) -> Proc:
        port = free_port()
        out, err = self.tmp / f"{name}.out", self.tmp / f"{name}.err"
        with out.open("wb") as fo, err.open("wb") as fe:
            proc = subprocess.Popen(
                [sys.executable, str(LAUNCHER), *args, "--port", str(port)],
                stdout=fo,
                stderr=fe,
                cwd=ROOT,
                preexec_fn=self.cpus.preexec(sut),
            )
        p = Proc(name, port, proc, out, err)
        self.procs.append(p)
        _wait_ready(p, ready_path)
        return p

    def upstream(self, name: str, delay_s: float = 0.0) -> Proc:
        return self._spawn(name, ["upstream", "--delay-s", str(delay_s)], "/v1/models")

    def floor(self, name: str) -> Proc:
        return self._spawn(name, ["floor"], "/ready", sut=True)

    def chaos(self, name: str, upstream: Proc, faults: dict[str, Any]) -> Proc:
        args = ["chaos", "--upstream", upstream.base, "--faults", json.dumps(faults)]
        return self._spawn(name, args, "/_chaos/stats")

    def keelwork(self, specs: list[dict[str, Any]]) -> Keelwork:
        from keelwork.security.keys import KeyStore
        from keelwork.store.engine import Store

        db_url = f"sqlite:///{self.tmp}/journal.db"
        store = Store(db_url)
        store.migrate()
        key, _ = KeyStore(store).create("client", name="faults-bench")
        operator, _ = KeyStore(store).create("operator", name="faults-bench-metrics")
        store.dispose()
        args = ["keelwork", "--database-url", db_url]
        names = []
        for spec in specs:
            name = spec["service"]["name"]
            d = self.tmp / name
            d.mkdir()
            (d / "keelwork.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
            args += ["--service", str(d)]
            names.append(name)
        proc = self._spawn("keelwork", args, "/readyz", sut=True)
        return Keelwork(proc, db_url, key, names, operator)

    def stop(self, p: Proc) -> None:
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGINT)
            try:
                p.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait()

    def close(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


@contextmanager
def stack(name: str, cpus: Cpus) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix=f"kw-faults-{name}-") as tmp:
        s = Stack(Path(tmp), cpus)
        try:
            yield s
        finally:
            s.close()


def _wait_ready(p: Proc, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.proc.poll() is not None:
            raise BenchError(f"{p.name} exited with {p.proc.returncode}:\n{_tail(p.err)}")
        try:
            if httpx.get(p.base + path, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{p.name} on port {p.port} not ready after {timeout:g} s")


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def run_load(
    s: Stack, phases: list[dict[str, Any]], pids: dict[str, int], time_wait_port: int | None = None
) -> list[dict[str, Any]]:
    """Run the phases in a fresh load-generator process and return its per-request logs."""
    n = len(list(s.tmp.glob("plan-*.json")))
    plan_path, out_path = s.tmp / f"plan-{n}.json", s.tmp / f"load-{n}.json"
    plan = {"phases": phases, "pids": pids, "time_wait_port": time_wait_port}
    plan_path.write_text(json.dumps(plan))
    done = subprocess.run(
        [sys.executable, str(LAUNCHER), "load", str(plan_path), str(out_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        preexec_fn=s.cpus.preexec(sut=False),
    )
    if done.returncode != 0:
        raise BenchError(f"load generator failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: list[dict[str, Any]] = json.loads(out_path.read_text())["phases"]
    return result


def target(name: str, url: str, model: str, key: str | None = None) -> dict[str, Any]:
    return {"name": name, "url": url, "model": model, "key": key}


def kw_target(kw: Keelwork, service: str) -> dict[str, Any]:
    return target(service, f"{kw.proc.base}/v1/chat/completions", service, kw.key)


def direct_target(name: str, up: Proc) -> dict[str, Any]:
    return target(name, f"{up.base}/v1/chat/completions", UPSTREAM_MODEL)


def get_text(url: str, key: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.get(url, headers=headers, timeout=10.0)
    if r.status_code != 200:
        raise BenchError(f"GET {url}: {r.status_code} {r.text[:300]}")
    return r.text


# --- the service specs ------------------------------------------------------------------------


def chat_spec(
    name: str,
    primary_url: str,
    *,
    fallback_url: str | None = None,
    primary_timeout_ms: int | None = None,
    policies: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A chat service like tests/test_openai_surface.py's: OpenAI-compatible models only."""
    models: dict[str, Any] = {
        "primary": {"kind": "openai", "base_url": primary_url, "model_name": UPSTREAM_MODEL}
    }
    if primary_timeout_ms is not None:
        models["primary"]["timeout_ms"] = primary_timeout_ms
    routing: dict[str, Any] = {"primary": "primary"}
    if fallback_url is not None:
        models["backup"] = {
            "kind": "openai",
            "base_url": fallback_url,
            "model_name": UPSTREAM_MODEL,
        }
        routing["fallbacks"] = ["backup"]
    return {
        "service": {"name": name},
        "input": {
            "fields": {
                "messages": {
                    "type": "list",
                    "min_length": 1,
                    "items": {
                        "type": "object",
                        "fields": {
                            "role": {"type": "enum", "values": ["system", "user", "assistant"]},
                            "content": {"type": "string", "max_length": 4000},
                        },
                    },
                }
            }
        },
        "output": {"fields": {"content": {"type": "string"}, "finish_reason": {"type": "string"}}},
        "models": models,
        "routing": routing,
        "policies": policies or {},
    }


# --- measurements -----------------------------------------------------------------------------


def summary_ms(lat_us: Sequence[int]) -> dict[str, float | int]:
    """Latency summary in milliseconds (linear-interpolated percentiles)."""
    ms = sorted(x / 1000 for x in lat_us)
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1] if ms else float("nan"),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
    }


def pick(log: dict[str, list[Any]], keep: Sequence[bool]) -> list[int]:
    """Latencies (µs) of the requests selected by ``keep``."""
    return [lat for lat, k in zip(log["lat_us"], keep, strict=True) if k]


def statuses(log: dict[str, list[Any]]) -> dict[str, int]:
    """Responses by HTTP status; transport errors (no answer at all) by exception name."""
    out = {str(k): v for k, v in sorted(Counter(log["status"]).items()) if k}
    out.update(Counter(e for e in log["error"] if e))
    return out


def sent(phases: Sequence[dict[str, Any]], target_name: str) -> int:
    """Requests sent to one target over the given phases."""
    n = 0
    for ph in phases:
        idx = ph["targets"].index(target_name) if target_name in ph["targets"] else None
        if idx is not None:
            n += sum(1 for t in ph["log"]["target"] if t == idx)
    return n


def cpu_use(phase: dict[str, Any]) -> dict[str, float]:
    """Each process's CPU time over the phase, as a share of one core."""
    return {k: v / phase["elapsed_s"] for k, v in phase["cpu_s"].items() if v is not None}


def journal_rows(db_url: str, service: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from keelwork.store.engine import Store
    from keelwork.store.tables import journal

    store = Store(db_url)
    cols = [
        journal.c.request_id,
        journal.c.status,
        journal.c.http_status,
        journal.c.error_code,
        journal.c.model,
        journal.c.fallback,
        journal.c.attempts,
        journal.c.latency_ms,
    ]
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(*cols).where(journal.c.service == service)).mappings()
            return [dict(r) for r in rows]
    finally:
        store.dispose()


def journal_count(db_url: str, service: str) -> int:
    from keelwork.store.engine import Store

    store = Store(db_url)
    try:
        return int(store.count("journal", service))
    finally:
        store.dispose()


def wait_journal(db_url: str, expected: dict[str, int], timeout: float = 15.0) -> dict[str, int]:
    """Counts while the server still runs, once they reach ``expected`` or stop moving.

    The journal is write-behind (``durability: batched``, flushed every 100 ms), so the rows
    of the last requests may land a moment after their answers.
    """
    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    still_since = time.monotonic()
    while True:
        now = {s: journal_count(db_url, s) for s in expected}
        if now == expected:
            return now
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > 2.0 or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def log_problems(p: Proc, upto: int | None = None) -> dict[str, Any]:
    """Tracebacks and error lines on a server's stderr (uvicorn and keelwork log there)."""
    text = _tail(p.err, 10**9)[:upto]
    lines = text.splitlines()
    errors = [ln for ln in lines if "ERROR" in ln or "Exception" in ln]
    at = text.find("Traceback (most recent call last)")
    return {
        "tracebacks": text.count("Traceback (most recent call last)"),
        "first_traceback": text[max(0, at - 300) : at + 4000] if at >= 0 else None,
        "error_lines": len(errors),
        "first_error_lines": errors[:5],
    }


def integrity(
    s: Stack, kw: Keelwork, expected: dict[str, int], phases: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The checks every scenario must pass: no 500, no traceback, no journal row lost.

    Counted twice: while the server runs (after the write-behind flush) and after a clean
    shutdown (SIGINT: keelwork flushes its journal on the way out).
    """
    running = wait_journal(kw.db_url, expected)
    before_stop = kw.proc.err.stat().st_size
    s.stop(kw.proc)
    after = {svc: journal_count(kw.db_url, svc) for svc in expected}
    http_500 = sum(sum(1 for st in ph["log"]["status"] if st == 500) for ph in phases)
    transport = sum(sum(1 for st in ph["log"]["status"] if st == 0) for ph in phases)
    problems = log_problems(kw.proc, before_stop)
    shutdown = log_problems(kw.proc)
    lost = {svc: expected[svc] - after[svc] for svc in expected}
    return {
        "requests_sent": expected,
        "journal_rows_running": running,
        "journal_rows_after_shutdown": after,
        "journal_lost": lost,
        "http_500": http_500,
        "transport_errors": transport,
        "server_log": problems,
        "server_log_with_shutdown": shutdown,
        "ok": http_500 == 0
        and transport == 0
        and shutdown["tracebacks"] == 0
        and all(v == 0 for v in lost.values()),
    }


def attempts_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    a = row.get("attempts")
    if isinstance(a, str):
        a = json.loads(a)
    return list(a or [])


def verdict(
    name: str, target_text: str, measured: str, met: bool, *, context: bool = False
) -> dict[str, Any]:
    """One figure against its target; ``context`` rows are reported but judge nothing."""
    return {
        "target": name,
        "wanted": target_text,
        "measured": measured,
        "met": met,
        "context": context,
    }


# --- scenario 1: a primary failing 30% of the time --------------------------------------------


def scenario_failing(quick: bool, cpus: Cpus) -> dict[str, Any]:
    """Faults on 30% of the primary's calls, a healthy second upstream as the fallback."""
    warm, n, conc = (50, 1000, 32) if quick else (200, 10_000, 32)
    with stack("failing", cpus) as s:
        up_a = s.upstream("upstream-a")
        up_b = s.upstream("upstream-b")
        chaos = s.chaos("chaos", up_a, FAULTS_30)
        spec = chat_spec(
            "assistant",
            f"{chaos.base}/v1",
            fallback_url=f"{up_b.base}/v1",
            primary_timeout_ms=PRIMARY_TIMEOUT_MS,
            policies=CHAIN_POLICIES,
        )
        kw = s.keelwork([spec])
        pids = {"keelwork": kw.proc.pid, "chaos": chaos.pid, "upstream_a": up_a.pid}
        pids["upstream_b"] = up_b.pid
        tgt = [kw_target(kw, "assistant")]
        warm_ph = run_load(
            s, [{"label": "warmup", "targets": tgt, "concurrency": conc, "requests": warm}], pids
        )
        chaos0 = httpx.get(chaos.base + "/_chaos/stats").json()
        main = run_load(
            s, [{"label": "measured", "targets": tgt, "concurrency": conc, "requests": n}], pids
        )[0]
        chaos1 = httpx.get(chaos.base + "/_chaos/stats").json()
        metrics = kw.metrics()
        phases = [*warm_ph, main]
        checks = integrity(s, kw, {"assistant": sent(phases, "assistant")}, phases)
        rows = journal_rows(kw.db_url, "assistant")

    log = main["log"]
    ok = log["ok"]
    n_ok = sum(ok)
    by_fallback = sum(1 for o, fb in zip(ok, log["fallback"], strict=True) if o and fb)
    ids = {r for r in log["request_id"] if r}
    measured_rows = [r for r in rows if r["request_id"] in ids]
    journal_retries = 0
    skipped = 0
    primary_fail_codes: Counter[str] = Counter()
    for r in measured_rows:
        for a in attempts_of(r):
            journal_retries += int(a.get("retries") or 0)
            if a["model"] == "primary" and not a["ok"]:
                primary_fail_codes[a["code"]] += 1
                if a["code"] == "model.circuit_open":
                    skipped += 1
    primary_calls = chaos1["requests"] - chaos0["requests"]
    injected = {k: chaos1["counts"][k] - chaos0["counts"].get(k, 0) for k in chaos1["counts"]}
    reached_primary = len(measured_rows) - skipped
    observed_retries = primary_calls - reached_primary
    all_lat = summary_ms(log["lat_us"])
    ok_lat = summary_ms(pick(log, ok))
    deadline = CHAIN_POLICIES["deadline_ms"]
    opened = sum(
        v
        for lab, v in metric_values(metrics, "keelwork_breaker_transitions_total")
        if lab.get("model") == "primary" and lab.get("state") == "open"
    )
    rate = n_ok / len(ok)
    statuses_j = Counter(r["status"] for r in measured_rows)
    res: dict[str, Any] = {
        "config": {
            "requests": n,
            "warmup_requests": warm,
            "concurrency": conc,
            "faults": FAULTS_30,
            "primary_timeout_ms": PRIMARY_TIMEOUT_MS,
            "policies": CHAIN_POLICIES,
            "breaker": "defaults: window 20, min_calls 10, failure_rate 0.5, cooldown 5000 ms",
            "fallback": "second upstream process, no faults",
            "journal": "durability: batched (default)",
        },
        "statuses": statuses(log),
        "answered_ok": n_ok,
        "success_rate": rate,
        "answered_by_primary": n_ok - by_fallback,
        "answered_by_fallback": by_fallback,
        "journal_status": dict(statuses_j),
        "latency_all": all_lat,
        "latency_ok": ok_lat,
        "latency_by_primary": summary_ms(
            pick(log, [o and not fb for o, fb in zip(ok, log["fallback"], strict=True)])
        ),
        "latency_by_fallback": summary_ms(
            pick(log, [bool(o and fb) for o, fb in zip(ok, log["fallback"], strict=True)])
        ),
        "deadline_ms": deadline,
        "over_deadline": sum(1 for x in log["lat_us"] if x / 1000 > deadline),
        "primary_calls_at_proxy": primary_calls,
        "faults_injected": injected,
        "primary_failed_attempts_in_journal": dict(primary_fail_codes),
        "retries_in_journal": journal_retries,
        "retries_observed_at_proxy": observed_retries,
        "breaker_opened": opened,
        "cpu_use": cpu_use(main),
        "throughput_rps": len(ok) / main["elapsed_s"],
        "checks": checks,
    }
    res["verdicts"] = [
        verdict("success rate", ">= 99.9%", f"{rate:.3%} ({n_ok:,}/{len(ok):,})", rate >= 0.999),
        verdict(
            "p99 within the deadline",
            f"<= {deadline} ms",
            f"p99 {all_lat['p99_ms']:.1f} ms (p50 {all_lat['p50_ms']:.1f})",
            all_lat["p99_ms"] <= deadline,
        ),
        _integrity_verdict(checks),
    ]
    return res


def _integrity_verdict(checks: dict[str, Any]) -> dict[str, Any]:
    lost = sum(checks["journal_lost"].values())
    text = (
        f"{checks['http_500']} x 500, {checks['transport_errors']} transport errors, "
        f"{checks['server_log']['tracebacks']} tracebacks, {lost} journal rows lost"
    )
    return verdict("no unhandled error, no lost record", "0 / 0 / 0 / 0", text, checks["ok"])


# --- scenario 2: the primary is down ----------------------------------------------------------


def scenario_down(quick: bool, cpus: Cpus) -> dict[str, Any]:
    """Nothing listens on the primary's port: when does the breaker open, what does it cost?"""
    warm, per_mode = (30, 150) if quick else (150, 2000)
    dead = free_port()  # bound and released: nothing listens there
    with stack("down", cpus) as s:
        up_b = s.upstream("upstream-b")
        down = chat_spec(
            "down",
            f"http://127.0.0.1:{dead}/v1",
            fallback_url=f"{up_b.base}/v1",
            primary_timeout_ms=PRIMARY_TIMEOUT_MS,
            policies=CHAIN_POLICIES,
        )
        alone = chat_spec("backup_only", f"{up_b.base}/v1", policies=CHAIN_POLICIES)
        kw = s.keelwork([down, alone])
        pids = {"keelwork": kw.proc.pid, "upstream_b": up_b.pid}
        three = [kw_target(kw, "down"), kw_target(kw, "backup_only"), direct_target("direct", up_b)]
        until = {
            "url": kw.proc.base + "/metrics",
            "key": kw.operator_key,
            "name": "keelwork_breaker_state",
            "labels": {"service": "down", "model": "primary"},
            "value": 2.0,
            "max_requests": 200,
        }
        phases = run_load(
            s,
            [
                {
                    "label": "until_open",
                    "targets": [three[0]],
                    "concurrency": 1,
                    "requests": 200,
                    "until_metric": until,
                },
                {"label": "warmup", "targets": three, "concurrency": 1, "requests": 3 * warm},
                {"label": "measured", "targets": three, "concurrency": 1, "requests": 3 * per_mode},
            ],
            pids,
        )
        metrics = kw.metrics()
        expected = {"down": sent(phases, "down"), "backup_only": sent(phases, "backup_only")}
        checks = integrity(s, kw, expected, phases)
        rows = {r["request_id"]: r for r in journal_rows(kw.db_url, "down")}

    first, main = phases[0], phases[2]
    values = first["log"]["metric"]
    to_open = next((i + 1 for i, v in enumerate(values) if v == 2.0), None)
    open_ms = (first["log"]["start_us"][-1] + first["log"]["lat_us"][-1]) / 1000
    log = main["log"]
    # Classify the down service's requests by what the journal says happened to the primary.
    kinds: list[str] = []
    for t, rid in zip(log["target"], log["request_id"], strict=True):
        if t != 0:
            kinds.append("other")
            continue
        codes = [a["code"] for a in attempts_of(rows.get(rid or "", {})) if a["model"] == "primary"]
        kinds.append("open" if codes == ["model.circuit_open"] else "probe")
    open_lat = summary_ms(pick(log, [k == "open" for k in kinds]))
    probe_lat = summary_ms(pick(log, [k == "probe" for k in kinds]))
    alone_lat = summary_ms(pick(log, [t == 1 for t in log["target"]]))
    direct_lat = summary_ms(pick(log, [t == 2 for t in log["target"]]))
    diff = open_lat["p50_ms"] - alone_lat["p50_ms"]
    ok_all = all(main["log"]["ok"]) and all(phases[1]["log"]["ok"])
    pre_open = summary_ms(first["log"]["lat_us"])
    breaker_spec = {"window": 20, "min_calls": 10, "failure_rate": 0.5, "cooldown_ms": 5000}
    res: dict[str, Any] = {
        "config": {
            "primary": f"http://127.0.0.1:{dead}/v1 (nothing listening: connection refused)",
            "fallback": "upstream process, no faults",
            "policies": CHAIN_POLICIES,
            "primary_timeout_ms": PRIMARY_TIMEOUT_MS,
            "breaker": breaker_spec,
            "requests_per_mode": per_mode,
            "concurrency": 1,
            "modes": "down (breaker open), backup_only (the fallback as a primary), direct "
            "(the fallback upstream without keelwork), interleaved request by request",
        },
        "requests_until_open": to_open,
        "expected_requests_until_open": breaker_spec["min_calls"],
        "ms_until_open": open_ms,
        "latency_before_open": pre_open,
        "latency_open": open_lat,
        "latency_probes": probe_lat,
        "latency_fallback_alone": alone_lat,
        "latency_direct_upstream": direct_lat,
        "p50_open_minus_alone_ms": diff,
        "all_answers_ok": ok_all,
        "answered_by_fallback": sum(
            1 for t, fb in zip(log["target"], log["fallback"], strict=True) if t == 0 and fb
        ),
        "breaker_state_at_end": metric_value(
            metrics, "keelwork_breaker_state", service="down", model="primary"
        ),
        "cpu_use": cpu_use(main),
        "checks": checks,
    }
    res["verdicts"] = [
        verdict(
            "breaker opens",
            f"after min_calls = {breaker_spec['min_calls']} failed requests",
            f"after {to_open} requests ({open_ms:.0f} ms)",
            to_open == breaker_spec["min_calls"],
        ),
        verdict(
            "open-breaker p50 vs fallback alone",
            "<= fallback p50 + 2 ms",
            f"{open_lat['p50_ms']:.2f} vs {alone_lat['p50_ms']:.2f} ms ({diff:+.2f} ms)",
            diff <= 2.0,
        ),
        verdict("every answer valid", "100%", "yes" if ok_all else "no", ok_all),
        _integrity_verdict(checks),
    ]
    return res


# --- scenario 3: ten times the concurrency cap ------------------------------------------------


def scenario_overload(quick: bool, cpus: Cpus) -> dict[str, Any]:
    """A cap of 8 requests in the models and no queue, then 80 clients.

    Measured twice in the same run, with the light client and with httpx: at 80 clients that
    never pause, the answer rate (and so, by Little's law, the latency) is set by whichever
    process saturates first, and an httpx client costs the generator about as much CPU per
    request as keelwork spends refusing it. The verdicts are judged with the light client; the
    floor is a bare ASGI app that answers 503 at once, under the same load.
    """
    cap, clients, delay = 8, 80, 0.05
    rate = 10 * cap / delay  # 1,600 req/s: ten times the requests the cap lets through
    n_unloaded, secs = (300, 3.0) if quick else (2000, 15.0)
    policies = {"max_concurrency": cap, "max_queue": 0}
    # Clients that start together against a fixed-delay upstream stay in lockstep; spreading
    # their first requests over one upstream delay gives the steady arrivals real traffic has.
    spread = {"stagger_s": delay}
    with stack("overload", cpus) as s:
        up = s.upstream("upstream", delay_s=delay)
        floor = s.floor("floor")
        kw = s.keelwork([chat_spec("capped", f"{up.base}/v1", policies=policies)])
        pids = {"keelwork": kw.proc.pid, "upstream": up.pid, "floor": floor.pid}
        tgt = [kw_target(kw, "capped")]
        plan: list[dict[str, Any]] = []
        for gen in GENERATORS:
            tag = "" if gen == "light" else f"_{gen}"
            # each phase starts 2 s after the last, once the journal has written its backlog
            common = {**spread, "targets": tgt, "client": gen, "settle_s": 2.0}
            plan += [
                {**common, "label": f"warmup{tag}", "concurrency": cap, "requests": 100},
                {**common, "label": f"unloaded{tag}", "concurrency": cap, "requests": n_unloaded},
                {**common, "label": f"overload{tag}", "concurrency": clients, "seconds": secs},
                {
                    **common,
                    "label": f"overload_retry_after{tag}",
                    "concurrency": clients,
                    "seconds": secs,
                    "honour_retry_after": True,
                },
            ]
        floor_tgt = [target("floor", f"{floor.base}/v1/chat/completions", "capped", kw.key)]
        # Open loop: arrivals at 10x what the cap can serve (cap / delay per second), however
        # fast the answers come, each timed from its arrival; keelwork, then the floor.
        for label, tg in (("open", tgt), ("floor_open", floor_tgt)):
            plan.append(
                {"label": label, "targets": tg, "rate_rps": rate, "seconds": secs, "settle_s": 2.0}
            )
        plan.append(
            {
                **spread,
                "label": "floor",
                "targets": floor_tgt,
                "client": "light",
                "concurrency": clients,
                "seconds": secs,
                "settle_s": 2.0,
            }
        )
        phases = run_load(s, plan, pids)
        metrics = kw.metrics()
        checks = integrity(s, kw, {"capped": sent(phases, "capped")}, phases)
        rows = {r["request_id"]: r for r in journal_rows(kw.db_url, "capped")}

    by_label = {ph["label"]: ph for ph in phases}
    out: dict[str, Any] = {
        "config": {
            "max_concurrency": cap,
            "max_queue": 0,
            "upstream_delay_s": delay,
            "unloaded_clients": cap,
            "loaded_clients": clients,
            "seconds_loaded": secs,
            "clients": "closed loop, first requests spread over one upstream delay; in "
            "`overload` a shed client sends its next request at once, in "
            "`overload_retry_after` it first sleeps the Retry-After (1 s)",
            "generators": "closed-loop phases twice: the light client (raw HTTP/1.1, "
            "httptools) and httpx (labels ending in _httpx)",
            "open_loop": f"`open` and `floor_open`: Poisson arrivals at {rate:.0f} req/s "
            "(10x cap / upstream delay), light client, a new connection whenever all are busy, "
            "latency from each request's arrival time; the verdicts are judged on these",
        },
        "shed_total_metric": sum(v for _, v in metric_values(metrics, "keelwork_shed_total")),
        "checks": checks,
    }
    verdicts: list[dict[str, Any]] = []
    for gen in GENERATORS:
        tag = "" if gen == "light" else f"_{gen}"
        unloaded = by_label[f"unloaded{tag}"]
        base = summary_ms(pick(unloaded["log"], unloaded["log"]["ok"]))
        out[f"unloaded{tag}"] = {
            "statuses": statuses(unloaded["log"]),
            "latency_ok": base,
            "cpu_use": cpu_use(unloaded),
        }
        for label in (f"overload{tag}", f"overload_retry_after{tag}"):
            ph = by_label[label]
            one = _overload_phase(ph, rows, base)
            out[label] = one
            if gen != "light":
                continue
            what = (
                f"{clients} closed-loop clients resending at once"
                if label == "overload"
                else f"{clients} closed-loop clients honouring Retry-After"
            )
            verdicts += _overload_verdicts(one, base, what, context=True)
    fl = by_label["floor"]
    out["floor"] = {
        "statuses": statuses(fl["log"]),
        "requests": len(fl["log"]["status"]),
        "latency_503": summary_ms(pick(fl["log"], [st == 503 for st in fl["log"]["status"]])),
        "rps": len(fl["log"]["status"]) / fl["elapsed_s"],
        "cpu_use": cpu_use(fl),
    }
    unloaded = by_label["unloaded"]
    base = summary_ms(pick(unloaded["log"], unloaded["log"]["ok"]))
    out["open"] = _overload_phase(by_label["open"], rows, base)
    fo = by_label["floor_open"]["log"]
    out["floor_open"] = {
        "statuses": statuses(fo),
        "latency_503": summary_ms(pick(fo, [st == 503 for st in fo["status"]])),
    }
    for label in ("open", "floor_open"):
        out[label]["generator_lag_ms"] = summary_ms(by_label[label]["lag_us"])
    what = f"arrivals at 10x what the cap serves ({rate:.0f} req/s, open loop)"
    verdicts = _overload_verdicts(out["open"], base, what, context=False) + verdicts
    verdicts.append(_integrity_verdict(checks))
    out["verdicts"] = verdicts
    return out


def _overload_verdicts(
    one: dict[str, Any], base: dict[str, Any], what: str, *, context: bool
) -> list[dict[str, Any]]:
    s503, sadm = one["latency_503"], one["latency_admitted"]
    return [
        verdict(
            f"503 latency, {what}",
            "p99 <= 5 ms",
            f"p50 {s503['p50_ms']:.1f} / p99 {s503['p99_ms']:.1f} ms",
            s503["p99_ms"] <= 5.0,
            context=context,
        ),
        verdict(
            f"admitted p99, {what}",
            f"<= 2 x unloaded p99 ({2 * base['p99_ms']:.1f} ms)",
            f"{sadm['p99_ms']:.1f} ms ({sadm['p99_ms'] / base['p99_ms']:.2f}x)",
            sadm["p99_ms"] <= 2 * base["p99_ms"],
            context=context,
        ),
    ]


def _overload_phase(
    ph: dict[str, Any], rows: dict[str, dict[str, Any]], base: dict[str, Any]
) -> dict[str, Any]:
    log = ph["log"]
    shed = [st == 503 for st in log["status"]]
    adm = log["ok"]
    shed_ids = [r for r, sh in zip(log["request_id"], shed, strict=True) if sh and r]
    shed_rows = [rows[r] for r in shed_ids if r in rows]
    server_ms = sorted(r["latency_ms"] for r in shed_rows)
    sadm = summary_ms(pick(log, adm))
    n = len(log["status"])
    return {
        "client": ph["client"],
        "statuses": statuses(log),
        "requests": n,
        "shed": sum(shed),
        "shed_fraction": sum(shed) / n if n else float("nan"),
        "admitted_ok": sum(adm),
        "latency_503": summary_ms(pick(log, shed)),
        "latency_admitted": sadm,
        "admitted_p99_over_unloaded_p99": sadm["p99_ms"] / base["p99_ms"],
        "shed_server_side_ms": {
            "p50": percentile(server_ms, 50),
            "p99": percentile(server_ms, 99),
        },
        "shed_error_codes": dict(Counter(r["error_code"] for r in shed_rows)),
        "shed_without_journal_row": len(shed_ids) - len(shed_rows),
        "rps": n / ph["elapsed_s"],
        "cpu_use": cpu_use(ph),
    }


# --- scenario 4: pass-through overhead --------------------------------------------------------


def scenario_passthrough(
    quick: bool, cpus: Cpus, runs: Sequence[tuple[int, float]]
) -> dict[str, Any]:
    """keelwork in front of an upstream vs the upstream alone, per (clients, upstream delay).

    With closed-loop clients the offered load is clients / delay requests per second, so the
    upstream's answer time decides whether the 2 cores keep up; several delays show where
    the difference stops being keelwork's per-request cost and becomes queueing. The target
    is judged at 200 clients; other client counts are context.
    """
    out: dict[str, Any] = {"runs": {}, "verdicts": []}
    for clients, delay in runs:
        name = f"{clients} clients, upstream {delay * 1000:.0f} ms"
        one = _passthrough_one(quick, cpus, clients, delay)
        out["runs"][name] = one
        for v in one["verdicts"]:
            ctx = "" if clients == 200 else ", context: not the target's 200 clients"
            out["verdicts"].append({**v, "target": f"{v['target']} ({name}{ctx})"})
    return out


def _passthrough_one(quick: bool, cpus: Cpus, clients: int, delay: float) -> dict[str, Any]:
    rounds, secs, warm, rewarm = (1, 3.0, 2.0, 1.0) if quick else (4, 8.0, 3.0, 2.0)
    policies = {"timeout_ms": 10_000}  # max_concurrency: the default, 256
    with stack("passthrough", cpus) as s:
        up = s.upstream("upstream", delay_s=delay)
        kw = s.keelwork([chat_spec("passthru", f"{up.base}/v1", policies=policies)])
        pids = {"keelwork": kw.proc.pid, "upstream": up.pid}
        modes = {"keelwork": kw_target(kw, "passthru"), "direct": direct_target("direct", up)}
        plan: list[dict[str, Any]] = [
            {
                "label": f"warmup-{m}",
                "targets": [t],
                "concurrency": clients,
                "seconds": warm,
                "stagger_s": delay,
                "client": "light",
            }
            for m, t in modes.items()
        ]
        for r in range(rounds):
            order = ["keelwork", "direct"] if r % 2 == 0 else ["direct", "keelwork"]
            for m in order:
                # Each round is preceded by 2 s of the same load, not measured: after the other
                # mode's round every pooled connection has been idle past its 5 s keep-alive
                # expiry, and a round would otherwise open with 200 reconnects at once.
                one = {
                    "targets": [modes[m]],
                    "concurrency": clients,
                    "stagger_s": delay,
                    "client": "light",
                }
                plan += [
                    {**one, "label": f"warmup-round{r + 1}-{m}", "seconds": rewarm},
                    {**one, "label": f"round{r + 1}-{m}", "seconds": secs},
                ]
        phases = run_load(s, plan, pids, time_wait_port=up.port)
        metrics = kw.metrics()
        checks = integrity(s, kw, {"passthru": sent(phases, "passthru")}, phases)
        rows = journal_rows(kw.db_url, "passthru")

    per: dict[str, list[dict[str, Any]]] = {"keelwork": [], "direct": []}
    for ph in phases:
        if ph["label"].startswith("warmup"):
            continue
        mode = ph["label"].split("-", 1)[1]
        log = ph["log"]
        per[mode].append(
            {
                "label": ph["label"],
                **summary_ms(log["lat_us"]),
                "ok": sum(log["ok"]),
                "statuses": statuses(log),
                "rps": len(log["status"]) / ph["elapsed_s"],
                "cpu_use": cpu_use(ph),
                "keelwork_cpu_ms_per_request": (ph["cpu_s"].get("keelwork") or 0.0)
                * 1000
                / max(1, len(log["status"])),
                "time_wait_to_upstream": ph["time_wait"],
            }
        )
    diffs = [k["p50_ms"] - d["p50_ms"] for k, d in zip(per["keelwork"], per["direct"], strict=True)]
    diff = statistics.median(diffs)
    med = {m: statistics.median(r["p50_ms"] for r in rs) for m, rs in per.items()}
    rps = {m: statistics.median(r["rps"] for r in rs) for m, rs in per.items()}
    kw_cpu = statistics.median(r["cpu_use"].get("keelwork", 0.0) for r in per["keelwork"])
    all_ok = all(r["ok"] == r["n"] for rs in per.values() for r in rs)
    warm_ph = next(ph for ph in phases if ph["label"] == "warmup-keelwork")["log"]
    failed = [a for r in rows for a in attempts_of(r) if not a["ok"]]
    failure_codes = Counter(a["code"] for a in failed)
    res: dict[str, Any] = {
        "config": {
            "clients": clients,
            "upstream_delay_s": delay,
            "offered_rps": clients / delay,
            "rounds": rounds,
            "seconds_per_round": secs,
            "warmup_s": warm,
            "warmup_before_each_round_s": rewarm,
            "policies": policies,
            "note": "max_concurrency is the default (256), above the 200 clients; "
            "timeout_ms 10000 so the timeout does not decide the measurement",
        },
        "rounds": per,
        "p50_median_ms": med,
        "rps_median": rps,
        "keelwork_cpu_use_median": kw_cpu,
        "p50_diff_per_round_ms": diffs,
        "p50_diff_median_ms": diff,
        "all_answers_ok": all_ok,
        "warmup_keelwork": {**summary_ms(warm_ph["lat_us"]), "statuses": statuses(warm_ph)},
        "failed_attempts_by_code": dict(failure_codes),
        "failed_attempts_examples": [a["error"] for a in failed[:5]],
        "keelwork_cpu_ms_per_request_median": statistics.median(
            r["keelwork_cpu_ms_per_request"] for r in per["keelwork"]
        ),
        "new_connections_to_upstream_per_keelwork_round": [
            (r["time_wait_to_upstream"][1] - r["time_wait_to_upstream"][0]) for r in per["keelwork"]
        ],
        "breaker_opened": sum(
            v
            for lab, v in metric_values(metrics, "keelwork_breaker_transitions_total")
            if lab.get("state") == "open"
        ),
        "checks": checks,
    }
    bad = sum(r["n"] - r["ok"] for rs in per.values() for r in rs)
    res["verdicts"] = [
        verdict(
            "pass-through overhead at p50",
            "<= 1 ms",
            f"{diff:+.2f} ms (keelwork {med['keelwork']:.1f} vs direct {med['direct']:.1f} ms; "
            f"{rps['keelwork']:.0f} vs {rps['direct']:.0f} req/s)",
            diff <= 1.0,
        ),
        verdict("every answer valid", "100%", "yes" if all_ok else f"{bad} not", all_ok),
        _integrity_verdict(checks),
    ]
    return res


# --- report -----------------------------------------------------------------------------------


def _f(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def _lat_row(label: str, s: dict[str, Any], digits: int = 1) -> list[str]:
    return [
        label,
        f"{s['n']:,}",
        *(_f(s[k], digits) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")),
    ]


def _lat_table(title: str, rows: list[list[str]]) -> Table:
    t = Table(title=title)
    for col in ("requests", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        t.add_column(col, justify="left" if col == "requests" else "right")
    for r in rows:
        t.add_row(*r)
    return t


def _cpu(c: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in c.items())


def print_report(res: dict[str, Any]) -> None:
    m = res["machine"]
    console.print(f"\n[bold]keelwork faults and load[/]  {m['cpu']}, {m['nproc']} CPUs")
    sc = res["scenarios"]
    if "failing" in sc:
        f = sc["failing"]
        console.print(
            _lat_table(
                f"1. primary failing 30%: {f['config']['requests']:,} requests, "
                f"{f['config']['concurrency']} clients",
                [
                    _lat_row("all", f["latency_all"]),
                    _lat_row("2xx valid", f["latency_ok"]),
                    _lat_row("answered by the primary", f["latency_by_primary"]),
                    _lat_row("answered by the fallback", f["latency_by_fallback"]),
                ],
            )
        )
        console.print(
            f"statuses {f['statuses']}; success {f['success_rate']:.3%}; primary "
            f"{f['answered_by_primary']:,}, fallback {f['answered_by_fallback']:,}; primary "
            f"calls at the proxy {f['primary_calls_at_proxy']:,} ({f['faults_injected']}); "
            f"retries: journal {f['retries_in_journal']}, observed at the proxy "
            f"{f['retries_observed_at_proxy']}; breaker opened {f['breaker_opened']:.0f}x; "
            f"{f['throughput_rps']:.0f} req/s; CPU {_cpu(f['cpu_use'])}"
        )
    if "down" in sc:
        d = sc["down"]
        console.print(
            _lat_table(
                f"2. primary down: breaker open after {d['requests_until_open']} requests "
                f"({d['ms_until_open']:.0f} ms)",
                [
                    _lat_row("before it opened", d["latency_before_open"], 2),
                    _lat_row("down, breaker open", d["latency_open"], 2),
                    _lat_row("down, half-open probes", d["latency_probes"], 2),
                    _lat_row("fallback alone (backup_only)", d["latency_fallback_alone"], 2),
                    _lat_row("fallback upstream, direct", d["latency_direct_upstream"], 2),
                ],
            )
        )
    if "overload" in sc:
        o = sc["overload"]
        rows = []
        for gen in GENERATORS:
            tag = "" if gen == "light" else f"_{gen}"
            rows.append(
                _lat_row(f"unloaded{tag} (8 clients), 200", o[f"unloaded{tag}"]["latency_ok"])
            )
            for lab in (f"overload{tag}", f"overload_retry_after{tag}"):
                rows += [
                    _lat_row(f"{lab}: admitted 200", o[lab]["latency_admitted"]),
                    _lat_row(f"{lab}: shed 503", o[lab]["latency_503"]),
                ]
        rows.append(_lat_row("floor: bare ASGI app, 503", o["floor"]["latency_503"]))
        rows += [
            _lat_row("open: admitted 200", o["open"]["latency_admitted"]),
            _lat_row("open: shed 503", o["open"]["latency_503"]),
            _lat_row("open: generator lag", o["open"]["generator_lag_ms"]),
            _lat_row("floor_open: 503", o["floor_open"]["latency_503"]),
        ]
        console.print(_lat_table("3. a cap of 8: 80 clients, and open-loop arrivals", rows))
        for gen in GENERATORS:
            tag = "" if gen == "light" else f"_{gen}"
            for lab in (f"overload{tag}", f"overload_retry_after{tag}", "open"):
                if lab == "open" and gen != "light":
                    continue
                x = o[lab]
                console.print(
                    f"{lab}: shed {x['shed_fraction']:.1%} of {x['requests']:,} "
                    f"({x['rps']:.0f} req/s); keelwork's own time on a shed request p50 "
                    f"{x['shed_server_side_ms']['p50']:.2f} / p99 "
                    f"{x['shed_server_side_ms']['p99']:.2f} ms; CPU {_cpu(x['cpu_use'])}"
                )
        f = o["floor"]
        console.print(f"floor: {f['rps']:.0f} req/s; CPU {_cpu(f['cpu_use'])}")
    if "passthrough" in sc:
        for key, one in sc["passthrough"]["runs"].items():
            rows = [
                _lat_row(f"{r['label']} ({r['rps']:.0f} req/s)", r)
                for rs in one["rounds"].values()
                for r in rs
            ]
            console.print(
                _lat_table(
                    f"4. pass-through, {key}; keelwork CPU {one['keelwork_cpu_use_median']:.0%}"
                    f", {one['keelwork_cpu_ms_per_request_median']:.2f} ms per request",
                    rows,
                )
            )
    t = Table(title="verdicts")
    for col in ("scenario", "target", "wanted", "measured", "verdict"):
        t.add_column(col)
    for name, r in sc.items():
        for v in r["verdicts"]:
            t.add_row(
                name,
                v["target"],
                v["wanted"],
                v["measured"],
                ("context: " if v.get("context") else "")
                + ("[green]met[/]" if v["met"] else "[red]MISSED[/]"),
            )
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run (under a minute)")
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    p.add_argument(
        "--passthrough-runs",
        default="200x2000,200x1000,200x500,32x400",
        help="scenario 4's CLIENTSxDELAY_MS runs, one fresh setup each (quick: 200x1000)",
    )
    p.add_argument("--out", type=Path, help="JSON path (default bench/results/faults.json)")
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="run every process on every core (default: the server under test gets a core "
        "of its own, the load generator and upstreams the others)",
    )
    a = p.parse_args(argv)
    wanted = [x.strip() for x in a.only.split(",") if x.strip()]
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s) {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    source = check_source()
    cpus = Cpus() if a.no_pin else Cpus.split()
    if cpus.rest is not None:
        os.sched_setaffinity(0, cpus.rest)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = (a.out or RESULTS / ("faults-quick.json" if a.quick else "faults.json")).resolve()
    res: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/faults.py", *(argv or sys.argv[1:])]),
        "machine": {**machine_info(), "loadavg_at_start": os.getloadavg()},
        "git": git_state("src"),
        "keelwork_source": source,
        "servers": f"each in its own process: uvicorn, {UVICORN_SETTINGS}",
        "cpus": cpus.describe(),
        "load_generator": "asyncio, closed loop, its own process (uvloop); httpx, and in "
        "scenario 3 also the light client (raw HTTP/1.1, httptools)",
        "scenarios": {},
    }
    t0 = time.monotonic()
    try:
        for name in wanted:
            console.print(f"[bold]{name}[/] ...")
            if name == "failing":
                res["scenarios"][name] = scenario_failing(a.quick, cpus)
            elif name == "down":
                res["scenarios"][name] = scenario_down(a.quick, cpus)
            elif name == "overload":
                res["scenarios"][name] = scenario_overload(a.quick, cpus)
            else:
                runs = [
                    (int(c), float(d) / 1000)
                    for c, d in (x.split("x") for x in a.passthrough_runs.split(","))
                ]
                res["scenarios"][name] = scenario_passthrough(
                    a.quick, cpus, [(200, 1.0)] if a.quick else runs
                )
    except BenchError as exc:
        console.print(f"[bold red]benchmark failed:[/] {exc}")
        return 1
    res["seconds"] = time.monotonic() - t0
    out.write_text(json.dumps(res, indent=2, default=str))
    print_report(res)
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    console.print(f"[dim]{res['seconds']:.0f} s; wrote {shown}[/]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
