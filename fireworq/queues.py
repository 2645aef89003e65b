"""The queues this node knows: definitions, routings, dispatchers and pushes.

Definitions and routings live in the store; this node keeps a copy, applies its own changes
at once and notices other nodes' changes by polling the store's change counters. Only the
difference is applied: an unchanged queue keeps its dispatcher, its lock and its stats.
Whether a dispatcher runs is up to ``fireworq.cluster.ownership``, which each one is handed
to as its queue is added.
"""

from __future__ import annotations

from random import Random
from typing import Awaitable, Callable, Sequence, Union

import attrs
from twisted.internet.defer import Deferred, DeferredList, DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from fireworq.cluster.ownership import QueueOwnership
from fireworq.dispatch.batching import Batch, TurnBatcher
from fireworq.dispatch.dispatcher import Deliverer, QueueDispatcher
from fireworq.dispatch.stats import QueueSnapshot, QueueStats
from fireworq.dispatch.ticker import PollTicker
from fireworq.errors import InvalidInput, NotFound, NotStored, OutcomeUnknown, StoreUnavailable
from fireworq.logs import QueueLog
from fireworq.model import (
    Completion,
    DuplicateJob,
    NewJob,
    PushedJob,
    QueueDefinition,
    Routing,
    is_valid_queue_name,
)
from fireworq.storage import Store

log = Logger()

#: A push the store has not confirmed by then fails with StoreUnavailable (a 503). If its
#: statement was not sent yet, it is withdrawn and never stored; if it was, the 503 says
#: that the job may have been stored (a client that retries may then make a duplicate).
PUSH_TIMEOUT = 5.0
#: Default of ``max_pending_pushes``: pushes held by this node until the store answers.
MAX_PENDING_PUSHES = 10000


def _push_expired(sent: bool) -> StoreUnavailable:
    if sent:
        return OutcomeUnknown()
    return StoreUnavailable("no answer within %g seconds; the job was not stored" % PUSH_TIMEOUT)


@attrs.frozen
class QueueDefaults:
    polling_interval: int
    max_workers: int
    default_queue: str  # "" when there is none


@attrs.frozen
class Accepted:
    """A push as stored; or, when ``duplicate`` is set, a push whose unique key was seen:
    nothing was stored, ``job`` and ``duplicate`` are the first push's."""

    queue_name: str
    job: PushedJob
    duplicate: NewJob | None = None


#: What the push batcher holds: a push of one job, or a batch push (stored all or none),
#: with the job table they go to.
PushItem = Union[tuple[str, NewJob], tuple[str, tuple[NewJob, ...]]]
#: The store's answer to an item: one job's, or a batch's (one per job, in order).
PushResult = Union[PushedJob, DuplicateJob, list[Union[PushedJob, DuplicateJob]]]


def _push_size(item: PushItem) -> int:
    jobs = item[1]
    return 1 if isinstance(jobs, NewJob) else len(jobs)


class _Requests:
    """Hands the store whole requests of a push batch (``storage.Handover``): the jobs
    of the items the batch hands over."""

    def __init__(self, batch: Batch[PushItem], starts: Sequence[int]) -> None:
        self._batch = batch
        self._starts = starts

    def take(self) -> list[int]:
        return [index for item in self._batch.take()
                for index in range(self._starts[item], self._starts[item + 1])]


class QueueManager:
    def __init__(
        self,
        *,
        clock: IReactorTime,
        store: Store,
        ownership: QueueOwnership,
        deliverer: Deliverer,
        queue_log: QueueLog,
        defaults: QueueDefaults,
        refresh_interval: float,
        push_concurrency: int = 1,
        max_pending_pushes: int = MAX_PENDING_PUSHES,
        wake_elsewhere: Callable[[str], None] | None = None,
        changed_elsewhere: Callable[[], Awaitable[None]] | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        """``wake_elsewhere(queue_name)``: with several processes (``--processes``), tells
        the others of a job due now that this one stored and does not dispatch;
        ``changed_elsewhere()`` has them read the queues and routings this one changed."""
        self._clock = clock
        self._wake_elsewhere = wake_elsewhere
        self._changed_elsewhere = changed_elsewhere
        #: One refresh at a time: an older read finishing after a newer one would bring a
        #: deleted queue back until the next refresh.
        self._refreshing = DeferredLock()
        self._closing = False
        #: Draws the jitter of retry waits (docs/api.md, Retry policy): a float in [0, 1).
        self._random = random or Random().random
        self._store = store
        self._ownership = ownership
        self._deliverer = deliverer
        self._queue_log = queue_log
        self.defaults = defaults
        self._refresh_interval = refresh_interval
        self.dispatchers: dict[str, QueueDispatcher] = {}
        self._retiring: set[QueueDispatcher] = set()
        self.routings: dict[str, str] = {}
        self._revisions: tuple[int, int, int] | None = None
        self._unrunnable_logged: set[str] = set()
        self._defining = DeferredLock()
        self._pushes: TurnBatcher[PushItem, PushResult] = TurnBatcher(
            clock, self._store_pushes, concurrency=push_concurrency, deadline=PUSH_TIMEOUT,
            expired=_push_expired, taken_by_flush=True, limit=max_pending_pushes,
            overloaded=lambda: StoreUnavailable(
                "%d pushes already wait for the store; the job was not stored"
                % max_pending_pushes),
            size=_push_size,
        )
        self._completions: TurnBatcher[Completion, None] = TurnBatcher(
            clock, self._complete, concurrency=push_concurrency
        )
        self._due: TurnBatcher[str, bool] = TurnBatcher(clock, self._due_tables, delay=0.005)
        self._ticker = PollTicker(clock, store.due_tables)
        self._refresh = LoopingCall(self._refresh_tick)
        self._refresh.clock = clock

    # Lifetime

    async def start(self) -> None:
        self._ownership.start()
        await self.refresh(force=True)
        self._refresh.start(self._refresh_interval, now=False).addErrback(
            lambda f: log.failure("Definition refresh stopped", f)
        )

    async def stop_dispatching(self, timeout: float) -> bool:
        """Stop grabbing everywhere and wait for the deliveries in progress and their
        completion writes; after ``timeout`` seconds abandon those still running (their
        jobs stay grabbed until recovered). ``False`` when something was abandoned."""
        self._closing = True
        if self._refresh.running:
            self._refresh.stop()
        async with self._refreshing:  # one running could start dispatchers
            pass
        dispatchers = [*self.dispatchers.values(), *self._retiring]
        waits = [dispatcher.stop() for dispatcher in dispatchers]
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            for dispatcher in dispatchers:
                dispatcher.abandon()

        timer = self._clock.callLater(timeout, expire)
        await DeferredList(waits, consumeErrors=True)
        if timer.active():
            timer.cancel()
        return not expired

    def close(self) -> None:
        self._pushes.cancel()
        self._completions.cancel()
        self._due.cancel()

    # Definitions

    def snapshots(self) -> dict[str, QueueSnapshot]:
        """Each queue's figures in this process."""
        return {name: d.snapshot() for name, d in self.dispatchers.items()}

    def definition(self, name: str) -> QueueDefinition | None:
        dispatcher = self.dispatchers.get(name)
        return None if dispatcher is None else dispatcher.definition

    def resolve(self, name: str, polling_interval: int, max_workers: int,
                rate: float, burst: int) -> QueueDefinition:
        """Apply the rules of docs/api.md, PUT /queue to a queue definition request."""
        if rate > 0 and burst == 0:
            raise InvalidInput("Cannot configure max_dispatches_per_second without max_burst_size")
        if burst > 0 and rate == 0:
            raise InvalidInput("Cannot configure max_burst_size without max_dispatches_per_second")
        if rate > 0:
            polling_interval = 100
        return QueueDefinition(
            name=name,
            polling_interval=polling_interval or self.defaults.polling_interval,
            max_workers=max_workers or self.defaults.max_workers,
            max_dispatches_per_second=float(rate),
            max_burst_size=burst,
        )

    async def put_queue(self, definition: QueueDefinition) -> QueueDefinition:
        # One definition at a time: two names with one table part, defined concurrently,
        # would otherwise both pass the check below before either is stored.
        async with self._defining:
            for other in await self._store.list_queues():
                if other.name != definition.name and other.table == definition.table:
                    raise InvalidInput(
                        "Queue name '%s' maps to the same tables as existing queue '%s'"
                        % (definition.name, other.name)
                    )
            await self._store.prepare_queue(definition.table)
            await self._store.put_queue(definition)
            # As stored: MySQL keeps the throttle rate with 7 significant digits.
            stored = await self._store.get_queue(definition.name) or definition
            await self._apply(stored)
        await self._changed()
        return stored

    async def delete_queue(self, name: str) -> QueueDefinition:
        deleted = await self._store.delete_queue(name)
        if deleted is None:
            raise NotFound("No such queue: %s" % name)
        self._remove(name)
        await self._changed()
        return deleted

    async def set_paused(self, name: str, paused: bool) -> QueueDefinition:
        """Pause or resume a queue: stored, in effect here at once, elsewhere at the next
        refresh. Deliveries in progress go on; a paused queue still takes pushes."""
        stored = await self._store.set_paused(name, paused)
        if stored is None:
            raise NotFound("No such queue: %s" % name)
        await self._apply(stored)
        await self._changed()
        return stored

    async def _apply(self, definition: QueueDefinition) -> None:
        name = definition.name
        if not is_valid_queue_name(name):
            if name not in self._unrunnable_logged:
                self._unrunnable_logged.add(name)
                log.error("Queue {name!r} cannot run: its name is longer than 46 characters",
                          name=name)
            return
        current = self.dispatchers.get(name)
        if current is not None:
            if current.definition != definition:
                current.update(definition)
            return
        await self._store.prepare_queue(definition.table)
        if name in self.dispatchers:  # added meanwhile by a concurrent refresh
            return
        dispatcher = QueueDispatcher(
            definition, clock=self._clock, store=self._store, deliverer=self._deliverer,
            due_check=self._due.submit, write_completion=self._completions.submit,
            stats=QueueStats(self._clock), queue_log=self._queue_log, random=self._random,
            ticker=self._ticker,
        )
        self.dispatchers[name] = dispatcher
        dispatcher.start()
        self._ownership.watch(name, dispatcher)

    def _remove(self, name: str) -> None:
        dispatcher = self.dispatchers.pop(name, None)
        if dispatcher is None:
            return
        self._ownership.unwatch(name)
        self._retiring.add(dispatcher)
        dispatcher.stop().addBoth(lambda _: self._retiring.discard(dispatcher))

    # Routings

    async def put_routing(self, routing: Routing) -> Routing:
        if await self._store.get_queue(routing.queue_name) is None:
            raise NotFound("No such queue: %s" % routing.queue_name)
        await self._store.put_routing(routing)
        self.routings[routing.job_category] = routing.queue_name
        await self._changed()
        return routing

    async def delete_routing(self, category: str) -> Routing:
        deleted = await self._store.delete_routing(category)
        if deleted is None:
            raise NotFound("No such routing: %s" % category)
        self.routings.pop(category, None)
        await self._changed()
        return deleted

    # Refresh

    async def _refresh_tick(self) -> None:
        try:
            await self.refresh()
        except StoreUnavailable as e:
            log.warn("Cannot refresh definitions: {reason}", reason=e.reason)
        except Exception:
            log.failure("Refreshing definitions failed")

    async def _changed(self) -> None:
        if self._changed_elsewhere is not None:
            await self._changed_elsewhere()

    async def refresh_now(self) -> None:
        """Another process of the node changed queues or routings: read them now, not at
        the next refresh, since a change is in effect at once on the node that made it
        (docs/api.md, DELETE /queue, pause)."""
        if self._refresh.running:  # started, and not stopping
            await self._refresh_tick()

    async def refresh(self, force: bool = False) -> None:
        """Load what changed in the store since the last look."""
        async with self._refreshing:
            if not self._closing:
                await self._refresh_locked(force)

    async def _refresh_locked(self, force: bool) -> None:
        revisions = await self._store.revisions()
        if force or revisions != self._revisions:
            stored = await self._store.list_queues()
            routings = await self._store.list_routings()
            self.routings = {r.job_category: r.queue_name for r in routings}
            for definition in stored:
                await self._apply(definition)
            names = {definition.name for definition in stored}
            for name in [name for name in self.dispatchers if name not in names]:
                self._remove(name)
            self._revisions = revisions
        await self._ensure_default_queue()

    async def _ensure_default_queue(self) -> None:
        """The default queue is defined at start, and again whenever it was deleted."""
        name = self.defaults.default_queue
        if not name or name in self.dispatchers:
            return
        definition = await self._store.get_queue(name)
        if definition is None:
            definition = self.resolve(name, 0, 0, 0.0, 0)
            await self._store.prepare_queue(definition.table)
            await self._store.put_queue(definition)
        await self._apply(definition)

    # Pushing

    def _routed(self, category: str) -> str | None:
        """Steps 1 and 2 of docs/api.md, POST /job: the routing known here, else the default
        queue."""
        return self.routings.get(category) or self.defaults.default_queue or None

    async def route(self, category: str) -> QueueDefinition:
        """The queue a push of this category goes to (docs/api.md, POST /job)."""
        queue_name = self._routed(category)
        if queue_name is None:
            routing = await self._store.get_routing(category)
            if routing is not None:
                self.routings[category] = routing.queue_name
                queue_name = routing.queue_name
        if queue_name is None:
            raise NotFound("No routing of job category '%s' exists" % category)
        definition = await self.known(queue_name)
        if definition is None:
            raise NotFound("Undefined queue: %s" % queue_name)
        return definition

    async def known(self, name: str) -> QueueDefinition | None:
        """The queue's definition here, else as stored: another process of the node
        (docs/performance.md, More than one core) or another node may have defined it since
        the last refresh, and the client that did must find it on whichever process its
        next request lands. Known here from then on."""
        definition = self.definition(name)
        if definition is None:
            stored = await self._store.get_queue(name)
            if stored is None or not is_valid_queue_name(stored.name):
                return None
            await self._apply(stored)
            definition = self.definition(name) or stored
        return definition

    @property
    def pending_pushes(self) -> int:
        """Pushes held until the store answers (bounded by ``max_pending_pushes``)."""
        return self._pushes.held

    def push_nowait(self, category: str, job: NewJob) -> Deferred[Accepted]:
        """``push`` without a coroutine when the route is known here (nearly always)."""
        queue_name = self._routed(category)
        dispatcher = self.dispatchers.get(queue_name) if queue_name else None
        if dispatcher is None:
            return Deferred.fromCoroutine(self.push(category, job))
        definition = dispatcher.definition
        if job.unique is not None:
            job = _keyed(job, definition)
        return self._pushes.submit((definition.table, job)).addCallback(
            self.accepted, definition.name, job)

    async def push(self, category: str, job: NewJob) -> Accepted:
        definition = await self.route(category)
        job = _keyed(job, definition)
        pushed = await self._pushes.submit((definition.table, job))
        return self.accepted(pushed, definition.name, job)

    async def push_batch(self, category: str, jobs: Sequence[NewJob]) -> list[Accepted]:
        """Push the jobs in one transaction: all are stored (or found duplicates) or none
        (docs/api.md, POST /jobs)."""
        definition = await self.route(category)
        keyed = tuple(_keyed(job, definition) for job in jobs)
        stored = await self._pushes.submit((definition.table, keyed))
        assert isinstance(stored, list)
        return [self.accepted(pushed, definition.name, job)
                for pushed, job in zip(stored, keyed)]

    def accepted(self, pushed: PushResult, queue_name: str, job: NewJob) -> Accepted:
        """What follows a stored push here (also of a retried failure-log entry): stats,
        the queue log's push line, and a wake-up of the dispatcher. A duplicate stored
        nothing: none of them."""
        dispatcher = self.dispatchers.get(queue_name)
        if isinstance(pushed, DuplicateJob):
            if dispatcher is not None:
                dispatcher.stats.duplicate_pushes += 1
            return Accepted(queue_name, pushed.pushed, duplicate=pushed.job)
        assert isinstance(pushed, PushedJob)
        if dispatcher is not None:
            dispatcher.stats.pushed()
            self._queue_log.push(queue_name, job, pushed)
            if job.run_after == 0:  # a delayed job is found by the poll when it is due
                if dispatcher.active or self._wake_elsewhere is None:
                    dispatcher.wake()
                else:
                    self._wake_elsewhere(queue_name)
        return Accepted(queue_name, pushed)

    def wake(self, queue_name: str) -> None:
        """Another process stored a job due now in this queue."""
        dispatcher = self.dispatchers.get(queue_name)
        if dispatcher is not None and dispatcher.active:
            dispatcher.wake()

    # Batched store calls

    async def _store_pushes(self, batch: Batch[PushItem]) -> Sequence[PushResult | NotStored]:
        # The store takes the batch itself, right before sending it (see PUSH_TIMEOUT).
        if all(isinstance(jobs, NewJob) for _, jobs in batch):
            return await self._store.push(batch, batch)  # type: ignore[arg-type]
        # Batch pushes: their jobs in line with the others', each batch a request of its
        # own that the store stores all or none.
        flat: list[tuple[str, NewJob]] = []
        groups: list[int] = []
        starts = [0]
        for number, (table, jobs) in enumerate(batch):
            for job in (jobs,) if isinstance(jobs, NewJob) else jobs:
                flat.append((table, job))
                groups.append(number)
            starts.append(len(flat))
        answers = await self._store.push(flat, _Requests(batch, starts), groups)
        results: list[PushResult | NotStored] = []
        for number, (_, jobs) in enumerate(batch):
            mine = answers[starts[number]:starts[number + 1]]
            if isinstance(jobs, NewJob):
                results.append(mine[0])
                continue
            failed = [answer for answer in mine if isinstance(answer, NotStored)]
            results.append(failed[0] if failed else mine)  # type: ignore[arg-type]
        return results

    async def _complete(self, completions: Sequence[Completion]) -> Sequence[None]:
        await self._store.complete(completions)
        return [None] * len(completions)

    async def _due_tables(self, tables: Sequence[str]) -> Sequence[bool]:
        due = await self._store.due_tables(sorted(set(tables)))
        return [table in due for table in tables]


def _keyed(job: NewJob, definition: QueueDefinition) -> NewJob:
    """The job with its queue's ``unique_window``; without its key when the queue keeps
    none (window 0)."""
    if job.unique is None:
        return job
    if not definition.unique_window:
        return attrs.evolve(job, unique=None)
    return attrs.evolve(job, unique=attrs.evolve(job.unique, window=definition.unique_window))
