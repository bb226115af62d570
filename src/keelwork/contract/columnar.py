"""The columnar path: the same contract, vectorised with Polars, for files and batches.

Each field becomes one expression that yields, per row, the first rule the value breaks (or
null), mirroring the row path's order of checks; all fields are evaluated in one parallel
``select``. Only nested fields (lists, objects) and plain Python expectations fall back to a
per-value loop. The two paths agree on which row breaks which rule at which path; a property
test holds them to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from keelwork.contract.language import FieldSpec
from keelwork.contract.row import (
    DATETIME_TEXT,
    INT_TEXT,
    NUMBER_TEXT,
    WHITESPACE,
    compile_field,
    shown,
)
from keelwork.errors import SpecError

if TYPE_CHECKING:
    from keelwork.contract import Contract

VIOLATION_SCHEMA = {
    "row": pl.UInt32,
    "path": pl.String,
    "rule": pl.String,
    "got": pl.String,
    "message": pl.String,
}
_INTS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
_FLOATS = (pl.Float32, pl.Float64)
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}

_MESSAGES = {
    "required": "is required",
    "nullable": "may not be null",
    "type": "has the wrong type",
    "min_length": "is too short",
    "max_length": "is too long",
    "pattern": "does not match the pattern",
    "min": "is below the minimum",
    "max": "is above the maximum",
    "finite": "NaN and infinities are not numbers here",
    "enum": "is not one of the allowed values",
    "datetime": "is not an ISO 8601 date or date-time",
    "unique": "repeats an earlier row's value",
    "unknown_field": "is not a field of this contract; remove it",
}


@dataclass(slots=True)
class FrameResult:
    """What a frame's validation found."""

    clean: pl.DataFrame
    valid: pl.Series
    violations: pl.DataFrame
    coerced: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def n_invalid(self) -> int:
        return int((~self.valid).sum())


def _is(dtype: pl.DataType, kinds: Sequence[Any]) -> bool:
    return any(dtype == k for k in kinds)


class _FieldPlan:
    """One field's expressions: the coerced value, and the first rule each row breaks."""

    def __init__(
        self,
        name: str,
        fs: FieldSpec,
        dtype: pl.DataType | None,
        text_cells: bool,
        enum_values: list[Any] | None,
        has_presence: bool,
    ) -> None:
        self.name = name
        self.fs = fs
        self.dtype = dtype
        col = pl.col(name)
        value: pl.Expr = col
        coerced: list[tuple[str, pl.Expr]] = []
        t = fs.type
        is_text = dtype is not None and dtype == pl.String
        # declared coercions, in order, counted where they changed something
        for c in fs.coerce:
            if not is_text:
                continue
            before = value
            if c == "strip":
                value = value.str.strip_chars(WHITESPACE)
            elif c == "lowercase":
                value = value.str.to_lowercase()
            elif c == "nfc":
                value = value.str.normalize("NFC")
            else:
                continue
            coerced.append((c, (value != before).fill_null(False)))
        checks: list[tuple[str, pl.Expr]] = []
        present = pl.col(f"__present__{name}") if has_presence else None
        null = pl.lit(True) if dtype is None else col.is_null()
        if present is not None:
            if fs.required:
                checks.append(("required", ~present))
            if not fs.nullable:
                checks.append(("nullable", present & null))
        elif fs.required and not fs.nullable:
            checks.append(("required", null))
        notnull = ~null
        if dtype is None or dtype == pl.Null:  # absent, or every value null: presence decides
            self.value = pl.lit(None).alias(name)
            self.rule = self._first(checks)
            self.coerced = coerced
            return
        if t == "string":
            if not is_text and dtype != pl.Null:
                checks.append(("type", notnull))
            else:
                n = value.str.len_chars()
                if fs.min_length is not None:
                    checks.append(("min_length", notnull & (n < fs.min_length)))
                if fs.max_length is not None:
                    checks.append(("max_length", notnull & (n > fs.max_length)))
                if fs.pattern is not None:
                    checks.append(("pattern", notnull & ~value.str.contains(fs.pattern)))
        elif t in ("integer", "number"):
            numeric_text = is_text and (text_cells or "number_from_string" in fs.coerce)
            if numeric_text:
                spelled = value.str.contains(INT_TEXT if t == "integer" else NUMBER_TEXT)
                target = pl.Int64 if t == "integer" else pl.Float64
                parsed = pl.when(spelled).then(value.cast(target, strict=False))
                if "number_from_string" in fs.coerce:
                    coerced.append(("number_from_string", (spelled & notnull).fill_null(False)))
                checks.append(("type", notnull & ~spelled.fill_null(False)))
                value = parsed
                ok_type = True
            elif _is(dtype, _INTS) or (t == "number" and _is(dtype, _FLOATS)):
                ok_type = True
            else:
                ok_type = dtype == pl.Null
                if not ok_type:
                    checks.append(("type", notnull))
            if ok_type:
                if t == "number" and (numeric_text or _is(dtype, _FLOATS)):
                    checks.append(("finite", notnull & ~value.is_finite().fill_null(True)))
                if fs.min is not None:
                    checks.append(("min", notnull & (value < fs.min)))
                if fs.max is not None:
                    checks.append(("max", notnull & (value > fs.max)))
        elif t == "boolean":
            if is_text and text_cells:
                low = value.str.to_lowercase()
                checks.append(("type", notnull & ~low.is_in(sorted(_TRUE | _FALSE))))
                value = (
                    pl.when(low.is_in(sorted(_TRUE)))
                    .then(True)
                    .when(low.is_in(sorted(_FALSE)))
                    .then(False)
                )
            elif dtype != pl.Boolean and dtype != pl.Null:
                checks.append(("type", notnull))
        elif t == "datetime":
            if _is(dtype, (pl.Date,)) or isinstance(dtype, pl.Datetime):
                pass
            elif is_text:
                shape = value.str.contains(DATETIME_TEXT)
                day = value.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
                checks.append(("datetime", notnull & ~(shape & day.is_not_null())))
            elif dtype != pl.Null:
                checks.append(("type", notnull))
        elif t == "enum":
            values = enum_values if enum_values is not None else list(fs.values or [])
            same: list[Any]
            if is_text:
                same = [v for v in values if isinstance(v, str)]
                if text_cells:
                    same += [
                        str(v).lower() if isinstance(v, bool) else str(v)
                        for v in values
                        if not isinstance(v, str)
                    ]
            elif _is(dtype, _INTS):
                same = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
            elif _is(dtype, _FLOATS):
                same = [v for v in values if isinstance(v, float)]
            elif dtype == pl.Boolean:
                same = [v for v in values if isinstance(v, bool)]
            else:
                same = []
            checks.append(("enum", notnull & ~value.is_in(same).fill_null(False)))
        self.value = value.alias(name)
        self.rule = self._first(checks)
        self.coerced = coerced

    def _first(self, checks: list[tuple[str, pl.Expr]]) -> pl.Expr:
        if not checks:
            return pl.lit(None, dtype=pl.String).alias(f"__rule__{self.name}")
        expr: Any = pl
        for rule, cond in checks:
            expr = expr.when(cond.fill_null(False)).then(pl.lit(rule))
        first: pl.Expr = expr.otherwise(pl.lit(None, dtype=pl.String))
        return first.alias(f"__rule__{self.name}")


class ColumnarContract:
    """Validates a Polars frame (or a list of records) against a compiled contract."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        spec = contract.spec
        if spec.model is not None:
            self.fields: dict[str, FieldSpec] = {}
        else:
            self.fields = dict(spec.fields)
        for name, fs in self.fields.items():
            if fs.pattern is not None:
                try:
                    pl.Series([""]).str.contains(fs.pattern)
                except Exception as exc:
                    raise SpecError(
                        f"{contract.where}.fields.{name}.pattern: the columnar engine cannot "
                        f"run {fs.pattern!r} ({exc}); use a pattern without look-around or "
                        "back-references",
                        code="spec.pattern",
                    ) from None
        self._nested = {
            name: compile_field(fs)
            for name, fs in self.fields.items()
            if fs.type in ("list", "object")
        }

    # --- entry points --------------------------------------------------------------------

    def validate_records(self, records: Sequence[Any]) -> FrameResult:
        """Validate records (dicts) as a batch; odd shapes take the row path, same result."""
        frame = self.frame_from_records(records)
        if frame is None:
            return self._by_rows(records)
        return self.validate_frame(frame, presence=True)

    def frame_from_records(self, records: Sequence[Any]) -> pl.DataFrame | None:
        """A typed frame plus presence columns, or None when columns mix types."""
        if self.contract.spec.model is not None or not all(isinstance(r, dict) for r in records):
            return None
        keys: dict[str, None] = {}
        for r in records:
            keys.update(dict.fromkeys(r))
        cols: dict[str, pl.Series] = {}
        for k in keys:
            if k.startswith("__"):
                return None
            values = [r.get(k) for r in records]
            fs = self.fields.get(k)
            if fs is not None and fs.type in ("list", "object"):
                cols[k] = pl.Series(k, values, dtype=pl.Object)
            else:
                try:
                    cols[k] = pl.Series(k, values, strict=True)
                except (TypeError, OverflowError, pl.exceptions.PolarsError):
                    return None
                nested = cols[k].dtype == pl.Object or isinstance(
                    cols[k].dtype, pl.List | pl.Struct
                )
                if nested and fs is not None:
                    return None
            cols[f"__present__{k}"] = pl.Series([k in r for r in records], dtype=pl.Boolean)
        n = len(records)
        return pl.DataFrame(cols, height=n) if cols else pl.DataFrame(height=n)

    def validate_frame(
        self, df: pl.DataFrame, *, text_cells: bool = False, presence: bool = False
    ) -> FrameResult:
        """Validate every row of ``df``; ``text_cells`` for CSV, whose cells are all text."""
        n = df.height
        data_cols = [c for c in df.columns if not c.startswith("__present__")]
        plans = []
        for name, fs in self.fields.items():
            if fs.type in ("list", "object"):
                continue
            dtype = df.schema[name] if name in df.columns else None
            has_presence = presence and f"__present__{name}" in df.columns
            if dtype is None and presence:
                df = df.with_columns(pl.lit(False).alias(f"__present__{name}"))
                has_presence = True
            plans.append(
                _FieldPlan(
                    name, fs, dtype, text_cells, self.contract.enum_values.get(name), has_presence
                )
            )
        exprs: list[pl.Expr] = [pl.int_range(n, dtype=pl.UInt32).alias("__row__")]
        for p in plans:
            exprs += [p.value, p.rule]
            exprs += [c.alias(f"__coerced__{p.name}__{k}") for k, c in p.coerced]
        nested = [name for name in self._nested if name in df.columns]
        exprs += [pl.col(name) for name in nested]
        for name in data_cols:
            if name not in self.fields:
                exprs.append(pl.col(name))
        out = df.select(exprs)
        pieces: list[pl.DataFrame] = []
        invalid = pl.Series("__invalid__", np.zeros(n, dtype=bool))
        coerced: dict[tuple[str, str], int] = {}
        field_ok: dict[str, pl.Series] = {}
        for p in plans:
            rule = out[f"__rule__{p.name}"]
            bad = rule.is_not_null()
            field_ok[p.name] = ~bad
            for k, _ in p.coerced:
                count = int(out[f"__coerced__{p.name}__{k}"].sum())
                if count:
                    coerced[(p.name, k)] = count
            if bad.any():
                invalid = invalid | bad
                src = df[p.name] if p.name in df.columns else pl.Series([None] * n)
                pieces.append(
                    self._violations(
                        out["__row__"].filter(bad), f"$.{p.name}", rule.filter(bad), src.filter(bad)
                    )
                )
        # nested fields: the row checker, one value at a time
        for name, check in self._nested.items():
            invalid, extra, ok = self._nested_column(df, name, check, invalid, presence)
            pieces += extra
            field_ok[name] = ok
        # unknown fields
        if self.contract.spec.unknown_fields == "reject":
            for name in data_cols:
                if name in self.fields:
                    continue
                here = (
                    df[f"__present__{name}"]
                    if presence and f"__present__{name}" in df.columns
                    else df[name].is_not_null()
                )
                if here.any():
                    invalid = invalid | here
                    pieces.append(
                        self._violations(
                            out["__row__"].filter(here),
                            f"$.{name}",
                            pl.Series(["unknown_field"] * int(here.sum())),
                            df[name].filter(here),
                        )
                    )
        kept = [p.name for p in plans] + nested
        clean = out.select(kept)
        # values that broke their own field's rules are not clean
        clean = clean.with_columns(
            [pl.when(field_ok[name]).then(pl.col(name)).alias(name) for name in kept]
        )
        invalid, more = self._rules(clean, invalid)
        pieces += more
        invalid, more = self._unique(clean, field_ok, invalid)
        pieces += more
        invalid, more = self._expectations(clean, invalid)
        pieces += more
        violations = (
            pl.concat(pieces).sort("row", maintain_order=True)
            if pieces
            else pl.DataFrame(schema=VIOLATION_SCHEMA)
        )
        return FrameResult(clean=clean, valid=~invalid, violations=violations, coerced=coerced)

    # --- pieces ----------------------------------------------------------------------------

    @staticmethod
    def _violations(
        rows: pl.Series, path: str, rules: pl.Series, got: pl.Series, message: str | None = None
    ) -> pl.DataFrame:
        if got.dtype == pl.Object or isinstance(got.dtype, pl.List | pl.Struct):
            got_text = pl.Series([repr(shown(v)) for v in got.to_list()], dtype=pl.String)
        else:
            got_text = got.cast(pl.String, strict=False)
        rules = rules.cast(pl.String)
        msgs = (
            pl.Series([message] * len(rows), dtype=pl.String)
            if message
            else rules.replace_strict(
                _MESSAGES, default="breaks the contract", return_dtype=pl.String
            )
        )
        return pl.DataFrame(
            {
                "row": rows.cast(pl.UInt32),
                "path": pl.Series([path] * len(rows), dtype=pl.String),
                "rule": rules,
                "got": got_text.str.slice(0, 120),
                "message": msgs,
            }
        )

    def _nested_column(
        self, df: pl.DataFrame, name: str, check: Any, invalid: pl.Series, presence: bool
    ) -> tuple[pl.Series, list[pl.DataFrame], pl.Series]:
        fs = self.fields[name]
        n = df.height
        values = df[name].to_list() if name in df.columns else [None] * n
        here = (
            df[f"__present__{name}"].to_list()
            if presence and f"__present__{name}" in df.columns
            else [v is not None for v in values]
        )
        rows: list[dict[str, Any]] = []
        ok = [True] * n
        for i, (v, present) in enumerate(zip(values, here, strict=True)):
            path = f"$.{name}"
            if not present:
                if fs.required:
                    rows.append(
                        {
                            "row": i,
                            "path": path,
                            "rule": "required",
                            "got": None,
                            "message": "is required",
                        }
                    )
                    ok[i] = False
                continue
            if v is None:
                if not fs.nullable:
                    rows.append(
                        {
                            "row": i,
                            "path": path,
                            "rule": "nullable",
                            "got": None,
                            "message": "may not be null",
                        }
                    )
                    ok[i] = False
                continue
            errors: list[Any] = []
            check(v, path, errors, [])
            for e in errors:
                rows.append(
                    {
                        "row": i,
                        "path": e.path,
                        "rule": e.rule,
                        "got": None if e.got is None else str(e.got)[:120],
                        "message": e.message,
                    }
                )
            ok[i] = not errors
        oks = pl.Series(ok, dtype=pl.Boolean)
        pieces = [pl.DataFrame(rows, schema=VIOLATION_SCHEMA)] if rows else []
        return invalid | ~oks, pieces, oks

    def _rules(
        self, clean: pl.DataFrame, invalid: pl.Series
    ) -> tuple[pl.Series, list[pl.DataFrame]]:
        pieces = []
        for rule in self.contract.rules:
            cmp = rule.cmp

            def side(o: Any) -> pl.Expr:
                return pl.col(o.field) if o.field is not None else pl.lit(o.literal)

            both = pl.all_horizontal([pl.col(f).is_not_null() for f in cmp.fields])
            try:
                holds = clean.select(
                    _compare(side(cmp.left), cmp.op, side(cmp.right)).fill_null(False).alias("h"),
                    both.alias("b"),
                )
                bad = holds["b"] & ~holds["h"]
            except pl.exceptions.PolarsError:  # incomparable types: the rule cannot hold
                bad = clean.select(both.alias("b"))["b"]
            if bad.any():
                invalid = invalid | bad
                rows = pl.Series(range(clean.height), dtype=pl.UInt32).filter(bad)
                parts: list[pl.Expr] = []
                for j, f in enumerate(cmp.fields):
                    parts += [
                        pl.lit(("{" if j == 0 else ", ") + f + ": "),
                        pl.col(f).cast(pl.String),
                    ]
                got = clean.select(pl.concat_str([*parts, pl.lit("}")]).alias("g"))["g"].filter(bad)
                pieces.append(
                    self._violations(
                        rows, rule.path, pl.Series([rule.name] * len(rows)), got, rule.message
                    )
                )
        return invalid, pieces

    def _unique(
        self, clean: pl.DataFrame, field_ok: dict[str, pl.Series], invalid: pl.Series
    ) -> tuple[pl.Series, list[pl.DataFrame]]:
        pieces = []
        for name in self.contract.unique:
            if name not in clean.columns:
                continue
            col = pl.col(name)
            dup = clean.select(
                (col.is_not_null() & col.is_duplicated() & ~col.is_first_distinct()).alias("d")
            )["d"]
            if dup.any():
                invalid = invalid | dup
                rows = pl.Series(range(clean.height), dtype=pl.UInt32).filter(dup)
                pieces.append(
                    self._violations(
                        rows,
                        f"$.{name}",
                        pl.Series(["unique"] * len(rows)),
                        clean[name].filter(dup),
                    )
                )
        return invalid, pieces

    def _expectations(
        self, clean: pl.DataFrame, invalid: pl.Series
    ) -> tuple[pl.Series, list[pl.DataFrame]]:
        pieces: list[pl.DataFrame] = []
        if not self.contract.expectations:
            return invalid, pieces
        candidates = ~invalid  # like the row path: only records with no other violation
        for exp in self.contract.expectations:
            if exp.columnar:
                ok = pl.Series(exp.fn(clean)).cast(pl.Boolean).fill_null(False)
                bad = candidates & ~ok
                msgs = [f"expectation {exp.name!r} does not hold"] * int(bad.sum())
                rows = pl.Series(range(clean.height), dtype=pl.UInt32).filter(bad)
            else:
                rows_l, msgs = [], []
                for i in candidates.arg_true().to_list():
                    for m in exp.messages(clean.row(i, named=True)):
                        rows_l.append(i)
                        msgs.append(m)
                rows = pl.Series(rows_l, dtype=pl.UInt32)
                bad = pl.Series([False] * clean.height)
                if rows_l:
                    bad = pl.Series(range(clean.height)).is_in(rows_l)
            if len(rows):
                invalid = invalid | bad
                pieces.append(
                    pl.DataFrame(
                        {
                            "row": rows,
                            "path": ["$"] * len(rows),
                            "rule": [exp.name] * len(rows),
                            "got": pl.Series([None] * len(rows), dtype=pl.String),
                            "message": msgs,
                        },
                        schema=VIOLATION_SCHEMA,
                    )
                )
        return invalid, pieces

    def _by_rows(self, records: Sequence[Any]) -> FrameResult:
        results = self.contract.check_many(list(records))
        rows: list[dict[str, Any]] = []
        coerced: dict[tuple[str, str], int] = {}
        for i, res in enumerate(results):
            prefix = f"$[{i}]"
            for e in res.errors:
                rows.append(
                    {
                        "row": i,
                        "path": "$" + e.path[len(prefix) :],
                        "rule": e.rule,
                        "got": None if e.got is None else str(e.got)[:120],
                        "message": e.message,
                    }
                )
            for path, name in res.coerced:
                key = (path[len(prefix) + 1 :].split(".")[0].split("[")[0], name)
                coerced[key] = coerced.get(key, 0) + 1
        valid = pl.Series([r.ok for r in results], dtype=pl.Boolean)
        clean = (
            pl.DataFrame([r.clean for r in results], infer_schema_length=None, strict=False)
            if results
            else pl.DataFrame()
        )
        violations = (
            pl.DataFrame(rows, schema=VIOLATION_SCHEMA)
            if rows
            else pl.DataFrame(schema=VIOLATION_SCHEMA)
        )
        return FrameResult(clean=clean, valid=valid, violations=violations, coerced=coerced)


def _compare(a: pl.Expr, op: str, b: pl.Expr) -> pl.Expr:
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    if op == "==":
        return a == b
    return a != b
