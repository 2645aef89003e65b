"""What the API answers, as typed values (docs/api.md, "Shared objects").

Each value is read from the JSON object the daemon sent, which it keeps as ``raw``: members
this version of the client does not know (added by a newer daemon) are still there, and
``raw`` is what ``fireworq ... --json`` prints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Mapping, TypeVar

import attrs

T = TypeVar("T")

JSONObject = Mapping[str, Any]


class UnexpectedAnswer(ValueError):
    """An answer that is not what docs/api.md says the endpoint answers."""


def _raw() -> Any:
    # Not part of a value's identity: two answers with the same members compare equal.
    return attrs.field(eq=False, repr=False, factory=dict, kw_only=True)


def _object(value: Any) -> JSONObject:
    if not isinstance(value, dict):
        raise UnexpectedAnswer(f"expected a JSON object, got {type(value).__name__}")
    return value


def _int(json: JSONObject, name: str, default: int | None = None) -> int:
    value = json.get(name, default)
    if type(value) is not int:
        raise UnexpectedAnswer(f"member {name!r} is not an integer: {value!r}")
    return value


def _number(json: JSONObject, name: str, default: float | None = None) -> float:
    value = json.get(name, default)
    if type(value) not in (int, float):
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


@attrs.frozen
class Queue:
    """A queue definition. Members the daemon leaves out when 0 read as 0."""

    name: str
    polling_interval: int
    max_workers: int
    max_dispatches_per_second: float
    max_burst_size: int
    raw: JSONObject = _raw()

    @classmethod
    def from_json(cls, value: Any) -> Queue:
        json = _object(value)
        return cls(
            name=_str(json, "name"),
            polling_interval=_int(json, "polling_interval", 0),
            max_workers=_int(json, "max_workers"),
            max_dispatches_per_second=_number(json, "max_dispatches_per_second", 0),
            max_burst_size=_int(json, "max_burst_size", 0),
            raw=json,
        )


@attrs.frozen
class Routing:
    job_category: str
    queue_name: str
    raw: JSONObject = _raw()

    @classmethod
    def from_json(cls, value: Any) -> Routing:
        json = _object(value)
        return cls(_str(json, "job_category"), _str(json, "queue_name"), raw=json)


@attrs.frozen
class PushedJob:
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

    @classmethod
    def from_json(cls, value: Any) -> PushedJob:
        json = _object(value)
        return cls(
            id=_int(json, "id"), queue_name=_str(json, "queue_name"),
            category=_str(json, "category"), url=_str(json, "url"), payload=json.get("payload"),
            run_after=_int(json, "run_after"), timeout=_int(json, "timeout"),
            retry_delay=_int(json, "retry_delay"), max_retries=_int(json, "max_retries"),
            raw=json,
        )


@attrs.frozen
class Job:
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

    @classmethod
    def from_json(cls, value: Any) -> Job:
        json = _object(value)
        return cls(
            id=_int(json, "id"), category=_str(json, "category"), url=_str(json, "url"),
            payload=json.get("payload"), status=_str(json, "status"),
            created_at=_time(json, "created_at"), next_try=_time(json, "next_try"),
            timeout=_int(json, "timeout"), fail_count=_int(json, "fail_count"),
            max_retries=_int(json, "max_retries"), retry_delay=_int(json, "retry_delay"),
            raw=json,
        )


@attrs.frozen
class Result:
    """A worker's answer to one attempt, as the daemon read it."""

    status: str
    code: int
    message: str

    @classmethod
    def from_json(cls, value: Any) -> Result:
        json = _object(value)
        return cls(_str(json, "status"), _int(json, "code"), _str(json, "message"))


@attrs.frozen
class FailedJob:
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

    @classmethod
    def from_json(cls, value: Any) -> FailedJob:
        json = _object(value)
        return cls(
            id=_int(json, "id"), job_id=_int(json, "job_id"), category=_str(json, "category"),
            url=_str(json, "url"), payload=json.get("payload"),
            result=Result.from_json(json.get("result")), fail_count=_int(json, "fail_count"),
            failed_at=_time(json, "failed_at"), created_at=_time(json, "created_at"), raw=json,
        )


@attrs.frozen
class QueueStats:
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

    @classmethod
    def from_json(cls, value: Any) -> QueueStats:
        json = _object(value)
        members: dict[str, Any] = {
            field.name: _int(json, field.name) for field in attrs.fields(cls)
            if field.name != "raw"
        }
        return cls(**members, raw=json)


@attrs.frozen
class Node:
    """The node (a MySQL session, or a process) that dispatches a queue."""

    id: str
    host: str
    raw: JSONObject = _raw()

    @classmethod
    def from_json(cls, value: Any) -> Node:
        json = _object(value)
        return cls(_str(json, "id"), _str(json, "host"), raw=json)


@attrs.frozen
class ProcessStats:
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

    @classmethod
    def from_json(cls, value: Any) -> ProcessStats:
        json = _object(value)
        counts = json.get("gc_counts")
        if not isinstance(counts, list) or not all(type(c) is int for c in counts):
            raise UnexpectedAnswer(f"member 'gc_counts' is not a list of integers: {counts!r}")
        open_fds = json.get("open_fds")
        return cls(
            time=_int(json, "time"), version=_str(json, "version"),
            python_version=_str(json, "python_version"), pid=_int(json, "pid"),
            uptime_seconds=_number(json, "uptime_seconds"), rss_bytes=_int(json, "rss_bytes"),
            cpu_user_seconds=_number(json, "cpu_user_seconds"),
            cpu_system_seconds=_number(json, "cpu_system_seconds"),
            threads=_int(json, "threads"), gc_counts=tuple(counts),
            open_fds=None if open_fds is None else _int(json, "open_fds"), raw=json,
        )


@attrs.frozen
class Page(Generic[T]):
    """One page of a list; ``next_cursor`` is ``""`` on the last one."""

    items: tuple[T, ...]
    next_cursor: str
