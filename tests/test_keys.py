"""API keys: shown once, stored only as a salted hash, revocable."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from keelwork.security.keys import KeyStore
from keelwork.store.engine import Store


async def test_keys_are_stored_hashed_and_verify(db_url: str) -> None:
    store = Store(db_url)
    store.migrate()
    keys = KeyStore(store)
    key, info = keys.create("admin", "ops")
    assert re.fullmatch(r"kw_[A-Za-z0-9_-]{43}", key)
    with store.engine.connect() as conn:
        dump = " ".join(
            str(v) for row in conn.execute(sa.text("SELECT * FROM api_keys")) for v in row
        )
    assert key not in dump and key[12:] not in dump
    assert info.prefix == key[:12] and info.prefix in dump
    principal = await keys.authenticate(key)
    assert principal is not None and principal.role == "admin" and principal.key_id == info.id
    assert await keys.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert await keys.authenticate("kw_short") is None
    assert [k.id for k in keys.list()] == [info.id]
    assert keys.revoke(info.id)
    assert await keys.authenticate(key) is None
    assert keys.list() == [] and len(keys.list(include_revoked=True)) == 1
    assert not keys.revoke(info.id)


def test_two_keys_never_collide(tmp_path: object) -> None:
    store = Store(f"sqlite:///{tmp_path}/k.db")
    store.migrate()
    keys = KeyStore(store)
    made = {keys.create("client")[0] for _ in range(50)}
    assert len(made) == 50


async def test_concurrent_requests_with_one_key_share_one_lookup(tmp_path: object) -> None:
    import asyncio

    store = Store(f"sqlite:///{tmp_path}/k.db")
    store.migrate()
    keys = KeyStore(store)
    key, _ = keys.create("client")
    calls = []
    real = keys.verify

    def counting(k: str) -> object:
        calls.append(k)
        return real(k)

    keys.verify = counting  # type: ignore[method-assign]
    found = await asyncio.gather(*(keys.authenticate(key) for _ in range(200)))
    assert len(calls) == 1 and all(p is not None and p.role == "client" for p in found)


async def test_a_revocation_reaches_another_replica_when_its_cache_entry_ages_out(
    db_url: str,
) -> None:
    import asyncio

    store = Store(db_url)
    store.migrate()
    here, there = KeyStore(store), KeyStore(Store(db_url), cache_ttl=0.2)
    key, info = here.create("client")
    assert await there.authenticate(key) is not None  # cached on the other replica
    assert here.revoke(info.id)
    await asyncio.sleep(0.25)  # its cache lifetime (1 s by default; 0.2 s here)
    assert await there.authenticate(key) is None


async def test_a_busy_key_is_refreshed_in_the_background_without_making_a_request_wait(
    tmp_path: object,
) -> None:
    import asyncio

    store = Store(f"sqlite:///{tmp_path}/k.db")
    store.migrate()
    keys = KeyStore(store, cache_ttl=0.4)
    key, _ = keys.create("client")
    gate = asyncio.Event()
    calls = []
    real = keys.verify
    loop = asyncio.get_running_loop()

    def slow(k: str) -> object:
        calls.append(k)
        if len(calls) > 1:  # the refresh: blocked until the test lets it finish
            asyncio.run_coroutine_threadsafe(gate.wait(), loop).result()
        return real(k)

    keys.verify = slow  # type: ignore[method-assign]
    try:
        assert await keys.authenticate(key) is not None
        await asyncio.sleep(0.25)  # past half the entry's lifetime, not past all of it
        # Served from the cache at once although the refresh it started cannot finish yet.
        found = await asyncio.wait_for(keys.authenticate(key), timeout=0.1)
        assert found is not None
        await asyncio.sleep(0.05)
        assert len(calls) == 2  # the refresh is under way...
        assert await keys.authenticate(key) is not None
        await asyncio.sleep(0.05)
        assert len(calls) == 2  # ...and a second request does not start another
    finally:
        gate.set()


async def test_a_revoked_key_in_steady_use_is_refused_once_its_entry_ages_out(
    db_url: str,
) -> None:
    import asyncio

    store = Store(db_url)
    store.migrate()
    here, there = KeyStore(store), KeyStore(Store(db_url), cache_ttl=0.2)
    key, info = here.create("client")
    assert await there.authenticate(key) is not None
    assert here.revoke(info.id)
    seen = []
    for _ in range(40):  # a request every 20 ms keeps refreshing the entry ahead of expiry
        seen.append(await there.authenticate(key))
        await asyncio.sleep(0.02)
    assert seen[-1] is None and all(p is None for p in seen[seen.index(None) :])


async def test_a_failed_background_refresh_leaves_the_error_to_the_next_waiting_request(
    tmp_path: object,
) -> None:
    import asyncio

    store = Store(f"sqlite:///{tmp_path}/k.db")
    store.migrate()
    keys = KeyStore(store, cache_ttl=0.2)
    key, _ = keys.create("client")
    assert await keys.authenticate(key) is not None

    def down(k: str) -> object:
        raise RuntimeError("store unreachable")

    keys.verify = down  # type: ignore[method-assign]
    await asyncio.sleep(0.12)
    assert await keys.authenticate(key) is not None  # still fresh enough; refresh fails quietly
    await asyncio.sleep(0.15)  # now the entry has expired
    with pytest.raises(RuntimeError, match="store unreachable"):
        await keys.authenticate(key)
