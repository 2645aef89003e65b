"""The blocking client: the calls of L{fireworq.client.api} over the standard library's
``http.client``, one kept-alive connection per client."""

from __future__ import annotations

import http.client
import ssl
import threading
from typing import Any, Callable, Concatenate, Iterator, ParamSpec, TypeVar

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

#: Failures that mean a kept-alive connection was closed by the daemon while idle.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})


def _returns(call: Callable[P, Call[T]]) -> Callable[Concatenate[Client, P], T]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.run(call(*args, **kwargs))

    method.__doc__ = call.__doc__
    method.__name__ = call.__name__
    return method


def _walks(paged: Callable[P, Paged[T]]) -> Callable[Concatenate[Client, P], Iterator[T]]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self.walk(paged(*args, **kwargs))

    method.__doc__ = paged.__doc__
    method.__name__ = paged.__name__
    return method


class Client:
    """A blocking client of one daemon. Safe to share between threads (one request at a
    time); close it, or use it as a context manager, to close its connection.

        with Client("http://127.0.0.1:8080") as client:
            client.put_queue("mail", max_workers=4)
            client.put_routing("welcome", "mail")
            client.push("welcome", "http://127.0.0.1:8000/send", {"user": 42})
            for job in client.failed("mail"):
                print(job.id, job.result.message)

    Error answers and connection failures raise L{APIError}.
    """

    def __init__(self, server: str | None = None, *, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address = ServerAddress(server or default_server())
        self._token = token
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def run(self, call: Call[T]) -> T:
        """Send one call of L{fireworq.client.api} and read its answer."""
        return call.result(self.send(call.request))

    def walk(self, paged: Paged[T]) -> Iterator[T]:
        """The items of a list endpoint, fetching pages as the iteration goes."""
        walk = Walk(paged)
        while (call := walk.next_call()) is not None:
            yield from walk.take(self.run(call))

    def send(self, request: Request) -> Answer:
        with self._lock:
            reused = self._connection is not None
            try:
                return self._exchange(request)
            except _STALE:
                # The daemon closed the kept-alive connection while it was idle; only a
                # request that may be repeated is sent again.
                if not reused or request.method not in _IDEMPOTENT:
                    raise self._unreachable(request, "connection closed by the daemon")
                return self._exchange_or_raise(request)
            except (OSError, http.client.HTTPException) as e:
                raise self._unreachable(request, e) from None

    def _exchange_or_raise(self, request: Request) -> Answer:
        try:
            return self._exchange(request)
        except (OSError, http.client.HTTPException) as e:
            raise self._unreachable(request, e) from None

    def _unreachable(self, request: Request, reason: object) -> APIError:
        self._drop()
        return APIError(0, "No answer", f"cannot reach {self.address.url}"
                                        f" ({request.method} {request.path}): {reason}")

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _exchange(self, request: Request) -> Answer:
        connection = self._connection
        if connection is None:
            connection = self._connection = self._connect()
        try:
            connection.request(request.method, self.address.target(request), body=request.body,
                               headers=request_headers(request, self._token))
            response = connection.getresponse()
            body = response.read()
        except BaseException:
            self._drop()
            raise
        if response.will_close:
            self._drop()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, headers, body)

    def _connect(self) -> http.client.HTTPConnection:
        address = self.address
        if address.https:
            return http.client.HTTPSConnection(address.host, address.port, timeout=self._timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(address.host, address.port, timeout=self._timeout)

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
