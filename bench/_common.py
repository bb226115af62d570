"""Shared pieces of the overhead benchmark: data, statistics, machine facts and the servers.

Run as a script it is the server launcher, so keelwork and the bare app are started by the same
code with the same ``uvicorn.Config`` and differ only in the ASGI app:

    python bench/_common.py serve {keelwork,bare,bare-thread} --port P [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import socket
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "support_triage"
TEST_CSV = DEMO / "data" / "test.csv"
MODEL = DEMO / "model.skops"
PREDICT_PATH = "/v1/services/support_triage/predict"
SERVER_MODES = ("keelwork", "bare", "bare-thread")


def load_texts(limit: int | None = None) -> list[str]:
    """Banking77 test messages: real inputs, so the vectoriser sees realistic lengths."""
    with TEST_CSV.open(newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    return texts[:limit] if limit else texts


@dataclass(frozen=True, slots=True)
class Summary:
    """Latency summary of one mode, in milliseconds."""

    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    stdev_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted sequence (q in [0, 100])."""
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summarise_ns(samples_ns: Sequence[int]) -> Summary:
    ms = sorted(s / 1e6 for s in samples_ns)
    return Summary(
        n=len(ms),
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        mean_ms=statistics.fmean(ms),
        stdev_ms=statistics.pstdev(ms),
    )


def machine_info() -> dict[str, Any]:
    """What the figures were measured on, so they can be compared with care."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    import sklearn
    import starlette
    import uvicorn

    import keelwork

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "keelwork": keelwork.__version__,
        "uvicorn": uvicorn.__version__,
        "starlette": starlette.__version__,
        "scikit_learn": sklearn.__version__,
        "numpy": numpy.__version__,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


# --- the bare app -----------------------------------------------------------------------------


def load_bare_model() -> Any:
    """The demo's sklearn pipeline straight from skops, without any keelwork code."""
    import skops.io as sio

    return sio.load(MODEL, trusted=sio.get_untrusted_types(file=MODEL))


def bare_app(*, thread_hop: bool) -> Any:
    """What a prototype would ship: parse JSON, predict_proba, return intent and confidence.

    ``thread_hop`` runs the model through ``asyncio.to_thread`` as keelwork does, to separate
    the cost of the hop from the cost of keelwork's pipeline.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    model = load_bare_model()
    classes = list(model.classes_)

    def score(text: str) -> dict[str, Any]:
        proba = model.predict_proba([text])[0]
        best = int(proba.argmax())
        return {"intent": str(classes[best]), "confidence": float(proba[best])}

    async def predict(request: Request) -> JSONResponse:
        body = await request.json()
        text = body["text"]
        out = await asyncio.to_thread(score, text) if thread_hop else score(text)
        return JSONResponse(out)

    return Starlette(routes=[Route(PREDICT_PATH, predict, methods=["POST"])])


def keelwork_app(database_url: str) -> Any:
    """The demo service with every stage on: key check, contract, chain, journal, metrics."""
    import keelwork
    from keelwork.server import create_app

    return create_app([keelwork.load_service(DEMO, database_url=database_url)])


def serve(mode: str, port: int, database_url: str | None) -> None:
    """One worker, uvloop, httptools, no access log: identical for every app."""
    import uvicorn

    if mode == "keelwork":
        if not database_url:
            raise SystemExit("serve keelwork needs --database-url")
        app = keelwork_app(database_url)
    else:
        app = bare_app(thread_hop=mode == "bare-thread")
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Start one benchmark server.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("mode", choices=SERVER_MODES)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--database-url")
    args = parser.parse_args(argv)
    serve(args.mode, args.port, args.database_url)


if __name__ == "__main__":
    main()
