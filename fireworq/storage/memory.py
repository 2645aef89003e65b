"""The ``in-memory`` driver: everything in this process, lost at exit.

It behaves like the SQL drivers (the contract suite runs against all of them); its clock is
the injected reactor clock, so unit tests can drive job times with ``task.Clock``.
"""

from __future__ import annotations

import heapq
import os
from typing import Callable, Collection, Iterable, Sequence, TypeVar, overload

import attrs
from twisted.internet.interfaces import IReactorTime

from fireworq.errors import NotStored
from fireworq.model import (
    Completion,
    CompletionKind,
    Cursor,
    DuplicateJob,
    FailedFilter,
    FailedJob,
    FailedOrder,
    InFlight,
    Job,
    JobState,
    JobStatus,
    NewJob,
    Page,
    PushedJob,
    QueueDefinition,
    RetriedJob,
    RetrySettings,
    Routing,
    StateCounts,
    failed_position,
    job_position,
    own_members,
)
from fireworq.storage import COUNT_LIMIT, Handover, handed_over, not_sent

T = TypeVar("T")


@attrs.define
class _Table:
    jobs: dict[int, Job] = attrs.Factory(dict)
    # (next_try, id) of claimed jobs; stale entries are skipped when popped.
    due_heap: list[tuple[int, int]] = attrs.Factory(list)
    next_id: int = 1
    failures: dict[int, FailedJob] = attrs.Factory(dict)
    #: The push settings of each failure-log entry (``fireworqpy_fail`` of the SQL drivers).
    retry_settings: dict[int, RetrySettings] = attrs.Factory(dict)
    next_failure_id: int = 1
    #: Unique keys of pushes (``fireworqpy_uniq`` of the SQL drivers): the first push's
    #: job and answer, by key; stored at the answer's ``created_at``.
    unique: dict[str, DuplicateJob] = attrs.Factory(dict)


def keyset_page(
    items: Iterable[T], key: Callable[[T], tuple[int, int]], descending: bool,
    cursor: Cursor | None, limit: int,
) -> Page[T]:
    """One keyset page (docs/api.md, Lists and cursors) of items already filtered to one list."""
    ordered = sorted(items, key=key, reverse=descending)
    if cursor is not None:
        start = (cursor.time, cursor.id)
        if descending:
            ordered = [item for item in ordered if key(item) <= start]
        else:
            ordered = [item for item in ordered if key(item) >= start]
    page = ordered[:limit]
    next_cursor = None
    if len(ordered) > limit:
        next_cursor = Cursor(*key(ordered[limit]))
    return Page(page, next_cursor)


class MemoryStore:
    """Definitions and jobs in dictionaries."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._queues: dict[str, QueueDefinition] = {}
        self._routings: dict[str, Routing] = {}
        self._queue_revision = 0
        self._routing_revision = 0
        self._member_revision = 0
        self._tables: dict[str, _Table] = {}
        self.grabber_id = os.getpid()

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    # Definitions

    async def list_queues(self) -> list[QueueDefinition]:
        return [self._queues[name] for name in sorted(self._queues, key=_utf8)]

    async def get_queue(self, name: str) -> QueueDefinition | None:
        return self._queues.get(name)

    async def put_queue(self, definition: QueueDefinition) -> bool:
        existing = self._queues.get(definition.name)
        definition = attrs.evolve(definition, paused=existing is not None and existing.paused)
        if existing == definition:
            return False
        if existing is None or existing.fireworq_members != definition.fireworq_members:
            self._queue_revision += 1
        if existing is None or own_members(existing) != own_members(definition):
            self._member_revision += 1
        self._queues[definition.name] = definition
        return True

    async def set_paused(self, name: str, paused: bool) -> QueueDefinition | None:
        existing = self._queues.get(name)
        if existing is None or existing.paused == paused:
            return existing
        self._queues[name] = attrs.evolve(existing, paused=paused)
        self._member_revision += 1
        return self._queues[name]

    async def delete_queue(self, name: str) -> QueueDefinition | None:
        definition = self._queues.pop(name, None)
        if definition is not None:
            self._queue_revision += 1
        return definition

    async def list_routings(self) -> list[Routing]:
        return sorted(
            self._routings.values(), key=lambda r: (_utf8(r.queue_name), _utf8(r.job_category))
        )

    async def get_routing(self, category: str) -> Routing | None:
        return self._routings.get(category)

    async def put_routing(self, routing: Routing) -> bool:
        if self._routings.get(routing.job_category) == routing:
            return False
        self._routings[routing.job_category] = routing
        self._routing_revision += 1
        return True

    async def delete_routing(self, category: str) -> Routing | None:
        routing = self._routings.pop(category, None)
        if routing is not None:
            self._routing_revision += 1
        return routing

    async def revisions(self) -> tuple[int, int, int]:
        return self._queue_revision, self._routing_revision, self._member_revision

    # Jobs

    def _table(self, table: str) -> _Table:
        found = self._tables.get(table)
        if found is None:
            found = self._tables[table] = _Table()
        return found

    async def prepare_queue(self, table: str) -> None:
        self._table(table)

    async def push(
        self, jobs: Sequence[tuple[str, NewJob]], handover: Handover | None = None,
        groups: Sequence[int] | None = None,
    ) -> list[PushedJob | DuplicateJob | NotStored]:
        # Every job can be stored here: ``groups`` never has to fail a request.
        now = self._now()
        pushed: list[PushedJob | DuplicateJob | NotStored] = not_sent(len(jobs))
        for index in handed_over(len(jobs), handover):
            table_name, new = jobs[index]
            table = self._table(table_name)
            unique = new.unique
            if unique is not None and unique.window:
                seen = table.unique.get(unique.key)
                if seen is not None and seen.pushed.created_at > now - unique.window * 1000:
                    pushed[index] = seen
                    continue
            job = Job(
                id=table.next_id, category=new.category, url=new.url, payload=new.payload,
                status=JobStatus.CLAIMED, created_at=now, next_try=now + new.run_after * 1000,
                retry_count=new.max_retries, retry_delay=new.retry_delay, fail_count=0,
                timeout=new.timeout, options=new.options,
            )
            table.next_id += 1
            table.jobs[job.id] = job
            heapq.heappush(table.due_heap, (job.next_try, job.id))
            stored = pushed[index] = PushedJob(job.id, job.created_at, job.next_try)
            if unique is not None and unique.window:
                table.unique[unique.key] = DuplicateJob.of(stored, new)
        return pushed

    async def prune_unique_keys(self, table_name: str, window: int, limit: int) -> int:
        table = self._table(table_name)
        cutoff = self._now() - window * 1000
        old = [key for key, seen in table.unique.items()
               if seen.pushed.created_at <= cutoff][:limit]
        for key in old:
            del table.unique[key]
        return len(old)

    def _claimed_at(self, table: _Table, entry: tuple[int, int]) -> Job | None:
        job = table.jobs.get(entry[1])
        if job is None or job.status is not JobStatus.CLAIMED or job.next_try != entry[0]:
            return None
        return job

    def _first_due(self, table: _Table, now: int) -> Job | None:
        heap = table.due_heap
        while heap:
            job = self._claimed_at(table, heap[0])
            if job is None:
                heapq.heappop(heap)
                continue
            return job if job.next_try <= now else None
        return None

    async def due_tables(self, tables: Sequence[str]) -> set[str]:
        now = self._now()
        return {name for name in tables if self._first_due(self._table(name), now) is not None}

    async def grab(self, table_name: str, limit: int) -> list[Job]:
        table = self._table(table_name)
        now = self._now()
        grabbed: list[Job] = []
        while len(grabbed) < limit:
            job = self._first_due(table, now)
            if job is None:
                break
            heapq.heappop(table.due_heap)
            job = attrs.evolve(job, status=JobStatus.GRABBED, grabber_id=self.grabber_id)
            table.jobs[job.id] = job
            grabbed.append(job)
        return grabbed

    async def complete(self, completions: Sequence[Completion]) -> None:
        now = self._now()
        for completion in completions:
            table = self._table(completion.table)
            job = completion.job
            stored = table.jobs.get(job.id)
            # As SQL's ``grabber_id = ?``: a job without a grabber is nobody's, not ours.
            if (
                job.grabber_id is None
                or stored is None
                or stored.status is not JobStatus.GRABBED
                or stored.grabber_id != job.grabber_id
            ):
                continue
            if completion.kind is CompletionKind.RETRY:
                retried = attrs.evolve(
                    stored, status=JobStatus.CLAIMED, grabber_id=None,
                    next_try=now + (stored.retry_delay * 1000 if completion.retry_in is None
                                    else completion.retry_in),
                    retry_count=stored.retry_count - 1, fail_count=stored.fail_count + 1,
                )
                table.jobs[job.id] = retried
                heapq.heappush(table.due_heap, (retried.next_try, retried.id))
                continue
            del table.jobs[job.id]
            if completion.kind is CompletionKind.FAIL:
                failure = FailedJob(
                    id=table.next_failure_id, job_id=stored.id, category=stored.category,
                    url=stored.url, payload=stored.payload, result=completion.result,
                    fail_count=stored.fail_count + 1, failed_at=now, created_at=stored.created_at,
                )
                table.next_failure_id += 1
                table.failures[failure.id] = failure
                table.retry_settings[failure.id] = RetrySettings.of(stored)

    async def recover(self, table_name: str, keep: Collection[InFlight] = ()) -> int:
        table = self._table(table_name)
        kept = set(keep)
        recovered = 0
        for job in list(table.jobs.values()):
            if job.status is JobStatus.GRABBED and (job.id, job.grabber_id) not in kept:
                claimed = attrs.evolve(job, status=JobStatus.CLAIMED, grabber_id=None)
                table.jobs[job.id] = claimed
                heapq.heappush(table.due_heap, (claimed.next_try, claimed.id))
                recovered += 1
        return recovered

    # Inspection

    def _in_state(self, table: _Table, state: JobState, now: int) -> Iterable[Job]:
        for job in table.jobs.values():
            if state is JobState.GRABBED:
                if job.status is JobStatus.GRABBED:
                    yield job
            elif job.status is JobStatus.CLAIMED and (job.next_try <= now) == (
                state is JobState.WAITING
            ):
                yield job

    async def list_jobs(
        self, table: str, state: JobState, ascending: bool, cursor: Cursor | None, limit: int
    ) -> Page[Job]:
        jobs = map(_inspected, self._in_state(self._table(table), state, self._now()))
        return keyset_page(jobs, job_position, not ascending, cursor, limit)

    async def get_job(self, table: str, job_id: int) -> Job | None:
        return _inspected(self._table(table).jobs.get(job_id))

    async def delete_job(self, table: str, job_id: int) -> Job | None:
        return _inspected(self._table(table).jobs.pop(job_id, None))

    async def list_failed(
        self, table: str, order: FailedOrder, cursor: Cursor | None, limit: int
    ) -> Page[FailedJob]:
        failures = self._table(table).failures.values()
        return keyset_page(failures, failed_position(order), True, cursor, limit)

    async def get_failed(self, table: str, failure_id: int) -> FailedJob | None:
        return self._table(table).failures.get(failure_id)

    async def delete_failed(self, table: str, failure_id: int) -> FailedJob | None:
        found = self._table(table)
        found.retry_settings.pop(failure_id, None)
        return found.failures.pop(failure_id, None)

    def _matching(self, table: _Table, selection: FailedFilter, limit: int) -> list[FailedJob]:
        matching = [failed for failed in table.failures.values() if selection.matches(failed)]
        matching.sort(key=failed_position(FailedOrder.FAILED))
        return matching[:limit]

    async def retry_failed(
        self, table_name: str, selection: FailedFilter, limit: int, run_after: int
    ) -> list[RetriedJob]:
        table = self._table(table_name)
        taken = self._matching(table, selection, limit)
        jobs = [
            (table.retry_settings.get(failed.id) or RetrySettings.inferred(failed.fail_count))
            .job(failed.category, failed.url, failed.payload, run_after)
            for failed in taken
        ]
        # Without a handover every job is stored.
        pushed = [answer for answer in await self.push([(table_name, job) for job in jobs])
                  if isinstance(answer, PushedJob)]
        for failed in taken:
            await self.delete_failed(table_name, failed.id)
        return [RetriedJob(failed.id, job, done)
                for failed, job, done in zip(taken, jobs, pushed)]

    async def delete_failed_matching(
        self, table_name: str, selection: FailedFilter, limit: int
    ) -> int:
        taken = self._matching(self._table(table_name), selection, limit)
        for failed in taken:
            await self.delete_failed(table_name, failed.id)
        return len(taken)

    async def failed_cutoff(self, table: str, keep: int) -> Cursor | None:
        newest_first = sorted(self._table(table).failures.values(),
                              key=failed_position(FailedOrder.FAILED), reverse=True)
        if len(newest_first) <= keep:
            return None
        return Cursor(*failed_position(FailedOrder.FAILED)(newest_first[keep]))

    async def counts(
        self, tables: Sequence[str], limit: int = COUNT_LIMIT
    ) -> dict[str, StateCounts]:
        now = self._now()
        result = {}
        for name in tables:
            table = self._table(name)
            waiting = deferred = grabbed = 0
            for job in table.jobs.values():
                if job.status is JobStatus.GRABBED:
                    grabbed += 1
                elif job.next_try <= now:
                    waiting += 1
                else:
                    deferred += 1
                if min(waiting, deferred, grabbed) >= limit:
                    break  # (the walk stops early only once every state is at the limit)
            result[name] = StateCounts(min(waiting, limit), min(deferred, limit),
                                       min(grabbed, limit), min(len(table.failures), limit))
        return result


@overload
def _inspected(job: Job) -> Job: ...


@overload
def _inspected(job: None) -> None: ...


def _inspected(job: Job | None) -> Job | None:
    """A job as inspection reads it: as the SQL drivers, without its job members (only
    grabs read them)."""
    if job is None or job.options is None:
        return job
    return attrs.evolve(job, options=None)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
