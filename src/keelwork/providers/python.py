"""A plain Python callable as a model: sync functions run on a worker thread, async ones awaited."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keelwork.errors import SpecError
from keelwork.providers.base import file_version, worker_pool
from keelwork.spec import ModelSpec


def resolve_target(
    target: str, service_dir: Path, where: str
) -> tuple[Callable[..., Any], Path | None]:
    """Find ``module:function``: a file beside the spec first, then an importable module."""
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise SpecError(
            f"{where}: {target!r} is not `module:function` (e.g. `triage:predict`)",
            code="spec.target",
        )
    candidate = service_dir / (module_name.replace(".", "/") + ".py")
    file: Path | None = candidate if candidate.is_file() else None
    if file is not None:
        unique = f"keelwork_user_{abs(hash(str(file.resolve())))}_{module_name.replace('.', '_')}"
        mod = sys.modules.get(unique)
        if mod is None:
            spec = importlib.util.spec_from_file_location(unique, file)
            if spec is None or spec.loader is None:
                raise SpecError(f"{where}: cannot load {file}", code="spec.target")
            mod = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(mod)
            except Exception as exc:
                raise SpecError(
                    f"{where}: importing {file} failed: {type(exc).__name__}: {exc}",
                    code="spec.target",
                ) from exc
            sys.modules[unique] = mod
    else:
        try:
            mod = importlib.import_module(module_name)
        except ImportError as exc:
            raise SpecError(
                f"{where}: no module {module_name!r} (looked for {module_name}.py beside the spec "
                f"and on the Python path): {exc}",
                code="spec.target",
            ) from exc
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise SpecError(f"{where}: {module_name} has no callable {attr!r}", code="spec.target")
    return fn, file


class PythonProvider:
    """Calls ``fn(record)``; the record is the validated input as a dict."""

    def __init__(self, name: str, spec: ModelSpec, service_dir: Path) -> None:
        assert spec.target is not None
        self.name = name
        self.fn, file = resolve_target(spec.target, service_dir, f"models.{name}.target")
        self.is_async = inspect.iscoroutinefunction(self.fn)
        self.inline = spec.executor == "inline"
        self.pool = None if self.inline or self.is_async else worker_pool(name, spec.threads or 8)
        self.version = (spec.version or (file_version(file) if file else spec.target))[:64]

    async def __call__(self, record: dict[str, Any]) -> Any:
        if self.is_async:
            return await self.fn(record)
        if self.pool is None:
            return self.fn(record)
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.fn, record)
