"""Key management over HTTP (action `manage_keys`): create, list, change, rotate, revoke.

A created or rotated key is in the response body once and nowhere else; listings show the
public prefix only."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TypeVar

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from keelwork.errors import KeelworkError, RequestError, Violation
from keelwork.security.gate import Gate
from keelwork.security.keys import UNCHANGED, KeyStore
from keelwork.security.rbac import Action
from keelwork.server.access import admit, audit, declare
from keelwork.server.responses import json_response

M = TypeVar("M", bound=BaseModel)


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(max_length=32)
    name: str = Field(default="", max_length=128)
    scopes: list[str] | None = Field(default=None, max_length=256)
    expires_in_s: int | None = Field(default=None, gt=0, le=10 * 365 * 86400)


class KeyChange(BaseModel):
    """A new role and/or scopes; ``"scopes": null`` opens the key to every service."""

    model_config = ConfigDict(extra="forbid")

    role: str | None = Field(default=None, max_length=32)
    scopes: list[str] | None = Field(default=None, max_length=256)


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_s: int = Field(default=86400, ge=0, le=365 * 86400)


def _body(model: type[M], raw: bytes) -> M:
    """Validate after authorisation, so a caller without the right learns nothing more."""
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise RequestError(
            "invalid request body",
            code="request.invalid",
            status=422,
            details=[
                Violation(
                    "$." + ".".join(str(p) for p in e["loc"]),
                    e["type"],
                    e.get("input") if not isinstance(e.get("input"), dict) else None,
                    e["msg"],
                )
                for e in exc.errors()
            ],
        ) from None


def _schema(model: type[BaseModel]) -> dict[str, object]:
    return {"requestBody": {"content": {"application/json": {"schema": model.model_json_schema()}}}}


def add_key_routes(app: FastAPI) -> None:
    def keys(request: Request) -> tuple[KeyStore, Gate]:
        gate: Gate = request.app.state.gate
        return gate.keys[0], gate

    @app.post(
        "/v1/admin/keys",
        tags=["admin"],
        openapi_extra=declare(Action.MANAGE_KEYS, **_schema(NewKey)),
    )
    async def create_key(request: Request) -> Response:
        """Create a key; the key itself is in this response only."""
        actor = await admit(request, Action.MANAGE_KEYS)
        body = _body(NewKey, await request.body())
        store, gate = keys(request)
        key, info = await asyncio.to_thread(
            store.create,
            body.role,
            body.name,
            scopes=body.scopes,
            expires_in=timedelta(seconds=body.expires_in_s) if body.expires_in_s else None,
            roles=tuple(gate.rbac.roles),
        )
        await audit(request, actor, "key.created", info.id, None, info.public())
        return json_response({"key": key, **info.public()}, 201)

    @app.get("/v1/admin/keys", tags=["admin"], openapi_extra=declare(Action.MANAGE_KEYS))
    async def list_keys(request: Request, all: bool = False) -> Response:
        """Keys with their prefix, role, scopes and dates; never a key or its hash."""
        await admit(request, Action.MANAGE_KEYS)
        store, _ = keys(request)
        found = await asyncio.to_thread(store.list, include_revoked=all)
        return json_response({"keys": [k.public() for k in found]})

    @app.patch(
        "/v1/admin/keys/{ident}",
        tags=["admin"],
        openapi_extra=declare(Action.MANAGE_KEYS, **_schema(KeyChange)),
    )
    async def change_key(ident: str, request: Request) -> Response:
        """Change a live key's role and/or scopes; audited with the values before and after."""
        actor = await admit(request, Action.MANAGE_KEYS)
        body = _body(KeyChange, await request.body())
        store, gate = keys(request)
        before, after = await asyncio.to_thread(
            store.change,
            ident,
            role=body.role,
            scopes=body.scopes if "scopes" in body.model_fields_set else UNCHANGED,
            roles=tuple(gate.rbac.roles),
        )
        await audit(request, actor, "role.changed", before.id, before.public(), after.public())
        return json_response(after.public())

    @app.post(
        "/v1/admin/keys/{ident}/revoke", tags=["admin"], openapi_extra=declare(Action.MANAGE_KEYS)
    )
    async def revoke_key(ident: str, request: Request) -> Response:
        """Revoke a key (id or prefix); every replica refuses it within a second."""
        actor = await admit(request, Action.MANAGE_KEYS)
        store, _ = keys(request)
        info = await asyncio.to_thread(store.get, ident)
        if not await asyncio.to_thread(store.revoke, info.id):
            raise KeelworkError(f"key {ident!r} is already revoked", code="keys.dead", status=409)
        after = (await asyncio.to_thread(store.get, info.id)).public()
        await audit(request, actor, "key.revoked", info.id, info.public(), after)
        return json_response(after)

    @app.post(
        "/v1/admin/keys/{ident}/rotate",
        tags=["admin"],
        openapi_extra=declare(Action.MANAGE_KEYS, **_schema(Rotation)),
    )
    async def rotate_key(ident: str, request: Request) -> Response:
        """A new key with the same role and scopes; the old one expires after the overlap."""
        actor = await admit(request, Action.MANAGE_KEYS)
        body = _body(Rotation, await request.body())
        store, gate = keys(request)
        key, new, old = await asyncio.to_thread(
            store.rotate,
            ident,
            timedelta(seconds=body.overlap_s),
            roles=tuple(gate.rbac.roles),
        )
        await audit(request, actor, "key.rotated", old.id, old.public(), new.public())
        return json_response({"key": key, **new.public(), "old": old.public()}, 201)
