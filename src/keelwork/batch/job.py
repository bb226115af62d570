"""A batch job: validate a whole file at once, quarantine what breaks the contract, score the
rest through the pipeline with bounded concurrency, and write the results beside the input.

Resumable: every row's outcome is committed to the journal (or the quarantine) under the job's
id and row number before it counts as done, so a rerun after a crash picks up exactly the rows
that have no record yet. Only rows that were inside the model at the moment of a kill -9 (at
most ``concurrency``) are scored again; a row whose result was recorded never is.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from keelwork.batch.readers import Table, read_table
from keelwork.errors import ContractError, Violation
from keelwork.pipeline import Call, Pipeline
from keelwork.security.keys import LOCAL
from keelwork.service import Service

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class Summary:
    job: str
    rows_in: int = 0
    valid: int = 0
    rejected: int = 0
    rejected_by_rule: Counter[str] = field(default_factory=Counter)
    scored: int = 0
    fallback: int = 0
    failed: int = 0
    already_done: int = 0
    scored_now: int = 0
    coerced: dict[str, int] = field(default_factory=dict)
    output: Path | None = None
    rejected_output: Path | None = None


def job_id(svc: Service, src: Path) -> str:
    """The same file through the same contract is the same job, so a rerun resumes it."""
    st = src.stat()
    ident = f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}|{svc.name}|{svc.input_contract.version}"
    return hashlib.sha256(ident.encode()).hexdigest()[:24]


def sidecar(out: Path) -> Path:
    return out.with_name(out.stem + ".rejected" + out.suffix)


class BatchJob:
    def __init__(
        self,
        svc: Service,
        src: Path,
        out: Path,
        *,
        fmt: str | None = None,
        concurrency: int = 8,
        strict_columns: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.svc = svc
        self.src = src
        self.out = out
        self.fmt = fmt
        self.concurrency = concurrency
        # columns the contract does not name (ids, labels) ride along to the output unless
        # the caller wants them treated as unknown fields
        self.strict_columns = strict_columns
        self.id = job_id(svc, src)

    async def run(self, progress: Progress | None = None) -> Summary:
        svc = self.svc
        table = await asyncio.to_thread(read_table, self.src, self.fmt)
        summary = Summary(self.id, rows_in=table.n_rows)
        valid, rejected, clean = await asyncio.to_thread(self._validate, table, summary)
        summary.valid = len(valid)
        summary.rejected = len(rejected)
        for errs in rejected.values():
            summary.rejected_by_rule.update({e.rule for e in errs})
        done_j, done_q = await asyncio.to_thread(svc.store.batch_done, self.id)
        journal, pipeline = svc.committed_scoring(max(1024, self.concurrency * 4))
        await journal.start()
        try:
            await self._quarantine(table, rejected, done_q, pipeline)
            pending = [i for i in valid if i not in done_j]
            summary.already_done = len(valid) - len(pending)
            await self._score(pending, table, clean, pipeline, progress)
            summary.scored_now = len(pending)
        finally:
            await journal.close()
        await asyncio.to_thread(self._write, table, summary)
        return summary

    # --- validation ---------------------------------------------------------------------

    def _validate(
        self, table: Table, summary: Summary
    ) -> tuple[list[int], dict[int, list[Violation]], Callable[[int], dict[str, Any]]]:
        columnar = self.svc.input_contract.columnar
        rejected: dict[int, list[Violation]] = dict(table.unreadable)
        declared = set(self.svc.spec.input.fields)
        if table.records is not None:
            idx = [i for i in range(table.n_rows) if i not in table.unreadable]
            records = [table.records[i] for i in idx]
            if not self.strict_columns:
                records = [
                    {k: v for k, v in r.items() if k in declared} if isinstance(r, dict) else r
                    for r in records
                ]
            res = columnar.validate_records(records)
        else:
            assert table.frame is not None
            idx = list(range(table.n_rows))
            frame = table.frame
            if not self.strict_columns:
                frame = frame.select([c for c in frame.columns if c in declared])
            res = columnar.validate_frame(frame, text_cells=table.text_cells)
        for r in res.violations.iter_rows(named=True):
            i = idx[r["row"]]
            if i in table.unreadable:
                continue
            rejected.setdefault(i, []).append(
                Violation(r["path"], r["rule"], r["got"], r["message"] or "")
            )
        summary.coerced = {f"{f}:{c}": n for (f, c), n in res.coerced.items()}
        valid = [
            idx[j] for j, ok in enumerate(res.valid.to_list()) if ok and idx[j] not in rejected
        ]
        position = {i: j for j, i in enumerate(idx)}
        nullable = {n for n, fs in self.svc.spec.input.fields.items() if fs.nullable}
        cleaned = res.clean

        def clean(i: int) -> dict[str, Any]:
            row = cleaned.row(position[i], named=True)
            return {k: v for k, v in row.items() if v is not None or k in nullable}

        return valid, rejected, clean

    def _raw(self, table: Table, i: int) -> Any:
        if table.records is not None:
            return table.records[i]
        assert table.frame is not None
        return table.frame.row(i, named=True)

    # --- quarantine and scoring -----------------------------------------------------------

    async def _quarantine(
        self, table: Table, rejected: dict[int, list[Violation]], done: set[int], pipeline: Pipeline
    ) -> None:
        jrows, qrows = [], []
        for i in sorted(rejected):
            if i in done:
                continue
            errs = rejected[i]
            call = Call(
                self.svc.name, principal=LOCAL, source="batch", batch_job=self.id, batch_row=i
            )
            if i in table.unreadable:
                call.body = table.raw.get(i, "").encode()
            else:
                call.record = self._raw(table, i)
            call.error = ContractError(
                f"row {i} broke {len(errs)} rule(s) of the contract", details=errs
            )
            j, q = pipeline.rows(call, "rejected")
            jrows.append(j)
            if q is not None:
                qrows.append(q)
            if len(jrows) >= 2000:
                await asyncio.to_thread(self.svc.store.write, jrows, qrows)
                jrows, qrows = [], []
        if jrows:
            await asyncio.to_thread(self.svc.store.write, jrows, qrows)

    async def _score(
        self,
        pending: list[int],
        table: Table,
        clean: Callable[[int], dict[str, Any]],
        pipeline: Pipeline,
        progress: Progress | None,
    ) -> None:
        todo: Iterator[int] = iter(pending)
        total, finished = len(pending), 0

        async def worker() -> None:
            nonlocal finished
            for i in todo:
                call = Call(
                    self.svc.name,
                    principal=LOCAL,
                    source="batch",
                    batch_job=self.id,
                    batch_row=i,
                    record=self._raw(table, i),
                )
                call.clean = clean(i)
                await pipeline.run(call)
                finished += 1
                if progress is not None:
                    progress(finished, total)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    # --- output ---------------------------------------------------------------------------

    def _write(self, table: Table, summary: Summary) -> None:
        results = self.svc.store.batch_results(self.id)
        violations = self.svc.store.batch_violations(self.id)
        out_fields = list(self.svc.spec.output.fields)
        taken = set(table.columns)
        names = {f: (f if f not in taken else f"out_{f}") for f in out_fields}
        good, bad = [], []
        for r in results:
            i = r["batch_row"]
            base = self._raw(table, i) if i not in table.unreadable else {}
            row = dict(base) if isinstance(base, dict) else {"_record": base}
            if r["status"] in ("ok", "fallback"):
                summary.scored += 1
                summary.fallback += r["status"] == "fallback"
                for f in out_fields:
                    row[names[f]] = (r["output"] or {}).get(f)
                row.update(
                    {
                        "_model": r["model"],
                        "_fallback": bool(r["fallback"]),
                        "_request_id": r["request_id"],
                        "_row": i,
                    }
                )
                good.append(row)
            else:
                if r["status"] != "rejected":
                    summary.failed += 1
                row.update(
                    {
                        "_status": r["status"],
                        "_error": r["error_code"],
                        "_violations": json.dumps(violations.get(i) or [], default=str),
                        "_raw": table.raw.get(i),
                        "_row": i,
                    }
                )
                bad.append(row)
        summary.output = self.out
        _write_rows(good, self.out, table.fmt)
        if bad:
            summary.rejected_output = sidecar(self.out)
            _write_rows(bad, summary.rejected_output, table.fmt)


def _write_rows(rows: list[dict[str, Any]], path: Path, fmt: str) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if fmt == "jsonl":
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    else:
        flat = [
            {
                k: (json.dumps(v, default=str) if isinstance(v, dict | list) else v)
                for k, v in row.items()
            }
            for row in rows
        ]
        frame = (
            pl.DataFrame(flat, infer_schema_length=None, strict=False) if flat else pl.DataFrame()
        )
        if fmt == "csv":
            frame.write_csv(tmp)
        else:
            frame.write_parquet(tmp)
    os.replace(tmp, path)
