"""No input, however malformed, yields a 5xx: property-based, over the running ASGI app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keelwork
from keelwork.server import create_app
from tests.conftest import MODEL, SPEC

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = json_values | st.text(max_size=300)
records = st.dictionaries(
    st.sampled_from(["text", "n", "kind", "ratio", "flag", "other"]) | st.text(max_size=6),
    field_values,
    max_size=6,
)


class Client:
    """A synchronous face over the ASGI app, on one event loop kept for the whole module."""

    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kw")

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.post(path, **kw))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, str]]:
    import yaml

    d: Path = tmp_path_factory.mktemp("prop")
    (d / "model.py").write_text(MODEL)
    (d / "keelwork.yaml").write_text(yaml.safe_dump(SPEC))
    svc = keelwork.load_service(d, database_url=f"sqlite:///{d / 'kw.db'}")
    key, _ = svc.keys.create("client")
    c = Client(create_app([svc]))
    try:
        yield c, key
    finally:
        c.loop.run_until_complete(svc.close())
        c.loop.run_until_complete(c.http.aclose())
        c.loop.close()


def _check(r: Any) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        body = r.json()
        assert body["error"]["code"] and body["error"]["message"]
        assert isinstance(body["error"]["details"], list)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=600))
def test_arbitrary_bytes_never_5xx(client: tuple[Client, str], body: bytes) -> None:
    c, key = client
    for path in ("/v1/services/toy/predict", "/v1/services/toy/batch"):
        _check(c.post(path, content=body, headers={"Authorization": f"Bearer {key}"}))


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(record=records | json_values)
def test_arbitrary_json_never_5xx(client: tuple[Client, str], record: Any) -> None:
    c, key = client
    auth = {"Authorization": f"Bearer {key}"}
    _check(c.post("/v1/services/toy/predict", json=record, headers=auth))
    _check(c.post("/v1/services/toy/batch", json=[record, record], headers=auth))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    name=st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s and s not in (".", "..")),
    header=st.text(max_size=80).filter(lambda s: s.isascii() and "\n" not in s and "\r" not in s),
)
def test_arbitrary_names_and_auth_headers_never_5xx(
    client: tuple[Client, str], name: str, header: str
) -> None:
    c, _ = client
    from urllib.parse import quote

    _check(
        c.post(
            f"/v1/services/{quote(name, safe='')}/predict",
            json={"text": "x"},
            headers={"Authorization": header},
        )
    )
