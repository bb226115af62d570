"""The contract language: nested types, patterns, datetimes, enum files, coercions (counted),
cross-field rules, custom expectations, a pydantic model as the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keelwork.contract import Contract, ContractSpec
from keelwork.errors import SpecError
from keelwork.spec import parse_spec
from tests.conftest import SPEC, deep_merge


def contract(fields: dict[str, Any], base: Path | str = ".", **extra: Any) -> Contract:
    return Contract(ContractSpec.model_validate({"fields": fields, **extra}), base)


def rules(c: Contract, record: Any) -> set[tuple[str, str]]:
    return {(e.path, e.rule) for e in c.check(record).errors}


def test_nested_lists_and_objects_report_deep_paths() -> None:
    c = contract(
        {
            "items": {
                "type": "list",
                "max_length": 3,
                "items": {
                    "type": "object",
                    "fields": {
                        "sku": {"type": "string", "pattern": "^[A-Z]{3}$"},
                        "qty": {"type": "integer", "min": 1},
                    },
                },
            },
        }
    )
    assert rules(c, {"items": [{"sku": "ABC", "qty": 1}]}) == set()
    assert rules(c, {"items": [{"sku": "abc", "qty": 0}, {"sku": "XYZ", "qty": 2, "x": 1}]}) == {
        ("$.items[0].sku", "pattern"),
        ("$.items[0].qty", "min"),
        ("$.items[1].x", "unknown_field"),
    }
    assert rules(c, {"items": [{}] * 4}) == {("$.items", "max_length")}
    assert rules(c, {"items": "no"}) == {("$.items", "type")}


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2024-02-29", True),
        ("2023-02-29", False),
        ("2024-01-01T10:00:00Z", True),
        ("2024-01-01 10:00:00.123456+02:00", True),
        ("2024-01-01T24:00", False),
        ("01/02/2024", False),
        (20240101, False),
    ],
)
def test_datetimes_are_iso_8601_and_real_calendar_days(value: Any, ok: bool) -> None:
    c = contract({"at": {"type": "datetime"}})
    assert c.check({"at": value}).ok is ok


def test_coercions_are_applied_in_order_and_counted() -> None:
    c = contract(
        {
            "name": {"type": "string", "coerce": ["strip", "nfc", "lowercase"], "max_length": 4},
            "qty": {"type": "integer", "coerce": ["number_from_string"], "min": 0},
        }
    )
    checked = c.check({"name": "  Cafe\u0301 ", "qty": "12"})
    assert checked.ok and checked.clean == {"name": "café", "qty": 12}
    assert checked.coerced == [
        ("$.name", "strip"),
        ("$.name", "nfc"),
        ("$.name", "lowercase"),
        ("$.qty", "number_from_string"),
    ]
    assert c.check({"name": "ab", "qty": "1_000"}).errors[0].rule == "type"  # no Python-isms
    assert c.check({"name": "ab", "qty": "٣"}).errors[0].rule == "type"  # ASCII digits only


def test_enum_values_can_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "intents.txt").write_text("card_arrival\nexchange_rate\n\n")
    c = contract({"intent": {"type": "enum", "values_file": "intents.txt"}}, tmp_path)
    assert c.check({"intent": "exchange_rate"}).ok
    assert not c.check({"intent": "other"}).ok
    assert c.json_schema()["properties"]["intent"]["enum"] == ["card_arrival", "exchange_rate"]
    (tmp_path / "intents.txt").write_text("card_arrival\n")
    changed = contract({"intent": {"type": "enum", "values_file": "intents.txt"}}, tmp_path)
    assert changed.version != c.version  # the file is part of the contract
    with pytest.raises(SpecError):
        contract({"intent": {"type": "enum", "values_file": "missing.txt"}}, tmp_path)


def test_cross_field_rules_run_when_their_fields_are_valid() -> None:
    c = contract(
        {
            "start": {"type": "integer"},
            "end": {"type": "integer"},
            "currency": {"type": "string", "required": False},
        },
        rules=[
            {"name": "end_after_start", "check": "end >= start"},
            {"name": "not_negative", "check": "start >= 0", "message": "start is negative"},
        ],
    )
    assert c.check({"start": 1, "end": 2}).ok
    errs = c.check({"start": -3, "end": -5}).errors
    assert [(e.rule, e.got) for e in errs] == [
        ("end_after_start", {"end": -5, "start": -3}),
        ("not_negative", {"start": -3}),
    ]
    assert errs[1].message == "start is negative"
    assert rules(c, {"start": "x", "end": 1}) == {("$.start", "type")}  # no rule noise


@pytest.mark.parametrize(
    "check", ["end >= start and 1", "__import__('os').system('x')", "a", "1 < 2", "a in b"]
)
def test_rules_are_parsed_never_evaluated(check: str) -> None:
    with pytest.raises(ValueError):
        ContractSpec.model_validate(
            {
                "fields": {
                    "a": {"type": "integer"},
                    "b": {"type": "integer"},
                    "end": {"type": "integer"},
                    "start": {"type": "integer"},
                },
                "rules": [{"name": "r", "check": check}],
            }
        )


def test_custom_expectations_from_a_module(tmp_path: Path) -> None:
    (tmp_path / "checks.py").write_text(
        "def even(record):\n    return record['n'] % 2 == 0 or f\"{record['n']} is odd\"\n"
    )
    c = contract(
        {"n": {"type": "integer"}},
        tmp_path,
        expectations=[{"name": "even", "target": "checks:even"}],
    )
    assert c.check({"n": 2}).ok
    (e,) = c.check({"n": 3}).errors
    assert (e.path, e.rule, e.message) == ("$", "even", "3 is odd")


def test_a_pydantic_model_can_be_the_contract(tmp_path: Path) -> None:
    (tmp_path / "schema.py").write_text(
        "from pydantic import BaseModel, ConfigDict, Field\n"
        "class Ticket(BaseModel):\n"
        "    model_config = ConfigDict(extra='forbid', strict=True)\n"
        "    text: str = Field(min_length=1)\n"
        "    priority: int = 0\n"
    )
    c = Contract(ContractSpec.model_validate({"model": "schema:Ticket"}), tmp_path)
    assert c.check({"text": "hi"}).clean == {"text": "hi", "priority": 0}
    assert rules(c, {"text": "", "priority": "1", "x": 1}) == {
        ("$.text", "string_too_short"),
        ("$.priority", "int_type"),
        ("$.x", "extra_forbidden"),
    }
    assert c.json_schema()["title"] == "Ticket"


def test_incoherent_fields_are_refused_at_load() -> None:
    for bad, needle in [
        ({"type": "integer", "pattern": "x"}, "pattern"),
        ({"type": "string", "pattern": "("}, "not a regex"),
        ({"type": "integer", "coerce": ["lowercase"]}, "lowercase"),
        ({"type": "list"}, "items"),
        ({"type": "object", "unique": True, "fields": {}}, "unique"),
    ]:
        with pytest.raises(SpecError) as info:
            parse_spec(deep_merge(SPEC, {"input": {"fields": {"z": bad}}}))
        assert needle in str(info.value)
