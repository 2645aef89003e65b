"""API tokens (docs/api.md, Authentication; docs/configuration.md, API tokens): every route of the
app's route table under every scope, the public paths, the access log, the settings and the token
file."""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any
from unittest import mock

import attrs
from twisted.trial.unittest import SynchronousTestCase

from apptools import PERMANENT, ApiHarness, RawResponse, utc
from fireworq import access
from fireworq.access import AccessCheck, ApiToken, parse_token_file, parse_tokens
from fireworq.api.app import FireworqAPI
from fireworq.config import load_config, settings
from fireworq.errors import ConfigError

TOKENS = "r3ad-t0ken:read,pu5h-t0ken:push,adm1n-t0ken:admin"
SCOPE_TOKENS = {"read": "r3ad-t0ken", "push": "pu5h-t0ken", "admin": "adm1n-t0ken"}
PUBLIC = {"/healthz", "/readyz", "/openapi.json"}
URL = "http://worker.internal:8000/send"


def sample_node(overrides: dict[str, str]) -> tuple[ApiHarness, dict[str, str]]:
    """A node with a queue q1, a routing cat → q1, a grabbed job and a failure-log entry; the
    values a route's variables take on it."""
    node = ApiHarness(overrides)
    node.token = SCOPE_TOKENS["admin"] if "api_tokens" in overrides else None
    node.define_queue("q1", polling_interval=100)
    node.define_routing("cat", "q1")
    failing = node.push("cat", url=URL, max_retries=0)
    node.advance(0.2)
    node.deliverer.finish(failing["id"], PERMANENT)
    node.advance(0.2)
    grabbed = node.push("cat", url=URL)
    node.advance(0.2)
    [entry] = node.get("/queue/q1/failed").json()["failed_jobs"]
    node.token = None
    return node, {
        "queue_name": "q1", "job_id": str(grabbed["id"]), "failure_id": str(entry["id"]),
        "job_category": "cat",
    }


_VARIABLE = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")


def concrete(rule: str, values: dict[str, str]) -> str:
    """A path the rule matches: ``any(...)`` takes its first choice, other variables the
    sample's value of that name (``x`` for a name the sample does not know)."""
    def value(match: re.Match[str]) -> str:
        converter, arguments, name = match.groups()
        if converter == "any":
            return arguments.split(",")[0].strip()
        return values.get(name, "x")
    return _VARIABLE.sub(value, rule)


def body_for(method: str, path: str) -> Any:
    if method == "PUT" and path.startswith("/routing/"):
        return {"queue_name": "q1"}
    if method == "PUT":
        return {}
    if method == "POST" and path.startswith("/jobs/"):
        return {"jobs": [{"url": URL}]}
    if method == "POST" and path.startswith("/job/"):
        return {"url": URL}
    return None


def routes() -> list[tuple[str, str]]:
    """(method, rule) of every route of the app, HEAD included."""
    found = set()
    for rule in FireworqAPI.app.url_map.iter_rules():
        for method in rule.methods or ():
            found.add((method, rule.rule))
    return sorted(found)


class RouteTableTests(SynchronousTestCase):
    """Every route × no token, an unknown token, and each scope."""

    def setUp(self) -> None:
        self.addCleanup(utc())

    def answer(self, overrides: dict[str, str], method: str, rule: str,
               token: str | None) -> tuple[str, RawResponse]:
        node, values = sample_node(overrides)
        self.addCleanup(node.stop)
        path = concrete(rule, values)
        return path, node.request(method, path, body_for(method, path), token=token)

    def test_everyRouteEveryScope(self) -> None:
        """With tokens set: a public path answers as the open API does; no token or an unknown
        one gets 401 with WWW-Authenticate: Bearer; a scope that does not allow the route gets
        403; one that allows it gets the open API's status (200 for every route of
        the sample but a few)."""
        table = routes()
        self.assertGreaterEqual(len(table), 40)
        open_ok = 0
        for method, rule in table:
            path, opened = self.answer({}, method, rule, None)
            open_ok += opened.status == 200
            for token in (None, "n0t-a-t0ken", *SCOPE_TOKENS.values()):
                _, answer = self.answer({"api_tokens": TOKENS}, method, rule, token)
                where = f"{method} {path} with {token}"
                scope = {v: k for k, v in SCOPE_TOKENS.items()}.get(token or "")
                if path in PUBLIC:
                    self.assertEqual(answer.status, opened.status, where)
                elif scope is None:
                    self.assertEqual(answer.status, 401, where)
                    self.assertEqual(answer.header(b"www-authenticate"), b"Bearer", where)
                    if method != "HEAD":
                        self.assertEqual(answer.json()["error"], "Unauthorized", where)
                elif access.scope_allows(scope, method.encode(), path):
                    self.assertEqual(answer.status, opened.status, where)
                else:
                    self.assertEqual(answer.status, 403, where)
                    if method != "HEAD":
                        self.assertEqual(answer.json()["error"], "Forbidden", where)
                    self.assertIsNone(answer.header(b"www-authenticate"), where)
        # The sample makes the routes answer for real, not 404 for want of data.
        self.assertGreaterEqual(open_ok, len(table) - 4)

    def test_scopeRules(self) -> None:
        """read: GET and HEAD only; push: and POST /job/... and /jobs/...; admin: all."""
        allows = access.scope_allows
        self.assertTrue(allows("read", b"GET", "/queues"))
        self.assertTrue(allows("read", b"HEAD", "/queues"))
        self.assertFalse(allows("read", b"POST", "/job/cat"))
        self.assertTrue(allows("push", b"POST", "/job/cat"))
        self.assertTrue(allows("push", b"POST", "/jobs/cat"))
        self.assertFalse(allows("push", b"POST", "/queue/q1/pause"))
        self.assertFalse(allows("push", b"PUT", "/job/cat"))
        self.assertFalse(allows("push", b"POST", "/jobsx"))
        self.assertTrue(allows("admin", b"DELETE", "/queue/q1"))
        self.assertTrue(allows("admin", b"OPTIONS", "/"))


class TokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.addCleanup(utc())
        self.node = ApiHarness({"api_tokens": TOKENS})
        self.addCleanup(self.node.stop)

    def test_missing(self) -> None:
        """No Authorization: 401, JSON error body, WWW-Authenticate: Bearer."""
        response = self.node.get("/queues")
        self.assertEqual(response.status, 401)
        self.assertEqual(response.header(b"www-authenticate"), b"Bearer")
        self.assertEqual(response.header(b"content-type"), b"application/json")
        self.assertEqual(response.json(), {
            "code": 401, "error": "Unauthorized",
            "message": "Missing API token: send 'Authorization: Bearer <token>'"})

    def test_unknownOrMalformed(self) -> None:
        """An unknown token, another scheme, a token with a suffix or a prefix: 401."""
        for value in ("Bearer nope", "Basic " + SCOPE_TOKENS["admin"],
                      "Bearer " + SCOPE_TOKENS["admin"] + "x", "Bearer x" + SCOPE_TOKENS["admin"],
                      "Bearer", "", SCOPE_TOKENS["admin"]):
            response = self.node.get("/queues", headers=[(b"Authorization", value.encode())])
            self.assertEqual(response.status, 401, value)
            self.assertEqual(response.json()["message"], "Unknown API token", value)
            self.assertEqual(response.header(b"www-authenticate"), b"Bearer")

    def test_schemeAnyCase(self) -> None:
        """The scheme is case-insensitive (RFC 7235)."""
        response = self.node.get(
            "/queues", headers=[(b"Authorization", b"bEaReR " + SCOPE_TOKENS["read"].encode())])
        self.assertEqual(response.status, 200)

    def test_forbiddenMessage(self) -> None:
        response = self.node.post("/queue/q1/pause", token=SCOPE_TOKENS["push"])
        self.assertEqual(response.json(), {
            "code": 403, "error": "Forbidden",
            "message": "API token scope push does not allow POST /queue/q1/pause"})

    def test_pushWithPushToken(self) -> None:
        """The push fast path checks the token too."""
        self.node.token = SCOPE_TOKENS["admin"]
        self.node.define_queue("q1")
        self.node.define_routing("cat", "q1")
        self.assertEqual(self.node.post("/job/cat", {"url": URL}, token=None).status, 401)
        self.assertEqual(
            self.node.post("/job/cat", {"url": URL}, token=SCOPE_TOKENS["read"]).status, 403)
        self.assertEqual(
            self.node.post("/job/cat", {"url": URL}, token=SCOPE_TOKENS["push"]).status, 200)

    def test_batchWithPushToken(self) -> None:
        """A push token may push batches (docs/api.md, POST /jobs); a read token may not."""
        self.node.token = SCOPE_TOKENS["admin"]
        self.node.define_queue("q1")
        self.node.define_routing("cat", "q1")
        batch = {"jobs": [{"url": URL}, {"url": URL}]}
        self.assertEqual(self.node.post("/jobs/cat", batch, token=None).status, 401)
        self.assertEqual(self.node.post("/jobs/cat", batch, token=SCOPE_TOKENS["read"]).status,
                         403)
        response = self.node.post("/jobs/cat", batch, token=SCOPE_TOKENS["push"])
        self.assertEqual(response.status, 200)
        self.assertEqual(len(response.json()["jobs"]), 2)

    def test_unknownPathsAndBadPaths(self) -> None:
        """Without a token, a path no route serves and a path that is not UTF-8 get 401 too:
        routes cannot be probed."""
        self.assertEqual(self.node.get("/nope").status, 401)
        self.assertEqual(self.node.get("/%ff").status, 401)
        self.assertEqual(self.node.get("/nope", token=SCOPE_TOKENS["read"]).status, 404)
        self.assertEqual(self.node.get("/%ff", token=SCOPE_TOKENS["read"]).status, 400)

    def test_publicPaths(self) -> None:
        """/healthz, /readyz, /openapi.json and /console/... need no token (the console's
        files are served: docs/console.md)."""
        self.assertEqual(self.node.get("/healthz").status, 200)
        self.assertEqual(self.node.get("/readyz").status, 200)
        self.assertEqual(self.node.get("/openapi.json").status, 200)
        self.assertEqual(self.node.get("/console").status, 301)
        for path in ("/console/", "/console/app.js"):
            self.assertEqual(self.node.get(path).status, 200, path)
        self.assertEqual(self.node.get("/console/nope.js").status, 404)
        self.assertEqual(self.node.get("/consolex").status, 401)
        self.assertEqual(self.node.get("/healthz/x").status, 401)

    def test_metrics(self) -> None:
        """/metrics needs read, unless metrics_public."""
        self.assertEqual(self.node.get("/metrics").status, 401)
        self.assertEqual(self.node.get("/metrics", token=SCOPE_TOKENS["read"]).status, 200)
        public = ApiHarness({"api_tokens": TOKENS, "metrics_public": "true"})
        self.addCleanup(public.stop)
        self.assertEqual(public.get("/metrics").status, 200)
        self.assertEqual(public.get("/queues").status, 401)

    def test_accessLogScope(self) -> None:
        """The access log has the token's scope, never the token; a refused request has no
        scope."""
        self.node.get("/queues", token=SCOPE_TOKENS["read"])
        self.node.post("/queue/q1/pause", token=SCOPE_TOKENS["push"])
        self.node.get("/queues")
        self.node.get("/healthz")
        lines = self.node.access_lines()
        self.assertEqual([(line["status"], line.get("scope")) for line in lines],
                         [(200, "read"), (403, "push"), (401, None), (200, None)])
        self.node.access_writer.flush()
        raw = self.node.access_stream.getvalue()
        for token in SCOPE_TOKENS.values():
            self.assertNotIn(token.encode(), raw)

    def test_openAccessLogUnchanged(self) -> None:
        """Without tokens no line has a scope."""
        node = ApiHarness()
        self.addCleanup(node.stop)
        node.get("/queues")
        [line] = node.access_lines()
        self.assertNotIn("scope", line)

    def test_constantTime(self) -> None:
        """A token is compared with every configured token through hmac.compare_digest, on
        equal-length digests, whichever matches (or none)."""
        check = AccessCheck(parse_tokens(TOKENS))
        calls: list[tuple[bytes, bytes]] = []
        real = access.hmac.compare_digest

        def counting(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return real(a, b)

        with mock.patch.object(access.hmac, "compare_digest", counting):
            for token, scope in [(SCOPE_TOKENS["read"], "read"), (SCOPE_TOKENS["admin"], "admin"),
                                 ("x", None), ("a" * 500, None)]:
                calls.clear()
                self.assertEqual(check.scope_of(b"Bearer " + token.encode()), scope)
                self.assertEqual(len(calls), 3)
                self.assertEqual({len(a) for a, _ in calls} | {len(b) for _, b in calls}, {32})


class SettingsTests(SynchronousTestCase):
    def test_settingsShowCountNotTokens(self) -> None:
        """/settings shows how many tokens api_tokens has and the file's path with how many it
        has, never a token."""
        path = self.token_file("f1le-t0ken push\n")
        config = load_config({"api_tokens": TOKENS, "api_tokens_file": path}, {})
        shown = settings(config)
        self.assertEqual(shown["api_tokens"], "3")
        self.assertEqual(shown["api_tokens_file"], f"{path} (1 token)")
        self.assertEqual(shown["metrics_public"], "false")
        text = repr(shown) + repr(config)
        for token in (*SCOPE_TOKENS.values(), "f1le-t0ken"):
            self.assertNotIn(token, text)
        self.assertEqual(len(config.all_api_tokens), 4)

    def test_fromEnvironment(self) -> None:
        config = load_config({}, {"FIREWORQ_API_TOKENS": "a:read",
                                  "FIREWORQ_METRICS_PUBLIC": "1"})
        self.assertEqual(config.api_tokens, (ApiToken("a", "read"),))
        self.assertTrue(config.metrics_public)
        self.assertEqual(settings(config)["api_tokens"], "1")

    def test_badTokensNotRepeated(self) -> None:
        """An invalid api_tokens value is named by entry, never repeated."""
        for text, problem in [
            ("s3cret:rad", "entry 1: the scope must be read, push or admin, not 'rad'"),
            ("a:read,s3cret", "entry 2 is not token:scope"),
            ("s3 cret:read", "entry 1: a token is one or more of"),
            ("s3cret:read,s3cret:admin", "token 2 is given twice"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                load_config({"api_tokens": text}, {})
            self.assertIn(problem, str(caught.exception))
            self.assertIn("invalid api_tokens (--api-tokens)", str(caught.exception))
            self.assertNotIn("s3", str(caught.exception))

    def token_file(self, text: str) -> str:
        fd, path = tempfile.mkstemp(prefix="fireworq-tokens-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def test_file(self) -> None:
        """One 'token scope' a line; blank lines, comments and surrounding blanks skipped."""
        path = self.token_file("# ops tokens\n\n  t1 read  \nt2\tadmin\n   # indented\n")
        self.assertEqual(parse_token_file(path).tokens,
                         (ApiToken("t1", "read"), ApiToken("t2", "admin")))

    def test_fileErrorsNameFileAndLine(self) -> None:
        for text, problem in [
            ("t1 read\nt2\n", "line 2: a line is 'token scope' (two words)"),
            ("t1 read extra\n", "line 1: a line is 'token scope' (two words)"),
            ("# c\nt1 writer\n", "line 2: the scope must be read, push or admin"),
            ("t1 read\nt1 push\n", "token 2 is given twice"),
        ]:
            path = self.token_file(text)
            with self.assertRaises(ConfigError) as caught:
                load_config({}, {"FIREWORQ_API_TOKENS_FILE": path})
            message = str(caught.exception)
            self.assertIn(f'invalid api_tokens_file (FIREWORQ_API_TOKENS_FILE): "{path}"', message)
            self.assertIn(problem, message)

    def test_missingFile(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            load_config({"api_tokens_file": "/nonexistent/tokens"}, {})
        self.assertIn('"/nonexistent/tokens" cannot be read: No such file or directory',
                      str(caught.exception))

    def test_tokenInBoth(self) -> None:
        path = self.token_file("same read\n")
        with self.assertRaises(ConfigError) as caught:
            load_config({"api_tokens": "same:admin", "api_tokens_file": path}, {})
        self.assertEqual(str(caught.exception),
                         "invalid api_tokens: a token is also in api_tokens_file")

    def test_evolvedConfigDisables(self) -> None:
        """A node without tokens is open (the default)."""
        config = attrs.evolve(load_config({"api_tokens": TOKENS}, {}), api_tokens=())
        self.assertFalse(AccessCheck(config.all_api_tokens).enabled)
