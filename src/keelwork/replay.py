"""Replaying the quarantine: rejected records run again through the current contract and
pipeline, after the contract or the data was fixed.

Idempotent: a replay's journal record has a request id derived from the quarantine id, written
and committed before the quarantine row is marked replayed. A second replay skips what is
marked; a replay interrupted between the two steps finds the journal record and only marks it,
so no record is ever scored twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keelwork.pipeline import Call
from keelwork.security.keys import LOCAL
from keelwork.service import Service


@dataclass(slots=True)
class ReplayReport:
    scored: list[int] = field(default_factory=list)
    still_rejected: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    recovered: list[int] = field(default_factory=list)
    no_record: list[int] = field(default_factory=list)


def replay_id(quarantine_id: int) -> str:
    return f"replay-{quarantine_id}"


async def replay(
    svc: Service, ids: list[int] | None = None, fixed: dict[int, Any] | None = None
) -> ReplayReport:
    """Replay open quarantined records (all, or ``ids``); ``fixed`` replaces stored records."""
    fixed = fixed or {}
    report = ReplayReport()
    rows = svc.store.quarantine_select(svc.name, ids=ids or list(fixed) or None)
    journal, pipeline = svc.committed_scoring()
    await journal.start()
    try:
        for row in rows:
            qid = row["id"]
            rid = replay_id(qid)
            if svc.store.journal_get(rid) is not None:  # scored before an interruption
                svc.store.mark_replayed(qid, rid)
                report.recovered.append(qid)
                continue
            record = fixed.get(qid, row["record"])
            if record is None:
                report.no_record.append(qid)
                continue
            checked = svc.input_contract.check(record)
            if checked.errors:
                report.still_rejected[qid] = [e.as_dict() for e in checked.errors]
                continue
            call = Call(svc.name, request_id=rid, principal=LOCAL, record=record, source="replay")
            call.clean = checked.clean
            await pipeline.run(call)
            if call.error is not None:
                report.failed[qid] = call.error.code
                continue
            svc.store.mark_replayed(qid, rid)
            report.scored.append(qid)
    finally:
        await journal.close()
    return report
