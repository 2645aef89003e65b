"""The dispatcher of one queue (docs/index.md, Life of a job).

It grabs only as many due jobs as it has free worker slots, delivers each, and writes the
outcome. It looks for due jobs when woken (a push through this node, a slot freed after a
full grab) and on its polling timer, the safety net for pushes made elsewhere and for
delayed jobs. Whether it may grab at all is decided by ``fireworq.cluster.ownership``
(``set_owned``, ``set_active``); the API and ``/metrics`` read it through ``snapshot``.
"""

from __future__ import annotations

from random import Random
from typing import Any, Awaitable, Callable, Collection, Coroutine, Protocol, TypeVar

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from fireworq.delivery.policy import retry_wait
from fireworq.dispatch.retention import FailureLogPruner, UniqueKeyPruner
from fireworq.dispatch.stats import QueueSnapshot, QueueStats
from fireworq.dispatch.throttle import TokenBucket
from fireworq.dispatch.ticker import PollTicker
from fireworq.errors import StoreUnavailable
from fireworq.logs import QueueLog
from fireworq.model import (
    Completion,
    CompletionKind,
    InFlight,
    Job,
    QueueDefinition,
    ResultStatus,
    WorkerResult,
)
from fireworq.storage import JobStore

log = Logger()
T = TypeVar("T")

# Completion writes are retried while the store is away, the last delay over and over:
# the slot stays taken meanwhile, so a dead store also stops grabbing.
COMPLETION_RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: While this node holds the queue a write is never given up. Once it does not, it is given
#: up this long after its first failure, and the job is left to the next active node's
#: orphan recovery (writing it late does no harm: the write checks that the job is ours).
UNOWNED_WRITE_PATIENCE = 60.0
#: A write that keeps failing is logged at its first failure, then at most this often.
WRITE_FAILURE_LOG_INTERVAL = 60.0


def completion_retry_delay(failures: int) -> float:
    """The wait after the ``failures``-th failed attempt at a completion write (1-based)."""
    return COMPLETION_RETRY_DELAYS[min(failures, len(COMPLETION_RETRY_DELAYS)) - 1]


class Deliverer(Protocol):
    async def deliver(self, job: Job, queue: QueueDefinition | None = None) -> WorkerResult: ...


def completion_kind(job: Job, result: WorkerResult) -> CompletionKind:
    """docs/worker-protocol.md, What happens next: what an attempt's result does to its job."""
    if result.status == ResultStatus.SUCCESS.value:
        return CompletionKind.SUCCESS
    if result.status == ResultStatus.PERMANENT_FAILURE.value or job.retry_count <= 0:
        return CompletionKind.FAIL
    return CompletionKind.RETRY


class QueueDispatcher:
    """Grabs and delivers the jobs of one queue while this node is active for it."""

    def __init__(
        self,
        definition: QueueDefinition,
        *,
        clock: IReactorTime,
        store: JobStore,
        deliverer: Deliverer,
        due_check: Callable[[str], Deferred[bool] | Coroutine[Deferred[Any], Any, bool]],
        write_completion: Callable[[Completion], Awaitable[None]],
        stats: QueueStats,
        queue_log: QueueLog,
        random: Callable[[], float] | None = None,
        ticker: PollTicker | None = None,
    ) -> None:
        self.definition = definition
        self._clock = clock
        self._store = store
        self._deliverer = deliverer
        self._due_check = due_check
        self._write_completion = write_completion
        self.stats = stats
        self._queue_log = queue_log
        #: Draws the jitter of retry waits: a float in [0, 1).
        self._random = random or Random().random
        self._bucket: TokenBucket | None = None
        self._configure_throttle()
        #: Shared by the dispatchers of a process; one of its own otherwise (tests).
        self._ticker = ticker or PollTicker(clock)
        self._unpoll: Callable[[], None] | None = None
        self._grab_call: IDelayedCall | None = None
        self._running = False
        self._owned = False
        self._active = False
        self._grabbing = False
        # The grab in progress, until it has started the deliveries of its jobs.
        self._grab_running: Deferred[None] | None = None
        self._grab_waiters: list[Deferred[None]] = []
        self._exclusive = 0  # actions of ``exclusive`` running: no grab meanwhile
        self._backlog = False
        self._busy = 0
        self._waiting_for_token = 0
        self._in_flight: dict[Deferred[None], Job] = {}
        self._idle_waiters: list[Deferred[None]] = []
        self._pruner = FailureLogPruner(clock, store, stats, definition)
        self._key_pruner = UniqueKeyPruner(clock, store, stats, definition)

    @property
    def table(self) -> str:
        return self.definition.table

    @property
    def free_slots(self) -> int:
        return max(0, self.definition.max_workers - self._busy)

    def snapshot(self) -> QueueSnapshot:
        """The queue's stats and slots as of now."""
        return self.stats.snapshot(
            active=self._active, max_workers=self.definition.max_workers, busy=self._busy,
            waiting_for_token=self._waiting_for_token, paused=self.definition.paused,
        )

    # Lifetime

    def start(self) -> None:
        self._running = True
        self._start_polling()

    def _start_polling(self) -> None:
        # On multiples of the interval, so the polls of all queues with the same interval
        # fall in the same reactor turn and share one due check.
        interval = self.definition.polling_interval / 1000.0
        if self._ticker.due_tables is not None:
            self._unpoll = self._ticker.add_polled(interval, self)
        else:
            self._unpoll = self._ticker.add(interval, self._tick)

    def _stop_polling(self) -> None:
        if self._unpoll is not None:
            self._unpoll()
        self._unpoll = None

    def stop(self) -> Deferred[None]:
        """Stop grabbing; the Deferred fires when the deliveries in progress are done."""
        self._running = False
        self._stop_polling()
        self._pruner.stop()
        self._key_pruner.stop()
        if self._grab_call is not None and self._grab_call.active():
            self._grab_call.cancel()
        self._grab_call = None
        return self.idle()

    def idle(self) -> Deferred[None]:
        """Fires once every delivery in progress (and its completion write) has ended.

        Deliveries that a grab in progress is about to start count too. Cancelling the
        Deferred (a shutdown timeout) abandons the deliveries, and it fails with
        ``CancelledError``.
        """
        if self._is_idle():
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._give_up_waiting)
        self._idle_waiters.append(waiter)
        return waiter

    def _is_idle(self) -> bool:
        return not self._in_flight and self._grab_running is None

    def _give_up_waiting(self, waiter: Deferred[None]) -> None:
        if waiter in self._idle_waiters:
            self._idle_waiters.remove(waiter)
        self.abandon()

    def _check_idle(self) -> None:
        if self._is_idle():
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def abandon(self) -> None:
        """Cancel deliveries still running (shutdown timeout): their jobs stay grabbed.

        A grab in progress is cancelled too, so that no delivery starts after this; jobs it
        may have grabbed in the store are recovered like the others.
        """
        if self._grab_running is not None:
            self._grab_running.cancel()
        for running in list(self._in_flight):
            running.cancel()
        if self._bucket is not None:
            self._bucket.release_all()

    def update(self, definition: QueueDefinition) -> None:
        """A new definition: later grabs follow it; deliveries in progress are untouched."""
        old, self.definition = self.definition, definition
        self._configure_throttle()
        self._pruner.configure(definition)
        self._key_pruner.configure(definition)
        if self._running and old.polling_interval != definition.polling_interval:
            self._stop_polling()
            self._start_polling()
        if old.paused and not definition.paused:
            self.wake()  # due jobs waited while paused
        self._schedule_grab()

    def _configure_throttle(self) -> None:
        definition = self.definition
        if definition.throttled:
            if self._bucket is None:
                self._bucket = TokenBucket(
                    self._clock, definition.max_dispatches_per_second, definition.max_burst_size
                )
            else:
                self._bucket.reconfigure(
                    definition.max_dispatches_per_second, definition.max_burst_size
                )
        elif self._bucket is not None:
            self._bucket.release_all()
            self._bucket = None

    def set_owned(self, owned: bool) -> None:
        """Whether this node holds the queue's lock: completion writes are retried for as
        long as it does."""
        self._owned = owned

    @property
    def active(self) -> bool:
        """Whether this node (this process) dispatches the queue now."""
        return self._active

    def set_active(self, active: bool) -> None:
        """Whether this node dispatches the queue; losing it stops grabbing at once."""
        self._active = active
        self._pruner.set_active(active)
        self._key_pruner.set_active(active)
        if active:
            self.wake()

    def in_flight(self) -> list[InFlight]:
        """The deliveries running (or waiting for a token, or for their outcome's write)."""
        return [(job.id, job.grabber_id) for job in self._in_flight.values()]

    def exclusive(self, action: Callable[[Collection[InFlight]], Awaitable[T]]) -> Deferred[T]:
        """Run ``action(the deliveries in flight)`` while no grab runs, and grab only once
        it is done: orphan recovery must not set back the jobs of a grab whose deliveries
        have not started yet."""
        return Deferred.fromCoroutine(self._run_exclusive(action))

    async def _run_exclusive(self, action: Callable[[Collection[InFlight]], Awaitable[T]]) -> T:
        self._exclusive += 1
        try:
            while self._grab_running is not None:
                ended: Deferred[None] = Deferred()
                self._grab_waiters.append(ended)
                await ended
            return await action(self.in_flight())
        finally:
            self._exclusive -= 1
            self._schedule_grab()

    # Grabbing

    def wake(self) -> None:
        """Due jobs may be waiting: grab as soon as a slot is free."""
        self._backlog = True
        self._schedule_grab()

    def _can_grab(self) -> bool:
        return (self._running and self._active and not self.definition.paused
                and not self._grabbing and not self._exclusive and self.free_slots > 0)

    def _schedule_grab(self) -> None:
        # Wake-ups of one reactor turn (several pushes, several finished jobs) make one grab.
        if self._backlog and self._grab_call is None and self._can_grab():
            self._grab_call = self._clock.callLater(0, self._grab_now)

    def _grab_now(self) -> None:
        self._grab_call = None
        if self._backlog and self._can_grab():
            self._grabbing = True
            grabbing = self._grab_running = Deferred.fromCoroutine(self._grab())
            grabbing.addErrback(self._grab_failed)
            grabbing.addBoth(self._grab_ended, grabbing)

    def _grab_failed(self, failure: Failure) -> None:
        if not failure.check(CancelledError):  # abandon()
            log.failure("Grab for queue {queue} failed", failure, queue=self.definition.name)

    def _grab_ended(self, _: object, grabbing: Deferred[None]) -> None:
        if self._grab_running is grabbing:
            self._grab_running = None
            waiters, self._grab_waiters = self._grab_waiters, []
            for waiter in waiters:
                waiter.callback(None)
        self._check_idle()

    async def _grab(self) -> None:
        wanted = self.free_slots
        self._backlog = False
        try:
            jobs = await self._store.grab(self.table, wanted)
        except StoreUnavailable as e:
            log.warn("Cannot grab jobs of queue {queue}: {reason}", queue=self.definition.name,
                     reason=e.reason)
            return  # the next poll tries again
        finally:
            self._grabbing = False
        if jobs:
            self.stats.popped(len(jobs))
        for job in jobs:
            self._queue_log.pop(self.definition.name, job)
            self._start_job(job)
        # A full grab means more may be due: grab again as soon as slots free up.
        if len(jobs) >= wanted:
            self._backlog = True
        self._schedule_grab()

    def poll_table(self) -> str | None:
        """Polled by a ticker that checks the tables of several queues at once."""
        if not self._can_grab():
            return None
        # A backlog with no grab on its way (a wake-up came while a grab that then failed
        # was running) is grabbed now; otherwise ask the store.
        if self._backlog:
            self.wake()
            return None
        return self.table

    def found_due(self) -> None:
        self.wake()

    def _tick(self) -> Deferred[None] | None:
        # Plain callbacks rather than a coroutine: every idle queue ticks five times a second.
        try:
            table = self.poll_table()
            if table is None:
                return None
            checking: Deferred[bool] = ensureDeferred(self._due_check(table))
        except Exception:
            log.failure("Polling queue {queue} failed", queue=self.definition.name)
            return None
        return checking.addCallbacks(self._checked, self._check_failed)

    def _checked(self, due: bool) -> None:
        if due:
            self.wake()

    def _check_failed(self, failure: Failure) -> None:
        if failure.check(StoreUnavailable):
            log.warn("Cannot poll queue {queue}: {reason}", queue=self.definition.name,
                     reason=failure.value.reason)  # type: ignore[union-attr]
        else:
            log.failure("Polling queue {queue} failed", failure, queue=self.definition.name)

    # Delivering

    def _start_job(self, job: Job) -> None:
        self._busy += 1
        running = Deferred.fromCoroutine(self._run_job(job))
        self._in_flight[running] = job
        running.addErrback(self._job_failed, job)
        running.addBoth(self._job_ended, running)

    def _job_failed(self, failure: Failure, job: Job) -> None:
        if not failure.check(CancelledError):
            log.failure("Delivery of job {id} of queue {queue} failed", failure, id=job.id,
                        queue=self.definition.name)

    def _job_ended(self, _: object, running: Deferred[None]) -> None:
        self._in_flight.pop(running, None)
        self._busy -= 1
        self._schedule_grab()
        self._check_idle()

    async def _run_job(self, job: Job) -> None:
        if self._bucket is not None:
            self._waiting_for_token += 1
            try:
                await self._bucket.take()
            finally:
                self._waiting_for_token -= 1
        started = self._clock.seconds()
        definition = self.definition
        result = await self._deliverer.deliver(job, definition)
        finished = self._clock.seconds()
        kind = completion_kind(job, result)
        self._count(job, result, kind, started, finished)
        retry_in = None
        if kind is CompletionKind.RETRY:
            retry_in = retry_wait(job, definition, result.retry_after, self._random)
        await self._write(Completion(self.table, job, kind, result, retry_in))
        if kind is CompletionKind.FAIL:
            self._pruner.failure_written()

    def _count(
        self, job: Job, result: WorkerResult, kind: CompletionKind, started: float,
        finished: float,
    ) -> None:
        stats, queue = self.stats, self.definition.name
        stats.delivery_seconds.observe(finished - started)
        if kind is CompletionKind.RETRY:
            stats.total_failures += 1
            self._queue_log.retry(queue, job, result.message)
            return
        if kind is CompletionKind.SUCCESS:
            stats.total_successes += 1
        else:
            stats.total_failures += 1
            stats.total_permanent_failures += 1
            if result.status == ResultStatus.PERMANENT_FAILURE.value:
                stats.worker_failure_outcomes += 1
        stats.total_completes += 1
        elapsed_ms = max(0, int(finished * 1000) - job.created_at)
        stats.total_elapsed += elapsed_ms
        stats.latency_seconds.observe(elapsed_ms / 1000.0)
        self._queue_log.complete(queue, job, kind is CompletionKind.SUCCESS, result.message)

    async def _write(self, completion: Completion) -> None:
        failures = 0
        first_failure = logged = 0.0
        while True:
            try:
                await self._write_completion(completion)
                return
            except StoreUnavailable as e:
                now = self._clock.seconds()
                if not failures:
                    first_failure = now
                failures += 1
                if not self._owned and now - first_failure >= UNOWNED_WRITE_PATIENCE:
                    log.error(
                        "Giving up writing the outcome of job {id} of queue {queue}: {reason};"
                        " this node no longer holds the queue, and the job stays grabbed until"
                        " the queue's next active node recovers it", id=completion.job.id,
                        queue=self.definition.name, reason=e.reason,
                    )
                    return
                delay = completion_retry_delay(failures)
                if failures == 1 or now - logged >= WRITE_FAILURE_LOG_INTERVAL:
                    logged = now
                    log.warn("Cannot write the outcome of job {id} of queue {queue}: {reason};"
                             " trying again (failed {failures} time(s) so far)",
                             id=completion.job.id, queue=self.definition.name,
                             reason=e.reason, failures=failures)
                await deferLater(self._clock, delay, lambda: None)
