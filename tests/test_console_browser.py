"""The console in a real browser (docs/console.md): headless Chromium against a real daemon
and an in-process worker, through the pages a person would use.

Each test loads its pages with no console error and no failed request but the ones it
expects (``Browser.assert_clean``), with every control labelled, and checks each page at
375 px wide. With FIREWORQ_UPDATE_SCREENSHOTS=1 the same steps write docs/console/*.png.

The token box is tested against ``TokenGate``, a stand-in in front of the daemon that answers
401 as an API with tokens does (docs/console.md, Security).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from selenium.webdriver.common.keys import Keys
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from browser import Browser
from e2e import (
    Answer,
    Daemon,
    Received,
    Worker,
    asyncCleanup,
    bounded,
    eventually,
    failure,
    reactor,
    success,
)

QUEUE = "mail"
CATEGORY = "welcome"


def fail_when_asked(received: Received) -> Answer:
    """The worker: a retryable failure for a payload with "fail": true, else success."""
    payload = received.json
    return failure("asked to fail") if isinstance(payload, dict) and payload.get("fail") \
        else success()


class ConsoleBrowserTests(TestCase):
    timeout = 120

    async def start(self, policy: Any = fail_when_asked) -> tuple[Daemon, Worker, Browser]:
        worker = await Worker.start(self, policy)
        daemon = await Daemon.start(self, "sqlite")
        browser = await Browser.start(self, daemon.base_url)
        return daemon, worker, browser

    async def test_createQueueRoutingPushAndWatchCompletions(self) -> None:
        daemon, worker, browser = await self.start()
        await browser.open("/")
        self.assertEqual(await browser.text("main h1"), "Overview")
        self.assertIn("No queues yet", await browser.text("main tbody"))
        await browser.assert_clean(self)

        # A queue, from the overview's form: the console goes to its page.
        await browser.type("main form input[name=name]", QUEUE)
        await browser.type("main form input[name=max_workers]", "4")
        await browser.rendered_after(
            lambda d: d.find_element("css selector", "main form button[type=submit]").click(),
            "the queue page")
        self.assertEqual(await browser.script("return location.hash"), "#/queue/" + QUEUE)
        self.assertEqual((await daemon.api.ok("GET", "/queue/" + QUEUE))["max_workers"], 4)

        # A routing, from the routings page.
        await browser.open("/routings")
        await browser.type("main input[name=job_category]", CATEGORY)
        # From the keyboard: Enter in a field sends the form.
        await browser.type("main input[name=queue_name]", QUEUE)
        await browser.rendered_after(
            lambda d: d.find_element("css selector", "main input[name=queue_name]").send_keys(
                Keys.ENTER), "the routings again")
        self.assertEqual(await browser.texts(f"main tbody tr[data-category={CATEGORY}] td"),
                         [CATEGORY, QUEUE, "Change\nDelete"])
        self.assertEqual(await daemon.api.ok("GET", "/routings"),
                         [{"queue_name": QUEUE, "job_category": CATEGORY}])
        # Change a routing's queue, then delete it.
        await daemon.api.put_queue("other")
        await daemon.api.put_routing("extra/cat", QUEUE)
        await browser.open("/routings")
        await browser.click("tr[data-category='extra/cat'] button[aria-label^=Change]")
        self.assertEqual(await browser.script(
            "return document.activeElement.name"), "queue_name")
        await browser.type("main input[name=queue_name]", "other")
        await browser.rendered_after(lambda d: d.find_element(
            "css selector", "main form button[type=submit]").click(), "the changed routing")
        self.assertEqual((await daemon.api.ok("GET", "/routing/extra/cat"))["queue_name"],
                         "other")
        await browser.screenshots(self, "routings")
        await browser.click("tr[data-category='extra/cat'] button.danger")
        await browser.rendered_after(lambda d: d.find_element(
            "css selector", ".confirm button.danger").click(), "the routings after a delete")
        self.assertEqual([r["job_category"] for r in await daemon.api.ok("GET", "/routings")],
                         [CATEGORY])
        await browser.assert_clean(self)

        # The push form refuses a payload that is not JSON, at the field, without sending.
        await browser.open("/push")
        await browser.type("main input[name=category]", CATEGORY)
        await browser.type("main input[name=url]", worker.url("/send"))
        await browser.type("main textarea[name=payload]", '{"user": 42,}')
        await browser.click("main form button[type=submit]")
        await browser.wait_for(
            "return document.querySelector('textarea[name=payload]')"
            ".getAttribute('aria-invalid') === 'true'", what="the payload's error")
        self.assertIn("Not JSON", await browser.text("main .field-error:not(:empty)"))
        self.assertEqual((await daemon.api.stats(QUEUE))["total_pushes"], 0)

        # Pushed from the form: the answer is shown, the worker gets the payload as typed.
        await browser.type("main textarea[name=payload]", '{"user": 42}')
        await browser.type("main input[name=max_retries]", "2")
        await browser.click("main form button[type=submit]")
        await browser.wait_for("return document.querySelector('#push-answer pre')",
                               what="the push's answer")
        answer = json.loads(await browser.text("#push-answer pre"))
        self.assertEqual((answer["queue_name"], answer["category"], answer["payload"],
                          answer["max_retries"]), (QUEUE, CATEGORY, {"user": 42}, 2))
        [received] = await worker.wait_for(1)
        self.assertEqual(received.body, b'{"user": 42}')
        await browser.screenshots(self, "push")
        await browser.assert_clean(self)

        # The overview counts the completion, and keeps counting as jobs come.
        await browser.open("/")
        await browser.wait_for(
            "return document.getElementById('total-completes').textContent === '1'",
            what="one completion on the overview")
        # The refreshes leave the keyboard's focus where it is.
        await browser.script(f"document.querySelector('tr[data-queue={QUEUE}] a').focus()")
        for n in range(5):
            await daemon.api.push_ok(CATEGORY, worker.url("/send"), '{"n": %d}' % n)
        await browser.wait_for(
            "return document.getElementById('total-completes').textContent === '6'",
            what="six completions on the overview")
        self.assertEqual(await browser.script("return document.activeElement.textContent"),
                         QUEUE)
        row = await browser.texts(f"main tbody tr[data-queue={QUEUE}] > *")
        self.assertEqual(row[0], QUEUE)
        self.assertEqual(row[2], "running")
        await browser.screenshots(self, "overview")
        await browser.screenshots(self, "overview-dark", dark=True)
        # Dark: the page's background follows prefers-color-scheme.
        await browser.desktop(dark=True)
        self.assertEqual(await browser.script(
            "return getComputedStyle(document.body).backgroundColor"), "rgb(21, 24, 28)")
        await browser.desktop()
        # A reload shows the same page (the route is in the URL).
        await browser.open("/", reload=True)
        self.assertEqual(await browser.text("main h1"), "Overview")
        await browser.assert_clean(self)

    async def test_definitionErrorsAtTheField(self) -> None:
        daemon, worker, browser = await self.start()
        await daemon.api.put_queue(QUEUE, max_workers=3)
        await browser.open("/queue/" + QUEUE)
        await browser.type("main input[name=max_workers]", "abc")
        await browser.click("main form button[type=submit]")
        await browser.wait_for(
            "return document.getElementById("
            "document.querySelector('input[name=max_workers]').id + '-error').textContent",
            what="the API's message at max_workers")
        message = await browser.script(
            "return document.getElementById("
            "document.querySelector('input[name=max_workers]').id + '-error').textContent")
        self.assertEqual(message, "Field 'max_workers' must be an integer from 0 to 10000")
        # A rate without a burst: the API's message at the first field it names.
        await browser.type("main input[name=max_workers]", "5")
        await browser.type("main input[name=max_dispatches_per_second]", "2.5")
        await browser.click("main form button[type=submit]")
        await browser.wait_for(
            "return document.querySelector('input[name=max_dispatches_per_second]')"
            ".getAttribute('aria-invalid') === 'true'", what="the rate's error")
        await browser.type("main input[name=max_burst_size]", "5")
        await browser.click("main form button[type=submit]")
        await browser.wait_for("return document.querySelector('.message.ok')",
                               what="saved")
        self.assertEqual(await daemon.api.ok("GET", "/queue/" + QUEUE), {
            "name": QUEUE, "polling_interval": 100, "max_workers": 5,
            "max_dispatches_per_second": 2.5, "max_burst_size": 5})
        await browser.assert_clean(self, expected=[f"400 {daemon.base_url}/queue/{QUEUE}"])
        # An unknown queue is a message on the page, not a blank screen.
        await browser.open("/queue/nope")
        self.assertIn("No such queue: nope", await browser.text("main"))
        await browser.assert_clean(self, expected=[f"404 {daemon.base_url}/queue/nope"])

    async def test_pauseAndResume(self) -> None:
        daemon, worker, browser = await self.start()
        await daemon.api.put_queue(QUEUE)
        await daemon.api.put_routing(CATEGORY, QUEUE)
        await browser.open("/queue/" + QUEUE)
        self.assertEqual(await browser.text("main h1 .badge"), "running")
        await browser.rendered_after(lambda d: d.find_element("id", "pause").click(), "paused")
        self.assertEqual(await browser.text("main h1 .badge"), "paused")
        self.assertEqual(await browser.text("#pause"), "Resume")
        self.assertTrue((await daemon.api.ok("GET", "/queue/" + QUEUE))["paused"])
        await daemon.api.push_ok(CATEGORY, worker.url(), '{"n": 1}')
        await eventually(lambda: _waiting(daemon), what="the job waiting")
        self.assertEqual(worker.received, [])
        await browser.screenshots(self, "queue")
        await browser.rendered_after(lambda d: d.find_element("id", "pause").click(), "resumed")
        self.assertEqual(await browser.text("main h1 .badge"), "running")
        await worker.wait_for(1)
        self.assertNotIn("paused", await daemon.api.ok("GET", "/queue/" + QUEUE))
        for page in ("grabbed", "deferred"):
            await browser.open(f"/queue/{QUEUE}/{page}")
            self.assertEqual(await browser.text("main p.muted:last-of-type"), f"No {page} jobs.")
        await browser.open("/nowhere")
        self.assertEqual(await browser.text("main h1"), "No such page")
        await browser.assert_clean(self)

        # The daemon goes away: a message says so, the page keeps what it showed.
        await browser.open("/queue/" + QUEUE)
        await daemon.stop()
        await browser.wait_for("return document.querySelector('#messages .message.error')",
                               what="a message about the daemon")
        self.assertIn("Refreshing failed", await browser.text("#messages"))
        self.assertEqual(await browser.text("main h1 .badge"), "running")
        for problem in await browser.problems():
            self.assertRegex(problem, "ERR_CONNECTION_REFUSED")

    async def test_failAndRetryFromTheFailureLog(self) -> None:
        daemon, worker, browser = await self.start()
        await daemon.api.put_queue(QUEUE)
        await daemon.api.put_routing(CATEGORY, QUEUE)
        await daemon.api.put_routing("other", QUEUE)
        for n in range(3):
            await daemon.api.push_ok(CATEGORY, worker.url(), '{"fail": true, "n": %d}' % n)
        await daemon.api.push_ok("other", worker.url(), '{"fail": true, "n": 9}')
        await eventually(lambda: _failed_count(daemon, 4), what="four failures")
        # The worker now takes the jobs.
        worker.policy = lambda received: success()
        await browser.open(f"/queue/{QUEUE}/failed")
        ids = [int(i) for i in await browser.script(
            "return [...document.querySelectorAll('tr[data-failure]')].map((r) => r.dataset.failure)")]
        self.assertEqual(len(ids), 4)
        await browser.screenshots(self, "failure-log")

        # One entry's page: every field, the payload pretty-printed.
        await browser.open(f"/queue/{QUEUE}/failed/{ids[0]}")
        self.assertEqual(json.loads(await browser.text("main pre.json"))["n"], 9)
        self.assertIn("asked to fail", await browser.text("main dl"))
        await browser.screenshots(self, "failed-job")
        await browser.do(lambda d: d.execute_cdp_cmd("Browser.grantPermissions", {
            "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}))
        await browser.click("main .actions button:not(.danger)")
        await browser.wait_for("return document.querySelector('#messages .message.ok')",
                               what="the payload copied")
        self.assertEqual(json.loads(await browser.script(
            "return navigator.clipboard.readText()")), {"fail": True, "n": 9})

        # Retry one from its row: it is delivered, and leaves the log.
        await browser.open(f"/queue/{QUEUE}/failed")
        await browser.rendered_after(lambda d: d.find_element(
            "css selector", f"tr[data-failure='{ids[1]}'] button[aria-label^=Retry]").click(),
            "the log after a retry")
        await worker.wait_for(1)
        self.assertNotIn(ids[1], [f["id"] for f in await daemon.api.failed(QUEUE)])

        # Delete the selected one.
        await browser.click(f"tr[data-failure='{ids[2]}'] input[type=checkbox]")
        await browser.rendered_after(lambda d: d.find_element("id", "delete-selected").click(),
                                     "the log after a delete")
        remaining = sorted(f["id"] for f in await daemon.api.failed(QUEUE))
        self.assertEqual(remaining, sorted([ids[0], ids[3]]))

        # A time range in the URL: the entries failed in it.
        rows = "return document.querySelectorAll('tr[data-failure]').length"
        await browser.open(f"/queue/{QUEUE}/failed?after=2100-01-01T00:00:00.000Z")
        self.assertEqual(await browser.script(rows), 0)
        self.assertTrue(await browser.script(
            "return document.querySelector('input[name=failed_after]').value"
            ".startsWith('2100-01-01') || "
            "document.querySelector('input[name=failed_after]').value.startsWith('2099-12-31')"))
        await browser.open(f"/queue/{QUEUE}/failed?before=2100-01-01T00:00:00.000Z")
        self.assertEqual(await browser.script(rows), 2)
        await browser.open(f"/queue/{QUEUE}/failed")

        # Filter by category, then retry all matching: only that category's entry goes.
        await browser.type("main input[name=category]", "other")
        await browser.rendered_after(lambda d: d.find_element(
            "css selector", "main form button[type=submit]").click(), "the filtered log")
        self.assertEqual(await browser.script(
            "return [...document.querySelectorAll('tr[data-failure]')].length"), 1)
        await browser.click("#retry-all")
        await browser.rendered_after(lambda d: d.find_element(
            "css selector", ".confirm button.danger").click(), "the log after retrying all")
        await worker.wait_for(2)
        self.assertEqual([f["category"] for f in await daemon.api.failed(QUEUE)], [CATEGORY])
        self.assertIn("Retried 1 entry matching the filter", await browser.text("#messages"))
        # Delete all (no filter): the log is empty.
        await browser.open(f"/queue/{QUEUE}/failed")
        await browser.click("#delete-all")
        await browser.rendered_after(lambda d: d.find_element(
            "css selector", ".confirm button.danger").click(), "the log after deleting all")
        self.assertEqual(await daemon.api.failed(QUEUE), [])
        self.assertIn("No entries here.", await browser.texts("main p.muted"))
        await browser.assert_clean(self)

    async def test_pageThroughAThousandWaitingJobs(self) -> None:
        daemon, worker, browser = await self.start()
        await daemon.api.put_queue(QUEUE)
        await daemon.api.put_routing(CATEGORY, QUEUE)
        await daemon.api.ok("POST", f"/queue/{QUEUE}/pause")
        results = await bounded(
            [lambda n=n: daemon.api.push_ok(CATEGORY, worker.url(), '{"n": %d}' % n)
             for n in range(1000)], 16)
        pushed = {r["id"] for r in results}
        self.assertEqual(len(pushed), 1000)
        await browser.open(f"/queue/{QUEUE}/waiting")
        seen: list[int] = []
        for page in range(10):
            ids = [int(t) for t in await browser.texts("main tbody tr td:first-child a")]
            self.assertEqual(len(ids), 100, f"page {page + 1}")
            seen += ids
            if page == 0:
                await browser.screenshots(self, "waiting")
            if page < 9:
                await browser.rendered_after(
                    lambda d: d.find_element("id", "next-page").click(), f"page {page + 2}")
        self.assertEqual(seen, sorted(pushed, reverse=True))
        self.assertEqual(await browser.texts("main nav[aria-label=Pages] a"), ["First page"])
        # A job's page: every field, the payload, delete.
        await browser.open(f"/queue/{QUEUE}/job/{seen[0]}")
        payloads = {r["id"]: r["payload"] for r in results}
        self.assertEqual(json.loads(await browser.text("main pre.json")), payloads[seen[0]])
        await browser.screenshots(self, "job")
        await browser.click("main .actions .danger")
        await browser.rendered_after(lambda d: d.find_element(
            "css selector", ".confirm button.danger").click(), "the list after a delete")
        reply = await daemon.api.request("GET", f"/queue/{QUEUE}/job/{seen[0]}")
        self.assertEqual(reply.code, 404)
        await browser.assert_clean(self)

    async def test_oddNames(self) -> None:
        """Names with characters that mean something in URLs, HTML, CSS selectors and the
        metrics' labels reach the right pages and show as text."""
        daemon, worker, browser = await self.start()
        name, category = 'é <b>&"q"?#%', "a/b c?#&"
        path_name = quote(name, safe="")
        await daemon.api.ok("PUT", f"/queue/{path_name}", "{}")
        await daemon.api.ok("PUT", "/routing/" + quote(category, safe="/"),
                            json.dumps({"queue_name": name}))
        await daemon.api.push_ok(quote(category, safe="/"), worker.url(), '{"n": 1}',
                                 run_after=600)

        async def counted() -> bool:
            reply = await daemon.api.request("GET", "/metrics")
            return b'state="deferred"} 1.0' in reply.body
        await eventually(counted, what="the deferred job in /metrics")
        await browser.open("/")
        row = "document.querySelector(`tr[data-queue='${CSS.escape(arguments[0])}']`)"
        self.assertEqual(await browser.script(
            f"return {row}.querySelector('[data-count=deferred]').textContent", name), "1")
        self.assertEqual(await browser.script(f"return {row}.querySelector('a').textContent",
                                              name), name)
        await browser.rendered_after(lambda d: d.execute_script(
            f"{row}.querySelector('a').click()", name), "the queue's page")
        self.assertEqual(await browser.script(
            "return document.querySelector('main h1').firstChild.textContent"), name)
        await browser.rendered_after(lambda d: d.find_element(
            "css selector", "nav.tabs a:nth-child(4)").click(), "the deferred list")
        await browser.rendered_after(lambda d: d.find_element(
            "css selector", "main tbody a").click(), "the job's page")
        self.assertIn(category, await browser.text("main dl"))
        await browser.open("/routings")
        self.assertEqual(await browser.texts("main tbody td:first-child"), [category])
        await browser.assert_clean(self)


async def _waiting(daemon: Daemon) -> bool:
    page = await daemon.api.ok("GET", f"/queue/{QUEUE}/waiting")
    return len(page["jobs"]) == 1


async def _failed_count(daemon: Daemon, n: int) -> bool:
    return len(await daemon.api.failed(QUEUE)) == n


TOKEN = "s3cret-token"


class TokenGate(Resource):
    """A stand-in for a daemon with API tokens in front of a daemon without: everything but
    ``/console/`` needs ``Authorization: Bearer <TOKEN>`` (401 with ``WWW-Authenticate:
    Bearer`` otherwise, the JSON error of docs/api.md), and goes through to the daemon."""

    isLeaf = True
    FORWARDED = ("content-type", "etag", "cache-control", "content-security-policy", "location")

    def __init__(self, daemon: Daemon) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._daemon = daemon
        self.channels: set[HTTPChannel] = set()
        self.authorizations: list[str | None] = []
        self.cookies: list[bytes] = []

    def render(self, request: Request) -> Any:
        authorization = request.getHeader(b"authorization")
        cookie = request.getHeader(b"cookie")
        if cookie is not None:
            self.cookies.append(cookie)
        if not request.path.startswith(b"/console/"):
            self.authorizations.append(None if authorization is None else authorization.decode())
            if authorization != b"Bearer " + TOKEN.encode():
                request.setResponseCode(401)
                request.setHeader(b"www-authenticate", b"Bearer")
                request.setHeader(b"content-type", b"application/json")
                return json.dumps({"code": 401, "error": "Unauthorized",
                                   "message": "Missing or unknown API token"}).encode()
        Deferred.fromCoroutine(self._forward(request))
        return NOT_DONE_YET

    async def _forward(self, request: Request) -> None:
        gone: list[bool] = []  # the browser may drop a request (a reload), then nobody listens
        request.notifyFinish().addBoth(lambda _: gone.append(True))
        body = request.content.read() if request.content is not None else b""
        reply = await self._daemon.api.request(
            request.method.decode(), request.uri.decode(), body or None)
        if gone:
            return
        request.setResponseCode(reply.code)
        for name in self.FORWARDED:
            for value in reply.headers.get(name, []):
                request.setHeader(name, value)
        request.write(reply.body)
        request.finish()


class _GateChannel(HTTPChannel):
    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        self.factory.gate.channels.add(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.factory.gate.channels.discard(self)
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


async def token_gate(case: TestCase, daemon: Daemon) -> tuple[TokenGate, str]:
    gate = TokenGate(daemon)
    site = Site(gate, timeout=None)
    site.protocol = _GateChannel  # type: ignore[assignment]
    site.gate = gate  # type: ignore[attr-defined]
    site.noisy = False
    listening = reactor.listenTCP(0, site, interface="127.0.0.1")

    async def stop() -> None:
        await listening.stopListening()
        for channel in list(gate.channels):
            channel.transport.abortConnection()  # type: ignore[union-attr]

        async def closed() -> bool:
            return not gate.channels
        await eventually(closed, timeout=5, step=0.01, what="the gate's connections")

    asyncCleanup(case, stop)
    return gate, f"http://127.0.0.1:{listening.getHost().port}"


class ConsoleTokenTests(TestCase):
    timeout = 60

    async def test_tokenBox(self) -> None:
        """When the API answers 401, the console asks for a token, keeps it in the tab's
        sessionStorage, sends it as a Bearer token, and sets no cookie."""
        daemon = await Daemon.start(self, "sqlite")
        await daemon.api.put_queue(QUEUE)
        gate, base_url = await token_gate(self, daemon)
        browser = await Browser.start(self, base_url)
        await browser.open("/")
        await browser.wait_for("return !document.getElementById('token').hidden",
                               what="the token box")
        self.assertEqual(await browser.script("return document.activeElement.id"),
                         "token-value")
        self.assertIn("Missing or unknown API token", await browser.text("main"))
        await browser.screenshots(self, "token")
        # A wrong token: asked again.
        await browser.type("#token-value", "wrong")
        await browser.rendered_after(
            lambda d: d.find_element("css selector", "#token-value").send_keys(Keys.ENTER),
            "the page with a wrong token")
        await browser.wait_for("return !document.getElementById('token').hidden",
                               what="the token box again")
        # The right one: the overview shows the queue, the token goes with every request.
        await browser.type("#token-value", TOKEN)
        await browser.rendered_after(
            lambda d: d.find_element("css selector", "#token button").click(),
            "the page with the token")
        await browser.wait_for(f"return document.querySelector('tr[data-queue={QUEUE}]')",
                               what="the queue listed")
        self.assertTrue(await browser.script("return document.getElementById('token').hidden"))
        self.assertEqual(await browser.script(
            "return sessionStorage.getItem('fireworq.token')"), TOKEN)
        # A reload keeps the token (same tab), and asks for nothing.
        gate.authorizations.clear()
        await browser.open("/queue/" + QUEUE, reload=True)
        self.assertEqual(await browser.text("main h1 .badge"), "running")
        self.assertTrue(gate.authorizations)
        self.assertEqual(set(gate.authorizations), {"Bearer " + TOKEN})
        self.assertEqual(await browser.script("return document.cookie"), "")
        self.assertEqual(gate.cookies, [])
        await browser.assert_clean(self, expected=["401 " + base_url])

    async def test_tokenBoxWithTheDaemonsTokens(self) -> None:
        """Logging in with a token of FIREWORQ_API_TOKENS (docs/configuration.md, API tokens):
        the console's files are public, the API answers 401 until the token is given, then
        every request carries it (the access log shows its scope)."""
        daemon = await Daemon.start(self, "sqlite", env={"FIREWORQ_API_TOKENS": TOKEN + ":admin"})
        browser = await Browser.start(self, daemon.base_url)
        await browser.open("/")
        await browser.wait_for("return !document.getElementById('token').hidden",
                               what="the token box")
        await browser.type("#token-value", TOKEN)
        await browser.rendered_after(
            lambda d: d.find_element("css selector", "#token-value").send_keys(Keys.ENTER),
            "the overview with the token")
        self.assertIn("No queues yet", await browser.text("main tbody"))
        await browser.type("main form input[name=name]", QUEUE)
        await browser.rendered_after(
            lambda d: d.find_element("css selector", "main form button[type=submit]").click(),
            "the new queue's page")
        await browser.open("/queue/" + QUEUE, reload=True)
        self.assertEqual(await browser.text("main h1 .badge"), "running")
        self.assertEqual(await browser.script("return document.cookie"), "")
        await browser.assert_clean(self, expected=["401 " + daemon.base_url])
        lines = [line for line in daemon.json_lines() if "status" in line and "url" in line]
        api = [line for line in lines
               if not line["url"].startswith(("/console", "/healthz"))]
        self.assertTrue([line for line in api if line["status"] == 401])
        put = [line for line in api if line["method"] == "PUT"]
        self.assertEqual([(line["url"], line["status"], line.get("scope")) for line in put],
                         [("/queue/" + QUEUE, 200, "admin")])
        after = api[api.index(put[0]):]
        self.assertEqual({line.get("scope") for line in after}, {"admin"})
