"""One delivery attempt: the worker request, its redirects and limits, and the result
(docs/worker-protocol.md, The request and The answer)."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

import attrs
from hyperlink import EncodedURL
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from fireworq.delivery.body import BodyError, BodyReader, body_source
from fireworq.delivery.client import DeliverySettings
from fireworq.delivery.errors import describe
from fireworq.delivery.policy import header_bytes, merge_headers, signature, signing_keys
from fireworq.delivery.result import interpret_response, interpret_webhook, parse_retry_after
from fireworq.delivery.target import (
    InvalidTarget,
    Target,
    parse_target,
    resolve_location,
)
from fireworq.destinations import DestinationDenied
from fireworq.masking import mask_url
from fireworq.model import (
    RESULT_MODE_WEBHOOK,
    HeaderPairs,
    Job,
    QueueDefinition,
    ResultStatus,
    WorkerResult,
)

__all__ = ["MAX_REDIRECTS", "Deliverer"]

T = TypeVar("T")

#: Redirects followed in one attempt; the next one fails it.
MAX_REDIRECTS = 10
# Go's client reads this much of a redirect's body so that the connection can be reused, and
# drops the connection when there is more.
_REDIRECT_BODY_SLURP = 2048
# After these the next request is a GET without body; after 307 and 308 the same request again.
_TO_GET = frozenset({301, 302, 303})
_REPEAT = frozenset({307, 308})

_INTERNAL_FAILURE = ResultStatus.INTERNAL_FAILURE.value
_PERMANENT_FAILURE = ResultStatus.PERMANENT_FAILURE.value
# Custom headers that go only where URL credentials go: to the first request's origin (as Go's
# client drops them on a redirect to another host).
_SENSITIVE = frozenset({b"authorization", b"cookie"})
# Bytes of a category sent as they are in Fireworq-Category; the others are percent-encoded.
_CATEGORY_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_FAILURE = ResultStatus.FAILURE.value

_log = Logger()


class _Stopped(Exception):
    """The attempt's time ran out, or the caller gave up on it."""


class _WireURL(EncodedURL):
    """A target URL handed to treq as already encoded. treq turns every URL it is given into a
    hyperlink URL and re-encodes it, which costs ~35 µs a request and fails on IPv6 literals;
    this one is its own encoding."""

    def __init__(self, text: str) -> None:  # no super().__init__(): nothing else is used
        self._text = text

    def to_uri(self) -> _WireURL:
        return self

    def to_text(self, with_password: bool = False) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"_WireURL({self._text!r})"


class _Watch:
    """Runs the awaited steps of one attempt so that stopping it (timeout or caller) cancels
    whichever step is in progress and makes every later step fail at once."""

    def __init__(self) -> None:
        self.stopped = False
        self.abandoned = False
        self._step: Deferred[Any] | None = None

    def stop(self) -> None:
        self.stopped = True
        if self._step is not None:
            self._step.cancel()

    def abandon(self) -> None:
        self.abandoned = True
        self.stop()

    async def wait(self, step: Deferred[T]) -> T:
        if self.stopped:
            step.addErrback(lambda _: None)
            step.cancel()
            raise _Stopped()
        self._step = step
        try:
            return await step
        except Exception:
            if self.stopped:
                raise _Stopped() from None
            raise
        finally:
            self._step = None


@attrs.define
class Deliverer:
    """Sends jobs to their workers; one instance serves every queue of the node."""

    _http: HTTPClient
    _clock: IReactorTime
    _settings: DeliverySettings
    _headers: Headers = attrs.field(init=False)
    # Per queue name and headers: the request headers every job of the queue starts from,
    # and its sensitive custom headers (built once, not per delivery).
    _queue_headers: dict[tuple[str, HeaderPairs], tuple[Headers, _Pairs]] = attrs.field(
        init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        # Built once: every request starts from a copy. Accept-Encoding is added by treq's
        # ContentDecoderAgent, Host and Content-Length by the Agent, and "Connection: close" by
        # the Agent when the pool is not persistent.
        self._headers = Headers(
            {
                b"User-Agent": [self._settings.user_agent.encode("utf-8")],
                b"Content-Type": [b"application/json"],
            }
        )

    async def deliver(self, job: Job, queue: QueueDefinition | None = None) -> WorkerResult:
        """Send ``job`` of ``queue`` to its worker and read the result. Never raises, except
        CancelledError when the caller cancels; the connection in use is then dropped.

        Without ``queue`` (tests, tools) the request has neither the Fireworq-* headers nor
        the queue's members."""
        try:
            target = parse_target(job.url)
        except InvalidTarget as exc:
            return WorkerResult(_INTERNAL_FAILURE, 0, f"Cannot create http request: {exc}")
        watch = _Watch()
        attempt = Deferred.fromCoroutine(
            self._attempt(job, target, watch, self._request_plan(job, queue)))
        # The caller's cancel must reach the step in progress through the watch, and must not
        # come back as the result of that interrupted step.
        outcome: Deferred[WorkerResult] = Deferred(lambda _: watch.abandon())

        def settle(result: WorkerResult) -> None:
            if not watch.abandoned:
                outcome.callback(result)

        attempt.addCallback(settle)
        deadline = self._clock.callLater(job.timeout, watch.stop) if job.timeout > 0 else None
        try:
            return await outcome
        finally:
            if deadline is not None and deadline.active():
                deadline.cancel()

    def _request_plan(self, job: Job, queue: QueueDefinition | None) -> _Plan:
        if queue is None:
            return _Plan(self._headers.copy(), (), (), b"", b"", False)
        job_headers = job.options.headers if job.options is not None else None
        if job_headers:
            base, sensitive = self._with_custom(
                queue.name, merge_headers(queue.headers, job_headers))
        else:
            key = (queue.name, queue.headers)
            cached = self._queue_headers.get(key)
            if cached is None:
                if len(self._queue_headers) >= _MAX_CACHED_QUEUES:
                    self._queue_headers.clear()
                cached = self._queue_headers[key] = self._with_custom(*key)
            base, sensitive = cached
        headers = base.copy()
        attempt = job.fail_count + 1
        headers.addRawHeader(b"Fireworq-Job-Id", b"%d" % job.id)
        headers.addRawHeader(b"Fireworq-Attempt", b"%d" % attempt)
        headers.addRawHeader(b"Fireworq-Category", _header_text(job.category))
        if not queue.signing_secrets:
            return _Plan(headers, sensitive, (), b"", b"",
                         queue.result_mode == RESULT_MODE_WEBHOOK)
        return _Plan(
            headers, sensitive, signing_keys(queue.signing_secrets),
            b"%d-%d" % (job.id, attempt), b"%d" % int(self._clock.seconds()),
            queue.result_mode == RESULT_MODE_WEBHOOK)

    def _with_custom(self, queue_name: str, custom: HeaderPairs) -> tuple[Headers, _Pairs]:
        """The daemon's headers, Fireworq-Queue and the custom headers but the sensitive
        ones, which come apart."""
        headers = self._headers.copy()
        headers.addRawHeader(b"Fireworq-Queue", _header_text(queue_name))
        sensitive: list[tuple[bytes, bytes]] = []
        for name, value in header_bytes(custom):
            if name.lower() in _SENSITIVE:
                sensitive.append((name, value))
            else:
                headers.setRawHeaders(name, [value])  # replaces User-Agent, Content-Type
        return headers, tuple(sensitive)

    async def _attempt(self, job: Job, target: Target, watch: _Watch, plan: _Plan
                       ) -> WorkerResult:
        try:
            return await self._exchange(job, target, watch, plan)
        except Exception as exc:
            # A bug here must still end the attempt with a result, or the job stays grabbed.
            _log.failure(
                "Unexpected error delivering job {job_id} to {url}", job_id=job.id,
                url=mask_url(job.url),
            )
            return WorkerResult(_INTERNAL_FAILURE, 0, f"Request failed: {describe(exc)}")

    async def _exchange(self, job: Job, target: Target, watch: _Watch, plan: _Plan
                        ) -> WorkerResult:
        first = target
        method = "POST"
        body: bytes | None = job.payload
        for redirects in range(MAX_REDIRECTS + 1):
            authorization = target.authorization
            same_origin = target.origin == first.origin
            if authorization is None and same_origin:
                authorization = first.authorization
            # The plan's headers (the attempt's own copy) go out as they are unless this
            # request adds some; they are not changed on the way (treq adds no header to
            # a body of bytes, the agents below copy before they add).
            if authorization is None and not plan.keys and not (same_origin and plan.sensitive):
                headers = plan.headers
            else:
                headers = plan.headers.copy()
            if authorization is not None:
                headers.addRawHeader(b"Authorization", authorization)
            if same_origin:
                for name, value in plan.sensitive:
                    headers.setRawHeaders(name, [value])  # over the URL's credentials
            if plan.keys:
                headers.addRawHeader(b"webhook-id", plan.message_id)
                headers.addRawHeader(b"webhook-timestamp", plan.timestamp)
                headers.addRawHeader(b"webhook-signature", signature(
                    plan.keys, plan.message_id, plan.timestamp, body or b""))
            try:
                response = await watch.wait(
                    self._http.request(
                        method,
                        _WireURL(target.url),
                        headers=headers,
                        data=body,
                        allow_redirects=False,
                        unbuffered=True,
                    )
                )
            except _Stopped:
                return _request_failed(_no_response_in_time(job))
            except Exception as exc:
                denied = _denial(exc)
                if denied is not None:
                    # A retry would go to the same place: the job fails at once
                    # (docs/worker-protocol.md, Redirects, connections, proxies).
                    return WorkerResult(_PERMANENT_FAILURE, 0, str(denied))
                return _request_failed(describe(exc))
            location = _redirect_location(response)
            if location is None:
                return await self._read_result(job, response, watch, plan.webhook)
            try:
                await self._discard_body(response, watch)
            except _Stopped:
                return _request_failed(_no_response_in_time(job))
            if redirects == MAX_REDIRECTS:
                return _request_failed(f"stopped after {MAX_REDIRECTS} redirects")
            try:
                target = resolve_location(target, location)
            except InvalidTarget as exc:
                return _request_failed(f"cannot follow redirect to {location!r}: {exc}")
            if response.code in _TO_GET:
                method, body = "GET", None
        raise AssertionError("unreachable: the last pass returns")

    async def _read_result(self, job: Job, response: IResponse, watch: _Watch, webhook: bool
                           ) -> WorkerResult:
        source, gunzip = body_source(response)
        reader = BodyReader(self._settings.max_response_body, gunzip)
        source.deliverBody(reader)
        try:
            body = await watch.wait(reader.done)
        except _Stopped:
            reason = f"the job's timeout of {job.timeout} s was reached"
            return WorkerResult(_FAILURE, response.code, f"Cannot read body: {reason}")
        except BodyError as exc:
            return WorkerResult(_FAILURE, response.code, f"Cannot read body: {exc}")
        if webhook:
            result = interpret_webhook(response.code, body)
        else:
            result = interpret_response(response.code, body)
        if not result.succeeded:
            values = response.headers.getRawHeaders(b"retry-after")
            if values:
                wait = parse_retry_after(values[0], self._clock.seconds())
                if wait is not None:
                    result = attrs.evolve(result, retry_after=wait)
        return result

    async def _discard_body(self, response: IResponse, watch: _Watch) -> None:
        source, _ = body_source(response)
        reader = BodyReader(_REDIRECT_BODY_SLURP, gunzip=False)
        source.deliverBody(reader)
        try:
            await watch.wait(reader.done)
        except BodyError:
            pass  # too long or cut: the connection is dropped, which is all that matters


_Pairs = tuple[tuple[bytes, bytes], ...]
#: Queues whose request headers are kept built (the cache is emptied when it is full).
_MAX_CACHED_QUEUES = 1000


@attrs.frozen
class _Plan:
    """What every request of one attempt carries besides the job's own."""

    headers: Headers
    #: Custom headers sent only to the first request's origin.
    sensitive: _Pairs
    #: Signing keys (none: the request is not signed).
    keys: tuple[bytes, ...]
    message_id: bytes
    timestamp: bytes
    #: The worker's answer is read in the ``webhook`` mode.
    webhook: bool


def _header_text(text: str) -> bytes:
    """A name as a header value: printable ASCII as it is, the rest (and ``%``)
    percent-encoded from UTF-8, so that a worker can always unquote it."""
    if text.isascii() and text.isprintable() and "%" not in text:
        return text.encode("ascii")
    return quote(text, safe=_CATEGORY_SAFE, errors="surrogatepass").encode("ascii")


def _redirect_location(response: IResponse) -> str | None:
    """The Location to follow, or None when the response is the final one."""
    if response.code not in _TO_GET and response.code not in _REPEAT:
        return None
    values: list[bytes] | None = response.headers.getRawHeaders(b"location")
    # As in Go, a redirect without a Location is an ordinary final response.
    if not values or not values[0]:
        return None
    return values[0].decode("utf-8", "surrogateescape")


def _denial(error: BaseException) -> DestinationDenied | None:
    """The DestinationDenied behind a failed request, through the agent's wrappers."""
    if isinstance(error, DestinationDenied):
        return error
    for reason in getattr(error, "reasons", None) or ():
        found = _denial(reason.value)
        if found is not None:
            return found
    return None


def _no_response_in_time(job: Job) -> str:
    return f"no response within the job's timeout of {job.timeout} s"


def _request_failed(reason: str) -> WorkerResult:
    return WorkerResult(_INTERNAL_FAILURE, 0, f"Request failed: {reason}")
