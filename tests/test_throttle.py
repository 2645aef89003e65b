"""Tests for L{fireworq.dispatch.throttle}: the token bucket of docs/worker-protocol.md, In
short."""

from __future__ import annotations

from clocks import GuardedClock
from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from fireworq.dispatch.throttle import TokenBucket


class TokenBucketTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = GuardedClock()
        self.given: list[tuple[str, float]] = []

    def take(self, bucket: TokenBucket, name: str) -> Deferred[None]:
        d = bucket.take()
        d.addCallback(lambda _: self.given.append((name, self.clock.seconds())))
        return d

    def run_until(self, when: float, limit: int = 10000) -> int:
        """Fire every call up to C{when}, at its own time; fail if calls never stop coming at
        one instant (a timer that cannot make progress)."""
        fired = 0
        while True:
            upcoming = [c.getTime() for c in self.clock.getDelayedCalls() if c.getTime() <= when]
            if not upcoming:
                break
            target = min(upcoming)
            while self.clock.seconds() < target:
                self.clock.advance(target - self.clock.seconds())
            self.clock.advance(0)
            fired += 1
            self.assertLess(fired, limit, "timer keeps firing at t=%r" % (self.clock.seconds(),))
        if self.clock.seconds() < when:
            self.clock.advance(when - self.clock.seconds())
        return fired

    def assertGiven(self, expected: list[tuple[str, float]], places: int = 9) -> None:
        self.assertEqual([name for name, _ in self.given], [name for name, _ in expected])
        for (_, got), (_, want) in zip(self.given, expected):
            self.assertAlmostEqual(got, want, places=places)

    def test_fullAtStart(self) -> None:
        """When the bucket is new, C{burst} tokens are given at once, the next after 1/rate."""
        bucket = TokenBucket(self.clock, 2, 3)
        for name in "abcd":
            self.take(bucket, name)
        self.assertGiven([("a", 0), ("b", 0), ("c", 0)])
        self.run_until(2)
        self.assertGiven([("a", 0), ("b", 0), ("c", 0), ("d", 0.5)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_steadyRate(self) -> None:
        """When many jobs ask at once, after the burst one token is given every 1/rate
        seconds exactly."""
        bucket = TokenBucket(self.clock, 2, 3)
        for i in range(12):
            self.take(bucket, str(i))
        self.run_until(10)
        expected = [0.0] * 3 + [0.5 * k for k in range(1, 10)]
        self.assertGiven([(str(i), t) for i, t in enumerate(expected)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_awkwardRate(self) -> None:
        """When the rate has no exact binary fraction (3/s), tokens still come every third of
        a second, with one timer call each."""
        bucket = TokenBucket(self.clock, 3, 1)
        for i in range(30):
            self.take(bucket, str(i))
        fired = self.run_until(10)
        self.assertGiven([(str(i), i / 3) for i in range(30)], places=6)
        self.assertEqual(fired, 29)

    def test_epochClock(self) -> None:
        """When the clock reads seconds since 1970 (coarse floats), tokens come on time and
        the timer does not spin."""
        self.clock.advance(1.7e9 + 0.123)
        start = self.clock.seconds()
        bucket = TokenBucket(self.clock, 7, 2)
        for i in range(40):
            self.take(bucket, str(i))
        self.run_until(start + 10)
        self.assertEqual(len(self.given), 40)
        for i, (_, when) in enumerate(self.given[2:], 1):
            self.assertLess(abs(when - start - i / 7), 2e-6)

    def test_refillsContinuously(self) -> None:
        """When part of a token has accrued, the wait is for the rest only."""
        bucket = TokenBucket(self.clock, 2, 1)
        self.take(bucket, "a")
        self.clock.advance(0.3)
        self.take(bucket, "b")
        self.run_until(1)
        self.assertGiven([("a", 0), ("b", 0.5)])

    def test_cappedAtBurst(self) -> None:
        """When the bucket has been idle long, it holds C{burst} tokens, not more."""
        bucket = TokenBucket(self.clock, 10, 2)
        self.clock.advance(100)
        for name in "abc":
            self.take(bucket, name)
        self.assertGiven([("a", 100), ("b", 100)])
        self.run_until(101)
        self.assertGiven([("a", 100), ("b", 100), ("c", 100.1)])

    def test_fifo(self) -> None:
        """When several ask, tokens go in the order asked, also to one asking when a token
        has accrued while others still wait."""
        bucket = TokenBucket(self.clock, 1, 1)
        for name in "abc":
            self.take(bucket, name)
        self.clock.advance(0.5)
        self.take(bucket, "d")
        self.run_until(5)
        self.assertGiven([("a", 0), ("b", 1), ("c", 2), ("d", 3)])

    def test_cancelWaiter(self) -> None:
        """When a waiter is cancelled, it gets C{CancelledError} and its place goes to the
        next one."""
        bucket = TokenBucket(self.clock, 1, 1)
        self.take(bucket, "a")
        b = self.take(bucket, "b")
        self.take(bucket, "c")
        self.clock.advance(0.5)
        b.cancel()
        self.failureResultOf(b, CancelledError)
        self.run_until(5)
        self.assertGiven([("a", 0), ("c", 1)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelOnlyWaiter(self) -> None:
        """When the only waiter is cancelled, no timer is left and the token stays."""
        bucket = TokenBucket(self.clock, 1, 1)
        self.take(bucket, "a")
        b = self.take(bucket, "b")
        b.cancel()
        self.failureResultOf(b, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(1)
        self.take(bucket, "c")
        self.assertGiven([("a", 0), ("c", 1)])

    def test_reconfigureRate(self) -> None:
        """When the rate changes while jobs wait, what accrued so far is kept and the rest
        comes at the new rate."""
        bucket = TokenBucket(self.clock, 1, 1)
        self.take(bucket, "a")
        self.take(bucket, "b")
        self.take(bucket, "c")
        self.clock.advance(0.5)  # half a token at 1/s
        bucket.reconfigure(10, 1)
        self.run_until(1)
        self.assertGiven([("a", 0), ("b", 0.55), ("c", 0.65)])

    def test_reconfigureSmallerBurst(self) -> None:
        """When the burst shrinks, the tokens held are cut to it."""
        bucket = TokenBucket(self.clock, 1, 5)
        bucket.reconfigure(1, 2)
        for name in "abc":
            self.take(bucket, name)
        self.assertGiven([("a", 0), ("b", 0)])

    def test_reconfigureLargerBurst(self) -> None:
        """When the burst grows, the new room fills at the rate, not at once."""
        bucket = TokenBucket(self.clock, 1, 1)
        self.take(bucket, "a")
        bucket.reconfigure(1, 3)
        self.clock.advance(2)
        for name in "bcd":
            self.take(bucket, name)
        self.assertGiven([("a", 0), ("b", 2), ("c", 2)])
        self.run_until(4)
        self.assertGiven([("a", 0), ("b", 2), ("c", 2), ("d", 3)])

    def test_reconfigureReleasesWhenTokenThere(self) -> None:
        """When a reconfiguration finds a whole token while jobs wait, the first is let go at
        once."""
        bucket = TokenBucket(self.clock, 1, 1)
        self.take(bucket, "a")
        self.take(bucket, "b")
        self.clock.advance(0.5)
        bucket.reconfigure(4, 1)  # 0.5 accrued, the other 0.5 at 4/s takes 0.125 s
        self.run_until(0.625)
        self.assertGiven([("a", 0), ("b", 0.625)])

    def test_releaseAll(self) -> None:
        """When C{release_all} is called, every waiter is let go at once, in order, and no
        timer is left."""
        bucket = TokenBucket(self.clock, 1, 1)
        for name in "abcd":
            self.take(bucket, name)
        self.clock.advance(0.2)
        bucket.release_all()
        self.assertGiven([("a", 0), ("b", 0.2), ("c", 0.2), ("d", 0.2)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noTimerWithoutWaiters(self) -> None:
        """When tokens are given at once, no timer is set."""
        bucket = TokenBucket(self.clock, 1, 3)
        for name in "abc":
            self.take(bucket, name)
        self.assertEqual(self.clock.getDelayedCalls(), [])
