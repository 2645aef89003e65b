"""StoreCounts: the store-backed figures of /metrics, read at most once per interval and by one
read at a time, on a Clock against a store whose counts answer when the test says."""

from __future__ import annotations

from typing import Mapping, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fireworq.errors import StoreUnavailable
from fireworq.model import StateCounts
from fireworq.storecounts import REFRESH_INTERVAL, StoreCounts

TIMEOUT = 2.0


class HeldStore:
    """A store whose counts are answered by the test: each call waits on a Deferred."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.pending: list[Deferred[dict[str, StateCounts]]] = []

    async def counts(self, tables: Sequence[str]) -> dict[str, StateCounts]:
        self.calls.append(list(tables))
        answer: Deferred[dict[str, StateCounts]] = Deferred()
        self.pending.append(answer)
        return await answer

    def answer(self, waiting: int = 1) -> None:
        answer = self.pending.pop(0)
        answer.callback({table: StateCounts(waiting=waiting) for table in self.calls[-1]})

    def fail(self) -> None:
        self.pending.pop(0).errback(StoreUnavailable("connection refused"))


class StoreCountsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = HeldStore()
        self.counts = StoreCounts(self.store, self.clock, timeout=TIMEOUT)  # type: ignore[arg-type]

    def read(self, *tables: str) -> Deferred[Mapping[str, StateCounts] | None]:
        return Deferred.fromCoroutine(self.counts.read(list(tables) or ["mail"]))

    def test_concurrentScrapesShareOneRead(self) -> None:
        """When scrapes come while a read of the store runs, they wait for that read and
        start none of their own."""
        first, second = self.read(), self.read()
        self.assertEqual(len(self.store.calls), 1)
        self.store.answer(3)
        expected = {"mail": StateCounts(waiting=3)}
        self.assertEqual(self.successResultOf(first), expected)
        self.assertEqual(self.successResultOf(second), expected)

    def test_servedForTheInterval(self) -> None:
        """When a reading is younger than the refresh interval, scrapes get it without asking
        the store; once it is older, the store is read again."""
        first = self.read()
        self.store.answer(1)
        self.successResultOf(first)
        for _ in range(10):
            self.clock.advance(REFRESH_INTERVAL / 10 - 0.001)
            self.assertEqual(self.successResultOf(self.read()), {"mail": StateCounts(waiting=1)})
        self.assertEqual(len(self.store.calls), 1)
        self.clock.advance(0.01)
        later = self.read()
        self.assertEqual(len(self.store.calls), 2)
        self.store.answer(2)
        self.assertEqual(self.successResultOf(later), {"mail": StateCounts(waiting=2)})

    def test_slowStoreNeverPilesUp(self) -> None:
        """When the store does not answer within the timeout, the scrape gets nothing; the
        read goes on, later scrapes wait for it instead of starting another, and its answer
        serves the scrapes after it."""
        first = self.read()
        self.clock.advance(TIMEOUT)
        self.assertIsNone(self.successResultOf(first))
        for _ in range(5):
            late = self.read()
            self.clock.advance(TIMEOUT)
            self.assertIsNone(self.successResultOf(late))
        self.assertEqual(len(self.store.calls), 1)
        waiting = self.read()
        self.store.answer(7)
        self.assertEqual(self.successResultOf(waiting), {"mail": StateCounts(waiting=7)})
        self.assertEqual(self.successResultOf(self.read()), {"mail": StateCounts(waiting=7)})
        self.assertEqual(len(self.store.calls), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_storeDownNotAskedByEveryScrape(self) -> None:
        """When the store fails, scrapes get nothing for the interval without asking it again,
        then it is asked again."""
        first = self.read()
        self.store.fail()
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(self.read()))
        self.assertEqual(len(self.store.calls), 1)
        self.clock.advance(REFRESH_INTERVAL)
        again = self.read()
        self.store.answer(1)
        self.assertEqual(self.successResultOf(again), {"mail": StateCounts(waiting=1)})
        self.assertEqual(len(self.store.calls), 2)

    def test_newTableReadsAgain(self) -> None:
        """When a scrape asks for a table the reading lacks (a queue defined since), the store
        is read again, for every table asked."""
        first = self.read("mail")
        self.store.answer(1)
        self.successResultOf(first)
        both = self.read("mail", "bulk", "mail")
        self.assertEqual(self.store.calls, [["mail"], ["bulk", "mail"]])
        self.store.answer(2)
        expected = {"mail": StateCounts(waiting=2), "bulk": StateCounts(waiting=2)}
        self.assertEqual(self.successResultOf(both), expected)
        self.assertEqual(self.successResultOf(self.read("bulk")), expected)
        self.assertEqual(len(self.store.calls), 2)

    def test_storeAnsweringAtOnce(self) -> None:
        """When the store answers at once, the reading is served and the next read after the
        interval asks again."""
        store = ImmediateStore()
        counts = StoreCounts(store, self.clock, timeout=TIMEOUT)  # type: ignore[arg-type]
        for _ in range(3):
            self.assertEqual(self.successResultOf(Deferred.fromCoroutine(counts.read(["a"]))),
                             {"a": StateCounts(waiting=1)})
        self.clock.advance(REFRESH_INTERVAL)
        self.successResultOf(Deferred.fromCoroutine(counts.read(["a"])))
        self.assertEqual(store.calls, 2)


class ImmediateStore:
    def __init__(self) -> None:
        self.calls = 0

    async def counts(self, tables: Sequence[str]) -> dict[str, StateCounts]:
        self.calls += 1
        return {table: StateCounts(waiting=1) for table in tables}
