"""Tests for L{fireworq.dispatch.batching}: one store round trip for the requests of a turn."""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from fireworq.dispatch.batching import Batch, TurnBatcher
from fireworq.errors import NotStored, StoreUnavailable


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


class TakingFlush:
    """A store's flush: holds each batch, taking it (sending its items) before or after."""

    def __init__(self, take_first: bool) -> None:
        self.take_first = take_first
        self.batches: list[Batch[int]] = []
        self.taken: list[list[int]] = []
        self.gates: list[Deferred[None]] = []

    async def __call__(self, batch: Batch[int]) -> Sequence[int | Exception]:
        self.batches.append(batch)
        indexes = batch.take() if self.take_first else None
        gate: Deferred[None] = Deferred()
        self.gates.append(gate)
        await gate
        if indexes is None:
            indexes = batch.take()
        self.taken.append([batch[i] for i in indexes])
        return [batch[i] * 10 if i in indexes else NotStored("withdrawn")
                for i in range(len(batch))]

    def release(self) -> None:
        self.gates.pop(0).callback(None)


def expired(sent: bool) -> StoreUnavailable:
    return StoreUnavailable("sent" if sent else "not sent")


class ReactorLikeClock(Clock):
    """A L{Clock} that refuses negative delays, as a reactor does."""

    def callLater(self, delay: float, f: Any, *args: Any, **kw: Any) -> Any:
        assert delay >= 0, f"{delay} is not greater than or equal to 0 seconds"
        return super().callLater(delay, f, *args, **kw)


class DeadlineTests(SynchronousTestCase):
    """Items whose deadline passes: withdrawn unless their batch was taken."""

    def setUp(self) -> None:
        self.clock = Clock()

    def batcher(self, flush: Any, **kwargs: Any) -> TurnBatcher[int, int]:
        return TurnBatcher(self.clock, flush, deadline=5.0, expired=expired, **kwargs)

    def reason(self, d: Deferred[int]) -> str:
        return self.failureResultOf(d, StoreUnavailable).value.reason

    def test_waitingItemDropped(self) -> None:
        """When an item's deadline passes while it waits behind a running flush, it fails as
        not sent and is never flushed; the running flush's item fails as sent."""
        flush = FakeFlush(self.clock, hold=True)
        batcher = self.batcher(flush)
        first = batcher.submit(1)
        self.clock.advance(0)
        self.clock.advance(1)
        second = batcher.submit(2)
        self.clock.advance(4)
        self.assertEqual(self.reason(first), "sent")
        self.assertNoResult(second)
        self.clock.advance(1)
        self.assertEqual(self.reason(second), "not sent")
        flush.release()
        self.clock.advance(0)
        self.assertEqual([items for _, items in flush.batches], [[1]])
        self.assertFalse(batcher.busy)
        self.assertEqual(batcher.held, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_withdrawnBeforeTake(self) -> None:
        """When the flush takes its batch itself and has not yet when the deadline passes, the
        item fails as not sent and the flush does not get it."""
        flush = TakingFlush(take_first=False)
        batcher = self.batcher(flush, taken_by_flush=True)
        early = batcher.submit(1)
        self.clock.advance(2)
        late = batcher.submit(2)
        self.clock.advance(0)
        self.assertEqual(len(flush.batches), 1)
        self.assertEqual(list(flush.batches[0]), [1])  # 2 came after the batch had started
        self.clock.advance(3)
        self.assertEqual(self.reason(early), "not sent")
        flush.release()
        self.assertEqual(flush.taken, [[]])
        self.clock.advance(0)
        self.assertEqual(list(flush.batches[1]), [2])
        flush.release()
        self.assertEqual(self.successResultOf(late), 20)
        self.assertEqual(flush.taken, [[], [2]])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_takenThenExpired(self) -> None:
        """When the flush took its batch before the deadline passed, the item fails as sent:
        it may still be stored."""
        flush = TakingFlush(take_first=True)
        batcher = self.batcher(flush, taken_by_flush=True)
        d = batcher.submit(1)
        self.clock.advance(5)
        self.assertEqual(self.reason(d), "sent")
        flush.release()
        self.assertEqual(flush.taken, [[1]])
        self.assertFalse(batcher.busy)

    def test_partlyWithdrawn(self) -> None:
        """When only some items of an untaken batch are past their deadline, only those are
        withdrawn; the others are flushed and answered."""
        flush = TakingFlush(take_first=False)
        batcher = self.batcher(flush, taken_by_flush=True, delay=2.0)
        old = batcher.submit(1)
        self.clock.advance(1.5)
        young = batcher.submit(2)
        self.clock.advance(3.5)  # t=5: the batch started at t=2 and waits to be taken
        self.assertEqual(self.reason(old), "not sent")
        self.assertNoResult(young)
        flush.release()
        self.assertEqual(flush.taken, [[2]])
        self.assertEqual(self.successResultOf(young), 20)

    def test_timePassesWhileAnswering(self) -> None:
        """When answering the expired items takes time (as on a real reactor), the timer of
        the next deadline is still set (a reactor refuses a negative delay), and fires."""
        clock = ReactorLikeClock()
        flush = FakeFlush(clock, hold=True)
        batcher = TurnBatcher(clock, flush, deadline=5.0, expired=expired)
        first = batcher.submit(1)
        clock.advance(0.001)
        second = batcher.submit(2)

        def slow_answer(failure: Failure) -> None:
            clock.rightNow += 0.01

        first.addErrback(slow_answer)
        clock.advance(4.999)  # t=5: the first expires; answering it takes past the second's
        self.assertEqual(self.reason(second), "not sent")
        flush.release()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_exceptionResult(self) -> None:
        """When the flush answers an exception for one item, that item fails alone."""
        async def flush(items: Sequence[int]) -> Sequence[int | Exception]:
            return [NotStored("too big") if item == 2 else item for item in items]

        batcher: TurnBatcher[int, int] = TurnBatcher(self.clock, flush)
        results = [batcher.submit(i) for i in (1, 2, 3)]
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(results[0]), 1)
        self.assertEqual(str(self.failureResultOf(results[1], NotStored).value), "too big")
        self.assertEqual(self.successResultOf(results[2]), 3)

    def test_limit(self) -> None:
        """When C{limit} items are held (waiting or being flushed), the next one fails at once;
        once the flush ends, items are taken again."""
        flush = FakeFlush(self.clock, hold=True)
        batcher: TurnBatcher[int, int] = TurnBatcher(
            self.clock, flush, limit=3, overloaded=lambda: StoreUnavailable("full"))
        held = [batcher.submit(1)]
        self.clock.advance(0)
        held += [batcher.submit(2), batcher.submit(3)]
        self.assertEqual(batcher.held, 3)
        self.assertEqual(self.failureResultOf(batcher.submit(4), StoreUnavailable).value.reason,
                         "full")
        self.assertEqual(batcher.held, 3)
        flush.release()
        self.clock.advance(0)
        self.assertEqual(batcher.held, 2)
        fifth = batcher.submit(5)
        flush.release()
        self.clock.advance(0)
        flush.release()
        self.assertEqual([self.successResultOf(d) for d in held], [10, 20, 30])
        self.assertEqual(self.successResultOf(fifth), 50)
        self.assertEqual(batcher.held, 0)

    def test_limitCountsExpired(self) -> None:
        """When items expired but their batch is still being flushed, they still count
        against the limit (they are still held); waiting items that expired do not."""
        flush = FakeFlush(self.clock, hold=True)
        batcher = self.batcher(flush, limit=2, overloaded=lambda: StoreUnavailable("full"))
        first = batcher.submit(1)
        self.clock.advance(0)
        second = batcher.submit(2)
        self.clock.advance(5)
        self.assertEqual((self.reason(first), self.reason(second)), ("sent", "not sent"))
        self.assertEqual(batcher.held, 1)  # 2 was dropped, 1 is still in the flush
        third = batcher.submit(3)
        self.assertEqual(self.failureResultOf(batcher.submit(4), StoreUnavailable).value.reason,
                         "full")
        flush.release()
        self.clock.advance(0)
        flush.release()
        self.assertEqual(self.successResultOf(third), 30)


class SizedItemTests(SynchronousTestCase):
    """Items that count as several (a batch push of many jobs): C{size}."""

    def setUp(self) -> None:
        self.clock = Clock()

    def test_maxBatchCountsSizes(self) -> None:
        """When items have sizes, a flush takes items while their sizes fit C{max_batch},
        and at least one, however large."""
        flush = FakeFlush(self.clock)
        batcher: TurnBatcher[int, int] = TurnBatcher(
            self.clock, flush, max_batch=10, size=lambda item: item)
        results = [batcher.submit(i) for i in (4, 5, 2, 30, 1)]
        self.clock.advance(0)
        self.assertEqual([items for _, items in flush.batches], [[4, 5], [2], [30], [1]])
        self.assertEqual([self.successResultOf(d) for d in results], [40, 50, 20, 300, 10])
        self.assertEqual(batcher.held, 0)

    def test_limitCountsSizes(self) -> None:
        """When items have sizes, the held count is their sum: an item that would take it
        past C{limit} is refused, except when nothing is held (it then goes alone)."""
        flush = FakeFlush(self.clock, hold=True)
        batcher: TurnBatcher[int, int] = TurnBatcher(
            self.clock, flush, limit=10, size=lambda item: item,
            overloaded=lambda: StoreUnavailable("full"))
        large = batcher.submit(25)
        self.assertEqual(batcher.held, 25)
        self.failureResultOf(batcher.submit(1), StoreUnavailable)
        self.clock.advance(0)
        flush.release()
        self.assertEqual(self.successResultOf(large), 250)
        self.assertEqual(batcher.held, 0)
        held = [batcher.submit(6), batcher.submit(4)]
        self.assertEqual(batcher.held, 10)
        self.failureResultOf(batcher.submit(1), StoreUnavailable)
        self.clock.advance(0)
        flush.release()
        self.assertEqual([self.successResultOf(d) for d in held], [60, 40])
        self.assertEqual(self.clock.getDelayedCalls(), [])
