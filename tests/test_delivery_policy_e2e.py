"""The delivery policy through the daemon, on every driver (docs/api.md, Delivery policy;
docs/worker-protocol.md): a signed, webhook-mode queue with headers and exponential
backoff, a job with members of its own, a worker that asks for time with Retry-After (in
both forms) and then refuses the job for good. The harness is ``tests/e2e.py``."""

from __future__ import annotations

import base64
import email.utils
import json
from typing import Any

from standardwebhooks.webhooks import Webhook
from twisted.trial.unittest import TestCase

from e2e import Answer, DaemonScenarios, Received, Worker, eventually, now

from fireworq.times import parse_ms

QUEUE = "hooks"
CATEGORY = "notify"
SECRETS = ["whsec_" + base64.b64encode(b"%d" % n * 32).decode() for n in (1, 2)]
REDACTED = "whsec_\u2026(redacted)"

def answers(received: Received, attempts: list[Received]) -> Answer:
    attempts.append(received)
    if len(attempts) == 1:
        return Answer(b"busy", 503, headers=(("Retry-After", "1"),))
    if len(attempts) == 2:
        when = email.utils.formatdate(now() + 2, usegmt=True)
        return Answer(b"slow down", 429, headers=(("Retry-After", when),))
    return Answer(b"no such user", 404, content_type="text/plain")


class PolicyE2EMixin(DaemonScenarios):
    database_prefix = "fwpol"

    async def start_worker(self) -> Worker:
        self.attempts: list[Received] = []
        return await Worker.start(self, lambda r: answers(r, self.attempts))

    async def test_policy(self) -> None:
        api = self.daemon.api
        stored = await api.put_queue(
            QUEUE, retry_backoff="exponential", retry_max_delay=30, result_mode="webhook",
            headers={"X-Tenant": "acme", "X-Trace": "queue"}, signing_secrets=SECRETS)
        self.assertEqual(stored["signing_secrets"], [REDACTED, REDACTED])
        # Sent back as read, the secrets stay.
        await api.ok("PUT", f"/queue/{QUEUE}", json.dumps(stored))
        await api.put_routing(CATEGORY, QUEUE)
        reply = await api.request("POST", f"/job/{CATEGORY}", json.dumps({
            "url": self.worker.url("/hook"), "payload": {"user": 42}, "max_retries": 5,
            "retry_delay": 60, "retry_jitter": False, "headers": {"X-Trace": "job-7"}}))
        self.assertEqual(reply.code, 200, reply.body)
        job_id = reply.json["id"]

        first, = await self.worker.wait_for(1)
        # The next attempt's time is the one the worker asked for, not 60 s.
        async def retried() -> Any:
            job = await api.ok("GET", f"/queue/{QUEUE}/job/{job_id}")
            return job if job["fail_count"] == 1 else None
        job = await eventually(retried, what="the first retry to be written")
        self.assertEqual(job["max_retries"], 5)
        next_try = parse_ms(job["next_try"])
        assert next_try is not None
        # Retry-After: 1 from when the outcome was written, soon after the answer.
        self.assertTrue(first.time * 1000 + 900 <= next_try <= first.time * 1000 + 4000,
                        (first.time, job))
        second, third = (await self.worker.wait_for(3, timeout=15))[1:]
        self.assertGreaterEqual(second.time - first.time, 0.9)
        self.assertGreaterEqual(third.time - second.time, 0.9)
        self.assertLess(third.time - second.time, 6)  # not the 30 s (the cap) of the backoff

        for attempt, received in enumerate((first, second, third), 1):
            self.assertEqual(received.header("Fireworq-Job-Id"), str(job_id))
            self.assertEqual(received.header("Fireworq-Attempt"), str(attempt))
            self.assertEqual(received.header("Fireworq-Queue"), QUEUE)
            self.assertEqual(received.header("Fireworq-Category"), CATEGORY)
            self.assertEqual(received.header("X-Tenant"), "acme")
            self.assertEqual(received.header("X-Trace"), "job-7")
            self.assertEqual(received.header("webhook-id"), f"{job_id}-{attempt}")
            headers = {name: received.header(name) or "" for name in
                       ("webhook-id", "webhook-timestamp", "webhook-signature")}
            for secret in SECRETS:
                Webhook(secret).verify(received.body, headers, json_parse=False)
            self.assertEqual(json.loads(received.body), {"user": 42})

        async def failed() -> Any:
            entries = await api.failed(QUEUE)
            return entries or None
        [entry] = await eventually(failed, what="the failure-log entry")
        self.assertEqual(entry["result"], {
            "status": "permanent-failure", "code": 404, "message": "HTTP 404\nno such user"})
        self.assertEqual(entry["fail_count"], 3)
        self.assertNotIn(SECRETS[0], self.daemon.stdout() + self.daemon.stderr())


class SqlitePolicyE2ETests(PolicyE2EMixin, TestCase):
    driver = "sqlite"


class InMemoryPolicyE2ETests(PolicyE2EMixin, TestCase):
    driver = "in-memory"


class MySQLPolicyE2ETests(PolicyE2EMixin, TestCase):
    driver = "mysql"
