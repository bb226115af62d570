"""The compiled contract: each rule, every violation at once, the JSON Schema it publishes."""

from __future__ import annotations

from typing import Any

import pytest

from keelwork.contract import Contract
from keelwork.spec import ContractSpec

SPEC = ContractSpec.model_validate(
    {
        "fields": {
            "s": {"type": "string", "coerce": ["strip"], "min_length": 2, "max_length": 5},
            "i": {"type": "integer", "required": False, "min": 0, "max": 9},
            "x": {"type": "number", "required": False, "nullable": True, "max": 1.5},
            "b": {"type": "boolean", "required": False},
            "e": {"type": "enum", "values": ["a", 1, True], "required": False},
        }
    }
)


@pytest.mark.parametrize(
    ("record", "violations"),
    [
        ({"s": " ab "}, set()),
        ({"s": "ab", "i": 9, "x": None, "b": False, "e": 1}, set()),
        ({}, {("$.s", "required")}),
        ({"s": None}, {("$.s", "nullable")}),
        ({"s": " a "}, {("$.s", "min_length")}),
        ({"s": "abcdef"}, {("$.s", "max_length")}),
        ({"s": 12}, {("$.s", "type")}),
        ({"s": "ab", "i": True}, {("$.i", "type")}),
        ({"s": "ab", "i": 1.0}, {("$.i", "type")}),
        ({"s": "ab", "i": -1}, {("$.i", "min")}),
        ({"s": "ab", "x": 2}, {("$.x", "max")}),
        ({"s": "ab", "x": float("nan")}, {("$.x", "finite")}),
        ({"s": "ab", "b": 1}, {("$.b", "type")}),
        ({"s": "ab", "e": "1"}, {("$.e", "enum")}),
        ({"s": "ab", "e": 1.5}, {("$.e", "enum")}),
        ({"s": "ab", "e": [1]}, {("$.e", "enum")}),
        ({"s": "ab", "z": 0}, {("$.z", "unknown_field")}),
        (
            {"i": "3", "b": "true", "q": 1},
            {("$.s", "required"), ("$.i", "type"), ("$.b", "type"), ("$.q", "unknown_field")},
        ),
        ([], {("$", "type")}),
        ("text", {("$", "type")}),
    ],
)
def test_rules(record: Any, violations: set[tuple[str, str]]) -> None:
    _, errors = Contract(SPEC).validate(record)
    assert {(e.path, e.rule) for e in errors} == violations


def test_true_is_not_the_enum_value_one() -> None:
    c = Contract(ContractSpec.model_validate({"fields": {"e": {"type": "enum", "values": [1]}}}))
    assert c.validate({"e": True})[1] and not c.validate({"e": 1})[1]


def test_long_offending_values_are_cut_in_reports() -> None:
    _, errors = Contract(SPEC).validate({"s": "x" * 10_000})
    assert len(errors[0].got) < 200 and "10000 characters" in errors[0].got


def test_unknown_fields_may_be_ignored() -> None:
    spec = ContractSpec.model_validate(
        {"fields": {"a": {"type": "string"}}, "unknown_fields": "ignore"}
    )
    clean, errors = Contract(spec).validate({"a": "x", "b": 1})
    assert errors == [] and clean == {"a": "x"}


def test_the_version_follows_the_rules() -> None:
    other = ContractSpec.model_validate({"fields": {"s": {"type": "string"}}})
    assert Contract(SPEC).version == Contract(SPEC).version != Contract(other).version


def test_json_schema() -> None:
    schema = Contract(SPEC).json_schema()
    assert schema["required"] == ["s"]
    assert schema["properties"]["s"] == {"type": "string", "minLength": 2, "maxLength": 5}
    assert schema["properties"]["x"]["anyOf"][1] == {"type": "null"}
    assert schema["properties"]["e"] == {"enum": ["a", 1, True]}
