"""Contract validation: keelwork's columnar and row paths against Pandera and pydantic.

A. Columnar. One contract over 20 mixed columns (6 integer, 5 number, 5 string, 3 enum,
   1 boolean; 5 nullable), expressed once in keelwork and once as a Pandera
   ``DataFrameSchema``, validates the same 1,000,000 in-memory rows. Exactly 5% of them
   (chosen under a fixed seed) break one to three rules each. Both validators run lazily
   (every failure is collected), and the script asserts that each flags exactly the planted
   rows. keelwork gets the Polars frame, Pandera the same frame converted once to pandas with
   pyarrow-backed columns (``to_pandas(use_pyarrow_extension_array=True)``); the conversion is
   not timed. After one warm-up each, the two run interleaved, the first rotating every round.
   A side run (skip it with --no-default-pandas) times Pandera on pandas 3's default
   conversion, ``df.to_pandas()``, and checks that each row it misses has a known cause.
B. Row path. ``Contract.validate(record)`` on one 10-field record against
   ``Model.model_validate(record)`` of a pydantic v2 model with the same constraints,
   interleaved in short rounds, each call timed on its own.

    python bench/contracts.py [--rows 1000000] [--repeat 5] [--row-calls 50000] [--quick]
    python bench/contracts.py --polars-threads 1    # keelwork on one Polars thread

Results are printed as tables and written to bench/results/contracts.json
(``contracts-quick.json`` with --quick).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from _common import cpu_model, git_state
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SEED = 20261122
INVALID_SHARE = 0.05
NULL_SHARE = 0.10  # of each nullable column's valid values
COLUMNAR_TARGET = 3.0  # Pandera time / keelwork time
COLUMNAR_STRETCH = 5.0
ROW_TARGET_US = 50.0  # keelwork row path p50

console = Console(width=None if sys.stdout.isatty() else 120)


class BenchError(RuntimeError):
    """A check failed: the figures would not mean what they say."""


# --- the contract, in keelwork ----------------------------------------------------------------
# Patterns are anchored (`^...$`): keelwork's `pattern` is a regex search, Pandera's
# `str_matches` a match anchored at the start only.

SKU = r"^[A-Z]{3}-[0-9]{4}$"
EMAIL = r"^[a-z0-9._]+@[a-z0-9-]+\.(com|org|net)$"
POSTCODE = r"^[0-9]{5}$"
STATUS = ["active", "inactive", "pending", "closed"]
COUNTRY = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "JP", "BR", "IN", "CA"]
TIER = ["gold", "silver", "bronze"]

KW_FIELDS: dict[str, dict[str, Any]] = {
    # integers
    "customer_id": {"type": "integer", "min": 1, "max": 10_000_000},
    "age": {"type": "integer", "min": 18, "max": 120},
    "quantity": {"type": "integer", "min": 1, "max": 1_000},
    "rating": {"type": "integer", "min": 1, "max": 5, "nullable": True},
    "year": {"type": "integer", "min": 1900, "max": 2100},
    "visits": {"type": "integer", "min": 0, "max": 100_000, "nullable": True},
    # numbers
    "price": {"type": "number", "min": 0, "max": 100_000},
    "discount": {"type": "number", "min": 0, "max": 1},
    "temperature": {"type": "number", "min": -50, "max": 60, "nullable": True},
    "weight_kg": {"type": "number", "min": 0.1, "max": 500},
    "latitude": {"type": "number", "min": -90, "max": 90},
    # strings
    "sku": {"type": "string", "pattern": SKU},
    "email": {"type": "string", "pattern": EMAIL, "max_length": 40},
    "name": {"type": "string", "min_length": 1, "max_length": 30},
    "postcode": {"type": "string", "pattern": POSTCODE},
    "note": {"type": "string", "max_length": 50, "nullable": True},
    # enums
    "status": {"type": "enum", "values": STATUS},
    "country": {"type": "enum", "values": COUNTRY},
    "tier": {"type": "enum", "values": TIER, "nullable": True},
    # boolean
    "opted_in": {"type": "boolean"},
}


def keelwork_contract() -> Any:
    from keelwork.contract import Contract, ContractSpec

    return Contract(ContractSpec.model_validate({"fields": KW_FIELDS}))


# --- the same contract, in Pandera ------------------------------------------------------------


def pandera_schema() -> Any:
    """Written out by hand, as a Pandera user would; the agreement check holds it to the above."""
    import pandas as pd
    import pandera.pandas as pa
    import pyarrow

    i64 = pd.ArrowDtype(pyarrow.int64())
    f64 = pd.ArrowDtype(pyarrow.float64())
    txt = pd.ArrowDtype(pyarrow.large_string())
    boolean = pd.ArrowDtype(pyarrow.bool_())
    C, rng, length, match, isin = (
        pa.Column,
        pa.Check.in_range,
        pa.Check.str_length,
        pa.Check.str_matches,
        pa.Check.isin,
    )
    return pa.DataFrameSchema(
        {
            "customer_id": C(i64, rng(1, 10_000_000), nullable=False),
            "age": C(i64, rng(18, 120), nullable=False),
            "quantity": C(i64, rng(1, 1_000), nullable=False),
            "rating": C(i64, rng(1, 5), nullable=True),
            "year": C(i64, rng(1900, 2100), nullable=False),
            "visits": C(i64, rng(0, 100_000), nullable=True),
            "price": C(f64, rng(0, 100_000), nullable=False),
            "discount": C(f64, rng(0, 1), nullable=False),
            "temperature": C(f64, rng(-50, 60), nullable=True),
            "weight_kg": C(f64, rng(0.1, 500), nullable=False),
            "latitude": C(f64, rng(-90, 90), nullable=False),
            "sku": C(txt, match(SKU), nullable=False),
            "email": C(txt, [match(EMAIL), length(max_value=40)], nullable=False),
            "name": C(txt, length(1, 30), nullable=False),
            "postcode": C(txt, match(POSTCODE), nullable=False),
            "note": C(txt, length(max_value=50), nullable=True),
            "status": C(txt, isin(STATUS), nullable=False),
            "country": C(txt, isin(COUNTRY), nullable=False),
            "tier": C(txt, isin(TIER), nullable=True),
            "opted_in": C(boolean, nullable=False),
        },
        strict=True,  # keelwork rejects unknown fields by default
    )


# --- the data ---------------------------------------------------------------------------------

FIRST = ["ana", "ben", "chloe", "dmitri", "eve", "francois", "grace", "hiro", "ines", "jose"]
LAST = ["smith", "garcia", "muller", "okafor", "tanaka", "ivanova", "nguyen", "larsen"]
DOMAIN = ["example", "mail", "corp-net", "post"]
NAMES = ["Chloé", "José", "Zoë", "Renée", "Óscar", "Ana", "Ben", "Grace", "Hiro", "Mohammed"]
SURNAMES = ["García", "Müller", "Jørgensen", "O'Brien", "Okafor", "Tanaka", "Nguyen", "Smith"]
NOTES = [
    "",
    "call before delivery",
    "leave at the door",
    "fragile: glass inside",
    "gift wrap, no invoice in the box",
    "deliver between 9 and 12; ring twice at the gate",
]
# How each column can be broken. Nullable columns cannot be broken by a null.
CORRUPTIONS: dict[str, tuple[str, ...]] = {
    "int": ("above", "below", "null"),
    "int?": ("above", "below"),
    "num": ("above", "below", "nan", "inf", "null"),
    "num?": ("above", "below", "nan", "inf"),
    "sku": ("pattern_lowercase", "pattern_extra_digit", "pattern_trailing_newline", "null"),
    "email": ("pattern_no_at", "pattern_tld", "too_long", "too_long_and_pattern", "null"),
    "name": ("too_long", "empty", "null"),
    "postcode": ("pattern_short", "pattern_letter", "null"),
    "note": ("too_long",),
    "enum": ("not_in_enum", "wrong_case", "null"),
    "enum?": ("not_in_enum", "wrong_case"),
    "bool": ("null",),
}


def _family(name: str) -> str:
    fs = KW_FIELDS[name]
    opt = "?" if fs.get("nullable") else ""
    t = fs["type"]
    if t == "integer":
        return "int" + opt
    if t == "number":
        return "num" + opt
    if t == "enum":
        return "enum" + opt
    if t == "boolean":
        return "bool"
    return name  # each string column has its own ways to break


def _pick(rng: np.random.Generator, options: Sequence[str], n: int) -> Any:
    import polars as pl

    return pl.Series(np.asarray(options, dtype=object)[rng.integers(len(options), size=n)])


def _valid_column(name: str, n: int, rng: np.random.Generator) -> pl.Series:
    import polars as pl

    fs = KW_FIELDS[name]
    t = fs["type"]
    if t == "integer":
        return pl.Series(name, rng.integers(fs["min"], fs["max"] + 1, n), dtype=pl.Int64)
    if t == "number":
        return pl.Series(name, rng.uniform(fs["min"], fs["max"], n), dtype=pl.Float64)
    if t == "enum":
        return _pick(rng, fs["values"], n).alias(name).cast(pl.String)
    if t == "boolean":
        return pl.Series(name, rng.random(n) < 0.5, dtype=pl.Boolean)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), dtype=object)
    if name == "sku":
        parts = [pl.Series(letters[rng.integers(26, size=n)]) for _ in range(3)]
        digits = pl.Series(rng.integers(0, 10_000, n)).cast(pl.String).str.zfill(4)
        frame = pl.DataFrame({"a": parts[0], "b": parts[1], "c": parts[2], "d": digits})
        expr = pl.concat_str([pl.col("a"), pl.col("b"), pl.col("c"), pl.lit("-"), pl.col("d")])
    elif name == "email":
        frame = pl.DataFrame(
            {
                "f": _pick(rng, FIRST, n),
                "l": _pick(rng, LAST, n),
                "k": pl.Series(rng.integers(0, 100_000, n)).cast(pl.String),
                "d": _pick(rng, DOMAIN, n),
                "t": _pick(rng, ["com", "org", "net"], n),
            }
        )
        parts = ["f", ".", "l", "k", "@", "d", ".", "t"]
        expr = pl.concat_str([pl.lit(p) if p in ".@" else pl.col(p) for p in parts])
    elif name == "name":
        frame = pl.DataFrame({"f": _pick(rng, NAMES, n), "l": _pick(rng, SURNAMES, n)})
        expr = pl.concat_str([pl.col("f"), pl.lit(" "), pl.col("l")])
    elif name == "postcode":
        return pl.Series(name, rng.integers(0, 100_000, n)).cast(pl.String).str.zfill(5)
    else:  # note
        return _pick(rng, NOTES, n).alias(name).cast(pl.String)
    return frame.select(expr.alias(name)).to_series()


def _broken_values(
    name: str, kind: str, current: pl.Series, rng: np.random.Generator
) -> pl.Series | None:
    """Values for ``current``'s rows that break ``name``'s contract in the way ``kind`` says."""
    import polars as pl

    n = len(current)
    fs = KW_FIELDS[name]
    if kind == "null":
        return None
    if kind == "nan":
        return pl.Series([float("nan")] * n, dtype=pl.Float64)
    if kind == "inf":
        return pl.Series(rng.choice([-np.inf, np.inf], n), dtype=pl.Float64)
    if kind in ("above", "below"):
        span = fs["max"] - fs["min"]
        if fs["type"] == "integer":
            step = rng.integers(1, max(2, span // 10) + 1, n)
            out = fs["max"] + step if kind == "above" else fs["min"] - step
            return pl.Series(out, dtype=pl.Int64)
        step = rng.uniform(1e-3, max(1.0, span / 10), n)
        out = fs["max"] + step if kind == "above" else fs["min"] - step
        return pl.Series(out, dtype=pl.Float64)
    s = current.fill_null("x")  # a nullable column's null can be replaced by a broken value
    if kind == "pattern_lowercase":
        return s.str.to_lowercase()
    if kind == "pattern_extra_digit":
        return s + "7"
    if kind == "pattern_trailing_newline":
        # Python's `$` matches before a final newline (so does keelwork's row path, which uses
        # `re`); RE2 (pyarrow) and Rust (Polars, keelwork's columnar path) do not
        return s + "\n"
    if kind == "pattern_no_at":
        return s.str.replace("@", " at ", literal=True)
    if kind == "pattern_tld":
        return s.str.replace(r"\.[a-z]+$", ".io")
    if kind == "too_long":
        limit = fs["max_length"]
        extra = rng.integers(1, 20, n)
        if name == "email":  # still matches the pattern: only the length is wrong
            return pl.Series(["x" * (limit + int(e)) + "@ex.com" for e in extra])
        return pl.Series(["é" * (limit + int(e)) for e in extra])  # characters, not bytes
    if kind == "too_long_and_pattern":  # two rules broken in one cell
        return pl.Series(["X" * (fs["max_length"] + int(e)) for e in rng.integers(1, 20, n)])
    if kind == "empty":
        return pl.Series([""] * n)
    if kind == "pattern_short":
        return s.str.slice(0, 4)
    if kind == "pattern_letter":
        return "A" + s.str.slice(1)
    if kind == "not_in_enum":
        return _pick(rng, ["unknown", "n/a", "other"], n).cast(pl.String)
    if kind == "wrong_case":
        return s.str.to_uppercase() if name != "country" else s.str.to_lowercase()
    raise AssertionError(kind)


def make_frame(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray, dict[str, Any]]:
    """The rows, the sorted indices of the invalid ones, and what was broken where."""
    import polars as pl

    rng = np.random.default_rng(seed)
    cols = {name: _valid_column(name, n, rng) for name in KW_FIELDS}
    for name, fs in KW_FIELDS.items():
        if fs.get("nullable"):
            cols[name] = cols[name].scatter(np.flatnonzero(rng.random(n) < NULL_SHARE), None)
    m = round(n * INVALID_SHARE)
    bad_rows = np.sort(rng.choice(n, size=m, replace=False))
    how_many = rng.integers(1, 4, size=m)  # 1 to 3 broken columns per invalid row
    rank = rng.random((m, len(KW_FIELDS))).argsort(axis=1).argsort(axis=1)
    broken = rank < how_many[:, None]
    planted: dict[str, int] = {}
    for j, name in enumerate(KW_FIELDS):
        rows = bad_rows[broken[:, j]]
        kinds = CORRUPTIONS[_family(name)]
        choice = rng.integers(len(kinds), size=len(rows))
        for k, kind in enumerate(kinds):
            at = rows[choice == k]
            if not len(at):
                continue
            values = _broken_values(name, kind, cols[name].gather(at), rng)
            cols[name] = cols[name].scatter(at, values)
            planted[f"{name}:{kind}"] = len(at)
    df = pl.DataFrame(list(cols.values()))
    info = {
        "rows": n,
        "columns": len(KW_FIELDS),
        "invalid_rows": m,
        "broken_cells": int(broken.sum()),
        "broken_columns_per_invalid_row": {
            str(k): int((how_many == k).sum()) for k in sorted(set(how_many.tolist()))
        },
        "corruptions": planted,
        "null_share_in_nullable_columns": NULL_SHARE,
        "seed": seed,
    }
    return df, bad_rows, info


# --- A. columnar ------------------------------------------------------------------------------


def run_keelwork(contract: Any, df: pl.DataFrame) -> Any:
    return contract.columnar.validate_frame(df)


def run_pandera(schema: Any, pdf: pd.DataFrame) -> pd.DataFrame:
    from pandera.errors import SchemaErrors

    try:
        schema.validate(pdf, lazy=True)
    except SchemaErrors as exc:
        return exc.failure_cases
    import pandas as pd

    return pd.DataFrame({"index": pd.Series([], dtype="int64")})


def agreement(
    contract: Any, schema: Any, df: pl.DataFrame, pdf: pd.DataFrame, planted: np.ndarray
) -> dict[str, Any]:
    """Both validators must flag exactly the planted rows; otherwise the timing is void."""
    res = run_keelwork(contract, df)
    kw_rows = (~res.valid).arg_true().to_numpy()
    fc = run_pandera(schema, pdf)
    pa_rows = np.unique(fc["index"].dropna().to_numpy(dtype=np.int64))
    kw_set, pa_set, want = set(kw_rows.tolist()), set(pa_rows.tolist()), set(planted.tolist())
    out = {
        "planted_invalid_rows": len(want),
        "keelwork_flagged_rows": len(kw_set),
        "pandera_flagged_rows": len(pa_set),
        "keelwork_failure_records": res.violations.height,
        "pandera_failure_records": len(fc),
        "keelwork_records_by_rule": dict(
            sorted(res.violations["rule"].value_counts().iter_rows(), key=lambda r: -r[1])
        ),
        "pandera_records_by_check": {
            str(k): int(v) for k, v in fc["check"].astype(str).value_counts().items()
        },
        "pandera_rows_without_index": int(fc["index"].isna().sum()),
        "only_keelwork": sorted(kw_set - pa_set)[:20],
        "only_pandera": sorted(pa_set - kw_set)[:20],
        "keelwork_missed_planted": sorted(want - kw_set)[:20],
        "keelwork_flagged_unplanted": sorted(kw_set - want)[:20],
    }
    if kw_set != pa_set:
        for label, rows in (("keelwork only", kw_set - pa_set), ("pandera only", pa_set - kw_set)):
            for r in sorted(rows)[:5]:
                console.print(f"[red]{label}[/] row {r}: {df.row(r, named=True)}")
        raise BenchError(
            f"keelwork flags {len(kw_set)} rows, Pandera {len(pa_set)}; "
            f"{len(kw_set - pa_set)} only by keelwork, {len(pa_set - kw_set)} only by Pandera"
        )
    if kw_set != want:
        raise BenchError(
            f"both flag {len(kw_set)} rows but {len(want)} were planted: the data generator "
            f"is wrong ({len(want - kw_set)} planted rows not flagged)"
        )
    return out


def default_pandas_agreement(
    contract: Any, schema: Any, df: pl.DataFrame, pdf: pd.DataFrame
) -> dict[str, Any]:
    """Pandera on pandas 3's default conversion: report where it parts from keelwork, and why.

    ``df.to_pandas()`` gives strings the default ``str`` dtype (pyarrow storage, NaN as the
    missing value), nullable integers become float64 and nullable booleans object. Two
    differences follow, and every disagreement must be one of them:

    - ``nan_is_missing``: a NaN in a nullable number column is a missing value to pandas, so
      Pandera passes it; keelwork reports ``finite``.
    - ``dollar_before_newline``: with a pattern ending in ``$`` and data holding newlines,
      pandas' ``str`` dtype falls back to Python's ``re``, whose ``$`` also matches before a
      trailing newline, so ``"ABC-1234\\n"`` passes; RE2 (pyarrow) and Rust (Polars) refuse it.
    """
    import polars as pl

    res = run_keelwork(contract, df)
    fc = run_pandera(schema, pdf)
    kw_set = set((~res.valid).arg_true().to_list())
    pa_set = set(np.unique(fc["index"].dropna().to_numpy(dtype=np.int64)).tolist())
    nullable = [f"$.{n}" for n, fs in KW_FIELDS.items() if fs.get("nullable")]
    rule, got = pl.col("rule"), pl.col("got")
    v = res.violations.filter(pl.col("row").is_in(sorted(kw_set - pa_set))).with_columns(
        pl.when((rule == "finite") & pl.col("path").is_in(nullable) & (got == "NaN"))
        .then(pl.lit("nan_is_missing"))
        .when((rule == "pattern") & got.str.ends_with("\n"))
        .then(pl.lit("dollar_before_newline"))
        .otherwise(pl.lit("unexplained"))
        .alias("cause")
    )
    causes = dict(v.group_by("cause").len().iter_rows())
    if causes.get("unexplained") or pa_set - kw_set:
        raise BenchError(
            f"Pandera on default pandas dtypes parts from keelwork in an unexpected way: "
            f"{causes}, {len(pa_set - kw_set)} rows only Pandera flags"
        )
    return {
        "pandas_dtypes": sorted({str(x) for x in pdf.dtypes}),
        "keelwork_flagged_rows": len(kw_set),
        "pandera_flagged_rows": len(pa_set),
        "pandera_failure_records": len(fc),
        "rows_only_keelwork_flags": len(kw_set - pa_set),
        "rows_only_pandera_flags": len(pa_set - kw_set),
        "missed_cells_by_cause": causes,
    }


def _stats(seconds: list[float]) -> dict[str, float]:
    return {
        "min_s": min(seconds),
        "median_s": statistics.median(seconds),
        "max_s": max(seconds),
        "mean_s": statistics.fmean(seconds),
    }


def time_columnar(runs: dict[str, Callable[[], Any]], repeat: int) -> dict[str, Any]:
    """One warm-up each, then ``repeat`` rounds; the order rotates every round."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    warmup: dict[str, float] = {}
    order = list(runs)
    for rnd in range(repeat + 1):  # round 0 is the warm-up
        for name in order:
            gc.collect()
            t0 = time.perf_counter()
            out = runs[name]()
            elapsed = time.perf_counter() - t0
            del out
            if rnd == 0:
                warmup[name] = elapsed
            else:
                times[name].append(elapsed)
            console.print(
                f"  round {rnd}{' (warm-up)' if rnd == 0 else ''}: {name:<15} {elapsed:.3f} s"
            )
        order = order[1:] + order[:1]  # no tool always runs first
    out: dict[str, Any] = {"warmup_s": warmup, "seconds": times}
    for name in runs:
        out[name] = _stats(times[name])
    kw = times["keelwork"]
    for name in runs:
        if name == "keelwork":
            continue
        out[f"{name}_ratio_of_medians"] = statistics.median(times[name]) / statistics.median(kw)
        out[f"{name}_ratio_of_mins"] = min(times[name]) / min(kw)
        out[f"{name}_per_round_ratios"] = [p / k for p, k in zip(times[name], kw, strict=True)]
    return out


# --- B. row path -----------------------------------------------------------------------------

ROW_FIELDS: dict[str, dict[str, Any]] = {
    "user_id": {"type": "integer", "min": 1, "max": 10_000_000},
    "age": {"type": "integer", "min": 18, "max": 120},
    "score": {"type": "number", "min": 0, "max": 1},
    "amount": {"type": "number", "min": 0, "max": 1_000_000, "nullable": True},
    "sku": {"type": "string", "pattern": SKU},
    "email": {"type": "string", "pattern": EMAIL, "max_length": 40},
    "name": {"type": "string", "min_length": 1, "max_length": 30},
    "status": {"type": "enum", "values": STATUS},
    "opted_in": {"type": "boolean"},
    "created_at": {"type": "datetime"},
}
ROW_RECORD: dict[str, Any] = {
    "user_id": 4_815_162,
    "age": 42,
    "score": 0.73,
    "amount": None,
    "sku": "KWB-2048",
    "email": "grace.hopper1906@example.org",
    "name": "Grace Hopper",
    "status": "active",
    "opted_in": True,
    "created_at": "2026-11-22T08:26:00Z",
}
ROW_BAD: dict[str, Any] = {
    **ROW_RECORD,
    "age": 12,  # below the minimum
    "sku": "kwb-2048",  # pattern
    "status": "archived",  # not in the enum
}


def pydantic_model() -> Any:
    """The row contract as a pydantic v2 model: strict types as keelwork's (no "1" for 1,
    no True for 1), unknown fields rejected, NaN/inf refused, anchored patterns."""
    from pydantic import BaseModel, ConfigDict, Field

    class Row(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")

        user_id: Annotated[int, Field(ge=1, le=10_000_000)]
        age: Annotated[int, Field(ge=18, le=120)]
        score: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
        amount: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)] | None
        sku: Annotated[str, Field(pattern=SKU)]
        email: Annotated[str, Field(pattern=EMAIL, max_length=40)]
        name: Annotated[str, Field(min_length=1, max_length=30)]
        status: Literal["active", "inactive", "pending", "closed"]
        opted_in: bool
        # strict mode takes only datetime objects from Python; the record holds ISO text
        created_at: Annotated[datetime, Field(strict=False)]

    return Row


def time_rows(calls: int, warmup: int, round_size: int) -> dict[str, Any]:
    from pydantic import ValidationError

    from keelwork.contract import Contract, ContractSpec

    contract = Contract(ContractSpec.model_validate({"fields": ROW_FIELDS}))
    model = pydantic_model()

    # both accept the good record and find the same three faults in the bad one
    clean, errors = contract.validate(ROW_RECORD)
    if errors or clean != ROW_RECORD:
        raise BenchError(f"keelwork rejects the row record: {errors}")
    model.model_validate(ROW_RECORD)
    _, kw_bad = contract.validate(ROW_BAD)
    try:
        model.model_validate(ROW_BAD)
        raise BenchError("pydantic accepts the bad row record")
    except ValidationError as exc:
        pd_bad = sorted(str(e["loc"][0]) for e in exc.errors())
    if sorted(v.path.removeprefix("$.") for v in kw_bad) != pd_bad:
        raise BenchError(f"row paths disagree: keelwork {kw_bad}, pydantic {pd_bad}")

    def kw_valid() -> Any:
        return contract.validate(ROW_RECORD)

    def pd_valid() -> Any:
        return model.model_validate(ROW_RECORD)

    def kw_invalid() -> Any:
        return contract.validate(ROW_BAD)

    def pd_invalid() -> Any:
        try:
            return model.model_validate(ROW_BAD)
        except ValidationError as exc:
            return exc.errors()  # the list a caller would report

    cases = {
        "valid": {"keelwork": kw_valid, "pydantic": pd_valid},
        "invalid (3 faults)": {"keelwork": kw_invalid, "pydantic": pd_invalid},
    }
    clock = time.perf_counter_ns
    out: dict[str, Any] = {}
    for case, fns in cases.items():
        n = calls if case == "valid" else max(round_size, calls // 5)
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        samples: dict[str, list[int]] = {k: [] for k in fns}
        order = list(fns)
        done = 0
        while done < n:
            k = min(round_size, n - done)
            for name in order:
                fn, bucket = fns[name], samples[name]
                for _ in range(k):
                    t0 = clock()
                    fn()
                    bucket.append(clock() - t0)
            order.reverse()
            done += k
        out[case] = {name: _summary_us(s) for name, s in samples.items()}
    return out


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    k = (len(sorted_values) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def _summary_us(samples_ns: list[int]) -> dict[str, float]:
    us = sorted(s / 1000 for s in samples_ns)
    return {
        "n": len(us),
        "p50_us": _percentile(us, 50),
        "p90_us": _percentile(us, 90),
        "p99_us": _percentile(us, 99),
        "mean_us": statistics.fmean(us),
    }


# --- report -----------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]missed[/]"


def print_report(res: dict[str, Any]) -> None:
    d, a, c, dv = res["data"], res["agreement"], res["columnar"], res["pandas_default_variant"]
    console.print(
        f"\n[bold]A. Columnar[/]: {d['rows']:,} rows x {d['columns']} columns, "
        f"{d['invalid_rows']:,} invalid ({d['broken_cells']:,} broken cells); "
        f"{res['args']['repeat']} rotating rounds after one warm-up each"
    )
    t = Table(title="Lazy validation of the whole frame (s)")
    for col in ("validator", "min", "median", "max", "÷ keelwork", "rows", "records"):
        t.add_column(col, justify="left" if col == "validator" else "right")
    labels = {
        "keelwork": f"keelwork validate_frame (Polars, {res['versions']['polars_threads']} thr.)",
        "pandera": "Pandera validate(lazy=True), arrow dtypes",
        "pandera_default": "Pandera, pandas 3 default dtypes (side run)",
    }
    found = {
        "keelwork": (a["keelwork_flagged_rows"], a["keelwork_failure_records"]),
        "pandera": (a["pandera_flagged_rows"], a["pandera_failure_records"]),
    }
    if dv is not None:
        found["pandera_default"] = (dv["pandera_flagged_rows"], dv["pandera_failure_records"])
    for name, label in labels.items():
        if name not in c:
            continue
        s = c[name]
        t.add_row(
            label,
            f"{s['min_s']:.3f}",
            f"{s['median_s']:.3f}",
            f"{s['max_s']:.3f}",
            "1" if name == "keelwork" else f"{c[f'{name}_ratio_of_medians']:.2f}x",
            f"{found[name][0]:,}",
            f"{found[name][1]:,}",
        )
    console.print(t)
    ratio = c["pandera_ratio_of_medians"]
    console.print(
        f"Pandera / keelwork: [bold]{ratio:.2f}x[/] (medians), "
        f"{c['pandera_ratio_of_mins']:.2f}x (mins); per round "
        f"{', '.join(f'{r:.2f}' for r in c['pandera_per_round_ratios'])}. "
        f"Target ≥ {COLUMNAR_TARGET:g}x: {_verdict(ratio >= COLUMNAR_TARGET)}; "
        f"stretch ≥ {COLUMNAR_STRETCH:g}x: {_verdict(ratio >= COLUMNAR_STRETCH)}. "
        f"Same {a['keelwork_flagged_rows']:,} rows flagged by both and planted: asserted."
    )
    if dv is not None:
        console.print(
            f"Side run on pandas 3 default dtypes: Pandera misses "
            f"{dv['rows_only_keelwork_flags']:,} planted rows; cells by cause "
            f"{dv['missed_cells_by_cause']} (explained in default_pandas_agreement)."
        )
    rows = res["rows"]
    t = Table(title=f"B. Row path: one 10-field record, {res['args']['row_calls']:,} calls (µs)")
    for col in ("record", "validator", "p50", "p90", "p99", "mean"):
        t.add_column(col, justify="left" if col in ("record", "validator") else "right")
    for case, by in rows.items():
        for name, s in by.items():
            label = (
                "keelwork Contract.validate" if name == "keelwork" else "pydantic model_validate"
            )
            t.add_row(
                f"{case} ({s['n']:,})",
                label,
                f"{s['p50_us']:.1f}",
                f"{s['p90_us']:.1f}",
                f"{s['p99_us']:.1f}",
                f"{s['mean_us']:.1f}",
            )
    console.print(t)
    p50 = rows["valid"]["keelwork"]["p50_us"]
    console.print(
        f"keelwork row p50 {p50:.1f} µs (target ≤ {ROW_TARGET_US:g} µs: "
        f"{_verdict(p50 <= ROW_TARGET_US)})"
    )


def _versions() -> dict[str, Any]:
    import pandas
    import pandera
    import polars
    import pyarrow
    import pydantic

    import keelwork

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "keelwork": keelwork.__version__,
        "polars": polars.__version__,
        "polars_threads": polars.thread_pool_size(),
        "pandas": pandas.__version__,
        "pandera": pandera.__version__,
        "pyarrow": pyarrow.__version__,
        "numpy": np.__version__,
        "pydantic": pydantic.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5, help="timed rounds per validator")
    p.add_argument("--row-calls", type=int, default=50_000)
    p.add_argument("--row-warmup", type=int, default=2_000)
    p.add_argument("--round-size", type=int, default=1_000, help="row calls per round")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--polars-threads", type=int, help="POLARS_MAX_THREADS for keelwork")
    p.add_argument(
        "--no-default-pandas",
        action="store_true",
        help="skip the side run of Pandera on pandas 3's default dtypes (df.to_pandas())",
    )
    p.add_argument("--quick", action="store_true", help="100k rows, 2 rounds, 5k row calls")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.repeat, args.row_calls, args.row_warmup = 100_000, 2, 5_000, 500
    if args.polars_threads:
        os.environ["POLARS_MAX_THREADS"] = str(args.polars_threads)  # before polars loads
    out_path = args.out or RESULTS / ("contracts-quick.json" if args.quick else "contracts.json")

    versions = _versions()
    started = datetime.now(UTC)
    console.print(
        f"[bold]Contract validation[/] — {args.rows:,} rows, polars {versions['polars']} "
        f"({versions['polars_threads']} threads), pandas {versions['pandas']}, "
        f"pandera {versions['pandera']}, pyarrow {versions['pyarrow']}"
    )
    t0 = time.perf_counter()
    df, planted, data = make_frame(args.rows, args.seed)
    t1 = time.perf_counter()
    # The only conversion: every column to a pyarrow-backed pandas dtype (strings as
    # large_string[pyarrow]; integer and boolean columns keep their nulls). Not timed.
    pdf = df.to_pandas(use_pyarrow_extension_array=True)
    t2 = time.perf_counter()
    console.print(
        f"data: {t1 - t0:.1f} s to generate, {t2 - t1:.2f} s to convert to pandas (not timed); "
        f"pandas dtypes: {escape(str(sorted({str(x) for x in pdf.dtypes})))}"
    )
    contract, schema = keelwork_contract(), pandera_schema()
    agree = agreement(contract, schema, df, pdf, planted)
    console.print(
        f"agreement: both flag the {agree['keelwork_flagged_rows']:,} planted rows; failure "
        f"records keelwork {agree['keelwork_failure_records']:,}, "
        f"Pandera {agree['pandera_failure_records']:,}"
    )
    runs: dict[str, Callable[[], Any]] = {
        "keelwork": partial(run_keelwork, contract, df),
        "pandera": partial(run_pandera, schema, pdf),
    }
    default: dict[str, Any] | None = None
    if not args.no_default_pandas:
        # pandas 3's own defaults: `str` strings, float64 for nullable integers. The dtypes
        # differ from the arrow ones, so this schema leaves dtypes unchecked.
        pdf_default = df.to_pandas()
        schema_default = schema.update_columns({n: {"dtype": None} for n in schema.columns})
        default = default_pandas_agreement(contract, schema_default, df, pdf_default)
        console.print(f"pandas-default variant: {escape(str(default))}")
        runs["pandera_default"] = partial(run_pandera, schema_default, pdf_default)
        del pdf_default
    columnar = time_columnar(runs, args.repeat)
    del df, pdf, runs
    gc.collect()
    console.print("row path ...")
    rows = time_rows(args.row_calls, args.row_warmup, args.round_size)
    ratio = columnar["pandera_ratio_of_medians"]
    res = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "versions": versions,
        "git": git_state("src", "bench"),
        "pandas_conversion": "polars DataFrame.to_pandas(use_pyarrow_extension_array=True)",
        "data": data,
        "agreement": agree,
        "pandas_default_variant": default,
        "columnar": columnar,
        "rows": rows,
        "targets": {
            "columnar_ratio": COLUMNAR_TARGET,
            "columnar_ratio_stretch": COLUMNAR_STRETCH,
            "columnar_met": ratio >= COLUMNAR_TARGET,
            "columnar_stretch_met": ratio >= COLUMNAR_STRETCH,
            "row_p50_us": ROW_TARGET_US,
            "row_met": rows["valid"]["keelwork"]["p50_us"] <= ROW_TARGET_US,
        },
    }
    print_report(res)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
    shown_path = out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path
    console.print(f"written to {shown_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
