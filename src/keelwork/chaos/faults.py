"""The chaos proxy's fault plan: which failures, how often, reproducible from a seed.

Determinism: the fault for the n-th request (0-based, in the order the proxy accepts requests)
is drawn from its own ``random.Random(f"{seed}:{n}")``, one draw per request, so the decision for
request n never depends on how many draws earlier requests made or on timing. Sequential clients
therefore see the same sequence of outcomes on every run with the same seed.
"""

from __future__ import annotations

import difflib
import math
import random
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from keelwork.config import Document, dotted
from keelwork.errors import SpecError


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(ge=0.0, le=1.0, description="share of requests that get this fault")


class LatencyFault(_Rule):
    """Wait ``ms`` before forwarding; the answer itself is untouched."""

    kind: Literal["latency"]
    ms: float = Field(ge=0.0)


class TimeoutFault(_Rule):
    """Hold the request and never answer, until the client gives up."""

    kind: Literal["timeout"]


class StatusFault(_Rule):
    """Answer with an HTTP error instead of forwarding (429 with Retry-After, 503, ...)."""

    kind: Literal["status"]
    status: int = Field(ge=400, le=599)
    retry_after: int | None = Field(default=None, ge=0, description="seconds, sent as Retry-After")


class ResetFault(_Rule):
    """Drop the connection without a usable response."""

    kind: Literal["reset"]


class MalformedFault(_Rule):
    """Answer 200 with a body that is not valid JSON."""

    kind: Literal["malformed"]


class TruncateStreamFault(_Rule):
    """On an SSE response, pass ``after_chunks`` events and then drop the connection."""

    kind: Literal["truncate_stream"]
    after_chunks: int = Field(ge=0)


Fault = Annotated[
    LatencyFault | TimeoutFault | StatusFault | ResetFault | MalformedFault | TruncateStreamFault,
    Field(discriminator="kind"),
]

_BY_KIND: Mapping[str, type[_Rule]] = MappingProxyType(
    {
        "latency": LatencyFault,
        "timeout": TimeoutFault,
        "status": StatusFault,
        "reset": ResetFault,
        "malformed": MalformedFault,
        "truncate_stream": TruncateStreamFault,
    }
)
FAULT_KINDS: tuple[str, ...] = tuple(_BY_KIND)


class FaultsSpec(BaseModel):
    """``seed`` plus an ordered list of faults; at most one fault applies per request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    faults: list[Fault] = Field(default_factory=list)

    @field_validator("faults")
    @classmethod
    def _rates_fit(cls, faults: list[Fault]) -> list[Fault]:
        total = math.fsum(f.rate for f in faults)
        if total > 1.0 + 1e-9:
            terms = " + ".join(f"{f.rate:g}" for f in faults)
            raise ValueError(
                f"the rates sum to {total:g} ({terms}); one draw per request picks at most "
                "one fault, so the faults' `rate` values must sum to <= 1"
            )
        return faults

    def pick(self, n: int) -> tuple[int, Fault] | None:
        """The fault (and its index in ``faults``) for the n-th request, or None to pass it."""
        u = random.Random(f"{self.seed}:{n}").random()
        acc = 0.0
        for i, fault in enumerate(self.faults):
            acc += fault.rate
            if u < acc:
                return i, fault
        return None


class FaultsError(SpecError):
    """The faults file cannot be loaded: names the file, the key, what was found."""

    code = "chaos.faults_invalid"


def _loc(loc: tuple[int | str, ...]) -> str:
    parts = list(loc)
    # a discriminated union puts the tag in the path: faults.2.status.status -> faults[2].status
    if (
        len(parts) >= 3
        and parts[0] == "faults"
        and isinstance(parts[1], int)
        and parts[2] in _BY_KIND
    ):
        del parts[2]
    return dotted(tuple(parts))


def _allowed(loc: tuple[int | str, ...]) -> list[str]:
    if len(loc) == 1:
        return list(FaultsSpec.model_fields)
    if len(loc) == 4 and loc[0] == "faults" and str(loc[2]) in _BY_KIND:
        return list(_BY_KIND[str(loc[2])].model_fields)
    return []


def _fault_kind(e: Any, path: str, msg: str, got: Any) -> tuple[str, str, Any]:
    """An unknown or missing `kind` names the key and the kinds there are."""
    if e["type"] not in ("union_tag_invalid", "union_tag_not_found"):
        return path, msg, got
    got = got.get("kind") if isinstance(got, dict) else got
    close = difflib.get_close_matches(str(got), FAULT_KINDS, n=1)
    head = (
        "this key is required"
        if e["type"] == "union_tag_not_found"
        else f"unknown fault kind {got!r}"
    )
    tail = f"; did you mean {close[0]!r}?" if close else f"; one of: {', '.join(FAULT_KINDS)}"
    return f"{path}.kind", head + tail, got


def _document() -> Document[FaultsSpec]:
    return Document(
        FaultsSpec,
        what="the faults file",
        expected="expected a mapping with keys seed and faults",
        error=FaultsError,
        path_of=_loc,
        allowed_keys=_allowed,
        explain=_fault_kind,
    )


def parse_faults(data: Any, *, source: str = "faults.yaml") -> FaultsSpec:
    """Validate an already-parsed faults document; every problem is reported at once."""
    return _document().parse(data, source)


def load_faults(path: str | Path) -> FaultsSpec:
    """Read and validate a faults YAML file."""
    return _document().load(Path(path))
