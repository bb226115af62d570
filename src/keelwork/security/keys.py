"""API keys: shown once, stored as a salted hash, looked up by prefix, compared in constant time.

A key is ``kw_`` + 43 URL-safe characters (256 bits). Its first 12 characters are its public
prefix (an index, never a secret); the rest is only ever held as ``sha256(salt || key)``.
Verified lookups are cached for about a second so the hot path does no I/O for a known key,
while a revocation still takes effect within that second on every replica (each replica's
cache expires on its own clock; the store is the one source of truth).

A key carries a role, optionally scopes (the services it may act on) and an expiry. Rotation
makes a new key with the same role and scopes and lets the old one live on for an overlap
window, so clients can switch over without an outage.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from keelwork.errors import KeelworkError, NotFoundError, Violation
from keelwork.security.rbac import BUILTIN_ROLES
from keelwork.store.engine import Store
from keelwork.store.tables import api_keys

KEY_PREFIX = "kw_"
PREFIX_LEN = 12
_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a request acts for. ``scopes`` None means every service."""

    key_id: str | None
    role: str
    name: str = ""
    scopes: frozenset[str] | None = None
    expires_at: datetime | None = None

    def may_use(self, service: str) -> bool:
        return self.scopes is None or service in self.scopes

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))


LOCAL = Principal(key_id=None, role="admin", name="in-process")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    prefix: str
    role: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    scopes: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    rotated_from: str | None = None

    def public(self) -> dict[str, Any]:
        """What may be shown about a key: never the key or its hash."""
        return {
            "id": self.id,
            "prefix": self.prefix,
            "role": self.role,
            "name": self.name,
            "scopes": list(self.scopes) if self.scopes is not None else None,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "rotated_from": self.rotated_from,
        }


def _aware(dt: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


def _digest(salt: str, key: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + key.encode()).hexdigest()


def _plausible(key: str) -> bool:
    return key.startswith(KEY_PREFIX) and 35 <= len(key) <= 128 and key.isascii()


class _Unchanged:
    """The type of ``UNCHANGED``: scopes left as they are (``None`` means every service)."""


UNCHANGED: Final = _Unchanged()


class KeyStore:
    """Creates, lists, revokes and verifies keys held in the store."""

    def __init__(self, store: Store, *, cache_ttl: float = 1.0) -> None:
        self.store = store
        self.cache_ttl = cache_ttl
        self._cache: dict[bytes, tuple[Principal | None, float]] = {}
        self._inflight: dict[bytes, asyncio.Future[Principal | None]] = {}

    def create(
        self,
        role: str,
        name: str = "",
        *,
        scopes: Iterable[str] | None = None,
        expires_in: timedelta | None = None,
        roles: Collection[str] = tuple(BUILTIN_ROLES),
        rotated_from: str | None = None,
    ) -> tuple[str, KeyInfo]:
        """Make a key; the plain key is returned once and never stored.

        ``roles`` are the roles this deployment knows (built-in plus the spec's custom ones).
        """
        _check_role(role, roles)
        if expires_in is not None and expires_in <= timedelta(0):
            raise KeelworkError(
                f"expiry must be in the future (got {expires_in})", code="keys.expiry", status=422
            )
        scope_t = _scope_tuple(scopes)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        now = datetime.now(UTC)
        info = KeyInfo(
            id="key_" + secrets.token_hex(6),
            prefix=key[:PREFIX_LEN],
            role=role,
            name=name,
            created_at=now,
            revoked_at=None,
            scopes=scope_t,
            expires_at=now + expires_in if expires_in is not None else None,
            rotated_from=rotated_from,
        )
        with self.store.engine.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=info.id,
                    prefix=info.prefix,
                    salt=salt,
                    hash=_digest(salt, key),
                    role=role,
                    name=name,
                    created_at=info.created_at,
                    scopes=list(scope_t) if scope_t is not None else None,
                    expires_at=info.expires_at,
                    rotated_from=rotated_from,
                )
            )
        return key, info

    def get(self, ident: str) -> KeyInfo:
        """A key by id or prefix (revoked ones too)."""
        cond = sa.or_(api_keys.c.id == ident, api_keys.c.prefix == ident)
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(cond)).mappings().first()
        if row is None:
            raise NotFoundError(f"no key {ident!r}", code="keys.not_found")
        return _info(row)

    def rotate(
        self, ident: str, overlap: timedelta, *, roles: Collection[str] = tuple(BUILTIN_ROLES)
    ) -> tuple[str, KeyInfo, KeyInfo]:
        """A new key with the old one's role, name and scopes; the old key expires after
        ``overlap`` (or sooner, if it was due to). Returns (new key, new info, old info)."""
        old = self._live(ident)
        now = datetime.now(UTC)
        if overlap < timedelta(0):
            raise KeelworkError(
                f"overlap must not be negative (got {overlap})", code="keys.overlap", status=422
            )
        remaining = old.expires_at - now if old.expires_at is not None else None
        key, new = self.create(
            old.role,
            old.name,
            scopes=old.scopes,
            expires_in=remaining,
            roles=roles,
            rotated_from=old.id,
        )
        until = now + overlap
        if old.expires_at is None or until < old.expires_at:
            with self.store.engine.begin() as conn:
                conn.execute(
                    api_keys.update().where(api_keys.c.id == old.id).values(expires_at=until)
                )
        self._cache.clear()
        return key, new, self.get(old.id)

    def change(
        self,
        ident: str,
        *,
        role: str | None = None,
        scopes: Iterable[str] | _Unchanged | None = UNCHANGED,
        roles: Collection[str] = tuple(BUILTIN_ROLES),
    ) -> tuple[KeyInfo, KeyInfo]:
        """Give a live key another role and/or scopes (``None``: every service).

        Returns (before, after) for the audit log. Other replicas see the change when their
        cache entry for the key ages out, as with a revocation.
        """
        before = self._live(ident)
        values: dict[str, Any] = {}
        if role is not None:
            _check_role(role, roles)
            values["role"] = role
        if not isinstance(scopes, _Unchanged):
            scope_t = _scope_tuple(scopes)
            values["scopes"] = list(scope_t) if scope_t is not None else None
        if not values:
            raise KeelworkError(
                "nothing to change: give a role, scopes or both", code="keys.unchanged", status=422
            )
        with self.store.engine.begin() as conn:
            conn.execute(api_keys.update().where(api_keys.c.id == before.id).values(**values))
        self._cache.clear()
        return before, self.get(before.id)

    def _live(self, ident: str) -> KeyInfo:
        """The key, if it is neither revoked nor expired (409 ``keys.dead`` otherwise)."""
        info = self.get(ident)
        expired = info.expires_at is not None and info.expires_at <= datetime.now(UTC)
        if info.revoked_at is not None or expired:
            raise KeelworkError(
                f"key {info.id} is no longer live; create a new one", code="keys.dead", status=409
            )
        return info

    def list(self, *, include_revoked: bool = False) -> list[KeyInfo]:
        q = sa.select(api_keys).order_by(api_keys.c.created_at)
        if not include_revoked:  # live keys only: neither revoked nor expired
            q = q.where(
                api_keys.c.revoked_at.is_(None),
                sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > datetime.now(UTC)),
            )
        with self.store.engine.connect() as conn:
            return [_info(r) for r in conn.execute(q).mappings()]

    def revoke(self, ident: str) -> bool:
        """Revoke by key id or prefix; returns whether a live key was revoked."""
        cond = sa.or_(api_keys.c.id == ident, api_keys.c.prefix == ident)
        with self.store.engine.begin() as conn:
            n = conn.execute(
                api_keys.update()
                .where(cond, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            ).rowcount
        self._cache.clear()
        return bool(n)

    def verify(self, key: str) -> Principal | None:
        """Check a presented key against the store (blocking; call off the event loop)."""
        if not _plausible(key):
            return None
        with self.store.engine.connect() as conn:
            row = (
                conn.execute(sa.select(api_keys).where(api_keys.c.prefix == key[:PREFIX_LEN]))
                .mappings()
                .first()
            )
        if row is None:
            return None
        # compare before looking at revocation or expiry, so timing says nothing about them
        if not hmac.compare_digest(_digest(row["salt"], key), row["hash"]):
            return None
        info = _info(row)
        if info.revoked_at is not None:
            return None
        principal = Principal(
            key_id=info.id,
            role=info.role,
            name=info.name,
            scopes=frozenset(info.scopes) if info.scopes is not None else None,
            expires_at=info.expires_at,
        )
        return None if principal.expired() else principal

    async def authenticate(self, key: str) -> Principal | None:
        """Verify with a short-lived cache so a known key costs no I/O on the hot path.

        An entry is served for ``cache_ttl`` after the lookup that made it began. Past half of
        that, the next request starts a lookup in the background and is still served from the
        cache, so a busy key never waits on the store (a wait that, under load, is spent behind
        the event loop's backlog); only a key unseen for a whole ``cache_ttl`` waits.
        """
        if not _plausible(key):
            return None
        digest = hashlib.sha256(key.encode()).digest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            if now >= hit[1] - self.cache_ttl / 2 and digest not in self._inflight:
                self._lookup(digest, key, now)
            return None if hit[0] is None or hit[0].expired() else hit[0]
        pending = self._inflight.get(digest)
        if pending is None:  # one lookup per key, however many requests wait for it
            pending = self._lookup(digest, key, now)
        return await asyncio.shield(pending)

    def _lookup(self, digest: bytes, key: str, began: float) -> asyncio.Future[Principal | None]:
        """Look the key up on a thread and cache what is found, timed from when it began."""
        lookup = asyncio.ensure_future(asyncio.to_thread(self.verify, key))
        self._inflight[digest] = lookup

        def settle(done: asyncio.Future[Principal | None]) -> None:
            self._inflight.pop(digest, None)
            if done.cancelled() or done.exception() is not None:
                return  # a waiting caller gets the error; a background refresh just expires
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (done.result(), began + self.cache_ttl)

        lookup.add_done_callback(settle)
        return lookup


def _check_role(role: str, roles: Collection[str]) -> None:
    if role not in roles:
        raise KeelworkError(
            f"unknown role {role!r}; choose one of {', '.join(sorted(roles))}",
            code="keys.role",
            status=422,
            details=[Violation("$.role", "role", role)],
        )


def _scope_tuple(scopes: Iterable[str] | None) -> tuple[str, ...] | None:
    scope_t = tuple(sorted(set(scopes))) if scopes is not None else None
    if scope_t == ():
        raise KeelworkError(
            "a key scoped to no service could do nothing", code="keys.scopes", status=422
        )
    return scope_t


def _info(r: Any) -> KeyInfo:
    scopes = r["scopes"]
    return KeyInfo(
        id=r["id"],
        prefix=r["prefix"],
        role=r["role"],
        name=r["name"],
        created_at=_aware(r["created_at"]) or datetime.now(UTC),
        revoked_at=_aware(r["revoked_at"]),
        scopes=tuple(scopes) if scopes is not None else None,
        expires_at=_aware(r["expires_at"]),
        rotated_from=r["rotated_from"],
    )
