"""The app factory: FastAPI over a list of services, with one error shape everywhere."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

import keelwork
from keelwork.errors import KeelworkError, Violation
from keelwork.security.audit import AuditAction, AuditLog, audit_key_from_env
from keelwork.server.access import app_gate
from keelwork.server.admin import add_admin_routes
from keelwork.server.audit import add_audit_routes
from keelwork.server.health import add_health_routes
from keelwork.server.keys import add_key_routes
from keelwork.server.middleware import IpLimit, SecurityHeaders
from keelwork.server.openai import add_openai_routes
from keelwork.server.predict import add_predict_routes
from keelwork.server.responses import error_response
from keelwork.server.review import add_review_routes
from keelwork.server.settings import ServerSettings
from keelwork.server.shed import ShedEarly
from keelwork.service import Service

log = logging.getLogger("keelwork.server")

_HTTP_CODES = {404: "http.not_found", 405: "http.method_not_allowed"}


def create_app(
    services: Sequence[Service],
    *,
    title: str = "keelwork",
    settings: ServerSettings | None = None,
) -> FastAPI:
    """Build the ASGI app; services start with the app and flush their journals on shutdown."""
    settings = settings or ServerSettings()
    services = list(services)
    names = [s.name for s in services]
    if len(set(names)) != len(names):
        raise ValueError(f"two services share a name: {names}")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for s in services:
            await s.start()
        if app.state.audit is not None:
            await asyncio.to_thread(_audit_configs, app.state.audit, services)
        if settings.freeze_gc:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if settings.freeze_gc:
                gc.unfreeze()
            await asyncio.gather(*(s.close() for s in services))

    app = FastAPI(
        title=title,
        version=keelwork.__version__,
        description="keelwork services: " + ", ".join(names),
        lifespan=lifespan,
    )
    app.state.gate = app_gate(services)
    app.state.audit = AuditLog(services[0].store, key=audit_key_from_env()) if services else None

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_req: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, f"http.{exc.status_code}")
        return error_response(
            KeelworkError(str(exc.detail), code=code, status=exc.status_code), None
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_req: Request, exc: RequestValidationError) -> Response:
        details = [
            Violation(
                path="$." + ".".join(str(p) for p in e["loc"]),
                rule=e["type"],
                got=None,
                message=e["msg"],
            )
            for e in exc.errors()
        ]
        return error_response(
            KeelworkError("invalid request", code="request.invalid", status=422, details=details),
            None,
        )

    @app.exception_handler(KeelworkError)
    async def keelwork_error(_req: Request, exc: KeelworkError) -> Response:
        # raised outside a pipeline: admin routes' refusals, a body that never arrived
        log.info("request refused outside the pipeline: %s", exc.code)
        return error_response(exc, None)

    @app.exception_handler(Exception)
    async def internal_error(_req: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(
            KeelworkError(f"internal error ({type(exc).__name__})", code="internal"), None
        )

    add_predict_routes(app, services)
    add_openai_routes(app, services)
    add_admin_routes(app, services)
    add_key_routes(app)
    add_audit_routes(app)
    add_review_routes(app, services)
    add_health_routes(app, services, public_metrics=settings.public_metrics)
    app.add_middleware(ShedEarly, services=services)  # a full service refuses before routing
    _add_security_scheme(app)
    _add_middleware(app, settings)
    return app


def _audit_configs(log: AuditLog, services: Sequence[Service]) -> None:
    """Record each service's spec when it differs from the one last recorded for it, so the
    log says when a configuration changed and from what to what."""
    last: dict[str, Any] = {}
    for e in reversed(log.recent(limit=1000, action=AuditAction.CONFIG_LOADED)):
        last[e.target] = e.after
    for s in services:
        spec = s.spec.model_dump(mode="json")
        digest = hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()
        after = {"version": s.spec.service.version, "spec_sha256": digest}
        if last.get(s.name) != after:
            log.append("server", AuditAction.CONFIG_LOADED, s.name, last.get(s.name), after)


def _add_middleware(app: FastAPI, settings: ServerSettings) -> None:
    """Outermost last: headers wrap everything, the IP limit runs before any route."""
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "idempotency-key"],
            expose_headers=["x-request-id", "retry-after"],
        )
    app.add_middleware(IpLimit, per_minute=settings.ip_requests_per_minute)
    app.add_middleware(SecurityHeaders, hsts=settings.hsts)


def _add_security_scheme(app: FastAPI) -> None:
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key from `keelwork keys create` (kw_...)",
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
