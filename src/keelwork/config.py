"""Configuration documents (the service spec, the faults file): YAML read and validated by a
pydantic model, every problem turned into an error that names the file, the key, what was
found and the fix. Each document supplies only what is particular to it."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from keelwork.errors import SpecError, Violation

M = TypeVar("M", bound=BaseModel)
Loc = tuple[int | str, ...]
# (error, path, message, value found) -> the same, adjusted for one document's own shapes
Explain = Callable[[ErrorDetails, str, str, Any], tuple[str, str, Any]]


def dotted(loc: Loc) -> str:
    """``("faults", 2, "ms")`` -> ``faults[2].ms``; validator frames are left out."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "value_error")) or part in ("str", "int", "float"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def read_yaml(path: Path, error: type[SpecError]) -> Any:
    """Parse a YAML file; unreadable, non-UTF-8 or malformed files raise ``error`` with the
    file and, for syntax errors, the line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{path}: not valid YAML{where}: {exc}") from None


def unknown_key(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r}; allowed: {', '.join(allowed)}"


@dataclass(frozen=True)
class Document(Generic[M]):
    """How one kind of configuration document is validated and explained."""

    model: type[M]
    what: str  # "the service spec"
    expected: str  # what the top level must be, for a document that is not a mapping
    error: type[SpecError]
    path_of: Callable[[Loc], str] = dotted
    allowed_keys: Callable[[Loc], list[str]] = lambda _loc: []
    explain: Explain | None = None

    def violations(self, err: ValidationError) -> list[Violation]:
        out: list[Violation] = []
        for e in err.errors(include_url=False):
            path = self.path_of(e["loc"])
            msg = str(e["msg"]).removeprefix("Value error, ")
            got = e.get("input")
            if e["type"] == "extra_forbidden":
                msg = unknown_key(str(e["loc"][-1]), self.allowed_keys(e["loc"]))
            elif e["type"] == "missing":
                msg = "this key is required; add it"
            if self.explain is not None:
                path, msg, got = self.explain(e, path, msg, got)
            if isinstance(got, dict | list):
                got = type(got).__name__
            out.append(Violation(path=path, rule=e["type"], got=got, message=msg))
        return out

    def parse(self, data: Any, source: str) -> M:
        """Validate an already-parsed document; every problem is reported at once."""
        if not isinstance(data, dict):
            raise self.error(
                f"{source}: {self.expected}; found {type(data).__name__}",
                details=[Violation(path="(top level)", rule="type", got=type(data).__name__)],
            )
        try:
            return self.model.model_validate(data)
        except ValidationError as exc:
            details = self.violations(exc)
            lines = "\n".join(f"  {d.path}: {d.message} (found: {d.got!r})" for d in details)
            raise self.error(
                f"{source}: {len(details)} problem(s) in {self.what}:\n{lines}", details=details
            ) from None

    def load(self, path: Path) -> M:
        return self.parse(read_yaml(path, self.error), source=str(path))
