"""Delivering a job to a worker (docs/worker-protocol.md, The request; The answer, rows 1 to 3),
against real twisted.web workers on 127.0.0.1, plus a few Clock-driven checks with an in-memory
agent."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
from base64 import b64encode
from collections.abc import Callable
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from treq.client import HTTPClient
from twisted.internet import reactor as _global_reactor
from twisted.internet import ssl
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, LoopingCall, deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from fireworq.delivery import Deliverer, DeliverySettings, make_http_client
from fireworq.delivery.client import CONNECT_TIMEOUT, TLS_HANDSHAKE_TIMEOUT
from fireworq.model import Job, JobStatus, WorkerResult

reactor: Any = _global_reactor

SUCCESS = b'{"status":"success","message":"done"}'
PAYLOAD = b'{"id":1,"text":"caf\xc3\xa9"}'


def make_job(url: str, payload: bytes = PAYLOAD, timeout: int = 0) -> Job:
    return Job(
        id=1,
        category="c",
        url=url,
        payload=payload,
        status=JobStatus.GRABBED,
        created_at=0,
        next_try=0,
        retry_count=0,
        retry_delay=0,
        fail_count=0,
        timeout=timeout,
    )


def make_settings(keep_alive: bool = False, max_response_body: int = 1_048_576) -> DeliverySettings:
    return DeliverySettings(
        user_agent="Fireworq/0.1.0",
        keep_alive=keep_alive,
        max_conns_per_host=10,
        idle_conn_timeout=0,
        max_response_body=max_response_body,
    )


@attrs.frozen
class Seen:
    """One request as the worker received it."""

    method: bytes
    uri: bytes
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> list[bytes] | None:
        values: list[bytes] | None = self.headers.getRawHeaders(name)
        return values


Handler = Callable[[Request], Any]


class Worker(Resource):
    isLeaf = True

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.seen: list[Seen] = []

    def render(self, request: Request) -> Any:
        assert request.content is not None
        self.seen.append(
            Seen(request.method, request.uri, request.requestHeaders.copy(), request.content.read())
        )
        return self.handler(request)


class Connections(WrappingFactory):
    """Counts the connections a server accepted and can close them all."""

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self.opened = 0
        self._on_open: list[Deferred[None]] = []
        self._on_idle: list[Deferred[None]] = []

    def registerProtocol(self, p: Any) -> None:
        self.opened += 1
        super().registerProtocol(p)
        waiting, self._on_open = self._on_open, []
        for d in waiting:
            d.callback(None)

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self._on_idle = self._on_idle, []
            for d in waiting:
                d.callback(None)

    def opened_one(self) -> Deferred[None]:
        if self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._on_open.append(d)
        return d

    def close_all(self) -> Deferred[None]:
        if not self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._on_idle.append(d)
        for p in list(self.protocols):
            p.transport.loseConnection()
        return d


def respond(
    body: bytes = SUCCESS, code: int = 200, headers: dict[bytes, bytes] | None = None
) -> Handler:
    def handler(request: Request) -> bytes:
        request.setResponseCode(code)
        for name, value in (headers or {}).items():
            request.setHeader(name, value)
        return body

    return handler


class _Quiet(Site):
    def log(self, request: Any) -> None:
        pass


class WorkerTestCase(TestCase):
    """Real workers and a real client on the global reactor; everything is closed after each
    test so that trial's dirty-reactor check passes."""

    def setUp(self) -> None:
        self._servers: list[tuple[Connections, IListeningPort]] = []
        self._pools: list[HTTPConnectionPool] = []
        self._calls: list[IDelayedCall] = []
        self._loops: list[LoopingCall] = []
        self.addCleanup(self._shutdown)

    async def _shutdown(self) -> None:
        for call in self._calls:
            if call.active():
                call.cancel()
        for loop in self._loops:
            if loop.running:
                loop.stop()
        for pool in self._pools:
            await pool.closeCachedConnections()
        for connections, port in self._servers:
            await connections.close_all()
            await port.stopListening()

    def listen(
        self, factory: Any, interface: str = "127.0.0.1", tls: Any = None
    ) -> tuple[int, Connections]:
        connections = Connections(factory)
        if tls is None:
            port = reactor.listenTCP(0, connections, interface=interface)
        else:
            port = reactor.listenSSL(0, connections, tls, interface=interface)
        self._servers.append((connections, port))
        return port.getHost().port, connections

    def start_worker(
        self, handler: Handler, interface: str = "127.0.0.1"
    ) -> tuple[str, Worker, Connections]:
        worker = Worker(handler)
        port, connections = self.listen(_Quiet(worker, timeout=None), interface)
        host = f"[{interface}]" if ":" in interface else interface
        return f"http://{host}:{port}", worker, connections

    def make_deliverer(
        self,
        keep_alive: bool = False,
        max_response_body: int = 1_048_576,
        handshake_clock: Any = None,
    ) -> Deliverer:
        settings = make_settings(keep_alive, max_response_body)
        http, pool = make_http_client(reactor, settings, handshake_clock=handshake_clock)
        # A connection that went back to the pool after cleanup must not outlive the test
        # (Tahoe PR #1354).
        pool.cachedConnectionTimeout = 0.1
        self._pools.append(pool)
        return Deliverer(http, reactor, settings)

    def slow(self, delay: float, body: bytes = SUCCESS) -> Handler:
        def handler(request: Request) -> int:
            def answer() -> None:
                request.write(body)
                request.finish()

            call = reactor.callLater(delay, answer)
            self._calls.append(call)
            request.notifyFinish().addErrback(lambda _: call.cancel() if call.active() else None)
            return NOT_DONE_YET

        return handler


class RequestTests(WorkerTestCase):
    async def test_request_shape(self) -> None:
        """The worker gets a POST of the payload to the URL's path and query (no fragment),
        with the headers of the table in docs/worker-protocol.md, The request."""
        base, worker, _ = self.start_worker(respond())
        deliverer = self.make_deliverer()
        result = await deliverer.deliver(make_job(f"{base}/work/it?a=1&b=%2F#fragment"))
        self.assertEqual(result, WorkerResult("success", 200, "done"))
        [seen] = worker.seen
        self.assertEqual(seen.method, b"POST")
        self.assertEqual(seen.uri, b"/work/it?a=1&b=%2F")
        self.assertEqual(seen.body, PAYLOAD)
        self.assertEqual(seen.header(b"host"), [base.removeprefix("http://").encode()])
        self.assertEqual(seen.header(b"user-agent"), [b"Fireworq/0.1.0"])
        self.assertEqual(seen.header(b"content-type"), [b"application/json"])
        self.assertEqual(seen.header(b"content-length"), [str(len(PAYLOAD)).encode()])
        self.assertEqual(seen.header(b"accept-encoding"), [b"gzip"])
        self.assertEqual(seen.header(b"connection"), [b"close"])
        self.assertIsNone(seen.header(b"authorization"))
        self.assertIsNone(seen.header(b"cookie"))

    async def test_empty_path(self) -> None:
        base, worker, _ = self.start_worker(respond())
        await self.make_deliverer().deliver(make_job(base))
        self.assertEqual(worker.seen[0].uri, b"/")

    async def test_empty_payload(self) -> None:
        """When there is no payload, the body is empty and still announced as JSON."""
        base, worker, _ = self.start_worker(respond())
        await self.make_deliverer().deliver(make_job(base + "/", payload=b""))
        [seen] = worker.seen
        self.assertEqual(seen.body, b"")
        self.assertEqual(seen.header(b"content-length"), [b"0"])
        self.assertEqual(seen.header(b"content-type"), [b"application/json"])

    async def test_authorization_from_userinfo(self) -> None:
        """When the URL carries user information, it is sent percent-decoded as Basic auth."""
        base, worker, _ = self.start_worker(respond())
        deliverer = self.make_deliverer()
        host = base.removeprefix("http://")
        await deliverer.deliver(make_job(f"http://us%40er:p%3As%20s@{host}/"))
        await deliverer.deliver(make_job(f"http://user@{host}/"))
        self.assertEqual(
            worker.seen[0].header(b"authorization"), [b"Basic " + b64encode(b"us@er:p:s s")]
        )
        self.assertEqual(worker.seen[1].header(b"authorization"), [b"Basic " + b64encode(b"user:")])

    async def test_keep_alive_reuses_connection(self) -> None:
        """With keep-alive, two deliveries go over one connection and no Connection header is
        sent."""
        base, worker, connections = self.start_worker(respond())
        deliverer = self.make_deliverer(keep_alive=True)
        for _ in range(2):
            self.assertEqual((await deliverer.deliver(make_job(base))).status, "success")
        self.assertEqual(connections.opened, 1)
        self.assertEqual([seen.header(b"connection") for seen in worker.seen], [None, None])

    async def test_without_keep_alive_one_connection_per_request(self) -> None:
        base, worker, connections = self.start_worker(respond())
        deliverer = self.make_deliverer(keep_alive=False)
        for _ in range(2):
            await deliverer.deliver(make_job(base))
        self.assertEqual(connections.opened, 2)
        self.assertEqual(
            [seen.header(b"connection") for seen in worker.seen], [[b"close"], [b"close"]]
        )

    async def test_cookies_not_kept(self) -> None:
        """When a worker sets a cookie, later requests do not send it back."""
        base, worker, _ = self.start_worker(respond(headers={b"set-cookie": b"session=1; Path=/"}))
        deliverer = self.make_deliverer(keep_alive=True)
        await deliverer.deliver(make_job(base))
        await deliverer.deliver(make_job(base))
        self.assertIsNone(worker.seen[1].header(b"cookie"))

    async def test_ipv6_literal(self) -> None:
        try:
            base, worker, _ = self.start_worker(respond(), interface="::1")
        except CannotListenError:
            raise SkipTest("no IPv6 loopback here") from None
        result = await self.make_deliverer().deliver(make_job(base + "/v6?x=1"))
        self.assertEqual(result.status, "success")
        self.assertEqual(worker.seen[0].uri, b"/v6?x=1")
        self.assertEqual(worker.seen[0].header(b"host"), [base.removeprefix("http://").encode()])


class ResponseTests(WorkerTestCase):
    async def test_http_status_never_decides(self) -> None:
        base, _, _ = self.start_worker(respond(b'{"status":"success"}', code=500))
        result = await self.make_deliverer().deliver(make_job(base))
        self.assertEqual(result, WorkerResult("success", 500, ""))

    async def test_not_a_result_object(self) -> None:
        base, _, _ = self.start_worker(respond(b"<html>hi</html>", code=200))
        result = await self.make_deliverer().deliver(make_job(base))
        self.assertEqual(result.status, "failure")
        self.assertEqual(result.code, 200)
        self.assertTrue(result.message.startswith("Cannot parse body as JSON: "))
        self.assertTrue(result.message.endswith("\nOriginal response body:\n<html>hi</html>"))

    async def test_gzip_response_decoded(self) -> None:
        body = gzip.compress(b'{"status":"permanent-failure","message":"zipped"}')
        base, _, _ = self.start_worker(respond(body, headers={b"content-encoding": b"gzip"}))
        result = await self.make_deliverer().deliver(make_job(base))
        self.assertEqual(result, WorkerResult("permanent-failure", 200, "zipped"))

    async def test_gzip_of_several_members(self) -> None:
        body = gzip.compress(b'{"status":"success",') + gzip.compress(b'"message":"two"}')
        base, _, _ = self.start_worker(respond(body, headers={b"content-encoding": b"gzip"}))
        result = await self.make_deliverer().deliver(make_job(base))
        self.assertEqual(result, WorkerResult("success", 200, "two"))

    async def test_broken_gzip(self) -> None:
        """When a gzip body is corrupt or cut short, the body cannot be read (row 3)."""
        whole = gzip.compress(SUCCESS)
        deliverer = self.make_deliverer()
        for body in [b"not gzip at all", whole[:-4], whole + b"\x00\x00"]:
            base, _, _ = self.start_worker(
                respond(body, code=202, headers={b"content-encoding": b"gzip"})
            )
            result = await deliverer.deliver(make_job(base))
            self.assertEqual(result.status, "failure")
            self.assertEqual(result.code, 202)
            self.assertTrue(result.message.startswith("Cannot read body: "), result.message)

    async def test_body_too_large(self) -> None:
        base, _, _ = self.start_worker(respond(SUCCESS + b" " * 1000))
        result = await self.make_deliverer(max_response_body=100).deliver(make_job(base))
        self.assertEqual(
            result,
            WorkerResult("failure", 200, "Cannot read body: response body exceeds 100 bytes"),
        )

    async def test_body_at_limit(self) -> None:
        base, _, _ = self.start_worker(respond(SUCCESS.ljust(100)))
        result = await self.make_deliverer(max_response_body=100).deliver(make_job(base))
        self.assertEqual(result.status, "success")

    async def test_limit_counts_inflated_bytes(self) -> None:
        """When a small gzip body inflates past the limit, it is too large."""
        body = gzip.compress(SUCCESS + b" " * 5_000_000)
        self.assertLess(len(body), 10_000)
        base, _, _ = self.start_worker(respond(body, headers={b"content-encoding": b"gzip"}))
        result = await self.make_deliverer(max_response_body=1000).deliver(make_job(base))
        self.assertEqual(
            result,
            WorkerResult("failure", 200, "Cannot read body: response body exceeds 1000 bytes"),
        )

    async def test_large_body_does_not_wait_for_the_rest(self) -> None:
        """When the limit is passed, the connection is dropped rather than read to the end."""

        def endless(request: Request) -> int:
            request.write(b"x" * 4096)
            loop = LoopingCall(request.write, b"x" * 4096)
            loop.clock = reactor
            self._loops.append(loop)
            loop.start(0.05, now=False)
            request.notifyFinish().addBoth(lambda _: loop.stop() if loop.running else None)
            return NOT_DONE_YET

        base, _, _ = self.start_worker(endless)
        result = await self.make_deliverer(max_response_body=10_000).deliver(make_job(base))
        self.assertEqual(
            result,
            WorkerResult("failure", 200, "Cannot read body: response body exceeds 10000 bytes"),
        )

    async def test_connection_lost_while_reading(self) -> None:
        def cut(request: Request) -> int:
            request.setHeader(b"content-length", b"100")
            request.write(b'{"status":')
            request.channel.transport.loseConnection()
            return NOT_DONE_YET

        base, _, _ = self.start_worker(cut)
        result = await self.make_deliverer().deliver(make_job(base))
        self.assertEqual(result.status, "failure")
        self.assertEqual(result.code, 200)
        self.assertTrue(result.message.startswith("Cannot read body: "), result.message)

    async def test_body_until_close(self) -> None:
        """When a response has no length and ends with the connection, that is its end."""

        def http10(request: Request) -> int:
            request.channel.transport.write(b"HTTP/1.0 200 OK\r\n\r\n" + SUCCESS)
            request.channel.transport.loseConnection()
            return NOT_DONE_YET

        base, _, _ = self.start_worker(http10)
        result = await self.make_deliverer().deliver(make_job(base))
        self.assertEqual(result, WorkerResult("success", 200, "done"))


class RedirectTests(WorkerTestCase):
    def redirecting(
        self, code: int, location: Callable[[Request], bytes], final: bytes = SUCCESS
    ) -> Handler:
        def handler(request: Request) -> bytes:
            if request.path.endswith(b"/final"):
                return final
            request.setResponseCode(code)
            request.setHeader(b"location", location(request))
            return b"moved"

        return handler

    async def test_to_get(self) -> None:
        """After 301, 302 and 303 the next request is a GET without body."""
        for code in (301, 302, 303):
            base, worker, _ = self.start_worker(self.redirecting(code, lambda _: b"/final?x=1"))
            result = await self.make_deliverer().deliver(make_job(base + "/start"))
            self.assertEqual(result, WorkerResult("success", 200, "done"))
            first, then = worker.seen
            self.assertEqual((first.method, first.body), (b"POST", PAYLOAD))
            self.assertEqual((then.method, then.uri, then.body), (b"GET", b"/final?x=1", b""))
            self.assertIsNone(then.header(b"content-length"))
            self.assertEqual(then.header(b"user-agent"), [b"Fireworq/0.1.0"])

    async def test_repeat_post(self) -> None:
        """After 307 and 308 the same POST with the same body is sent again."""
        for code in (307, 308):
            base, worker, _ = self.start_worker(self.redirecting(code, lambda _: b"final"))
            result = await self.make_deliverer().deliver(make_job(base + "/dir/start"))
            self.assertEqual(result.status, "success")
            then = worker.seen[1]
            self.assertEqual((then.method, then.uri, then.body), (b"POST", b"/dir/final", PAYLOAD))
            self.assertEqual(then.header(b"content-type"), [b"application/json"])

    def hops(self, count: int) -> Handler:
        def handler(request: Request) -> bytes:
            n = int(request.args.get(b"n", [b"0"])[0])
            if n >= count:
                return SUCCESS
            request.setResponseCode(302)
            request.setHeader(b"location", b"/?n=%d" % (n + 1))
            return b""

        return handler

    async def test_ten_redirects_followed(self) -> None:
        base, worker, _ = self.start_worker(self.hops(10))
        result = await self.make_deliverer(keep_alive=True).deliver(make_job(base))
        self.assertEqual(result.status, "success")
        self.assertEqual(len(worker.seen), 11)

    async def test_eleven_redirects_fail(self) -> None:
        base, worker, _ = self.start_worker(self.hops(11))
        result = await self.make_deliverer().deliver(make_job(base))
        self.assertEqual(
            result,
            WorkerResult("internal-failure", 0, "Request failed: stopped after 10 redirects"),
        )
        self.assertEqual(len(worker.seen), 11)

    async def test_authorization_kept_on_same_host(self) -> None:
        base, worker, _ = self.start_worker(
            self.redirecting(302, lambda r: b"http://" + r.getHeader(b"host") + b"/final")  # type: ignore[operator]
        )
        host = base.removeprefix("http://")
        await self.make_deliverer().deliver(make_job(f"http://u:p@{host}/relative"))
        expected = [b"Basic " + b64encode(b"u:p")]
        self.assertEqual(
            [seen.header(b"authorization") for seen in worker.seen], [expected, expected]
        )

    async def test_authorization_kept_on_relative_redirect(self) -> None:
        base, worker, _ = self.start_worker(self.redirecting(307, lambda _: b"/final"))
        await self.make_deliverer().deliver(make_job(base.replace("http://", "http://u:p@")))
        self.assertEqual(worker.seen[1].header(b"authorization"), [b"Basic " + b64encode(b"u:p")])

    async def test_authorization_dropped_on_other_host(self) -> None:
        """When a redirect leads to another host (127.0.0.1 vs localhost), Authorization is not
        sent there."""
        final_base, final_worker, _ = self.start_worker(respond())
        other = final_base.replace("127.0.0.1", "localhost").encode()
        base, worker, _ = self.start_worker(self.redirecting(308, lambda _: other + b"/final"))
        result = await self.make_deliverer().deliver(
            make_job(base.replace("http://", "http://u:p@"))
        )
        self.assertEqual(result.status, "success")
        self.assertIsNotNone(worker.seen[0].header(b"authorization"))
        [seen] = final_worker.seen
        self.assertEqual(seen.header(b"host"), [other.removeprefix(b"http://")])
        self.assertIsNone(seen.header(b"authorization"))
        self.assertEqual((seen.method, seen.body), (b"POST", PAYLOAD))

    async def test_redirect_without_location_is_final(self) -> None:
        base, worker, _ = self.start_worker(respond(b'{"status":"success"}', code=302))
        result = await self.make_deliverer().deliver(make_job(base))
        self.assertEqual(result, WorkerResult("success", 302, ""))
        self.assertEqual(len(worker.seen), 1)

    async def test_redirect_with_large_body(self) -> None:
        """When a redirect has a body too long to drain, its connection is dropped and the
        redirect is still followed."""

        def handler(request: Request) -> bytes:
            if request.path == b"/final":
                return SUCCESS
            request.setResponseCode(303)
            request.setHeader(b"location", b"/final")
            return b"x" * 100_000

        base, worker, _ = self.start_worker(handler)
        result = await self.make_deliverer(keep_alive=True).deliver(make_job(base))
        self.assertEqual(result.status, "success")

    async def test_redirect_to_unusable_url(self) -> None:
        base, _, _ = self.start_worker(self.redirecting(302, lambda _: b"ftp://example.com/x"))
        result = await self.make_deliverer().deliver(make_job(base))
        self.assertEqual(result.status, "internal-failure")
        self.assertEqual(result.code, 0)
        self.assertTrue(result.message.startswith("Request failed: "), result.message)


class FailureTests(WorkerTestCase):
    async def test_connection_refused(self) -> None:
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        result = await self.make_deliverer().deliver(make_job(f"http://127.0.0.1:{number}/"))
        self.assertEqual(result.status, "internal-failure")
        self.assertEqual(result.code, 0)
        self.assertTrue(result.message.startswith("Request failed: "), result.message)
        self.assertIn("refused", result.message)

    async def test_informational_flood(self) -> None:
        """When a worker sends more than 5 informational responses before its answer, the
        attempt fails as a request without response (row 2); 5 are skipped."""

        def informational(count: int) -> Handler:
            def handler(request: Request) -> int:
                request.channel.transport.write(
                    b"HTTP/1.1 102 Processing\r\n\r\n" * count
                    + b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(SUCCESS)
                    + SUCCESS)
                request.channel.transport.loseConnection()
                return NOT_DONE_YET
            return handler

        deliverer = self.make_deliverer()
        base, _, _ = self.start_worker(informational(5))
        self.assertEqual(await deliverer.deliver(make_job(base)),
                         WorkerResult("success", 200, "done"))
        base, _, _ = self.start_worker(informational(6))
        self.assertEqual(
            await deliverer.deliver(make_job(base)),
            WorkerResult("internal-failure", 0,
                         "Request failed: more than 5 informational (1xx) responses"))

    async def test_invalid_urls(self) -> None:
        """When a stored URL cannot make a request, nothing is sent (row 1)."""
        deliverer = self.make_deliverer()
        for url in [
            "",
            "not a url",
            "ftp://example.com/",
            "mailto:someone@example.com",
            "http:///no-host",
            "http://",
            "http://example.com/a b",
            "http://example.com/\n",
            "http://exa\tmple.com/",
            " http://example.com/",
            "http://example.com:abc/",
            "http://example.com:99999/",
            "http://[::1/",
            "//example.com/",
        ]:
            result = await deliverer.deliver(make_job(url))
            self.assertEqual(result.status, "internal-failure", url)
            self.assertEqual(result.code, 0)
            self.assertTrue(
                result.message.startswith("Cannot create http request: "), (url, result.message)
            )
            self.assertGreater(len(result.message), len("Cannot create http request: "))

    async def test_timeout_before_headers(self) -> None:
        """When the worker takes longer than the job's timeout, the attempt ends at the timeout
        with no response (row 2)."""
        base, _, connections = self.start_worker(self.slow(3))
        started = reactor.seconds()
        result = await self.make_deliverer().deliver(make_job(base, timeout=1))
        elapsed = reactor.seconds() - started
        self.assertEqual(
            result,
            WorkerResult(
                "internal-failure", 0, "Request failed: no response within the job's timeout of 1 s"
            ),
        )
        self.assertTrue(0.9 <= elapsed < 2, elapsed)
        await connections.close_all()  # the aborted connection is gone on the worker's side too

    async def test_timeout_while_reading(self) -> None:
        """When the body is still coming at the job's timeout, the body cannot be read (row 3,
        with the HTTP status)."""

        def trickle(request: Request) -> int:
            request.setResponseCode(201)
            request.write(b'{"status":')
            loop = LoopingCall(request.write, b" ")
            loop.clock = reactor
            self._loops.append(loop)
            loop.start(0.1, now=False)
            request.notifyFinish().addBoth(lambda _: loop.stop() if loop.running else None)
            return NOT_DONE_YET

        base, _, _ = self.start_worker(trickle)
        started = reactor.seconds()
        result = await self.make_deliverer().deliver(make_job(base, timeout=1))
        self.assertLess(reactor.seconds() - started, 2)
        self.assertEqual(
            result,
            WorkerResult("failure", 201, "Cannot read body: the job's timeout of 1 s was reached"),
        )

    async def test_timeout_zero_waits(self) -> None:
        base, _, _ = self.start_worker(self.slow(0.2))
        result = await self.make_deliverer().deliver(make_job(base, timeout=0))
        self.assertEqual(result.status, "success")

    async def test_caller_cancel(self) -> None:
        """When the caller cancels a delivery, it ends with CancelledError and the connection
        is dropped."""
        base, worker, connections = self.start_worker(self.slow(30))
        d = Deferred.fromCoroutine(self.make_deliverer().deliver(make_job(base)))
        await connections.opened_one()
        while not worker.seen:
            await deferLater(reactor, 0, lambda: None)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        await connections.close_all()


def self_signed_tls() -> ssl.CertificateOptions:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    return ssl.CertificateOptions(privateKey=key, certificate=cert)


class TLSTests(WorkerTestCase):
    async def test_untrusted_certificate(self) -> None:
        """When the worker's certificate is not signed by a trusted CA, nothing is sent (row 2)."""
        worker = Worker(respond())
        port, _ = self.listen(_Quiet(worker, timeout=None), tls=self_signed_tls())
        clock = Clock()
        result = await self.make_deliverer(handshake_clock=clock).deliver(
            make_job(f"https://127.0.0.1:{port}/")
        )
        self.assertEqual(result.status, "internal-failure")
        self.assertEqual(result.code, 0)
        self.assertEqual(result.message, "Request failed: TLS error: certificate verify failed")
        self.assertEqual(worker.seen, [])

    async def test_handshake_deadline(self) -> None:
        """When a server never completes the TLS handshake, the attempt fails after
        TLS_HANDSHAKE_TIMEOUT seconds even without a job timeout."""
        port, connections = self.listen(Factory.forProtocol(Protocol))
        clock = Clock()
        deliverer = self.make_deliverer(handshake_clock=clock)
        d = Deferred.fromCoroutine(
            deliverer.deliver(make_job(f"https://127.0.0.1:{port}/", timeout=0))
        )
        await connections.opened_one()
        while not clock.getDelayedCalls():
            await deferLater(reactor, 0, lambda: None)
        clock.advance(TLS_HANDSHAKE_TIMEOUT - 0.001)
        self.assertNoResult(d)
        clock.advance(0.001)
        result = await d
        self.assertEqual(
            result,
            WorkerResult(
                "internal-failure", 0, "Request failed: TLS handshake not completed within 10 s"
            ),
        )


@implementer(IAgent)
class HangingAgent:
    """Answers nothing, and notes what it was asked and whether it was cancelled."""

    def __init__(self) -> None:
        self.uris: list[bytes] = []
        self.cancelled = 0

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[Any]:
        self.uris.append(uri)

        def cancel(_: Deferred[Any]) -> None:
            self.cancelled += 1

        return Deferred(cancel)


class ClockTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.agent = HangingAgent()
        self.deliverer = Deliverer(HTTPClient(self.agent), self.clock, make_settings())

    def test_timeout_on_injected_clock(self) -> None:
        d = Deferred.fromCoroutine(
            self.deliverer.deliver(make_job("http://worker.invalid/", timeout=5))
        )
        self.clock.advance(4.999)
        self.assertNoResult(d)
        self.clock.advance(0.001)
        self.assertEqual(
            self.successResultOf(d),
            WorkerResult(
                "internal-failure", 0, "Request failed: no response within the job's timeout of 5 s"
            ),
        )
        self.assertEqual(self.agent.cancelled, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_timer_without_timeout(self) -> None:
        d = Deferred.fromCoroutine(
            self.deliverer.deliver(make_job("http://worker.invalid/", timeout=0))
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])
        d.cancel()
        self.failureResultOf(d, CancelledError)

    def test_caller_cancel(self) -> None:
        d = Deferred.fromCoroutine(
            self.deliverer.deliver(make_job("http://worker.invalid/", timeout=5))
        )
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.agent.cancelled, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_wire_url(self) -> None:
        """The agent is given the URL without user information and fragment, re-encoded by
        nobody."""
        for url, wire in [
            (
                "http://u:p@Worker.example:8080/a/%7Eb;c?q=%2F&r#frag",
                b"http://Worker.example:8080/a/%7Eb;c?q=%2F&r",
            ),
            ("HTTPS://worker.example", b"https://worker.example/"),
            ("http://worker.example:/x", b"http://worker.example/x"),
            ("http://[::1]:81/x", b"http://[::1]:81/x"),
            (
                "http://ex\u00e4mple.com/p\u00e4th?q=\u00e4",
                b"http://xn--exmple-cua.com/p%C3%A4th?q=%C3%A4",
            ),
        ]:
            d = Deferred.fromCoroutine(self.deliverer.deliver(make_job(url)))
            d.cancel()
            self.failureResultOf(d, CancelledError)
            self.assertEqual(self.agent.uris[-1], wire)


class ClientTests(SynchronousTestCase):
    def test_pool_settings(self) -> None:
        settings = attrs.evolve(
            make_settings(keep_alive=True), max_conns_per_host=7, idle_conn_timeout=90
        )
        _, agent = make_http_client(Clock(), settings)
        self.assertTrue(agent.persistent)
        self.assertEqual(agent.max_idle_per_host, 7)
        self.assertEqual(agent.idle_timeout, 90)

    def test_pool_defaults(self) -> None:
        """0 connections per host means 2; an idle timeout of 0 means never."""
        settings = attrs.evolve(
            make_settings(keep_alive=False), max_conns_per_host=0, idle_conn_timeout=0
        )
        _, agent = make_http_client(Clock(), settings)
        self.assertFalse(agent.persistent)
        self.assertEqual(agent.max_idle_per_host, 2)
        self.assertIsNone(agent.idle_timeout)

    def test_limits(self) -> None:
        self.assertEqual((CONNECT_TIMEOUT, TLS_HANDSHAKE_TIMEOUT), (30, 10))
