"""Batch scoring of files: bad rows quarantined (never lost), good rows scored once, hostile
files met with a clear error or a per-row rejection, and a killed job resumed."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import keelwork
from keelwork.batch.job import BatchJob, sidecar
from keelwork.batch.readers import InputError, read_table
from keelwork.replay import replay
from tests.conftest import DEMO


def run(svc: keelwork.Service, src: Path, out: Path, **kw: Any) -> Any:
    return asyncio.run(BatchJob(svc, src, out, **kw).run())


def write_csv(path: Path, rows: list[list[str]], header: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.mark.skipif(not (DEMO / "model.skops").exists(), reason="run `make model` first")
def test_banking77_with_corrupted_rows_quarantines_exactly_those_and_replays_once(
    tmp_path: Path, db_url: str
) -> None:
    with (DEMO / "data" / "test.csv").open(newline="", encoding="utf-8") as f:
        rows = [[r["text"], r["category"]] for r in csv.DictReader(f)][:600]
    corrupt = set(range(3, 600, 50))  # 2% of the rows
    for i in corrupt:
        rows[i][0] = ["   ", "x" * 2001, ""][i % 3]
    src = write_csv(tmp_path / "tickets.csv", rows, ["text", "category"])
    svc = keelwork.load_service(DEMO, database_url=db_url)
    out = tmp_path / "scored.csv"
    summary = run(svc, src, out)
    assert (summary.rows_in, summary.rejected, summary.scored) == (600, len(corrupt), 588)
    scored = pl.read_csv(out)
    assert sorted(scored["_row"].to_list()) == sorted(set(range(600)) - corrupt)
    assert scored["category"].to_list()[0] == "card_arrival"  # input columns ride along
    assert (scored["intent"] == scored["category"]).mean() > 0.85
    rejected = pl.read_csv(sidecar(out))
    assert sorted(rejected["_row"].to_list()) == sorted(corrupt)
    quarantined = svc.store.quarantine_select(svc.name)
    assert sorted(q["batch_row"] for q in quarantined) == sorted(corrupt)

    again = run(svc, src, out)  # a rerun is a resume: nothing scored twice
    assert (again.scored_now, again.already_done) == (0, 588)

    fixed = {
        q["id"]: {"text": f"my card has not arrived (row {q['batch_row']})"} for q in quarantined
    }
    first = asyncio.run(replay(svc, fixed=fixed))
    second = asyncio.run(replay(svc, fixed=fixed))
    assert sorted(first.scored) == sorted(fixed) and second.scored == []
    replayed = [svc.store.journal_get(f"replay-{qid}") for qid in fixed]
    assert all(r is not None and r["status"] == "ok" for r in replayed)
    assert {q["status"] for q in svc.store.quarantine_select(svc.name, status=None)} == {"replayed"}


def test_an_interrupted_replay_is_recovered_without_scoring_again(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    svc = keelwork.load_service(make_service_dir(), database_url=f"sqlite:///{tmp_path}/r.db")

    async def reject_one() -> None:
        async with svc:
            with pytest.raises(keelwork.ContractError):
                await svc.predict({"text": "", "n": 99})

    asyncio.run(reject_one())
    (q,) = svc.store.quarantine_select("toy")
    asyncio.run(replay(svc, fixed={q["id"]: {"text": "hi"}}))
    # simulate a crash between the journal commit and the quarantine update
    with svc.store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE quarantine SET status='open'")
    report = asyncio.run(replay(svc, fixed={q["id"]: {"text": "hi"}}))
    assert report.recovered == [q["id"]] and report.scored == []
    assert svc.store.count("journal") == 2  # the rejection and one replay


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("empty.csv", b"", "empty"),
        ("blank.jsonl", b"\n\n  \n", "no rows"),
        ("really_parquet.csv", b"PAR1" + b"\x00" * 20, "Parquet"),
        ("not_parquet.parquet", b"text\nhello\n", "not a Parquet file"),
        ("binary.csv", b"\x00\x01\x02\x03" * 10, "binary"),
        ("dupe_header.csv", b"text,text\na,b\n", "duplicate column"),
        ("data.txt", b"text\nhi\n", "cannot tell the format"),
    ],
)
def test_files_that_cannot_be_read_get_a_clear_error(
    tmp_path: Path, name: str, content: bytes, needle: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_table(path)
    assert needle in str(info.value)


def test_hostile_csv_rows_are_rejected_one_by_one_and_none_lost(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    big = "y" * (50 * 1024 * 1024)
    body = (
        b"\xef\xbb\xbftext,n\n"  # a BOM before the header
        b"fine,1\n"
        b"caf\xe9 latin-1,2\n"  # Latin-1 bytes in a UTF-8 file
        b"too,many,cells\n"  # ragged
        b"short\n" + b'"' + big.encode() + b'",3\n'  # ragged the other way  # a 50 MB field
        b"ok again,not-a-number\n"
        b"\n"  # a blank line is not a row
        b"last,4\n"
    )
    src = tmp_path / "hostile.csv"
    src.write_bytes(body)
    svc = keelwork.load_service(make_service_dir(), database_url=f"sqlite:///{tmp_path}/b.db")
    summary = run(svc, src, tmp_path / "out.csv")
    assert summary.rows_in == 7 and summary.scored + summary.rejected == 7
    assert summary.rejected_by_rule == {"utf-8": 1, "ragged": 2, "max_length": 1, "type": 1}
    assert sorted(pl.read_csv(tmp_path / "out.csv")["_row"].to_list()) == [0, 6]
    q = {r["batch_row"]: r for r in svc.store.quarantine_select("toy")}
    assert set(q) == {1, 2, 3, 4, 5}
    assert "caf\\xe9" in q[1]["raw"]


def test_hostile_jsonl_rows_are_rejected_one_by_one(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    lines = [
        b'{"text": "fine"}',
        b'{"text": "a", "text": "b"}',  # duplicate key
        b'{"text": "x", "n": NaN}',  # NaN is not JSON
        b'{"text": "x", "n": Infinity}',
        b"[" * 100_000 + b"]" * 100_000,  # a nesting bomb
        b'{"text": "trunc',  # broken JSON
        b'{"text": 5}',  # mixed types in one column
        b'"just a string"',
        b'{"text": "caf\xe9"}',  # not UTF-8
        b'{"text": "last", "n": 3}',
    ]
    src = tmp_path / "hostile.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    svc = keelwork.load_service(make_service_dir(), database_url=f"sqlite:///{tmp_path}/b.db")
    summary = run(svc, src, tmp_path / "out.jsonl")
    assert summary.rows_in == 10 and summary.scored == 2 and summary.rejected == 8
    q = {
        r["batch_row"]: {v["rule"] for v in r["violations"]}
        for r in svc.store.quarantine_select("toy")
    }
    assert q == {
        1: {"duplicate_key"},
        2: {"json"},
        3: {"json"},
        4: {"json_depth"},
        5: {"json"},
        6: {"type"},
        7: {"type"},
        8: {"utf-8"},
    }
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["_row"] for o in out] == [0, 9]


def test_parquet_in_parquet_out(make_service_dir: Callable[..., Path], tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    pl.DataFrame({"text": ["a", "", "boom", None], "n": [1, 2, 3, 11]}).write_parquet(src)
    svc = keelwork.load_service(make_service_dir(), database_url=f"sqlite:///{tmp_path}/b.db")
    summary = run(svc, src, tmp_path / "out.parquet")
    out = pl.read_parquet(tmp_path / "out.parquet")
    assert out.select("_row", "label").rows() == [(0, "primary"), (2, "backup")]
    assert summary.rejected_by_rule == {"min_length": 1, "required": 1, "max": 1}


SLOW_MODEL = """
import os, time
def primary(record):
    with open(os.environ["CALL_LOG"], "a") as f:
        f.write(record["text"] + "\\n")
    time.sleep(0.004)
    return {"label": "primary", "score": 0.9}
def backup(record):
    return {"label": "backup", "score": 0.5}
"""


@pytest.mark.slow
def test_a_killed_job_resumes_with_no_row_lost_and_none_recorded_twice(
    make_service_dir: Callable[..., Path], db_url: str, tmp_path: Path
) -> None:
    d = make_service_dir()
    (d / "model.py").write_text(SLOW_MODEL)
    n = 1500
    src = write_csv(tmp_path / "in.csv", [[f"row {i}"] for i in range(n)], ["text"])
    out = tmp_path / "out.csv"
    log = tmp_path / "calls.log"
    env = {**os.environ, "CALL_LOG": str(log)}
    cmd = [
        sys.executable,
        "-m",
        "keelwork",
        "batch",
        str(d),
        str(src),
        "--out",
        str(out),
        "--concurrency",
        "4",
        "--database-url",
        db_url,
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count("\n") > 300:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    first_calls = log.read_text().count("\n")
    assert 300 < first_calls < n
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    rows = pl.read_csv(out)["_row"].to_list()
    assert sorted(rows) == list(range(n))  # every row, once
    calls = log.read_text().splitlines()
    repeated = len(calls) - len(set(calls))
    assert repeated <= 4  # only rows inside the model at the kill (concurrency 4)
    svc = keelwork.load_service(d, database_url=db_url)
    assert len(svc.store.batch_results(BatchJobId.of(svc, src))) == n


class BatchJobId:
    @staticmethod
    def of(svc: keelwork.Service, src: Path) -> str:
        from keelwork.batch.job import job_id

        return job_id(svc, src)
