"""Small composable call policies: a per-attempt timeout and retry with full-jitter backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from keelwork.errors import ModelError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timeout:
    """Give one attempt at most ``seconds``."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError(f"Timeout(seconds={self.seconds}): must be > 0")


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry up to ``attempts`` more times, sleeping a random time in [0, backoff * 2**n]."""

    attempts: int = 0
    backoff: float = 0.02
    max_backoff: float = 1.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise ValueError(f"Retry(attempts={self.attempts}): must be >= 0")

    def delay(self, n: int) -> float:
        """Full jitter (AWS architecture blog): spreads retries so they do not stampede."""
        return self.rng.uniform(0.0, min(self.max_backoff, self.backoff * (2**n)))


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """Timeout per attempt plus retries; returns the result and how many retries it took."""

    timeout: Timeout
    retry: Retry = Retry()

    async def run(self, fn: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        n = 0
        while True:
            try:
                async with asyncio.timeout(self.timeout.seconds):
                    return await fn(), n
            except TimeoutError:
                err: Exception = ModelError(
                    f"no answer within {self.timeout.seconds * 1000:.0f} ms",
                    code="model.timeout",
                )
            except ModelError as exc:
                err = exc
            except Exception as exc:
                err = ModelError(f"{type(exc).__name__}: {exc}", code="model.exception")
            if n >= self.retry.attempts:
                raise err
            await asyncio.sleep(self.retry.delay(n))
            n += 1
