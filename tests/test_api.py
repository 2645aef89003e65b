"""Tests for the HTTP API against docs/api.md.

Every test talks to a whole in-memory node (L{apptools.ApiHarness}) on a L{task.Clock}, over
raw HTTP into the real L{FireworqSite}, so status lines, headers and bodies are checked byte
for byte as a client sees them. Times are rendered in UTC (C{TZ=UTC}) unless a test says
otherwise.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import socket
import time
from typing import Any
from urllib.parse import quote

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from apptools import (
    FAILURE,
    PERMANENT,
    START_MS,
    SUCCESS,
    ApiHarness,
    RawResponse,
    build_request,
    utc,
)
from storage_contract import Taken

from fireworq import __version__
from fireworq.model import QueueDefinition, Routing, WorkerResult

JSON = b"application/json"
URL = "http://worker.internal:8000/send"
NOT_STORED = "Store unavailable: no answer within 5 seconds; the job was not stored"
REASONS = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

#: Every route of docs/api.md, Routes, with a concrete path, and its methods in its order.
ROUTES = [
    ("/", ["GET", "HEAD"]),
    ("/version", ["GET", "HEAD"]),
    ("/settings", ["GET", "HEAD"]),
    ("/stats", ["GET", "HEAD"]),
    ("/healthz", ["GET", "HEAD"]),
    ("/readyz", ["GET", "HEAD"]),
    ("/metrics", ["GET", "HEAD"]),
    ("/openapi.json", ["GET", "HEAD"]),
    ("/queues", ["GET", "HEAD"]),
    ("/queues/stats", ["GET", "HEAD"]),
    ("/queue/mail", ["GET", "HEAD", "PUT", "DELETE"]),
    ("/queue/mail/node", ["GET", "HEAD"]),
    ("/queue/mail/stats", ["GET", "HEAD"]),
    ("/queue/mail/grabbed", ["GET", "HEAD"]),
    ("/queue/mail/waiting", ["GET", "HEAD"]),
    ("/queue/mail/deferred", ["GET", "HEAD"]),
    ("/queue/mail/job/1", ["GET", "HEAD", "DELETE"]),
    ("/queue/mail/failed", ["GET", "HEAD", "DELETE"]),
    ("/queue/mail/failed/1", ["GET", "HEAD", "DELETE"]),
    ("/queue/mail/failed/1/retry", ["POST"]),
    # The bulk retry's path is also a failure id (an invalid one) for the entry routes.
    ("/queue/mail/failed/retry", ["GET", "HEAD", "DELETE", "POST"]),
    ("/queue/mail/pause", ["POST"]),
    ("/queue/mail/resume", ["POST"]),
    ("/routings", ["GET", "HEAD"]),
    ("/routing/send_welcome", ["GET", "HEAD", "PUT", "DELETE"]),
    ("/job/send_welcome", ["POST"]),
    ("/jobs/send_welcome", ["POST"]),
]
ALL_METHODS = ["GET", "HEAD", "PUT", "DELETE", "POST", "PATCH", "OPTIONS", "TRACE", "FROB"]

#: Endpoints marked "Store: yes" (method, path, body).
STORE_ENDPOINTS: list[tuple[str, str, Any]] = [
    ("GET", "/queues", None),
    ("GET", "/queue/mail", None),
    ("PUT", "/queue/mail", {"max_workers": 3}),
    ("DELETE", "/queue/mail", None),
    ("GET", "/queue/mail/grabbed", None),
    ("GET", "/queue/mail/waiting", None),
    ("GET", "/queue/mail/deferred", None),
    ("GET", "/queue/mail/job/1", None),
    ("DELETE", "/queue/mail/job/1", None),
    ("GET", "/queue/mail/failed", None),
    ("GET", "/queue/mail/failed/1", None),
    ("DELETE", "/queue/mail/failed/1", None),
    ("POST", "/queue/mail/failed/1/retry", None),
    ("POST", "/queue/mail/failed/retry", None),
    ("DELETE", "/queue/mail/failed", None),
    ("POST", "/queue/mail/pause", None),
    ("POST", "/queue/mail/resume", None),
    ("GET", "/routings", None),
    ("GET", "/routing/send_welcome", None),
    ("PUT", "/routing/send_welcome", {"queue_name": "mail"}),
    ("DELETE", "/routing/send_welcome", None),
    ("POST", "/job/send_welcome", {"url": URL}),
    ("POST", "/job/unrouted", {"url": URL}),
    ("GET", "/readyz", None),
]

SETTING_KEYS = [
    "access_log", "access_log_tag", "api_tokens", "api_tokens_file", "bind",
    "config_refresh_interval", "dispatch_allow", "dispatch_deny", "dispatch_idle_conn_timeout", "dispatch_keep_alive", "dispatch_max_conns_per_host",
    "dispatch_max_response_body", "dispatch_user_agent", "driver", "error_log",
    "error_log_level", "keep_alive", "max_pending_pushes", "max_request_body", "metrics_public",
    "mysql_dsn", "mysql_lock_scope", "pid", "processes",
    "queue_default", "queue_default_max_workers", "queue_default_polling_interval", "queue_log",
    "queue_log_level", "queue_log_tag", "queue_mysql_dsn", "repository_mysql_dsn",
    "shutdown_timeout", "sqlite_path",
]
STATS_MEMBERS = [
    "total_pushes", "total_pops", "total_successes", "total_failures",
    "total_permanent_failures", "total_completes", "total_elapsed", "pushes_per_second",
    "pops_per_second", "outstanding_jobs", "total_workers", "idle_workers", "active_nodes",
]
JOB_MEMBERS = [
    "id", "category", "url", "payload", "status", "created_at", "next_try", "timeout",
    "fail_count", "max_retries", "retry_delay",
]
FAILED_MEMBERS = [
    "id", "job_id", "category", "url", "payload", "result", "fail_count", "failed_at",
    "created_at",
]


def go_json(value: Any) -> bytes:
    """JSON text as docs/api.md, Responses writes it (compact, <>& and U+2028/9 escaped)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text.encode("utf-8")


def error_body(code: int, message: str) -> bytes:
    return go_json({"code": code, "error": REASONS[code], "message": message})


def ordered(body: bytes) -> list[tuple[str, Any]]:
    """The members of a JSON object in the order they were written."""
    pairs: list[tuple[str, Any]] = json.loads(body, object_pairs_hook=list)
    return pairs


def cursor_of(time_ms: int, item_id: int) -> str:
    return base64.b64encode(b"%d,%d" % (time_ms, item_id)).decode("ascii")


def q(text: str) -> str:
    """Percent-encode a query value completely."""
    return quote(text, safe="")


class APITestCase(SynchronousTestCase):
    """A started node per test (C{self.node}); stopped, with an empty clock, afterwards."""

    overrides: dict[str, str] = {}

    def setUp(self) -> None:
        self.addCleanup(utc())
        self.node = self.make_node(self.overrides)

    def make_node(self, overrides: dict[str, str] | None = None) -> ApiHarness:
        node = ApiHarness(overrides)
        self.addCleanup(node.stop)
        return node

    # Assertions

    def assertJSONResponse(
        self, response: RawResponse, status: int, body: bytes | None = None
    ) -> None:
        """A JSON response of docs/api.md, Responses, with C{Connection: close} (keep-alive is
        off)."""
        self.assertEqual(response.status, status, response.body)
        self.assertEqual(response.header(b"content-type"), JSON)
        self.assertEqual(response.header(b"content-length"), b"%d" % len(response.body))
        self.assertEqual(response.header(b"connection"), b"close")
        self.assertFalse(response.body.endswith(b"\n"))
        if body is not None:
            self.assertEqual(response.body, body)

    def assertError(self, response: RawResponse, status: int, message: str) -> None:
        self.assertJSONResponse(response, status, error_body(status, message))
        if status == 503:
            self.assertEqual(response.header(b"retry-after"), b"1")
        else:
            self.assertIsNone(response.header(b"retry-after"))

    def assertOK(self, response: RawResponse, value: Any) -> None:
        """200 with exactly the JSON text of C{value} (members in the given order)."""
        self.assertJSONResponse(response, 200, go_json(value))

    # Set-up through the API

    def define(self, name: str = "mail", **members: Any) -> Any:
        return self.node.define_queue(name, **members)

    def route(self, category: str = "send_welcome", queue_name: str = "mail") -> Any:
        return self.node.define_routing(category, queue_name)

    def push(self, category: str = "send_welcome", **members: Any) -> Any:
        return self.node.push(category, **members)


class RouteTests(APITestCase):
    """docs/api.md, Methods and Routes: each route accepts exactly its methods."""

    def test_acceptedMethods(self) -> None:
        """When a route is asked with one of its methods, it is neither 404 nor 405."""
        for path, methods in ROUTES:
            for method in methods:
                response = self.node.request(method, path)
                self.assertNotIn(response.status, (405,), (method, path, response.body))
                self.assertFalse(
                    response.status == 404 and b"No such endpoint" in response.body,
                    (method, path),
                )

    def test_otherMethods(self) -> None:
        """When a route is asked with another method, it is 405 with Allow listing its methods
        in the order of docs/api.md, Routes, and the message naming method, path and methods."""
        for path, methods in ROUTES:
            allowed = ", ".join(methods)
            for method in ALL_METHODS:
                if method in methods:
                    continue
                response = self.node.request(method, path)
                body = error_body(
                    405, "Method %s is not allowed on %s; allowed: %s" % (method, path, allowed)
                )
                self.assertEqual(response.status, 405, (method, path))
                self.assertEqual(response.header(b"allow"), allowed.encode("ascii"))
                self.assertEqual(response.header(b"content-type"), JSON)
                if method == "HEAD":
                    self.assertEqual(response.body, b"")
                    self.assertEqual(response.header(b"content-length"), b"%d" % len(body))
                else:
                    self.assertJSONResponse(response, 405, body)

    def test_allowOnlyOn405(self) -> None:
        """When a request is answered with another status, there is no Allow header."""
        self.assertIsNone(self.node.get("/queues").header(b"allow"))
        self.assertIsNone(self.node.get("/nope").header(b"allow"))

    def test_unknownPath(self) -> None:
        """When no route matches, it is 404 No such endpoint with the path, for every method."""
        for method in ("GET", "PUT", "POST", "DELETE", "FROB"):
            response = self.node.request(method, "/nope/x")
            self.assertError(response, 404, "No such endpoint: /nope/x")
        for path in ("/queue", "/queue/", "/queue/mail/", "/queue/mail/job", "/queue/mail/job/",
                     "/queue/mail/failed/", "/queue/mail/x", "/queue/mail/job/1/x", "/routing",
                     "/routing/", "/job", "/job/", "/queues/", "/queues/stats/", "/version/",
                     "/Queues", "/queue/mail/Waiting"):
            self.assertError(self.node.get(path), 404, "No such endpoint: %s" % path)

    def test_nonCanonicalPaths(self) -> None:
        """When the path has an empty segment (not final) or a . or .. segment, it is 404 No
        such endpoint, never a redirect."""
        for path in ("/queues/", "//queues", "/queue/a/../b", "/./queues", "/queue/mail/.",
                     "/queue//stats", "/routing/a//b", "/job/a/./b", "/job/a/../b",
                     "/queue/mail/job//1", "/queues//"):
            self.assertError(self.node.get(path), 404, "No such endpoint: %s" % path)

    def test_decodedPath(self) -> None:
        """When the path is percent-encoded, routes match the decoded path, and the message
        shows it decoded."""
        self.assertError(self.node.get("/queue/a%2Fb"), 404, "No such endpoint: /queue/a/b")
        self.assertError(self.node.get("/%2e/queues"), 404, "No such endpoint: /./queues")
        self.assertError(self.node.get("/queue/a%2F..%2Fb"), 404,
                         "No such endpoint: /queue/a/../b")
        self.assertOK(self.node.get("/%71ueues"), [])
        self.assertError(self.node.get("/queue/x%2Fstats"), 404, "No such queue: x")

    def test_invalidUTF8Path(self) -> None:
        """When the decoded path is not UTF-8, it is 400 Path is not valid UTF-8, before the
        404 and 405 checks."""
        for method, path in (("GET", "/queue/%ff"), ("GET", "/nope/%c3"), ("FROB", "/%ff"),
                             ("POST", "/queue/%80/stats"), ("GET", "//%ff")):
            self.assertError(self.node.request(method, path), 400, "Path is not valid UTF-8")

    def test_orderOf404And405(self) -> None:
        """When the path is not canonical and the method is wrong, 404 wins."""
        self.assertError(self.node.post("/queues/"), 404, "No such endpoint: /queues/")

    def test_orderOf405AndPathVariables(self) -> None:
        """When the method is wrong and a path variable is invalid, 405 wins."""
        response = self.node.post("/queue/mail/job/abc")
        self.assertEqual(response.status, 405)
        response = self.node.post("/queue/" + "a" * 47)
        self.assertEqual(response.status, 405)

    def test_headEqualsGet(self) -> None:
        """When HEAD is sent where GET is accepted, the status and headers are GET's and there
        is no body."""
        self.define()
        for path in ("/", "/version", "/settings", "/healthz", "/readyz", "/queues",
                     "/queues/stats", "/queue/mail", "/queue/mail/stats", "/queue/mail/node",
                     "/queue/mail/waiting", "/queue/mail/failed", "/routings", "/queue/nope",
                     "/queue/mail/job/1", "/queue/mail/job/x", "/nope"):
            get = self.node.get(path)
            head = self.node.request("HEAD", path)
            self.assertEqual(head.status, get.status, path)
            self.assertEqual(head.body, b"", path)
            self.assertEqual(
                [(k.lower(), v) for k, v in head.headers if k.lower() != b"date"],
                [(k.lower(), v) for k, v in get.headers if k.lower() != b"date"],
                path,
            )

    def test_headCountsAsGetForTheRoute(self) -> None:
        """When HEAD is sent to a route whose only method is POST, it is 405."""
        response = self.node.request("HEAD", "/job/send_welcome")
        self.assertEqual(response.status, 405)
        self.assertEqual(response.header(b"allow"), b"POST")


class ResponseTests(APITestCase):
    """docs/api.md, Responses: headers and framing of every response."""

    def test_connectionCloseByDefault(self) -> None:
        """When keep-alive is off (the default), every response carries Connection: close and
        the connection is closed after it."""
        for method, path in (("GET", "/"), ("GET", "/healthz"), ("GET", "/nope"),
                             ("PATCH", "/queues"), ("GET", "/queue/%ff"), ("GET", "/metrics"),
                             ("GET", "/stats"), ("PUT", "/queue/mail")):
            response = self.node.request(method, path)
            self.assertEqual(response.header(b"connection"), b"close", (method, path))
            self.assertTrue(response.closed, (method, path))

    def test_connectionCloseOnPipelinedRequests(self) -> None:
        """When two requests come on one connection with keep-alive off, only the first is
        answered and the connection is closed."""
        connection = self.node.connect()
        connection.send(build_request("GET", "/healthz") + build_request("GET", "/queues"))
        response = connection.response()
        self.assertEqual(response.body, b'{"status":"ok"}')
        self.assertTrue(response.closed)
        connection.close()

    def test_keepAlive(self) -> None:
        """When keep-alive is on, responses have no Connection header and the connection
        stays open for the next request."""
        node = self.make_node({"keep_alive": "true"})
        connection = node.connect()
        connection.send(build_request("GET", "/healthz") + build_request("GET", "/nope")
                        + build_request("HEAD", "/queues") + build_request("PATCH", "/"))
        responses = [connection.response(), connection.response(),
                     connection.response(head=True), connection.response()]
        self.assertEqual([r.status for r in responses], [200, 404, 200, 405])
        for response in responses:
            self.assertIsNone(response.header(b"connection"))
            self.assertFalse(response.closed)
        connection.close()

    def test_contentLength(self) -> None:
        """When a JSON response is sent, its Content-Length is the body's length and the
        body has no trailing newline."""
        for path in ("/healthz", "/settings", "/queues", "/nope", "/stats"):
            response = self.node.get(path)
            self.assertJSONResponse(response, response.status)

    def test_http10(self) -> None:
        """When the request is HTTP/1.0, it is answered the same way."""
        response = self.node.request("GET", "/healthz", version=b"HTTP/1.0")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b'{"status":"ok"}')
        self.assertTrue(response.closed)


class BodyLimitTests(APITestCase):
    """docs/api.md, Requests and Errors: 413 for bodies over FIREWORQ_MAX_REQUEST_BODY."""

    overrides = {"max_request_body": "100"}

    def test_contentLengthAtLimit(self) -> None:
        """When Content-Length equals the limit, the body is read."""
        response = self.node.put("/queue/mail", b"{" + b" " * 98 + b"}")
        self.assertEqual(response.status, 200)

    def test_contentLengthOverLimit(self) -> None:
        """When Content-Length is over the limit, it is 413 and the connection is closed."""
        response = self.node.put("/queue/mail", b"{" + b" " * 99 + b"}")
        self.assertError(response, 413, "Request body exceeds 100 bytes")
        self.assertTrue(response.closed)
        self.assertEqual(self.node.get("/queues").body, b"[]")

    def test_announcedOnly(self) -> None:
        """When only the Content-Length header arrives, the 413 is sent before any body."""
        connection = self.node.connect()
        connection.send(b"POST /job/x HTTP/1.1\r\nHost: h\r\nContent-Length: 5000000\r\n\r\n")
        response = connection.response()
        self.assertError(response, 413, "Request body exceeds 100 bytes")
        self.assertTrue(response.closed)
        connection.close()

    def test_chunkedAtLimit(self) -> None:
        """When a chunked body is exactly at the limit, it is read."""
        response = self.node.put("/queue/mail", b"{" + b" " * 98 + b"}", chunked=True)
        self.assertEqual(response.status, 200)

    def test_chunkedOverLimit(self) -> None:
        """When a chunked body crosses the limit, it is 413 and the connection is closed."""
        response = self.node.put("/queue/mail", b"{" + b" " * 99 + b"}", chunked=True)
        self.assertError(response, 413, "Request body exceeds 100 bytes")
        self.assertTrue(response.closed)

    def test_firstCheck(self) -> None:
        """When the body is too large, 413 comes before every other check, whatever the
        route."""
        big = b"x" * 101
        for method, path in (("GET", "/nope"), ("GET", "/queue/%ff"), ("PATCH", "/queues"),
                             ("GET", "/healthz"), ("POST", "/job/" + "a" * 300),
                             ("GET", "//queues")):
            self.assertError(self.node.request(method, path, big), 413,
                             "Request body exceeds 100 bytes")
            self.assertError(self.node.request(method, path, big, chunked=True), 413,
                             "Request body exceeds 100 bytes")

    def test_keepAliveClosedAfter413(self) -> None:
        """When keep-alive is on, the connection is still closed after a 413."""
        node = self.make_node({"keep_alive": "true", "max_request_body": "10"})
        response = node.put("/queue/mail", b"{}" + b" " * 20)
        self.assertEqual(response.status, 413)
        self.assertEqual(response.header(b"connection"), b"close")
        self.assertTrue(response.closed)

    def test_accessLogged(self) -> None:
        """When a body is refused, the access log has a 413 line for it."""
        self.node.put("/queue/mail", b"{" + b" " * 200 + b"}")
        lines = self.node.access_lines()
        self.assertEqual([(l["method"], l["url"], l["status"]) for l in lines],
                         [("PUT", "/queue/mail", 413)])


class RequestBodyTests(APITestCase):
    """docs/api.md, Requests: request bodies are one UTF-8 JSON object."""

    def put(self, body: bytes, **kwargs: Any) -> RawResponse:
        return self.node.put("/queue/mail", body, **kwargs)

    def test_empty(self) -> None:
        """When the body is empty or only whitespace, it is 400 with the empty-body message."""
        for body in (b"", b"  \r\n\t"):
            self.assertError(self.put(body), 400,
                             "Request body is empty; a JSON object is expected")
        response = self.node.request("PUT", "/queue/mail")
        self.assertError(response, 400, "Request body is empty; a JSON object is expected")

    def test_notUTF8(self) -> None:
        """When the body is not UTF-8, it is 400 Request body is not valid UTF-8."""
        for body in (b"\xff", b'{"a":"\xc3"}', b'{"a":"\xed\xa0\x80"}'):
            self.assertError(self.put(body), 400, "Request body is not valid UTF-8")

    def test_syntaxErrors(self) -> None:
        """When the body is not JSON, it is 400 Invalid JSON naming what and where."""
        cases = {
            b'{"max_workers":}': "Expecting value: line 1 column 16",
            b'{"max_workers":1} junk': "Extra data: line 1 column 19",
            b"{\n  'a': 1}": "Expecting property name enclosed in double quotes: line 2 column 3",
            b'{"a" 1}': "Expecting ':' delimiter: line 1 column 6",
            b'{"a":1 "b":2}': "Expecting ',' delimiter: line 1 column 8",
            b"NaN": "Expecting value: line 1 column 1",
            b'{"max_dispatches_per_second":Infinity}': "Expecting value: line 1 column 30",
            b'{"a":-Infinity}': "Expecting value: line 1 column 6",
            b"{} {}": "Extra data: line 1 column 4",
        }
        for body, what in cases.items():
            self.assertError(self.put(body), 400, "Invalid JSON: " + what)

    def test_nesting(self) -> None:
        """When values nest 512 levels deep, the body is read; at 513, it is 400."""
        deep = b'{"x":' + b"[" * 511 + b"]" * 511 + b"}"
        self.assertEqual(self.put(deep).status, 200)
        deeper = b'{"x":' + b"[" * 512 + b"]" * 512 + b"}"
        response = self.put(deeper)
        self.assertError(response, 400,
                         "Invalid JSON: nesting deeper than 512 levels: line 1 column 517")

    def test_notAnObject(self) -> None:
        """When the body is another JSON value, null included, it is 400."""
        for body in (b"null", b"[]", b"1", b'"x"', b"true", b" [ {} ] "):
            self.assertError(self.put(body), 400, "Request body must be a JSON object")

    def test_keysAreCaseSensitive(self) -> None:
        """When a key differs in case from a field, it is an unknown key and ignored."""
        self.assertOK(self.put(b'{"MAX_WORKERS":5,"Max_Workers":"x"}'),
                      {"name": "mail", "polling_interval": 200, "max_workers": 20})
        response = self.node.post("/job/x", b'{"URL":"http://h/"}')
        self.assertError(response, 400, "Missing field: url")

    def test_duplicateKeys(self) -> None:
        """When a key occurs twice, the last occurrence counts."""
        self.assertOK(self.put(b'{"max_workers":"bad","max_workers":5}'),
                      {"name": "mail", "polling_interval": 200, "max_workers": 5})
        self.assertError(self.put(b'{"max_workers":5,"max_workers":"bad"}'), 400,
                         "Field 'max_workers' must be an integer from 0 to 10000")

    def test_nullIsAbsent(self) -> None:
        """When a known key is null, it counts as absent."""
        self.assertOK(self.put(b'{"max_workers":null,"polling_interval":null,'
                               b'"max_dispatches_per_second":null,"max_burst_size":null,'
                               b'"name":null}'),
                      {"name": "mail", "polling_interval": 200, "max_workers": 20})

    def test_unknownKeysIgnored(self) -> None:
        """When the body has unknown keys, whatever their values, they are ignored."""
        self.assertOK(self.put(b'{"x":[1,{"y":null}],"z":"w","maxWorkers":1}'),
                      {"name": "mail", "polling_interval": 200, "max_workers": 20})

    def test_contentTypeNotChecked(self) -> None:
        """When the request has another Content-Type (even a form type), the body is still
        read as JSON."""
        for content_type in ("application/x-www-form-urlencoded", "multipart/form-data; b=x",
                             "text/plain", "application/json; charset=latin-1", "nonsense"):
            response = self.put(b'{"max_workers":7}',
                                headers=[("Content-Type", content_type)])
            self.assertOK(response, {"name": "mail", "polling_interval": 200,
                                     "max_workers": 7})

    def test_chunkedBody(self) -> None:
        """When the body is chunked, it is read whole."""
        response = self.put(b'{"max_workers":   7}', chunked=True, chunk_size=3)
        self.assertOK(response, {"name": "mail", "polling_interval": 200, "max_workers": 7})

    def test_bodyIgnoredElsewhere(self) -> None:
        """When a route does not read bodies, any body is ignored."""
        self.define()
        self.assertOK(self.node.request("GET", "/queue/mail", b"\xff not json"),
                      {"name": "mail", "polling_interval": 200, "max_workers": 20})
        self.assertOK(self.node.request("DELETE", "/queue/mail", b"[["),
                      {"name": "mail", "polling_interval": 200, "max_workers": 20})


class QueryStringTests(APITestCase):
    """docs/api.md, Requests: query parameters."""

    def setUp(self) -> None:
        super().setUp()
        self.define()

    def test_firstOccurrenceCounts(self) -> None:
        """When a parameter is repeated, its first occurrence counts."""
        self.assertEqual(self.node.get("/queue/mail/waiting?order=asc&order=bad").status, 200)
        self.assertError(self.node.get("/queue/mail/waiting?order=bad&order=asc"), 400,
                         "Invalid order: must be asc or desc")

    def test_emptyIsAbsent(self) -> None:
        """When a parameter has an empty value, it counts as absent."""
        for query in ("order=", "limit=", "cursor=", "order=&limit=&cursor=", "limit",
                      "limit=&limit=0"):
            response = self.node.get("/queue/mail/waiting?" + query)
            self.assertOK(response, {"jobs": [], "next_cursor": ""})

    def test_unknownIgnored(self) -> None:
        """When unknown parameters are given, they are ignored."""
        response = self.node.get("/queue/mail/waiting?x=1&ORDER=bad&&=&%ff=%ff")
        self.assertOK(response, {"jobs": [], "next_cursor": ""})

    def test_formDecoding(self) -> None:
        """When a value is percent-encoded or has '+', it is form-decoded ('+' is a space)."""
        self.assertEqual(self.node.get("/queue/mail/waiting?order=%61sc").status, 200)
        self.assertEqual(self.node.get("/queue/mail/waiting?%6frder=asc").status, 200)
        self.assertEqual(self.node.get("/queue/mail/waiting?limit=%31%30").status, 200)
        self.assertError(self.node.get("/queue/mail/waiting?order=asc+"), 400,
                         "Invalid order: must be asc or desc")

    def test_semicolonIsNotASeparator(self) -> None:
        """When a value contains ';', it is part of the value (form encoding splits on '&'
        only)."""
        self.assertError(self.node.get("/queue/mail/waiting?order=asc;limit=5"), 400,
                         "Invalid order: must be asc or desc")
        self.assertError(self.node.get("/queue/mail/waiting?limit=5;order=asc"), 400,
                         "Invalid limit: must be an integer from 1 to 1000")


class VersionTests(APITestCase):
    """docs/api.md, GET /version."""

    def test_version(self) -> None:
        """When / or /version is asked, the answer is the version line as UTF-8 text."""
        text = ("fireworq-py %s (Fireworq 1.5 compatible)\n" % __version__).encode()
        for path in ("/", "/version"):
            response = self.node.get(path)
            self.assertEqual(response.status, 200)
            self.assertEqual(response.header(b"content-type"), b"text/plain; charset=utf-8")
            self.assertEqual(response.header(b"content-length"), b"%d" % len(text))
            self.assertEqual(response.body, text)
        self.assertEqual(__version__, "0.1.0")

    def test_noStore(self) -> None:
        """When the store is down, / and /version still answer."""
        self.node.store.down = True
        self.assertEqual(self.node.get("/").status, 200)
        self.assertEqual(self.node.get("/version").status, 200)


class SettingsTests(APITestCase):
    """docs/api.md, GET /settings."""

    def test_defaults(self) -> None:
        """When nothing is configured, every key is shown with its resolved default."""
        response = self.node.get("/settings")
        self.assertJSONResponse(response, 200)
        self.assertEqual(ordered(response.body), [
            ("access_log", ""), ("access_log_tag", "fireworq.access"), ("api_tokens", "0"),
            ("api_tokens_file", ""), ("bind", "127.0.0.1:8080"),
            ("config_refresh_interval", "1000"), ("dispatch_allow", ""), ("dispatch_deny", ""),
            ("dispatch_idle_conn_timeout", "0"), ("dispatch_keep_alive", "false"),
            ("dispatch_max_conns_per_host", "10"), ("dispatch_max_response_body", "1048576"),
            ("dispatch_user_agent", "Fireworq/0.1.0"), ("driver", "in-memory"),
            ("error_log", ""), ("error_log_level", "info"), ("keep_alive", "false"),
            ("max_pending_pushes", "10000"), ("max_request_body", "1048576"),
            ("metrics_public", "false"), ("mysql_dsn", "tcp(localhost:3306)/fireworq"),
            ("mysql_lock_scope", "database"), ("pid", ""), ("processes", "1"),
            ("queue_default", ""),
            ("queue_default_max_workers", "20"), ("queue_default_polling_interval", "200"),
            ("queue_log", ""), ("queue_log_level", "info"),
            ("queue_log_tag", "fireworq.queue"), ("queue_mysql_dsn", ""),
            ("repository_mysql_dsn", ""), ("shutdown_timeout", "30"),
            ("sqlite_path", "fireworq.sqlite3"),
        ])
        self.assertEqual([key for key, _ in ordered(response.body)], SETTING_KEYS)
        # Fireworq's 26 and our 8: mysql_lock_scope, max_pending_pushes, api_tokens,
        # api_tokens_file, dispatch_allow, dispatch_deny, metrics_public, processes.
        self.assertEqual(len(SETTING_KEYS), 34)

    def test_givenValuesAndMasking(self) -> None:
        """When values are configured, they are shown as given, computed defaults resolved,
        and DSN passwords masked."""
        node = self.make_node({
            "keep_alive": "1",
            "mysql_dsn": "app:s3cr@t@tcp(db.internal:3306)/fireworq",
            "queue_mysql_dsn": "root:@tcp(127.0.0.1:3306)/fireworq",
            "repository_mysql_dsn": "app@unix(/run/mysqld/mysqld.sock)/fireworq",
            "queue_default": "default",
        })
        values = dict(ordered(node.get("/settings").body))
        self.assertEqual(values["keep_alive"], "1")
        self.assertEqual(values["dispatch_keep_alive"], "true")
        self.assertEqual(values["mysql_dsn"], "app:***@tcp(db.internal:3306)/fireworq")
        self.assertEqual(values["queue_mysql_dsn"], "root:***@tcp(127.0.0.1:3306)/fireworq")
        self.assertEqual(values["repository_mysql_dsn"],
                         "app@unix(/run/mysqld/mysqld.sock)/fireworq")
        self.assertEqual(values["queue_default"], "default")
        self.assertNotIn(b"s3cr", node.get("/settings").body)


class StatsTests(APITestCase):
    """docs/api.md, GET /stats."""

    MEMBERS = ["time", "version", "python_version", "pid", "uptime_seconds", "rss_bytes",
               "cpu_user_seconds", "cpu_system_seconds", "threads", "gc_counts", "open_fds"]

    def test_members(self) -> None:
        """When /stats is asked, the members come in order with their types."""
        self.node.clock.advance(2.5)
        response = self.node.get("/stats")
        self.assertJSONResponse(response, 200)
        self.assertNotIn(b"\n", response.body)
        members = ordered(response.body)
        self.assertEqual([k for k, _ in members], self.MEMBERS)
        values = dict(members)
        self.assertAlmostEqual(values["time"] / 1e9, START_MS / 1000 + 2.5, places=3)
        self.assertEqual(values["version"], __version__)
        self.assertEqual(values["python_version"], platform.python_version())
        self.assertEqual(values["pid"], os.getpid())
        self.assertEqual(values["uptime_seconds"], 2.5)
        self.assertIsInstance(values["rss_bytes"], int)
        self.assertIsInstance(values["threads"], int)
        self.assertEqual(len(values["gc_counts"]), 3)
        self.assertTrue(all(isinstance(c, int) for c in values["gc_counts"]))
        self.assertTrue(values["open_fds"] is None or isinstance(values["open_fds"], int))

    def test_prettyPrint(self) -> None:
        """When pp is 1 or true, this response is indented with two spaces."""
        for value in ("1", "true"):
            body = self.node.get("/stats?pp=" + value).body
            self.assertTrue(body.startswith(b'{\n  "time": '), body)
            self.assertIn(b'\n  "gc_counts": [\n    ', body)
            self.assertTrue(body.endswith(b"\n}"))
            self.assertEqual([k for k, _ in ordered(body)], self.MEMBERS)
        self.assertNotIn(b"\n", self.node.get("/stats").body)

    def test_otherPrettyPrintValues(self) -> None:
        """When pp has any other value, there is no indentation."""
        for value in ("0", "TRUE", "True", "yes", "", "2", "1 ", "t", "%31%31"):
            body = self.node.get("/stats?pp=" + value).body
            self.assertNotIn(b"\n", body, value)


class HealthTests(APITestCase):
    """docs/api.md, GET /healthz and GET /readyz."""

    def test_healthz(self) -> None:
        """When /healthz is asked, it is 200 {"status":"ok"}, even with the store down."""
        self.assertOK(self.node.get("/healthz"), {"status": "ok"})
        self.node.store.down = True
        self.assertOK(self.node.get("/healthz"), {"status": "ok"})

    def test_readyz(self) -> None:
        """When the store answers, /readyz is 200 {"status":"ok"}."""
        self.assertOK(self.node.get("/readyz"), {"status": "ok"})

    def test_readyzStoreDown(self) -> None:
        """When the store's ping fails, /readyz is 503 with Retry-After: 1."""
        self.node.store.down = True
        self.assertError(self.node.get("/readyz"), 503, "Store unavailable: connection refused")

    def test_readyzStoreSilent(self) -> None:
        """When the store does not answer within 2 seconds, /readyz is 503."""
        self.node.store.hang.add("ping")
        started = self.node.clock.seconds()
        response = self.node.get("/readyz")
        self.assertError(response, 503, "Store unavailable: no answer within 2 seconds")
        self.assertEqual(self.node.clock.seconds() - started, 2.0)
        self.node.store.hang.clear()
        self.assertOK(self.node.get("/readyz"), {"status": "ok"})


class MetricsTests(APITestCase):
    """docs/api.md, GET /metrics."""

    def scrape(self, node: ApiHarness | None = None) -> dict[str, Any]:
        response = (node or self.node).get("/metrics", headers=[("Accept", "application/json")])
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header(b"content-type"),
                         b"text/plain; version=0.0.4; charset=utf-8")
        self.assertEqual(response.header(b"content-length"), b"%d" % len(response.body))
        families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
        for family in families.values():
            for sample in family.samples:
                self.assertFalse(sample.name.endswith("_created"), sample.name)
        return families

    def samples(self, families: dict[str, Any], name: str) -> dict[tuple[Any, ...], float]:
        return {
            (s.name,) + tuple(sorted(s.labels.items())): s.value
            for s in families[name].samples
        }

    def test_noQueues(self) -> None:
        """When no queue is known, only fireworq_store_up of the fireworq families has a
        series, and it is 1."""
        families = self.scrape()
        self.assertEqual(self.samples(families, "fireworq_store_up"),
                         {("fireworq_store_up",): 1.0})
        for name, family in families.items():
            if name.startswith("fireworq_") and name != "fireworq_store_up":
                self.assertEqual(family.samples, [], name)

    def test_newQueueSeriesAtZero(self) -> None:
        """When a queue is defined, every label combination of every family has a series,
        starting at 0."""
        self.define()
        families = self.scrape()
        expected_types = {
            "fireworq_jobs_pushed": "counter", "fireworq_jobs_popped": "counter",
            "fireworq_jobs_completed": "counter", "fireworq_job_failures": "counter",
            "fireworq_delivery_duration_seconds": "histogram",
            "fireworq_job_latency_seconds": "histogram", "fireworq_queue_jobs": "gauge",
            "fireworq_queue_workers": "gauge", "fireworq_queue_active": "gauge",
            "fireworq_failed_jobs": "gauge", "fireworq_store_up": "gauge",
        }
        for name, kind in expected_types.items():
            self.assertEqual(families[name].type, kind, name)
        label = ("queue", "mail")
        self.assertEqual(self.samples(families, "fireworq_jobs_pushed"),
                         {("fireworq_jobs_pushed_total", label): 0.0})
        self.assertEqual(self.samples(families, "fireworq_jobs_popped"),
                         {("fireworq_jobs_popped_total", label): 0.0})
        self.assertEqual(self.samples(families, "fireworq_jobs_completed"), {
            ("fireworq_jobs_completed_total", ("outcome", o), label): 0.0
            for o in ("success", "permanent_failure", "failure")
        })
        self.assertEqual(self.samples(families, "fireworq_job_failures"),
                         {("fireworq_job_failures_total", label): 0.0})
        self.assertEqual(self.samples(families, "fireworq_queue_jobs"), {
            ("fireworq_queue_jobs", label, ("state", s)): 0.0
            for s in ("waiting", "deferred", "grabbed")
        })
        self.assertEqual(self.samples(families, "fireworq_queue_workers"), {
            ("fireworq_queue_workers", label, ("state", "total")): 20.0,
            ("fireworq_queue_workers", label, ("state", "idle")): 20.0,
        })
        self.assertEqual(self.samples(families, "fireworq_queue_active"),
                         {("fireworq_queue_active", label): 1.0})
        self.assertEqual(self.samples(families, "fireworq_failed_jobs"),
                         {("fireworq_failed_jobs", label): 0.0})
        delivery = self.samples(families, "fireworq_delivery_duration_seconds")
        bounds = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0",
                  "10.0", "30.0", "60.0", "120.0", "300.0", "+Inf"]
        self.assertEqual(
            sorted(k for k in delivery if k[0].endswith("_bucket")),
            sorted(("fireworq_delivery_duration_seconds_bucket", ("le", b), label)
                   for b in bounds),
        )
        self.assertTrue(all(v == 0 for v in delivery.values()))
        latency = self.samples(families, "fireworq_job_latency_seconds")
        latency_bounds = ["0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "30.0",
                          "60.0", "300.0", "900.0", "1800.0", "3600.0", "21600.0", "86400.0",
                          "+Inf"]
        self.assertEqual(
            sorted(k for k in latency if k[0].endswith("_bucket")),
            sorted(("fireworq_job_latency_seconds_bucket", ("le", b), label)
                   for b in latency_bounds),
        )

    def test_counters(self) -> None:
        """When jobs are pushed, grabbed and finished, the counters and gauges follow."""
        self.define(max_workers=2)
        self.route()
        for _ in range(3):
            self.push(max_retries=1)
        self.push(run_after=60)
        self.node.advance(0.5)
        self.node.deliverer.finish(1, SUCCESS)
        self.node.deliverer.finish(2, PERMANENT)
        self.node.advance(1.5)
        self.node.deliverer.finish(3, FAILURE)  # retried
        self.node.advance(0.25)
        self.node.deliverer.finish(3, FAILURE)  # no retry left
        self.node.advance(0.25)
        families = self.scrape()
        label = ("queue", "mail")
        self.assertEqual(self.samples(families, "fireworq_jobs_pushed"),
                         {("fireworq_jobs_pushed_total", label): 4.0})
        self.assertEqual(self.samples(families, "fireworq_jobs_popped"),
                         {("fireworq_jobs_popped_total", label): 4.0})
        self.assertEqual(self.samples(families, "fireworq_jobs_completed"), {
            ("fireworq_jobs_completed_total", ("outcome", "success"), label): 1.0,
            ("fireworq_jobs_completed_total", ("outcome", "permanent_failure"), label): 1.0,
            ("fireworq_jobs_completed_total", ("outcome", "failure"), label): 1.0,
        })
        self.assertEqual(self.samples(families, "fireworq_job_failures"),
                         {("fireworq_job_failures_total", label): 3.0})
        self.assertEqual(self.samples(families, "fireworq_queue_jobs"), {
            ("fireworq_queue_jobs", label, ("state", "waiting")): 0.0,
            ("fireworq_queue_jobs", label, ("state", "deferred")): 1.0,
            ("fireworq_queue_jobs", label, ("state", "grabbed")): 0.0,
        })
        self.assertEqual(self.samples(families, "fireworq_failed_jobs"),
                         {("fireworq_failed_jobs", label): 2.0})
        delivery = self.samples(families, "fireworq_delivery_duration_seconds")
        self.assertEqual(delivery[("fireworq_delivery_duration_seconds_count", label)], 4.0)
        latency = self.samples(families, "fireworq_job_latency_seconds")
        self.assertEqual(latency[("fireworq_job_latency_seconds_count", label)], 3.0)

    def test_storeDown(self) -> None:
        """When the store fails, the scrape is still 200, fireworq_store_up is 0 and the
        store-backed gauges are left out."""
        self.define()
        self.node.store.down = True
        families = self.scrape()
        self.assertEqual(self.samples(families, "fireworq_store_up"),
                         {("fireworq_store_up",): 0.0})
        for name in ("fireworq_queue_jobs", "fireworq_failed_jobs"):
            self.assertEqual(families.get(name) and families[name].samples or [], [], name)
        self.assertIn("fireworq_jobs_pushed", families)

    def test_storeSilent(self) -> None:
        """When the store does not answer within 2 seconds, the scrape is 200 with
        fireworq_store_up 0; the scrapes after it while that read still runs start no read
        of their own, and its answer serves the next scrape."""
        self.define()
        self.node.store.hang.add("counts")
        for _ in range(3):
            families = self.scrape()
            self.assertEqual(self.samples(families, "fireworq_store_up"),
                             {("fireworq_store_up",): 0.0})
        self.assertEqual(self.node.store.calls.count("counts"), 1)
        self.node.store.hang.clear()
        self.node.store.resume()
        families = self.scrape()
        self.assertEqual(self.samples(families, "fireworq_store_up"),
                         {("fireworq_store_up",): 1.0})
        self.assertEqual(self.node.store.calls.count("counts"), 1)

    def test_storeReadOncePerInterval(self) -> None:
        """When scrapes come more often than every 5 seconds, the store's counts are read
        once per 5 seconds and the scrapes in between show that reading."""
        self.define(max_workers=1)
        self.route()
        self.push(run_after=60)
        deferred = {("fireworq_queue_jobs", ("queue", "mail"), ("state", "deferred")): 1.0}

        def jobs() -> dict[tuple[Any, ...], float]:
            return {key: value for key, value in
                    self.samples(self.scrape(), "fireworq_queue_jobs").items() if value}

        self.assertEqual(jobs(), deferred)
        self.push(run_after=60)
        for _ in range(4):
            self.node.advance(1)
            self.assertEqual(jobs(), deferred)
        self.assertEqual(self.node.store.calls.count("counts"), 1)
        self.node.advance(1)
        self.assertEqual(jobs(), {key: 2.0 for key in deferred})
        self.assertEqual(self.node.store.calls.count("counts"), 2)

    def test_deletedQueue(self) -> None:
        """When a queue is deleted, its series disappear."""
        self.define("mail")
        self.define("other")
        self.node.delete("/queue/mail")
        families = self.scrape()
        for family in families.values():
            for sample in family.samples:
                self.assertNotEqual(sample.labels.get("queue"), "mail", sample)

    def test_processMetrics(self) -> None:
        """When scraped, the process collector's metrics are there too."""
        families = self.scrape()
        self.assertIn("process_cpu_seconds", families)

    def test_head(self) -> None:
        """When HEAD /metrics is asked, it has the GET headers and no body."""
        response = self.node.request("HEAD", "/metrics")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.header(b"content-type"),
                         b"text/plain; version=0.0.4; charset=utf-8")


class QueueDefinitionTests(APITestCase):
    """docs/api.md, Queues."""

    DEFAULT = {"name": "mail", "polling_interval": 200, "max_workers": 20}

    def test_putDefaults(self) -> None:
        """When a queue is defined with {}, the defaults are resolved and stored."""
        self.assertOK(self.node.put("/queue/mail", {}), self.DEFAULT)
        self.assertOK(self.node.get("/queue/mail"), self.DEFAULT)

    def test_putConfiguredDefaults(self) -> None:
        """When the FIREWORQ_QUEUE_DEFAULT_* settings are changed, 0 and absent resolve to
        them."""
        node = self.make_node({"queue_default_polling_interval": "777",
                               "queue_default_max_workers": "3"})
        response = node.put("/queue/mail", {"polling_interval": 0, "max_workers": 0})
        self.assertOK(response, {"name": "mail", "polling_interval": 777, "max_workers": 3})

    def test_putAllMembers(self) -> None:
        """When every member is given, they are stored; a throttled queue polls every
        100 ms whatever was given."""
        response = self.node.put("/queue/mail", {
            "max_workers": 8, "max_dispatches_per_second": 2.5, "max_burst_size": 5,
            "polling_interval": 999, "name": "ignored",
        })
        self.assertOK(response, {"name": "mail", "polling_interval": 100, "max_workers": 8,
                                 "max_dispatches_per_second": 2.5, "max_burst_size": 5})
        self.assertEqual(self.node.get("/queue/mail").body, response.body)

    def test_unthrottled(self) -> None:
        """When not throttled, the given polling interval is kept."""
        self.assertOK(self.node.put("/queue/reports", {"polling_interval": 999}),
                      {"name": "reports", "polling_interval": 999, "max_workers": 20})

    def test_rateFormat(self) -> None:
        """When the rate is integral or tiny, it is written as Go writes floats."""
        for given, written in ((b"2.0", b"2"), (b"0.00005", b"0.00005"), (b"1e-7", b"1e-07"),
                               (b"1000000", b"1000000"), (b"0.1", b"0.1"), (b"1E2", b"100")):
            response = self.node.put(
                "/queue/mail", b'{"max_dispatches_per_second":%s,"max_burst_size":1}' % given)
            self.assertJSONResponse(
                response, 200,
                b'{"name":"mail","polling_interval":100,"max_workers":20,'
                b'"max_dispatches_per_second":%s,"max_burst_size":1}' % written)

    def test_throttleRules(self) -> None:
        """When only one of rate and burst is given, it is 400 with the rule's message."""
        self.assertError(self.node.put("/queue/mail", {"max_dispatches_per_second": 2.5}), 400,
                         "Cannot configure max_dispatches_per_second without max_burst_size")
        self.assertError(
            self.node.put("/queue/mail", {"max_dispatches_per_second": 2.5,
                                          "max_burst_size": 0}), 400,
            "Cannot configure max_dispatches_per_second without max_burst_size")
        self.assertError(self.node.put("/queue/mail", {"max_burst_size": 5}), 400,
                         "Cannot configure max_burst_size without max_dispatches_per_second")
        self.assertError(
            self.node.put("/queue/mail", {"max_burst_size": 5,
                                          "max_dispatches_per_second": 0}), 400,
            "Cannot configure max_burst_size without max_dispatches_per_second")
        self.assertError(self.node.get("/queue/mail"), 404, "No such queue: mail")

    def test_ranges(self) -> None:
        """When a member is out of range or of the wrong type, it is 400 naming the field and
        its range."""
        integers = {"polling_interval": 3600000, "max_workers": 10000,
                    "max_burst_size": 1000000}
        for name, maximum in integers.items():
            message = "Field '%s' must be an integer from 0 to %d" % (name, maximum)
            extra = ',"max_dispatches_per_second":1' if name == "max_burst_size" else ""
            ok = self.node.put("/queue/mail", b'{"%s":%d%s}' % (name.encode(), maximum,
                                                                 extra.encode()))
            self.assertEqual(ok.status, 200, ok.body)
            for bad in (b"%d" % (maximum + 1), b"-1", b"1.0", b"1e3", b'"3"', b"true",
                        b"[1]", b"{}", b"1" + b"0" * 400, b"-0.0", b"false"):
                response = self.node.put("/queue/mail",
                                         b'{"%s":%s%s}' % (name.encode(), bad, extra.encode()))
                self.assertError(response, 400, message)
        message = "Field 'max_dispatches_per_second' must be a number from 0 to 1000000"
        for bad in (b"1000000.5", b"-0.1", b"1e400", b"-1e400", b'"3"', b"true", b"[1]",
                    b"1" + b"0" * 5000):
            response = self.node.put(
                "/queue/mail", b'{"max_dispatches_per_second":%s,"max_burst_size":1}' % bad)
            self.assertError(response, 400, message)

    def test_nameLength(self) -> None:
        """When the name is 46 characters it is accepted, 47 is 400; characters are code
        points."""
        self.assertEqual(self.node.put("/queue/" + "a" * 46, {}).status, 200)
        self.assertError(self.node.put("/queue/" + "a" * 47, {}), 400,
                         "Invalid queue name: must be 1 to 46 characters")
        self.assertEqual(self.node.put("/queue/" + quote("\u00e9" * 46), {}).status, 200)
        self.assertError(self.node.put("/queue/" + quote("\u00e9" * 47), {}), 400,
                         "Invalid queue name: must be 1 to 46 characters")

    def test_nameMember(self) -> None:
        """When the body has a name, it must be a string (400 otherwise, nothing stored) and
        is ignored: the path names the queue."""
        for bad in (5, True, [], {}, 1.5):
            self.assertError(self.node.put("/queue/mail", {"name": bad}), 400,
                             "Field 'name' must be a string")
        self.assertOK(self.node.get("/queues"), [])
        self.assertOK(self.node.put("/queue/mail", {"name": "other", "max_workers": 3}),
                      {"name": "mail", "polling_interval": 200, "max_workers": 3})
        self.assertOK(self.node.put("/queue/mail", {"name": None}),
                      {"name": "mail", "polling_interval": 200, "max_workers": 20})

    def test_nameCheckedFirst(self) -> None:
        """When the name is too long and the body is invalid, the name is reported."""
        self.assertError(self.node.put("/queue/" + "a" * 47, b"junk"), 400,
                         "Invalid queue name: must be 1 to 46 characters")

    def test_bodyBeforeThrottleRules(self) -> None:
        """When a member is invalid and the throttle is inconsistent, the member is
        reported."""
        self.assertError(
            self.node.put("/queue/mail", {"max_burst_size": 5, "max_workers": -1}), 400,
            "Field 'max_workers' must be an integer from 0 to 10000")

    def test_sameTablePart(self) -> None:
        """When a new name maps to the table part of another stored queue, it is 400."""
        self.define("Mail-2.eu")
        for name in ("_ail_2_eu", "Xail-2-eu", quote("\u00e0ail_2_eu")):
            self.assertError(
                self.node.put("/queue/" + name, {}), 400,
                "Queue name '%s' maps to the same tables as existing queue 'Mail-2.eu'"
                % name.replace("%C3%A0", "\u00e0"))
        self.assertEqual(self.node.put("/queue/Mail-2.eu", {"max_workers": 3}).status, 200)
        self.assertEqual(self.node.put("/queue/mail-2.eu.x", {}).status, 200)

    def test_sameTablePartUnicode(self) -> None:
        """When two names differ only in characters outside [0-9a-z_], they share a table
        part."""
        self.define(quote("\u00e9t\u00e9"))
        self.assertError(self.node.put("/queue/" + quote("\u00e0t\u00e0"), {}), 400,
                         "Queue name '\u00e0t\u00e0' maps to the same tables as existing"
                         " queue '\u00e9t\u00e9'")

    def test_concurrentSameTablePart(self) -> None:
        """When two names with one table part are defined at the same time on a slow store,
        only the first is stored."""
        self.node.store.hang.update({"list_queues", "put_queue"})
        first, second = self.node.connect(), self.node.connect()
        first.send(build_request("PUT", "/queue/Mail", b"{}"))
        second.send(build_request("PUT", "/queue/_ail", b"{}"))
        self.node.advance(0.01)
        self.node.store.resume()
        self.node.advance(0.01)
        self.node.store.hang.clear()
        self.node.store.resume()
        self.assertOK(first.response(),
                      {"name": "Mail", "polling_interval": 200, "max_workers": 20})
        self.assertError(second.response(), 400,
                         "Queue name '_ail' maps to the same tables as existing queue 'Mail'")
        self.assertEqual([d["name"] for d in self.node.get("/queues").json()], ["Mail"])

    def test_putEqual(self) -> None:
        """When a PUT repeats the stored definition, nothing changes: the counters are
        kept."""
        self.define(max_workers=4)
        self.route()
        self.push()
        revisions = self.node.store.memory._queue_revision
        self.assertOK(self.node.put("/queue/mail", {"max_workers": 4}),
                      {"name": "mail", "polling_interval": 200, "max_workers": 4})
        self.assertEqual(self.node.store.memory._queue_revision, revisions)
        self.assertEqual(self.node.get("/queue/mail/stats").json()["total_pushes"], 1)

    def test_putChange(self) -> None:
        """When a PUT changes the definition, it applies at once and the counters are kept."""
        self.define(max_workers=4)
        self.route()
        self.push()
        self.node.advance(0.1)
        self.assertOK(self.node.put("/queue/mail", {"max_workers": 9}),
                      {"name": "mail", "polling_interval": 200, "max_workers": 9})
        stats = self.node.get("/queue/mail/stats").json()
        self.assertEqual((stats["total_pushes"], stats["total_pops"], stats["total_workers"],
                          stats["idle_workers"]), (1, 1, 9, 8))

    def test_getMissing(self) -> None:
        """When no such queue is stored, GET is 404 No such queue."""
        self.assertError(self.node.get("/queue/mail"), 404, "No such queue: mail")
        self.assertError(self.node.get("/queue/" + "a" * 100), 404,
                         "No such queue: " + "a" * 100)

    def test_delete(self) -> None:
        """When a queue is deleted, the answer is the definition as it was; it is then gone
        from the store and this node, and its routings are kept."""
        self.define("reports")
        self.route("r", "reports")
        self.assertOK(self.node.delete("/queue/reports"),
                      {"name": "reports", "polling_interval": 200, "max_workers": 20})
        self.assertError(self.node.get("/queue/reports"), 404, "No such queue: reports")
        self.assertError(self.node.get("/queue/reports/stats"), 404, "No such queue: reports")
        self.assertError(self.node.delete("/queue/reports"), 404, "No such queue: reports")
        self.assertOK(self.node.get("/routings"),
                      [{"queue_name": "reports", "job_category": "r"}])
        self.assertError(self.node.post("/job/r", {"url": URL}), 404,
                         "Undefined queue: reports")

    def test_deleteKeepsJobs(self) -> None:
        """When a queue is deleted and defined again, its jobs and failure log live again."""
        self.define()
        self.route()
        self.push(run_after=60)
        self.push()
        self.node.advance(0.1)
        self.node.delete("/queue/mail")
        self.node.deliverer.finish(2, FAILURE)
        self.node.advance(0.1)
        self.define()
        waiting = self.node.get("/queue/mail/deferred").json()["jobs"]
        self.assertEqual([job["id"] for job in waiting], [1])
        failed = self.node.get("/queue/mail/failed").json()["failed_jobs"]
        self.assertEqual([f["job_id"] for f in failed], [2])

    def test_deleteDefaultQueue(self) -> None:
        """When the default queue is deleted, it is defined again with default settings
        within the refresh interval."""
        node = self.make_node({"queue_default": "default"})
        node.put("/queue/default", {"max_workers": 3})
        self.assertEqual(node.delete("/queue/default").status, 200)
        node.advance(1.0)
        self.assertOK(node.get("/queue/default"),
                      {"name": "default", "polling_interval": 200, "max_workers": 20})

    def test_listSorted(self) -> None:
        """When queues are listed, they are sorted by the bytes of their names."""
        self.assertOK(self.node.get("/queues"), [])
        for name in ("z", quote("\u00e9"), "Bx", "a", "mail"):
            self.define(name)
        self.node.put("/queue/t", {"max_dispatches_per_second": 2.5, "max_burst_size": 5})
        self.assertOK(self.node.get("/queues"), [
            {"name": "Bx", "polling_interval": 200, "max_workers": 20},
            {"name": "a", "polling_interval": 200, "max_workers": 20},
            {"name": "mail", "polling_interval": 200, "max_workers": 20},
            {"name": "t", "polling_interval": 100, "max_workers": 20,
             "max_dispatches_per_second": 2.5, "max_burst_size": 5},
            {"name": "z", "polling_interval": 200, "max_workers": 20},
            {"name": "\u00e9", "polling_interval": 200, "max_workers": 20},
        ])

    def test_escapedNames(self) -> None:
        """When a name has characters JSON escapes, they are written as docs/api.md, Responses
        says."""
        name = "a<b>&\u2028\"\\\x01\u00e9"
        self.assertJSONResponse(
            self.node.put("/queue/" + quote(name, safe=""), {}), 200,
            b'{"name":"a\\u003cb\\u003e\\u0026\\u2028\\"\\\\\\u0001\xc3\xa9",'
            b'"polling_interval":200,"max_workers":20}')

    def test_storedElsewhere(self) -> None:
        """When a queue was defined through another process of the node (docs/performance.md,
        More than one core) or another node since this one last looked, the routes of the
        queue's jobs, failure log, statistics and node find it in the store rather than
        answering 404 No such queue, and the node knows it from then on."""
        self.node.store.memory._queues["other"] = QueueDefinition("other", 300, 2)
        self.node.store.memory._queue_revision += 1
        stats = self.node.get("/queue/other/stats")
        self.assertEqual((stats.status, "total_workers" in stats.json()), (200, True))
        self.node.store.memory._queues["another"] = QueueDefinition("another", 300, 2)
        self.node.store.memory._queue_revision += 1
        self.assertNotEqual(self.node.get("/queue/another/node").json(),
                            {"error": "No such queue: another"})
        for suffix in ("/waiting", "/grabbed", "/deferred", "/failed"):
            response = self.node.get("/queue/other" + suffix)
            self.assertEqual(response.status, 200, suffix)
        self.assertError(self.node.get("/queue/other/job/1"), 404, "No such job: 1")
        self.assertError(self.node.get("/queue/other/failed/1"), 404, "No such failed job: 1")
        self.assertEqual(self.node.manager.definition("other"), QueueDefinition("other", 300, 2))
        self.assertError(self.node.get("/queue/none/failed"), 404, "No such queue: none")

    def test_refreshNow(self) -> None:
        """When another process of the node says it changed queues, they are read at once,
        not at the next refresh."""
        self.node.store.memory._queues["other"] = QueueDefinition("other", 300, 2)
        self.node.store.memory._queue_revision += 1
        Deferred.fromCoroutine(self.node.manager.refresh_now())
        self.node.advance(0)
        self.assertEqual(self.node.manager.definition("other"), QueueDefinition("other", 300, 2))

    def test_storedLongName(self) -> None:
        """When the store holds a queue with a name over 46 characters (written by
        Fireworq), it is listed, read and deleted, but not known to the node."""
        name = "q" * 50
        self.node.store.memory._queues[name] = QueueDefinition(name, 200, 20)
        self.node.store.memory._queue_revision += 1
        self.node.advance(1.0)
        self.assertEqual([d["name"] for d in self.node.get("/queues").json()], [name])
        self.assertOK(self.node.get("/queue/" + name),
                      {"name": name, "polling_interval": 200, "max_workers": 20})
        for suffix in ("/stats", "/node", "/waiting", "/failed", "/job/1", "/failed/1"):
            self.assertError(self.node.get("/queue/" + name + suffix), 404,
                             "No such queue: " + name)
        self.assertEqual(self.node.get("/queues/stats").json(), {})
        self.route("long", name)
        self.assertError(self.node.post("/job/long", {"url": URL}), 404,
                         "Undefined queue: " + name)
        self.assertEqual(self.node.delete("/queue/" + name).status, 200)


class RoutingTests(APITestCase):
    """docs/api.md, Routings."""

    def setUp(self) -> None:
        super().setUp()
        self.define()

    def test_putGetDelete(self) -> None:
        """When a routing is put, it is answered, readable, listed and deletable."""
        routing = {"queue_name": "mail", "job_category": "send_welcome"}
        self.assertOK(self.node.put("/routing/send_welcome",
                                    {"queue_name": "mail", "job_category": "ignored"}),
                      routing)
        self.assertOK(self.node.get("/routing/send_welcome"), routing)
        self.assertOK(self.node.get("/routings"), [routing])
        self.assertOK(self.node.put("/routing/send_welcome", {"queue_name": "mail"}), routing)
        self.assertOK(self.node.delete("/routing/send_welcome"), routing)
        self.assertError(self.node.get("/routing/send_welcome"), 404,
                         "No such routing: send_welcome")
        self.assertError(self.node.delete("/routing/send_welcome"), 404,
                         "No such routing: send_welcome")
        self.assertOK(self.node.get("/routings"), [])

    def test_listSorted(self) -> None:
        """When routings are listed, they are sorted by queue name, then category (bytes)."""
        self.define("a")
        for category, queue_name in (("z", "a"), ("b", "mail"), ("\u00e9", "a"), ("A", "a"),
                                     ("a", "mail")):
            self.route(quote(category), queue_name)
        self.assertOK(self.node.get("/routings"), [
            {"queue_name": "a", "job_category": "A"},
            {"queue_name": "a", "job_category": "z"},
            {"queue_name": "a", "job_category": "\u00e9"},
            {"queue_name": "mail", "job_category": "a"},
            {"queue_name": "mail", "job_category": "b"},
        ])

    def test_categoryWithSlashes(self) -> None:
        """When the category contains '/' or ends with '/', it is part of the category."""
        for category in ("billing/invoice", "foo/", "a/b/c/", "a%2Fb"):
            decoded = category.replace("%2F", "/")
            routing = {"queue_name": "mail", "job_category": decoded}
            self.assertOK(self.node.put("/routing/" + category, {"queue_name": "mail"}),
                          routing)
            self.assertOK(self.node.get("/routing/" + category), routing)
        self.assertError(self.node.get("/routing/foo"), 404, "No such routing: foo")

    def test_categoryLength(self) -> None:
        """When the category is 255 bytes it is accepted, 256 is 400 (bytes of UTF-8)."""
        self.assertEqual(self.node.put("/routing/" + "a" * 255,
                                       {"queue_name": "mail"}).status, 200)
        self.assertError(self.node.put("/routing/" + "a" * 256, {"queue_name": "mail"}), 400,
                         "Invalid job category: must be 1 to 255 bytes")
        self.assertEqual(self.node.put("/routing/" + quote("\u00e9" * 127) + "a",
                                       {"queue_name": "mail"}).status, 200)
        self.assertError(self.node.put("/routing/" + quote("\u00e9" * 128),
                                       {"queue_name": "mail"}), 400,
                         "Invalid job category: must be 1 to 255 bytes")

    def test_categoryCheckedFirst(self) -> None:
        """When the category is too long and the body is invalid, the category is
        reported."""
        self.assertError(self.node.put("/routing/" + "a" * 256, b"junk"), 400,
                         "Invalid job category: must be 1 to 255 bytes")

    def test_missingQueueName(self) -> None:
        """When queue_name is absent, null or empty, it is 400 Missing field."""
        for body in ({}, {"queue_name": None}, {"queue_name": ""},
                     {"job_category": "x"}):
            self.assertError(self.node.put("/routing/c", body), 400,
                             "Missing field: queue_name")

    def test_nonStrings(self) -> None:
        """When queue_name or job_category is not a string, it is 400."""
        for value in (1, True, [], {}, 1.5):
            self.assertError(self.node.put("/routing/c", {"queue_name": value}), 400,
                             "Field 'queue_name' must be a string")
            self.assertError(self.node.put("/routing/c", {"queue_name": "mail",
                                                          "job_category": value}), 400,
                             "Field 'job_category' must be a string")

    def test_unknownQueue(self) -> None:
        """When the queue is not defined, it is 404 No such queue."""
        self.assertError(self.node.put("/routing/c", {"queue_name": "nope"}), 404,
                         "No such queue: nope")
        self.assertOK(self.node.get("/routings"), [])

    def test_bodyErrors(self) -> None:
        """When the body is not a JSON object, it is 400 with the 1.1 message."""
        self.assertError(self.node.put("/routing/c", b"null"), 400,
                         "Request body must be a JSON object")
        self.assertError(self.node.put("/routing/c", b""), 400,
                         "Request body is empty; a JSON object is expected")


class PushTests(APITestCase):
    """docs/api.md, POST /job and Payloads."""

    def setUp(self) -> None:
        super().setUp()
        self.define()
        self.route()

    def post(self, body: Any, category: str = "send_welcome") -> RawResponse:
        return self.node.post("/job/" + category, body)

    def test_accepted(self) -> None:
        """When a job is pushed, the answer is the job as accepted, members in order."""
        response = self.post(
            b'{"url":"http://worker.internal:8000/send","payload":{"user": 42, "lang": "ja"},'
            b'"run_after":0,"max_retries":3,"retry_delay":30,"timeout":10}')
        self.assertJSONResponse(
            response, 200,
            b'{"id":1,"queue_name":"mail","category":"send_welcome",'
            b'"url":"http://worker.internal:8000/send","payload":{"user":42,"lang":"ja"},'
            b'"run_after":0,"timeout":10,"retry_delay":30,"max_retries":3}')
        self.assertEqual(self.push()["id"], 2)

    def test_storeSilent(self) -> None:
        """When the store does not take a push within 5 seconds, the push is 503 "not
        stored", and its job is never stored, not even when the store goes on later."""
        self.node.store.hang.add("push")
        started = self.node.clock.seconds()
        response = self.post({"url": URL})
        self.assertError(response, 503, NOT_STORED)
        self.assertEqual(self.node.clock.seconds() - started, 5.0)
        self.node.store.hang.clear()
        self.node.store.resume()
        self.node.advance(0)
        self.assertError(self.node.get("/queue/mail/job/1"), 404, "No such job: 1")
        self.assertEqual(self.push()["id"], 1)

    def test_storeSilentWhileWaiting(self) -> None:
        """When a push waits behind a store call that does not answer, it is 503 "not
        stored" after 5 seconds and never stored."""
        self.node.store.hang.add("push")
        first = self.node.connect()
        first.send(build_request("POST", "/job/send_welcome",
                                 json.dumps({"url": URL}).encode()))
        self.node.advance(1)
        second = self.node.connect()
        second.send(build_request("POST", "/job/send_welcome",
                                  json.dumps({"url": URL, "payload": "second"}).encode()))
        self.assertError(first.response(), 503, NOT_STORED)
        self.assertError(second.response(), 503, NOT_STORED)
        self.node.store.hang.clear()
        self.node.store.resume()
        self.node.advance(0)
        self.assertEqual(self.node.get("/queue/mail/waiting").json()["jobs"], [])
        self.assertEqual(self.push()["id"], 1)

    def test_storeSilentAfterSending(self) -> None:
        """When the store took a push's job and then does not answer within 5 seconds, the
        push is 503 with the message that it may have been stored (and it may be)."""
        gate: Deferred[None] = Deferred()
        memory = self.node.store.memory
        store_now = memory.push

        async def sent_then_silent(jobs: Any, handover: Any = None) -> Any:
            taken = handover.take()
            await gate
            return await store_now(jobs, Taken(taken))

        memory.push = sent_then_silent  # type: ignore[method-assign]
        response = self.post({"url": URL})
        self.assertError(response, 503,
                         "Store unavailable: outcome unknown, the job may have been stored")
        gate.callback(None)
        self.node.advance(0)
        self.assertEqual(self.node.get("/queue/mail/job/1").status, 200)

    def test_pendingLimit(self) -> None:
        """When max_pending_pushes pushes wait for the store, the next push is 503 at once,
        and is not stored; once the store answers, pushes are taken again."""
        node = self.make_node({"max_pending_pushes": "2", "queue_default": "mail"})
        node.store.hang.add("push")
        waiting = []
        for _ in range(2):
            waiting.append(node.connect())
            waiting[-1].send(build_request("POST", "/job/c",
                                           json.dumps({"url": URL}).encode()))
        node.advance(0.5)
        started = node.clock.seconds()
        response = node.post("/job/c", {"url": URL, "payload": "third"})
        self.assertError(response, 503, "Store unavailable: 2 pushes already wait for the"
                                         " store; the job was not stored")
        self.assertEqual(node.clock.seconds(), started)
        for connection in waiting:
            self.assertError(connection.response(), 503, NOT_STORED)
        node.store.hang.clear()
        node.store.resume()
        self.assertEqual(node.push("c")["id"], 1)

    def test_defaults(self) -> None:
        """When only url is given, the numbers are 0 and payload is null."""
        self.assertOK(self.post({"url": URL}), {
            "id": 1, "queue_name": "mail", "category": "send_welcome", "url": URL,
            "payload": None, "run_after": 0, "timeout": 0, "retry_delay": 0,
            "max_retries": 0,
        })

    def test_storedClaimed(self) -> None:
        """When a job is pushed, it is stored as claimed, due at push time + run_after."""
        self.push(run_after=90, max_retries=2, retry_delay=5, timeout=7, payload="x")
        self.assertOK(self.node.get("/queue/mail/job/1"), {
            "id": 1, "category": "send_welcome", "url": URL, "payload": "x",
            "status": "claimed", "created_at": "2024-11-28T10:40:00.25Z",
            "next_try": "2024-11-28T10:41:30.25Z", "timeout": 7, "fail_count": 0,
            "max_retries": 2, "retry_delay": 5,
        })

    def test_payloadEcho(self) -> None:
        """When a payload is pushed, the answer echoes it compacted, as received
        (docs/api.md, Payloads)."""
        cases = [
            (b'{"a": 1.50, "b" : [ 1e3 , "x y" ] }', b'{"a":1.50,"b":[1e3,"x y"]}'),
            (b'"hello \\"x\\""', b'"hello \\"x\\""'),
            (b'"123"', b'"123"'),
            (b'"<&>"', b'"\\u003c\\u0026\\u003e"'),
            (b'"\xe2\x80\xa8\xc3\xa9"', b'"\\u2028\xc3\xa9"'),
            (b'"\\u00e9\\n"', b'"\\u00e9\\n"'),
            (b'"\\ud800"', b'"\\ud800"'),
            (b"null", b"null"),
            (b"12345678901234567890123", b"12345678901234567890123"),
            (b"-0.0E+00", b"-0.0E+00"),
            (b'{"k":1,"k":2}', b'{"k":1,"k":2}'),
            (b"[]", b"[]"),
            (b"true", b"true"),
            (b'""', b'""'),
        ]
        for given, echoed in cases:
            response = self.post(b'{"url":"%s","payload": %s }' % (URL.encode(), given))
            self.assertEqual(response.status, 200, response.body)
            self.assertIn(b',"payload":%s,"run_after":' % echoed, response.body)
        response = self.post(b'{"url":"%s"}' % URL.encode())
        self.assertIn(b',"payload":null,', response.body)

    def test_payloadReread(self) -> None:
        """When a pushed job is inspected, its payload is the stored payload re-read."""
        cases = [
            (b'{"a": 1.50}', b'{"a":1.50}'),
            (b'"plain text"', b'"plain text"'),
            (b'"123"', b"123"),
            (b'"{\\"a\\":1}"', b'{"a":1}'),
            (b'"  [1, 2] "', b"[1,2]"),
            (b'"\\ud800"', b'"\xef\xbf\xbd"'),
            (b'"<x>"', b'"\\u003cx\\u003e"'),
            (b'"NaN"', b'"NaN"'),
            (b"null", b'""'),
        ]
        for number, (given, shown) in enumerate(cases, 1):
            self.post(b'{"url":"%s","payload":%s,"run_after":100}' % (URL.encode(), given))
            job = self.node.get("/queue/mail/job/%d" % number).body
            self.assertIn(b',"payload":%s,"status":' % shown, job)
        self.post(b'{"url":"%s","run_after":100}' % URL.encode())
        job = self.node.get("/queue/mail/job/%d" % (len(cases) + 1)).body
        self.assertIn(b',"payload":"","status":', job)

    def test_storedPayloadDelivered(self) -> None:
        """When a job is delivered, the worker gets the stored payload (docs/api.md, Payloads)."""
        self.post(b'{"url":"%s","payload": {"a": 1.50} }' % URL.encode())
        self.post(b'{"url":"%s","payload":"hello \\"x\\""}' % URL.encode())
        self.post(b'{"url":"%s"}' % URL.encode())
        self.node.advance(0.1)
        self.assertEqual([job.payload for job in self.node.deliverer.delivered],
                         [b'{"a": 1.50}', b'hello "x"', b""])

    def test_missingUrl(self) -> None:
        """When url is absent, null or empty, it is 400 Missing field: url."""
        for body in ({}, {"url": None}, {"url": ""}, {"URL": URL}):
            self.assertError(self.post(body), 400, "Missing field: url")

    def test_urlNotString(self) -> None:
        """When url is not a string, it is 400 Field 'url' must be a string."""
        for value in (1, [], {}, True):
            self.assertError(self.post({"url": value}), 400, "Field 'url' must be a string")

    def test_invalidUrls(self) -> None:
        """When url is not an absolute http(s) URL of printable ASCII, it is 400."""
        for url in ("ftp://h/", "http://", "http:///x", "http://h:0", "http://h:65536",
                    "http://h:99999999999999999999", "http://h:-1/", "http://h:/",
                    "http://h:8a/", "http://h\u00e9/", "http://h/\u00e9", "http://h/a b",
                    "http://h/\t", "//h/x", "h/x", "/x", "http:/h", "http:h", "mailto:a@b",
                    "http://[::1/x", "http://::1/x", "http://[zz]/", "http://[::1]x/",
                    "http://u@/", "http://u:p@", "https://:80/", " http://h/",
                    "http://h/" + "a" * 65527):
            self.assertError(self.post({"url": url}), 400,
                             "Invalid url: must be an absolute http or https URL")

    def test_validUrls(self) -> None:
        """When url is an absolute http(s) URL, it is accepted as given."""
        for url in ("http://h", "https://h/", "HTTP://h/x", "hTTpS://h:443/x?y=1#z",
                    "http://h:1", "http://h:65535/", "http://[::1]:80/x", "http://[::1]/",
                    "http://10.0.0.1:8000/send", "http://u:p@h/", "http://u@h:1/",
                    "http://h/%e3%81%82", "http://h/" + "a" * 65526, "http://h?q", "http://h#f",
                    "http://h/~!$&'()*+,;=:@"):
            response = self.post({"url": url})
            self.assertEqual(response.status, 200, (url[:50], response.body))
            self.assertEqual(response.json()["url"], url)

    def test_integerFields(self) -> None:
        """When a numeric field is not an integer in its range, it is 400 naming it."""
        ranges = {"run_after": 315360000, "max_retries": 1000000, "retry_delay": 31536000,
                  "timeout": 86400}
        for name, maximum in ranges.items():
            message = "Field '%s' must be an integer from 0 to %d" % (name, maximum)
            for bad in (b"%d" % (maximum + 1), b"-1", b"1.0", b"1e3", b'"3"', b"true", b"[1]",
                        b"9" * 5000):
                response = self.post(b'{"url":"%s","%s":%s}' % (URL.encode(), name.encode(),
                                                                bad))
                self.assertError(response, 400, message)
            response = self.post(b'{"url":"%s","%s":%d}' % (URL.encode(), name.encode(),
                                                            maximum))
            self.assertEqual(response.status, 200)
            self.assertEqual(response.json()[name], maximum)

    def test_categoryField(self) -> None:
        """When category is in the body, it must be a string and is ignored."""
        self.assertError(self.post({"url": URL, "category": 1}), 400,
                         "Field 'category' must be a string")
        self.assertEqual(self.post({"url": URL, "category": "other"}).json()["category"],
                         "send_welcome")

    def test_orderOfChecks(self) -> None:
        """When several things are wrong, the category is reported first, then the body
        fields, then the missing url, then its form."""
        self.assertError(self.node.post("/job/" + "a" * 256, b"junk"), 400,
                         "Invalid job category: must be 1 to 255 bytes")
        self.assertError(self.post({"timeout": -1}), 400,
                         "Field 'timeout' must be an integer from 0 to 86400")
        self.assertError(self.post({"url": "ftp://x", "timeout": -1}), 400,
                         "Field 'timeout' must be an integer from 0 to 86400")
        self.assertError(self.post({"url": 5, "timeout": -1}), 400,
                         "Field 'url' must be a string")
        self.assertError(self.post({"url": "ftp://x"}, category="unrouted"), 400,
                         "Invalid url: must be an absolute http or https URL")

    def test_categoryLength(self) -> None:
        """When the category is 255 bytes it is pushed, 256 is 400."""
        self.route("a" * 255)
        self.assertEqual(self.post({"url": URL}, category="a" * 255).status, 200)
        self.assertError(self.post({"url": URL}, category="a" * 256), 400,
                         "Invalid job category: must be 1 to 255 bytes")

    def test_categoryWithSlash(self) -> None:
        """When the category has '/' or a trailing '/', it is routed as such."""
        self.route("billing/invoice")
        self.route("foo/")
        self.assertEqual(self.post({"url": URL}, "billing/invoice").json()["category"],
                         "billing/invoice")
        self.assertEqual(self.post({"url": URL}, "foo/").json()["category"], "foo/")
        self.assertError(self.post({"url": URL}, "foo"), 404,
                         "No routing of job category 'foo' exists")

    def test_noRouting(self) -> None:
        """When there is no routing and no default queue, it is 404 No routing."""
        self.assertError(self.post({"url": URL}, "unrouted"), 404,
                         "No routing of job category 'unrouted' exists")

    def test_routingFromStore(self) -> None:
        """When the routing exists only in the store (made by another node), the node
        re-reads it and uses it."""
        self.node.store.memory._routings["elsewhere"] = Routing("mail", "elsewhere")
        self.assertEqual(self.post({"url": URL}, "elsewhere").json()["queue_name"], "mail")

    def test_queueFromStore(self) -> None:
        """When the routed queue is not known to this node but is stored, it is loaded and
        used."""
        self.node.store.memory._queues["other"] = QueueDefinition("other", 300, 2)
        self.node.store.memory._routings["o"] = Routing("other", "o")
        self.assertEqual(self.post({"url": URL}, "o").json()["queue_name"], "other")
        self.assertEqual(self.node.get("/queue/other/stats").status, 200)

    def test_undefinedQueue(self) -> None:
        """When the routing names a queue that is not defined, it is 404 Undefined queue."""
        self.define("gone")
        self.route("c", "gone")
        self.node.delete("/queue/gone")
        self.assertError(self.post({"url": URL}, "c"), 404, "Undefined queue: gone")

    def test_defaultQueue(self) -> None:
        """When there is no routing and a default queue is configured, the job goes there;
        a routing still wins."""
        node = self.make_node({"queue_default": "default"})
        self.assertEqual(node.post("/job/any", {"url": URL}).json()["queue_name"], "default")
        node.put("/queue/mail", {})
        node.put("/routing/r", {"queue_name": "mail"})
        self.assertEqual(node.post("/job/r", {"url": URL}).json()["queue_name"], "mail")
        node.delete("/routing/r")
        self.assertEqual(node.post("/job/r", {"url": URL}).json()["queue_name"], "default")

    def test_deletedDefaultQueue(self) -> None:
        """When the default queue has been deleted, a push without routing is 404
        Undefined queue."""
        node = self.make_node({"queue_default": "default"})
        node.delete("/queue/default")
        self.assertError(node.post("/job/any", {"url": URL}), 404, "Undefined queue: default")

    def test_idsPerQueue(self) -> None:
        """When jobs are pushed to two queues, ids grow per queue."""
        self.define("other")
        self.route("o", "other")
        self.assertEqual([self.push()["id"], self.push("o")["id"], self.push()["id"],
                          self.push("o")["id"]], [1, 1, 2, 2])


class InspectionTests(APITestCase):
    """docs/api.md, Inspecting jobs and Lists and cursors."""

    def setUp(self) -> None:
        super().setUp()
        self.define(max_workers=2)
        self.route()

    def push_many(self) -> None:
        """Jobs 1 and 3 grabbed, 5 and 6 waiting, 2 and 4 deferred."""
        for n in range(6):
            self.push(payload={"n": n + 1}, run_after=60 * (n % 2 == 1 and n < 4))
            self.node.advance(0.25)
        self.node.advance(0.5)

    def ids(self, path: str) -> list[int]:
        response = self.node.get(path)
        self.assertEqual(response.status, 200, response.body)
        return [job["id"] for job in response.json()["jobs"]]

    def test_lists(self) -> None:
        """When the lists are asked, each holds the jobs of its state, latest next_try
        first by default."""
        self.push_many()
        self.assertEqual(self.ids("/queue/mail/grabbed"), [3, 1])
        self.assertEqual(self.ids("/queue/mail/waiting"), [6, 5])
        self.assertEqual(self.ids("/queue/mail/deferred"), [4, 2])
        self.assertEqual(self.ids("/queue/mail/grabbed?order=asc"), [1, 3])
        self.assertEqual(self.ids("/queue/mail/waiting?order=asc"), [5, 6])
        self.assertEqual(self.ids("/queue/mail/deferred?order=desc"), [4, 2])

    def test_jobShape(self) -> None:
        """When a list is asked, each job has the inspected-job members in order."""
        self.push(payload={"user": 43}, run_after=60, max_retries=3, retry_delay=30,
                  timeout=10)
        response = self.node.get("/queue/mail/deferred")
        self.assertOK(response, {"jobs": [{
            "id": 1, "category": "send_welcome", "url": URL, "payload": {"user": 43},
            "status": "claimed", "created_at": "2024-11-28T10:40:00.25Z",
            "next_try": "2024-11-28T10:41:00.25Z", "timeout": 10, "fail_count": 0,
            "max_retries": 3, "retry_delay": 30,
        }], "next_cursor": ""})
        self.assertEqual([k for k, _ in ordered(response.body)[0][1][0]], JOB_MEMBERS)

    def test_grabbedStatus(self) -> None:
        """When a job is being delivered, it is listed and shown as grabbed."""
        self.push()
        self.node.advance(0.1)
        self.assertEqual(self.node.get("/queue/mail/job/1").json()["status"], "grabbed")
        self.assertEqual(self.ids("/queue/mail/grabbed"), [1])

    def test_localTimeZone(self) -> None:
        """When TZ is Asia/Tokyo, times are rendered with +09:00."""
        os.environ["TZ"] = "Asia/Tokyo"
        time.tzset()
        self.push(run_after=60)
        job = self.node.get("/queue/mail/job/1").json()
        self.assertEqual(job["created_at"], "2024-11-28T19:40:00.25+09:00")
        self.assertEqual(job["next_try"], "2024-11-28T19:41:00.25+09:00")

    def test_pages(self) -> None:
        """When a list is longer than limit, next_cursor names the first job of the next
        page, and following it walks the whole list once."""
        for n in range(7):
            self.push(run_after=100 + (n % 3))
        expected = [f"{t},{i}" for t, i in sorted(
            ((START_MS + (100 + n % 3) * 1000, n + 1) for n in range(7)), reverse=True)]
        for order, items in (("desc", expected), ("asc", expected[::-1])):
            seen: list[int] = []
            cursor = ""
            while True:
                response = self.node.get(
                    "/queue/mail/deferred?order=%s&limit=3&cursor=%s" % (order, q(cursor)))
                page = response.json()
                seen += [job["id"] for job in page["jobs"]]
                cursor = page["next_cursor"]
                if not cursor:
                    break
                next_item = items[len(seen)]
                self.assertEqual(base64.b64decode(cursor).decode(), next_item)
            self.assertEqual(seen, [int(item.split(",")[1]) for item in items])

    def test_cursorExample(self) -> None:
        """When the page has one more item, the cursor is base64 of <next_try ms>,<id>."""
        self.push(run_after=10)
        self.push(run_after=20)
        page = self.node.get("/queue/mail/deferred?limit=1").json()
        self.assertEqual(page["next_cursor"], cursor_of(START_MS + 10000, 1))
        self.assertEqual([job["id"] for job in page["jobs"]], [2])

    def test_cursorPosition(self) -> None:
        """When a cursor is given, the page starts at that pair (inclusive) in the order."""
        for _ in range(4):
            self.push(run_after=10)
        t = START_MS + 10000
        self.assertEqual(self.ids("/queue/mail/deferred?cursor=" + q(cursor_of(t, 3))),
                         [3, 2, 1])
        self.assertEqual(
            self.ids("/queue/mail/deferred?order=asc&cursor=" + q(cursor_of(t, 3))), [3, 4])
        self.assertEqual(
            self.ids("/queue/mail/deferred?order=asc&cursor=" + q(cursor_of(t + 1, 0))), [])
        self.assertEqual(self.ids("/queue/mail/deferred?cursor=" + q(cursor_of(t - 1, 99))),
                         [])
        unescaped = "/queue/mail/deferred?cursor=" + cursor_of(t, 2)
        self.assertEqual(self.ids(unescaped), [2, 1])

    def test_orderValidation(self) -> None:
        """When order is not asc or desc (case-sensitive), it is 400."""
        for value in ("ASC", "Desc", "failed", "x", "asc%00"):
            for state in ("grabbed", "waiting", "deferred"):
                self.assertError(self.node.get("/queue/mail/%s?order=%s" % (state, value)),
                                 400, "Invalid order: must be asc or desc")

    def test_limitValidation(self) -> None:
        """When limit is not 1 to 1000 in decimal digits, it is 400."""
        for value in ("0", "1001", "-1", "+5", "1.0", "1e2", "abc", "%201", "99999999999999999999",
                      "%EF%BC%91"):
            self.assertError(self.node.get("/queue/mail/waiting?limit=" + value), 400,
                             "Invalid limit: must be an integer from 1 to 1000")
        for value in ("1", "1000", "0010"):
            self.assertEqual(self.node.get("/queue/mail/waiting?limit=" + value).status, 200)

    def test_cursorValidation(self) -> None:
        """When cursor does not decode to <t>,<i> within the limits, it is 400."""
        bad = [
            "abc", "MTczMjc5MDQ2MDAxMiwxOA", "MTczMjc5MDQ2MDAxMiwxOA=",
            base64.urlsafe_b64encode(b"1,1").decode() + "!",
            base64.b64encode(b"1,2,3").decode(), base64.b64encode(b"-1,2").decode(),
            base64.b64encode(b" 1,2").decode(), base64.b64encode(b"1,").decode(),
            base64.b64encode(b",1").decode(), base64.b64encode(b"1;1").decode(),
            base64.b64encode(b"9223372036854775808,1").decode(),
            base64.b64encode(b"12345678901234567890,1").decode(),
            base64.b64encode(b"1,18446744073709551616").decode(),
            base64.b64encode(b"1,123456789012345678901").decode(),
            base64.b64encode(b"1,1\n").decode(), base64.b64encode(b"\xff").decode(),
            "MTcz MjE=", "%ff", "====",
        ]
        for value in bad:
            for state in ("waiting", "grabbed"):
                self.assertError(
                    self.node.get("/queue/mail/%s?cursor=%s" % (state, q(value))), 400,
                    "Invalid cursor")
        for text in (b"9223372036854775807,18446744073709551615", b"0,0",
                     b"0000000000000000001,00000000000000000001"):
            value = base64.b64encode(text).decode()
            self.assertEqual(
                self.node.get("/queue/mail/waiting?cursor=" + q(value)).status, 200, text)

    def test_orderOfQueryChecks(self) -> None:
        """When several parameters are invalid, order is reported, then limit, then cursor,
        all before an unknown queue."""
        self.assertError(self.node.get("/queue/mail/waiting?cursor=x&limit=0&order=x"), 400,
                         "Invalid order: must be asc or desc")
        self.assertError(self.node.get("/queue/mail/waiting?cursor=x&limit=0"), 400,
                         "Invalid limit: must be an integer from 1 to 1000")
        self.assertError(self.node.get("/queue/nope/waiting?cursor=x"), 400, "Invalid cursor")
        self.assertError(self.node.get("/queue/nope/waiting"), 404, "No such queue: nope")

    def test_unknownQueue(self) -> None:
        """When the queue is not known, every inspection endpoint is 404 No such queue."""
        for path in ("grabbed", "waiting", "deferred", "job/1", "failed", "failed/1", "stats",
                     "node"):
            self.assertError(self.node.get("/queue/nope/" + path), 404, "No such queue: nope")
        for path in ("job/1", "failed/1"):
            self.assertError(self.node.delete("/queue/nope/" + path), 404,
                             "No such queue: nope")

    def test_getJob(self) -> None:
        """When a job is asked by id, it is the inspected job; a missing one is 404."""
        self.push(payload={"user": 42, "lang": "ja"}, max_retries=3, retry_delay=30,
                  timeout=10, run_after=5)
        self.assertOK(self.node.get("/queue/mail/job/1"), {
            "id": 1, "category": "send_welcome", "url": URL,
            "payload": {"user": 42, "lang": "ja"}, "status": "claimed",
            "created_at": "2024-11-28T10:40:00.25Z", "next_try": "2024-11-28T10:40:05.25Z",
            "timeout": 10, "fail_count": 0, "max_retries": 3, "retry_delay": 30,
        })
        self.assertError(self.node.get("/queue/mail/job/2"), 404, "No such job: 2")
        self.assertError(self.node.get("/queue/mail/job/0"), 404, "No such job: 0")
        self.assertError(self.node.get("/queue/mail/job/007"), 404, "No such job: 7")
        self.assertEqual(self.node.get("/queue/mail/job/0001").status, 200)

    def test_invalidJobIds(self) -> None:
        """When the id is not decimal digits or too large, it is 400 Invalid job id, before
        the queue is looked up."""
        for value in ("-1", "1.0", "9223372036854775808", "abc", "+1", "1e3", "%201",
                      "99999999999999999999999999", "%EF%BC%91"):
            shown = value.replace("%20", " ").replace("%EF%BC%91", "\uff11")
            for method in ("GET", "DELETE"):
                self.assertError(self.node.request(method, "/queue/mail/job/" + value), 400,
                                 "Invalid job id: " + shown)
                self.assertError(self.node.request(method, "/queue/nope/job/" + value), 400,
                                 "Invalid job id: " + shown)
        self.assertError(self.node.get("/queue/mail/job/9223372036854775807"), 404,
                         "No such job: 9223372036854775807")

    def test_deleteJob(self) -> None:
        """When a job is deleted, the answer is the job as it was, and it is gone."""
        self.push(run_after=60)
        before = self.node.get("/queue/mail/job/1").body
        response = self.node.delete("/queue/mail/job/1")
        self.assertJSONResponse(response, 200, before)
        self.assertError(self.node.get("/queue/mail/job/1"), 404, "No such job: 1")
        self.assertError(self.node.delete("/queue/mail/job/1"), 404, "No such job: 1")

    def test_deleteGrabbedJob(self) -> None:
        """When a job being delivered is deleted, its outcome is not written: no retry, no
        failure-log entry."""
        self.push(max_retries=0)
        self.node.advance(0.1)
        self.assertEqual(self.node.delete("/queue/mail/job/1").json()["status"], "grabbed")
        self.node.deliverer.finish(1, FAILURE)
        self.node.advance(0.1)
        self.assertError(self.node.get("/queue/mail/job/1"), 404, "No such job: 1")
        self.assertOK(self.node.get("/queue/mail/failed"),
                      {"failed_jobs": [], "next_cursor": ""})
        self.assertEqual(self.node.get("/queue/mail/stats").json()["total_completes"], 1)

    def test_retriedJob(self) -> None:
        """When an attempt fails with retries left, the job is claimed again with
        fail_count 1, next_try after retry_delay, and max_retries unchanged."""
        self.push(max_retries=2, retry_delay=30)
        self.node.advance(0.25)
        self.node.deliverer.finish(1, FAILURE)
        self.node.advance(0.25)
        job = self.node.get("/queue/mail/job/1").json()
        self.assertEqual((job["status"], job["fail_count"], job["max_retries"], job["next_try"]),
                         ("claimed", 1, 2, "2024-11-28T10:40:30.5Z"))
        self.assertEqual(self.ids("/queue/mail/deferred"), [1])


class FailureLogTests(APITestCase):
    """docs/api.md, Failure log."""

    def setUp(self) -> None:
        super().setUp()
        self.define(max_workers=10)
        self.route()

    def fail_jobs(self, count: int) -> None:
        """Push C{count} jobs a second apart, then fail them in reverse order."""
        for n in range(count):
            self.push(payload={"n": n + 1})
            self.node.advance(1.0)
        for job_id in range(count, 0, -1):
            self.node.deliverer.finish(job_id, PERMANENT if job_id % 2 else FAILURE)
            self.node.advance(0.5)

    def test_entry(self) -> None:
        """When a job finishes failed, its failure-log entry has the members in order."""
        self.push(payload={"user": 44}, max_retries=1, retry_delay=2)
        self.node.advance(0.25)
        self.node.deliverer.finish(1, FAILURE)
        self.node.advance(2.25)
        message = "Cannot parse body as JSON\nOriginal response body:\n<html>Bad</html>"
        self.node.deliverer.finish(1, WorkerResult("failure", 502, message))
        self.node.advance(0.25)
        response = self.node.get("/queue/mail/failed")
        entry = {
            "id": 1, "job_id": 1, "category": "send_welcome", "url": URL,
            "payload": {"user": 44},
            "result": {"status": "failure", "code": 502, "message": message},
            "fail_count": 2, "failed_at": "2024-11-28T10:40:02.75Z",
            "created_at": "2024-11-28T10:40:00.25Z",
        }
        self.assertOK(response, {"failed_jobs": [entry], "next_cursor": ""})
        self.assertIn(b"\\u003chtml\\u003eBad\\u003c/html\\u003e", response.body)
        self.assertEqual([k for k, _ in ordered(response.body)[0][1][0]], FAILED_MEMBERS)
        self.assertOK(self.node.get("/queue/mail/failed/1"), entry)
        self.assertOK(self.node.delete("/queue/mail/failed/1"), entry)
        self.assertError(self.node.get("/queue/mail/failed/1"), 404, "No such failed job: 1")
        self.assertError(self.node.delete("/queue/mail/failed/1"), 404,
                         "No such failed job: 1")

    def test_orders(self) -> None:
        """When order is failed, the latest failure comes first; with created, the latest
        pushed."""
        self.fail_jobs(3)
        by_failed = self.node.get("/queue/mail/failed").json()["failed_jobs"]
        self.assertEqual([f["job_id"] for f in by_failed], [1, 2, 3])
        by_created = self.node.get("/queue/mail/failed?order=created").json()["failed_jobs"]
        self.assertEqual([f["job_id"] for f in by_created], [3, 2, 1])
        self.assertEqual([f["result"]["status"] for f in by_created],
                         ["permanent-failure", "failure", "permanent-failure"])

    def test_pages(self) -> None:
        """When the log is longer than limit, the cursor carries the sort time in use."""
        self.fail_jobs(3)
        page = self.node.get("/queue/mail/failed?limit=2").json()
        third = page["next_cursor"]
        # The first failure written (job 3's, id 1) is the last one by failed_at.
        self.assertEqual(base64.b64decode(third).decode(), "%d,1" % (START_MS + 3000))
        rest = self.node.get("/queue/mail/failed?limit=2&cursor=" + q(third)).json()
        self.assertEqual([f["job_id"] for f in rest["failed_jobs"]], [3])
        self.assertEqual(rest["next_cursor"], "")
        page = self.node.get("/queue/mail/failed?order=created&limit=2").json()
        self.assertEqual(base64.b64decode(page["next_cursor"]).decode(), "%d,3" % START_MS)
        rest = self.node.get("/queue/mail/failed?order=created&limit=2&cursor="
                             + q(page["next_cursor"])).json()
        self.assertEqual([f["job_id"] for f in rest["failed_jobs"]], [1])

    def test_validation(self) -> None:
        """When order, limit or cursor is invalid, it is 400 with its message."""
        for value in ("asc", "desc", "FAILED", "x"):
            self.assertError(self.node.get("/queue/mail/failed?order=" + value), 400,
                             "Invalid order: must be failed or created")
        self.assertError(self.node.get("/queue/mail/failed?limit=0"), 400,
                         "Invalid limit: must be an integer from 1 to 1000")
        self.assertError(self.node.get("/queue/mail/failed?cursor=x"), 400, "Invalid cursor")
        self.assertError(self.node.get("/queue/nope/failed?order=x"), 400,
                         "Invalid order: must be failed or created")

    def test_invalidIds(self) -> None:
        """When the failure id is not decimal digits or too large, it is 400."""
        for value in ("-1", "1.0", "9223372036854775808", "x"):
            for method in ("GET", "DELETE"):
                self.assertError(self.node.request(method, "/queue/mail/failed/" + value),
                                 400, "Invalid failure id: " + value)
        self.assertError(self.node.get("/queue/mail/failed/5"), 404, "No such failed job: 5")

    def test_permanentFailureWithRetriesLeft(self) -> None:
        """When the worker answers permanent-failure, the job fails at once."""
        self.push(max_retries=5)
        self.node.advance(0.25)
        self.node.deliverer.finish(1, PERMANENT)
        self.node.advance(0.25)
        entry = self.node.get("/queue/mail/failed/1").json()
        self.assertEqual((entry["fail_count"], entry["result"]["code"]), (1, 400))


class QueueStatsTests(APITestCase):
    """docs/api.md, GET /queue/{q}/node, GET /queue/{q}/stats, Queue stats object."""

    def test_newQueue(self) -> None:
        """When a queue has just been defined, its stats are zero but the workers."""
        self.define(max_workers=8)
        response = self.node.get("/queue/mail/stats")
        self.assertOK(response, {
            "total_pushes": 0, "total_pops": 0, "total_successes": 0, "total_failures": 0,
            "total_permanent_failures": 0, "total_completes": 0, "total_elapsed": 0,
            "pushes_per_second": 0, "pops_per_second": 0, "outstanding_jobs": 0,
            "total_workers": 8, "idle_workers": 8, "active_nodes": 1,
        })
        self.assertEqual([k for k, _ in ordered(response.body)], STATS_MEMBERS)

    def test_counters(self) -> None:
        """When jobs are pushed and finished, the counters follow docs/api.md, Queue stats
        object."""
        self.define(max_workers=3)
        self.route()
        self.push()
        self.push(max_retries=1)
        self.push()
        self.node.advance(0.25)
        stats = self.node.get("/queue/mail/stats").json()
        self.assertEqual((stats["total_pushes"], stats["total_pops"], stats["idle_workers"],
                          stats["pushes_per_second"], stats["pops_per_second"]),
                         (3, 3, 0, 3, 3))
        self.node.deliverer.finish(1, SUCCESS)
        self.node.deliverer.finish(2, FAILURE)
        self.node.deliverer.finish(3, PERMANENT)
        self.node.advance(1.25)
        self.node.deliverer.finish(2, SUCCESS)
        self.node.advance(0.5)
        self.assertOK(self.node.get("/queue/mail/stats"), {
            "total_pushes": 3, "total_pops": 4, "total_successes": 2, "total_failures": 2,
            "total_permanent_failures": 1, "total_completes": 3,
            "total_elapsed": 250 + 250 + 1500, "pushes_per_second": 0, "pops_per_second": 0,
            "outstanding_jobs": 0, "total_workers": 3, "idle_workers": 3, "active_nodes": 1,
        })

    def test_outstandingJobs(self) -> None:
        """When a throttled queue's grabbed jobs wait for a token, they are outstanding."""
        self.node.put("/queue/mail", {"max_workers": 5, "max_dispatches_per_second": 1,
                                      "max_burst_size": 1})
        self.route()
        for _ in range(3):
            self.push()
        self.node.clock.advance(0)
        self.node.advance(0.05)
        stats = self.node.get("/queue/mail/stats").json()
        self.assertEqual((stats["outstanding_jobs"], stats["idle_workers"]), (2, 2))

    def test_allQueues(self) -> None:
        """When /queues/stats is asked, it maps every known queue, in byte order, to its
        stats; {} when there is none."""
        self.assertOK(self.node.get("/queues/stats"), {})
        for name in ("z", quote("\u00e9"), "Bx", "a"):
            self.define(name)
        response = self.node.get("/queues/stats")
        self.assertJSONResponse(response, 200)
        members = ordered(response.body)
        self.assertEqual([name for name, _ in members], ["Bx", "a", "z", "\u00e9"])
        for _, stats in members:
            self.assertEqual([k for k, _ in stats], STATS_MEMBERS)

    def test_queuesStatsWithoutStore(self) -> None:
        """When the store is down, /queues/stats and /queue/{q}/stats still answer."""
        self.define()
        self.node.store.down = True
        self.assertEqual(list(self.node.get("/queues/stats").json()), ["mail"])
        self.assertEqual(self.node.get("/queue/mail/stats").status, 200)

    def test_node(self) -> None:
        """When the node of an in-memory queue is asked, it is this process."""
        self.define()
        self.assertOK(self.node.get("/queue/mail/node"),
                      {"id": str(os.getpid()), "host": socket.gethostname()})
        self.assertError(self.node.get("/queue/nope/node"), 404, "No such queue: nope")

    def test_nodeWhileTakeOverFails(self) -> None:
        """When this node holds a queue's lock but cannot take the queue over (recovering
        its orphan jobs fails), the node answer says so with C{state} and C{error}, and the
        node keeps trying: once recovery works, the answer is C{id} and C{host} alone again
        and the queue's jobs are delivered (issue 8 item 4)."""
        self.node.store.failing["recover"] = 6
        self.define()
        self.route()
        pushed = self.push()
        this = {"id": str(os.getpid()), "host": socket.gethostname()}
        self.assertOK(self.node.get("/queue/mail/node"), {
            **this, "state": "retrying", "error": "recover: lock wait timeout"})
        self.assertEqual(self.node.deliverer.delivered, [])
        self.node.advance(300)
        self.assertOK(self.node.get("/queue/mail/node"), this)
        self.assertEqual([job.id for job in self.node.deliverer.delivered], [pushed["id"]])
        self.assertEqual(self.node.store.failing["recover"], 0)
        self.node.deliverer.finish_all(SUCCESS)

    def test_noActiveNode(self) -> None:
        """When no node holds the queue (possible with sqlite and mysql), it is 404 No node
        is active for this queue."""
        self.define()

        async def nobody(queue_name: str) -> None:
            return None

        self.patch(self.node.ownership, "node", nobody)
        self.assertError(self.node.get("/queue/mail/node"), 404,
                         "No node is active for this queue")


class StoreUnavailableTests(APITestCase):
    """docs/api.md, Errors: 503 with Retry-After: 1 wherever the store is needed and does not
    answer."""

    def setUp(self) -> None:
        super().setUp()
        self.define()
        self.route()
        self.push(run_after=60)

    def test_everyStoreEndpoint(self) -> None:
        """When the store is down, every "Store: yes" endpoint is 503."""
        self.node.store.down = True
        for method, path, body in STORE_ENDPOINTS:
            response = self.node.request(method, path, body)
            self.assertError(response, 503, "Store unavailable: connection refused")
            if method == "GET":
                head = self.node.request("HEAD", path)
                self.assertEqual((head.status, head.header(b"retry-after"), head.body),
                                 (503, b"1", b""))

    def test_validationFirst(self) -> None:
        """When the request is invalid and the store is down, the 400 comes first."""
        self.node.store.down = True
        self.assertError(self.node.put("/queue/mail", {"max_workers": -1}), 400,
                         "Field 'max_workers' must be an integer from 0 to 10000")
        self.assertError(self.node.put("/routing/c", {}), 400, "Missing field: queue_name")
        self.assertError(self.node.post("/job/c", {"url": "ftp://x"}), 400,
                         "Invalid url: must be an absolute http or https URL")
        self.assertError(self.node.get("/queue/mail/waiting?limit=0"), 400,
                         "Invalid limit: must be an integer from 1 to 1000")
        self.assertError(self.node.get("/queue/mail/job/x"), 400, "Invalid job id: x")

    def test_unknownQueueNeedsTheStore(self) -> None:
        """When the queue is not known to this node and the store does not answer, it is
        503: another node or process may have defined it since the last refresh."""
        self.node.store.down = True
        self.assertError(self.node.get("/queue/nope/waiting"), 503,
                         "Store unavailable: connection refused")

    def test_recovers(self) -> None:
        """When the store is back, the endpoints answer again."""
        self.node.store.down = True
        self.assertEqual(self.node.get("/queues").status, 503)
        self.node.store.down = False
        self.assertEqual(self.node.get("/queues").status, 200)
        self.assertEqual(self.push()["id"], 2)

    def test_storeSilent(self) -> None:
        """When the store hangs, a waiting request is answered once the store answers."""
        self.node.store.hang.add("list_queues")
        connection = self.node.connect()
        connection.send(build_request("GET", "/queues"))
        self.node.advance(0.5)
        self.assertEqual(connection.transport.value(), b"")
        self.node.store.hang.clear()
        self.node.store.release()
        response = connection.response()
        self.assertError(response, 503, "Store unavailable: released")
        connection.close()


class UnusualRequestTests(APITestCase):
    """Requests a client rarely sends must still get the answers of docs/api.md, Errors."""

    def test_hostNotUTF8(self) -> None:
        """When the Host header is not UTF-8, routing is unaffected."""
        response = self.node.send(build_request("GET", "/queues", host=b"\xff\xfe"))
        self.assertOK(response, [])

    def test_hostNotIDNA(self) -> None:
        """When the Host header is no valid IDNA name (empty label, label over 63
        characters), routing is unaffected."""
        for host in (b"a..b", b".", b"a" * 64, b"\xc3\xa9" * 70, b"\xef\xbf\xbf:80"):
            response = self.node.send(build_request("GET", "/queues", host=host))
            self.assertOK(response, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_noHost(self) -> None:
        """When there is no Host header, the request is answered."""
        response = self.node.send(build_request("GET", "/queues", host=None,
                                                version=b"HTTP/1.0"))
        self.assertOK(response, [])

    def test_asteriskTarget(self) -> None:
        """When the request target is '*', it is a path no route matches: 404 in JSON."""
        for method in ("OPTIONS", "GET"):
            response = self.node.request(method, "*")
            self.assertError(response, 404, "No such endpoint: *")
            self.assertIsNone(response.header(b"allow"))

    def test_expectContinue(self) -> None:
        """When the client expects 100-continue, the final answer is the usual one."""
        response = self.node.put("/queue/mail", {}, headers=[("Expect", "100-continue")])
        self.assertOK(response, {"name": "mail", "polling_interval": 200, "max_workers": 20})

    def test_unexpectedStoreError(self) -> None:
        """When the store fails in an unexpected way, it is 500 with the fixed message and
        the failure is logged, not shown."""
        self.node.store.broken.add("list_queues")
        response = self.node.get("/queues")
        self.assertError(response, 500, "Unexpected server error; details are in the error log")
        self.assertNotIn(b"fire", response.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_resourceFailure(self) -> None:
        """When rendering fails outside the routes' error handling, it is still a JSON 500."""
        class Broken(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                raise RuntimeError("broken resource")

        self.node.site.resource = Broken()
        response = self.node.get("/queues")
        self.assertError(response, 500, "Unexpected server error; details are in the error log")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
