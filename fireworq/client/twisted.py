"""The Twisted client: the calls of L{fireworq.client.api} over treq, answering Deferreds."""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable, Concatenate, ParamSpec, TypeVar

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectError, ConnectionClosed, DNSLookupError
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed
from twisted.web.http_headers import Headers

from fireworq.client import api
from fireworq.client.api import (
    DEFAULT_TIMEOUT,
    Answer,
    APIError,
    Call,
    Paged,
    Request,
    ServerAddress,
    Walk,
    default_server,
    request_headers,
)

P = ParamSpec("P")
T = TypeVar("T")

#: What treq raises when the daemon cannot be reached or stops answering.
_NO_ANSWER = (ConnectError, DNSLookupError, ConnectionClosed, ResponseFailed, DeferredTimeout)


def _returns(call: Callable[P, Call[T]]) -> Callable[Concatenate[TwistedClient, P], Deferred[T]]:
    def method(self: TwistedClient, /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return self.run(call(*args, **kwargs))

    method.__doc__ = call.__doc__
    method.__name__ = call.__name__
    return method


def _walks(
    paged: Callable[P, Paged[T]],
) -> Callable[Concatenate[TwistedClient, P], AsyncIterator[T]]:
    def method(self: TwistedClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        return self.walk(paged(*args, **kwargs))

    method.__doc__ = paged.__doc__
    method.__name__ = paged.__name__
    return method


class TwistedClient:
    """A client of one daemon for Twisted programs: every call returns a Deferred, every
    list is an async iterator (use it in a coroutine run by ``Deferred.fromCoroutine``).

        client = TwistedClient("http://127.0.0.1:8080", reactor=reactor)
        job = await client.push("welcome", "http://127.0.0.1:8000/send", {"user": 42})
        async for failed in client.failed("mail"):
            ...
        await client.close()

    Error answers and connection failures fail the Deferred with L{APIError}. Connections
    are kept alive in the client's own pool; ``close()`` closes them.
    """

    def __init__(self, server: str | None = None, *, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, reactor: Any = None,
                 pool: HTTPConnectionPool | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        self.address = ServerAddress(server or default_server())
        self._token = token
        self._timeout = timeout
        self._reactor = reactor
        self._pool = pool if pool is not None else HTTPConnectionPool(reactor, persistent=True)
        self._http = HTTPClient(Agent(reactor, pool=self._pool))

    def close(self) -> Deferred[None]:
        return self._pool.closeCachedConnections()  # type: ignore[no-any-return]

    def run(self, call: Call[T]) -> Deferred[T]:
        """Send one call of L{fireworq.client.api} and read its answer."""
        return Deferred.fromCoroutine(self._run(call))

    async def _run(self, call: Call[T]) -> T:
        return call.result(await self.send(call.request))

    async def walk(self, paged: Paged[T]) -> AsyncIterator[T]:
        """The items of a list endpoint, fetching pages as the iteration goes."""
        walk = Walk(paged)
        while (call := walk.next_call()) is not None:
            for item in walk.take(await self.run(call)):
                yield item

    async def send(self, request: Request) -> Answer:
        address = self.address
        url = address.origin + address.target(request)
        headers = Headers({k: [v] for k, v in request_headers(request, self._token).items()})
        try:
            response = await self._http.request(
                request.method, url, data=request.body, headers=headers
            ).addTimeout(self._timeout, self._reactor)
            body: bytes = await response.content().addTimeout(self._timeout, self._reactor)
        except _NO_ANSWER as e:
            raise APIError(0, "No answer", f"cannot reach {address.url}"
                                           f" ({request.method} {request.path}): {e}") from None
        headers_seen = {
            name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in response.headers.getAllRawHeaders()
        }
        return Answer(response.code, headers_seen, body)

    # The API (docs/api.md), one line per endpoint: see fireworq.client.api.

    version = _returns(api.version)
    settings = _returns(api.settings)
    stats = _returns(api.stats)
    healthy = _returns(api.healthy)
    ready = _returns(api.ready)
    metrics = _returns(api.metrics)
    openapi = _returns(api.openapi)
    queues = _returns(api.queues)
    queues_stats = _returns(api.queues_stats)
    queue = _returns(api.queue)
    put_queue = _returns(api.put_queue)
    delete_queue = _returns(api.delete_queue)
    pause_queue = _returns(api.pause_queue)
    resume_queue = _returns(api.resume_queue)
    node = _returns(api.node)
    queue_stats = _returns(api.queue_stats)
    push = _returns(api.push)
    push_batch = _returns(api.push_batch)
    jobs_page = _returns(api.jobs_page)
    jobs = _walks(api.jobs)
    job = _returns(api.job)
    delete_job = _returns(api.delete_job)
    failed_page = _returns(api.failed_page)
    failed = _walks(api.failed)
    failed_job = _returns(api.failed_job)
    delete_failed_job = _returns(api.delete_failed_job)
    retry_failed_job = _returns(api.retry_failed_job)
    retry_failed = _returns(api.retry_failed)
    delete_failed = _returns(api.delete_failed)
    routings = _returns(api.routings)
    routing = _returns(api.routing)
    put_routing = _returns(api.put_routing)
    delete_routing = _returns(api.delete_routing)
