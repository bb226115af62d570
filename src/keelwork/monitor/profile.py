"""Reference profiles of a data set: the baseline that drift monitoring compares against.

Columnar and single-pass per column (Polars): type, null rate, range, quantiles and a
histogram for numbers; top categories and text-length statistics for text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from keelwork.batch.readers import read_table

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_NUMERIC = (
    pl.Int8,
    pl.Int16,
    pl.Int32,
    pl.Int64,
    pl.UInt8,
    pl.UInt16,
    pl.UInt32,
    pl.UInt64,
    pl.Float32,
    pl.Float64,
)


def load_frame(path: Path) -> pl.DataFrame:
    """A typed frame of a file; CSV text columns that are all numbers become numbers."""
    table = read_table(path)
    if table.frame is not None:
        frame = table.frame
    else:
        records = [r for r in table.records or [] if isinstance(r, dict)]
        frame = pl.DataFrame(records, infer_schema_length=None, strict=False)
    if table.text_cells:
        casts = []
        for name in frame.columns:
            col = frame[name]
            for target in (pl.Int64, pl.Float64):
                cast = col.cast(target, strict=False)
                if cast.null_count() == col.null_count() and col.null_count() < len(col):
                    casts.append(cast.alias(name))
                    break
        if casts:
            frame = frame.with_columns(casts)
    return frame


def _numeric(col: pl.Series, bins: int) -> dict[str, Any]:
    values = col.drop_nulls().cast(pl.Float64)
    finite = values.filter(values.is_finite())
    out: dict[str, Any] = {"kind": "numeric"}
    if finite.is_empty():
        return out
    arr = finite.to_numpy()
    counts, edges = np.histogram(arr, bins=bins)
    out.update(
        min=float(arr.min()),
        max=float(arr.max()),
        mean=float(arr.mean()),
        std=float(arr.std()),
        quantiles={
            f"p{int(q * 100):02d}": float(v)
            for q, v in zip(QUANTILES, np.quantile(arr, QUANTILES), strict=True)
        },
        histogram={"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        non_finite=int(len(values) - len(finite)),
    )
    return out


def _text(col: pl.Series, top: int) -> dict[str, Any]:
    values = col.drop_nulls().cast(pl.String)
    out: dict[str, Any] = {"kind": "text", "distinct": int(values.n_unique())}
    if values.is_empty():
        return out
    counts = values.value_counts(sort=True).head(top)
    name = values.name
    out["top"] = [{"value": v, "count": int(c)} for v, c in counts.select(name, "count").rows()]
    lengths = values.str.len_chars().cast(pl.Float64).to_numpy()
    out["length"] = {
        "min": int(lengths.min()),
        "max": int(lengths.max()),
        "mean": float(lengths.mean()),
        **{
            f"p{int(q * 100):02d}": float(v)
            for q, v in zip(QUANTILES, np.quantile(lengths, QUANTILES), strict=True)
        },
    }
    return out


def profile_frame(
    frame: pl.DataFrame, *, bins: int = 20, top: int = 20, source: str = ""
) -> dict[str, Any]:
    """Profile every column of ``frame``."""
    n = frame.height
    columns: dict[str, Any] = {}
    for name in frame.columns:
        col = frame[name]
        nulls = col.null_count()
        entry: dict[str, Any] = {
            "type": str(col.dtype),
            "count": n - nulls,
            "null_rate": (nulls / n) if n else 0.0,
        }
        if any(col.dtype == t for t in _NUMERIC):
            entry.update(_numeric(col, bins))
        elif col.dtype == pl.Boolean:
            trues = int(col.drop_nulls().sum())
            entry.update(kind="boolean", true_rate=trues / max(1, n - nulls))
        elif col.dtype == pl.String:
            entry.update(_text(col, top))
        else:
            entry.update(kind="other")
        columns[name] = entry
    return {
        "source": source,
        "created_at": datetime.now(UTC).isoformat(),
        "rows": n,
        "columns": columns,
    }
