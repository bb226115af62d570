"""The row path: a contract compiled once into closures that check one record.

Validation is lazy: every violation of a record is collected, never just the first, so a caller
can fix everything in one round trip and the quarantine keeps the full story. Declared coercions
are applied before the checks and each one that changed a value is counted, never silent.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from keelwork.contract.language import Comparison, FieldSpec, parse_rule
from keelwork.errors import Violation

_GOT_MAX = 120
INVALID: Any = object()

# The exact spellings both validation paths accept; ASCII digits only, no underscores.
INT_TEXT = r"^[+-]?[0-9]+$"
NUMBER_TEXT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
DATETIME_TEXT = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?)?$"
)
# Unicode White_Space: what `strip` removes on both paths (Python's str.strip() alone would
# also remove the ASCII separators 0x1c-0x1f, which the columnar engine keeps).
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_INT_RE = re.compile(INT_TEXT)
_NUMBER_RE = re.compile(NUMBER_TEXT)
_DATETIME_RE = re.compile(DATETIME_TEXT)
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

Errors = list[Violation]
Coerced = list[tuple[str, str]]
Check = Callable[[Any, str, Errors, Coerced], Any]


def shown(value: Any) -> Any:
    """The offending value as a report shows it: long strings cut, containers named."""
    if isinstance(value, str) and len(value) > _GOT_MAX:
        return value[:_GOT_MAX] + f"... ({len(value)} characters)"
    if isinstance(value, dict):
        return f"object with {len(value)} keys"
    if isinstance(value, list):
        return f"array of {len(value)} items"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def type_name(value: Any) -> str:
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


def python_pattern(pattern: str) -> str:
    """The pattern as Python's ``re`` must read it to mean what the columnar engine means.

    In Python ``$`` also matches before a final newline; in Polars' engine it matches only at
    the very end. Unescaped ``$`` outside character classes becomes ``\\Z`` so that
    ``"ABC\\n"`` fails ``^[A-Z]+$`` on both paths.
    """
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":  # a literal ] first in the class
                out.append("[]")
                i += 2
                continue
        elif ch == "$":
            ch = "\\Z"
        out.append(ch)
        i += 1
    return "".join(out)


def valid_date(text: str) -> bool:
    """The calendar check both paths make after the shape matched (no 30 February)."""
    try:
        dt.date.fromisoformat(text[:10])
    except ValueError:
        return False
    return True


def _bad(errors: Errors, path: str, rule: str, got: Any, msg: str) -> Any:
    errors.append(Violation(path=path, rule=rule, got=shown(got), message=msg))
    return INVALID


def _coercer(fs: FieldSpec) -> Callable[[Any, str, Coerced], Any] | None:
    steps: list[tuple[str, Callable[[Any], Any]]] = []
    for c in fs.coerce:
        if c == "strip":
            steps.append((c, lambda v: v.strip(WHITESPACE) if isinstance(v, str) else v))
        elif c == "lowercase":
            steps.append((c, lambda v: v.lower() if isinstance(v, str) else v))
        elif c == "nfc":
            steps.append(
                (c, lambda v: unicodedata.normalize("NFC", v) if isinstance(v, str) else v)
            )
        elif fs.type == "integer":
            steps.append((c, lambda v: int(v) if isinstance(v, str) and _INT_RE.match(v) else v))
        else:
            steps.append(
                (c, lambda v: float(v) if isinstance(v, str) and _NUMBER_RE.match(v) else v)
            )
    if not steps:
        return None

    def coerce(v: Any, path: str, coerced: Coerced) -> Any:
        for name, step in steps:
            new = step(v)
            if (new is not v and new != v) or type(new) is not type(v):
                coerced.append((path, name))
            v = new
        return v

    return coerce


def compile_field(fs: FieldSpec, enum_values: list[Any] | None = None) -> Check:
    """Build the check for one field; closures keep the hot path free of spec lookups."""
    base = _compile_type(fs, enum_values)
    coerce = _coercer(fs)
    if coerce is None:
        return base

    def coerced_check(v: Any, path: str, errors: Errors, coerced: Coerced) -> Any:
        return base(coerce(v, path, coerced), path, errors, coerced)

    return coerced_check


def _compile_type(fs: FieldSpec, enum_values: list[Any] | None) -> Check:
    lo, hi = fs.min, fs.max
    lmin, lmax = fs.min_length, fs.max_length
    t = fs.type

    if t == "string":
        pattern = re.compile(python_pattern(fs.pattern)) if fs.pattern is not None else None

        def check_string(v: Any, path: str, errors: Errors, _c: Coerced) -> Any:
            if not isinstance(v, str):
                return _bad(errors, path, "type", v, f"expected a string, found {type_name(v)}")
            n = len(v)
            if lmin is not None and n < lmin:
                return _bad(errors, path, "min_length", v, f"needs at least {lmin} characters")
            if lmax is not None and n > lmax:
                return _bad(errors, path, "max_length", v, f"allows at most {lmax} characters")
            if pattern is not None and pattern.search(v) is None:
                return _bad(errors, path, "pattern", v, f"does not match {fs.pattern!r}")
            return v

        return check_string

    if t in ("integer", "number"):
        want_int = t == "integer"

        def check_number(v: Any, path: str, errors: Errors, _c: Coerced) -> Any:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return _bad(errors, path, "type", v, f"expected {t}, found {type_name(v)}")
            if want_int and not isinstance(v, int):
                return _bad(errors, path, "type", v, f"expected an integer, found {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                return _bad(errors, path, "finite", v, "NaN and infinities are not numbers here")
            if lo is not None and v < lo:
                return _bad(errors, path, "min", v, f"must be >= {lo:g}")
            if hi is not None and v > hi:
                return _bad(errors, path, "max", v, f"must be <= {hi:g}")
            return v

        return check_number

    if t == "boolean":

        def check_bool(v: Any, path: str, errors: Errors, _c: Coerced) -> Any:
            if not isinstance(v, bool):
                return _bad(errors, path, "type", v, f"expected a boolean, found {type_name(v)}")
            return v

        return check_bool

    if t == "datetime":

        def check_datetime(v: Any, path: str, errors: Errors, _c: Coerced) -> Any:
            if not isinstance(v, str):
                return _bad(
                    errors, path, "type", v, f"expected an ISO 8601 string, found {type_name(v)}"
                )
            if _DATETIME_RE.match(v) is None or not valid_date(v):
                return _bad(errors, path, "datetime", v, "is not an ISO 8601 date or date-time")
            return v

        return check_datetime

    if t == "enum":
        values = enum_values if enum_values is not None else list(fs.values or [])
        allowed = {(type(x), x) for x in values}
        listing = ", ".join(repr(x) for x in values[:20]) + (" ..." if len(values) > 20 else "")

        def check_enum(v: Any, path: str, errors: Errors, _c: Coerced) -> Any:
            try:
                ok = (type(v), v) in allowed
            except TypeError:
                ok = False
            if not ok:
                return _bad(errors, path, "enum", v, f"must be one of {listing}")
            return v

        return check_enum

    if t == "list":
        assert fs.items is not None
        item = compile_field(fs.items)
        item_required = not fs.items.nullable

        def check_list(v: Any, path: str, errors: Errors, coerced: Coerced) -> Any:
            if not isinstance(v, list):
                return _bad(errors, path, "type", v, f"expected an array, found {type_name(v)}")
            n = len(v)
            if lmin is not None and n < lmin:
                return _bad(errors, path, "min_length", v, f"needs at least {lmin} items")
            if lmax is not None and n > lmax:
                return _bad(errors, path, "max_length", v, f"allows at most {lmax} items")
            out: list[Any] = []
            before = len(errors)
            for i, x in enumerate(v):
                p = f"{path}[{i}]"
                if x is None:
                    if item_required:
                        _bad(errors, p, "nullable", None, "may not be null")
                    out.append(None)
                    continue
                out.append(item(x, p, errors, coerced))
            return INVALID if len(errors) > before else out

        return check_list

    assert fs.fields is not None
    obj = ObjectCheck(fs.fields, fs.unknown_fields == "reject")

    def check_object(v: Any, path: str, errors: Errors, coerced: Coerced) -> Any:
        if not isinstance(v, dict):
            return _bad(errors, path, "type", v, f"expected an object, found {type_name(v)}")
        before = len(errors)
        clean = obj(v, path, errors, coerced)
        return INVALID if len(errors) > before else clean

    return check_object


class ObjectCheck:
    """Checks the fields of one object (a record, or a nested object field)."""

    def __init__(
        self,
        fields: dict[str, FieldSpec],
        reject_unknown: bool,
        enum_values: dict[str, list[Any]] | None = None,
    ) -> None:
        ev = enum_values or {}
        self.fields = tuple(
            (name, fs.required, fs.nullable, compile_field(fs, ev.get(name)))
            for name, fs in fields.items()
        )
        self.known = frozenset(fields)
        self.reject_unknown = reject_unknown

    def __call__(
        self, record: dict[str, Any], prefix: str, errors: Errors, coerced: Coerced
    ) -> dict[str, Any]:
        """Return the clean fields (valid ones only); append every violation to ``errors``."""
        clean: dict[str, Any] = {}
        for name, required, nullable, check in self.fields:
            path = f"{prefix}.{name}"
            if name not in record:
                if required:
                    errors.append(Violation(path, "required", None, "is required"))
                continue
            value = record[name]
            if value is None:
                if nullable:
                    clean[name] = None
                else:
                    errors.append(Violation(path, "nullable", None, "may not be null"))
                continue
            value = check(value, path, errors, coerced)
            if value is not INVALID:
                clean[name] = value
        if self.reject_unknown and not self.known.issuperset(record):
            errors.extend(
                Violation(
                    f"{prefix}.{key}",
                    "unknown_field",
                    shown(record[key]),
                    "is not a field of this contract; remove it",
                )
                for key in record
                if key not in self.known
            )
        return clean


class RuleCheck:
    """A cross-field rule, checked when every field it names is present, valid and not null."""

    def __init__(self, name: str, check: str, message: str) -> None:
        self.name = name
        self.text = check
        self.cmp: Comparison = parse_rule(check)
        self.fn = COMPARE[self.cmp.op]
        self.message = message or f"`{check}` does not hold"
        self.path = "$." + self.cmp.fields[0]

    def __call__(self, clean: dict[str, Any], prefix: str, errors: Errors) -> None:
        left, right = self.cmp.left, self.cmp.right
        if any(clean.get(f) is None for f in self.cmp.fields):
            return
        a = clean[left.field] if left.field is not None else left.literal
        b = clean[right.field] if right.field is not None else right.literal
        try:
            ok = self.fn(a, b)
        except TypeError:
            ok = False
        if not ok:
            got = {f: shown(clean[f]) for f in self.cmp.fields}
            path = prefix + self.path[1:]
            errors.append(Violation(path, self.name, got, self.message))
