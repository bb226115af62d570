"""Durable state: engine, tables, migrations and the write-behind journal."""

from keelwork.store.engine import Store

__all__ = ["Store"]
