"""Chaos testing: a proxy that injects seeded, reproducible faults between client and upstream."""

from keelwork.chaos.faults import (
    FAULT_KINDS,
    Fault,
    FaultsError,
    FaultsSpec,
    LatencyFault,
    MalformedFault,
    ResetFault,
    StatusFault,
    TimeoutFault,
    TruncateStreamFault,
    load_faults,
    parse_faults,
)
from keelwork.chaos.proxy import ChaosProxy, ChaosStats, chaos_app, serve_chaos

__all__ = [
    "FAULT_KINDS",
    "ChaosProxy",
    "ChaosStats",
    "Fault",
    "FaultsError",
    "FaultsSpec",
    "LatencyFault",
    "MalformedFault",
    "ResetFault",
    "StatusFault",
    "TimeoutFault",
    "TruncateStreamFault",
    "chaos_app",
    "load_faults",
    "parse_faults",
    "serve_chaos",
]
