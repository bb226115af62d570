"""The contract language: typed models for the ``input:`` and ``output:`` sections of a spec.

A contract is a set of fields (type, presence, bounds, lengths, patterns, enums, uniqueness,
declared coercions), cross-field rules such as ``end >= start``, and custom expectations (a
Python callable). Mistakes are found when the spec loads, with the key and the fix.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FieldType = Literal["string", "integer", "number", "boolean", "enum", "list", "object", "datetime"]
Coercion = Literal["strip", "lowercase", "nfc", "number_from_string"]
Scalar = str | int | float | bool

_TEXT_COERCIONS = frozenset({"strip", "lowercase", "nfc"})
_SCALARS = frozenset({"string", "integer", "number", "boolean", "enum", "datetime"})
_OPS = {"<": ast.Lt, "<=": ast.LtE, ">": ast.Gt, ">=": ast.GtE, "==": ast.Eq, "!=": ast.NotEq}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """One field: its type and the rules a value must meet."""

    type: FieldType
    required: bool = True
    nullable: bool = False
    description: str = ""
    min: float | None = None
    max: float | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=0)
    pattern: str | None = None
    values: list[Scalar] | None = None
    values_file: str | None = None
    unique: bool = False
    coerce: list[Coercion] = Field(default_factory=list)
    items: FieldSpec | None = None
    fields: dict[str, FieldSpec] | None = None
    unknown_fields: Literal["reject", "ignore"] = "reject"

    @model_validator(mode="after")
    def _coherent(self) -> FieldSpec:
        t = self.type
        if t == "enum" and not (self.values or self.values_file):
            raise ValueError("an enum field needs `values: [...]` or `values_file: FILE`")
        if t != "enum" and (self.values is not None or self.values_file is not None):
            raise ValueError("`values`/`values_file` apply to enum fields only; set `type: enum`")
        if (self.min is not None or self.max is not None) and t not in ("integer", "number"):
            raise ValueError("`min`/`max` apply to integer and number fields; use min_length")
        if (self.min_length is not None or self.max_length is not None) and t not in (
            "string",
            "list",
        ):
            raise ValueError("`min_length`/`max_length` apply to string and list fields")
        if self.pattern is not None:
            if t != "string":
                raise ValueError("`pattern` applies to string fields only")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"`pattern` {self.pattern!r} is not a regex: {exc}") from None
        for c in self.coerce:
            if c in _TEXT_COERCIONS and t not in ("string", "enum"):
                raise ValueError(f"coercion {c!r} applies to string and enum fields only")
            if c == "number_from_string" and t not in ("integer", "number"):
                raise ValueError("coercion 'number_from_string' applies to integer and number")
        if self.unique and t not in _SCALARS:
            raise ValueError("`unique` applies to scalar fields (not lists or objects)")
        if (self.items is not None) != (t == "list"):
            raise ValueError("a list field needs `items: {type: ...}`; only lists take `items`")
        if (self.fields is not None) != (t == "object"):
            raise ValueError("an object field needs `fields: {...}`; only objects take `fields`")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if (
            self.min_length is not None
            and self.max_length is not None
            and self.min_length > self.max_length
        ):
            raise ValueError(
                f"min_length ({self.min_length}) is greater than max_length ({self.max_length})"
            )
        return self


class RuleSpec(_Strict):
    """A cross-field rule, ``left OP right`` over two fields or a field and a literal."""

    name: str
    check: str
    message: str = ""

    @model_validator(mode="after")
    def _parses(self) -> RuleSpec:
        parse_rule(self.check)
        return self


class ExpectationSpec(_Strict):
    """A custom check: ``module:function`` taking a record, returning True or messages."""

    name: str
    target: str


class ContractSpec(_Strict):
    """The shape of a record at the door (input) or on the way out (output)."""

    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    unknown_fields: Literal["reject", "ignore"] = "reject"
    rules: list[RuleSpec] = Field(default_factory=list)
    expectations: list[ExpectationSpec] = Field(default_factory=list)
    model: str | None = Field(
        default=None, description="a pydantic model (`module:Model`) serving as the contract"
    )

    @model_validator(mode="after")
    def _coherent(self) -> ContractSpec:
        if self.model is not None and self.fields:
            raise ValueError("a contract is either `fields:` or `model:`, not both")
        if self.model is None and not self.fields:
            raise ValueError("a contract needs `fields: {...}` (or `model: module:Model`)")
        for rule in self.rules:
            for name in parse_rule(rule.check).fields:
                if self.model is None and name not in self.fields:
                    raise ValueError(f"rule {rule.name!r} names {name!r}, which is not a field")
        names = [r.name for r in self.rules] + [e.name for e in self.expectations]
        if len(set(names)) != len(names):
            raise ValueError("rule and expectation names must be unique")
        return self


@dataclass(frozen=True, slots=True)
class Operand:
    field: str | None
    literal: Any = None


@dataclass(frozen=True, slots=True)
class Comparison:
    """A parsed cross-field rule."""

    left: Operand
    op: str
    right: Operand

    @property
    def fields(self) -> list[str]:
        return [o.field for o in (self.left, self.right) if o.field is not None]


def _operand(node: ast.expr, text: str) -> Operand:
    if isinstance(node, ast.Name):
        return Operand(field=node.id)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str):
        return Operand(field=None, literal=node.value)
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float)
    ):
        return Operand(field=None, literal=-node.operand.value)
    raise ValueError(f"in rule {text!r}: operands are field names or literals")


def parse_rule(text: str) -> Comparison:
    """Parse ``a >= b``; anything richer than one comparison is refused, never evaluated."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ValueError(f"rule {text!r} is not `field OP field-or-literal`") from None
    if not isinstance(tree, ast.Compare) or len(tree.ops) != 1:
        raise ValueError(f"rule {text!r} must be one comparison, e.g. `end >= start`")
    ops = [k for k, v in _OPS.items() if isinstance(tree.ops[0], v)]
    if not ops:
        raise ValueError(f"rule {text!r}: the operator must be one of {', '.join(_OPS)}")
    op = ops[0]
    left, right = _operand(tree.left, text), _operand(tree.comparators[0], text)
    if left.field is None and right.field is None:
        raise ValueError(f"rule {text!r} compares two literals")
    return Comparison(left, op, right)
