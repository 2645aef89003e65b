"""Values that travel between the API, the stores and the dispatchers."""

from __future__ import annotations

import re
from enum import Enum
from typing import Callable, Generic, Sequence, TypeVar

import attrs

T = TypeVar("T")

#: Longest queue name: keeps ``fireworq_jq_fail(<part>)`` within MySQL's 64 characters.
MAX_QUEUE_NAME_LENGTH = 46
#: Longest job category, in bytes of UTF-8.
MAX_CATEGORY_BYTES = 255

_NOT_TABLE_SAFE = re.compile(r"[^0-9a-z_]")


def table_part(queue_name: str) -> str:
    """The part of a queue's table names that stands for the queue (API.md 1.8)."""
    return _NOT_TABLE_SAFE.sub("_", queue_name)


def is_valid_queue_name(name: str) -> bool:
    return 1 <= len(name) <= MAX_QUEUE_NAME_LENGTH


def is_valid_category(category: str) -> bool:
    return 1 <= len(category.encode("utf-8", "surrogatepass")) <= MAX_CATEGORY_BYTES


@attrs.frozen
class QueueDefinition:
    """A queue as stored: defaults are already resolved (never 0 interval or workers)."""

    name: str
    polling_interval: int
    max_workers: int
    max_dispatches_per_second: float = 0.0
    max_burst_size: int = 0

    @property
    def table(self) -> str:
        return table_part(self.name)

    @property
    def throttled(self) -> bool:
        return self.max_dispatches_per_second > 0


@attrs.frozen
class Routing:
    queue_name: str
    job_category: str


class JobStatus(str, Enum):
    CLAIMED = "claimed"
    GRABBED = "grabbed"


class JobState(str, Enum):
    """The three inspection lists of API.md 2.19-2.21."""

    GRABBED = "grabbed"
    WAITING = "waiting"
    DEFERRED = "deferred"


@attrs.frozen
class NewJob:
    """A job as a push stores it. ``payload`` is the stored payload (API.md 1.6)."""

    category: str
    url: str
    payload: bytes
    run_after: int
    max_retries: int
    retry_delay: int
    timeout: int


@attrs.frozen
class PushedJob:
    """What the store tells about a job it has just committed."""

    id: int
    created_at: int
    next_try: int


@attrs.frozen
class Job:
    """A job read from a store. Times are ms of the store clock."""

    id: int
    category: str
    url: str
    payload: bytes
    status: JobStatus
    created_at: int
    next_try: int
    retry_count: int
    retry_delay: int
    fail_count: int
    timeout: int
    grabber_id: int | None = None

    @property
    def max_retries(self) -> int:
        return self.fail_count + self.retry_count


#: A grabbed job whose delivery is in flight on this node: (job id, the grabber id it was
#: grabbed with). Orphan recovery leaves exactly these jobs grabbed.
InFlight = tuple[int, int | None]


class ResultStatus(str, Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    PERMANENT_FAILURE = "permanent-failure"
    INTERNAL_FAILURE = "internal-failure"


@attrs.frozen
class WorkerResult:
    """The outcome of one delivery attempt (API.md 3.3)."""

    status: str
    code: int
    message: str

    @property
    def succeeded(self) -> bool:
        return self.status == ResultStatus.SUCCESS.value


@attrs.frozen
class FailedJob:
    id: int
    job_id: int
    category: str
    url: str
    payload: bytes
    result: WorkerResult
    fail_count: int
    failed_at: int
    created_at: int


class CompletionKind(str, Enum):
    SUCCESS = "success"
    RETRY = "retry"
    FAIL = "fail"


@attrs.frozen
class Completion:
    """The store change that ends one attempt; guarded by the grabber that owns the job."""

    table: str
    job: Job
    kind: CompletionKind
    result: WorkerResult


@attrs.frozen
class Cursor:
    """A keyset position: the sort time (ms) and id of the first item of a page."""

    time: int
    id: int


@attrs.frozen
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: Cursor | None


class FailedOrder(str, Enum):
    FAILED = "failed"
    CREATED = "created"


def job_position(job: Job) -> tuple[int, int]:
    """Where a job stands in the inspection lists (API.md 2.19): (next_try, id)."""
    return job.next_try, job.id


def failed_position(order: FailedOrder) -> Callable[[FailedJob], tuple[int, int]]:
    """Where a failed job stands in the failure log sorted by ``order`` (API.md 2.24)."""
    if order is FailedOrder.FAILED:
        return lambda failed: (failed.failed_at, failed.id)
    return lambda failed: (failed.created_at, failed.id)


@attrs.frozen
class Node:
    """The active node of a queue, as ``/queue/{q}/node`` shows it."""

    id: str
    host: str


@attrs.frozen
class StateCounts:
    waiting: int = 0
    deferred: int = 0
    grabbed: int = 0
    failed: int = 0
