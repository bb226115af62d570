"""Role-based access: every route declares one action, and every role is allowed exactly the
routes whose action it holds. The matrix is walked in full, route by route, role by role."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

import keelwork
from keelwork.security.audit import AuditLog
from keelwork.security.rbac import BUILTIN_ROLES, Action, Rbac
from keelwork.server import create_app
from keelwork.server.access import ACTION_KEY, PUBLIC

CUSTOM = {"auditor": ["read_audit", "read_metrics"]}
ROLES = [*BUILTIN_ROLES, *CUSTOM]
# Starlette's own documentation routes carry no action and are public by design.
DOC_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def probe(path: str, victim: str) -> tuple[str, Any]:
    """A concrete URL and body for a route template: valid enough to pass authorisation."""
    url = (
        path.replace("{name}", "toy" if "/predict" not in path else "nope")
        .replace("{model}", "main")
        .replace("{ident}", victim)
    )
    bodies: dict[str, Any] = {
        "/v1/services/toy/predict": {"text": "hello"},
        "/v1/services/toy/batch": [{"text": "hello"}],
        "/v1/services/nope/predict": {"text": "hello"},
        "/v1/services/nope/batch": [{"text": "hello"}],
        "/v1/chat/completions": {"model": "toy", "messages": [{"role": "user", "content": "x"}]},
        "/v1/embeddings": {"model": "toy", "input": "x"},
        "/v1/admin/keys": {"role": "client", "name": "made-by-matrix"},
        f"/v1/admin/keys/{victim}/rotate": {"overlap_s": 0},
        f"/v1/admin/keys/{victim}": {"role": "reviewer"},
    }
    return url, bodies.get(url, {})


@pytest.fixture
async def app_env(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, keelwork.Service, Any]]:
    d = make_service_dir({"access": {"custom_roles": CUSTOM}})
    svc = keelwork.load_service(d, database_url=f"sqlite:///{tmp_path}/rbac.db")
    app = create_app([svc])
    transport = httpx.ASGITransport(app=app)
    async with svc, httpx.AsyncClient(transport=transport, base_url="http://kw") as c:
        yield c, svc, app


def declared(app: Any) -> list[tuple[str, str, str]]:
    out = []
    for r in app.routes:
        if isinstance(r, APIRoute):
            action = (r.openapi_extra or {}).get(ACTION_KEY)
            assert action is not None, f"route {r.path} declares no action"
            for m in sorted(r.methods):
                out.append((m, r.path, action))
        else:
            assert r.path in DOC_ROUTES, f"route {r.path} is not an API route"
    return out


def test_every_declared_action_is_a_real_action(app_env: Any) -> None:
    _, _, app = app_env
    valid = {a.value for a in Action} | {PUBLIC}
    routes = declared(app)
    assert routes and {a for _, _, a in routes} <= valid
    # every action that has an endpoint today is exercised by the matrix below
    assert {"predict", "manage_keys", "change_config", "read_metrics"} <= {a for *_, a in routes}


async def test_the_whole_matrix_every_role_on_every_route(app_env: Any) -> None:
    client, svc, app = app_env
    rbac = Rbac(CUSTOM)
    keys = {role: svc.keys.create(role, f"matrix-{role}", roles=ROLES)[0] for role in ROLES}
    outcomes: dict[tuple[str, str, str], int] = {}
    for method, path, action in declared(app):
        for role in [*ROLES, None]:
            victim = svc.keys.create("client", "victim")[1].id
            url, body = probe(path, victim)
            headers = {"Authorization": f"Bearer {keys[role]}"} if role else {}
            r = await client.request(
                method, url, json=body if method in ("POST", "PATCH") else None, headers=headers
            )
            outcomes[(method, path, role or "-")] = r.status_code
            where = (
                f"{role or 'no key'} {method} {url} ({action}) -> {r.status_code} {r.text[:200]}"
            )
            assert r.status_code < 500, where
            if action == PUBLIC:
                assert r.status_code not in (401, 403), where
            elif role is None:
                assert r.status_code == 401, where
            elif rbac.allows(role, Action(action)):
                assert r.status_code not in (401, 403), where
            else:
                assert r.status_code == 403, where
                assert r.json()["error"]["code"] == "auth.forbidden", where
    assert len(outcomes) == len(declared(app)) * (len(ROLES) + 1)


async def test_a_key_scoped_to_another_service_is_refused_here(app_env: Any) -> None:
    client, svc, _ = app_env
    other, _ = svc.keys.create("client", scopes=["billing"])
    mine, _ = svc.keys.create("client", scopes=["toy"])
    url = "/v1/services/toy/predict"
    r = await client.post(url, json={"text": "hi"}, headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "auth.out_of_scope"
    r = await client.post(url, json={"text": "hi"}, headers={"Authorization": f"Bearer {mine}"})
    assert r.status_code == 200
    r = await client.get("/v1/models", headers={"Authorization": f"Bearer {other}"})
    assert r.json()["data"] == []


async def test_keys_made_over_http_are_shown_once_and_audited_roles_are_checked(
    app_env: Any,
) -> None:
    client, svc, _ = app_env
    admin, _ = svc.keys.create("admin")
    auth = {"Authorization": f"Bearer {admin}"}
    r = await client.post("/v1/admin/keys", json={"role": "wizard"}, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["code"] == "keys.role"
    r = await client.post("/v1/admin/keys", json={"role": "client", "color": 1}, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["path"] == "$.color"
    r = await client.post(
        "/v1/admin/keys", json={"role": "auditor", "scopes": ["toy"]}, headers=auth
    )
    assert r.status_code == 201
    made = r.json()
    listed = (await client.get("/v1/admin/keys", headers=auth)).json()["keys"]
    assert made["key"] not in str(listed)
    assert {"id": made["id"], "role": "auditor", "scopes": ["toy"]}.items() <= next(
        k for k in listed if k["id"] == made["id"]
    ).items()
    page = await client.get("/metrics", headers={"Authorization": f"Bearer {made['key']}"})
    assert page.status_code == 200 and "keelwork_requests_total" in page.text
    log = AuditLog(svc.store)
    entry = next(e for e in log.recent(action="key.created") if e.target == made["id"])
    assert entry.after is not None and entry.after["role"] == "auditor"
    assert made["key"] not in str(log.recent(limit=1000))
    assert log.verify().ok


async def test_rotation_keeps_the_old_key_for_the_overlap_only(app_env: Any) -> None:
    client, svc, _ = app_env
    old_key, old = svc.keys.create("client", "app", scopes=["toy"])
    new_key, new, old_after = svc.keys.rotate(old.id, timedelta(hours=1))
    assert (new.role, new.scopes, new.rotated_from) == ("client", ("toy",), old.id)
    assert old_after.expires_at is not None
    url = "/v1/services/toy/predict"
    for k in (old_key, new_key):
        r = await client.post(url, json={"text": "hi"}, headers={"Authorization": f"Bearer {k}"})
        assert r.status_code == 200
    _, _, gone = svc.keys.rotate(new.id, timedelta(0))
    svc.keys._cache.clear()  # another replica: its cache entry has aged out
    r = await client.post(url, json={"text": "hi"}, headers={"Authorization": f"Bearer {new_key}"})
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    assert gone.expires_at is not None


async def test_an_expired_key_is_refused_and_no_longer_listed(app_env: Any) -> None:
    client, svc, _ = app_env
    key, info = svc.keys.create("client", expires_in=timedelta(seconds=1))
    assert any(k.id == info.id for k in svc.keys.list())

    from keelwork.store.tables import api_keys

    with svc.store.engine.begin() as conn:  # let the clock move on
        conn.execute(api_keys.update().values(expires_at=info.created_at))
    svc.keys._cache.clear()
    r = await client.post(
        "/v1/services/toy/predict", json={"text": "hi"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 401
    assert all(k.id != info.id for k in svc.keys.list())
    assert any(k.id == info.id for k in svc.keys.list(include_revoked=True))


async def test_an_admin_changes_a_keys_role_and_scopes_and_the_audit_log_has_before_and_after(
    app_env: Any,
) -> None:
    client, svc, _ = app_env
    admin, admin_info = svc.keys.create("admin", "ops")
    key, info = svc.keys.create("client", "app", scopes=["toy"])
    auth = {"Authorization": f"Bearer {admin}"}
    r = await client.patch(f"/v1/admin/keys/{info.id}", json={"role": "reviewer"}, headers=auth)
    assert r.status_code == 200, r.text
    assert (r.json()["role"], r.json()["scopes"]) == ("reviewer", ["toy"])  # scopes kept
    svc.keys._cache.clear()  # as another replica, once its cache entry has aged out
    predict = {"Authorization": f"Bearer {key}"}
    r = await client.post("/v1/services/toy/predict", json={"text": "hi"}, headers=predict)
    assert r.status_code == 403 and r.json()["error"]["code"] == "auth.forbidden"

    r = await client.patch(
        f"/v1/admin/keys/{info.prefix}", json={"role": "client", "scopes": None}, headers=auth
    )
    assert (r.json()["role"], r.json()["scopes"]) == ("client", None)  # every service again
    svc.keys._cache.clear()
    r = await client.post("/v1/services/toy/predict", json={"text": "hi"}, headers=predict)
    assert r.status_code == 200

    entries = AuditLog(svc.store).recent(action="role.changed")[::-1]  # oldest first
    assert [(e.before["role"], e.after["role"]) for e in entries] == [
        ("client", "reviewer"),
        ("reviewer", "client"),
    ]
    assert entries[1].before["scopes"] == ["toy"] and entries[1].after["scopes"] is None
    assert all(e.target == info.id for e in entries)
    assert all(e.actor == f"{admin_info.id} (ops)" for e in entries)  # who, never the key


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"role": "superuser"}, 422, "keys.role"),
        ({"scopes": []}, 422, "keys.scopes"),
        ({}, 422, "keys.unchanged"),
        ({"role": "client", "colour": "red"}, 422, "request.invalid"),
    ],
)
async def test_a_bad_key_change_is_refused_with_what_was_wrong(
    app_env: Any, body: dict[str, Any], status: int, code: str
) -> None:
    client, svc, _ = app_env
    admin, _ = svc.keys.create("admin", "ops")
    _, info = svc.keys.create("client", "app")
    auth = {"Authorization": f"Bearer {admin}"}
    r = await client.patch(f"/v1/admin/keys/{info.id}", json=body, headers=auth)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert svc.keys.get(info.id).role == "client"


async def test_a_revoked_key_cannot_be_given_a_new_role(app_env: Any) -> None:
    client, svc, _ = app_env
    admin, _ = svc.keys.create("admin", "ops")
    _, info = svc.keys.create("client", "app")
    svc.keys.revoke(info.id)
    auth = {"Authorization": f"Bearer {admin}"}
    r = await client.patch(f"/v1/admin/keys/{info.id}", json={"role": "admin"}, headers=auth)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "keys.dead")
