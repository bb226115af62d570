"""The HTTP surface: auth, one error shape, bad input of every kind, batch, health and metrics,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import keelwork
from keelwork.server import create_app
from tests.conftest import operator

URL = "/v1/services/toy/predict"


@pytest.fixture
async def env(
    make_service_dir: Callable[..., Path], db_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, keelwork.Service, dict[str, str]]]:
    svc = keelwork.load_service(
        make_service_dir({"limits": {"max_body_bytes": 4096, "max_batch": 5}}),
        database_url=db_url,
    )
    key, _ = svc.keys.create("client", "tests")
    app = create_app([svc])
    transport = httpx.ASGITransport(app=app)
    async with svc, httpx.AsyncClient(transport=transport, base_url="http://kw") as client:
        yield client, svc, {"Authorization": f"Bearer {key}"}


def assert_error_shape(body: dict[str, Any], code: str) -> None:
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    for d in body["error"]["details"]:
        assert {"path", "rule", "got"} <= set(d)


async def test_a_keyed_request_gets_its_answer(env: Any) -> None:
    client, svc, auth = env
    r = await client.post(URL, json={"text": "hello"}, headers=auth)
    assert r.status_code == 200
    body = r.json()
    assert body["output"] == {"label": "primary", "score": 0.9}
    assert body["service"] == "toy" and body["model"] == "main" and body["fallback"] is False
    assert r.headers["x-request-id"] == body["request_id"]
    await svc.journal.close()
    await svc.journal.start()
    row = svc.store.journal_get(body["request_id"])
    assert row["key_id"].startswith("key_")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "auth.missing_key"),
        (
            {"Authorization": "Bearer kw_not-a-real-key-but-long-enough-0123456789"},
            "auth.invalid_key",
        ),
        ({"Authorization": "Bearer nonsense"}, "auth.invalid_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "auth.invalid_key"),
    ],
)
async def test_no_valid_key_is_401(env: Any, headers: dict[str, str], code: str) -> None:
    client, svc, _ = env
    r = await client.post(URL, json={"text": "hello"}, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert_error_shape(r.json(), code)
    await svc.close()
    row = svc.store.journal_get(r.json()["request_id"])
    assert row["status"] == "denied" and row["input"] is None


async def test_a_revoked_key_stops_working(env: Any) -> None:
    client, svc, auth = env
    assert (await client.post(URL, json={"text": "x"}, headers=auth)).status_code == 200
    prefix = auth["Authorization"].split()[1][:12]
    assert svc.keys.revoke(prefix)
    r = await client.post(URL, json={"text": "x"}, headers=auth)
    assert r.status_code == 401


async def test_a_role_outside_the_access_list_is_403(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    svc = keelwork.load_service(
        make_service_dir({"access": {"roles": ["admin"]}}),
        database_url=f"sqlite:///{tmp_path}/k.db",
    )
    client_key, _ = svc.keys.create("client")
    admin_key, _ = svc.keys.create("admin")
    transport = httpx.ASGITransport(app=create_app([svc]))
    async with svc, httpx.AsyncClient(transport=transport, base_url="http://kw") as c:
        r = await c.post(URL, json={"text": "x"}, headers={"Authorization": f"Bearer {client_key}"})
        assert r.status_code == 403
        assert_error_shape(r.json(), "auth.forbidden")
        r = await c.post(URL, json={"text": "x"}, headers={"Authorization": f"Bearer {admin_key}"})
        assert r.status_code == 200


async def test_two_wrong_fields_are_both_named_and_quarantined(env: Any) -> None:
    client, svc, auth = env
    r = await client.post(URL, json={"text": 5, "colour": "red"}, headers=auth)
    assert r.status_code == 422
    body = r.json()
    assert_error_shape(body, "contract.violation")
    paths = {(d["path"], d["rule"], str(d["got"])) for d in body["error"]["details"]}
    assert paths == {("$.text", "type", "5"), ("$.colour", "unknown_field", "red")}
    await svc.close()
    q = svc.store.quarantine_get(body["request_id"])
    assert q is not None and q["record"] == {"text": 5, "colour": "red"}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"text": "unterminated', 400, "request.malformed_json"),
        (b'\xff\xfe{"text": "x"}', 400, "request.not_utf8"),
        (b'{"text": "caf\xe9"}', 400, "request.not_utf8"),
        (b"", 400, "request.empty"),
        (b"[1, 2]", 422, "contract.violation"),
        (b'"just a string"', 422, "contract.violation"),
        (b'{"text": NaN}', 400, "request.malformed_json"),
        (b'{"text": "' + b"a" * 5000 + b'"}', 413, "request.too_large"),
    ],
)
async def test_unreadable_bodies_get_a_clear_4xx_and_a_quarantine_record(
    env: Any, body: bytes, status: int, code: str
) -> None:
    client, svc, auth = env
    r = await client.post(URL, content=body, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == status
    assert_error_shape(r.json(), code)
    await svc.close()
    q = svc.store.quarantine_get(r.json()["request_id"])
    assert q is not None
    assert q["violations"]
    j = svc.store.journal_get(r.json()["request_id"])
    assert j["status"] == "rejected" and j["http_status"] == status


async def test_an_unknown_service_is_404_and_recorded(env: Any) -> None:
    client, svc, auth = env
    r = await client.post("/v1/services/nope/predict", json={"text": "x"}, headers=auth)
    assert r.status_code == 404
    assert_error_shape(r.json(), "service.not_found")
    await svc.close()
    row = svc.store.journal_get(r.json()["request_id"])
    assert row is not None and row["service"] == "nope" and row["http_status"] == 404


async def test_unknown_paths_and_methods_use_the_error_shape(env: Any) -> None:
    client, _, auth = env
    r = await client.get("/nowhere", headers=auth)
    assert r.status_code == 404
    assert_error_shape(r.json(), "http.not_found")
    r = await client.get(URL, headers=auth)
    assert r.status_code == 405
    assert_error_shape(r.json(), "http.method_not_allowed")


async def test_batch_answers_each_record_on_its_own(env: Any) -> None:
    client, svc, auth = env
    records = [{"text": "a"}, {"text": ""}, {"text": "boom"}, {"wrong": 1}]
    r = await client.post("/v1/services/toy/batch", json=records, headers=auth)
    assert r.status_code == 200
    body = r.json()
    assert body["summary"] == {"total": 4, "ok": 2, "rejected": 2, "failed": 0}
    res = body["results"]
    assert res[0]["output"]["label"] == "primary"
    assert res[1]["error"]["code"] == "contract.violation"
    assert res[2]["output"]["label"] == "backup" and res[2]["fallback"] is True
    assert {d["path"] for d in res[3]["error"]["details"]} == {"$.text", "$.wrong"}
    await svc.close()
    assert len({x["request_id"] for x in res}) == 4
    assert len(svc.store.quarantine_list()) == 2


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"text": "not a list"}, 422, "request.not_a_list"),
        ([{"text": "x"}] * 6, 413, "request.batch_too_large"),
    ],
)
async def test_a_bad_batch_is_refused_whole(env: Any, payload: Any, status: int, code: str) -> None:
    client, _, auth = env
    r = await client.post("/v1/services/toy/batch", json=payload, headers=auth)
    assert r.status_code == status
    assert_error_shape(r.json(), code)


async def test_health_readiness_and_metrics(env: Any) -> None:
    client, svc, auth = env
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True
    assert r.json()["services"]["toy"]["models"]["main"] == "m-1"
    await client.post(URL, json={"text": "hi"}, headers=auth)
    await client.post(URL, json={"text": "boom"}, headers=auth)
    await client.post(URL, json={"text": ""}, headers=auth)
    await client.post(URL, json={"text": "hi"})
    page = (await client.get("/metrics", headers=operator(svc))).text
    assert 'keelwork_requests_total{service="toy",status="ok"} 1.0' in page
    assert 'keelwork_requests_total{service="toy",status="fallback"} 1.0' in page
    assert 'keelwork_requests_total{service="toy",status="rejected"} 1.0' in page
    assert 'keelwork_requests_total{service="toy",status="denied"} 1.0' in page
    assert 'keelwork_request_latency_seconds_count{service="toy"} 4.0' in page
    assert 'keelwork_errors_total{code="contract.violation",service="toy"} 1.0' in page
    assert 'keelwork_fallbacks_total{model="spare",service="toy"} 1.0' in page
    assert "keelwork_journal_queue_depth" in page
    assert "process_cpu_seconds_total" in page


async def test_openapi_documents_the_contract(env: Any) -> None:
    client, _, _ = env
    spec = (await client.get("/openapi.json")).json()
    op = spec["paths"][URL]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["text"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["text"]["maxLength"] == 200
    assert "422" in op["responses"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert (await client.get("/docs")).status_code == 200


async def test_the_app_freezes_what_startup_loaded_out_of_the_collectors_reach_until_shutdown(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    import gc

    from keelwork.server.settings import ServerSettings

    svc = keelwork.load_service(make_service_dir(), database_url=f"sqlite:///{tmp_path}/g.db")
    gc.unfreeze()
    for settings, frozen in ((ServerSettings(), True), (ServerSettings(freeze_gc=False), False)):
        app = create_app([svc], settings=settings)
        async with app.router.lifespan_context(app):
            assert (gc.get_freeze_count() > 0) is frozen
        assert gc.get_freeze_count() == 0
