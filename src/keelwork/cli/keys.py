"""`keelwork keys`: create, change, rotate, list and revoke API keys (each change audited)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from keelwork.cli._common import (
    DbOpt,
    DirOpt,
    console,
    err_console,
    fail,
    open_store,
)
from keelwork.errors import KeelworkError

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


def _duration(text: str, what: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d`` -> timedelta; anything else names the format."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if m is None:
        raise fail(KeelworkError(f"{what}: {text!r} is not a duration like 90s, 15m, 12h or 30d"))
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


def _known_roles(directory: Path) -> tuple[str, ...]:
    from keelwork.security.rbac import BUILTIN_ROLES
    from keelwork.spec import load_spec

    spec_file = directory / "keelwork.yaml"
    if not spec_file.is_file():
        return tuple(BUILTIN_ROLES)
    try:
        custom = load_spec(spec_file).access.custom_roles
    except KeelworkError as exc:
        raise fail(exc) from None
    return (*BUILTIN_ROLES, *custom)


@keys_app.command("create")
def keys_create(
    role: Annotated[
        str, typer.Option(help="admin, operator, reviewer, client or a custom role of the spec.")
    ] = "client",
    name: Annotated[str, typer.Option(help="A label for the key's owner.")] = "",
    scope: Annotated[
        list[str] | None,
        typer.Option(help="A service the key may act on (repeat); default: every service."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 90d or 12h; default: no expiry.")
    ] = None,
    directory: DirOpt = Path("."),
    database_url: DbOpt = None,
) -> None:
    """Create a key. It is printed once and stored only as a salted hash."""
    from keelwork.security.keys import KeyStore

    expires_in = _duration(expires, "--expires") if expires else None
    store = open_store(directory, database_url)
    try:
        key, info = KeyStore(store).create(
            role, name, scopes=scope, expires_in=expires_in, roles=_known_roles(directory)
        )
    except KeelworkError as exc:
        raise fail(exc) from None
    _audit(store, "key.created", info.id, None, info.public())
    err_console().print(f"created {info.id} (role {info.role}); store it now, it is not kept:")
    typer.echo(key)


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="Key id (key_...) or prefix.")],
    overlap: Annotated[
        str, typer.Option(help="How long the old key keeps working, e.g. 24h or 0s.")
    ] = "24h",
    directory: DirOpt = Path("."),
    database_url: DbOpt = None,
) -> None:
    """Replace a key: a new one with the same role and scopes; the old expires after --overlap."""
    from keelwork.security.keys import KeyStore

    window = _duration(overlap, "--overlap")
    store = open_store(directory, database_url)
    try:
        key, new, old = KeyStore(store).rotate(key_id, window, roles=_known_roles(directory))
    except KeelworkError as exc:
        raise fail(exc) from None
    _audit(store, "key.rotated", old.id, old.public(), new.public())
    until = f"{old.expires_at:%Y-%m-%d %H:%M} UTC" if old.expires_at else "never"
    err_console().print(f"created {new.id} replacing {old.id} (which works until {until}):")
    typer.echo(key)


@keys_app.command("set")
def keys_set(
    key_id: Annotated[str, typer.Argument(help="Key id (key_...) or prefix.")],
    role: Annotated[str | None, typer.Option(help="The key's new role.")] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="A service the key may act on (repeat); replaces its scopes."),
    ] = None,
    all_services: Annotated[
        bool, typer.Option("--all-services", help="Let the key act on every service.")
    ] = False,
    directory: DirOpt = Path("."),
    database_url: DbOpt = None,
) -> None:
    """Change a live key's role and/or scopes (audited, with the values before and after)."""
    from keelwork.security.keys import UNCHANGED, KeyStore

    if scope and all_services:
        raise fail(KeelworkError("give --scope or --all-services, not both", code="cli.usage"))
    scopes = None if all_services else scope if scope else UNCHANGED
    store = open_store(directory, database_url)
    try:
        before, after = KeyStore(store).change(
            key_id, role=role, scopes=scopes, roles=_known_roles(directory)
        )
    except KeelworkError as exc:
        raise fail(exc) from None
    _audit(store, "role.changed", before.id, before.public(), after.public())
    shown = ",".join(after.scopes) if after.scopes is not None else "every service"
    console().print(f"{after.id}: role {after.role}, scopes {shown}")


@keys_app.command("list")
def keys_list(
    directory: DirOpt = Path("."),
    database_url: DbOpt = None,
    all_keys: Annotated[
        bool, typer.Option("--all", help="Include revoked and expired keys.")
    ] = False,
) -> None:
    """List keys (prefix, role, scopes, dates; never the key itself)."""
    from keelwork.security.keys import KeyStore

    cols = ["id", "prefix", "role", "scopes", "name", "created", "expires"]
    table = Table(*cols, *(["revoked"] if all_keys else []))
    for k in KeyStore(open_store(directory, database_url)).list(include_revoked=all_keys):
        row = [
            k.id,
            k.prefix + "...",
            k.role,
            ",".join(k.scopes) if k.scopes is not None else "*",
            k.name,
            f"{k.created_at:%Y-%m-%d}",
            f"{k.expires_at:%Y-%m-%d %H:%M}" if k.expires_at else "",
        ]
        if all_keys:
            row.append(f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")
        table.add_row(*row)
    console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id (key_...) or prefix.")],
    directory: DirOpt = Path("."),
    database_url: DbOpt = None,
) -> None:
    """Revoke a key; every server refuses it within a second."""
    from keelwork.security.keys import KeyStore

    store = open_store(directory, database_url)
    keys = KeyStore(store)
    if not keys.revoke(key_id):
        err_console().print(f"[red]error[/] no live key {key_id!r}")
        raise typer.Exit(1)
    info = keys.get(key_id)
    _audit(store, "key.revoked", info.id, None, info.public())
    console().print(f"revoked {key_id}")


def _audit(
    store: Any,
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """Record a change made from the command line; the actor is the local OS user."""
    import getpass

    from keelwork.security.audit import AuditLog, audit_key_from_env

    AuditLog(store, key=audit_key_from_env()).append(
        f"cli:{getpass.getuser()}", action, target, before, after
    )
