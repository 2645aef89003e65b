"""Property tests of the whole HTTP API (docs/api.md, Conventions): arbitrary, syntactically
valid HTTP/1.1 requests to every route never get a 500, a traceback or an error that is not the
JSON of docs/api.md, Errors, and the node keeps answering.

Requests go over raw HTTP into the real site of an in-memory node (L{apptools.ApiHarness}).
Every example gets a node of its own, with queues, routings, jobs and failure-log entries
already there (L{fixture_node}), so that an example (and the one hypothesis shrinks it to)
does the same whatever ran before it.
"""

from __future__ import annotations

import base64
import itertools
import json
import string
from typing import Any, Callable, Coroutine
from urllib.parse import quote, quote_from_bytes, unquote

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from apptools import (
    FAILURE,
    PERMANENT,
    SUCCESS,
    ApiHarness,
    RawResponse,
    build_request,
    utc,
)

from fireworq.model import NewJob, Routing

REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
MAX_BODY = 20000
#: Some examples run on a node with API tokens and destination checks (docs/api.md,
#: Authentication; docs/configuration.md, Delivery to workers).
SECURED = {"api_tokens": "r3ad:read,pu5h:push,adm1n:admin",
           "dispatch_deny": "127.0.0.0/8,::1,169.254.0.0/16,evil.test",
           "dispatch_allow": "127.0.0.5"}
ADMIN_TOKEN = "adm1n"

#: Every route of docs/api.md, Routes and its methods.
ROUTES = {
    "/": "GET HEAD", "/version": "GET HEAD", "/settings": "GET HEAD", "/stats": "GET HEAD",
    "/healthz": "GET HEAD", "/readyz": "GET HEAD", "/metrics": "GET HEAD",
    "/openapi.json": "GET HEAD",
    "/queues": "GET HEAD", "/queues/stats": "GET HEAD", "/queue/{q}": "GET HEAD PUT DELETE",
    "/queue/{q}/node": "GET HEAD", "/queue/{q}/stats": "GET HEAD",
    "/queue/{q}/grabbed": "GET HEAD", "/queue/{q}/waiting": "GET HEAD",
    "/queue/{q}/deferred": "GET HEAD", "/queue/{q}/job/{id}": "GET HEAD DELETE",
    "/queue/{q}/failed": "GET HEAD DELETE", "/queue/{q}/failed/{id}": "GET HEAD DELETE",
    "/queue/{q}/failed/{id}/retry": "POST", "/queue/{q}/failed/retry": "POST",
    "/queue/{q}/pause": "POST", "/queue/{q}/resume": "POST",
    "/routings": "GET HEAD", "/routing/{c}": "GET HEAD PUT DELETE", "/job/{c}": "POST",
    "/jobs/{c}": "POST",
    # The console's files (docs/console.md).
    "/console": "GET HEAD", "/console/{f}": "GET HEAD",
}
CONSOLE_FILES = ["", "index.html", "app.js", "console.css", "__init__.py", "static"]
TOKEN_CHARS = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits

# Names that exist on the node (defined in setUp), so deeper code paths are reached.
KNOWN_QUEUES = ["mail", "t", "Mail-2.eu"]
THROTTLES = {"t": (5.0, 2)}
KNOWN_CATEGORIES = ["send_welcome", "billing/invoice", "foo/"]

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
other_methods = st.sampled_from(["GET", "HEAD", "PUT", "DELETE", "POST", "PATCH",
                                 "OPTIONS"]) | tokens


segment_texts = st.one_of(
    st.text(max_size=20).map(lambda t: quote(t, safe="")),
    st.text(max_size=20).map(lambda t: quote(t, safe="/")),
    st.binary(max_size=20).map(lambda b: quote_from_bytes(b, safe="")),
    st.text(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@", max_size=20),
    st.sampled_from(["", ".", "..", "%00", "%ff", "%2F", "%2f", "%2e", "%2e%2e", "%c3",
                     "%ED%A0%80", "a%2F..%2Fb", "/", "//", "a/", "%25", "%", "%zz"]),
    st.integers(min_value=1, max_value=300).map(lambda n: "a" * n),
    st.integers(min_value=1, max_value=130).map(lambda n: "%C3%A9" * n),
)
queue_names = st.one_of(st.sampled_from(KNOWN_QUEUES), st.sampled_from(KNOWN_QUEUES),
                        segment_texts)
ids = st.one_of(
    st.integers(min_value=0, max_value=8).map(str),
    st.integers(min_value=-5, max_value=2**70).map(str),
    st.sampled_from(["0", "1", "2", "007", "9223372036854775807", "9223372036854775808",
                     "1.0", "1e3", "+1", "-1", "%31", "%EF%BC%91"]),
    segment_texts,
)
categories = st.one_of(st.sampled_from(KNOWN_CATEGORIES), st.sampled_from(KNOWN_CATEGORIES),
                       segment_texts)


@st.composite
def targets(draw: st.DrawFn) -> tuple[str, str]:
    """A method and a path: mostly one the route accepts, sometimes any other."""
    template = draw(st.sampled_from(sorted(ROUTES)))
    if draw(st.integers(0, 3)):
        method = draw(st.sampled_from(ROUTES[template].split()))
    else:
        method = draw(other_methods)
    return method, draw(paths(template))


@st.composite
def paths(draw: st.DrawFn, template: str) -> str:
    path = template.replace("{q}", draw(queue_names)).replace("{id}", draw(ids))
    path = path.replace("{c}", draw(categories))
    path = path.replace("{f}", draw(st.sampled_from(CONSOLE_FILES) | segment_texts))
    if draw(st.integers(0, 9)) == 0:
        path += draw(st.sampled_from(["/", "//", "/x", "/.", "/..", "%2F"]))
    if draw(st.integers(0, 19)) == 0:
        path = path.replace("/", draw(st.sampled_from(["//", "/./", "/%2e/"])), 1)
    return path


query_keys = st.sampled_from(["order", "limit", "cursor", "pp", "ORDER", "x", ""]) | st.text(
    max_size=5).map(lambda t: quote(t, safe=""))
query_values = st.one_of(
    st.sampled_from(["asc", "desc", "failed", "created", "1", "true", "0", "1000", "1001",
                     "", "+", "%2B", "MTczMjc5MDQ2MDAxMiwxOA==", "MTczMjc5MDQ2MDAxMiwxOA%3D%3D",
                     "%ff", "%00", "-1", "1e2", "99999999999999999999999"]),
    st.text(max_size=30).map(lambda t: quote(t, safe="")),
    st.binary(max_size=30).map(lambda b: quote_from_bytes(b, safe="")),
    st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode()),
    st.tuples(st.integers(0, 2**64), st.integers(0, 2**65)).map(
        lambda p: base64.b64encode(b"%d,%d" % p).decode()),
    st.text("0123456789", max_size=25),
)


@st.composite
def queries(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(query_keys, query_values), max_size=5))
    if not pairs and draw(st.booleans()):
        return ""
    separator = draw(st.sampled_from(["&", "&", "&", ";"]))
    parts = []
    for key, value in pairs:
        parts.append(key if draw(st.integers(0, 9)) == 0 else "%s=%s" % (key, value))
    return "?" + separator.join(parts)


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["http://worker.internal:8000/send", "https://h/", "ftp://x", "http://",
                     "http://h:0", "http://[::1]:80/x", "mail", "t", "", "send_welcome",
                     "http://127.0.0.1/x", "http://127.0.0.5/", "http://[::ffff:127.0.0.1]/",
                     "http://EVIL.test./", "http://u:p@169.254.169.254:80/"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
FIELDS = ["url", "payload", "run_after", "max_retries", "retry_delay", "timeout", "category",
          "queue_name", "job_category", "name", "polling_interval", "max_workers",
          "max_dispatches_per_second", "max_burst_size", "failed_job_ttl", "failed_job_limit",
          "failed_after", "failed_before", "limit", "unique_key", "unique_window", "jobs",
          "retry_backoff", "retry_max_delay", "retry_jitter", "result_mode", "headers",
          "signing_secrets"]
field_values = st.one_of(
    json_values,
    st.integers(min_value=0, max_value=20),
    st.sampled_from(["http://worker.internal:8000/send", "mail", "t", "default",
                     "send_welcome", "2024-11-28T10:40:00Z", "2024-11-28T19:40:00.25+09:00",
                     "9999-12-31T23:59:59.999999999-23:59", "0000-01-01T00:00:00Z",
                     "2024-02-30T00:00:00Z", "2024-11-28T10:40:00", 10000, 10001, 315360000,
                     100000001, 31536000, 31536001, "k" * 255, "k" * 256]),
)
# A batch push's jobs (docs/api.md, POST /jobs): job objects, and what is none.
batch_jobs = st.lists(st.one_of(
    st.fixed_dictionaries(
        {"url": st.sampled_from(["http://worker.internal:8000/send", "ftp://x"])},
        optional={name: field_values for name in ("payload", "run_after", "unique_key",
                                                  "timeout", "category")}),
    json_values,
), max_size=5)
objects = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_values, max_size=6),
    st.fixed_dictionaries(
        {"url": st.sampled_from(["http://worker.internal:8000/send", "https://h:1/x?y#z"]),
         "queue_name": st.sampled_from(["mail", "t", "nope"])},
        optional={name: field_values for name in FIELDS if name not in ("url", "queue_name")},
    ),
    st.fixed_dictionaries({"jobs": batch_jobs}),
)
bodies = st.one_of(
    st.none(),
    objects.map(lambda o: json.dumps(o).encode()),
    objects.map(lambda o: json.dumps(o, ensure_ascii=False).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(min_value=1, max_value=700).map(lambda n: b'{"a":' + b"[" * n + b"]" * n + b"}"),
    st.integers(min_value=1, max_value=700).map(lambda n: b"[" * n),
    st.integers(min_value=300, max_value=6000).map(lambda n: b'{"max_workers":1' + b"0" * n
                                                   + b"}"),
    st.sampled_from([b"", b" ", b"null", b"NaN", b'{"url":NaN}', b"{} x", b"\xff\xfe",
                     b'{"url":"http://h/","payload":"\\ud800"}',
                     b'{"url":"http://h/","unique_key":"\\ud800"}',
                     b'{"jobs":[{"url":"http://h/","unique_key":"\\udfff"}]}',
                     b'{"a":"\xed\xa0\x80"}',
                     b'{"max_dispatches_per_second":1e400,"max_burst_size":1}']),
    st.integers(min_value=MAX_BODY - 2, max_value=MAX_BODY + 2).map(lambda n: b" " * n),
    # Batch pushes at the limit of 1000 jobs, within the body limit.
    st.integers(999, 1001).map(lambda n: b'{"jobs":[%s]}' % b",".join(
        [b'{"url":"http://h"}'] * n)),
)
header_names = tokens.filter(
    lambda n: n.lower() not in ("content-length", "transfer-encoding", "host"))
header_values = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip())
headers = st.lists(
    st.tuples(header_names | st.sampled_from(["Content-Type", "Accept", "Connection",
                                              "Expect", "User-Agent", "Idempotency-Key"]),
              header_values | st.sampled_from([b"application/json",
                                               b"application/x-www-form-urlencoded",
                                               b"order-42", b"\xff",
                                               b"multipart/form-data; boundary=x",
                                               b"100-continue", b"keep-alive", b"close"])),
    max_size=4,
)
authorizations = st.one_of(
    st.none(), st.sampled_from([b"Bearer r3ad", b"Bearer pu5h", b"Bearer adm1n", b"bearer adm1n",
                                b"Bearer", b"Bearer ", b"Basic adm1n", b"Bearer adm1n x",
                                b"Bearer \xff"]),
    header_values, header_values.map(lambda v: b"Bearer " + v),
)
# The delivery policy members (docs/api.md, Delivery policy).
VALID_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
REDACTED_SECRET = "whsec_\u2026(redacted)"
delivery_header_objects = st.dictionaries(
    st.text(max_size=12) | tokens | st.sampled_from(
        ["Host", "X-Tenant", "Fireworq-Job-Id", "webhook-id", "Proxy-Authorization",
         "Authorization", "Content-Type", "TE", "x-tenant"]),
    st.text(max_size=20) | st.sampled_from(["a\r\nb", "\x00", "v" * 5000]) | json_scalars,
    max_size=40)
secret_lists = st.lists(
    st.sampled_from([VALID_SECRET, REDACTED_SECRET, "whsec_", ""]) | st.text(max_size=10)
    | st.binary(max_size=80).map(lambda b: "whsec_" + base64.b64encode(b).decode()),
    max_size=5)
policy_members = st.fixed_dictionaries({}, optional={
    "retry_backoff": st.sampled_from(["fixed", "exponential", "linear", ""]) | json_scalars,
    "retry_max_delay": st.integers(-1, 31536001) | json_scalars,
    "retry_jitter": st.booleans() | json_scalars,
    "result_mode": st.sampled_from(["fireworq", "webhook", "json"]) | json_scalars,
    "headers": delivery_header_objects | json_values,
    "signing_secrets": secret_lists | json_values,
})
hosts = st.one_of(st.just(b"fireworq.test"), header_values, st.none(),
                  st.sampled_from([b"a..b", b"a" * 70, b"[::1]:8080", b"\xff"]))


def answers_to(body: Any) -> tuple[int, ...]:
    """The statuses a definition or push of ``body`` (sent as the harness sends it) may
    get: 413 alone when it is over ``max_request_body`` (docs/api.md, Errors)."""
    if len(json.dumps(body, separators=(",", ":")).encode("utf-8")) > MAX_BODY:
        return (413,)
    return (200, 400)


def fixture_node(secured: bool = False) -> ApiHarness:
    """A node with the known queues and routings, jobs waiting, deferred and in the failure
    log. Built through the queue manager: it is made for every example, and HTTP requests
    would cost twice the time. ``secured``: with API tokens and destination checks (the
    harness's own requests then carry the admin token)."""
    node = ApiHarness({"max_request_body": str(MAX_BODY), "queue_default": "default",
                       **(SECURED if secured else {})})
    node.token = ADMIN_TOKEN if secured else None
    results = itertools.cycle([SUCCESS, FAILURE, PERMANENT])
    node.deliverer.script = lambda job: next(results)
    manager = node.manager

    def run(coroutine: Coroutine[Any, Any, Any]) -> None:
        done = Deferred.fromCoroutine(coroutine)
        node.advance(0)
        done.addErrback(lambda f: f.raiseException())  # fails here, not at garbage collection

    for name in KNOWN_QUEUES:
        run(manager.put_queue(manager.resolve(name, 0, 0, *THROTTLES.get(name, (0.0, 0)))))
    for category in KNOWN_CATEGORIES:
        run(manager.put_routing(Routing("mail", category)))
    def job(n: int) -> NewJob:
        return NewJob("send_welcome", "http://worker.internal:8000/send", b'{"n":%d}' % n,
                      run_after=3600 * (n % 4 == 3), max_retries=n % 2, retry_delay=0,
                      timeout=0)

    for n in range(8):
        run(manager.push("send_welcome", job(n)))
    run(node.store.push([("t", job(n)) for n in range(8)]))  # throttled: some stay grabbed
    node.advance(0.5)  # delivered once: successes, retries and failure-log entries
    return node


class APIFuzzTests(SynchronousTestCase):
    """A node per example; see the module docstring."""

    def setUp(self) -> None:
        self.addCleanup(utc())

    def run_example(self, example: Callable[[], None], secured: bool = False) -> None:
        self.node = fixture_node(secured)
        try:
            example()
        finally:
            self.node.stop()

    def check(self, response: RawResponse, head: bool, page: bool = False) -> None:
        """``page``: the answer may be one of the console's files (HTML among them)."""
        body = response.body
        self.assertNotEqual(response.status, 500, response.raw[:2000])
        self.assertLess(response.status, 600)
        # Python's own marker and HTML tags: an error message may echo the request's path, so a
        # bare word such as "traceback" in it proves nothing (JSON writes "<" as \u003c).
        self.assertNotIn(b"most recent call last", body.lower())
        if not (page and response.status == 200):
            self.assertNotIn(b"<html", body.lower())
        self.assertEqual(self.flushLoggedErrors(), [])
        if not head:
            self.assertEqual(response.header(b"content-length"), b"%d" % len(body),
                             response.raw[:2000])
        if response.status >= 400:
            self.assertIn(response.status, REASONS, response.raw[:2000])
            self.assertEqual(response.header(b"content-type"), b"application/json")
            if not head:
                members = json.loads(body, object_pairs_hook=list)
                self.assertEqual([k for k, _ in members], ["code", "error", "message"],
                                 response.raw[:2000])
                values = dict(members)
                self.assertEqual(values["code"], response.status)
                self.assertEqual(values["error"], REASONS[response.status])
                self.assertIsInstance(values["message"], str)
        if response.status == 405:
            self.assertIsNotNone(response.header(b"allow"))
        if response.status == 503:
            self.assertEqual(response.header(b"retry-after"), b"1")
        self.assertEqual(response.header(b"connection"), b"close")

    def still_answers(self) -> None:
        """The node answers, and so does every queue it knows (an example may have deleted
        or defined some)."""
        self.node.store.down = False
        response = self.node.get("/healthz")
        self.assertEqual((response.status, response.body), (200, b'{"status":"ok"}'))
        response = self.node.get("/queues/stats")
        self.assertEqual(response.status, 200)
        for name in response.json():
            stats = self.node.get("/queue/%s/stats" % quote(name, safe=""))
            self.assertEqual(stats.status, 200, name)

    def test_examplesIndependent(self) -> None:
        """When an example deletes a queue of the fixture, the next example has it again."""
        def delete_mail() -> None:
            self.assertEqual(self.node.delete("/queue/mail").status, 200)
            self.still_answers()

        def push_to_mail() -> None:
            self.assertEqual(self.node.push("send_welcome")["queue_name"], "mail")

        self.run_example(delete_mail)
        self.run_example(push_to_mail)

    @settings(max_examples=400, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(target=targets(), query=queries(), body=bodies, extra=headers,
           chunked=st.booleans(), chunk_size=st.integers(1, 5000), host=hosts,
           store_down=st.integers(0, 9).map(lambda n: n == 0), elapse=st.sampled_from(
               [0, 0, 0, 0.1, 1.5]), secured=st.integers(0, 3).map(lambda n: n == 0),
           authorization=authorizations)
    @example(target=("DELETE", "/queue/mail"), query="", body=None, extra=[], chunked=False,
             chunk_size=1, host=b"fireworq.test", store_down=False, elapse=0, secured=False,
             authorization=None)
    @example(target=("GET", "/%63onsole/"), query="", body=None, extra=[], chunked=False,
             chunk_size=1, host=b"fireworq.test", store_down=False, elapse=0, secured=False,
             authorization=None)
    @example(target=("GET", "//routing/TRACEBACK/"), query="", body=None, extra=[],
             chunked=False, chunk_size=1, host=b"fireworq.test", store_down=True, elapse=0,
             secured=False, authorization=None)
    @example(target=("POST", "/job/send_welcome"), query="",
             body=b'{"url":"http://127.0.0.1/x"}', extra=[], chunked=False, chunk_size=1,
             host=b"fireworq.test", store_down=False, elapse=0, secured=True,
             authorization=b"Bearer pu5h")
    def test_anyRequest(self, target: tuple[str, str], query: str, body: bytes | None,
                        extra: list[tuple[str, bytes]], chunked: bool, chunk_size: int,
                        host: bytes | None, store_down: bool, elapse: float, secured: bool,
                        authorization: bytes | None) -> None:
        """When any valid HTTP/1.1 request comes to any route, the answer is never a 500 or a
        traceback, every error is the JSON of docs/api.md, Errors, and the node keeps answering
        (also with API tokens and destination checks on, whatever Authorization is sent)."""
        method, path = target
        if authorization is not None:
            extra = [*extra, ("Authorization", authorization)]

        def example() -> None:
            self.node.store.down = store_down
            raw = build_request(method, path + query, body, extra, chunked=chunked,
                                chunk_size=chunk_size, host=host)
            head = method == "HEAD"
            response = self.node.send(raw, head=head)
            # Paths are percent-decoded before routing: /%63onsole/ is the console's page.
            self.check(response, head, page=unquote(path).startswith("/console/"))
            if body is not None and len(body) > MAX_BODY:
                self.assertEqual(response.status, 413)
            self.node.store.down = False
            if elapse:
                self.node.advance(elapse)
            self.still_answers()

        self.run_example(example, secured)

    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(category=categories, body=objects, raw_payload=st.one_of(
        st.none(), json_values.map(lambda v: json.dumps(v, indent=1).encode()),
        st.sampled_from([b'"\\ud800"', b'"\\u0000<>&\\u2028"', b"1" + b"0" * 400,
                         b"-0.0e-0", b'"  {\\"a\\": 1} "', b'""', b'"NaN"'])),
           secured=st.integers(0, 3).map(lambda n: n == 0))
    def test_pushes(self, category: str, body: dict[str, Any], raw_payload: bytes | None,
                    secured: bool) -> None:
        """When arbitrary pushes are made, each answer is 200, 400 or 404 (with a push token
        when tokens are on), and every accepted job can then be inspected and deleted."""
        if raw_payload is not None:
            body = dict(body, payload="__PAYLOAD__")
        text = json.dumps(body).encode()
        if raw_payload is not None:
            text = text.replace(b'"__PAYLOAD__"', raw_payload)

        def example() -> None:
            extra = [("Authorization", "Bearer pu5h")] if secured else []
            response = self.node.send(build_request("POST", "/job/" + category, text, extra))
            self.check(response, False)
            self.assertIn(response.status, (200, 400, 404), response.body)
            if response.status == 200:
                accepted = response.json()
                job = self.node.get("/queue/%s/job/%d" % (
                    quote(accepted["queue_name"], safe=""), accepted["id"]))
                self.check(job, False)
                self.assertIn(job.status, (200, 404))
                if job.status == 200:
                    self.assertEqual(job.json()["url"], accepted["url"])
                self.node.advance(0.25)
            self.still_answers()

        self.run_example(example, secured)

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(queue_members=policy_members, job_members=policy_members,
           queue_name=st.sampled_from(KNOWN_QUEUES))
    @example(queue_members={}, job_members={"headers": {c: "v" * 5000 for c in "abcd"}},
             queue_name="mail")
    def test_deliveryPolicyMembers(self, queue_members: dict[str, Any],
                                   job_members: dict[str, Any], queue_name: str) -> None:
        """When a queue is defined and a job pushed with arbitrary delivery policy members,
        each answer is 200 or 400 (413 over the body limit), a stored secret is never
        shown, and the job is delivered (docs/api.md, Delivery policy)."""
        def example() -> None:
            path = "/queue/" + quote(queue_name, safe="")
            response = self.node.put(path, queue_members)
            self.check(response, False)
            self.assertIn(response.status, answers_to(queue_members), response.body)
            shown = self.node.get(path)
            self.check(shown, False)
            self.assertNotIn(VALID_SECRET.encode(), response.body + shown.body)
            job = {"url": "http://worker.internal:8000/send", **job_members}
            pushed = self.node.post("/job/send_welcome", job)
            self.check(pushed, False)
            self.assertIn(pushed.status, answers_to(job), pushed.body)
            self.node.advance(0.25)
            self.still_answers()

        self.run_example(example)
