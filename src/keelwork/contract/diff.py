"""What a new contract would do to real traffic, before it is deployed.

The last N journaled inputs are judged by the current contract and by the new one; the report
says which records the change would newly reject (and by which rule), and which it would let
through that are rejected today, along with the field-level changes of the spec.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from keelwork.contract import Contract


@dataclass(slots=True)
class ContractDiff:
    examined: int = 0
    both_accept: int = 0
    both_reject: int = 0
    newly_rejected: int = 0
    newly_accepted: int = 0
    new_rules: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    fields_added: list[str] = field(default_factory=list)
    fields_removed: list[str] = field(default_factory=list)
    fields_changed: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "both_accept": self.both_accept,
            "both_reject": self.both_reject,
            "newly_rejected": self.newly_rejected,
            "newly_accepted": self.newly_accepted,
            "newly_rejected_by_rule": dict(self.new_rules),
            "examples": self.examples,
            "fields_added": self.fields_added,
            "fields_removed": self.fields_removed,
            "fields_changed": self.fields_changed,
        }


def diff_contracts(
    current: Contract, new: Contract, inputs: list[Any], examples: int = 10
) -> ContractDiff:
    out = ContractDiff(examined=len(inputs))
    old_f = current.spec.fields
    new_f = new.spec.fields
    out.fields_added = [f for f in new_f if f not in old_f]
    out.fields_removed = [f for f in old_f if f not in new_f]
    for name in old_f.keys() & new_f.keys():
        before = old_f[name].model_dump(exclude_defaults=True)
        after = new_f[name].model_dump(exclude_defaults=True)
        if before != after:
            keys = before.keys() | after.keys()
            out.fields_changed[name] = {
                k: {"from": before.get(k), "to": after.get(k)}
                for k in sorted(keys)
                if before.get(k) != after.get(k)
            }
    for record in inputs:
        old_ok = current.check(record).ok
        checked = new.check(record)
        if old_ok and checked.ok:
            out.both_accept += 1
        elif not old_ok and not checked.ok:
            out.both_reject += 1
        elif old_ok:
            out.newly_rejected += 1
            out.new_rules.update({e.rule for e in checked.errors})
            if len(out.examples) < examples:
                out.examples.append(
                    {"record": record, "violations": [e.as_dict() for e in checked.errors]}
                )
        else:
            out.newly_accepted += 1
    return out
