"""The pipeline through the Python API: answers, fallbacks, terminals, journal and quarantine,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import keelwork
from keelwork import ContractError


async def test_primary_answers_and_the_journal_records_it(
    make_service_dir: Callable[..., Path], db_url: str
) -> None:
    svc = keelwork.load_service(make_service_dir(), database_url=db_url)
    async with svc:
        p = await svc.predict({"text": "  hello  ", "n": 3})
    assert p.output == {"label": "primary", "score": 0.9}
    assert (p.model, p.model_version, p.fallback) == ("main", "m-1", False)
    row = svc.store.journal_get(p.request_id)
    assert row is not None
    assert row["status"] == "ok" and row["http_status"] == 200
    assert row["input"] == {"text": "hello", "n": 3}  # the declared strip is applied
    assert row["output"] == {"label": "primary", "score": 0.9}
    assert row["model_version"] == "m-1" and row["service"] == "toy"
    assert row["service_version"] == "1.2.3"
    assert row["latency_ms"] > 0


@pytest.mark.parametrize(
    ("text", "model", "label", "first_failure"),
    [
        ("boom", "spare", "backup", "model.exception"),
        ("slow", "spare", "backup", "model.timeout"),
        ("bad", "spare", "backup", "model.invalid_output"),
        ("boom-all", "default", "fallback", "model.exception"),
        ("bad-all", "default", "fallback", "model.invalid_output"),
    ],
)
async def test_failures_walk_the_chain_to_the_declared_terminal(
    make_service_dir: Callable[..., Path],
    tmp_path: Path,
    text: str,
    model: str,
    label: str,
    first_failure: str,
) -> None:
    svc = keelwork.load_service(make_service_dir(), database_url=f"sqlite:///{tmp_path}/j.db")
    async with svc:
        p = await svc.predict({"text": text})
    assert p.fallback is True
    assert p.model == model
    assert p.output["label"] == label
    row = svc.store.journal_get(p.request_id)
    assert row is not None and row["status"] == "fallback" and row["fallback"] is True
    assert row["attempts"][0]["model"] == "main"
    assert row["attempts"][0]["code"] == first_failure
    page = _metrics_text(svc)
    assert f'keelwork_fallbacks_total{{model="{model}",service="toy"}} 1.0' in page
    assert f'code="{first_failure}",model="main",service="toy"' in page


async def test_retries_are_spent_before_falling_back(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    d = make_service_dir({"policies": {"retries": 2, "backoff_ms": 1}})
    svc = keelwork.load_service(d, database_url=f"sqlite:///{tmp_path}/j.db")
    async with svc:
        p = await svc.predict({"text": "boom"})
    assert p.model == "spare"
    assert 'model="main",service="toy"} 1.0' in _metrics_text(svc)


async def test_without_a_terminal_a_dead_chain_is_a_clear_503(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    d = make_service_dir()
    spec = (
        (d / "keelwork.yaml")
        .read_text()
        .replace("  default:\n    label: fallback\n    score: 0\n", "")
    )
    (d / "keelwork.yaml").write_text(spec)
    svc = keelwork.load_service(d, database_url=f"sqlite:///{tmp_path}/j.db")
    async with svc:
        with pytest.raises(keelwork.ModelError) as info:
            await svc.predict({"text": "boom-all"})
    assert info.value.status == 503 and info.value.code == "model.unavailable"
    assert [d.path for d in info.value.details] == ["models.main", "models.spare"]
    (row,) = svc.store.journal_recent("toy")
    assert row["status"] == "failed" and row["error_code"] == "model.unavailable"
    assert [a["model"] for a in row["attempts"]] == ["main", "spare"]


async def test_rejected_input_reports_every_violation_and_is_quarantined(
    make_service_dir: Callable[..., Path], db_url: str
) -> None:
    svc = keelwork.load_service(make_service_dir(), database_url=db_url)
    bad = {"text": "   ", "n": 11, "kind": "c", "ratio": None, "flag": "yes", "extra": [1]}
    async with svc:
        with pytest.raises(ContractError) as info:
            await svc.predict(bad)
    got = {(d.path, d.rule) for d in info.value.details}
    assert got == {
        ("$.text", "min_length"),
        ("$.n", "max"),
        ("$.kind", "enum"),
        ("$.flag", "type"),
        ("$.extra", "unknown_field"),
    }
    rows = svc.store.quarantine_list()
    assert len(rows) == 1
    q = rows[0]
    assert q["record"] == bad
    assert q["contract_version"] == svc.input_contract.version
    assert {(v["path"], v["rule"]) for v in q["violations"]} == got
    j = svc.store.journal_get(q["request_id"])
    assert j is not None and j["status"] == "rejected" and j["http_status"] == 422


async def test_sync_durability_commits_before_answering(
    make_service_dir: Callable[..., Path], db_url: str
) -> None:
    d = make_service_dir({"journal": {"durability": "sync"}})
    svc = keelwork.load_service(d, database_url=db_url)
    async with svc:
        p = await svc.predict({"text": "hi"})
        # read from another connection while the service is still running
        assert svc.store.journal_get(p.request_id) is not None


async def test_batched_journal_flushes_within_the_interval(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    import asyncio

    svc = keelwork.load_service(make_service_dir(), database_url=f"sqlite:///{tmp_path}/j.db")
    async with svc:
        p = await svc.predict({"text": "hi"})
        await asyncio.sleep(0.35)
        assert svc.store.journal_get(p.request_id) is not None


async def test_close_flushes_every_queued_record(
    make_service_dir: Callable[..., Path], db_url: str
) -> None:
    import asyncio

    svc = keelwork.load_service(
        make_service_dir({"policies": {"max_concurrency": 400}}), database_url=db_url
    )
    async with svc:
        preds = await asyncio.gather(*(svc.predict({"text": f"t{i}"}) for i in range(300)))
    ids = {p.request_id for p in preds}
    assert ids <= svc.store.journal_ids("toy")


def _metrics_text(svc: keelwork.Service) -> str:
    from prometheus_client import generate_latest

    return generate_latest(svc.metrics.registry).decode()


async def test_a_failing_store_is_retried_until_the_record_lands(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    svc = keelwork.load_service(make_service_dir(), database_url=f"sqlite:///{tmp_path}/j.db")
    real_write = svc.store.write
    calls = {"n": 0}

    def flaky(jrows: list[dict[str, object]], qrows: list[dict[str, object]]) -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError("disk unavailable")
        real_write(jrows, qrows)

    svc.store.write = flaky  # type: ignore[method-assign]
    async with svc:
        p = await svc.predict({"text": "hi"})
    assert calls["n"] == 3
    assert svc.store.journal_get(p.request_id) is not None
    assert 'keelwork_journal_write_errors_total{service="toy"} 2.0' in _metrics_text(svc)


async def test_a_full_journal_queue_is_a_visible_503_not_a_silent_drop(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    import asyncio

    d = make_service_dir({"journal": {"queue_size": 1, "flush_interval_ms": 100}})
    svc = keelwork.load_service(d, database_url=f"sqlite:///{tmp_path}/j.db")
    async with svc:
        results = await asyncio.gather(
            *(svc.predict({"text": f"t{i}"}) for i in range(20)), return_exceptions=True
        )
    refused = [r for r in results if isinstance(r, keelwork.OverloadedError)]
    served = [r for r in results if isinstance(r, keelwork.Prediction)]
    assert refused and served and len(refused) + len(served) == 20
    assert all(r.code == "journal.backpressure" and r.status == 503 for r in refused)
    assert {p.request_id for p in served} <= svc.store.journal_ids("toy")
    assert 'code="journal.backpressure"' in _metrics_text(svc)


async def test_inline_models_answer_on_the_event_loop_with_the_same_chain(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    d = make_service_dir({"models": {"main": {"executor": "inline"}}})
    svc = keelwork.load_service(d, database_url=f"sqlite:///{tmp_path}/j.db")
    async with svc:
        ok = await svc.predict({"text": "hi"})
        failed_over = await svc.predict({"text": "boom"})
        # an inline call cannot be interrupted: a slow answer still arrives, late but valid
        slow = await svc.predict({"text": "slow"})
    assert (ok.model, failed_over.model, slow.model) == ("main", "spare", "main")
    assert slow.latency_ms >= 400


async def test_an_answer_after_retries_keeps_its_attempts_in_the_journal(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    d = make_service_dir({"policies": {"retries": 2, "backoff_ms": 1}})
    (d / "model.py").write_text(
        "import os\n"
        "def primary(record):\n"
        "    flag = os.path.join(os.path.dirname(__file__), 'failed-once')\n"
        "    if not os.path.exists(flag):\n"
        "        open(flag, 'w').close()\n"
        "        raise ConnectionError('reset')\n"
        "    return {'label': 'primary', 'score': 0.9}\n"
        "def backup(record):\n"
        "    return {'label': 'backup', 'score': 0.5}\n"
    )
    svc = keelwork.load_service(d, database_url=f"sqlite:///{tmp_path}/j.db")
    async with svc:
        p = await svc.predict({"text": "hi"})
    row = svc.store.journal_get(p.request_id)
    assert p.model == "main" and row["attempts"][0]["retries"] == 1
