"""Values that travel between the API, the stores and the dispatchers."""

from __future__ import annotations

import functools
import json
import re
from enum import Enum
from typing import Any, Callable, Generic, Sequence, TypeVar

import attrs

T = TypeVar("T")

#: Longest queue name: keeps ``fireworq_jq_fail(<part>)`` within MySQL's 64 characters.
MAX_QUEUE_NAME_LENGTH = 46
#: Longest job category, in bytes of UTF-8.
MAX_CATEGORY_BYTES = 255

_NOT_TABLE_SAFE = re.compile(r"[^0-9a-z_]")


@functools.lru_cache(maxsize=4096)  # asked at every poll of every queue
def table_part(queue_name: str) -> str:
    """The part of a queue's table names that stands for the queue (docs/api.md, Names and ids)."""
    return _NOT_TABLE_SAFE.sub("_", queue_name)


def is_valid_queue_name(name: str) -> bool:
    return 1 <= len(name) <= MAX_QUEUE_NAME_LENGTH


def is_valid_category(category: str) -> bool:
    return 1 <= len(category.encode("utf-8", "surrogatepass")) <= MAX_CATEGORY_BYTES


#: Marks a queue member of our own (attrs metadata): see ``QueueDefinition``.
OWN_MEMBER = "fireworq.own_member"
#: Ranges of the failure-log retention members (integer fields, as docs/api.md, PUT /queue).
MAX_FAILED_JOB_TTL = 315360000
MAX_FAILED_JOB_LIMIT = 100000000
#: How long a queue remembers the unique key of a push, in seconds (docs/api.md,
#: Idempotent pushes): the default and the range of ``unique_window``.
DEFAULT_UNIQUE_WINDOW = 86400
MAX_UNIQUE_WINDOW = 31536000
#: Longest unique key (``unique_key``, ``Idempotency-Key``), in bytes of UTF-8.
MAX_UNIQUE_KEY_BYTES = 255


@attrs.frozen
class MemberCodec:
    """How a member of our own is stored as JSON: ``encode`` gives a JSON value, ``decode``
    reads one back and raises ``ValueError`` or ``TypeError`` when it cannot (the member
    then reads as its default). Without them, the value is stored as it is and must read
    back with exactly the default's type."""

    encode: Callable[[Any], Any] | None = None
    decode: Callable[[Any], Any] | None = None


def own_member(default: Any, codec: MemberCodec = MemberCodec(), *, secret: bool = False
               ) -> Any:
    """A queue member that Fireworq does not have: stored in a table of our own (JSON), so
    that adding one needs no schema change; keyword-only, so positional construction keeps
    meaning Fireworq's five members. A ``secret`` one is left out of the repr (log lines)."""
    return attrs.field(default=default, kw_only=True, metadata={OWN_MEMBER: codec},
                       repr=not secret)


BACKOFF_FIXED = "fixed"
BACKOFF_EXPONENTIAL = "exponential"
BACKOFFS = (BACKOFF_FIXED, BACKOFF_EXPONENTIAL)
RESULT_MODE_FIREWORQ = "fireworq"
RESULT_MODE_WEBHOOK = "webhook"
RESULT_MODES = (RESULT_MODE_FIREWORQ, RESULT_MODE_WEBHOOK)
#: Largest ``retry_max_delay`` (seconds); also the longest wait before a retry when no cap
#: is set: the largest ``retry_delay`` of a push (docs/api.md).
MAX_RETRY_DELAY = 31536000
#: Headers given as (name, value) pairs, in order.
HeaderPairs = tuple[tuple[str, str], ...]


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def decode(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"not one of {choices}")
        return str(value)
    return decode


_backoff = _one_of(BACKOFFS)
_result_mode = _one_of(RESULT_MODES)


def _header_pairs(value: Any) -> HeaderPairs:
    if not isinstance(value, dict) or not all(
            isinstance(name, str) and isinstance(item, str) for name, item in value.items()):
        raise TypeError("headers must be an object of strings")
    return tuple(value.items())


def _secrets(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError("signing secrets must be a list of strings")
    return tuple(value)


@attrs.frozen
class QueueDefinition:
    """A queue as stored: defaults are already resolved (never 0 interval or workers).

    The first five members are Fireworq's (its ``queue`` and ``queue_throttle`` tables).
    Members made with ``own_member`` are ours: every driver stores them generically (the
    SQL drivers as one JSON object per queue, through a ``MemberCodec`` for values JSON
    cannot hold as they are), ``PUT /queue`` replaces them, and a member equal to its
    default is not stored. Adding one needs no schema change. ``paused`` is state rather than definition: only
    pause and resume change it, ``PUT`` keeps it.
    """

    name: str
    polling_interval: int
    max_workers: int
    max_dispatches_per_second: float = 0.0
    max_burst_size: int = 0
    #: Seconds a failure-log entry is kept; 0 keeps it for ever.
    failed_job_ttl: int = own_member(0)
    #: Most failure-log entries kept (the newest); 0 for no limit.
    failed_job_limit: int = own_member(0)
    #: Seconds a push's unique key is remembered; 0 remembers none (no deduplication).
    unique_window: int = own_member(DEFAULT_UNIQUE_WINDOW)
    #: How the wait before a retry grows (docs/api.md, Retry policy): ``"fixed"`` or
    #: ``"exponential"``.
    retry_backoff: str = own_member(BACKOFF_FIXED, MemberCodec(decode=_backoff))
    #: Longest wait before a retry, in seconds; 0 for no cap of its own.
    retry_max_delay: int = own_member(0)
    #: Wait a random time from 0 to the computed wait (full jitter).
    retry_jitter: bool = own_member(False)
    #: How a worker's answer is read (docs/worker-protocol.md): ``"fireworq"`` or ``"webhook"``.
    result_mode: str = own_member(RESULT_MODE_FIREWORQ, MemberCodec(decode=_result_mode))
    #: Headers added to every delivery, in order.
    headers: HeaderPairs = own_member((), MemberCodec(encode=dict, decode=_header_pairs))
    #: Standard Webhooks secrets (``whsec_`` + base64) every delivery is signed with.
    signing_secrets: tuple[str, ...] = own_member(
        (), MemberCodec(encode=list, decode=_secrets), secret=True)
    paused: bool = attrs.field(default=False, kw_only=True)

    @property
    def table(self) -> str:
        return table_part(self.name)

    @property
    def throttled(self) -> bool:
        return self.max_dispatches_per_second > 0

    @property
    def fireworq_members(self) -> tuple[str, int, int, float, int]:
        """What Fireworq's tables hold of the definition."""
        return (self.name, self.polling_interval, self.max_workers,
                self.max_dispatches_per_second, self.max_burst_size)

    @property
    def has_retention(self) -> bool:
        return self.failed_job_ttl > 0 or self.failed_job_limit > 0


def own_members(definition: QueueDefinition) -> dict[str, Any]:
    """Our members that differ from their defaults, as stored (JSON values), by name, in
    definition order."""
    found: dict[str, Any] = {}
    for field in attrs.fields(type(definition)):
        codec = field.metadata.get(OWN_MEMBER)
        value = getattr(definition, field.name)
        if codec is None or value == field.default:
            continue
        found[field.name] = value if codec.encode is None else codec.encode(value)
    return found


def with_own_members(definition: QueueDefinition, stored: dict[str, Any]) -> QueueDefinition:
    """``definition`` with our members as stored; unknown names (written by a newer
    version) and values that do not read back are ignored, so they read as the default."""
    found: dict[str, Any] = {}
    for field in attrs.fields(type(definition)):
        codec = field.metadata.get(OWN_MEMBER)
        if codec is None or field.name not in stored:
            continue
        value = stored[field.name]
        if codec.decode is not None:
            try:
                found[field.name] = codec.decode(value)
            except (TypeError, ValueError):
                pass
        # The exact type: JSON's true must not pass for an integer member.
        elif type(value) is type(field.default):
            found[field.name] = value
    return attrs.evolve(definition, **found) if found else definition


@attrs.frozen
class Routing:
    queue_name: str
    job_category: str


class JobStatus(str, Enum):
    CLAIMED = "claimed"
    GRABBED = "grabbed"


class JobState(str, Enum):
    """The three inspection lists of docs/api.md, Inspecting jobs."""

    GRABBED = "grabbed"
    WAITING = "waiting"
    DEFERRED = "deferred"


def is_valid_unique_key(key: str) -> bool:
    """1 to 255 bytes of UTF-8 (a lone surrogate, which JSON's ``\\ud800`` can give, is
    none)."""
    try:
        return 1 <= len(key.encode("utf-8")) <= MAX_UNIQUE_KEY_BYTES
    except UnicodeEncodeError:
        return False


@attrs.frozen
class UniqueKey:
    """The key of an idempotent push (docs/api.md, Idempotent pushes). A push whose key
    its queue stored less than ``window`` seconds ago stores nothing and answers as the
    first push did; so the key is kept with what that answer needs besides the job."""

    key: str
    #: The payload as the push's answer shows it: compact JSON text, ``null`` for none.
    answer_payload: str
    #: Seconds the key is remembered: the queue's ``unique_window`` (0: not at all).
    window: int = 0


@attrs.frozen
class JobOptions:
    """The job members of our own a push may give (docs/api.md, Pushing jobs); ``None`` (or
    absent) leaves the queue's member in force. Stored beside the job, in a table of our
    own, only when at least one is given."""

    retry_backoff: str | None = None
    retry_max_delay: int | None = None
    retry_jitter: bool | None = None
    headers: HeaderPairs | None = None

    def encode(self) -> bytes:
        """As stored: a compact JSON object of the members given."""
        found: dict[str, Any] = {}
        for field in attrs.fields(JobOptions):
            value = getattr(self, field.name)
            if value is not None:
                found[field.name] = dict(value) if field.name == "headers" else value
        return json.dumps(found, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes | str | None) -> JobOptions | None:
        """Read a stored object; members that do not read back are left out."""
        if not raw:
            return None
        try:
            stored = json.loads(raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))
        except ValueError:
            return None
        if not isinstance(stored, dict):
            return None
        found: dict[str, Any] = {}
        backoff = stored.get("retry_backoff")
        if backoff in BACKOFFS:
            found["retry_backoff"] = backoff
        max_delay = stored.get("retry_max_delay")
        if type(max_delay) is int and 0 <= max_delay <= MAX_RETRY_DELAY:
            found["retry_max_delay"] = max_delay
        jitter = stored.get("retry_jitter")
        if type(jitter) is bool:
            found["retry_jitter"] = jitter
        try:
            found["headers"] = _header_pairs(stored["headers"])
        except (KeyError, TypeError):
            pass
        return cls(**found)


@attrs.frozen
class NewJob:
    """A job as a push stores it. ``payload`` is the stored payload (docs/api.md, Payloads)."""

    category: str
    url: str
    payload: bytes
    run_after: int
    max_retries: int
    retry_delay: int
    timeout: int
    unique: UniqueKey | None = attrs.field(default=None, kw_only=True)
    #: Our job members, ``None`` when the push gave none (nothing more is stored then).
    options: JobOptions | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class PushedJob:
    """What the store tells about a job it has just committed."""

    id: int
    created_at: int
    next_try: int


@attrs.frozen
class DuplicateJob:
    """The answer to a push whose unique key was seen: nothing was stored; ``pushed`` and
    ``job`` are the first push's as its answer showed them (``job.unique.answer_payload``;
    the stored payload is not kept, so ``job.payload`` may be empty)."""

    pushed: PushedJob
    job: NewJob

    @classmethod
    def of(cls, pushed: PushedJob, job: NewJob) -> DuplicateJob:
        """What a later push of ``job``'s key answers, as a store reads it back."""
        assert job.unique is not None
        return cls(pushed, attrs.evolve(job, payload=b"", unique=UniqueKey(
            job.unique.key, job.unique.answer_payload)))


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
    #: Our job members as stored with the job (read by grabs only).
    options: JobOptions | None = attrs.field(default=None, kw_only=True)

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
    """The outcome of one delivery attempt (docs/worker-protocol.md, The answer)."""

    status: str
    code: int
    message: str
    #: Seconds the worker asked to wait before the next attempt (``Retry-After``); never
    #: stored.
    retry_after: float | None = attrs.field(default=None, kw_only=True)

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


@attrs.frozen
class RetrySettings:
    """The push settings a failed job is retried with. Fireworq's failure log does not keep
    them, so our drivers write them beside each entry they write."""

    max_retries: int
    retry_delay: int
    timeout: int
    #: The job's members of our own (docs/api.md, Delivery policy), kept with them.
    options: JobOptions | None = None

    @classmethod
    def of(cls, job: Job) -> RetrySettings:
        return cls(job.max_retries, job.retry_delay, job.timeout, job.options)

    @classmethod
    def inferred(cls, fail_count: int) -> RetrySettings:
        """For entries written without them (by Fireworq, or before they were kept): as
        many retries as the job had (exact when it ran out of retries), push defaults for
        the rest."""
        return cls(max(fail_count - 1, 0), 0, 0)

    def job(self, category: str, url: str, payload: bytes, run_after: int) -> NewJob:
        """The new job that retrying a failure-log entry with these settings pushes."""
        return NewJob(category=category, url=url, payload=payload, run_after=run_after,
                      max_retries=self.max_retries, retry_delay=self.retry_delay,
                      timeout=self.timeout, options=self.options)


@attrs.frozen
class FailedFilter:
    """Which failure-log entries a bulk operation takes; they go oldest failure first, by
    (``failed_at``, id). Every condition given must hold."""

    failure_id: int | None = None
    category: str | None = None
    #: ms; entries that failed at or after it.
    failed_after: int | None = None
    #: ms; entries that failed before it.
    failed_before: int | None = None
    #: (failed_at, id) of the last entry to take, in failure order.
    up_to: Cursor | None = None

    def matches(self, failed: FailedJob) -> bool:
        return (
            (self.failure_id is None or failed.id == self.failure_id)
            and (self.category is None or failed.category == self.category)
            and (self.failed_after is None or failed.failed_at >= self.failed_after)
            and (self.failed_before is None or failed.failed_at < self.failed_before)
            and (self.up_to is None
                 or (failed.failed_at, failed.id) <= (self.up_to.time, self.up_to.id))
        )


@attrs.frozen
class RetriedJob:
    """A failure-log entry pushed again: the entry's id, the new job and its push."""

    failure_id: int
    job: NewJob
    pushed: PushedJob


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
    #: For a retry: ms until the next attempt, or ``None`` for the job's ``retry_delay`` as
    #: Fireworq waits it (the store computes it then, as Fireworq does).
    retry_in: int | None = None


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
    """Where a job stands in the inspection lists (docs/api.md, the job lists): (next_try, id)."""
    return job.next_try, job.id


def failed_position(order: FailedOrder) -> Callable[[FailedJob], tuple[int, int]]:
    """Where a failed job stands in the failure log sorted by ``order`` (docs/api.md, GET
    /queue/{q}/failed)."""
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
