"""Tests for L{fireworq.cluster.ownership}: the life of a queue on a node (issue 8 items 4, 6
and 10), on a L{GuardedClock} against the in-memory driver.

Several nodes share one L{LockTable} and one L{MemoryStore}, as MySQL nodes share a server
and a database: L{LockTable.end_session} is a node's session dying. A node's queue is driven
either through a L{FakeDispatch} that records what ownership tells it (the state machine
alone), or through a real L{QueueDispatcher} (recovery and sweeps against deliveries in
flight).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Collection, Mapping

from clocks import GuardedClock
from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from fireworq.cluster.memory import LockTable, MemoryLocks
from fireworq.cluster.ownership import (
    PREFERENCE_GRACE,
    RECOVERY_RETRY_DELAYS,
    SWEEP_INTERVAL,
    OwnershipState,
    OwnershipStatus,
    QueueOwnership,
)
from fireworq.errors import StoreUnavailable
from fireworq.model import InFlight, JobStatus, NewJob, Node
from fireworq.storage.memory import MemoryStore
from test_dispatcher import Harness, advance_to, run_turns, succeed_value

QUEUE = "mail"
WAITING, RECOVERING, RETRYING, DISPATCHING = (
    OwnershipState.WAITING, OwnershipState.RECOVERING, OwnershipState.RETRYING,
    OwnershipState.DISPATCHING,
)


def new_job() -> NewJob:
    return NewJob("send", "http://worker.internal/", b"{}", 0, 0, 0, 0)


class FlakyStore(MemoryStore):
    """A L{MemoryStore} whose C{recover} fails the next C{fail_recover} times (an outage
    with C{StoreUnavailable}, a bug with C{RuntimeError} when C{recover_bug})."""

    def __init__(self, clock: GuardedClock) -> None:
        super().__init__(clock)
        self.fail_recover = 0
        self.recover_bug = False
        self.recover_times: list[float] = []
        self.clock = clock

    async def recover(self, table_name: str, keep: Collection[InFlight] = ()) -> int:
        self.recover_times.append(self.clock.seconds())
        if self.fail_recover:
            self.fail_recover -= 1
            if self.recover_bug:
                raise RuntimeError("bug in recovery")
            raise StoreUnavailable("recover: lock wait timeout")
        return await super().recover(table_name, keep)

    def push_now(self, table: str) -> int:
        return int(succeed_value(Deferred.fromCoroutine(self.push([(table, new_job())])))[0].id)

    def grab_as(self, grabber_id: int, table: str, limit: int = 1) -> list[Any]:
        ours, self.grabber_id = self.grabber_id, grabber_id
        try:
            return list(succeed_value(Deferred.fromCoroutine(self.grab(table, limit))))
        finally:
            self.grabber_id = ours

    def status_of(self, table: str, job_id: int) -> JobStatus:
        job = succeed_value(Deferred.fromCoroutine(self.get_job(table, job_id)))
        return JobStatus(job.status)


class FakeDispatch:
    """Records what ownership tells a queue's dispatcher."""

    def __init__(self, table: str = QUEUE) -> None:
        self.table = table
        self.owned = False
        self.active = False
        self.calls: list[tuple[str, bool]] = []
        self.in_flight: list[InFlight] = []

    def set_owned(self, owned: bool) -> None:
        self.owned = owned
        self.calls.append(("owned", owned))

    def set_active(self, active: bool) -> None:
        self.active = active
        self.calls.append(("active", active))

    def exclusive(self, action: Callable[[Collection[InFlight]], Awaitable[int]]) -> Deferred[int]:
        return Deferred.fromCoroutine(action(list(self.in_flight)))  # type: ignore[arg-type]


class HeldLocks(MemoryLocks):
    """L{MemoryLocks} whose checks can be held (C{hold}) or fail (C{fail_check})."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold: Deferred[None] | None = None
        self.fail_check = 0
        self.checks = 0

    async def check(self, queues: Mapping[str, str]) -> set[str]:
        self.checks += 1
        if self.hold is not None:
            await self.hold
        if self.fail_check:
            self.fail_check -= 1
            raise StoreUnavailable("check locks: connection refused")
        return await super().check(queues)


class Cluster:
    """Nodes on one lock table and one store, on one clock."""

    def __init__(self) -> None:
        self.clock = GuardedClock()
        self.store = FlakyStore(self.clock)
        self.table = LockTable()
        self.nodes: list[QueueOwnership] = []
        self.locks: list[HeldLocks] = []
        self.history: list[tuple[float, int, str, OwnershipState]] = []

    def node(self, index: int) -> Node:
        return Node(id=str(1000 + index), host="node%d" % index)

    def add(self, preferred: Callable[[str], bool] | None = None) -> QueueOwnership:
        index = len(self.nodes)
        locks = HeldLocks(self.store, self.node(index), self.table)
        ownership = QueueOwnership(locks, self.clock, preferred=preferred)
        ownership.subscribe(
            lambda name, state: self.history.append((self.clock.seconds(), index, name, state)))
        self.nodes.append(ownership)
        self.locks.append(locks)
        ownership.start()
        return ownership

    def states(self, name: str = QUEUE) -> list[OwnershipState | None]:
        return [None if (s := n.status(name)) is None else s.state for n in self.nodes]

    def stop(self) -> None:
        for ownership in self.nodes:
            ownership.stop()
        run_turns(self.clock)
        assert self.clock.getDelayedCalls() == [], self.clock.getDelayedCalls()


class StateMachineTests(SynchronousTestCase):
    """The states and their changes, with a L{FakeDispatch}."""

    def setUp(self) -> None:
        self.cluster = Cluster()
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def tearDown(self) -> None:
        self.cluster.stop()

    def messages(self, level: LogLevel) -> list[str]:
        return [formatEvent(e) for e in self.log if e["log_level"] is level]

    def test_takeOver(self) -> None:
        """When a node takes a queue's lock, it owns the queue, recovers the jobs left
        grabbed by anyone (but its deliveries in flight) and only then dispatches."""
        c = self.cluster
        orphan = c.store.push_now(QUEUE)
        kept = c.store.push_now(QUEUE)
        c.store.grab_as(4242, QUEUE)
        [in_flight] = c.store.grab_as(c.store.grabber_id, QUEUE)
        self.assertEqual(in_flight.id, kept)
        node = c.add()
        dispatch = FakeDispatch()
        dispatch.in_flight = [(in_flight.id, in_flight.grabber_id)]
        node.watch(QUEUE, dispatch)
        run_turns(c.clock)
        self.assertEqual(node.status(QUEUE), OwnershipStatus(DISPATCHING))
        self.assertTrue(node.dispatching(QUEUE))
        self.assertEqual(dispatch.calls, [("owned", True), ("active", True)])
        self.assertIs(c.store.status_of(QUEUE, orphan), JobStatus.CLAIMED)
        self.assertIs(c.store.status_of(QUEUE, kept), JobStatus.GRABBED)
        self.assertEqual([state for _, _, _, state in c.history], [RECOVERING, DISPATCHING])
        self.assertEqual(succeed_value(Deferred.fromCoroutine(node.node(QUEUE))), c.node(0))
        self.assertIn("Recovered 1 orphan job(s) of queue mail", self.messages(LogLevel.info))

    def test_processesPreferTheirOwnQueues(self) -> None:
        """When the processes of a node each prefer their share of the queues, a process
        started first leaves the queue it does not prefer to the one that does for
        ``PREFERENCE_GRACE`` seconds; if that one never comes (or goes), it takes it."""
        c = self.cluster
        first = c.add(preferred=lambda name: name == "a")
        first.watch("a", FakeDispatch("a"))
        first.watch("b", FakeDispatch("b"))
        run_turns(c.clock)
        c.clock.advance(2)
        run_turns(c.clock)
        self.assertEqual([first.dispatching("a"), first.dispatching("b")], [True, False])
        second = c.add(preferred=lambda name: name == "b")
        second.watch("a", FakeDispatch("a"))
        second.watch("b", FakeDispatch("b"))
        run_turns(c.clock)
        self.assertEqual([second.dispatching("a"), second.dispatching("b")], [False, True])
        c.clock.advance(PREFERENCE_GRACE)
        run_turns(c.clock)
        self.assertEqual([first.dispatching("a"), first.dispatching("b"),
                          second.dispatching("a"), second.dispatching("b")],
                         [True, False, False, True])
        third = c.add(preferred=lambda name: False)
        third.watch("c", FakeDispatch("c"))
        for _ in range(int(PREFERENCE_GRACE) - 1):
            c.clock.advance(1)
            run_turns(c.clock)
        self.assertFalse(third.dispatching("c"))
        c.clock.advance(1.5)
        run_turns(c.clock)
        self.assertTrue(third.dispatching("c"))

    def test_backupTakesOverWithinASecond(self) -> None:
        """When the active node's session ends (its process froze, its checks hang), it
        stops at once and a backup takes the queue over at its next check, within a second;
        never are both dispatching."""
        c = self.cluster
        first, second = c.add(), c.add()
        dispatches = [FakeDispatch(), FakeDispatch()]
        first.watch(QUEUE, dispatches[0])
        run_turns(c.clock)
        second.watch(QUEUE, dispatches[1])
        advance_to(c.clock, 5.0)
        self.assertEqual(c.states(), [DISPATCHING, WAITING])
        self.assertEqual(dispatches[1].calls, [])
        self.assertEqual(succeed_value(Deferred.fromCoroutine(second.node(QUEUE))), c.node(0))

        c.clock.advance(0.3)
        frozen: Deferred[None] = Deferred()
        c.locks[0].hold = frozen
        c.table.end_session(c.node(0))
        self.assertEqual(c.states(), [WAITING, WAITING])
        self.assertFalse(dispatches[0].active or dispatches[0].owned)
        for _ in range(200):
            c.clock.advance(0.005)
            self.assertLessEqual(c.states().count(DISPATCHING), 1)
        self.assertEqual(c.states(), [WAITING, DISPATCHING])
        taken = [when for when, index, _, state in c.history
                 if index == 1 and state is DISPATCHING]
        self.assertEqual(len(taken), 1)
        self.assertLessEqual(abs(taken[0] - 6.0), 0.006, taken)  # its next check
        # Thawed, the first node's checks find the lock taken: it stays a backup.
        c.locks[0].hold = None
        frozen.callback(None)
        advance_to(c.clock, 10.0)
        self.assertEqual(c.states(), [WAITING, DISPATCHING])

    def test_recoveryRetriedForEver(self) -> None:
        """When recovery fails, the node keeps the lock and retries after 1, 2, 5, 10, 20, then
        every 30 s, for as long as it holds the lock: each failure is logged as an error and
        shown in its status; once recovery succeeds it dispatches (issue 8 item 4)."""
        c = self.cluster
        c.store.fail_recover = 12
        node = c.add()
        dispatch = FakeDispatch()
        node.watch(QUEUE, dispatch)
        run_turns(c.clock)
        self.assertEqual(node.status(QUEUE), OwnershipStatus(
            RETRYING, 1, "recover: lock wait timeout"))
        self.assertTrue(dispatch.owned)
        self.assertFalse(dispatch.active)
        advance_to(c.clock, 200.0)
        status = node.status(QUEUE)
        assert status is not None
        self.assertEqual((status.state, status.failures), (RETRYING, 11))
        advance_to(c.clock, 400.0)
        self.assertEqual(node.status(QUEUE), OwnershipStatus(DISPATCHING))
        self.assertTrue(dispatch.active)
        attempts = c.store.recover_times[:13]  # then sweeps, once a minute
        gaps = [b - a for a, b in zip(attempts, attempts[1:])]
        self.assertEqual(gaps, [*RECOVERY_RETRY_DELAYS, 30.0, 30.0, 30.0, 30.0, 30.0, 30.0])
        self.assertEqual(max(gaps), 30.0)
        errors = self.messages(LogLevel.error)
        self.assertEqual(len(errors), 12)
        self.assertIn("Cannot take queue mail over: recovering its orphan jobs failed"
                      " (recover: lock wait timeout)", errors[0])
        self.assertIn("Failed 12 time(s); next attempt in 30 s", errors[-1])
        self.assertIn("Queue mail taken over after 12 failed recoveries",
                      self.messages(LogLevel.info))
        self.assertEqual(c.table.holder(QUEUE), c.node(0))

    def test_unexpectedRecoveryErrorRetried(self) -> None:
        """When recovery fails with an unexpected error, it is logged with its traceback and
        retried the same way."""
        c = self.cluster
        c.store.fail_recover, c.store.recover_bug = 2, True
        node = c.add()
        node.watch(QUEUE, FakeDispatch())
        run_turns(c.clock)
        self.assertEqual(node.status(QUEUE), OwnershipStatus(
            RETRYING, 1, "RuntimeError: bug in recovery"))
        advance_to(c.clock, 3.0)
        self.assertEqual(node.status(QUEUE), OwnershipStatus(DISPATCHING))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_lossDuringRetries(self) -> None:
        """When the lock is lost while recovery waits to be retried, the retries stop: the
        node is a backup again, and takes the queue anew (failures counted afresh) once the
        lock is free."""
        c = self.cluster
        c.store.fail_recover = 100
        node = c.add()
        node.watch(QUEUE, FakeDispatch())
        advance_to(c.clock, 4.0)
        self.assertEqual(len(c.store.recover_times), 3)  # t=0, 1, 3
        other = Node("9", "elsewhere")
        c.locks[0].hold = Deferred()  # the next check waits: the other node is faster
        c.table.end_session(c.node(0))
        self.assertTrue(c.table.take(QUEUE, other))
        self.assertEqual(node.status(QUEUE), OwnershipStatus(WAITING))
        hold, c.locks[0].hold = c.locks[0].hold, None
        hold.callback(None)
        advance_to(c.clock, 60.0)
        self.assertEqual(len(c.store.recover_times), 3)
        self.assertEqual(node.status(QUEUE), OwnershipStatus(WAITING))
        c.store.fail_recover = 0
        c.table.release(QUEUE, other)
        advance_to(c.clock, 61.0)
        self.assertEqual(node.status(QUEUE), OwnershipStatus(DISPATCHING))

    def test_checkFailureStopsDispatching(self) -> None:
        """When a lock check fails (the store is away), every queue stops at once; the next
        check that succeeds takes them again, with recovery first."""
        c = self.cluster
        node = c.add()
        dispatches = {name: FakeDispatch(name) for name in ("a", "b")}
        for name, dispatch in dispatches.items():
            node.watch(name, dispatch)
        run_turns(c.clock)
        self.assertEqual([c.states(n) for n in "ab"], [[DISPATCHING], [DISPATCHING]])
        c.locks[0].fail_check = 3
        advance_to(c.clock, 1.0)
        self.assertEqual([c.states(n) for n in "ab"], [[WAITING], [WAITING]])
        self.assertFalse(any(d.active or d.owned for d in dispatches.values()))
        self.assertIn("Lost contact with the database (check locks: connection refused):"
                      " dispatching paused", self.messages(LogLevel.warn))
        advance_to(c.clock, 3.5)
        self.assertEqual([c.states(n) for n in "ab"], [[WAITING], [WAITING]])
        recoveries = len(c.store.recover_times)
        advance_to(c.clock, 4.0)
        self.assertEqual([c.states(n) for n in "ab"], [[DISPATCHING], [DISPATCHING]])
        self.assertEqual(len(c.store.recover_times), recoveries + 2)

    def test_answerOlderThanLossIgnored(self) -> None:
        """When the session ends while a check is on its way, that check's answer (which may
        predate the loss) is not acted on; the node checks again at once."""
        c = self.cluster
        node = c.add()
        node.watch(QUEUE, FakeDispatch())
        run_turns(c.clock)
        c.locks[0].hold = Deferred()
        checks = c.locks[0].checks
        c.clock.advance(1.0)  # a check, held
        self.assertEqual(c.locks[0].checks, checks + 1)
        c.table.end_session(c.node(0))
        self.assertTrue(c.table.take(QUEUE, Node("9", "elsewhere")))
        c.locks[0].hold.callback(None)
        c.locks[0].hold = None
        run_turns(c.clock)
        self.assertEqual(c.locks[0].checks, checks + 2)
        self.assertEqual(node.status(QUEUE), OwnershipStatus(WAITING))
        self.assertEqual(c.history[-1][3], WAITING)

    def test_unwatch(self) -> None:
        """When a queue is unwatched (deleted), it stops and its lock is given up."""
        c = self.cluster
        node = c.add()
        dispatch = FakeDispatch()
        node.watch(QUEUE, dispatch)
        run_turns(c.clock)
        node.unwatch(QUEUE)
        run_turns(c.clock)
        self.assertIsNone(node.status(QUEUE))
        self.assertFalse(dispatch.active or dispatch.owned)
        self.assertIsNone(c.table.holder(QUEUE))
        self.assertFalse(node.dispatching(QUEUE))

    def test_stop(self) -> None:
        """When ownership stops, every queue stops and every lock is given up."""
        c = self.cluster
        node = c.add()
        dispatches = [FakeDispatch("a"), FakeDispatch("b")]
        node.watch("a", dispatches[0])
        node.watch("b", dispatches[1])
        run_turns(c.clock)
        self.successResultOf(node.stop())
        self.assertEqual([c.table.holder("a"), c.table.holder("b")], [None, None])
        self.assertFalse(any(d.active or d.owned for d in dispatches))
        self.assertEqual(c.clock.getDelayedCalls(), [])


class SweepTests(SynchronousTestCase):
    """While dispatching, jobs grabbed with no delivery in flight go back to waiting (issue 8
    item 6), with a real dispatcher."""

    def setUp(self) -> None:
        self.h = Harness(max_workers=2)
        self.locks = MemoryLocks(self.h.store)  # type: ignore[arg-type]
        self.ownership = QueueOwnership(self.locks, self.h.clock)
        self.ownership.start()
        self.h.dispatcher.start()
        self.ownership.watch(QUEUE, self.h.dispatcher)
        run_turns(self.h.clock)

    def tearDown(self) -> None:
        stopped = self.h.dispatcher.stop()
        self.h.deliverer.script = lambda job: self.fail("no delivery expected")  # type: ignore
        for pending in list(self.h.deliverer.pending.values()):
            pending.cancel()
        run_turns(self.h.clock)
        self.successResultOf(stopped)
        self.successResultOf(self.ownership.stop())
        self.assertEqual(self.h.pending_calls(), [])

    def test_jobLeftGrabbedIsDeliveredAgain(self) -> None:
        """When a job's outcome write failed for good (an unexpected error), the job is set
        back to waiting at the next sweep and delivered again; a job in flight meanwhile is
        left alone."""
        h = self.h
        [lost, busy] = h.push(count=2)
        advance_to(h.clock, 0.5)
        self.assertEqual(sorted(h.deliverer.pending), [lost, busy])

        async def broken(completion: Any) -> None:
            raise ValueError("bug")

        write = h.dispatcher._write_completion
        h.dispatcher._write_completion = broken
        h.deliverer.finish(lost)
        run_turns(h.clock)
        h.dispatcher._write_completion = write
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertIs(h.stored(lost).status, JobStatus.GRABBED)
        advance_to(h.clock, SWEEP_INTERVAL - 0.5)
        self.assertIs(h.stored(lost).status, JobStatus.GRABBED)
        advance_to(h.clock, SWEEP_INTERVAL + 0.5)
        self.assertEqual(sorted(h.deliverer.pending), [lost, busy])
        self.assertEqual([job.id for _, job in h.deliverer.calls], [lost, busy, lost])
        h.deliverer.finish(lost)
        h.deliverer.finish(busy)
        run_turns(h.clock)
        self.assertIsNone(h.stored(lost))
        self.assertIsNone(h.stored(busy))

    def test_sweepEveryInterval(self) -> None:
        """When nothing is left grabbed, sweeps still look once per interval, and find
        nothing."""
        h = self.h
        advance_to(h.clock, SWEEP_INTERVAL * 3 + 0.5)
        recovered = []
        real = self.locks.recover

        async def counting(table: str, keep: Collection[InFlight]) -> int:
            recovered.append(h.clock.seconds())
            return await real(table, keep)

        self.locks.recover = counting  # type: ignore[method-assign]
        advance_to(h.clock, SWEEP_INTERVAL * 5 + 0.5)
        self.assertEqual(recovered, [SWEEP_INTERVAL * 4, SWEEP_INTERVAL * 5])
