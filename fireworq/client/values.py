"""What the API answers, as typed values (docs/api.md, "Shared objects").

Each value is read from the JSON object the daemon sent, which it keeps as ``raw``: members
this version of the client does not know (added by a newer daemon) are still there, and
``raw`` is what ``fireworq ... --json`` prints. A member is read by the type of its field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, ClassVar, Generic, Mapping, TypeVar

import attrs

T = TypeVar("T")
V = TypeVar("V", bound="_FromJSON")

JSONObject = Mapping[str, Any]
Reader = Callable[[JSONObject, str], Any]


class UnexpectedAnswer(ValueError):
    """An answer that is not what docs/api.md says the endpoint answers."""


def _object(value: Any) -> JSONObject:
    if not isinstance(value, dict):
        raise UnexpectedAnswer(f"expected a JSON object, got {type(value).__name__}")
    return value


def _int(json: JSONObject, name: str) -> int:
    value = json.get(name)
    if type(value) is not int:
        raise UnexpectedAnswer(f"member {name!r} is not an integer: {value!r}")
    return value


def _number(json: JSONObject, name: str) -> float:
    value = json.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnexpectedAnswer(f"member {name!r} is not a number: {value!r}")
    return float(value)


def _str(json: JSONObject, name: str) -> str:
    value = json.get(name)
    if not isinstance(value, str):
        raise UnexpectedAnswer(f"member {name!r} is not a string: {value!r}")
    return value


def _time(json: JSONObject, name: str) -> datetime:
    text = _str(json, name)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise UnexpectedAnswer(f"member {name!r} is not an RFC 3339 time: {text!r}") from None


def _any(json: JSONObject, name: str) -> Any:
    return json.get(name)


def _bool(json: JSONObject, name: str) -> bool:
    value = json.get(name)
    if not isinstance(value, bool):
        raise UnexpectedAnswer(f"member {name!r} is not a boolean: {value!r}")
    return value


def _zero_when_left_out(read: Reader) -> Reader:
    # The daemon leaves some members out when they are 0 (docs/api.md, Queue definition object).
    return lambda json, name: read(json, name) if name in json else 0


def _default_when_left_out(read: Reader, default: Any) -> Reader:
    # The delivery policy members are left out at their defaults (docs/api.md).
    return lambda json, name: read(json, name) if name in json else default


def _headers(json: JSONObject, name: str) -> dict[str, str]:
    value = json.get(name)
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise UnexpectedAnswer(f"member {name!r} is not an object of strings: {value!r}")
    return dict(value)


def _strings(json: JSONObject, name: str) -> tuple[str, ...]:
    value = json.get(name)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UnexpectedAnswer(f"member {name!r} is not an array of strings: {value!r}")
    return tuple(value)


#: Field type (as written in the class) -> how a member of that type is read.
_READERS: dict[str, Reader] = {
    "int": _int, "float": _number, "str": _str, "datetime": _time, "Any": _any, "bool": _bool,
}


def _raw() -> Any:
    # Not part of a value's identity: two answers with the same members compare equal.
    return attrs.field(eq=False, repr=False, factory=dict, kw_only=True)


class _FromJSON:
    """Values read from a JSON object member by member, by the types of their fields;
    ``_READ`` names the fields read otherwise."""

    _READ: ClassVar[Mapping[str, Reader]] = {}

    @classmethod
    def from_json(cls: type[V], value: Any) -> V:
        json = _object(value)
        members = {
            field.name: cls._READ.get(field.name) or _READERS[str(field.type)]
            for field in attrs.fields(cls) if field.name != "raw"  # type: ignore[arg-type]
        }
        return cls(**{name: read(json, name) for name, read in members.items()},  # type: ignore[call-arg]
                   raw=json)


@attrs.frozen
class Queue(_FromJSON):
    """A queue definition. Members the daemon leaves out when 0 (or false) read as 0 (or
    false)."""

    name: str
    polling_interval: int
    max_workers: int
    max_dispatches_per_second: float
    max_burst_size: int
    #: Seconds a failure-log entry is kept (0: for ever) and the most entries kept (0: no limit).
    failed_job_ttl: int = 0
    failed_job_limit: int = 0
    paused: bool = False
    #: The delivery policy (docs/api.md, Delivery policy); defaults when left out.
    retry_backoff: str = "fixed"
    retry_max_delay: int = 0
    retry_jitter: bool = False
    result_mode: str = "fireworq"
    headers: Mapping[str, str] = attrs.field(factory=dict)
    #: As the daemon shows them: redacted. Sent back in a PUT, they keep the stored secrets.
    signing_secrets: tuple[str, ...] = ()
    raw: JSONObject = _raw()

    _READ = {
        "polling_interval": _zero_when_left_out(_int),
        "max_dispatches_per_second": _zero_when_left_out(_number),
        "max_burst_size": _zero_when_left_out(_int),
        "failed_job_ttl": _zero_when_left_out(_int),
        "failed_job_limit": _zero_when_left_out(_int),
        "paused": _default_when_left_out(_bool, False),
        "retry_backoff": _default_when_left_out(_str, "fixed"),
        "retry_max_delay": _zero_when_left_out(_int),
        "retry_jitter": _default_when_left_out(_bool, False),
        "result_mode": _default_when_left_out(_str, "fireworq"),
        "headers": _default_when_left_out(_headers, {}),
        "signing_secrets": _default_when_left_out(_strings, ()),
    }


@attrs.frozen
class Routing(_FromJSON):
    job_category: str
    queue_name: str
    raw: JSONObject = _raw()


@attrs.frozen
class PushedJob(_FromJSON):
    """A push as the daemon accepted it (the job is stored)."""

    id: int
    queue_name: str
    category: str
    url: str
    #: The payload as a JSON value; None when the push had none.
    payload: Any
    run_after: int
    timeout: int
    retry_delay: int
    max_retries: int
    raw: JSONObject = _raw()
    #: The push's unique key was seen (docs/api.md, Idempotent pushes): nothing was
    #: stored, the answer is the first push's (which it equals). Not a member: the
    #: Fireworq-Duplicate header.
    duplicate: bool = attrs.field(default=False, kw_only=True, eq=False)

    _READ = {"duplicate": lambda json, name: False}


@attrs.frozen
class Job(_FromJSON):
    """A job in the store: ``status`` is ``claimed`` (waiting or deferred) or ``grabbed``."""

    id: int
    category: str
    url: str
    payload: Any
    status: str
    created_at: datetime
    next_try: datetime
    timeout: int
    fail_count: int
    max_retries: int
    retry_delay: int
    raw: JSONObject = _raw()


@attrs.frozen
class Result:
    """A worker's answer to one attempt, as the daemon read it."""

    status: str
    code: int
    message: str


def _result(json: JSONObject, name: str) -> Result:
    result = _object(json.get(name))
    return Result(_str(result, "status"), _int(result, "code"), _str(result, "message"))


@attrs.frozen
class FailedJob(_FromJSON):
    """An entry of a queue's failure log."""

    id: int
    job_id: int
    category: str
    url: str
    payload: Any
    result: Result
    fail_count: int
    failed_at: datetime
    created_at: datetime
    raw: JSONObject = _raw()

    _READ = {"result": _result}


@attrs.frozen
class QueueStats(_FromJSON):
    """One node's counters of one queue (docs/api.md, "Queue stats")."""

    total_pushes: int
    total_pops: int
    total_successes: int
    total_failures: int
    total_permanent_failures: int
    total_completes: int
    total_elapsed: int
    pushes_per_second: int
    pops_per_second: int
    outstanding_jobs: int
    total_workers: int
    idle_workers: int
    active_nodes: int
    raw: JSONObject = _raw()


@attrs.frozen
class Node(_FromJSON):
    """The node (a MySQL session, or a process) that dispatches a queue."""

    id: str
    host: str
    raw: JSONObject = _raw()


def _gc_counts(json: JSONObject, name: str) -> tuple[int, ...]:
    counts = json.get(name)
    if not isinstance(counts, list) or not all(type(c) is int for c in counts):
        raise UnexpectedAnswer(f"member {name!r} is not a list of integers: {counts!r}")
    return tuple(counts)


def _int_or_null(json: JSONObject, name: str) -> int | None:
    return None if json.get(name) is None else _int(json, name)


@attrs.frozen
class ProcessStats(_FromJSON):
    """``GET /stats``: figures of the daemon process."""

    time: int
    version: str
    python_version: str
    pid: int
    uptime_seconds: float
    rss_bytes: int
    cpu_user_seconds: float
    cpu_system_seconds: float
    threads: int
    gc_counts: tuple[int, ...]
    open_fds: int | None
    raw: JSONObject = _raw()

    _READ = {"gc_counts": _gc_counts, "open_fds": _int_or_null}


@attrs.frozen
class Page(Generic[T]):
    """One page of a list; ``next_cursor`` is ``""`` on the last one."""

    items: tuple[T, ...]
    next_cursor: str


@attrs.frozen
class RetriedJobs(_FromJSON):
    """What a bulk retry of the failure log did: how many entries, and their new jobs' ids."""

    retried: int
    jobs: Any
    raw: JSONObject = _raw()
