"""The Provider protocol: a named, versioned thing that turns a record into an answer."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class Provider(Protocol):
    name: str
    version: str

    async def __call__(self, record: dict[str, Any]) -> Any:
        """Answer one validated record; raise on failure (the chain moves on)."""
        ...


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer with its token usage, for providers that report it (LLM APIs)."""

    output: Any
    usage: dict[str, int] | None = None


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON and the contract expect."""
    return value.item() if hasattr(value, "item") else value


def worker_pool(name: str, threads: int) -> ThreadPoolExecutor:
    """A model's own threads: a slow or CPU-bound model cannot starve the others' workers."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"keelwork-{name}")


def file_version(path: Path) -> str:
    """A content hash, so the journal says exactly which artifact answered."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()[:12]
