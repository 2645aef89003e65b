"""The API as data: each endpoint of docs/api.md is a function that returns a L{Call} (the
request to send and how to read its answer), without any I/O.

Both clients run these calls: L{fireworq.client.Client} over ``http.client``, and
L{fireworq.client.twisted.TwistedClient} over treq. A new endpoint is one function here and
one line in each client.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import attrs

from fireworq import __version__
from fireworq.client.values import (
    FailedJob,
    Job,
    Node,
    Page,
    ProcessStats,
    PushedJob,
    Queue,
    QueueStats,
    RetriedJobs,
    Routing,
    UnexpectedAnswer,
)

T = TypeVar("T")

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 10.0
USER_AGENT = f"fireworq-py-client/{__version__}"
JOB_STATES = ("grabbed", "waiting", "deferred")
#: The most items the daemon puts on one page.
MAX_PAGE = 1000


class APIError(Exception):
    """The daemon answered with an error, or did not answer at all (``code`` 0).

    ``code`` is the HTTP status, ``error`` its reason phrase and ``message`` the daemon's
    explanation (docs/api.md, "Errors"); ``retry_after`` is the seconds of a
    ``Retry-After`` header (a 503 while the store is unavailable), else None.
    """

    def __init__(self, code: int, error: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(code, error, message)
        self.code = code
        self.error = error
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code} {self.error}: {self.message}" if self.code else self.message


@attrs.frozen
class Request:
    """What to send; ``path`` is already percent-encoded, ``query`` is not."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    #: Headers of this request besides the client's own.
    headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Answer:
    """What came back; header names are lower-case."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise UnexpectedAnswer(f"the answer is not JSON: {e}") from None


@attrs.frozen
class Call(Generic[T]):
    """One request and how to read a successful answer to it."""

    request: Request
    read: Callable[[Answer], T]
    #: Statuses that are answers rather than errors (``/readyz`` answers 503 when not ready).
    success: frozenset[int] = frozenset({200})

    def result(self, answer: Answer) -> T:
        """The value of the answer; L{APIError} when it is an error answer."""
        if answer.status not in self.success:
            raise error_of(answer)
        return self.read(answer)


@attrs.frozen
class Paged(Generic[T]):
    """A list endpoint walked from its first page; ``limit`` caps the items (None: all)."""

    page: Callable[[str], Call[Page[T]]]
    limit: int | None = None


class Walk(Generic[T]):
    """Where a walk through a list stands: the call for the next page, and which items of each
    page to keep (``limit`` counts them)."""

    def __init__(self, paged: Paged[T]) -> None:
        self._paged = paged
        self._remaining = paged.limit
        self._cursor: str | None = ""

    def next_call(self) -> Call[Page[T]] | None:
        """The next page's call; None once the walk is over."""
        if self._cursor is None or self._remaining == 0:
            return None
        return self._paged.page(self._cursor)

    def take(self, page: Page[T]) -> tuple[T, ...]:
        items = page.items if self._remaining is None else page.items[: self._remaining]
        if self._remaining is not None:
            self._remaining -= len(items)
        self._cursor = page.next_cursor or None
        return items


def default_server() -> str:
    """``FIREWORQ_URL``, else http://127.0.0.1:8080."""
    return os.environ.get("FIREWORQ_URL") or DEFAULT_SERVER


@attrs.frozen(init=False)
class ServerAddress:
    """Where the daemon is: ``http[s]://host[:port]``, and a path prefix when it sits behind
    a proxy under one (``https://jobs.internal/fireworq``)."""

    origin: str
    https: bool
    host: str
    port: int
    prefix: str

    def __init__(self, server: str) -> None:
        if "://" not in server:
            server = "http://" + server
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http or https URL: {server!r}")
        https = parts.scheme == "https"
        self.__attrs_init__(
            f"{parts.scheme}://{parts.netloc}", https, parts.hostname,
            parts.port or (443 if https else 80), parts.path.rstrip("/"))

    @property
    def url(self) -> str:
        return self.origin + self.prefix

    def target(self, request: Request) -> str:
        """The request target: path and query."""
        query = "?" + urlencode(request.query) if request.query else ""
        return self.prefix + request.path + query


def request_headers(request: Request, token: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if request.body is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    headers.update(request.headers)
    return headers


def error_of(answer: Answer) -> APIError:
    retry_after: float | None = None
    try:
        retry_after = float(answer.headers.get("retry-after", ""))
    except ValueError:
        pass
    try:
        body = json.loads(answer.body)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return APIError(answer.status, str(body.get("error", "")), body["message"], retry_after)
    # Not the daemon's JSON error (a proxy in between, say): show the start of what came.
    text = answer.body[:200].decode("utf-8", "replace").strip()
    return APIError(answer.status, "Unexpected answer", text or "(empty body)", retry_after)


def _segment(text: str) -> str:
    return quote(text, safe="")


def _category(text: str) -> str:
    # A category may hold "/" (everything after /job/ or /routing/ is the category).
    return quote(text, safe="/")


def _body(members: Mapping[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in members.items() if v is not None},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _text(answer: Answer) -> str:
    return answer.body.decode("utf-8", "replace")


def _read(parse: Callable[[Any], T]) -> Callable[[Answer], T]:
    return lambda answer: parse(answer.json())


def _read_list(parse: Callable[[Any], T]) -> Callable[[Answer], list[T]]:
    def read(answer: Answer) -> list[T]:
        items = answer.json()
        if not isinstance(items, list):
            raise UnexpectedAnswer("expected a JSON array")
        return [parse(item) for item in items]

    return read


def _read_page(member: str, parse: Callable[[Any], T]) -> Callable[[Answer], Page[T]]:
    def read(answer: Answer) -> Page[T]:
        page = answer.json()
        if not isinstance(page, dict) or not isinstance(page.get(member), list):
            raise UnexpectedAnswer(f"expected an object with a {member!r} array")
        cursor = page.get("next_cursor")
        if not isinstance(cursor, str):
            raise UnexpectedAnswer("member 'next_cursor' is not a string")
        return Page(tuple(parse(item) for item in page[member]), cursor)

    return read


def _page_query(order: str, limit: int, cursor: str) -> tuple[tuple[str, str], ...]:
    query = (("order", order), ("limit", str(limit)))
    return (*query, ("cursor", cursor)) if cursor else query


# --- the daemon ---------------------------------------------------------------------------


def version() -> Call[str]:
    """``GET /version``: ``fireworq-py <version> (Fireworq 1.5 compatible)``."""
    return Call(Request("GET", "/version"), lambda answer: _text(answer).strip())


def settings() -> Call[dict[str, str]]:
    """``GET /settings``: every configuration key and its effective value."""
    return Call(Request("GET", "/settings"), lambda answer: dict(answer.json()))


def stats() -> Call[ProcessStats]:
    """``GET /stats``: figures of the daemon process."""
    return Call(Request("GET", "/stats"), _read(ProcessStats.from_json))


def healthy() -> Call[bool]:
    """``GET /healthz``: True whenever the daemon answers."""
    return Call(Request("GET", "/healthz"), lambda answer: True)


def ready() -> Call[bool]:
    """``GET /readyz``: whether the store answers (False on 503)."""
    return Call(Request("GET", "/readyz"), lambda answer: answer.status == 200,
                success=frozenset({200, 503}))


def metrics() -> Call[str]:
    """``GET /metrics``: Prometheus text."""
    return Call(Request("GET", "/metrics"), _text)


def openapi() -> Call[dict[str, Any]]:
    """``GET /openapi.json``: the OpenAPI 3.1 document of the daemon's API."""
    return Call(Request("GET", "/openapi.json"), lambda answer: dict(answer.json()))


# --- queues -------------------------------------------------------------------------------


def queues() -> Call[list[Queue]]:
    """``GET /queues``: every stored queue definition, by name."""
    return Call(Request("GET", "/queues"), _read_list(Queue.from_json))


def queues_stats() -> Call[dict[str, QueueStats]]:
    """``GET /queues/stats``: this node's stats of every queue it knows."""
    def read(answer: Answer) -> dict[str, QueueStats]:
        by_name = answer.json()
        if not isinstance(by_name, dict):
            raise UnexpectedAnswer("expected a JSON object")
        return {name: QueueStats.from_json(value) for name, value in by_name.items()}

    return Call(Request("GET", "/queues/stats"), read)


def queue(name: str) -> Call[Queue]:
    """``GET /queue/{name}``: one queue definition."""
    return Call(Request("GET", "/queue/" + _segment(name)), _read(Queue.from_json))


def put_queue(
    name: str, *, polling_interval: int | None = None, max_workers: int | None = None,
    max_dispatches_per_second: float | None = None, max_burst_size: int | None = None,
    retry_backoff: str | None = None, retry_max_delay: int | None = None,
    retry_jitter: bool | None = None, result_mode: str | None = None,
    headers: Mapping[str, str] | None = None, signing_secrets: Sequence[str] | None = None,
    more: Mapping[str, Any] | None = None,
) -> Call[Queue]:
    """``PUT /queue/{name}``: define or replace a queue; members left out take their defaults
    (it replaces the whole definition). The delivery policy members are described in
    docs/api.md, Delivery policy (``signing_secrets`` as read back, redacted, keep the
    stored ones). ``more`` holds members this client has no parameter for."""
    given = {"polling_interval": polling_interval, "max_workers": max_workers,
             "max_dispatches_per_second": max_dispatches_per_second,
             "max_burst_size": max_burst_size, "retry_backoff": retry_backoff,
             "retry_max_delay": retry_max_delay, "retry_jitter": retry_jitter,
             "result_mode": result_mode,
             "headers": None if headers is None else dict(headers),
             "signing_secrets": None if signing_secrets is None else list(signing_secrets)}
    members = {**(more or {}), **{k: v for k, v in given.items() if v is not None}}
    return Call(Request("PUT", "/queue/" + _segment(name), body=_body(members)),
                _read(Queue.from_json))


def delete_queue(name: str) -> Call[Queue]:
    """``DELETE /queue/{name}``: the definition as it was (jobs and failure log stay)."""
    return Call(Request("DELETE", "/queue/" + _segment(name)), _read(Queue.from_json))


def pause_queue(name: str) -> Call[Queue]:
    """``POST /queue/{name}/pause``: stop the queue's deliveries (pushes are still stored)."""
    return Call(Request("POST", f"/queue/{_segment(name)}/pause"), _read(Queue.from_json))


def resume_queue(name: str) -> Call[Queue]:
    """``POST /queue/{name}/resume``: deliver the queue's jobs again."""
    return Call(Request("POST", f"/queue/{_segment(name)}/resume"), _read(Queue.from_json))


def node(name: str) -> Call[Node]:
    """``GET /queue/{name}/node``: the node that dispatches the queue."""
    return Call(Request("GET", f"/queue/{_segment(name)}/node"), _read(Node.from_json))


def queue_stats(name: str) -> Call[QueueStats]:
    """``GET /queue/{name}/stats``: this node's stats of the queue."""
    return Call(Request("GET", f"/queue/{_segment(name)}/stats"), _read(QueueStats.from_json))


# --- jobs ---------------------------------------------------------------------------------


def push(
    category: str, url: str, payload: Any = None, *, payload_json: str | None = None,
    run_after: int | None = None, max_retries: int | None = None,
    retry_delay: int | None = None, timeout: int | None = None,
    unique_key: str | None = None, idempotency_key: str | None = None,
    retry_backoff: str | None = None, retry_max_delay: int | None = None,
    retry_jitter: bool | None = None, headers: Mapping[str, str] | None = None,
) -> Call[PushedJob]:
    """``POST /job/{category}``: push a job; the answer comes once it is stored.

    ``payload`` is any JSON value (a str is sent to the worker as its bare text); or give
    ``payload_json``, JSON text that the worker receives exactly as written.

    ``unique_key`` (the job member) or ``idempotency_key`` (the ``Idempotency-Key``
    header) makes the push idempotent (docs/api.md, Idempotent pushes): a push whose key
    the queue saw within its ``unique_window`` stores nothing and answers the first
    push's job, with ``duplicate`` true. A push that failed for want of an answer may then
    be sent again safely.

    The job's own delivery policy members (``retry_backoff``, ``retry_max_delay``,
    ``retry_jitter``, ``headers``) win over the queue's (docs/api.md, Delivery policy).
    """
    body = _job_body(job_members(url, payload, payload_json=payload_json, run_after=run_after,
                                 max_retries=max_retries, retry_delay=retry_delay,
                                 timeout=timeout, unique_key=unique_key,
                                 retry_backoff=retry_backoff, retry_max_delay=retry_max_delay,
                                 retry_jitter=retry_jitter, headers=headers))
    request_headers = (() if idempotency_key is None
                       else (("Idempotency-Key", idempotency_key),))
    return Call(Request("POST", "/job/" + _category(category), body=body,
                        headers=request_headers), _read_pushed)


@attrs.frozen
class _PayloadJSON:
    """JSON text sent as it is (``payload_json``)."""

    text: str


def job_members(
    url: str, payload: Any = None, *, payload_json: str | None = None,
    run_after: int | None = None, max_retries: int | None = None,
    retry_delay: int | None = None, timeout: int | None = None,
    unique_key: str | None = None, retry_backoff: str | None = None,
    retry_max_delay: int | None = None, retry_jitter: bool | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One job of ``push_batch``, with the parameters of ``push``."""
    if payload is not None and payload_json is not None:
        raise ValueError("give payload or payload_json, not both")
    members: dict[str, Any] = {
        "url": url, "run_after": run_after, "max_retries": max_retries,
        "retry_delay": retry_delay, "timeout": timeout, "unique_key": unique_key,
        "retry_backoff": retry_backoff, "retry_max_delay": retry_max_delay,
        "retry_jitter": retry_jitter, "headers": None if headers is None else dict(headers)}
    if payload_json is not None:
        members["payload"] = _PayloadJSON(payload_json)
    elif payload is not None:
        members["payload"] = payload
    return members


def _job_body(members: Mapping[str, Any]) -> bytes:
    """A job object; a ``payload_json`` payload goes last, as written."""
    payload = members.get("payload")
    if not isinstance(payload, _PayloadJSON):
        return _body(members)
    body = _body({k: v for k, v in members.items() if k != "payload"})
    return body[:-1] + b',"payload":' + payload.text.encode("utf-8") + b"}"


def _read_pushed(answer: Answer) -> PushedJob:
    return attrs.evolve(PushedJob.from_json(answer.json()),
                        duplicate=answer.headers.get("fireworq-duplicate") == "true")


def push_batch(category: str, jobs: Sequence[Mapping[str, Any]]) -> Call[list[PushedJob]]:
    """``POST /jobs/{category}``: push 1 to 1000 jobs at once (each from ``job_members``,
    or a mapping of the members of docs/api.md, POST /job); all are stored, or none (an
    invalid job is an L{APIError} 400 naming its index). The answers come in order; a job
    whose ``unique_key`` was seen answers the first push's job with ``duplicate`` true."""
    body = b'{"jobs":[' + b",".join(_job_body(job) for job in jobs) + b"]}"

    def read(answer: Answer) -> list[PushedJob]:
        batch = answer.json()
        if not isinstance(batch, dict) or not isinstance(batch.get("jobs"), list):
            raise UnexpectedAnswer("expected an object with a 'jobs' array")
        duplicates = {int(index) for index in
                      answer.headers.get("fireworq-duplicate-jobs", "").split(",")
                      if index.strip().isdigit()}
        return [attrs.evolve(PushedJob.from_json(item), duplicate=index in duplicates)
                for index, item in enumerate(batch["jobs"])]

    return Call(Request("POST", "/jobs/" + _category(category), body=body), read)


def jobs_page(queue: str, state: str, *, order: str = "desc", limit: int = 100,
              cursor: str = "") -> Call[Page[Job]]:
    """``GET /queue/{queue}/{state}``: one page of the ``grabbed``, ``waiting`` or
    ``deferred`` jobs; pass ``next_cursor`` back as ``cursor`` for the next."""
    if state not in JOB_STATES:
        raise ValueError(f"state must be one of {', '.join(JOB_STATES)}")
    return Call(
        Request("GET", f"/queue/{_segment(queue)}/{state}", _page_query(order, limit, cursor)),
        _read_page("jobs", Job.from_json),
    )


def jobs(queue: str, state: str, *, order: str = "desc", limit: int | None = None,
         page_size: int = 100) -> Paged[Job]:
    """Every job of a state, page after page (at most ``limit`` of them)."""
    size = min(page_size, limit or MAX_PAGE)
    return Paged(lambda cursor: jobs_page(queue, state, order=order, limit=size,
                                          cursor=cursor), limit)


def job(queue: str, job_id: int) -> Call[Job]:
    """``GET /queue/{queue}/job/{id}``: one job, in any state."""
    return Call(Request("GET", f"/queue/{_segment(queue)}/job/{int(job_id)}"),
                _read(Job.from_json))


def delete_job(queue: str, job_id: int) -> Call[Job]:
    """``DELETE /queue/{queue}/job/{id}``: remove a job; the job as it was."""
    return Call(Request("DELETE", f"/queue/{_segment(queue)}/job/{int(job_id)}"),
                _read(Job.from_json))


# --- the failure log ----------------------------------------------------------------------


def failed_page(queue: str, *, order: str = "failed", limit: int = 100,
                cursor: str = "") -> Call[Page[FailedJob]]:
    """``GET /queue/{queue}/failed``: one page of the failure log, most recent failure first
    (``order="created"``: most recently pushed first)."""
    return Call(
        Request("GET", f"/queue/{_segment(queue)}/failed", _page_query(order, limit, cursor)),
        _read_page("failed_jobs", FailedJob.from_json),
    )


def failed(queue: str, *, order: str = "failed", limit: int | None = None,
           page_size: int = 100) -> Paged[FailedJob]:
    """The whole failure log, page after page (at most ``limit`` entries)."""
    size = min(page_size, limit or MAX_PAGE)
    return Paged(lambda cursor: failed_page(queue, order=order, limit=size, cursor=cursor),
                 limit)


def failed_job(queue: str, failure_id: int) -> Call[FailedJob]:
    """``GET /queue/{queue}/failed/{id}``: one failure-log entry."""
    return Call(Request("GET", f"/queue/{_segment(queue)}/failed/{int(failure_id)}"),
                _read(FailedJob.from_json))


def delete_failed_job(queue: str, failure_id: int) -> Call[FailedJob]:
    """``DELETE /queue/{queue}/failed/{id}``: remove a failure-log entry; the entry as it
    was."""
    return Call(Request("DELETE", f"/queue/{_segment(queue)}/failed/{int(failure_id)}"),
                _read(FailedJob.from_json))


def retry_failed_job(queue: str, failure_id: int, *,
                     run_after: int | None = None) -> Call[PushedJob]:
    """``POST /queue/{queue}/failed/{id}/retry``: push the entry again as a new job (due at
    once, or after ``run_after`` seconds) and remove it, in one change of the store."""
    body = None if run_after is None else _body({"run_after": run_after})
    return Call(Request("POST", f"/queue/{_segment(queue)}/failed/{int(failure_id)}/retry",
                        body=body), _read(PushedJob.from_json))


def _failure_filter(category: str | None, failed_after: datetime | None,
                    failed_before: datetime | None, limit: int | None) -> bytes:
    def time(moment: datetime | None) -> str | None:
        # A naive time is local time, as the command line reads it.
        return None if moment is None else moment.astimezone().isoformat()

    return _body({"category": category, "failed_after": time(failed_after),
                  "failed_before": time(failed_before), "limit": limit})


def retry_failed(queue: str, *, category: str | None = None,
                 failed_after: datetime | None = None, failed_before: datetime | None = None,
                 limit: int | None = None) -> Call[RetriedJobs]:
    """``POST /queue/{queue}/failed/retry``: push again the entries the filter selects, oldest
    failure first, at most ``limit`` (1-10000; the daemon's default is 1000)."""
    return Call(Request("POST", f"/queue/{_segment(queue)}/failed/retry",
                        body=_failure_filter(category, failed_after, failed_before, limit)),
                _read(RetriedJobs.from_json))


def delete_failed(queue: str, *, category: str | None = None,
                  failed_after: datetime | None = None, failed_before: datetime | None = None,
                  limit: int | None = None) -> Call[int]:
    """``DELETE /queue/{queue}/failed``: delete the entries the filter selects, oldest failure
    first, at most ``limit`` (1-10000; the daemon's default is 1000); how many were."""
    def read(answer: Answer) -> int:
        deleted = answer.json()
        if not isinstance(deleted, dict) or type(deleted.get("deleted")) is not int:
            raise UnexpectedAnswer('expected {"deleted": n}')
        return int(deleted["deleted"])

    return Call(Request("DELETE", f"/queue/{_segment(queue)}/failed",
                        body=_failure_filter(category, failed_after, failed_before, limit)), read)


# --- routings -----------------------------------------------------------------------------


def routings() -> Call[list[Routing]]:
    """``GET /routings``: every routing."""
    return Call(Request("GET", "/routings"), _read_list(Routing.from_json))


def routing(category: str) -> Call[Routing]:
    """``GET /routing/{category}``: where jobs of a category go."""
    return Call(Request("GET", "/routing/" + _category(category)), _read(Routing.from_json))


def put_routing(category: str, queue_name: str) -> Call[Routing]:
    """``PUT /routing/{category}``: send jobs of a category to a queue."""
    return Call(Request("PUT", "/routing/" + _category(category),
                        body=_body({"queue_name": queue_name})), _read(Routing.from_json))


def delete_routing(category: str) -> Call[Routing]:
    """``DELETE /routing/{category}``: the routing as it was."""
    return Call(Request("DELETE", "/routing/" + _category(category)), _read(Routing.from_json))
