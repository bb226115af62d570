"""The columnar path agrees with the row path on every record, and handles files' text cells."""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keelwork.contract import Contract, ContractSpec

SPEC = ContractSpec.model_validate(
    {
        "fields": {
            "name": {
                "type": "string",
                "coerce": ["strip", "lowercase"],
                "min_length": 1,
                "max_length": 8,
                "pattern": "^[a-z ]*$",
            },
            "code": {"type": "string", "required": False, "unique": True},
            "ref": {"type": "string", "required": False, "pattern": "^[a-z$]+$"},
            "age": {"type": "integer", "required": False, "min": 0, "max": 120},
            "score": {"type": "number", "required": False, "nullable": True, "min": -1, "max": 1},
            "ok": {"type": "boolean", "required": False},
            "tier": {"type": "enum", "values": ["gold", "silver", 3], "required": False},
            "when": {"type": "datetime", "required": False},
            "start": {"type": "integer", "required": False},
            "end": {"type": "integer", "required": False},
            "qty": {"type": "integer", "required": False, "coerce": ["number_from_string"]},
            "tags": {
                "type": "list",
                "required": False,
                "items": {"type": "string"},
                "max_length": 2,
            },
        },
        "rules": [{"name": "end_after_start", "check": "end >= start"}],
    }
)
CONTRACT = Contract(SPEC)

MISSING = object()
texts = st.text(alphabet=st.sampled_from("aB z\t\u00a0\x1c1-"), max_size=10)
column_values: dict[str, list[st.SearchStrategy[Any]]] = {
    "name": [texts, st.integers(-5, 5)],
    "code": [st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 3)],
    "ref": [st.sampled_from(["abc", "abc\n", "ab$", "a\nb", "", "ABC"])],
    "age": [st.integers(-10, 130), st.floats(-10, 130), st.text(max_size=3)],
    "score": [st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3)],
    "ok": [st.booleans(), st.integers(0, 1)],
    "tier": [st.sampled_from(["gold", "silver", "bronze", "3"]), st.integers(2, 4)],
    "when": [
        st.sampled_from(
            [
                "2024-02-29",
                "2023-02-29",
                "2024-01-01T10:00:00Z",
                "2024-13-01",
                "2024-01-01T25:00",
                "yesterday",
                "2024-01-01 10:00:00.123+02:00",
            ]
        )
    ],
    "start": [st.integers(0, 10)],
    "end": [st.integers(0, 10)],
    "qty": [st.sampled_from(["1", "-2", "+3", "1.5", "x", " 4", "٣"]), st.integers(0, 9)],
    "tags": [st.lists(st.text(max_size=2), max_size=3), st.lists(st.integers(0, 2), max_size=3)],
}


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 12))
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for col, kinds in column_values.items():
        if draw(st.booleans()) and col != "name":
            continue
        kind = draw(st.sampled_from(kinds))
        for r in rows:
            v = draw(st.one_of(kind, st.just(None), st.just(MISSING)))
            if v is not MISSING:
                r[col] = v
    if draw(st.booleans()):
        for r in rows:
            if draw(st.booleans()):
                r["extra"] = 1
    return rows


def row_path(records: list[dict[str, Any]]) -> set[tuple[int, str, str]]:
    out = set()
    for i, res in enumerate(CONTRACT.check_many(records)):
        for e in res.errors:
            out.add((i, "$" + e.path[len(f"$[{i}]") :], e.rule))
    return out


def columnar_path(records: list[dict[str, Any]]) -> set[tuple[int, str, str]]:
    res = CONTRACT.columnar.validate_records(records)
    return {(r["row"], r["path"], r["rule"]) for r in res.violations.iter_rows(named=True)}


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(records=batches())
def test_both_paths_flag_the_same_rows_paths_and_rules(records: list[dict[str, Any]]) -> None:
    assert columnar_path(records) == row_path(records)
    res = CONTRACT.columnar.validate_records(records)
    assert res.valid.to_list() == [r.ok for r in CONTRACT.check_many(records)]


def test_typed_batches_take_the_vectorised_path() -> None:
    records = [{"name": "Ann", "age": 3}, {"name": " bob ", "age": 200}]
    assert CONTRACT.columnar.frame_from_records(records) is not None
    res = CONTRACT.columnar.validate_records(records)
    assert res.violations.select("row", "path", "rule").rows() == [(1, "$.age", "max")]
    assert res.coerced == {("name", "strip"): 1, ("name", "lowercase"): 1}
    assert res.clean["name"].to_list() == ["ann", "bob"]


def test_csv_cells_are_text_and_numbers_are_read_from_them() -> None:
    df = pl.DataFrame(
        {
            "name": ["a", "b", "c"],
            "age": ["7", "x", "130"],
            "ok": ["true", "No", "maybe"],
            "when": ["2024-01-01", None, "2024-02-30"],
        },
        schema={k: pl.String for k in ("name", "age", "ok", "when")},
    )
    res = CONTRACT.columnar.validate_frame(df, text_cells=True)
    got = {(r["row"], r["path"], r["rule"]) for r in res.violations.iter_rows(named=True)}
    assert got == {
        (1, "$.age", "type"),
        (2, "$.age", "max"),
        (2, "$.ok", "type"),
        (2, "$.when", "datetime"),
    }
    assert res.valid.to_list() == [True, False, False]
    assert res.clean["age"].to_list() == [7, None, None]
