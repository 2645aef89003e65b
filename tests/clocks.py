"""Test clocks."""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock


class GuardedClock(Clock):
    """A L{Clock} that fails, instead of hanging C{advance}, when calls keep being scheduled
    for the instant it is at (a timer that cannot make progress)."""

    LIMIT = 10000

    def __init__(self) -> None:
        super().__init__()
        self._instant = -1.0
        self._at_instant = 0

    def callLater(self, delay: float, callable: Callable[..., object], *args: object,
                  **kw: object) -> IDelayedCall:
        now = self.seconds()
        if now + delay <= now:
            if now != self._instant:
                self._instant, self._at_instant = now, 0
            self._at_instant += 1
            if self._at_instant > self.LIMIT:
                raise AssertionError("calls keep being scheduled at t=%r" % (now,))
        return super().callLater(delay, callable, *args, **kw)
