"""Data contracts: one contract spec compiled once, checked per request (row) or per batch
(columnar), reporting every violation with its path, rule and the value found."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keelwork.contract.language import ContractSpec, ExpectationSpec, FieldSpec
from keelwork.contract.row import ObjectCheck, RuleCheck, shown, type_name
from keelwork.errors import SpecError, Violation

if TYPE_CHECKING:
    from keelwork.contract.columnar import ColumnarContract

__all__ = ["Checked", "Contract", "ContractSpec", "FieldSpec", "shown", "type_name"]


@dataclass(slots=True)
class Checked:
    """The outcome for one record: the clean record, every violation, every coercion made."""

    clean: dict[str, Any]
    errors: list[Violation] = field(default_factory=list)
    coerced: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _load_enum(path: Path, where: str) -> list[Any]:
    if not path.is_file():
        raise SpecError(f"{where}: enum values file {path} does not exist", code="spec.enum_file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        values = json.loads(text)
        if not isinstance(values, list):
            raise SpecError(f"{where}: {path} must hold a JSON array", code="spec.enum_file")
        return values
    return [line.strip() for line in text.splitlines() if line.strip()]


class _Expectation:
    def __init__(self, spec: ExpectationSpec, base_dir: Path, where: str) -> None:
        from keelwork.providers.python import resolve_target

        self.name = spec.name
        self.fn, _ = resolve_target(spec.target, base_dir, f"{where}.expectations")
        self.columnar = bool(getattr(self.fn, "columnar", False))

    def messages(self, record: dict[str, Any]) -> list[str]:
        try:
            out = self.fn(record)
        except Exception as exc:
            return [f"the expectation raised {type(exc).__name__}: {exc}"]
        if out is True or out is None:
            return []
        if out is False:
            return [f"expectation {self.name!r} does not hold"]
        if isinstance(out, str):
            return [out]
        return [str(m) for m in out]


class Contract:
    """A compiled contract."""

    def __init__(
        self, spec: ContractSpec, base_dir: str | Path = ".", *, where: str = "contract"
    ) -> None:
        self.spec = spec
        self.base_dir = Path(base_dir)
        self.where = where
        self.enum_values: dict[str, list[Any]] = {
            name: _load_enum(self.base_dir / fs.values_file, f"{where}.fields.{name}")
            for name, fs in spec.fields.items()
            if fs.values_file
        }
        payload = {"spec": spec.model_dump(mode="json"), "enums": self.enum_values}
        self.version = hashlib.sha256(
            json.dumps(payload, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]
        self._object = ObjectCheck(spec.fields, spec.unknown_fields == "reject", self.enum_values)
        self.rules = [RuleCheck(r.name, r.check, r.message) for r in spec.rules]
        self.expectations = [_Expectation(e, self.base_dir, where) for e in spec.expectations]
        self.unique = [name for name, fs in spec.fields.items() if fs.unique]
        self._model: Any = None
        if spec.model is not None:
            from keelwork.providers.python import resolve_target

            self._model, _ = resolve_target(spec.model, self.base_dir, f"{where}.model")
            if not hasattr(self._model, "model_validate"):
                raise SpecError(f"{where}.model: {spec.model} is not a pydantic model")
        self._columnar: ColumnarContract | None = None
        if any(fs.pattern for fs in spec.fields.values()):
            _ = self.columnar  # a pattern both engines cannot run is a load error, not a surprise

    # --- the row path --------------------------------------------------------------------

    def check(self, record: Any, prefix: str = "$") -> Checked:
        """Check one record; every violation is collected."""
        if not isinstance(record, dict):
            return Checked(
                {},
                [
                    Violation(
                        path=prefix,
                        rule="type",
                        got=shown(record),
                        message=f"expected a JSON object, found {type_name(record)}",
                    )
                ],
            )
        if self._model is not None:
            return self._check_model(record, prefix)
        out = Checked({})
        out.clean = self._object(record, prefix, out.errors, out.coerced)
        for rule in self.rules:
            rule(out.clean, prefix, out.errors)
        if self.expectations and not out.errors:
            for exp in self.expectations:
                out.errors.extend(
                    Violation(prefix, exp.name, None, msg) for msg in exp.messages(out.clean)
                )
        return out

    def validate(self, record: Any, prefix: str = "$") -> tuple[dict[str, Any], list[Violation]]:
        """The clean record and its violations (the shape the pipeline and chain use)."""
        c = self.check(record, prefix)
        return c.clean, c.errors

    def check_many(self, records: list[Any], *, relative: bool = False) -> list[Checked]:
        """Check a batch: each record on its own, then uniqueness across the batch. Paths are
        ``$[i].field``, or ``$.field`` with ``relative`` (each record reported on its own)."""
        results = [self.check(r, "$" if relative else f"$[{i}]") for i, r in enumerate(records)]
        for name in self.unique:
            first: dict[Any, int] = {}
            for i, res in enumerate(results):
                value = res.clean.get(name)
                if value is None:
                    continue
                key = (type(value), value)
                if key in first:
                    res.errors.append(
                        Violation(
                            f"$.{name}" if relative else f"$[{i}].{name}",
                            "unique",
                            shown(value),
                            f"repeats the value of row {first[key]}",
                        )
                    )
                else:
                    first[key] = i
        return results

    def _check_model(self, record: dict[str, Any], prefix: str) -> Checked:
        from pydantic import ValidationError

        try:
            obj = self._model.model_validate(record)
        except ValidationError as exc:
            errors = []
            for e in exc.errors(include_url=False):
                path = prefix
                for part in e["loc"]:
                    path += f"[{part}]" if isinstance(part, int) else f".{part}"
                errors.append(Violation(path, e["type"], shown(e.get("input")), e["msg"]))
            return Checked({}, errors)
        return Checked(obj.model_dump(mode="json"))

    # --- the columnar path -----------------------------------------------------------------

    @property
    def columnar(self) -> ColumnarContract:
        """The vectorised validator for files and batches (built on first use)."""
        if self._columnar is None:
            from keelwork.contract.columnar import ColumnarContract

            self._columnar = ColumnarContract(self)
        return self._columnar

    # --- publishing ------------------------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        """The contract as JSON Schema, for OpenAPI and clients."""
        if self._model is not None:
            schema: dict[str, Any] = self._model.model_json_schema()
            return schema
        return _object_schema(self.spec.fields, self.spec.unknown_fields, self.enum_values)


def _field_schema(fs: FieldSpec, enum_values: list[Any] | None = None) -> dict[str, Any]:
    s: dict[str, Any]
    if fs.type == "enum":
        s = {"enum": list(enum_values if enum_values is not None else fs.values or [])}
    elif fs.type == "datetime":
        s = {"type": "string", "format": "date-time"}
    elif fs.type == "list":
        assert fs.items is not None
        s = {"type": "array", "items": _field_schema(fs.items)}
        if fs.min_length is not None:
            s["minItems"] = fs.min_length
        if fs.max_length is not None:
            s["maxItems"] = fs.max_length
    elif fs.type == "object":
        assert fs.fields is not None
        s = _object_schema(fs.fields, fs.unknown_fields, {})
    else:
        s = {"type": fs.type}
        if fs.type == "string":
            if fs.min_length is not None:
                s["minLength"] = fs.min_length
            if fs.max_length is not None:
                s["maxLength"] = fs.max_length
            if fs.pattern is not None:
                s["pattern"] = fs.pattern
    if fs.min is not None:
        s["minimum"] = fs.min
    if fs.max is not None:
        s["maximum"] = fs.max
    if fs.description:
        s["description"] = fs.description
    if fs.nullable:
        s = {"anyOf": [s, {"type": "null"}]}
    return s


def _object_schema(
    fields: dict[str, FieldSpec], unknown: str, enum_values: dict[str, list[Any]]
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {n: _field_schema(fs, enum_values.get(n)) for n, fs in fields.items()},
        "required": [n for n, fs in fields.items() if fs.required],
        "additionalProperties": unknown != "reject",
    }
