"""One poll timer per interval for the dispatchers of a process (``fireworq.dispatch.ticker``),
on a Clock."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fireworq.dispatch.ticker import PollTicker
from fireworq.errors import StoreUnavailable


class PollTickerTests(SynchronousTestCase):
    def test_polls_of_one_interval_share_one_timer_on_its_multiples(self) -> None:
        clock = Clock()
        clock.advance(10.05)
        ticker = PollTicker(clock)
        seen: list[tuple[str, float]] = []
        removers = [ticker.add(0.2, lambda n=n: seen.append((n, round(clock.seconds(), 3))))
                    for n in ("a", "b", "c")]
        other = ticker.add(1.0, lambda: seen.append(("slow", round(clock.seconds(), 3))))
        self.assertEqual(len(clock.getDelayedCalls()), 2)  # one per interval
        clock.pump([0.05] * 19)  # to 11.0
        self.assertEqual(seen, [("a", 10.2), ("b", 10.2), ("c", 10.2),
                                ("a", 10.4), ("b", 10.4), ("c", 10.4),
                                ("a", 10.6), ("b", 10.6), ("c", 10.6),
                                ("a", 10.8), ("b", 10.8), ("c", 10.8),
                                ("slow", 11.0), ("a", 11.0), ("b", 11.0), ("c", 11.0)])
        for remove in [*removers, other]:
            remove()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_poll_is_skipped_while_its_check_runs(self) -> None:
        clock = Clock()
        ticker = PollTicker(clock)
        checks: list[Deferred[None]] = []

        def poll() -> Deferred[None]:
            checks.append(Deferred())
            return checks[-1]

        remove = ticker.add(1.0, poll)
        clock.pump([1.0, 1.0, 1.0])
        self.assertEqual(len(checks), 1)
        checks[0].callback(None)
        clock.advance(1.0)
        self.assertEqual(len(checks), 2)
        remove()
        checks[1].callback(None)
        clock.advance(5.0)
        self.assertEqual(len(checks), 2)
        self.assertEqual(clock.getDelayedCalls(), [])


class Polled:
    def __init__(self, table: str | None) -> None:
        self.table = table
        self.found = 0

    def poll_table(self) -> str | None:
        return self.table

    def found_due(self) -> None:
        self.found += 1


class TogetherTests(SynchronousTestCase):
    def test_the_tables_of_an_interval_are_checked_in_one_call(self) -> None:
        """The dispatchers ready to grab are checked together, one call at a time; those
        whose tables have due jobs are told."""
        clock = Clock()
        calls: list[list[str]] = []
        answers: list[Deferred[set[str]]] = []

        def due_tables(tables: list[str]) -> Deferred[set[str]]:
            calls.append(list(tables))
            answers.append(Deferred())
            return answers[-1]

        ticker = PollTicker(clock, due_tables)  # type: ignore[arg-type]
        a, b, busy = Polled("a"), Polled("b"), Polled(None)
        removers = [ticker.add_polled(1.0, p) for p in (a, b, busy)]
        clock.advance(1.0)
        self.assertEqual(calls, [["a", "b"]])
        clock.advance(1.0)  # the first check still runs: no second one
        self.assertEqual(len(calls), 1)
        answers[0].callback({"b"})
        self.assertEqual((a.found, b.found, busy.found), (0, 1, 0))
        clock.advance(1.0)
        self.assertEqual(len(calls), 2)
        answers[1].errback(StoreUnavailable("connection refused"))
        for remove in removers:
            remove()
        self.assertEqual(clock.getDelayedCalls(), [])
