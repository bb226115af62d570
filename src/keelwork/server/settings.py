"""Server-wide settings: what is not one service's business (CORS, metrics access, the
per-IP limit in front of authentication, transport security headers, the process's garbage
collector)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSettings:
    public_metrics: bool = False
    """Serve /metrics without a key (a scraper on a private network)."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API; none by default (CORS off)."""
    ip_requests_per_minute: int = 120
    """Requests without a key, and failed authentications, allowed per client IP."""
    hsts: bool = False
    """Send Strict-Transport-Security (only behind TLS)."""
    freeze_gc: bool = True
    """Once started, move everything loaded so far (libraries, models, specs) out of the
    cyclic garbage collector's reach (``gc.freeze``). A full collection otherwise walks the
    whole heap, about 70 ms with a service loaded, and stalls every request in flight; frozen,
    it walks only what requests left behind. Undone when the app shuts down."""
