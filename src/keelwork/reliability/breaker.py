"""A circuit breaker per model: after too many failures in a window it opens and the chain
skips the model at once (no timeout to wait out); after a cooldown one probe is let through
(half-open) and its outcome closes or reopens the circuit."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import IntEnum

from keelwork.spec import BreakerSpec


class State(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        spec: BreakerSpec,
        on_change: Callable[[State], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.on_change = on_change
        self.state = State.CLOSED
        self._calls: deque[bool] = deque(maxlen=spec.window)
        self._opened_at = 0.0
        self._probing = False
        self.disabled = False

    def disable(self, disabled: bool) -> None:
        """An operator's switch: a disabled model is skipped like an open circuit, until
        enabled again (then it starts closed, with a clean window)."""
        self.disabled = disabled
        self._calls.clear()
        self._probing = False
        self._set(State.OPEN if disabled else State.CLOSED)

    def allow(self) -> bool:
        """May the chain call this model now?"""
        if self.disabled:
            return False
        if not self.spec.enabled or self.state == State.CLOSED:
            return True
        if self.state == State.OPEN:
            if self.clock() - self._opened_at < self.spec.cooldown_ms / 1000:
                return False
            self._set(State.HALF_OPEN)
        if self._probing:  # half-open: one probe at a time
            return False
        self._probing = True
        return True

    def record(self, ok: bool) -> None:
        if not self.spec.enabled or self.disabled:
            return
        if self.state == State.HALF_OPEN:
            self._probing = False
            if ok:
                self._calls.clear()
                self._set(State.CLOSED)
            else:
                self._open()
            return
        self._calls.append(ok)
        n = len(self._calls)
        if n >= self.spec.min_calls and self._calls.count(False) / n >= self.spec.failure_rate:
            self._open()

    def _open(self) -> None:
        self._opened_at = self.clock()
        self._set(State.OPEN)

    def _set(self, state: State) -> None:
        if state != self.state:
            self.state = state
            if self.on_change is not None:
                self.on_change(state)
