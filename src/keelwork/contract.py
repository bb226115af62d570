"""Data contracts: a contract spec compiled once into per-field checks.

Validation is lazy: every violation of a record is collected, never just the first, so a caller
can fix everything in one round trip and the quarantine keeps the full story.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

from keelwork.errors import Violation
from keelwork.spec import ContractSpec, FieldSpec

_GOT_MAX = 120

Check = Callable[[Any, str], "tuple[Any, Violation | None]"]


def shown(value: Any) -> Any:
    """The offending value as a report shows it: long strings cut, containers named."""
    if isinstance(value, str) and len(value) > _GOT_MAX:
        return value[:_GOT_MAX] + f"... ({len(value)} characters)"
    if isinstance(value, dict):
        return f"object with {len(value)} keys"
    if isinstance(value, list):
        return f"array of {len(value)} items"
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _compile_field(fs: FieldSpec) -> Check:
    """Build the check for one field; closures keep the request path free of spec lookups."""
    lo, hi = fs.min, fs.max
    lmin, lmax = fs.min_length, fs.max_length
    strip = fs.strip

    def bad(path: str, rule: str, got: Any, msg: str) -> tuple[Any, Violation]:
        return got, Violation(path=path, rule=rule, got=shown(got), message=msg)

    if fs.type == "string":

        def check_string(v: Any, path: str) -> tuple[Any, Violation | None]:
            if not isinstance(v, str):
                return bad(path, "type", v, f"expected a string, found {_type_name(v)}")
            if strip:
                v = v.strip()
            n = len(v)
            if lmin is not None and n < lmin:
                return bad(path, "min_length", v, f"needs at least {lmin} characters, found {n}")
            if lmax is not None and n > lmax:
                return bad(path, "max_length", v, f"allows at most {lmax} characters, found {n}")
            return v, None

        return check_string

    if fs.type in ("integer", "number"):
        want_int = fs.type == "integer"

        def check_number(v: Any, path: str) -> tuple[Any, Violation | None]:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return bad(path, "type", v, f"expected {fs.type}, found {_type_name(v)}")
            if want_int and not isinstance(v, int):
                return bad(path, "type", v, f"expected an integer, found {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                return bad(path, "finite", str(v), "NaN and infinities are not numbers here")
            if lo is not None and v < lo:
                return bad(path, "min", v, f"must be >= {lo:g}")
            if hi is not None and v > hi:
                return bad(path, "max", v, f"must be <= {hi:g}")
            return v, None

        return check_number

    if fs.type == "boolean":

        def check_bool(v: Any, path: str) -> tuple[Any, Violation | None]:
            if not isinstance(v, bool):
                return bad(path, "type", v, f"expected a boolean, found {_type_name(v)}")
            return v, None

        return check_bool

    allowed = {(type(x), x) for x in fs.values or []}
    listing = ", ".join(json.dumps(x) for x in fs.values or [])

    def check_enum(v: Any, path: str) -> tuple[Any, Violation | None]:
        try:
            ok = (type(v), v) in allowed
        except TypeError:
            ok = False
        if not ok:
            return bad(path, "enum", v, f"must be one of {listing}")
        return v, None

    return check_enum


class Contract:
    """A compiled contract: validates one record, reporting every violation."""

    def __init__(self, spec: ContractSpec) -> None:
        self.spec = spec
        self.version = hashlib.sha256(
            json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()[:16]
        self._fields: tuple[tuple[str, str, bool, bool, Check], ...] = tuple(
            (name, f"$.{name}", fs.required, fs.nullable, _compile_field(fs))
            for name, fs in spec.fields.items()
        )
        self._known = frozenset(spec.fields)
        self._reject_unknown = spec.unknown_fields == "reject"

    def validate(self, record: Any, prefix: str = "$") -> tuple[dict[str, Any], list[Violation]]:
        """Return the cleaned record (declared coercions applied) and all violations."""
        if not isinstance(record, dict):
            return {}, [
                Violation(
                    path=prefix,
                    rule="type",
                    got=shown(record),
                    message=f"expected a JSON object, found {_type_name(record)}",
                )
            ]
        errors: list[Violation] = []
        clean: dict[str, Any] = {}
        for name, path, required, nullable, check in self._fields:
            if prefix != "$":
                path = prefix + path[1:]
            if name not in record:
                if required:
                    errors.append(
                        Violation(path=path, rule="required", got=None, message="is required")
                    )
                continue
            value = record[name]
            if value is None:
                if nullable:
                    clean[name] = None
                else:
                    errors.append(
                        Violation(path=path, rule="nullable", got=None, message="may not be null")
                    )
                continue
            value, err = check(value, path)
            if err is not None:
                errors.append(err)
            else:
                clean[name] = value
        if self._reject_unknown and not self._known.issuperset(record):
            errors.extend(
                Violation(
                    path=f"{prefix}.{key}",
                    rule="unknown_field",
                    got=shown(record[key]),
                    message="is not a field of this contract; remove it",
                )
                for key in record
                if key not in self._known
            )
        return clean, errors

    def json_schema(self) -> dict[str, Any]:
        """The contract as JSON Schema, for OpenAPI and clients."""
        props: dict[str, Any] = {}
        for name, fs in self.spec.fields.items():
            s: dict[str, Any] = (
                {"enum": list(fs.values or [])} if fs.type == "enum" else {"type": fs.type}
            )
            if fs.min is not None:
                s["minimum"] = fs.min
            if fs.max is not None:
                s["maximum"] = fs.max
            if fs.min_length is not None:
                s["minLength"] = fs.min_length
            if fs.max_length is not None:
                s["maxLength"] = fs.max_length
            if fs.description:
                s["description"] = fs.description
            if fs.nullable:
                s = {"anyOf": [s, {"type": "null"}]}
            props[name] = s
        return {
            "type": "object",
            "properties": props,
            "required": [n for n, fs in self.spec.fields.items() if fs.required],
            "additionalProperties": not self._reject_unknown,
        }
