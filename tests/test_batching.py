"""Tests for L{fireworq.dispatch.batching}: one store round trip for the requests of a turn."""

from __future__ import annotations

from typing import Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fireworq.dispatch.batching import TurnBatcher
from fireworq.errors import StoreUnavailable


class FakeFlush:
    """Records each batch; answers at once or when the test fires its Deferred."""

    def __init__(self, clock: Clock, hold: bool = False) -> None:
        self.clock = clock
        self.hold = hold
        self.batches: list[tuple[float, list[int]]] = []
        self.pending: list[Deferred[None]] = []
        self.fail: list[Exception] = []

    async def __call__(self, items: Sequence[int]) -> Sequence[int]:
        self.batches.append((self.clock.seconds(), list(items)))
        if self.hold:
            gate: Deferred[None] = Deferred()
            self.pending.append(gate)
            await gate
        if self.fail:
            raise self.fail.pop(0)
        return [item * 10 for item in items]

    def release(self) -> None:
        self.pending.pop(0).callback(None)


class TurnBatcherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()

    def test_oneFlushPerTurn(self) -> None:
        """When items are submitted in one turn, they go to one flush at the end of the turn,
        and each gets its own result."""
        flush = FakeFlush(self.clock)
        batcher = TurnBatcher(self.clock, flush)
        results = [batcher.submit(i) for i in (1, 2, 3)]
        self.assertEqual(flush.batches, [])
        for d in results:
            self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(flush.batches, [(0.0, [1, 2, 3])])
        self.assertEqual([self.successResultOf(d) for d in results], [10, 20, 30])
        self.assertFalse(batcher.busy)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_separateTurns(self) -> None:
        """When items come in different turns and the store is quick, each turn has its own
        flush."""
        flush = FakeFlush(self.clock)
        batcher = TurnBatcher(self.clock, flush)
        first = batcher.submit(1)
        self.clock.advance(0)
        second = batcher.submit(2)
        self.clock.advance(0)
        self.assertEqual([items for _, items in flush.batches], [[1], [2]])
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (10, 20))

    def test_concurrencyOneBatchesGrow(self) -> None:
        """When a flush is running with concurrency 1, later items wait for it to end and then
        go together in the next flush."""
        flush = FakeFlush(self.clock, hold=True)
        batcher = TurnBatcher(self.clock, flush, concurrency=1)
        first = batcher.submit(1)
        self.clock.advance(0)
        self.assertEqual(len(flush.batches), 1)
        later = []
        for i in (2, 3, 4):
            later.append(batcher.submit(i))
            self.clock.advance(0.01)
        self.assertEqual(len(flush.batches), 1)
        self.assertTrue(batcher.busy)
        flush.release()
        self.assertEqual(self.successResultOf(first), 10)
        for d in later:
            self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual([items for _, items in flush.batches], [[1], [2, 3, 4]])
        flush.release()
        self.assertEqual([self.successResultOf(d) for d in later], [20, 30, 40])
        self.assertFalse(batcher.busy)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_concurrencyTwo(self) -> None:
        """When concurrency is 2, a second flush starts while the first runs, and a third
        waits."""
        flush = FakeFlush(self.clock, hold=True)
        batcher = TurnBatcher(self.clock, flush, concurrency=2)
        batcher.submit(1)
        self.clock.advance(0)
        batcher.submit(2)
        self.clock.advance(0)
        batcher.submit(3)
        self.clock.advance(0)
        self.assertEqual([items for _, items in flush.batches], [[1], [2]])
        flush.release()
        self.clock.advance(0)
        self.assertEqual([items for _, items in flush.batches], [[1], [2], [3]])
        flush.release()
        flush.release()
        self.assertFalse(batcher.busy)

    def test_failingFlush(self) -> None:
        """When a flush fails, every item of its batch gets the failure, and the next batch is
        flushed as usual."""
        flush = FakeFlush(self.clock)
        flush.fail.append(StoreUnavailable("gone"))
        batcher = TurnBatcher(self.clock, flush)
        failed = [batcher.submit(i) for i in (1, 2)]
        self.clock.advance(0)
        for d in failed:
            self.assertEqual(self.failureResultOf(d, StoreUnavailable).value.reason, "gone")
        later = batcher.submit(3)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(later), 30)
        self.assertFalse(batcher.busy)

    def test_failingHeldFlush(self) -> None:
        """When a flush fails after items queued behind it, those go to the next flush."""
        flush = FakeFlush(self.clock, hold=True)
        flush.fail.append(StoreUnavailable("gone"))
        batcher = TurnBatcher(self.clock, flush)
        first = batcher.submit(1)
        self.clock.advance(0)
        second = batcher.submit(2)
        flush.release()
        self.failureResultOf(first, StoreUnavailable)
        self.clock.advance(0)
        flush.release()
        self.assertEqual(self.successResultOf(second), 20)

    def test_delay(self) -> None:
        """When a delay is set, a batch starts that long after its first item and holds every
        item that came meanwhile."""
        flush = FakeFlush(self.clock)
        batcher = TurnBatcher(self.clock, flush, delay=0.005)
        batcher.submit(1)
        self.clock.advance(0.003)
        batcher.submit(2)
        self.clock.advance(0.001)
        self.assertEqual(flush.batches, [])
        self.clock.advance(0.001)
        self.assertEqual(len(flush.batches), 1)
        when, items = flush.batches[0]
        self.assertAlmostEqual(when, 0.005)
        self.assertEqual(items, [1, 2])
        batcher.submit(3)
        self.clock.advance(0.005)
        self.assertEqual([items for _, items in flush.batches], [[1, 2], [3]])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_maxBatch(self) -> None:
        """When more items than C{max_batch} wait, they go in several flushes of at most that
        many."""
        flush = FakeFlush(self.clock)
        batcher = TurnBatcher(self.clock, flush, max_batch=2)
        results = [batcher.submit(i) for i in range(5)]
        self.clock.advance(0)
        while self.clock.getDelayedCalls():
            self.clock.advance(0)
        self.assertEqual([items for _, items in flush.batches], [[0, 1], [2, 3], [4]])
        self.assertEqual([self.successResultOf(d) for d in results], [0, 10, 20, 30, 40])

    def test_cancel(self) -> None:
        """When the batcher is cancelled (at shutdown), no call is left on the clock."""
        flush = FakeFlush(self.clock)
        batcher = TurnBatcher(self.clock, flush, delay=0.005)
        waiting = batcher.submit(1)
        batcher.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(1)
        self.assertEqual(flush.batches, [])
        self.assertNoResult(waiting)

    def test_submitFromResult(self) -> None:
        """When an item's result leads to a new submission in the same callback, that item is
        flushed in a later turn."""
        flush = FakeFlush(self.clock)
        batcher = TurnBatcher(self.clock, flush)
        chained: list[Deferred[int]] = []
        batcher.submit(1).addCallback(lambda _: chained.append(batcher.submit(2)))
        self.clock.advance(0)
        self.assertEqual(len(chained), 1)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(chained[0]), 20)
        self.assertEqual([items for _, items in flush.batches], [[1], [2]])
