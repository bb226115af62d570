"""What keelwork costs on top of the model it serves, in-process and over HTTP.

A. In-process, per call: the demo model called directly, the same call behind
   ``asyncio.to_thread`` (a thread hop), ``Service.predict`` with every stage on (the demo
   spec as shipped: classifier ``executor: inline``), and the same with the classifier forced
   to ``executor: thread`` (its own 1-thread pool). Modes are interleaved in short rounds so
   machine noise hits all alike; A2 repeats them with an instant model.
B. HTTP, throughput and latency: keelwork's server (the demo spec as shipped, and with
   ``executor: thread``) against a bare Starlette app serving the same model (inline, and
   behind ``asyncio.to_thread``), each in its own uvicorn process with identical settings,
   pinned to CPU 0 and loaded one at a time by ``wrk`` on CPU 1, in rotating rounds.

The targets are judged on the demo spec as shipped; the thread variants are for comparison.

    python bench/overhead.py [--duration 15] [--concurrency 16] [--calls 3000] [--quick]
    python bench/overhead.py --profile 5000   # cProfile of the in-process keelwork loop

Results are printed as tables and written to bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _common import (
    DEMO,
    PREDICT_PATH,
    ROOT,
    Summary,
    classifier_executor,
    demo_service,
    free_port,
    git_state,
    load_texts,
    machine_info,
    proc_cpu_seconds,
    summarise_ns,
)
from rich.console import Console
from rich.table import Table

import keelwork
from keelwork.security.keys import KeyStore
from keelwork.store.engine import Store

RESULTS = Path(__file__).resolve().parent / "results"
LAUNCHER = Path(__file__).resolve().parent / "_common.py"
INPROC_TARGET_MS = 0.3
HTTP_TARGET_RATIO = 0.60
MODES = ("direct", "to_thread", "keelwork", "keelwork_thread")

console = Console(width=None if sys.stdout.isatty() else 110)


class BenchError(RuntimeError):
    """A check failed: the figures would not mean what they say."""


# --- A. in-process ------------------------------------------------------------------------


def _instant(record: dict[str, Any]) -> dict[str, Any]:
    """A model that costs nothing: isolates what the pipeline itself adds."""
    return {"intent": "card_arrival", "confidence": 1.0}


async def _inproc_async(calls: int, warmup: int, round_size: int) -> dict[str, Any]:
    texts = load_texts()
    with tempfile.TemporaryDirectory(prefix="kw-bench-") as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        url_thread = f"sqlite:///{tmp}/bench-thread.db"
        svc = demo_service(url)
        svc_thread = demo_service(url_thread, executor="thread")
        executors = {
            "keelwork": classifier_executor(svc),
            "keelwork_thread": classifier_executor(svc_thread),
        }
        provider: Any = svc.providers["classifier"]
        provider_thread: Any = svc_thread.providers["classifier"]
        model_predict = provider.predict
        clock = time.perf_counter_ns

        async def one_round(mode: str, batch: list[str], out: list[int] | None) -> None:
            # One specialised loop per mode, so no wrapper cost lands on any of them.
            predict = provider.predict
            if mode == "direct":
                for t in batch:
                    rec = {"text": t}
                    t0 = clock()
                    predict(rec)
                    dt = clock() - t0
                    if out is not None:
                        out.append(dt)
            elif mode == "to_thread":
                for t in batch:
                    rec = {"text": t}
                    t0 = clock()
                    await asyncio.to_thread(predict, rec)
                    dt = clock() - t0
                    if out is not None:
                        out.append(dt)
            else:
                service = svc if mode == "keelwork" else svc_thread
                for t in batch:
                    rec = {"text": t}
                    t0 = clock()
                    await service.predict(rec)
                    dt = clock() - t0
                    if out is not None:
                        out.append(dt)

        async def interleaved(n: int) -> dict[str, Summary]:
            """Warm up, then rounds of ``round_size`` calls per mode, rotating who goes first."""
            samples: dict[str, list[int]] = {m: [] for m in MODES}
            for m in MODES:  # caches, thread pool, journal writer
                await one_round(m, texts[:warmup], None)
            rounds = -(-n // round_size)
            for r in range(rounds):
                start = (r * round_size) % len(texts)
                batch = (texts[start:] + texts[:start])[: min(round_size, n - r * round_size)]
                k = r % len(MODES)
                for m in MODES[k:] + MODES[:k]:
                    await one_round(m, batch, samples[m])
            return {m: summarise_ns(samples[m]) for m in MODES}

        async with svc, svc_thread:
            sums = await interleaved(calls)
            # The same loops with a model that costs nothing: the pipeline's own time.
            model_predict_thread = provider_thread.predict
            provider.predict = provider_thread.predict = _instant
            instant = await interleaved(calls)
            provider.predict, provider_thread.predict = model_predict, model_predict_thread
        # After close the journal is flushed: every keelwork call must be on disk.
        expected = 2 * (warmup + calls)
        for u in (url, url_thread):
            on_disk = Store(u).count("journal")
            if on_disk != expected:
                raise BenchError(f"journal holds {on_disk} rows after {expected} keelwork calls")

    def derived(m: dict[str, Summary]) -> dict[str, Any]:
        return {
            "modes": {k: v.as_dict() for k, v in m.items()},
            "overhead_p50_ms": m["keelwork"].p50_ms - m["direct"].p50_ms,
            "overhead_mean_ms": m["keelwork"].mean_ms - m["direct"].mean_ms,
            "thread_hop_p50_ms": m["to_thread"].p50_ms - m["direct"].p50_ms,
            "thread_overhead_p50_ms": m["keelwork_thread"].p50_ms - m["direct"].p50_ms,
            "thread_overhead_mean_ms": m["keelwork_thread"].mean_ms - m["direct"].mean_ms,
            "thread_overhead_p50_vs_to_thread_ms": m["keelwork_thread"].p50_ms
            - m["to_thread"].p50_ms,
        }

    return {
        "calls_per_mode": calls,
        "warmup_per_mode": warmup,
        "round_size": round_size,
        "event_loop": "asyncio (default)",
        "classifier_executor": executors,
        "journal_rows_per_service": expected,
        **derived(sums),
        "instant_model": derived(instant),
    }


def run_inproc(calls: int, warmup: int, round_size: int) -> dict[str, Any]:
    return asyncio.run(_inproc_async(calls, warmup, round_size))


# --- B. HTTP --------------------------------------------------------------------------------


def _lua_script(texts: list[str], key: str) -> str:
    """POST bodies cycled from real texts, the same bytes for every server, stats as JSON."""
    bodies = []
    for t in texts:
        b = json.dumps({"text": t})
        if "]==]" in b:
            continue
        bodies.append(f"[==[{b}]==]")
    return f"""
local bodies = {{ {", ".join(bodies)} }}
local reqs = {{}}
local i = 0
function init(args)
  local headers = {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer {key}"}}
  for k, b in ipairs(bodies) do
    reqs[k] = wrk.format("POST", nil, headers, b)
  end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests": %d, "duration_us": %d, "bytes": %d, "non2xx": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "p999_us": %d, "mean_us": %.1f, "max_us": %d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
"""


def _pin(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


def _wait_ready(proc: subprocess.Popen[bytes], port: int, key: str, log: Path) -> dict[str, Any]:
    """Poll with a real prediction until the server answers 200 (the model takes a while)."""
    deadline = time.monotonic() + 180
    url = f"http://127.0.0.1:{port}{PREDICT_PATH}"
    headers = {"Authorization": f"Bearer {key}"}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            r = httpx.post(url, json={"text": "my card has not arrived"}, headers=headers)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if r.status_code != 200:
            raise BenchError(f"probe got {r.status_code}: {r.text[:500]}")
        body: dict[str, Any] = r.json()
        return body
    raise BenchError(f"server on port {port} not ready after 180 s")


def _wrk(
    port: int, script: Path, seconds: float, concurrency: int, threads: int, cpu: int | None
) -> tuple[dict[str, Any], str]:
    """One load run: wrk with the Lua script, or the Python fallback with the same bodies."""
    url = f"http://127.0.0.1:{port}{PREDICT_PATH}"
    if shutil.which("wrk") is not None:
        cmd = [
            *_pin(cpu),
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
    else:
        key = script.with_suffix(".key").read_text()
        cmd = [
            *_pin(cpu),
            sys.executable,
            str(LAUNCHER),
            "load",
            url,
            "--key",
            key,
            "--bodies",
            str(script.with_suffix(".jsonl")),
            "--seconds",
            str(seconds),
            "--clients",
            str(concurrency),
        ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise BenchError(f"wrk printed no summary:\n{out}")
    stats: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    bad = {k: stats[k] for k in ("non2xx", "connect", "read", "write", "timeout") if stats[k]}
    if bad:
        raise BenchError(f"wrk saw failed requests on port {port}: {bad}\n{out}")
    return stats, out


def _journal_outcomes(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    from keelwork.store.tables import journal

    store = Store(url)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(journal.c.status, sa.func.count()).group_by(journal.c.status))
        return {str(s): int(n) for s, n in rows}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT lets uvicorn shut down cleanly (keelwork flushes its journal on the way out)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class _Server:
    """One running server process and what it needs to be loaded and checked."""

    mode: str
    port: int
    url: str
    key: str
    script: Path
    log: Path
    proc: subprocess.Popen[bytes]
    answered: int = 0


def _start(mode: str, tmp: Path, texts: list[str], cpu: int | None) -> _Server:
    port = free_port()
    url = f"sqlite:///{tmp}/{mode}.db"
    key = "none"  # the bare apps ignore the header, but receive the same bytes
    if mode.startswith("keelwork"):
        store = Store(url)
        store.migrate()
        key, _ = KeyStore(store).create("client", name="bench")
        store.dispose()
    script = tmp / f"{mode}.lua"
    script.write_text(_lua_script(texts, key))
    script.with_suffix(".jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    script.with_suffix(".key").write_text(key)
    log = tmp / f"{mode}.log"
    cmd = [*_pin(cpu), sys.executable, str(LAUNCHER), "serve", mode, "--port", str(port)]
    if mode.startswith("keelwork"):
        cmd += ["--database-url", url]
    with log.open("wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT)
    return _Server(mode, port, url, key, script, log, proc)


def _measure(
    srv: _Server, duration: float, warmup: float, concurrency: int, threads: int, cpu: int | None
) -> dict[str, Any]:
    """Warm up, then one measured wrk run; the server's CPU time is read around it."""
    if warmup > 0:
        warm, _ = _wrk(srv.port, srv.script, warmup, concurrency, threads, cpu)
        srv.answered += warm["requests"]
    cpu0 = proc_cpu_seconds(srv.proc.pid)
    stats, raw = _wrk(srv.port, srv.script, duration, concurrency, threads, cpu)
    cpu_s = proc_cpu_seconds(srv.proc.pid) - cpu0
    srv.answered += stats["requests"]
    seconds = stats["duration_us"] / 1e6
    return {
        "requests": stats["requests"],
        "seconds": seconds,
        "rps": stats["requests"] / seconds,
        "p50_ms": stats["p50_us"] / 1000,
        "p90_ms": stats["p90_us"] / 1000,
        "p99_ms": stats["p99_us"] / 1000,
        "p999_ms": stats["p999_us"] / 1000,
        "mean_ms": stats["mean_us"] / 1000,
        "max_ms": stats["max_us"] / 1000,
        "non2xx": stats["non2xx"],
        "server_cpu_s": cpu_s,
        "server_cpu_ms_per_request": cpu_s * 1000 / max(1, stats["requests"]),
        "server_cpu_utilisation": cpu_s / seconds,
        "wrk_output": raw,
    }


def _median_of(segments: list[dict[str, Any]], key: str) -> float:
    return statistics.median(s[key] for s in segments)


def run_http(
    duration: float,
    warmup: float,
    concurrency: int,
    threads: int,
    modes: list[str],
    rounds: int,
) -> dict[str, Any]:
    """All servers up at once (idle ones cost nothing), loaded one at a time, in rounds.

    Rounds rotate the order, so a slow spell on a shared machine does not land on one server
    only; each figure is the median over rounds, and the ratio is the median of the per-round
    ratios (neighbours in time).
    """
    generator = "wrk" if shutil.which("wrk") else "python httpx (wrk not installed)"
    if generator != "wrk":
        console.print(
            "[yellow]wrk is not installed (Debian: apt-get install -y wrk); using the Python "
            "load generator, which may be the bottleneck: treat req/s as a lower bound[/]"
        )
    pinned = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    server_cpu, load_cpu = (0, 1) if pinned else (None, None)
    texts = load_texts(500)
    segments: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    journal_checks: dict[str, Any] = {}
    executors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="kw-bench-http-") as tmp:
        servers = {m: _start(m, Path(tmp), texts, server_cpu) for m in modes}
        try:
            for srv in servers.values():
                probe = _wait_ready(srv.proc, srv.port, srv.key, srv.log)
                srv.answered += 1
                answer = probe.get("output", probe)
                found = re.search(r"^KWEXECUTOR (\S+)", srv.log.read_text(), re.MULTILINE)
                if srv.mode.startswith("keelwork"):
                    executors[srv.mode] = found.group(1) if found else "unknown"
                how = f", classifier {executors[srv.mode]}" if srv.mode in executors else ""
                console.print(
                    f"[dim]{srv.mode}: ready on port {srv.port}{how}, probe -> {answer}[/]"
                )
            for r in range(rounds):
                order = modes[r % len(modes) :] + modes[: r % len(modes)]
                for m in order:
                    console.print(f"[dim]round {r + 1}/{rounds}: {m}[/]")
                    seg = _measure(servers[m], duration, warmup, concurrency, threads, load_cpu)
                    seg["round"] = r + 1
                    segments[m].append(seg)
        finally:
            for srv in servers.values():
                _stop(srv.proc)
        # Shut down cleanly, so each journal is flushed: every 200 must be an ok row.
        for srv in servers.values():
            if not srv.mode.startswith("keelwork"):
                continue
            outcomes = _journal_outcomes(srv.url)
            if outcomes.get("ok", 0) < srv.answered or set(outcomes) != {"ok"}:
                raise BenchError(
                    f"{srv.mode}: journal {outcomes} does not cover the {srv.answered} "
                    "answered requests"
                )
            journal_checks[srv.mode] = {"answered_200": srv.answered, "rows_by_status": outcomes}
    summary: dict[str, Any] = {}
    for m, segs in segments.items():
        rps = [s["rps"] for s in segs]
        summary[m] = {
            "rps": statistics.median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "p50_ms": _median_of(segs, "p50_ms"),
            "p99_ms": _median_of(segs, "p99_ms"),
            "mean_ms": _median_of(segs, "mean_ms"),
            "server_cpu_ms_per_request": _median_of(segs, "server_cpu_ms_per_request"),
            "server_cpu_utilisation": _median_of(segs, "server_cpu_utilisation"),
            "requests": sum(s["requests"] for s in segs),
        }
    out: dict[str, Any] = {
        "duration_s": duration,
        "warmup_s": warmup,
        "rounds": rounds,
        "concurrency": concurrency,
        "load_generator": generator,
        "wrk_threads": threads,
        "server_cpu": server_cpu,
        "load_generator_cpu": load_cpu,
        "uvicorn": "1 worker, loop=uvloop, http=httptools, access_log off, log_level warning",
        "classifier_executor": executors,
        "servers": summary,
        "segments": segments,
    }
    out["journal_checks"] = journal_checks
    for kw in ("keelwork", "keelwork-thread"):
        for base in ("bare", "bare-thread"):
            if kw in segments and base in segments:
                per_round = [
                    k["rps"] / b["rps"] for k, b in zip(segments[kw], segments[base], strict=True)
                ]
                key = f"ratio_rps_{kw}_vs_{base}".replace("-", "_")
                out[key] = statistics.median(per_round)
                out[key + "_per_round"] = per_round
    return out


# --- profile --------------------------------------------------------------------------------


def run_profile(calls: int, top: int) -> str:
    """cProfile of ``Service.predict`` in a loop: where keelwork's own time goes.

    The demo as shipped runs its model inline, so the model's time is in the profile too
    (sklearn and numpy functions); the keelwork table picks out keelwork's own functions.
    """
    texts = load_texts()
    prof = cProfile.Profile()

    async def loop() -> None:
        with tempfile.TemporaryDirectory(prefix="kw-bench-prof-") as tmp:
            async with keelwork.load_service(DEMO, database_url=f"sqlite:///{tmp}/p.db") as svc:
                for t in texts[:200]:
                    await svc.predict({"text": t})
                prof.enable()
                for i in range(calls):
                    await svc.predict({"text": texts[i % len(texts)]})
                prof.disable()

    asyncio.run(loop())
    st = pstats.Stats(prof)
    raw: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    rows = []
    for (path, line, func), (_cc, nc, tt, ct, _callers) in raw.items():
        where = re.sub(r"^.*/(site-packages|src|lib/python3\.\d+)/", "", path)
        rows.append((tt, ct, nc, f"{where}:{line}({func})", "/src/keelwork/" in path))
    total = sum(r[0] for r in rows)
    buf = io.StringIO()
    buf.write(
        f"cProfile of {calls} in-process Service.predict calls (event-loop thread only); "
        f"times are microseconds per predict call\n"
    )

    def table(title: str, picked: list[tuple[float, float, int, str, bool]]) -> None:
        buf.write(f"\n{title}\n{'self us':>9} {'cum us':>9} {'calls':>8}  function\n")
        for tt, ct, nc, name, _ in picked[:top]:
            buf.write(f"{tt / calls * 1e6:9.2f} {ct / calls * 1e6:9.2f} {nc:8d}  {name}\n")

    rows.sort(key=lambda r: r[0], reverse=True)
    table("all functions by self time", rows)
    table("keelwork functions by self time", [r for r in rows if r[4]])
    own = sum(r[0] for r in rows if r[4])
    buf.write(
        f"\nkeelwork self time: {own / calls * 1e6:.1f} us per call "
        f"of {total / calls * 1e6:.1f} us profiled (including the idle wait in epoll)\n"
        "(coroutine call counts are inflated: each resume counts as a call)\n"
    )
    return buf.getvalue()


# --- report ---------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]MISSED[/]"


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def print_report(res: dict[str, Any]) -> None:
    m = res["machine"]
    console.print(
        f"\n[bold]keelwork overhead[/]  {m['cpu']}, {m['nproc']} CPUs, Python {m['python']}"
    )
    inproc = res.get("inproc")
    if inproc:
        t = Table(title=f"A. in-process, {inproc['calls_per_mode']} calls per mode (ms)")
        for col in ("mode", "p50", "p90", "p99", "mean"):
            t.add_column(col, justify="right" if col != "mode" else "left")
        labels = {
            "direct": "direct provider.predict",
            "to_thread": "asyncio.to_thread(provider.predict)",
            "keelwork": f"await svc.predict (demo, {inproc['classifier_executor']['keelwork']})",
            "keelwork_thread": "same, classifier executor: "
            + inproc["classifier_executor"]["keelwork_thread"],
        }
        for mode in MODES:
            s = Summary(**inproc["modes"][mode])
            t.add_row(labels[mode], *map(_fmt, (s.p50_ms, s.p90_ms, s.p99_ms, s.mean_ms)))
        console.print(t)
        ins = inproc["instant_model"]
        t2 = Table(title="A2. the same loops with an instant model: keelwork's own cost (ms)")
        for col in ("mode", "p50", "p99", "mean"):
            t2.add_column(col, justify="right" if col != "mode" else "left")
        for mode in MODES:
            s = Summary(**ins["modes"][mode])
            t2.add_row(labels[mode], *map(_fmt, (s.p50_ms, s.p99_ms, s.mean_ms)))
        console.print(t2)
        console.print(
            f"instant model at p50: pipeline (keelwork - direct) {ins['overhead_p50_ms']:.3f} ms, "
            f"asyncio.to_thread hop {ins['thread_hop_p50_ms']:.3f} ms, "
            f"keelwork-thread - direct {ins['thread_overhead_p50_ms']:.3f} ms"
        )
        ov = inproc["overhead_p50_ms"]
        console.print(
            f"overhead p50 keelwork - direct = [bold]{ov:.3f} ms[/] "
            f"(target <= {INPROC_TARGET_MS} ms: {_verdict(ov <= INPROC_TARGET_MS)}); "
            f"keelwork-thread - direct {inproc['thread_overhead_p50_ms']:.3f} ms "
            f"(asyncio.to_thread hop alone {inproc['thread_hop_p50_ms']:.3f} ms)"
        )
    http = res.get("http")
    if http:
        t = Table(
            title=f"B. HTTP, {http['concurrency']} connections, {http['rounds']} x "
            f"{http['duration_s']:g} s per server (medians), "
            f"server on CPU {http['server_cpu']}, {http['load_generator'].split()[0]} on CPU "
            f"{http['load_generator_cpu']}"
        )
        cols = ("server", "req/s", "req/s range", "p50 ms", "p99 ms", "CPU ms/req", "CPU use")
        for col in cols:
            t.add_column(col, justify="right" if col != "server" else "left")
        for mode, s in http["servers"].items():
            how = http.get("classifier_executor", {}).get(mode)
            t.add_row(
                f"{mode} ({how})" if how else mode,
                f"{s['rps']:.0f}",
                f"{s['rps_min']:.0f}-{s['rps_max']:.0f}",
                _fmt(s["p50_ms"]),
                _fmt(s["p99_ms"]),
                _fmt(s["server_cpu_ms_per_request"]),
                f"{s['server_cpu_utilisation']:.0%}",
            )
        console.print(t)
        idle = [m for m, s in http["servers"].items() if s["server_cpu_utilisation"] < 0.9]
        if idle:
            console.print(
                f"[yellow]not saturated ({', '.join(idle)}: server CPU < 90%): the load "
                "generator, not the server, set these req/s[/]"
            )
        if "ratio_rps_keelwork_vs_bare" in http:
            r = http["ratio_rps_keelwork_vs_bare"]
            console.print(
                f"throughput keelwork / bare (median of per-round ratios) = [bold]{r:.0%}[/] "
                f"(target >= {HTTP_TARGET_RATIO:.0%}: {_verdict(r >= HTTP_TARGET_RATIO)})"
            )
        for key, label in (
            ("ratio_rps_keelwork_vs_bare_thread", "keelwork / bare-thread"),
            ("ratio_rps_keelwork_thread_vs_bare", "keelwork-thread / bare"),
            ("ratio_rps_keelwork_thread_vs_bare_thread", "keelwork-thread / bare-thread"),
        ):
            if key in http:
                console.print(f"throughput {label} = {http[key]:.0%}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per server")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per server")
    p.add_argument("--concurrency", type=int, default=16, help="wrk connections")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (it has one core)")
    p.add_argument("--rounds", type=int, help="HTTP rounds over all servers (default 3)")
    p.add_argument("--calls", type=int, default=3000, help="in-process calls per mode")
    p.add_argument("--round-size", type=int, default=100, help="calls per mode per round")
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run")
    p.add_argument("--skip-http", action="store_true", help="in-process part only")
    p.add_argument("--skip-inproc", action="store_true", help="HTTP part only")
    p.add_argument(
        "--servers",
        default="bare,bare-thread,keelwork,keelwork-thread",
        help="comma-separated from: bare (model inline), bare-thread (to_thread), keelwork "
        "(the demo as shipped), keelwork-thread (the demo with executor: thread)",
    )
    p.add_argument("--profile", type=int, metavar="N", help="only profile N in-process calls")
    p.add_argument("--out", type=Path, help="JSON path (default bench/results/overhead.json)")
    a = p.parse_args(argv)

    RESULTS.mkdir(parents=True, exist_ok=True)
    if a.profile:
        text = run_profile(a.profile, 30)
        (RESULTS / "overhead_profile.txt").write_text(text)
        console.print(text, markup=False, highlight=False)
        return 0

    warmup_calls = 300
    if a.quick:
        a.duration, a.warmup, a.calls, a.round_size, warmup_calls = 2.0, 1.0, 300, 50, 50
        a.rounds = a.rounds or 1
    a.rounds = a.rounds or 3
    out = a.out or RESULTS / ("overhead-quick.json" if a.quick else "overhead.json")
    res: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/overhead.py", *(argv or sys.argv[1:])]),
        "machine": machine_info(),
        "git": git_state("src", "examples"),
        "targets": {
            "inproc_overhead_p50_ms": INPROC_TARGET_MS,
            "http_rps_ratio": HTTP_TARGET_RATIO,
        },
    }
    try:
        if not a.skip_inproc:
            console.print("[bold]A. in-process[/] ...")
            gc.collect()
            res["inproc"] = run_inproc(a.calls, warmup_calls, a.round_size)
        if not a.skip_http:
            console.print("[bold]B. HTTP[/] ...")
            modes = [m.strip() for m in a.servers.split(",") if m.strip()]
            res["http"] = run_http(a.duration, a.warmup, a.concurrency, a.threads, modes, a.rounds)
    except (BenchError, subprocess.CalledProcessError) as exc:
        console.print(f"[bold red]benchmark failed:[/] {exc}")
        return 1
    met: dict[str, bool] = {}
    if "inproc" in res:
        met["inproc"] = res["inproc"]["overhead_p50_ms"] <= INPROC_TARGET_MS
    if "http" in res and "ratio_rps_keelwork_vs_bare" in res["http"]:
        met["http"] = res["http"]["ratio_rps_keelwork_vs_bare"] >= HTTP_TARGET_RATIO
    res["targets_met"] = met
    out.write_text(json.dumps(res, indent=2))
    print_report(res)
    console.print(f"[dim]wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}[/]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
