"""Tests for L{fireworq.dispatch.dispatcher}: docs/worker-protocol.md, docs/index.md (Life of a
job), the queue stats and the queue log.

Everything runs on a L{task.Clock}: the store is a L{MemoryStore} (behind a spy that counts and
can fail or hold its calls), the deliverer a fake whose results the test fires by hand, and the
queue log writes to a L{io.BytesIO}. Due checks and completion writes go through
L{TurnBatcher}s wired as L{QueueManager} wires them.
"""

from __future__ import annotations

import io
import json
import random
from typing import Any, Awaitable, Callable, Sequence

from clocks import GuardedClock
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fireworq.cluster.memory import MemoryLocks
from fireworq.cluster.ownership import QueueOwnership
from fireworq.dispatch.batching import TurnBatcher
from fireworq.dispatch.dispatcher import (
    UNOWNED_WRITE_PATIENCE,
    QueueDispatcher,
    completion_kind,
)
from fireworq.dispatch.stats import DELIVERY_BUCKETS, Histogram, QueueStats, RateWindow
from fireworq.errors import StoreUnavailable
from fireworq.logs import LineWriter, QueueLog
from fireworq.model import (
    Completion,
    CompletionKind,
    FailedOrder,
    Job,
    JobStatus,
    NewJob,
    QueueDefinition,
    Routing,
    WorkerResult,
)
from fireworq.queues import QueueDefaults, QueueManager
from fireworq.storage.memory import MemoryStore

QUEUE = "mail"
SUCCESS = WorkerResult("success", 200, "sent")
FAILURE = WorkerResult("failure", 500, "boom")
PERMANENT = WorkerResult("permanent-failure", 400, "bad address")
#: Member order of a queue-log line (docs/configuration.md, Queue log).
LOG_MEMBERS = [
    "level", "time", "tag", "action", "queue", "category", "id", "status", "created_at",
    "elapsed", "url", "payload", "next_try", "retry_count", "retry_delay", "fail_count",
    "timeout", "message",
]


def new_job(
    run_after: int = 0, max_retries: int = 0, retry_delay: int = 0, timeout: int = 0,
    category: str = "send_welcome",
) -> NewJob:
    return NewJob(
        category=category, url="http://worker.internal:8000/send", payload=b'{"user": 42}',
        run_after=run_after, max_retries=max_retries, retry_delay=retry_delay, timeout=timeout,
    )


def run_turns(clock: Clock, limit: int = 10000) -> None:
    """Run every call due now, including those the calls schedule for now.

    A timer that keeps rescheduling itself for the same instant fails the test instead of
    hanging it.
    """
    for _ in range(limit):
        if not any(call.getTime() <= clock.seconds() for call in clock.getDelayedCalls()):
            return
        clock.advance(0)
    raise AssertionError("calls keep being scheduled at t=%r" % (clock.seconds(),))


def advance_to(clock: Clock, when: float) -> None:
    """Move the clock to C{when}, stopping at every delayed call on the way (C{Clock.advance}
    alone fires a LoopingCall only once)."""
    while True:
        run_turns(clock)
        upcoming = [call.getTime() for call in clock.getDelayedCalls()]
        target = min([t for t in upcoming if t <= when], default=when)
        while clock.seconds() < target:
            clock.advance(target - clock.seconds())
        if target >= when:
            run_turns(clock)
            return


class FakeDeliverer:
    """Records each delivery; results come from C{script} or are fired by hand."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.calls: list[tuple[float, Job]] = []
        self.pending: dict[int, Deferred[WorkerResult]] = {}
        self.cancelled: list[int] = []
        #: When set, every delivery ends at once with what it returns.
        self.script: Callable[[Job], WorkerResult] | None = None
        self.running = 0
        self.most_running = 0

    @property
    def times(self) -> list[float]:
        return [when for when, _ in self.calls]

    async def deliver(self, job: Job, queue: object = None) -> WorkerResult:
        self.calls.append((self._clock.seconds(), job))
        if self.script is not None:
            return self.script(job)
        self.running += 1
        self.most_running = max(self.most_running, self.running)

        def cancel(_: object) -> None:
            self.cancelled.append(job.id)

        result: Deferred[WorkerResult] = Deferred(cancel)
        self.pending[job.id] = result
        try:
            return await result
        finally:
            self.running -= 1
            self.pending.pop(job.id, None)

    def finish(self, job_id: int, result: WorkerResult = SUCCESS) -> None:
        self.pending[job_id].callback(result)


class SpyStore:
    """A L{MemoryStore} whose dispatcher-facing calls are counted, and can fail or be held."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.memory = MemoryStore(clock)
        self.grabs: list[tuple[float, str, int]] = []
        self.due_calls: list[tuple[float, list[str]]] = []
        self.completes: list[tuple[float, list[Completion]]] = []
        self.fail_grab = 0
        self.fail_due = 0
        self.fail_complete = 0
        #: When set, a grab waits for this Deferred before it reads the store.
        self.hold_grab: Deferred[None] | None = None
        #: Called with the limit of each grab, before it runs.
        self.on_grab: Callable[[int], None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.memory, name)

    async def grab(self, table: str, limit: int) -> list[Job]:
        self.grabs.append((self._clock.seconds(), table, limit))
        if self.on_grab is not None:
            self.on_grab(limit)
        if self.hold_grab is not None:
            await self.hold_grab
        if self.fail_grab:
            self.fail_grab -= 1
            raise StoreUnavailable("grab refused")
        return await self.memory.grab(table, limit)

    async def due_tables(self, tables: Sequence[str]) -> set[str]:
        self.due_calls.append((self._clock.seconds(), list(tables)))
        if self.fail_due:
            self.fail_due -= 1
            raise StoreUnavailable("due check refused")
        return await self.memory.due_tables(tables)

    async def complete(self, completions: Sequence[Completion]) -> None:
        self.completes.append((self._clock.seconds(), list(completions)))
        if self.fail_complete:
            self.fail_complete -= 1
            raise StoreUnavailable("complete refused")
        await self.memory.complete(completions)

    def push_now(self, table: str, job: NewJob) -> int:
        pushed = succeed_value(Deferred.fromCoroutine(self.memory.push([(table, job)])))
        return pushed[0].id

    def job(self, table: str, job_id: int) -> Job | None:
        return succeed_value(Deferred.fromCoroutine(self.memory.get_job(table, job_id)))


def succeed_value(d: Deferred[Any]) -> Any:
    """The result of a Deferred that has already fired (the memory store never waits)."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


class Harness:
    """A dispatcher wired as L{QueueManager} wires it, on fakes."""

    def __init__(
        self,
        polling_interval: int = 200,
        max_workers: int = 3,
        rate: float = 0.0,
        burst: int = 0,
        level: str = "info",
        due_check: Callable[[str], Awaitable[bool]] | None = None,
        start_at: float = 0.0,
        random: Callable[[], float] | None = None,
        **members: Any,
    ) -> None:
        self.clock = GuardedClock()
        self.clock.advance(start_at)
        self.store = SpyStore(self.clock)
        self.deliverer = FakeDeliverer(self.clock)
        self.log_stream = io.BytesIO()
        self.writer = LineWriter(self.clock, "", self.log_stream)
        self.queue_log = QueueLog(self.writer, self.clock, "fireworq.queue", level)
        self.due: TurnBatcher[str, bool] = TurnBatcher(self.clock, self._due_tables, delay=0.005)
        self.completions: TurnBatcher[Completion, None] = TurnBatcher(self.clock, self._complete)
        self.stats = QueueStats(self.clock)
        self.definition = QueueDefinition(
            name=QUEUE, polling_interval=polling_interval, max_workers=max_workers,
            max_dispatches_per_second=rate, max_burst_size=burst, **members,
        )
        self.dispatcher = QueueDispatcher(
            self.definition, clock=self.clock, store=self.store, deliverer=self.deliverer,
            due_check=due_check or self.due.submit, write_completion=self.completions.submit,
            stats=self.stats, queue_log=self.queue_log, random=random,
        )

    async def _due_tables(self, tables: Sequence[str]) -> Sequence[bool]:
        due = await self.store.due_tables(sorted(set(tables)))
        return [table in due for table in tables]

    async def _complete(self, completions: Sequence[Completion]) -> Sequence[None]:
        await self.store.complete(completions)
        return [None] * len(completions)

    @property
    def table(self) -> str:
        return self.definition.table

    def push(self, job: NewJob | None = None, count: int = 1) -> list[int]:
        return [self.store.push_now(self.table, job or new_job()) for _ in range(count)]

    def activate(self) -> None:
        self.dispatcher.start()
        self.dispatcher.set_owned(True)
        self.dispatcher.set_active(True)
        run_turns(self.clock)

    def log_lines(self) -> list[dict[str, Any]]:
        self.writer.flush()
        return [json.loads(line) for line in self.log_stream.getvalue().splitlines()]

    def stored(self, job_id: int) -> Job | None:
        return self.store.job(self.table, job_id)

    def failures(self) -> list[Any]:
        page = succeed_value(Deferred.fromCoroutine(
            self.store.memory.list_failed(self.table, FailedOrder.FAILED, None, 100)
        ))
        return list(page.items)

    def pending_calls(self) -> list[Any]:
        self.writer.flush()
        return list(self.clock.getDelayedCalls())


class DispatcherTestCase(SynchronousTestCase):
    def assertTimes(self, actual: list[float], expected: list[float], places: int = 6) -> None:
        """The clock times C{actual} are C{expected}, to C{places} decimals."""
        self.assertEqual(len(actual), len(expected), (actual, expected))
        for got, want in zip(actual, expected):
            self.assertAlmostEqual(got, want, places=places)


class CompletionKindTests(SynchronousTestCase):
    """L{completion_kind} follows the table of docs/worker-protocol.md, What happens next."""

    def job(self, retry_count: int) -> Job:
        return Job(
            id=1, category="c", url="http://w/", payload=b"", status=JobStatus.GRABBED,
            created_at=0, next_try=0, retry_count=retry_count, retry_delay=0, fail_count=0,
            timeout=0,
        )

    def test_success(self) -> None:
        """When the result is C{success}, the job finishes, retries left or not."""
        self.assertIs(completion_kind(self.job(0), SUCCESS), CompletionKind.SUCCESS)
        self.assertIs(completion_kind(self.job(3), SUCCESS), CompletionKind.SUCCESS)

    def test_permanentFailure(self) -> None:
        """When the result is C{permanent-failure}, the job fails even with retries left."""
        self.assertIs(completion_kind(self.job(3), PERMANENT), CompletionKind.FAIL)

    def test_otherFailures(self) -> None:
        """When the result is any other status, the job is retried while retries are left."""
        for status in ("failure", "internal-failure", "", "SUCCESS"):
            result = WorkerResult(status, 0, "")
            self.assertIs(completion_kind(self.job(1), result), CompletionKind.RETRY)
            self.assertIs(completion_kind(self.job(0), result), CompletionKind.FAIL)


class PollCadenceTests(DispatcherTestCase):
    """The polling timer (docs/worker-protocol.md, In short)."""

    def setUp(self) -> None:
        self.checks: list[float] = []
        self.raise_next: list[Exception] = []

    async def due_check(self, table: str) -> bool:
        self.checks.append(self.h.clock.seconds())
        if self.raise_next:
            raise self.raise_next.pop(0)
        return False

    def make(self, **kwargs: Any) -> Harness:
        self.h = Harness(due_check=self.due_check, **kwargs)
        return self.h

    def test_everyInterval(self) -> None:
        """When the polling interval is 200 ms, a due check happens every 0.2 s of clock time
        and not in between."""
        h = self.make(polling_interval=200)
        h.activate()
        advance_to(h.clock, 1.0)
        self.assertTimes(self.checks, [0.2, 0.4, 0.6, 0.8, 1.0])

    def test_firstAligned(self) -> None:
        """When a dispatcher starts between two multiples of its interval, its first due check
        is at the next multiple."""
        h = self.make(polling_interval=200, start_at=0.13)
        h.activate()
        advance_to(h.clock, 0.65)
        self.assertTimes(self.checks, [0.2, 0.4, 0.6])

    def test_updateChangesCadence(self) -> None:
        """When C{update} changes the polling interval, later due checks follow the new interval,
        aligned to its multiples."""
        h = self.make(polling_interval=200)
        h.activate()
        advance_to(h.clock, 0.45)
        self.assertTimes(self.checks, [0.2, 0.4])
        h.dispatcher.update(QueueDefinition(name=QUEUE, polling_interval=500, max_workers=3))
        advance_to(h.clock, 2.05)
        self.assertTimes(self.checks, [0.2, 0.4, 0.5, 1.0, 1.5, 2.0])

    def test_updateWhileDueCheckRuns(self) -> None:
        """When C{update} changes the polling interval while a due check is still running, one
        polling loop remains, and none after C{stop}."""
        h = Harness(polling_interval=200)
        checks: list[tuple[float, Deferred[bool]]] = []
        slow = [True]

        def check(table: str) -> Deferred[bool]:
            d: Deferred[bool] = Deferred()
            if not slow[0]:  # answered 1 ms later, as a store would
                h.clock.callLater(0.001, d.callback, False)
            checks.append((h.clock.seconds(), d))
            return d

        h.dispatcher._due_check = check
        h.activate()
        advance_to(h.clock, 0.25)
        h.dispatcher.update(QueueDefinition(name=QUEUE, polling_interval=100, max_workers=3))
        advance_to(h.clock, 0.35)
        slow[0] = False
        checks[0][1].callback(False)  # the check of the old loop, at t=0.2
        checks[1][1].callback(False)  # the first check of the new loop, at t=0.3
        advance_to(h.clock, 1.0)
        expected = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
        self.assertTimes([when for when, _ in checks], expected)
        self.successResultOf(h.dispatcher.stop())
        advance_to(h.clock, 2.0)
        self.assertEqual(len(checks), len(expected))
        self.assertEqual(h.pending_calls(), [])

    def test_stopWhileDueCheckRuns(self) -> None:
        """When the dispatcher stops while a due check is running, the check's late answer
        neither polls again nor grabs."""
        h = Harness(polling_interval=200)
        pending: list[Deferred[bool]] = []

        def check(table: str) -> Deferred[bool]:
            pending.append(Deferred())
            return pending[-1]

        h.dispatcher._due_check = check
        h.activate()
        h.push()  # through another node: no wake-up
        advance_to(h.clock, 0.2)
        self.assertEqual(len(pending), 1)
        grabs = len(h.store.grabs)
        self.successResultOf(h.dispatcher.stop())
        pending[0].callback(True)
        advance_to(h.clock, 1.0)
        self.assertEqual(len(pending), 1)
        self.assertEqual(len(h.store.grabs), grabs)
        self.assertEqual(h.pending_calls(), [])

    def test_notWhileInactive(self) -> None:
        """When the node is not active for the queue, no due check happens; when it loses
        activation, due checks stop."""
        h = self.make(polling_interval=200)
        h.dispatcher.start()
        advance_to(h.clock, 1.0)
        self.assertEqual(self.checks, [])
        h.dispatcher.set_active(True)
        advance_to(h.clock, 1.5)
        self.assertTimes(self.checks, [1.2, 1.4])
        h.dispatcher.set_active(False)
        advance_to(h.clock, 3.0)
        self.assertTimes(self.checks, [1.2, 1.4])
        self.assertEqual([limit for _, _, limit in h.store.grabs], [3])

    def test_survivesException(self) -> None:
        """When a due check raises an unexpected exception, it is logged and polling goes on."""
        h = self.make(polling_interval=200)
        h.activate()
        self.raise_next.append(RuntimeError("oops"))
        advance_to(h.clock, 0.65)
        self.assertTimes(self.checks, [0.2, 0.4, 0.6])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_survivesStoreUnavailable(self) -> None:
        """When the store does not answer a due check, polling goes on and a later check that
        finds due jobs wakes the dispatcher."""
        h = Harness(polling_interval=200)
        h.activate()
        h.push()
        h.store.fail_due = 2
        advance_to(h.clock, 0.65)
        self.assertEqual(len(h.store.due_calls), 3)
        self.assertEqual(len(h.deliverer.calls), 1)
        self.assertAlmostEqual(h.deliverer.times[0], 0.605, places=6)

    def test_pollFindsPushFromElsewhere(self) -> None:
        """When a job is pushed without a wake-up (through another node), the next poll finds
        it and it is grabbed then."""
        h = Harness(polling_interval=200)
        h.activate()
        h.clock.advance(0.05)
        h.push()
        advance_to(h.clock, 0.19)
        self.assertEqual(h.deliverer.calls, [])
        advance_to(h.clock, 0.25)
        # The due check waits 5 ms for other queues' checks of the same turn.
        self.assertTimes(h.deliverer.times, [0.205])

    def test_delayedJob(self) -> None:
        """When a job is pushed with C{run_after}, it is delivered at the first poll after it is
        due."""
        h = Harness(polling_interval=200)
        h.activate()
        h.push(new_job(run_after=1))
        h.dispatcher.wake()
        run_turns(h.clock)
        self.assertEqual(h.deliverer.calls, [])
        advance_to(h.clock, 1.5)
        self.assertTimes(h.deliverer.times, [1.005])


class WakeTests(DispatcherTestCase):
    """Wake-up on push."""

    def test_grabbedSameTurn(self) -> None:
        """When a job is pushed and the dispatcher woken, it is grabbed and delivered in the
        same clock turn, without waiting for the poll."""
        h = Harness(polling_interval=200)
        h.activate()
        h.clock.advance(0.05)
        [job_id] = h.push()
        h.dispatcher.wake()
        h.clock.advance(0)
        self.assertEqual([job.id for _, job in h.deliverer.calls], [job_id])
        self.assertTimes(h.deliverer.times, [0.05])
        self.assertEqual(h.store.due_calls, [])

    def test_wakesOfOneTurnMakeOneGrab(self) -> None:
        """When several pushes wake the dispatcher in one turn, one grab takes them all."""
        h = Harness(max_workers=5)
        h.activate()
        grabs_before = len(h.store.grabs)
        for _ in range(3):
            h.push()
            h.dispatcher.wake()
        h.clock.advance(0)
        self.assertEqual(len(h.store.grabs), grabs_before + 1)
        self.assertEqual(len(h.deliverer.pending), 3)

    def test_activationGrabs(self) -> None:
        """When the node becomes active for a queue with due jobs, they are grabbed at once."""
        h = Harness()
        h.push(count=2)
        h.dispatcher.start()
        h.clock.advance(0)
        self.assertEqual(h.store.grabs, [])
        h.dispatcher.set_active(True)
        h.clock.advance(0)
        self.assertEqual(len(h.deliverer.pending), 2)

    def test_wakeBeforeStartIgnored(self) -> None:
        """When the dispatcher is woken before it started, nothing is grabbed."""
        h = Harness()
        h.push()
        h.dispatcher.set_active(True)
        h.dispatcher.wake()
        run_turns(h.clock)
        self.assertEqual(h.store.grabs, [])


class SlotTests(DispatcherTestCase):
    """Grabs are limited to free worker slots (docs/worker-protocol.md, In short)."""

    def test_firstGrabAsksForFreeSlots(self) -> None:
        """When 10 jobs are due and 3 workers free, the first grab asks for exactly 3 and 3
        deliveries are in flight."""
        h = Harness(max_workers=3)
        h.push(count=10)
        h.activate()
        self.assertEqual([limit for _, _, limit in h.store.grabs], [3])
        self.assertEqual(len(h.deliverer.pending), 3)
        self.assertEqual(h.dispatcher.snapshot().busy, 3)
        self.assertEqual(h.dispatcher.free_slots, 0)
        self.assertEqual(h.stats.total_pops, 3)

    def test_finishedSlotRefilled(self) -> None:
        """When a delivery of a full grab ends, a grab of one job follows at once; when two end
        in the same turn, one grab of two."""
        h = Harness(max_workers=3)
        h.push(count=10)
        h.activate()
        h.deliverer.finish(1)
        run_turns(h.clock)
        self.assertEqual([limit for _, _, limit in h.store.grabs], [3, 1])
        self.assertEqual(sorted(h.deliverer.pending), [2, 3, 4])
        h.deliverer.finish(2)
        h.deliverer.finish(3)
        run_turns(h.clock)
        self.assertEqual([limit for _, _, limit in h.store.grabs], [3, 1, 2])
        self.assertEqual(sorted(h.deliverer.pending), [4, 5, 6])
        self.assertEqual(h.store.due_calls, [])

    def test_neverMoreThanMaxWorkers(self) -> None:
        """When 50 jobs are delivered with deliveries ending at random moments, no grab asks for
        more than the free slots and at most max_workers deliveries run at any moment."""
        h = Harness(max_workers=4, polling_interval=100)
        rng = random.Random(4)
        for _ in range(50):
            h.push()
        over: list[tuple[int, int]] = []

        def check_grab(limit: int) -> None:
            if limit > h.dispatcher.free_slots or h.dispatcher.free_slots == 0:
                over.append((limit, h.dispatcher.free_slots))

        h.store.on_grab = check_grab
        h.activate()
        delivered: set[int] = set()
        for _ in range(2000):
            self.assertLessEqual(h.dispatcher.snapshot().busy, 4)
            self.assertLessEqual(len(h.deliverer.pending), 4)
            for job_id in list(h.deliverer.pending):
                if rng.random() < 0.3:
                    delivered.add(job_id)
                    h.deliverer.finish(job_id, rng.choice([SUCCESS, SUCCESS, FAILURE]))
                    if rng.random() < 0.5:
                        run_turns(h.clock)
            h.clock.advance(rng.choice([0, 0, 0.01, 0.05]))
            if len(delivered) == 50 and not h.deliverer.pending:
                break
        run_turns(h.clock)
        self.assertEqual(over, [])
        self.assertEqual(len(delivered), 50)
        self.assertLessEqual(h.deliverer.most_running, 4)
        self.assertEqual(h.stats.total_completes, 50)
        self.assertEqual(h.dispatcher.snapshot().busy, 0)

    def test_partialGrabWaits(self) -> None:
        """When a grab returned fewer jobs than asked, a delivery ending does not grab again;
        a wake-up or a poll that finds due jobs does."""
        h = Harness(max_workers=3, polling_interval=200)
        h.push(count=2)
        h.activate()
        self.assertEqual([limit for _, _, limit in h.store.grabs], [3])
        h.push()  # through another node: no wake-up
        h.deliverer.finish(1)
        run_turns(h.clock)
        self.assertEqual(len(h.store.grabs), 1)
        h.deliverer.finish(2)
        run_turns(h.clock)
        self.assertEqual(len(h.store.grabs), 1)
        advance_to(h.clock, 0.21)
        self.assertEqual([limit for _, _, limit in h.store.grabs], [3, 3])
        self.assertEqual(sorted(h.deliverer.pending), [3])
        # A wake-up grabs at once.
        h.push()
        h.dispatcher.wake()
        h.clock.advance(0)
        self.assertEqual(sorted(h.deliverer.pending), [3, 4])

    def test_noDueCheckWhileFull(self) -> None:
        """When every slot is busy, polls make no due check."""
        h = Harness(max_workers=2)
        h.push(count=5)
        h.activate()
        advance_to(h.clock, 1.0)
        self.assertEqual(h.store.due_calls, [])

    def test_moreWorkersGrabAtOnce(self) -> None:
        """When C{update} raises max_workers after a full grab, the new slots are filled at
        once."""
        h = Harness(max_workers=2)
        h.push(count=5)
        h.activate()
        h.dispatcher.update(QueueDefinition(name=QUEUE, polling_interval=200, max_workers=4))
        h.clock.advance(0)
        self.assertEqual([limit for _, _, limit in h.store.grabs], [2, 2])
        self.assertEqual(len(h.deliverer.pending), 4)

    def test_fewerWorkersWaitForSlots(self) -> None:
        """When C{update} lowers max_workers below the deliveries in flight, those finish, and
        nothing is grabbed until a slot is free under the new limit."""
        h = Harness(max_workers=3)
        h.push(count=6)
        h.activate()
        h.dispatcher.update(QueueDefinition(name=QUEUE, polling_interval=200, max_workers=1))
        h.deliverer.finish(1)
        h.deliverer.finish(2)
        run_turns(h.clock)
        advance_to(h.clock, 1.0)
        self.assertEqual(len(h.store.grabs), 1)
        self.assertEqual(h.dispatcher.free_slots, 0)
        h.deliverer.finish(3)
        run_turns(h.clock)
        self.assertEqual([limit for _, _, limit in h.store.grabs], [3, 1])
        self.assertEqual(sorted(h.deliverer.pending), [4])

    def test_grabStoreUnavailable(self) -> None:
        """When the store does not answer a grab, the next poll tries again."""
        h = Harness(max_workers=3)
        h.push()
        h.store.fail_grab = 1
        h.activate()
        self.assertEqual(len(h.store.grabs), 1)
        self.assertEqual(h.deliverer.calls, [])
        advance_to(h.clock, 0.25)
        self.assertEqual(len(h.store.grabs), 2)
        self.assertEqual(len(h.deliverer.pending), 1)

    def test_wakeDuringFailedGrab(self) -> None:
        """When a push wakes the dispatcher while a grab is running and that grab fails, a later
        poll still grabs the jobs."""
        h = Harness(max_workers=3)
        h.dispatcher.start()
        gate: Deferred[None] = Deferred()
        h.store.hold_grab = gate
        h.dispatcher.set_active(True)
        h.clock.advance(0)
        self.assertEqual(len(h.store.grabs), 1)
        h.push()
        h.dispatcher.wake()
        h.store.fail_grab = 1
        h.store.hold_grab = None
        gate.callback(None)
        run_turns(h.clock)
        self.assertEqual(h.deliverer.calls, [])
        advance_to(h.clock, 1.0)
        self.assertEqual(len(h.deliverer.pending), 1)


class ThrottleTests(DispatcherTestCase):
    """Throttled queues: docs/worker-protocol.md, In short and C{outstanding_jobs} of section 4."""

    def test_timing(self) -> None:
        """When the rate is 2/s and the burst 3, the first 3 deliveries start at once and then
        one every 0.5 s."""
        h = Harness(max_workers=10, polling_interval=100, rate=2, burst=3)
        h.deliverer.script = lambda job: SUCCESS
        h.push(count=8)
        h.activate()
        self.assertEqual(len(h.deliverer.calls), 3)
        self.assertEqual(h.dispatcher.snapshot().outstanding_jobs, 5)
        self.assertEqual(h.dispatcher.snapshot().busy, 5)  # the first 3 are done already
        advance_to(h.clock, 3.0)
        self.assertTimes(h.deliverer.times, [0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5], places=9)
        self.assertEqual([job.id for _, job in h.deliverer.calls], list(range(1, 9)))
        self.assertEqual(h.dispatcher.snapshot().outstanding_jobs, 0)
        self.assertEqual(h.stats.total_successes, 8)

    def test_outstandingJobs(self) -> None:
        """When grabbed jobs wait for a token, C{waiting_for_token} counts them and they hold
        their slots; jobs being delivered are not counted."""
        h = Harness(max_workers=4, polling_interval=100, rate=1, burst=1)
        h.push(count=6)
        h.activate()
        self.assertEqual(len(h.deliverer.pending), 1)
        self.assertEqual(h.dispatcher.snapshot().outstanding_jobs, 3)
        self.assertEqual(h.dispatcher.snapshot().busy, 4)
        advance_to(h.clock, 1.0)
        self.assertEqual(len(h.deliverer.pending), 2)
        self.assertEqual(h.dispatcher.snapshot().outstanding_jobs, 2)
        self.assertEqual(h.dispatcher.snapshot().busy, 4)

    def test_unthrottledOutstandingZero(self) -> None:
        """When the queue is not throttled, no job waits for a token."""
        h = Harness(max_workers=2)
        h.push(count=5)
        h.activate()
        self.assertEqual(h.dispatcher.snapshot().outstanding_jobs, 0)

    def test_throttleRemovedReleasesWaiters(self) -> None:
        """When C{update} removes the throttle, jobs waiting for a token are delivered at
        once."""
        h = Harness(max_workers=4, polling_interval=100, rate=1, burst=1)
        h.push(count=4)
        h.activate()
        self.assertEqual(len(h.deliverer.pending), 1)
        h.dispatcher.update(QueueDefinition(name=QUEUE, polling_interval=100, max_workers=4))
        self.assertEqual(len(h.deliverer.pending), 4)
        self.assertEqual(h.dispatcher.snapshot().outstanding_jobs, 0)

    def test_stopWaitsForTokens(self) -> None:
        """When C{stop} is called while grabbed jobs wait for a token, they are still sent as
        tokens come, and C{stop}'s Deferred fires after the last."""
        h = Harness(max_workers=3, polling_interval=100, rate=1, burst=1)
        h.deliverer.script = lambda job: SUCCESS
        h.push(count=5)
        h.activate()
        # The first job was sent and done at once, and its slot refilled: 4 grabbed.
        self.assertEqual([limit for _, _, limit in h.store.grabs], [3, 1])
        stopped = h.dispatcher.stop()
        advance_to(h.clock, 2.5)
        self.assertNoResult(stopped)
        advance_to(h.clock, 3.0)
        self.successResultOf(stopped)
        self.assertTimes(h.deliverer.times, [0.0, 1.0, 2.0, 3.0])
        self.assertEqual(len(h.store.grabs), 2)
        self.assertEqual(h.pending_calls(), [])

    def test_abandonWhileWaitingForToken(self) -> None:
        """When deliveries are abandoned while jobs wait for a token, those jobs are never sent
        and stay grabbed."""
        h = Harness(max_workers=3, polling_interval=100, rate=1, burst=1)
        h.push(count=3)
        h.activate()
        stopped = h.dispatcher.stop()
        self.assertNoResult(stopped)
        h.dispatcher.abandon()
        self.successResultOf(stopped)
        self.assertEqual(len(h.deliverer.calls), 1)
        self.assertEqual(h.dispatcher.snapshot().outstanding_jobs, 0)
        self.assertEqual(h.dispatcher.snapshot().busy, 0)
        for job_id in (1, 2, 3):
            self.assertIs(h.stored(job_id).status, JobStatus.GRABBED)
        advance_to(h.clock, 5.0)
        self.assertEqual(len(h.deliverer.calls), 1)
        self.assertEqual(h.pending_calls(), [])


class OutcomeTests(DispatcherTestCase):
    """Retries, failure log, stats and queue log: docs/worker-protocol.md, What happens next;
    docs/configuration.md, Queue log."""

    def test_retriesThenFailureLog(self) -> None:
        """When a job with max_retries 2 and retry_delay 30 keeps failing, it is attempted at
        t=0, t=30 and t=60 (found by the poll once due) and then lands in the failure log with
        fail_count 3."""
        h = Harness(polling_interval=200)
        h.deliverer.script = lambda job: FAILURE
        [job_id] = h.push(new_job(max_retries=2, retry_delay=30, timeout=10))
        h.activate()
        advance_to(h.clock, 61.0)
        times = h.deliverer.times
        self.assertEqual(len(times), 3)
        self.assertEqual(times[0], 0.0)
        for got, want in zip(times[1:], [30.0, 60.0]):
            self.assertGreaterEqual(got, want)
            self.assertLess(got, want + 0.21)
        self.assertIsNone(h.stored(job_id))
        [failed] = h.failures()
        self.assertEqual(failed.job_id, job_id)
        self.assertEqual(failed.fail_count, 3)
        self.assertEqual(failed.result, FAILURE)
        self.assertEqual(failed.created_at, 0)
        finished_ms = int(times[2] * 1000)
        s = h.stats
        self.assertEqual(
            (s.total_pops, s.total_successes, s.total_failures, s.total_permanent_failures,
             s.total_completes, s.total_elapsed),
            (3, 0, 3, 1, 1, finished_ms),
        )
        self.assertEqual(s.worker_failure_outcomes, 0)

        lines = h.log_lines()
        self.assertEqual([line["action"] for line in lines], ["retry", "retry", "complete"])
        for line in lines:
            self.assertEqual(list(line), LOG_MEMBERS)
            self.assertEqual(line["level"], "info")
            self.assertEqual(line["status"], "failed")
            self.assertEqual(line["message"], "boom")
            self.assertEqual(line["tag"], "fireworq.queue")
            self.assertEqual(line["queue"], QUEUE)
            self.assertEqual(line["id"], job_id)
            self.assertEqual(line["created_at"], 0)
            self.assertEqual(line["elapsed"], line["time"] - line["created_at"])
            self.assertEqual(line["retry_delay"], 30)
            self.assertEqual(line["timeout"], 10)
            self.assertEqual(line["payload"], '{"user": 42}')
        self.assertEqual([line["retry_count"] for line in lines], [2, 1, 0])
        self.assertEqual([line["fail_count"] for line in lines], [1, 2, 3])
        self.assertEqual(
            [line["time"] for line in lines], [int(t * 1000) for t in times]
        )
        # next_try is the one each attempt was made with.
        self.assertEqual(lines[0]["next_try"], 0)
        self.assertEqual(lines[1]["next_try"], 30000)
        self.assertEqual(lines[2]["next_try"], 30000 + int(times[1] * 1000))

    def test_debugLogsPops(self) -> None:
        """When the queue log level is debug, each grab writes a pop line; at info level it
        does not."""
        h = Harness(level="debug")
        h.deliverer.script = lambda job: SUCCESS
        [job_id] = h.push()
        h.activate()
        lines = h.log_lines()
        self.assertEqual([line["action"] for line in lines], ["pop", "complete"])
        pop = lines[0]
        self.assertEqual(list(pop), LOG_MEMBERS)
        self.assertEqual(
            (pop["level"], pop["status"], pop["message"], pop["fail_count"], pop["retry_count"]),
            ("debug", "grabbed", "A job grabbed", 0, 0),
        )
        info = Harness(level="info")
        info.deliverer.script = lambda job: SUCCESS
        info.push()
        info.activate()
        self.assertEqual([line["action"] for line in info.log_lines()], ["complete"])

    def test_permanentFailureNotRetried(self) -> None:
        """When the worker answers C{permanent-failure}, the job is not retried even with
        retries left, and lands in the failure log."""
        h = Harness()
        h.deliverer.script = lambda job: PERMANENT
        [job_id] = h.push(new_job(max_retries=5, retry_delay=1))
        h.activate()
        advance_to(h.clock, 10.0)
        self.assertEqual(len(h.deliverer.calls), 1)
        self.assertIsNone(h.stored(job_id))
        [failed] = h.failures()
        self.assertEqual((failed.fail_count, failed.result), (1, PERMANENT))
        s = h.stats
        self.assertEqual(
            (s.total_pops, s.total_successes, s.total_failures, s.total_permanent_failures,
             s.total_completes, s.worker_failure_outcomes),
            (1, 0, 1, 1, 1, 1),
        )
        [line] = h.log_lines()
        self.assertEqual(
            (line["action"], line["status"], line["fail_count"], line["retry_count"],
             line["message"]),
            ("complete", "failed", 1, 5, "bad address"),
        )

    def test_successDeletes(self) -> None:
        """When the worker answers C{success}, the job is removed and counted as a success and
        a complete, with its time since creation in C{total_elapsed}."""
        h = Harness()
        h.clock.advance(1.5)
        [job_id] = h.push()
        h.activate()
        h.clock.advance(0.25)
        h.deliverer.finish(job_id)
        run_turns(h.clock)
        self.assertIsNone(h.stored(job_id))
        self.assertEqual(h.failures(), [])
        s = h.stats
        self.assertEqual(
            (s.total_pops, s.total_successes, s.total_failures, s.total_permanent_failures,
             s.total_completes, s.total_elapsed),
            (1, 1, 0, 0, 1, 250),
        )
        self.assertEqual(s.latency_seconds.count, 1)
        self.assertEqual(s.delivery_seconds.count, 1)
        self.assertAlmostEqual(s.delivery_seconds.total, 0.25)
        [line] = h.log_lines()
        self.assertEqual(list(line), LOG_MEMBERS)
        self.assertEqual(
            (line["action"], line["status"], line["time"], line["created_at"], line["elapsed"],
             line["fail_count"], line["message"]),
            ("complete", "completed", 1750, 1500, 250, 0, "sent"),
        )

    def test_emptyMessageOmitted(self) -> None:
        """When the result has no message, the queue-log line has no C{message} member."""
        h = Harness()
        h.deliverer.script = lambda job: WorkerResult("success", 200, "")
        h.push()
        h.activate()
        [line] = h.log_lines()
        self.assertNotIn("message", line)

    def test_retryKeepsCounters(self) -> None:
        """When an attempt is retried, the stored job is claimed again at now + retry_delay with
        one retry less and one failure more."""
        h = Harness()
        [job_id] = h.push(new_job(max_retries=3, retry_delay=7))
        h.activate()
        h.clock.advance(0.5)
        h.deliverer.finish(job_id, WorkerResult("internal-failure", 0, "Request failed: x"))
        run_turns(h.clock)
        stored = h.stored(job_id)
        self.assertEqual(
            (stored.status, stored.next_try, stored.retry_count, stored.fail_count),
            (JobStatus.CLAIMED, 7500, 2, 1),
        )
        self.assertEqual(h.dispatcher.snapshot().busy, 0)


class CompletionWriteTests(DispatcherTestCase):
    """Completion writes when the store does not answer: docs/worker-protocol.md, At-least-once
    delivery."""

    def test_retriedUntilWritten(self) -> None:
        """When the store refuses a completion write twice, the write is retried after 0.1 s and
        0.2 s more, the slot stays busy meanwhile, and the outcome is written."""
        h = Harness(max_workers=1)
        [first, second] = h.push(count=2)
        h.activate()
        h.store.fail_complete = 2
        h.deliverer.finish(first)
        run_turns(h.clock)
        self.assertEqual(h.dispatcher.snapshot().busy, 1)
        self.assertIs(h.stored(first).status, JobStatus.GRABBED)
        advance_to(h.clock, 0.25)
        self.assertEqual(h.dispatcher.snapshot().busy, 1)
        self.assertEqual(len(h.deliverer.calls), 1)
        advance_to(h.clock, 0.35)
        self.assertTimes([when for when, _ in h.store.completes], [0.0, 0.1, 0.3])
        self.assertIsNone(h.stored(first))
        self.assertEqual([job.id for _, job in h.deliverer.calls], [first, second])
        self.assertEqual(h.stats.total_successes, 1)

    def failing_write(self) -> tuple[Harness, int]:
        """A delivered job whose completion writes keep failing."""
        h = Harness(max_workers=1)
        [job_id] = h.push()
        h.activate()
        h.store.fail_complete = 10**6
        h.deliverer.finish(job_id)
        run_turns(h.clock)
        return h, job_id

    def test_neverGivesUpWhileOwned(self) -> None:
        """When every completion write fails while this node holds the queue, the write is
        retried for as long as that lasts, at most every 10 s, with the slot kept; the
        outcome is written once the store answers (issue 8 item 6)."""
        h, job_id = self.failing_write()
        advance_to(h.clock, 3600)
        times = [when for when, _ in h.store.completes]
        self.assertTimes(times[:7], [0.0, 0.1, 0.3, 0.8, 1.8, 3.8, 8.8])
        self.assertEqual({round(b - a, 6) for a, b in zip(times[6:], times[7:])}, {10.0})
        self.assertGreater(times[-1], 3590)
        self.assertEqual(h.dispatcher.snapshot().busy, 1)
        self.assertIs(h.stored(job_id).status, JobStatus.GRABBED)
        h.store.fail_complete = 0
        advance_to(h.clock, 3610)
        self.assertIsNone(h.stored(job_id))
        self.assertEqual(h.dispatcher.snapshot().busy, 0)

    def test_givesUpOnceNotOwned(self) -> None:
        """When this node no longer holds the queue, a failing completion write is given up
        60 s after its first failure: the job stays grabbed (for the next active node's
        recovery) and its slot is freed."""
        h, job_id = self.failing_write()
        h.dispatcher.set_active(False)
        h.dispatcher.set_owned(False)
        advance_to(h.clock, 59.9)
        self.assertEqual(h.dispatcher.snapshot().busy, 1)
        advance_to(h.clock, 70)
        self.assertEqual(h.dispatcher.snapshot().busy, 0)
        self.assertGreaterEqual(h.store.completes[-1][0], UNOWNED_WRITE_PATIENCE)
        self.assertIs(h.stored(job_id).status, JobStatus.GRABBED)

    def test_unexpectedWriteErrorFreesSlot(self) -> None:
        """When a completion write fails with an unexpected error, it is logged and the slot is
        freed."""
        h = Harness(max_workers=1)
        [job_id] = h.push()

        async def broken(completion: Completion) -> None:
            raise ValueError("bug")

        h.dispatcher._write_completion = broken
        h.activate()
        h.deliverer.finish(job_id)
        run_turns(h.clock)
        self.assertEqual(h.dispatcher.snapshot().busy, 0)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class ShutdownTests(DispatcherTestCase):
    """Stopping and abandoning: docs/configuration.md, Stopping."""

    def test_stopWaitsForDelivery(self) -> None:
        """When C{stop} is called while a delivery is in flight, its Deferred fires only after
        the delivery and its completion write ended."""
        h = Harness()
        [job_id] = h.push()
        h.activate()
        stopped = h.dispatcher.stop()
        self.assertNoResult(stopped)
        h.store.fail_complete = 1
        h.deliverer.finish(job_id)
        run_turns(h.clock)
        self.assertNoResult(stopped)
        advance_to(h.clock, 0.1)
        self.assertIsNone(self.successResultOf(stopped))
        self.assertIsNone(h.stored(job_id))

    def test_stopIdle(self) -> None:
        """When C{stop} is called with nothing in flight, its Deferred fires at once and no call
        is left on the clock."""
        h = Harness()
        h.activate()
        advance_to(h.clock, 0.5)
        self.assertIsNone(self.successResultOf(h.dispatcher.stop()))
        run_turns(h.clock)
        self.assertEqual(h.pending_calls(), [])

    def test_noGrabAfterStop(self) -> None:
        """When the dispatcher is stopped, neither wake-ups, ended deliveries nor polls grab."""
        h = Harness(max_workers=2)
        h.push(count=5)
        h.activate()
        stopped = h.dispatcher.stop()
        grabs = len(h.store.grabs)
        h.dispatcher.wake()
        h.deliverer.finish(1)
        h.deliverer.finish(2)
        run_turns(h.clock)
        self.successResultOf(stopped)
        advance_to(h.clock, 2.0)
        self.assertEqual(len(h.store.grabs), grabs)
        self.assertEqual(h.store.due_calls, [])
        self.assertEqual(h.pending_calls(), [])

    def test_stopBeforeFirstPoll(self) -> None:
        """When the dispatcher stops before its polling loop began, no call is left."""
        h = Harness()
        h.dispatcher.start()
        self.successResultOf(h.dispatcher.stop())
        self.assertEqual(h.pending_calls(), [])

    def test_stopWhileGrabbing(self) -> None:
        """When C{stop} is called while a grab is running, the jobs that grab returns are
        delivered and C{stop}'s Deferred waits for them."""
        h = Harness()
        h.push(count=2)
        gate: Deferred[None] = Deferred()
        h.store.hold_grab = gate
        h.activate()
        stopped = h.dispatcher.stop()
        self.assertNoResult(stopped)
        h.store.hold_grab = None
        gate.callback(None)
        self.assertEqual(sorted(h.deliverer.pending), [1, 2])
        self.assertNoResult(stopped)
        h.deliverer.finish(1)
        h.deliverer.finish(2)
        run_turns(h.clock)
        self.successResultOf(stopped)
        self.assertIsNone(h.stored(1))
        self.assertEqual(h.pending_calls(), [])

    def test_abandonWhileGrabbing(self) -> None:
        """When deliveries are abandoned while a grab is running, the grab is cancelled, no
        delivery starts afterwards, and C{stop}'s Deferred fires."""
        h = Harness()
        h.push(count=2)
        gate: Deferred[None] = Deferred()
        h.store.hold_grab = gate
        h.activate()
        stopped = h.dispatcher.stop()
        self.assertNoResult(stopped)
        h.dispatcher.abandon()
        self.successResultOf(stopped)
        run_turns(h.clock)
        self.assertEqual(h.deliverer.calls, [])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(h.pending_calls(), [])

    def test_abandon(self) -> None:
        """When deliveries are abandoned, they are cancelled, their jobs stay grabbed with no
        outcome written, and C{stop}'s Deferred fires."""
        h = Harness()
        h.push(count=2)
        h.activate()
        stopped = h.dispatcher.stop()
        h.dispatcher.abandon()
        self.assertEqual(sorted(h.deliverer.cancelled), [1, 2])
        self.successResultOf(stopped)
        run_turns(h.clock)
        self.assertEqual(h.store.completes, [])
        for job_id in (1, 2):
            self.assertIs(h.stored(job_id).status, JobStatus.GRABBED)
        self.assertEqual(h.dispatcher.snapshot().busy, 0)
        self.assertEqual(h.stats.total_completes, 0)
        self.assertEqual(h.log_lines(), [])
        self.assertEqual(h.pending_calls(), [])

    def test_abandonDuringCompletionRetry(self) -> None:
        """When deliveries are abandoned while a completion write waits to be retried, the
        retry is dropped and no call is left."""
        h = Harness()
        [job_id] = h.push()
        h.activate()
        h.store.fail_complete = 1
        h.deliverer.finish(job_id)
        run_turns(h.clock)
        stopped = h.dispatcher.stop()
        self.assertNoResult(stopped)
        h.dispatcher.abandon()
        self.successResultOf(stopped)
        self.assertEqual(h.pending_calls(), [])
        self.assertIs(h.stored(job_id).status, JobStatus.GRABBED)

    def test_stopTimeout(self) -> None:
        """When C{stop}'s Deferred is cancelled (a shutdown timeout), the deliveries are
        abandoned and the caller sees the timeout; other waiters see the end of the
        deliveries."""
        h = Harness()
        h.push(count=2)
        h.activate()
        stopped = h.dispatcher.stop()
        other = h.dispatcher.idle()
        stopped.addTimeout(30, h.clock)
        advance_to(h.clock, 29.9)
        self.assertNoResult(stopped)
        advance_to(h.clock, 30.0)
        self.failureResultOf(stopped, TimeoutError)
        self.assertIsNone(self.successResultOf(other))
        self.assertEqual(sorted(h.deliverer.cancelled), [1, 2])
        self.assertEqual(h.dispatcher.snapshot().busy, 0)
        self.assertIs(h.stored(1).status, JobStatus.GRABBED)
        self.assertEqual(h.pending_calls(), [])


class ActivationTests(DispatcherTestCase):
    """Losing a queue: docs/worker-protocol.md, At-least-once delivery."""

    def test_lossStopsGrabbing(self) -> None:
        """When activation is lost, grabbing stops at once, while deliveries in flight finish
        and their outcomes are written."""
        h = Harness(max_workers=2)
        h.push(count=5)
        h.activate()
        h.dispatcher.set_active(False)
        h.deliverer.finish(1)
        h.dispatcher.wake()
        run_turns(h.clock)
        self.assertIsNone(h.stored(1))
        self.assertEqual(len(h.store.grabs), 1)
        h.deliverer.finish(2, FAILURE)
        advance_to(h.clock, 2.0)
        self.assertEqual(len(h.store.grabs), 1)
        self.assertEqual(h.store.due_calls, [])
        self.assertIsNone(h.stored(2))  # no retries left: failed
        self.assertEqual(len(h.failures()), 1)
        self.assertEqual(h.dispatcher.snapshot().busy, 0)
        # Regained: the backlog is grabbed at once.
        h.dispatcher.set_active(True)
        h.clock.advance(0)
        self.assertEqual(sorted(h.deliverer.pending), [3, 4])

    def test_outcomeOfJobTakenOverNotWritten(self) -> None:
        """When another node recovered the job meanwhile, the outcome of a delivery of the
        node that lost the queue is not written."""
        h = Harness(max_workers=1)
        [job_id] = h.push()
        h.activate()
        h.dispatcher.set_active(False)
        # Another grabber took the job over (after recovering it).
        memory = h.store.memory
        memory.grabber_id += 1
        succeed_value(Deferred.fromCoroutine(memory.recover(h.table)))
        succeed_value(Deferred.fromCoroutine(memory.grab(h.table, 1)))
        h.deliverer.finish(job_id)
        run_turns(h.clock)
        self.assertEqual(h.stored(job_id).grabber_id, memory.grabber_id)
        self.assertIs(h.stored(job_id).status, JobStatus.GRABBED)


class ExclusiveTests(DispatcherTestCase):
    """L{QueueDispatcher.exclusive}: orphan recovery against the deliveries in flight."""

    def test_waitsForTheGrabInProgress(self) -> None:
        """When an action is asked for while a grab runs, it runs once that grab's deliveries
        have started, and sees them in flight; no grab starts until it is done."""
        h = Harness(max_workers=3)
        h.push(count=5)
        gate: Deferred[None] = Deferred()
        h.store.hold_grab = gate
        h.activate()
        seen: list[list[tuple[int, int | None]]] = []
        action_done: Deferred[int] = Deferred()

        async def action(in_flight: Any) -> int:
            seen.append(sorted(in_flight))
            return await action_done

        ran = h.dispatcher.exclusive(action)
        self.assertEqual(seen, [])
        h.store.hold_grab = None
        gate.callback(None)
        grabber = h.store.memory.grabber_id
        self.assertEqual(seen, [[(1, grabber), (2, grabber), (3, grabber)]])
        h.deliverer.finish(1)
        run_turns(h.clock)
        advance_to(h.clock, 1.0)
        self.assertEqual(len(h.store.grabs), 1)  # a slot is free, but no grab meanwhile
        action_done.callback(7)
        self.assertEqual(self.successResultOf(ran), 7)
        run_turns(h.clock)
        self.assertEqual(len(h.store.grabs), 2)
        self.assertEqual(sorted(h.deliverer.pending), [2, 3, 4])

    def test_outcomeWritesAreInFlight(self) -> None:
        """When a delivery has ended but its outcome is not written yet, it is in flight."""
        h = Harness(max_workers=2)
        h.push(count=2)
        h.activate()
        h.store.fail_complete = 1
        h.deliverer.finish(1)
        run_turns(h.clock)
        grabber = h.store.memory.grabber_id
        self.assertEqual(sorted(h.dispatcher.in_flight()), [(1, grabber), (2, grabber)])
        advance_to(h.clock, 0.2)
        self.assertEqual(h.dispatcher.in_flight(), [(2, grabber)])


class QueueManagerWiringTests(DispatcherTestCase):
    """The dispatcher as L{QueueManager} runs it."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = SpyStore(self.clock)
        self.deliverer = FakeDeliverer(self.clock)
        self.writer = LineWriter(self.clock, "", io.BytesIO())
        self.ownership = QueueOwnership(MemoryLocks(self.store), self.clock)  # type: ignore[arg-type]
        self.manager = QueueManager(
            clock=self.clock, store=self.store, ownership=self.ownership,
            deliverer=self.deliverer,
            queue_log=QueueLog(self.writer, self.clock, "fireworq.queue", "info"),
            defaults=QueueDefaults(polling_interval=200, max_workers=2, default_queue=""),
            refresh_interval=1.0,
        )
        self.successResultOf(Deferred.fromCoroutine(self.manager.start()))

    def tearDown(self) -> None:
        d = Deferred.fromCoroutine(self.manager.stop_dispatching(30))
        for pending in list(self.deliverer.pending.values()):
            pending.callback(SUCCESS)
        run_turns(self.clock)
        self.successResultOf(d)
        self.successResultOf(self.ownership.stop())
        self.manager.close()
        self.writer.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def put(self, name: str) -> None:
        definition = self.manager.resolve(name, 0, 0, 0.0, 0)
        self.successResultOf(Deferred.fromCoroutine(self.manager.put_queue(definition)))
        run_turns(self.clock)

    def test_pushThroughRoutingWakes(self) -> None:
        """When a job is pushed to a routed queue, the push's dispatcher grabs it at once."""
        self.put("mail")
        self.successResultOf(Deferred.fromCoroutine(
            self.manager.put_routing(Routing("mail", "send"))
        ))
        self.clock.advance(0.05)
        d = Deferred.fromCoroutine(self.manager.push("send", new_job(category="send")))
        run_turns(self.clock)
        accepted = self.successResultOf(d)
        self.assertEqual(accepted.queue_name, "mail")
        self.assertEqual([job.id for _, job in self.deliverer.calls], [accepted.job.id])
        self.assertAlmostEqual(self.deliverer.times[0], 0.05)
        self.assertEqual(self.store.due_calls, [])
        self.assertEqual(self.manager.dispatchers["mail"].stats.total_pushes, 1)

    def test_pollsShareDueCheck(self) -> None:
        """When two queues with the same polling interval are polled, one due check asks about
        both tables."""
        self.clock.advance(0.03)
        self.put("a")
        self.clock.advance(0.04)
        self.put("b")
        advance_to(self.clock, 0.25)
        self.assertEqual(len(self.store.due_calls), 1)
        when, tables = self.store.due_calls[0]
        self.assertAlmostEqual(when, 0.2)  # the polls of an interval are one check
        self.assertEqual(tables, ["a", "b"])


class RateWindowTests(SynchronousTestCase):
    """L{RateWindow}: C{pushes_per_second} and C{pops_per_second} of docs/api.md, Queue stats
    object."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.window = RateWindow(self.clock)

    def test_lastSecond(self) -> None:
        """When events were added, they count for one second after their 50 ms step began."""
        self.window.add()
        self.clock.advance(0.5)
        self.window.add(2)
        self.assertEqual(self.window.per_second(), 3)
        self.clock.advance(0.45)  # t=0.95: still within the step of t=0
        self.assertEqual(self.window.per_second(), 3)
        self.clock.advance(0.05)  # t=1.0: the step of t=0 is out
        self.assertEqual(self.window.per_second(), 2)
        self.clock.advance(0.45)  # t=1.45
        self.assertEqual(self.window.per_second(), 2)
        self.clock.advance(0.05)  # t=1.5
        self.assertEqual(self.window.per_second(), 0)

    def test_stepBoundaries(self) -> None:
        """When an event is added at the start of a step (t=0.15), it is counted in that step
        and leaves the window at t=1.15, not before."""
        self.clock.advance(0.15)
        self.window.add()
        self.clock.advance(0.99)  # t=1.14
        self.assertEqual(self.window.per_second(), 1)
        self.clock.advance(0.01)  # t=1.15
        self.assertEqual(self.window.per_second(), 0)

    def test_slotsReused(self) -> None:
        """When a step's slot comes round again a second later, its old count is dropped."""
        for _ in range(5):
            self.window.add()
        self.clock.advance(1.0)
        self.window.add()
        self.assertEqual(self.window.per_second(), 1)
        self.clock.advance(3.7)
        self.assertEqual(self.window.per_second(), 0)

    def test_steady(self) -> None:
        """When one event is added every 10 ms, the window holds about 100."""
        for _ in range(500):
            self.window.add()
            self.clock.advance(0.01)
        self.assertIn(self.window.per_second(), range(95, 101))

    def test_statsCount(self) -> None:
        """When pushes and pops are counted, totals and windows follow."""
        stats = QueueStats(self.clock)
        stats.pushed()
        stats.pushed(2)
        stats.popped(4)
        self.assertEqual((stats.total_pushes, stats.total_pops), (3, 4))
        self.assertEqual((stats.pushes.per_second(), stats.pops.per_second()), (3, 4))


class HistogramTests(SynchronousTestCase):
    """L{Histogram}: cumulative buckets as Prometheus shows them."""

    def test_cumulative(self) -> None:
        """When values are observed, each bucket counts the values up to its bound (a value on
        a bound included), the last one all of them."""
        histogram = Histogram((0.1, 1, 10))
        for value in (0.05, 0.1, 0.5, 1, 3, 100):
            histogram.observe(value)
        self.assertEqual(
            histogram.cumulative(), [("0.1", 2), ("1.0", 4), ("10.0", 5), ("+Inf", 6)]
        )
        self.assertEqual(histogram.count, 6)
        self.assertAlmostEqual(histogram.total, 104.65)

    def test_empty(self) -> None:
        """When nothing was observed, every bucket is 0."""
        histogram = Histogram(DELIVERY_BUCKETS)
        self.assertEqual([count for _, count in histogram.cumulative()], [0] * 16)
        self.assertEqual(histogram.cumulative()[-1][0], "+Inf")
        self.assertEqual(histogram.count, 0)
