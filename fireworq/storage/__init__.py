"""The storage seams: what the API and the dispatchers need from a store.

Three drivers implement them: ``memory``, ``sqlite`` and ``mysql``. A job table is named
by a queue's table part (``QueueDefinition.table``), so two queue names that map to the
same part share their jobs, as they do in a Fireworq database.

What Fireworq does not have lives in tables of our own (prefix ``fireworqpy_``), so that
Fireworq's tables keep their shape: our queue members and the paused flag
(``fireworqpy_queue``, with its change counter in ``fireworqpy_config_revision``, which
Fireworq nodes do not watch), the push settings of each failure-log entry we write
(``fireworqpy_fail(<part>)``), which retrying it needs, the unique keys of idempotent
pushes (``fireworqpy_uniq(<part>)``), and the job members of our own of each job pushed with
some (``fireworqpy_opt(<part>)``, docs/api.md, Delivery policy).
"""

from __future__ import annotations

from typing import Any, Collection, Protocol, Sequence

from fireworq.errors import NotStored
from fireworq.model import (
    Completion,
    Cursor,
    DuplicateJob,
    FailedFilter,
    FailedJob,
    FailedOrder,
    InFlight,
    Job,
    JobState,
    NewJob,
    Page,
    PushedJob,
    QueueDefinition,
    RetriedJob,
    Routing,
    StateCounts,
)

#: Each figure of ``JobStore.counts`` stops at this many jobs (or failure-log entries): the
#: count walks at most that many index entries, so that its cost does not grow with the
#: queue. /metrics shows it as it is (docs/api.md).
COUNT_LIMIT = 10_000


class Handover(Protocol):
    """The jobs of a push batch on their way to the store, which the pusher may still call
    back (their deadline passed: their pushes were answered "not stored")."""

    def take(self) -> Sequence[int]:
        """The indexes of the jobs to store. Called once, by the thread that sends them,
        right before it does: from then on none of them can be called back."""
        ...


def handed_over(count: int, handover: Handover | None) -> Sequence[int]:
    """The indexes of the jobs of a push to store: all of them without a handover."""
    return range(count) if handover is None else handover.take()


def not_sent(count: int) -> list[Any]:
    """The answers of a push before any job is stored."""
    return [NotStored("called back before it was sent")] * count


class DefinitionStore(Protocol):
    """Queue definitions, routings and their change counters."""

    async def list_queues(self) -> list[QueueDefinition]: ...

    async def get_queue(self, name: str) -> QueueDefinition | None: ...

    async def put_queue(self, definition: QueueDefinition) -> bool:
        """Store it (our members replaced, ``paused`` kept as stored); ``True`` when this
        changed what was stored. Only a change of Fireworq's members bumps Fireworq's
        counter (its nodes restart every queue when it moves); ours bump our own."""
        ...

    async def set_paused(self, name: str, paused: bool) -> QueueDefinition | None:
        """Pause or resume a stored queue; the definition as stored now, ``None`` when there
        is no such queue. A change bumps our members' counter only."""
        ...

    async def delete_queue(self, name: str) -> QueueDefinition | None:
        """Delete it; the definition as it was, ``None`` when there was none."""
        ...

    async def list_routings(self) -> list[Routing]: ...

    async def get_routing(self, category: str) -> Routing | None: ...

    async def put_routing(self, routing: Routing) -> bool: ...

    async def delete_routing(self, category: str) -> Routing | None: ...

    async def revisions(self) -> tuple[int, int, int]:
        """The (queue definitions, routings, our queue members) change counters, for change
        detection."""
        ...

    async def ping(self) -> None: ...


class JobStore(Protocol):
    """Jobs and failure logs of every queue."""

    async def prepare_queue(self, table: str) -> None:
        """Make sure the queue's tables exist (idempotent)."""
        ...

    async def push(
        self, jobs: Sequence[tuple[str, NewJob]], handover: Handover | None = None,
        groups: Sequence[int] | None = None,
    ) -> list[PushedJob | DuplicateJob | NotStored]:
        """Store the jobs in one transaction; answer only once it is committed, one answer
        per job in order: the job as stored, or why it was not (``JobTooLarge``: more than
        the store takes in one statement; the others are stored). With a ``handover`` only
        the jobs it hands over are stored, the others are answered ``NotStored``.

        ``groups`` numbers the request each job came with (one number per job; without
        it each job is a request of its own): the jobs of one request are stored all or
        none, so a job that cannot be stored fails every job of its request with its
        error. A handover hands over whole requests.

        A job with a ``unique`` key (and a window) that its table stored less than that
        window ago, by the store's clock, earlier or in this very call, is not stored: it
        is answered ``DuplicateJob`` with the first push's job and answer. A key is
        claimed in the transaction that stores its job, so two pushes with one key, from
        any nodes at once, store one job."""
        ...

    async def due_tables(self, tables: Sequence[str]) -> set[str]:
        """Which of these tables hold at least one due ``claimed`` job, in one round trip."""
        ...

    async def grab(self, table: str, limit: int) -> list[Job]:
        """Claim up to ``limit`` due jobs, in (next_try, id) order, for this node."""
        ...

    async def complete(self, completions: Sequence[Completion]) -> None:
        """Write the outcomes of attempts, each guarded by its grabber, in one transaction."""
        ...

    async def recover(self, table: str, keep: Collection[InFlight] = ()) -> int:
        """Set the table's grabbed jobs back to ``claimed`` (keeping their ``next_try`` and
        counters), except the deliveries in flight on this node given in ``keep``; the
        number set back. Only the queue's active node calls it: at activation (orphans of a
        node that died or lost the queue) and now and then while active (jobs of its own
        whose outcome was never written). ``mysql``: only while this session holds one of
        the table's locks, checked in the statement."""
        ...

    async def list_jobs(
        self, table: str, state: JobState, ascending: bool, cursor: Cursor | None, limit: int
    ) -> Page[Job]: ...

    async def get_job(self, table: str, job_id: int) -> Job | None: ...

    async def delete_job(self, table: str, job_id: int) -> Job | None: ...

    async def list_failed(
        self, table: str, order: FailedOrder, cursor: Cursor | None, limit: int
    ) -> Page[FailedJob]: ...

    async def get_failed(self, table: str, failure_id: int) -> FailedJob | None: ...

    async def delete_failed(self, table: str, failure_id: int) -> FailedJob | None: ...

    async def retry_failed(
        self, table: str, selection: FailedFilter, limit: int, run_after: int
    ) -> list[RetriedJob]:
        """Push up to ``limit`` matching entries again, oldest failure first, as new jobs
        with their push's settings (``RetrySettings``), due after ``run_after`` seconds, and
        remove them from the failure log: all in one transaction."""
        ...

    async def delete_failed_matching(
        self, table: str, selection: FailedFilter, limit: int
    ) -> int:
        """Remove up to ``limit`` matching entries, oldest failure first, in one
        transaction; how many were removed."""
        ...

    async def prune_unique_keys(self, table: str, window: int, limit: int) -> int:
        """Forget up to ``limit`` of the table's unique keys stored ``window`` seconds ago
        or earlier (store clock), in one transaction; how many were forgotten."""
        ...

    async def failed_cutoff(self, table: str, keep: int) -> Cursor | None:
        """The newest entry beyond the ``keep`` newest ones, by (``failed_at``, id), as a
        position (``FailedFilter.up_to``); ``None`` when there are at most ``keep``."""
        ...

    async def counts(
        self, tables: Sequence[str], limit: int = COUNT_LIMIT
    ) -> dict[str, StateCounts]:
        """Jobs by state and failure-log sizes, for the metrics; each figure stops at
        ``limit``. Never holds the store for long, however large the tables."""
        ...

    async def ping(self) -> None: ...


class Store(DefinitionStore, JobStore, Protocol):
    """A driver: both halves, plus its lifetime."""

    async def open(self) -> None:
        """Connect and create or migrate the schema."""
        ...

    async def close(self) -> None: ...
