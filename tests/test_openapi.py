"""The OpenAPI document (docs/api.md, OpenAPI document): complete, valid, served, and true.

* Complete: every route and method of the app's route table is in the document, and the
  document has nothing else, so a route added without its entry fails here.
* Valid: ``openapi-spec-validator`` accepts it as OpenAPI 3.1.
* Served: ``GET /openapi.json`` answers it as JSON, takes only GET and HEAD, and is logged.
* True: schemathesis (its engine, as its command line runs it: the examples, coverage,
  fuzzing and stateful phases, the last following the document's links) sends requests made
  from the document to a live daemon on each driver, the state-changing routes included, and
  checks every answer against the document: no 5xx, the status codes, content types, headers
  and bodies it states, the 405 and ``Allow`` of the methods it does not list, that what it
  calls invalid is refused and what it calls valid is taken (but for what JSON Schema cannot
  state, ``UNSTATED_RULES``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any

import requests
import schemathesis
from openapi_spec_validator import validate as validate_spec
from schemathesis.engine import Status, StopReason, events
from schemathesis.engine import from_schema as engine_for
from schemathesis.openapi.checks import RejectedPositiveData
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

import mysqltools
from apptools import ApiHarness
from e2e import ApiClient, eventually, reactor
from proctools import LISTENING, Child, daemon_argv

from fireworq.access import is_public
from fireworq.api.app import FireworqAPI
from fireworq.api.openapi import document

#: Examples schemathesis generates per operation in its fuzzing phase (the examples and
#: coverage phases make as many as the document calls for). With 10 and about 65 operations,
#: this file took 69 s of wall time and 53 s of CPU (daemons included) on a 2-core machine
#: with a load of 4 to 5 from other work; about 14 s of that is the first run's set-up.
#: FIREWORQ_TEST_SCHEMATHESIS_EXAMPLES sets another number, for a longer hunt.
MAX_EXAMPLES = int(os.environ.get("FIREWORQ_TEST_SCHEMATHESIS_EXAMPLES") or 10)
#: The same examples on every run, so that a run passes or fails for what changed in the
#: repository, not for what was drawn; FIREWORQ_TEST_SCHEMATHESIS_SEED draws others (give a
#: number, or "random").
_SEED = os.environ.get("FIREWORQ_TEST_SCHEMATHESIS_SEED") or "20261203"
SEED = None if _SEED == "random" else int(_SEED)
#: Most requests in one scenario of the stateful phase.
MAX_STEPS = int(os.environ.get("FIREWORQ_TEST_SCHEMATHESIS_STEPS") or 10)
#: Workers that fail at once: connection refused (port 1 has no listener on 127.0.0.1).
REFUSING_URL = "http://127.0.0.1:1/work"
#: The names the document's examples use, made to exist before the run.
QUEUE, CATEGORY = "mail", "send_welcome"

#: What a request must be beyond what JSON Schema states, as the 400's message words it
#: (docs/api.md): a schema-valid request refused with one of these is refused rightly.
UNSTATED_RULES = (
    "must be a time in RFC 3339 form",  # a real date and time, not only the form
    "Invalid url:",  # printable ASCII, a host, a port up to 65535
    "Invalid job category:",  # 1 to 255 bytes of UTF-8, not characters
    "maps to the same tables as existing queue",  # depends on the queues that exist
    "Cannot configure ",  # a throttle rate and a burst size go together
    "Invalid cursor",  # only a next_cursor is one
    "Invalid job id:",  # digits, as the document says, but at most 9223372036854775807
    "Invalid failure id:",  # the same
    "Field 'unique_key' must be a string of 1 to 255 bytes",  # bytes, not characters
    "Invalid Idempotency-Key header:",  # the same
    "Field 'unique_key' and the Idempotency-Key header differ",  # two must agree
    "Header not allowed in ",  # hop-by-hop, framing, Fireworq-* and webhook-* names
    "Header given twice in ",  # names differing only in case
    " has a control character ",  # header values
    " bytes (at header ",  # 8 KiB of names and values in all
    " has a value that is not valid Unicode",  # lone surrogates
    "Invalid secret ",  # the base64 of 24 to 64 bytes
    "has the same secret twice",
    "has more redacted secrets than the queue has stored",  # depends on what is stored
)

_CONVERTER = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")


def app_routes() -> set[tuple[str, str]]:
    """(method, path template) of every route in the app's route table, variables as ``{}``;
    a variable that takes a fixed set of words (``any(a,b)``) is one route per word."""
    routes = set()
    for rule in FireworqAPI.app.url_map.iter_rules():
        paths = [""]
        position = 0
        for match in _CONVERTER.finditer(rule.rule):
            literal = rule.rule[position:match.start()]
            converter, arguments, _ = match.groups()
            words = [w.strip() for w in arguments.split(",")] if converter == "any" else ["{}"]
            paths = [p + literal + w for p in paths for w in words]
            position = match.end()
        for path in paths:
            for method in rule.methods or ():
                routes.add((method, path + rule.rule[position:]))
    return routes


def document_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
        for path, item in spec["paths"].items() for method in item
    }


class DocumentTests(SynchronousTestCase):
    def test_everyRoute(self) -> None:
        """When the app's route table is read, every route and method is in the document and
        the document has no other: a route added without its entry fails here."""
        self.assertEqual(sorted(document_routes(document())), sorted(app_routes()))

    def test_nullIsAbsent(self) -> None:
        """When a request member may be null (the daemon reads null as absent), a member with
        a list of allowed values allows null too: schemathesis once sent
        {"retry_backoff": null}, which the daemon rightly accepted and the document refused."""
        schemas = document()["components"]["schemas"]
        for name in ("QueueDefinitionInput", "JobInput", "FailedFilter", "RetryInput"):
            for member, schema in schemas[name]["properties"].items():
                if "null" in schema.get("type", ()) and "enum" in schema:
                    self.assertIn(None, schema["enum"], f"{name}.{member}")
        self.assertIn(None, schemas["QueueDefinitionInput"]["properties"]["result_mode"]["enum"])

    def test_routeTableRead(self) -> None:
        """When the route table is read, variables become {} and any(...) one route per word
        (so the test above compares like with like)."""
        routes = app_routes()
        self.assertIn(("POST", "/job/{}"), routes)
        self.assertIn(("HEAD", "/queue/{}/waiting"), routes)
        self.assertIn(("DELETE", "/queue/{}/failed/{}"), routes)
        self.assertNotIn(("GET", "/queue/{}/{}"), routes)

    def test_valid(self) -> None:
        """When openapi-spec-validator reads the document, it is valid OpenAPI 3.1."""
        spec = document()
        validate_spec(spec)
        self.assertEqual(spec["openapi"], "3.1.0")

    def test_errorsDocumented(self) -> None:
        """When an operation is read, its answers include the JSON error of docs/api.md,
        Errors; the 503 answer has Retry-After and the 405 answer has Allow."""
        spec = document()
        responses = spec["components"]["responses"]
        error = spec["components"]["schemas"]["Error"]
        self.assertEqual(error["required"], ["code", "error", "message"])
        self.assertIn("Retry-After", responses["StoreUnavailable"]["headers"])
        self.assertIn("Allow", responses["MethodNotAllowed"]["headers"])
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                for code in ("400", "404", "413", "500"):
                    self.assertIn(code, operation["responses"], (method, path))
        push = spec["paths"]["/job/{job_category}"]["post"]["responses"]
        self.assertEqual(push["503"], {"$ref": "#/components/responses/StoreUnavailable"})

    def test_publicAsTheDaemon(self) -> None:
        """When the document says an operation needs no token, the daemon's access check
        answers it without one, and the others may answer 401 and 403 (docs/api.md,
        Authentication)."""
        for path, item in document()["paths"].items():
            concrete = re.sub(r"\{[^}]*\}", "x", path)
            for method, operation in item.items():
                public = is_public(method.upper().encode(), concrete, metrics_public=False)
                self.assertEqual(operation.get("security") == [], public, (method, path))
                self.assertEqual("401" in operation["responses"], not public, (method, path))
                self.assertEqual("403" in operation["responses"], not public, (method, path))

    def test_limitsAreTheHandlers(self) -> None:
        """When a request member has a range, it is the range the handler checks."""
        schemas = document()["components"]["schemas"]
        push = schemas["JobInput"]["properties"]
        self.assertEqual((push["run_after"]["minimum"], push["run_after"]["maximum"]),
                         (0, 315360000))
        self.assertEqual(push["timeout"]["maximum"], 86400)
        queue = schemas["QueueDefinitionInput"]["properties"]
        self.assertEqual(queue["max_workers"]["maximum"], 10000)
        self.assertEqual(queue["failed_job_limit"]["maximum"], 100000000)
        self.assertEqual(schemas["FailedFilter"]["properties"]["limit"]["maximum"], 10000)


class ServedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.node = ApiHarness()
        self.addCleanup(self.node.stop)

    def test_get(self) -> None:
        """When GET /openapi.json is asked, the answer is the document as JSON."""
        response = self.node.get("/openapi.json")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header(b"content-type"), b"application/json")
        self.assertEqual(response.json(), json.loads(json.dumps(document())))
        self.assertEqual(self.node.get("/openapi.json").body, response.body)

    def test_head(self) -> None:
        """When HEAD /openapi.json is asked, the headers are those of GET, without a body."""
        get = self.node.get("/openapi.json")
        head = self.node.request("HEAD", "/openapi.json")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(head.header(b"content-length"), get.header(b"content-length"))

    def test_otherMethods(self) -> None:
        """When another method is sent, it is 405 with Allow: GET, HEAD."""
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            response = self.node.request(method, "/openapi.json", b"{}")
            self.assertEqual(response.status, 405, method)
            self.assertEqual(response.header(b"allow"), b"GET, HEAD")
            self.assertEqual(response.json()["code"], 405)

    def test_withoutToken(self) -> None:
        """When API tokens are set, the document is still answered without a token (the
        tools that read it have none)."""
        node = ApiHarness({"api_tokens": "adm1n-t0ken:admin"})
        self.addCleanup(node.stop)
        self.assertEqual(node.get("/openapi.json").status, 200)
        self.assertEqual(node.get("/queues").status, 401)

    def test_accessLog(self) -> None:
        """When the document is asked, the access log has its line."""
        self.node.get("/openapi.json")
        [line] = [entry for entry in self.node.access_lines()
                  if "/openapi.json" in json.dumps(entry)]
        self.assertEqual(line["status"], 200)


def _integral_floats(value: Any) -> bool:
    """Whether a generated JSON value holds a float with an integral value (``68.0``)."""
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_integral_floats(v) for v in value.values())
    if isinstance(value, list):
        return any(_integral_floats(v) for v in value)
    return False


def run_schemathesis(base_url: str, spec: dict[str, Any] | None = None,
                     max_examples: int = MAX_EXAMPLES) -> tuple[list[str], set[str]]:
    """Run schemathesis against ``base_url``: the failures it found, and the operations it
    tested. ``spec`` replaces the document the daemon serves. Blocking: run in a thread."""
    config = schemathesis.Config.from_dict({
        **({} if SEED is None else {"seed": SEED}),
        "base-url": base_url,
        "request-timeout": 10,
        "generation": {"max-examples": max_examples, "database": "none"},
        # The stateful phase follows the document's links: define a queue, then use it.
        "phases": {"stateful": {"max-steps": MAX_STEPS}},
        "operations": [
            # docs/api.md, Routes: this path is also the entry routes' with "retry" as the
            # id, so GET and DELETE answer 400 (an invalid id) and Allow lists them.
            {"include-path": "/queue/{queue_name}/failed/retry",
             "checks": {"unsupported_method": {"enabled": False},
                        "allow_header_conformance": {"enabled": False}}},
            # DELETE here deletes the matching entries of the failure log, not the log: a
            # GET after it is 200, not the 404 of a deleted resource.
            {"include-path": "/queue/{queue_name}/failed",
             "checks": {"use_after_free": {"enabled": False}}},
        ],
    })
    # The document as the daemon serves it. (Loaded with from_url, schemathesis would label
    # the run of GET /openapi.json as HEAD's.)
    if spec is None:
        served = requests.get(base_url + "/openapi.json", timeout=10)
        served.raise_for_status()
        spec = served.json()
    schema = schemathesis.openapi.from_dict(spec, config=config)

    @schema.hook
    def filter_case(context: Any, case: Any) -> bool:
        # JSON Schema counts 68.0 as an integer; the daemon takes only integer literals
        # (docs/api.md, Requests). Such a value is a negative case, not a positive one.
        return not (case.meta is not None and case.meta.generation.mode.is_positive
                    and _integral_floats(case.body))

    @schema.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
            return True
        if case.method == "HEAD":
            return False  # no message to tell why; GET with the same request has one
        message = json.loads(response.content)["message"]
        return not any(rule in message for rule in UNSTATED_RULES)

    failures: dict[str, str] = {}
    tested: set[str] = set()
    for event in engine_for(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            if event.status != Status.SKIP:
                tested.add(event.recorder.label)
            for checks in event.recorder.checks.values():
                for check in checks:
                    info = check.failure_info
                    if info is not None:
                        key = f"{check.name}: {info.failure.title}: {info.failure.message}"
                        failures.setdefault(key, info.code_sample)
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            failures.setdefault(f"{type(event).__name__}: {event!r}", "")
        elif isinstance(event, events.EngineFinished):
            if event.stop_reason != StopReason.COMPLETED:
                failures.setdefault(f"stopped: {event.stop_reason}", "")
    return [f"{key}\n{sample}" for key, sample in failures.items()], tested


class LiveTests(TestCase):
    """schemathesis against a live daemon on 127.0.0.1 port 0, on each driver."""

    timeout = 240

    def setUp(self) -> None:
        self.pool = ThreadPool(minthreads=1, maxthreads=1, name="schemathesis")
        self.pool.start()
        self.addCleanup(self.pool.stop)

    async def start(self, *options: str) -> str:
        directory = tempfile.mkdtemp(prefix="fireworq-openapi-")
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        child = Child(self, "daemon", daemon_argv("--bind=127.0.0.1:0", *options),
                      cwd=directory)
        await child.wait_for_text(LISTENING)
        [port] = re.findall(LISTENING + r" 127\.0\.0\.1:(\d+)", child.err)
        return f"http://127.0.0.1:{port}"

    async def seed(self, base_url: str) -> None:
        """The queue and routing the document's examples name, jobs in it and entries in
        its failure log, so the examples reach past "no such queue"."""
        api = ApiClient(self, base_url)
        await api.put_queue(QUEUE, max_workers=2)
        await api.put_routing(CATEGORY, QUEUE)
        for _ in range(3):
            await api.push_ok(CATEGORY, REFUSING_URL, '{"n": 1}')
        await api.push_ok(CATEGORY, REFUSING_URL, '{"n": 2}', run_after=3600)

        async def failed() -> bool:
            return len(await api.failed(QUEUE)) == 3

        await eventually(failed, timeout=20, what="three failure-log entries")

    async def check(self, *options: str) -> str:
        base_url = await self.start(*options)
        await self.seed(base_url)
        found, tested = await deferToThreadPool(reactor, self.pool, run_schemathesis, base_url)
        self.assertEqual(found, [], "\n\n".join(found))
        expected = {f"{method.upper()} {path}" for path, item in document()["paths"].items()
                    for method in item}
        self.assertEqual(sorted(expected - tested), [])
        return base_url

    async def test_memory(self) -> None:
        """When schemathesis runs against an in-memory daemon, every answer is as documented."""
        await self.check("--driver=in-memory")

    async def test_mismatchFound(self) -> None:
        """When the document says something the daemon does not do, the run reports it (so
        the runs above pass because the daemon does what the document says)."""
        base_url = await self.start("--driver=in-memory")
        spec = document()
        spec["components"]["schemas"]["Status"]["properties"]["status"] = {"const": "fine"}
        spec["paths"] = {"/healthz": spec["paths"]["/healthz"]}
        found, tested = await deferToThreadPool(
            reactor, self.pool, run_schemathesis, base_url, spec)
        self.assertEqual(tested, {"GET /healthz", "HEAD /healthz"})
        self.assertTrue([f for f in found if f.startswith("response_schema_conformance")],
                        found)

    async def test_tokens(self) -> None:
        """When API tokens are set and schemathesis sends none, every answer is as documented:
        401 where a token is needed, the public paths as usual."""
        base_url = await self.start("--driver=in-memory", "--api-tokens=adm1n-t0ken:admin")
        # Most answers are the same 401: a few examples show it.
        found, tested = await deferToThreadPool(
            reactor, self.pool, run_schemathesis, base_url, None, 3)
        self.assertEqual(found, [], "\n\n".join(found))
        self.assertIn("GET /queues", tested)

    async def test_sqlite(self) -> None:
        """When schemathesis runs against a sqlite daemon, every answer is as documented."""
        await self.check("--driver=sqlite")

    async def test_mysql(self) -> None:
        """When schemathesis runs against a mysql daemon, every answer is as documented."""
        database = mysqltools.create_database("fwoapi")
        self.addCleanup(mysqltools.drop_database, database)
        await self.check("--driver=mysql", f"--mysql-dsn={mysqltools.dsn_text(database)}")
