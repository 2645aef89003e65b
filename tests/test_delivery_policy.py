"""The delivery policy (docs/api.md, Delivery policy; docs/worker-protocol.md): retry backoff
and Retry-After, the webhook result mode, delivery headers and signed deliveries.

Retry waits run on a Clock (the dispatcher harness of test_dispatcher); requests go to real
twisted.web workers on 127.0.0.1 (the worker test case of test_delivery); the API checks talk
to a whole in-memory node (apptools). The same features through the daemon on every driver
are in test_delivery_policy_e2e.
"""

from __future__ import annotations

import base64
import email.utils
import time
from typing import Any

import attrs
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request

from apptools import SUCCESS as API_SUCCESS
from test_api import URL, APITestCase
from test_delivery import SUCCESS, WorkerTestCase, make_job, respond
from test_dispatcher import FAILURE, Harness, advance_to, new_job

from fireworq.delivery.policy import REDACTED_SECRET, retry_wait, signature, signing_keys
from fireworq.model import Job, JobOptions, QueueDefinition, WorkerResult

#: Secrets of 32, 24 and 64 bytes (the shortest and longest allowed).
SECRETS = (
    "whsec_" + base64.b64encode(b"k" * 32).decode(),
    "whsec_" + base64.b64encode(b"s" * 24).decode(),
    "whsec_" + base64.b64encode(b"L" * 64).decode(),
)
QUEUE = QueueDefinition("hooks", 200, 10)


def job(fail_count: int = 0, retry_delay: int = 10, options: JobOptions | None = None) -> Job:
    return attrs.evolve(make_job("http://w/"), fail_count=fail_count, retry_delay=retry_delay,
                        retry_count=5, options=options)


class RetryWaitTests(SynchronousTestCase):
    """retry_wait: the wait after attempt number fail_count + 1 failed."""

    def wait(self, attempt: int, queue: QueueDefinition, retry_after: float | None = None,
             draw: float = 0.5, options: JobOptions | None = None) -> int | None:
        return retry_wait(job(attempt - 1, options=options), queue, retry_after, lambda: draw)

    def test_fireworqPolicyLeftToTheStore(self) -> None:
        """Fixed, no cap, no jitter, fireworq results: the store waits retry_delay, as Fireworq
        does, and Retry-After changes nothing."""
        for attempt in (1, 5):
            self.assertIsNone(self.wait(attempt, QUEUE))
            self.assertIsNone(self.wait(attempt, QUEUE, retry_after=3))

    def test_exponential(self) -> None:
        """retry_delay x 2^(attempt-1), in ms."""
        exponential = attrs.evolve(QUEUE, retry_backoff="exponential")
        self.assertEqual([self.wait(n, exponential) for n in (1, 2, 3, 4)],
                         [None, 20_000, 40_000, 80_000])

    def test_capped(self) -> None:
        capped = attrs.evolve(QUEUE, retry_backoff="exponential", retry_max_delay=25)
        self.assertEqual([self.wait(n, capped) for n in (1, 2, 3, 60)],
                         [None, 20_000, 25_000, 25_000])
        # A fixed wait above the cap is capped too.
        self.assertEqual(self.wait(1, attrs.evolve(QUEUE, retry_max_delay=4)), 4_000)

    def test_uncappedStaysBounded(self) -> None:
        """Without a cap of its own the wait stops at a year (the largest retry_delay)."""
        exponential = attrs.evolve(QUEUE, retry_backoff="exponential")
        self.assertEqual(self.wait(1000, exponential), 31536000 * 1000)

    def test_fullJitter(self) -> None:
        """With jitter the wait is drawn from 0 to the computed one."""
        jittered = attrs.evolve(QUEUE, retry_backoff="exponential", retry_jitter=True)
        self.assertEqual(self.wait(3, jittered, draw=0.0), 0)
        self.assertEqual(self.wait(3, jittered, draw=0.25), 10_000)
        self.assertEqual(self.wait(3, jittered, draw=0.999999), 39_999)

    def test_retryAfter(self) -> None:
        """Retry-After replaces the backoff and the jitter, within the cap."""
        capped = attrs.evolve(QUEUE, retry_backoff="exponential", retry_max_delay=60,
                              retry_jitter=True)
        self.assertEqual(self.wait(3, capped, retry_after=2.5), 2_500)
        self.assertEqual(self.wait(3, capped, retry_after=3600), 60_000)
        self.assertEqual(self.wait(3, capped, retry_after=0), 0)
        # The webhook mode alone is enough to follow it.
        webhook = attrs.evolve(QUEUE, result_mode="webhook")
        self.assertEqual(self.wait(1, webhook, retry_after=7), 7_000)
        self.assertIsNone(self.wait(1, webhook))

    def test_jobMembersWin(self) -> None:
        queue = attrs.evolve(QUEUE, retry_backoff="exponential", retry_max_delay=15)
        # retry_delay, as the store waits it (None), within the queue's cap of 15 s.
        self.assertIsNone(self.wait(3, queue, options=JobOptions(retry_backoff="fixed")))
        self.assertEqual(self.wait(3, queue, options=JobOptions(retry_max_delay=0)), 40_000)
        self.assertEqual(self.wait(3, QUEUE, options=JobOptions(
            retry_backoff="exponential", retry_jitter=True), draw=0.5), 20_000)


class BackoffDispatchTests(SynchronousTestCase):
    """Attempt times of a failing job as the dispatcher schedules them, on a Clock: each
    retry is grabbed by the first poll (every 0.2 s) after it is due."""

    def attempts(self, harness: Harness, job: Any, until: float) -> list[float]:
        harness.deliverer.script = lambda _: FAILURE
        [job_id] = harness.push(job)
        harness.activate()
        advance_to(harness.clock, until)
        self.job_id = job_id
        return harness.deliverer.times

    def assertWaits(self, times: list[float], waits: list[float]) -> None:
        """Each attempt comes its wait after the one before, within one poll (0.2 s)."""
        self.assertEqual(len(times), len(waits) + 1, times)
        for before, after, wait in zip(times, times[1:], waits):
            self.assertGreaterEqual(after - before, wait - 1e-6, times)
            self.assertLess(after - before, wait + 0.21, times)

    def test_exponential(self) -> None:
        harness = Harness(retry_backoff="exponential")
        times = self.attempts(harness, new_job(max_retries=4, retry_delay=10), 200)
        self.assertWaits(times, [10, 20, 40, 80])
        self.assertEqual(len(harness.failures()), 1)

    def test_capped(self) -> None:
        harness = Harness(retry_backoff="exponential", retry_max_delay=25)
        times = self.attempts(harness, new_job(max_retries=4, retry_delay=10), 200)
        self.assertWaits(times, [10, 20, 25, 25])

    def test_jitteredWithinBounds(self) -> None:
        """Full jitter: every wait within [0, the capped exponential wait]; the draws come
        from the injected source."""
        draws = iter([0.5, 0.1, 0.9, 0.0])
        harness = Harness(retry_backoff="exponential", retry_max_delay=30, retry_jitter=True,
                          random=lambda: next(draws))
        times = self.attempts(harness, new_job(max_retries=4, retry_delay=10), 200)
        self.assertWaits(times, [5, 2, 27, 0])

    def test_nextTryVisible(self) -> None:
        """The stored job shows the next attempt's time and the retries left."""
        harness = Harness(retry_backoff="exponential")
        self.attempts(harness, new_job(max_retries=3, retry_delay=10), 15)
        stored = harness.stored(self.job_id)
        assert stored is not None
        self.assertEqual(stored.retry_count, 1)
        self.assertEqual(stored.fail_count, 2)
        second = harness.deliverer.times[1]
        self.assertEqual(stored.next_try, int(second * 1000) + 20_000)

    def test_jobMembersWin(self) -> None:
        harness = Harness(retry_backoff="exponential")
        fixed = attrs.evolve(new_job(max_retries=3, retry_delay=10),
                             options=JobOptions(retry_backoff="fixed"))
        self.assertWaits(self.attempts(harness, fixed, 100), [10, 10, 10])

    def test_retryAfterSetsTheNextAttempt(self) -> None:
        harness = Harness(retry_backoff="exponential", retry_max_delay=50)
        answers = iter([attrs.evolve(FAILURE, retry_after=3.0),
                        attrs.evolve(FAILURE, retry_after=3600.0), FAILURE, FAILURE])
        harness.deliverer.script = lambda _: next(answers)
        harness.push(new_job(max_retries=3, retry_delay=10))
        harness.activate()
        advance_to(harness.clock, 200)
        self.assertWaits(harness.deliverer.times, [3, 50, 40])
        self.assertEqual(len(harness.failures()), 1)


def verify(secret: str, seen: Any) -> None:
    """Check a request's signature with the standardwebhooks package (raises when wrong)."""
    headers = {name.decode(): seen.header(name)[0].decode()
               for name in (b"webhook-id", b"webhook-timestamp", b"webhook-signature")}
    Webhook(secret).verify(seen.body, headers, json_parse=False)


class DeliveryHeaderTests(WorkerTestCase):
    async def test_fireworqHeaders(self) -> None:
        """Every delivery names the job, the attempt (1-based), the queue and the category;
        a category that is not printable ASCII is percent-encoded."""
        base, worker, _ = self.start_worker(respond())
        delivered = attrs.evolve(make_job(base), id=77, fail_count=2, category="caf\u00e9 %\n")
        await self.make_deliverer().deliver(delivered, QUEUE)
        [seen] = worker.seen
        self.assertEqual(seen.header(b"fireworq-job-id"), [b"77"])
        self.assertEqual(seen.header(b"fireworq-attempt"), [b"3"])
        self.assertEqual(seen.header(b"fireworq-queue"), [b"hooks"])
        self.assertEqual(seen.header(b"fireworq-category"), [b"caf%C3%A9 %25%0A"])
        self.assertIsNone(seen.header(b"webhook-signature"))

    async def test_headersMerged(self) -> None:
        """The job's headers over the queue's (names case-insensitive); a custom User-Agent
        or Content-Type replaces the daemon's."""
        base, worker, _ = self.start_worker(respond())
        queue = attrs.evolve(QUEUE, headers=(
            ("X-Tenant", "acme"), ("X-Region", "eu"), ("User-Agent", "acme-hooks/1")))
        options = JobOptions(headers=(("x-region", "us"), ("X-Trace", "t\u00e9 1")))
        await self.make_deliverer().deliver(
            attrs.evolve(make_job(base), options=options), queue)
        [seen] = worker.seen
        self.assertEqual(seen.header(b"x-tenant"), [b"acme"])
        self.assertEqual(seen.header(b"x-region"), [b"us"])
        self.assertEqual(seen.header(b"x-trace"), ["t\u00e9 1".encode()])
        self.assertEqual(seen.header(b"user-agent"), [b"acme-hooks/1"])
        self.assertEqual(seen.header(b"content-type"), [b"application/json"])

    async def test_credentialsOnlyToTheFirstHost(self) -> None:
        """A custom Authorization (over the URL's credentials) and Cookie go where the URL's
        credentials go: not to another host a redirect leads to."""
        final_base, final_worker, _ = self.start_worker(respond())
        other = final_base.replace("127.0.0.1", "localhost").encode()

        def redirect(request: Request) -> bytes:
            request.setResponseCode(307)
            request.setHeader(b"location", other + b"/final")
            return b""

        base, worker, _ = self.start_worker(redirect)
        queue = attrs.evolve(QUEUE, headers=(("Authorization", "Bearer t0ken"),
                                             ("Cookie", "a=b"), ("X-Tenant", "acme")))
        await self.make_deliverer().deliver(
            make_job(base.replace("http://", "http://u:p@")), queue)
        self.assertEqual(worker.seen[0].header(b"authorization"), [b"Bearer t0ken"])
        self.assertEqual(worker.seen[0].header(b"cookie"), [b"a=b"])
        [seen] = final_worker.seen
        self.assertIsNone(seen.header(b"authorization"))
        self.assertIsNone(seen.header(b"cookie"))
        self.assertEqual(seen.header(b"x-tenant"), [b"acme"])


class SignatureTests(WorkerTestCase):
    async def signed(self, secrets: tuple[str, ...], handler: Any = None) -> list[Any]:
        base, worker, _ = self.start_worker(handler or respond())
        queue = attrs.evolve(QUEUE, signing_secrets=secrets)
        before = int(time.time())
        await self.make_deliverer().deliver(
            attrs.evolve(make_job(base + "/start"), id=41, fail_count=1), queue)
        for seen in worker.seen:
            self.assertEqual(seen.header(b"webhook-id"), [b"41-2"])
            stamp = int(seen.header(b"webhook-timestamp")[0])
            self.assertTrue(before <= stamp <= time.time() + 1)
        return worker.seen

    async def test_oneSecret(self) -> None:
        [seen] = await self.signed(SECRETS[:1])
        verify(SECRETS[0], seen)
        self.assertEqual(len(seen.header(b"webhook-signature")[0].split(b" ")), 1)
        # A different secret, or a changed body, does not verify.
        other = "whsec_" + base64.b64encode(b"x" * 32).decode()
        self.assertRaises(WebhookVerificationError, verify, other, seen)
        self.assertRaises(WebhookVerificationError, verify, SECRETS[0],
                          attrs.evolve(seen, body=seen.body + b" "))

    async def test_threeSecrets(self) -> None:
        """One signature per secret, space-separated: each secret verifies on its own
        (rotation)."""
        [seen] = await self.signed(SECRETS)
        self.assertEqual(len(seen.header(b"webhook-signature")[0].split(b" ")), 3)
        for secret in SECRETS:
            verify(secret, seen)

    async def test_acrossRedirects(self) -> None:
        """The same webhook-id on every request of an attempt; each is signed over the body
        it carries (none after a 303)."""
        for code in (307, 303):
            def handler(request: Request, code: int = code) -> bytes:
                if request.path == b"/final":
                    return SUCCESS
                request.setResponseCode(code)
                request.setHeader(b"location", b"/final")
                return b""

            first, then = await self.signed(SECRETS[:2], handler)
            self.assertEqual(then.body, b"" if code == 303 else first.body)
            for secret in SECRETS[:2]:
                verify(secret, first)
                verify(secret, then)

    def test_publishedVector(self) -> None:
        """The Standard Webhooks specification's test vector."""
        keys = signing_keys(("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",))
        self.assertEqual(
            signature(keys, b"msg_p5jXN8AQM9LWM0D4loKWxJek", b"1614265330",
                      b'{"test": 2432232314}'),
            b"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")


WEBHOOK = attrs.evolve(QUEUE, result_mode="webhook")
#: (HTTP status, result status) in the webhook mode, row by row (docs/worker-protocol.md).
WEBHOOK_TABLE = [
    (200, "success"), (201, "success"), (202, "success"), (204, "success"), (299, "success"),
    (400, "permanent-failure"), (401, "permanent-failure"), (403, "permanent-failure"),
    (404, "permanent-failure"), (409, "permanent-failure"), (410, "permanent-failure"),
    (422, "permanent-failure"), (499, "permanent-failure"),
    (408, "failure"), (425, "failure"), (429, "failure"),
    (500, "failure"), (502, "failure"), (503, "failure"), (504, "failure"), (599, "failure"),
    # A 3xx that is not followed (no Location) is retried.
    (302, "failure"), (300, "failure"),
]


class WebhookModeTests(WorkerTestCase):
    async def test_table(self) -> None:
        """The HTTP status decides, whatever the body (even a Fireworq result object)."""
        body = b'{"status":"permanent-failure","message":"ignored"}'
        for code, status in WEBHOOK_TABLE:
            base, _, _ = self.start_worker(respond(body, code=code))
            result = await self.make_deliverer().deliver(make_job(base), WEBHOOK)
            expected = "" if code == 204 else "\n" + body.decode()
            self.assertEqual(result, WorkerResult(status, code, f"HTTP {code}{expected}"),
                             code)

    async def test_redirectsFollowed(self) -> None:
        calls: list[bytes] = []

        def handler(request: Request) -> bytes:
            calls.append(request.path)
            if request.path == b"/final":
                request.setResponseCode(202)
                return b""
            request.setResponseCode(308)
            request.setHeader(b"location", b"/final")
            return b""

        base, _, _ = self.start_worker(handler)
        result = await self.make_deliverer().deliver(make_job(base + "/start"), WEBHOOK)
        self.assertEqual(result, WorkerResult("success", 202, "HTTP 202"))
        self.assertEqual(calls, [b"/start", b"/final"])

    async def test_bodyEchoedUpTo1KiB(self) -> None:
        body = "\u00e9".encode() * 1000  # 2000 bytes
        base, _, _ = self.start_worker(respond(body, code=500))
        result = await self.make_deliverer().deliver(make_job(base), WEBHOOK)
        self.assertEqual(result.message, "HTTP 500\n" + "\u00e9" * 512)

    async def test_fireworqModeUnchanged(self) -> None:
        base, _, _ = self.start_worker(respond(code=500))
        result = await self.make_deliverer().deliver(make_job(base), QUEUE)
        self.assertEqual(result, WorkerResult("success", 500, "done"))


class RetryAfterTests(WorkerTestCase):
    async def answer(self, value: bytes, code: int = 503) -> WorkerResult:
        base, _, _ = self.start_worker(respond(b"busy", code, {b"Retry-After": value}))
        return await self.make_deliverer().deliver(make_job(base), WEBHOOK)

    async def test_seconds(self) -> None:
        result = await self.answer(b"120")
        self.assertEqual((result.status, result.retry_after), ("failure", 120.0))

    async def test_httpDate(self) -> None:
        when = email.utils.formatdate(time.time() + 90, usegmt=True).encode()
        result = await self.answer(when, 429)
        assert result.retry_after is not None
        self.assertTrue(85 <= result.retry_after <= 91, result.retry_after)

    async def test_pastDateAndJunk(self) -> None:
        self.assertEqual((await self.answer(b"Wed, 21 Oct 2015 07:28:00 GMT")).retry_after, 0)
        self.assertIsNone((await self.answer(b"soon")).retry_after)

    async def test_notOnSuccess(self) -> None:
        self.assertIsNone((await self.answer(b"5", code=200)).retry_after)


class PolicyAPITests(APITestCase):
    """PUT and GET of the queue members, the job members of a push, and their refusals."""

    def setUp(self) -> None:
        super().setUp()
        self.define()
        self.route()

    def put(self, **members: Any) -> Any:
        return self.node.put("/queue/mail", members)

    def test_members(self) -> None:
        """Set members come after Fireworq's (and failed_job_*); secrets are redacted."""
        response = self.put(
            retry_backoff="exponential", retry_max_delay=600, retry_jitter=True,
            result_mode="webhook", headers={"X-Tenant": "acme", "Authorization": "Bearer x"},
            signing_secrets=list(SECRETS[:2]))
        expected = {
            "name": "mail", "polling_interval": 200, "max_workers": 20,
            "retry_backoff": "exponential", "retry_max_delay": 600, "retry_jitter": True,
            "result_mode": "webhook", "headers": {"X-Tenant": "acme", "Authorization": "Bearer x"},
            "signing_secrets": [REDACTED_SECRET, REDACTED_SECRET],
        }
        self.assertOK(response, expected)
        self.assertOK(self.node.get("/queue/mail"), expected)
        self.assertOK(self.node.get("/queues"), [expected])
        self.assertNotIn(SECRETS[0].encode(), response.body)
        self.assertEqual(self.stored().signing_secrets, SECRETS[:2])

    def stored(self) -> QueueDefinition:
        definition = self.node.manager.definition("mail")
        assert definition is not None
        return definition

    def test_defaultsNotShown(self) -> None:
        self.assertJSONResponse(
            self.put(retry_backoff="fixed", retry_max_delay=0, retry_jitter=False,
                     result_mode="fireworq", headers={}),
            200, b'{"name":"mail","polling_interval":200,"max_workers":20}')

    def test_redactedSecretsKept(self) -> None:
        """A redacted secret sent back stands for the stored one in the same rank among the
        redacted: rotation adds the new one and keeps the old, then drops the old."""
        self.put(signing_secrets=[SECRETS[0]])
        self.assertEqual(self.put(signing_secrets=[REDACTED_SECRET]).status, 200)
        self.assertEqual(self.stored().signing_secrets, SECRETS[:1])
        self.put(signing_secrets=[SECRETS[1], REDACTED_SECRET])
        self.assertEqual(self.stored().signing_secrets, (SECRETS[1], SECRETS[0]))
        self.put(signing_secrets=[REDACTED_SECRET])
        self.assertEqual(self.stored().signing_secrets, (SECRETS[1],))
        self.assertError(
            self.put(signing_secrets=[REDACTED_SECRET, REDACTED_SECRET]), 400,
            "Field 'signing_secrets' has more redacted secrets than the queue has stored")
        # Left out: the queue is no longer signed.
        self.put()
        self.assertEqual(self.stored().signing_secrets, ())

    def test_secretsRefused(self) -> None:
        short = "whsec_" + base64.b64encode(b"x" * 23).decode()
        long = "whsec_" + base64.b64encode(b"x" * 65).decode()
        invalid = ("Invalid secret 1 in 'signing_secrets': must be 'whsec_' and the base64 of"
                   " 24 to 64 bytes")
        for value in ([short], [long], ["whsec_!!!!"], [SECRETS[0][6:]], [""]):
            response = self.put(signing_secrets=value)
            self.assertError(response, 400, invalid)
            if value[0]:
                self.assertNotIn(value[0].encode(), response.body)
        count = "Field 'signing_secrets' must have 1 to 3 secrets"
        self.assertError(self.put(signing_secrets=[]), 400, count)
        self.assertError(self.put(signing_secrets=list(SECRETS) + [SECRETS[0]]), 400, count)
        self.assertError(self.put(signing_secrets=[SECRETS[0], SECRETS[0]]), 400,
                         "Field 'signing_secrets' has the same secret twice")
        for value in ("whsec_x", [1], {"a": "b"}):
            self.assertError(self.put(signing_secrets=value), 400,
                             "Field 'signing_secrets' must be an array of strings")

    def test_choicesRefused(self) -> None:
        self.assertError(self.put(retry_backoff="linear"), 400,
                         "Field 'retry_backoff' must be one of: fixed, exponential")
        self.assertError(self.put(result_mode="json"), 400,
                         "Field 'result_mode' must be one of: fireworq, webhook")
        self.assertError(self.put(retry_jitter="yes"), 400,
                         "Field 'retry_jitter' must be a boolean")
        self.assertError(self.put(retry_max_delay=31536001), 400,
                         "Field 'retry_max_delay' must be an integer from 0 to 31536000")

    def test_headersRefused(self) -> None:
        """400 naming the header, for the queue's headers and the job's alike."""
        refused = ["Host", "content-length", "Transfer-Encoding", "Connection", "Keep-Alive",
                   "Upgrade", "TE", "Trailer", "Proxy-Authorization", "Fireworq-Job-Id",
                   "fireworq-anything", "Webhook-Signature", "webhook-id", "Expect",
                   "Accept-Encoding", "Content-Encoding"]
        for name in refused:
            self.assertError(self.put(headers={name: "x"}), 400,
                             f"Header not allowed in 'headers': {name}")
            self.assertError(self.push_error(headers={name: "x"}), 400,
                             f"Header not allowed in 'headers': {name}")
        for name in ("X A", "X:A", "", "X\u00e9", "X\r\nY"):
            self.assertError(self.put(headers={name: "x"}), 400,
                             f"Invalid header name in 'headers': {name!r}")
        for value in ("a\r\nX-Evil: 1", "a\nb", "a\x00", "a\rb", "\x7f"):
            self.assertError(self.put(headers={"X-A": value}), 400,
                             "Header X-A in 'headers' has a control character (CR, LF, NUL, ...)")
        self.assertError(self.put(headers={"X-A": 1}), 400,
                         "Header X-A in 'headers' must be a string")
        self.assertError(self.put(headers={"X-A": "1", "x-a": "2"}), 400,
                         "Header given twice in 'headers': x-a")
        self.assertError(self.put(headers=["X-A"]), 400,
                         "Field 'headers' must be an object of strings")
        many = {"X-%d" % n: "v" for n in range(33)}
        self.assertError(self.put(headers=many), 400,
                         "Field 'headers' has more than 32 headers")
        self.assertEqual(self.put(headers=dict(list(many.items())[:32])).status, 200)
        big = {"X-A": "v" * 4096, "X-B": "v" * 4096}
        self.assertError(self.put(headers=big), 400,
                         "Field 'headers' is longer than 8192 bytes (at header X-B)")
        self.assertEqual(self.put(headers={"X-A": "v" * 4000, "X-B": "v" * 4000}).status, 200)
        self.assertEqual(self.put(headers={"X-A": "tab\there \u00e9"}).status, 200)

    def push_error(self, **members: Any) -> Any:
        return self.node.post("/job/send_welcome", {"url": URL, **members})

    def test_jobMembers(self) -> None:
        """A push with job members answers as any push (docs/api.md, Pushing jobs: the
        answer is unchanged), and the delivery sees them."""
        plain = self.node.post("/job/send_welcome", {"url": URL, "retry_delay": 3})
        with_members = self.node.post("/job/send_welcome", {
            "url": URL, "retry_delay": 3, "retry_backoff": "exponential",
            "retry_max_delay": 60, "retry_jitter": True, "headers": {"X-Trace": "abc"}})
        self.assertEqual(with_members.status, 200)
        self.assertEqual(with_members.body.replace(b'"id":2', b'"id":1'), plain.body)
        self.node.advance(0)
        delivered = {job.id: job for job in self.node.deliverer.delivered}
        self.assertIsNone(delivered[1].options)
        self.assertEqual(delivered[2].options, JobOptions(
            retry_backoff="exponential", retry_max_delay=60, retry_jitter=True,
            headers=(("X-Trace", "abc"),)))
        self.node.deliverer.finish_all(API_SUCCESS)

    def test_jobMembersInABatch(self) -> None:
        """Each job of a batch push (POST /jobs) carries its own members."""
        response = self.node.post("/jobs/send_welcome", {"jobs": [
            {"url": URL, "headers": {"X-N": "1"}}, {"url": URL},
            {"url": URL, "retry_backoff": "exponential"}]})
        self.assertEqual(response.status, 200, response.body)
        self.node.advance(0)
        delivered = sorted(self.node.deliverer.delivered, key=lambda job: job.id)
        self.assertEqual([job.options for job in delivered], [
            JobOptions(headers=(("X-N", "1"),)), None, JobOptions(retry_backoff="exponential")])
        self.node.deliverer.finish_all(API_SUCCESS)
        refused = self.node.post("/jobs/send_welcome", {"jobs": [
            {"url": URL}, {"url": URL, "headers": {"Host": "x"}}]})
        self.assertError(refused, 400, "Job 1: Header not allowed in 'headers': Host")

    def test_jobMembersRefused(self) -> None:
        self.assertError(self.push_error(retry_backoff="linear"), 400,
                         "Field 'retry_backoff' must be one of: fixed, exponential")
        self.assertError(self.push_error(retry_jitter=1), 400,
                         "Field 'retry_jitter' must be a boolean")
        self.assertError(self.push_error(retry_max_delay=-1), 400,
                         "Field 'retry_max_delay' must be an integer from 0 to 31536000")
        self.assertError(self.push_error(headers="X-A: 1"), 400,
                         "Field 'headers' must be an object of strings")
