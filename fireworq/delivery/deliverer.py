"""One delivery attempt: the worker request, its redirects and limits, and the result
(docs/worker-protocol.md, The request and The answer)."""

from __future__ import annotations

from typing import Any, TypeVar

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
from fireworq.delivery.result import interpret_response
from fireworq.delivery.target import (
    InvalidTarget,
    Target,
    parse_target,
    resolve_location,
)
from fireworq.destinations import DestinationDenied
from fireworq.masking import mask_url
from fireworq.model import Job, ResultStatus, WorkerResult

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

    async def deliver(self, job: Job) -> WorkerResult:
        """Send ``job`` to its worker and read the result. Never raises, except CancelledError
        when the caller cancels; the connection in use is then dropped."""
        try:
            target = parse_target(job.url)
        except InvalidTarget as exc:
            return WorkerResult(_INTERNAL_FAILURE, 0, f"Cannot create http request: {exc}")
        watch = _Watch()
        attempt = Deferred.fromCoroutine(self._attempt(job, target, watch))
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

    async def _attempt(self, job: Job, target: Target, watch: _Watch) -> WorkerResult:
        try:
            return await self._exchange(job, target, watch)
        except Exception as exc:
            # A bug here must still end the attempt with a result, or the job stays grabbed.
            _log.failure(
                "Unexpected error delivering job {job_id} to {url}", job_id=job.id,
                url=mask_url(job.url),
            )
            return WorkerResult(_INTERNAL_FAILURE, 0, f"Request failed: {describe(exc)}")

    async def _exchange(self, job: Job, target: Target, watch: _Watch) -> WorkerResult:
        first = target
        method = "POST"
        body: bytes | None = job.payload
        for redirects in range(MAX_REDIRECTS + 1):
            headers = self._headers.copy()
            authorization = target.authorization
            if authorization is None and target.origin == first.origin:
                authorization = first.authorization
            if authorization is not None:
                headers.addRawHeader(b"Authorization", authorization)
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
                return await self._read_result(job, response, watch)
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

    async def _read_result(self, job: Job, response: IResponse, watch: _Watch) -> WorkerResult:
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
        return interpret_response(response.code, body)

    async def _discard_body(self, response: IResponse, watch: _Watch) -> None:
        source, _ = body_source(response)
        reader = BodyReader(_REDIRECT_BODY_SLURP, gunzip=False)
        source.deliverBody(reader)
        try:
            await watch.wait(reader.done)
        except BodyError:
            pass  # too long or cut: the connection is dropped, which is all that matters


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
