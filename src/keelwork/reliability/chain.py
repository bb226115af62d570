"""The fallback chain: primary, then fallbacks in order, then the declared terminal answer.

A model's output is checked against the output contract; an invalid answer counts as that
model's failure and the chain moves on, so a caller never receives a malformed answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from keelwork.errors import Attempt, ModelError, Violation
from keelwork.providers.base import Provider
from keelwork.reliability.policy import CallPolicy

Accept = Callable[[Any], tuple[dict[str, Any], list[Violation]]]
TERMINAL = "default"


@dataclass(frozen=True, slots=True)
class Link:
    provider: Provider
    policy: CallPolicy


@dataclass(slots=True)
class Answer:
    output: dict[str, Any]
    model: str
    version: str
    fallback: bool
    attempts: list[Attempt] = field(default_factory=list)


class FallbackChain:
    """Walks the links in order until one gives a valid answer."""

    def __init__(
        self,
        links: list[Link],
        accept: Accept,
        default: dict[str, Any] | None,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> None:
        if not links:
            raise ValueError("a fallback chain needs at least one model")
        self.links = links
        self.accept = accept
        self.default = default
        self.on_failure = on_failure

    async def __call__(
        self, record: dict[str, Any], attempts: list[Attempt] | None = None
    ) -> Answer:
        """Answer ``record``; every attempt made is appended to ``attempts`` as it happens."""
        attempts = [] if attempts is None else attempts
        for i, link in enumerate(self.links):
            p = link.provider
            t0 = time.perf_counter()
            try:
                raw, retries = await link.policy.run(partial(p, record))
                output, errors = self.accept(raw)
                if errors:
                    raise ModelError(
                        "the model's answer broke the output contract: "
                        + "; ".join(f"{e.path} {e.message}" for e in errors),
                        code="model.invalid_output",
                        details=errors,
                    )
            except ModelError as exc:
                attempts.append(
                    Attempt(
                        model=p.name,
                        ok=False,
                        error_code=exc.code,
                        error=exc.message[:500],
                        latency_ms=(time.perf_counter() - t0) * 1000,
                    )
                )
                if self.on_failure is not None:
                    self.on_failure(p.name, exc.code)
                continue
            attempts.append(
                Attempt(
                    model=p.name,
                    ok=True,
                    latency_ms=(time.perf_counter() - t0) * 1000,
                    retries=retries,
                )
            )
            return Answer(output, p.name, p.version, fallback=i > 0, attempts=attempts)
        if self.default is not None:
            return Answer(dict(self.default), TERMINAL, "static", fallback=True, attempts=attempts)
        raise ModelError(
            "every model of the chain failed and the spec declares no `routing.default`",
            code="model.unavailable",
            status=503,
            details=[
                Violation(path=f"models.{a.model}", rule=a.error_code, got=a.error)
                for a in attempts
            ],
            headers={"Retry-After": "1"},
        )
