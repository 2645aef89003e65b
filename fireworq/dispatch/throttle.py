"""The token bucket of a throttled queue (docs/worker-protocol.md, In short)."""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

# Refilling in float steps can leave 0.9999999 of a token where a whole one is due: from
# _WHOLE on a token counts as whole, while timers aim at exactly one token, so that they
# fire when it is due and find it whole.
_WHOLE = 1.0 - 1e-9
# A timer never waits less than this: a fraction of a token lost to rounding would otherwise
# make it fire again and again at the same instant, the clock not moving in between.
_MIN_WAIT = 1e-6


class TokenBucket:
    """Holds up to ``burst`` tokens, refilled at ``rate`` per second, full at start.

    Tokens are handed out in the order they were asked for.
    """

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._updated = clock.seconds()
        self._waiters: deque[Deferred[None]] = deque()
        self._timer: IDelayedCall | None = None

    def reconfigure(self, rate: float, burst: int) -> None:
        self._refill()
        self._rate, self._burst = rate, burst
        self._tokens = min(self._tokens, float(burst))
        self._reschedule()

    def take(self) -> Deferred[None]:
        """A Deferred that fires when a token is ours."""
        self._refill()
        if not self._waiters and self._tokens >= _WHOLE:
            self._tokens -= 1
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._forget)
        self._waiters.append(waiter)
        self._reschedule()
        return waiter

    def release_all(self) -> None:
        """Let every waiter go at once (the queue is no longer throttled)."""
        self._cancel_timer()
        while self._waiters:
            self._waiters.popleft().callback(None)

    def _forget(self, waiter: Deferred[None]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
        # Count what accrued so far first: the new timer must not start from scratch.
        self._refill()
        self._reschedule()

    def _refill(self) -> None:
        now = self._clock.seconds()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(float(self._burst), self._tokens + elapsed * self._rate)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _reschedule(self) -> None:
        self._cancel_timer()
        if not self._waiters:
            return
        if self._tokens >= _WHOLE:
            delay = 0.0
        else:
            delay = max((1.0 - self._tokens) / self._rate, _MIN_WAIT)
        self._timer = self._clock.callLater(delay, self._release)

    def _release(self) -> None:
        self._timer = None
        self._refill()
        while self._waiters and self._tokens >= _WHOLE:
            self._tokens -= 1
            self._waiters.popleft().callback(None)
        self._reschedule()

