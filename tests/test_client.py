"""fireworq.client against a real daemon: every endpoint, errors as APIError, cursor paging as
iterators, in both flavours (blocking, run in a thread here so the in-process worker keeps
answering; and Twisted).

One scenario (L{ClientScenario}) runs once per flavour; each flavour says how to call a
method and how to walk a list.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

import fireworq
from e2e import Daemon, Received, Worker, eventually, failure, free_port, success
from fireworq.client import (
    APIError,
    Client,
    FailedJob,
    Job,
    Node,
    ProcessStats,
    PushedJob,
    Queue,
    QueueStats,
    RetriedJobs,
    Routing,
)
from fireworq.client.twisted import TwistedClient

CATEGORY = "welcome/new users"  # a slash and a space: both must reach the daemon intact


def fail_when_asked(received: Received) -> Any:
    body = received.json if received.body else None
    return failure("asked to fail", 500) if isinstance(body, dict) and body.get("fail") else success()


class ClientScenario:
    """Every endpoint of docs/api.md through one flavour of the client."""

    client: Any

    # What a flavour provides.

    def connect(self, case: TestCase, server: str, token: str | None = None) -> Any:
        raise NotImplementedError

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def walk(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        raise NotImplementedError

    # The scenario.

    async def start(self: Any) -> tuple[Daemon, Worker]:
        worker = await Worker.start(self, fail_when_asked)
        daemon = await Daemon.start(self, "sqlite")
        self.client = self.connect(self, daemon.base_url)
        return daemon, worker

    async def test_daemon(self: Any) -> None:
        """When the daemon's own endpoints are called, each answers its typed value."""
        daemon, _ = await self.start()
        c = self.client
        self.assertEqual(await self.call(c.version),
                         f"fireworq-py {fireworq.__version__} (Fireworq 1.5 compatible)")
        self.assertIs(await self.call(c.healthy), True)
        self.assertIs(await self.call(c.ready), True)
        self.assertEqual((await self.call(c.settings))["bind"], f"127.0.0.1:{daemon.port}")
        stats = await self.call(c.stats)
        self.assertIsInstance(stats, ProcessStats)
        self.assertEqual((stats.pid, stats.version), (daemon.pid, fireworq.__version__))
        self.assertIn("# TYPE fireworq_jobs_pushed_total counter", await self.call(c.metrics))
        document = await self.call(c.openapi)
        self.assertEqual((document["openapi"], document["info"]["version"]),
                         ("3.1.0", fireworq.__version__))

    async def test_definitions(self: Any) -> None:
        """When queues and routings are defined, read, listed and deleted, the answers are the
        definitions as stored."""
        daemon, _ = await self.start()
        c = self.client
        mail = await self.call(c.put_queue, "mail", max_workers=3, max_dispatches_per_second=2.5,
                               max_burst_size=5)
        self.assertEqual(mail, Queue("mail", 100, 3, 2.5, 5))
        self.assertEqual(mail.raw, {"name": "mail", "polling_interval": 100, "max_workers": 3,
                                    "max_dispatches_per_second": 2.5, "max_burst_size": 5})
        self.assertEqual(await self.call(c.queue, "mail"), mail)
        self.assertEqual(await self.call(c.put_queue, "plain"), Queue("plain", 200, 20, 0, 0))
        self.assertEqual([q.name for q in await self.call(c.queues)], ["mail", "plain"])
        routing = await self.call(c.put_routing, CATEGORY, "mail")
        self.assertEqual(routing, Routing(CATEGORY, "mail"))
        self.assertEqual(await self.call(c.routing, CATEGORY), routing)
        self.assertEqual(await self.call(c.routings), [routing])
        self.assertEqual(await self.call(c.delete_routing, CATEGORY), routing)
        self.assertEqual(await self.call(c.routings), [])
        stats = await self.call(c.queue_stats, "mail")
        self.assertIsInstance(stats, QueueStats)
        self.assertEqual(stats.total_workers, 3)
        self.assertEqual(set(await self.call(c.queues_stats)), {"mail", "plain"})
        node = await self.call(c.node, "mail")
        self.assertEqual(node, Node(str(daemon.pid), node.host))
        self.assertEqual(await self.call(c.delete_queue, "plain"), Queue("plain", 200, 20, 0, 0))
        self.assertEqual([q.name for q in await self.call(c.queues)], ["mail"])

    async def test_batchAndUniquePushes(self: Any) -> None:
        """When jobs are pushed in a batch and with unique keys (member or header), the
        answers come in order, and a push whose key was seen is marked duplicate and stores
        nothing; an invalid job of a batch is an APIError 400 naming its index."""
        from fireworq.client import job_members
        _, worker = await self.start()
        c = self.client
        await self.call(c.put_queue, "mail", max_workers=2)
        await self.call(c.put_routing, CATEGORY, "mail")
        url = worker.url("/send")
        batch = await self.call(c.push_batch, CATEGORY, [
            job_members(url, {"n": 0}, run_after=600, unique_key="k0"),
            job_members(url, payload_json='{"n": 1.50}', run_after=600),
            {"url": url, "payload": {"n": 2}, "run_after": 600, "unique_key": "k0"},
        ])
        self.assertEqual([(p.payload, p.duplicate) for p in batch],
                         [({"n": 0}, False), ({"n": 1.5}, False), ({"n": 0}, True)])
        self.assertEqual(batch[2].id, batch[0].id)
        first = await self.call(c.push, CATEGORY, url, {"n": 3}, run_after=600,
                                idempotency_key="k1")
        again = await self.call(c.push, CATEGORY, url, {"n": 4}, unique_key="k1")
        self.assertEqual((first.duplicate, again.duplicate, again), (False, True, first))
        with self.assertRaises(APIError) as caught:
            await self.call(c.push_batch, CATEGORY, [job_members(url), {"payload": 1}])
        self.assertEqual((caught.exception.code, caught.exception.message),
                         (400, "Job 1: Missing field: url"))
        deferred = await self.walk(c.jobs, "mail", "deferred")
        self.assertEqual(sorted(j.id for j in deferred), [batch[0].id, batch[1].id, first.id])

    async def test_jobs(self: Any) -> None:
        """When jobs are pushed and inspected, the push answers the accepted job, a raw payload
        reaches the worker byte for byte, and lists walk every page."""
        _, worker = await self.start()
        c = self.client
        await self.call(c.put_queue, "mail", max_workers=2)
        await self.call(c.put_routing, CATEGORY, "mail")
        pushed = await self.call(c.push, CATEGORY, worker.url("/send"),
                                 payload_json='{"amount": 1.50,  "to": "x"}')
        self.assertIsInstance(pushed, PushedJob)
        self.assertEqual((pushed.queue_name, pushed.category, pushed.payload),
                         ("mail", CATEGORY, {"amount": 1.5, "to": "x"}))
        [received] = await worker.wait_for(1)
        self.assertEqual(received.body, b'{"amount": 1.50,  "to": "x"}')

        later = [await self.call(c.push, CATEGORY, worker.url(), {"n": n}, run_after=600 + n,
                                 max_retries=2, retry_delay=5, timeout=9) for n in range(5)]
        walked = await self.walk(c.jobs, "mail", "deferred", page_size=2)
        self.assertEqual([j.id for j in walked], [p.id for p in reversed(later)])
        self.assertTrue(all(isinstance(j, Job) for j in walked))
        first = walked[-1]
        self.assertEqual((first.payload, first.status, first.max_retries, first.retry_delay,
                          first.timeout), ({"n": 0}, "claimed", 2, 5, 9))
        self.assertIsInstance(first.next_try, datetime)
        self.assertGreater(first.next_try, first.created_at)
        ascending = await self.walk(c.jobs, "mail", "deferred", order="asc", limit=3)
        self.assertEqual([j.id for j in ascending], [p.id for p in later[:3]])
        page = await self.call(c.jobs_page, "mail", "deferred", limit=4)
        self.assertEqual(len(page.items), 4)
        rest = await self.call(c.jobs_page, "mail", "deferred", limit=4, cursor=page.next_cursor)
        self.assertEqual(([j.id for j in rest.items], rest.next_cursor), ([later[0].id], ""))
        self.assertEqual(await self.walk(c.jobs, "mail", "waiting"), [])
        self.assertEqual(await self.call(c.job, "mail", later[0].id), first)
        self.assertEqual(await self.call(c.delete_job, "mail", later[0].id), first)
        with self.assertRaises(APIError) as raised:
            await self.call(c.job, "mail", later[0].id)
        self.assertEqual((raised.exception.code, raised.exception.message),
                         (404, f"No such job: {later[0].id}"))

    async def test_failure_log(self: Any) -> None:
        """When jobs fail, the failure log lists them page by page, and entries can be read
        and deleted."""
        _, worker = await self.start()
        c = self.client
        await self.call(c.put_queue, "mail", max_workers=4)
        await self.call(c.put_routing, CATEGORY, "mail")
        pushed = [await self.call(c.push, CATEGORY, worker.url(), {"fail": True, "n": n})
                  for n in range(3)]

        async def all_failed() -> list[FailedJob]:
            found = await self.walk(c.failed, "mail", page_size=2)
            return found if len(found) == 3 else []
        failed = await eventually(all_failed, what="3 failure-log entries")
        self.assertEqual(sorted(f.job_id for f in failed), sorted(p.id for p in pushed))
        entry = failed[0]
        self.assertEqual((entry.result.status, entry.result.code, entry.result.message,
                          entry.fail_count), ("failure", 500, "asked to fail", 1))
        self.assertEqual(await self.call(c.failed_job, "mail", entry.id), entry)
        self.assertEqual(len(await self.walk(c.failed, "mail", order="created", limit=2)), 2)
        self.assertEqual(await self.call(c.delete_failed_job, "mail", entry.id), entry)
        self.assertEqual(len(await self.walk(c.failed, "mail")), 2)

    async def test_retry_and_pause(self: Any) -> None:
        """When a queue is paused, failed jobs retried one by one and in bulk wait in it; when
        it is resumed they are delivered; bulk delete empties the log."""
        _, worker = await self.start()
        c = self.client
        await self.call(c.put_queue, "mail", max_workers=4, more={"failed_job_ttl": 3600})
        await self.call(c.put_routing, CATEGORY, "mail")
        for n in range(4):
            await self.call(c.push, CATEGORY, worker.url(), {"fail": True, "n": n})

        async def entries() -> list[FailedJob]:
            found = await self.walk(c.failed, "mail")
            return found if len(found) == 4 else []
        failed = await eventually(entries, what="4 failure-log entries")
        paused = await self.call(c.pause_queue, "mail")
        self.assertEqual((paused.paused, paused.failed_job_ttl, paused.failed_job_limit),
                         (True, 3600, 0))
        self.assertIs((await self.call(c.queue, "mail")).paused, True)
        one = await self.call(c.retry_failed_job, "mail", failed[0].id, run_after=0)
        self.assertIsInstance(one, PushedJob)
        self.assertEqual(one.payload, failed[0].payload)
        with self.assertRaises(APIError) as raised:
            await self.call(c.retry_failed_job, "mail", failed[0].id)
        self.assertEqual(raised.exception.message, f"No such failed job: {failed[0].id}")
        bulk = await self.call(c.retry_failed, "mail", limit=2)
        self.assertIsInstance(bulk, RetriedJobs)
        self.assertEqual((bulk.retried, len(bulk.jobs)), (2, 2))
        waiting = await self.walk(c.jobs, "mail", "waiting")
        self.assertEqual(sorted(j.id for j in waiting), sorted([one.id, *bulk.jobs]))
        self.assertEqual(await self.call(c.delete_failed, "mail",
                                         failed_before=datetime(2000, 1, 1, tzinfo=timezone.utc)),
                         0)
        self.assertEqual(await self.call(c.delete_failed, "mail", category=CATEGORY), 1)
        resumed = await self.call(c.resume_queue, "mail")
        self.assertIs(resumed.paused, False)
        self.assertNotIn("paused", resumed.raw)
        # The three retried jobs run again, and fail again (the worker is asked to).
        async def three_failed_again() -> bool:
            return len(await self.walk(c.failed, "mail")) == 3
        await eventually(three_failed_again, what="the retried jobs to run and fail")

    async def test_errors(self: Any) -> None:
        """When the daemon answers an error, it is an APIError with its code and message; when
        nothing answers, an APIError with code 0."""
        daemon, _ = await self.start()
        c = self.client
        for method, args, code, message in [
            (c.queue, ("nope",), 404, "No such queue: nope"),
            (c.push, ("cat", "ftp://x/"), 400,
             "Invalid url: must be an absolute http or https URL"),
            (c.put_queue, ("q",), None, None),
            (c.put_routing, ("cat", "nope"), 404, "No such queue: nope"),
        ]:
            if code is None:
                await self.call(method, *args)
                continue
            with self.assertRaises(APIError) as raised:
                await self.call(method, *args)
            self.assertEqual((raised.exception.code, raised.exception.message), (code, message))
        self.assertEqual(str(raised.exception), "404 Not Found: No such queue: nope")
        nobody = self.connect(self, f"http://127.0.0.1:{free_port()}")
        with self.assertRaises(APIError) as raised:
            await self.call(nobody.queues)
        self.assertEqual(raised.exception.code, 0)
        self.assertIn("cannot reach", raised.exception.message)

    async def test_token(self: Any) -> None:
        """When a token is given, every request carries it as a bearer token."""
        worker = await Worker.start(self)
        client = self.connect(self, worker.url(""), token="s3cret")
        await self.call(client.healthy)
        [received] = await worker.wait_for(1)
        self.assertEqual((received.path, received.header("authorization")),
                         ("/healthz", "Bearer s3cret"))

    async def test_daemonWithTokens(self: Any) -> None:
        """Against a daemon with API tokens (docs/api.md, Authentication), a client with a
        token of the right scope works, one without gets 401 and one with too small a scope
        403, as APIError."""
        daemon = await Daemon.start(self, "in-memory", ["--api-tokens=adm1n:admin,r3ad:read"])
        admin = self.connect(self, daemon.base_url, token="adm1n")
        reader = self.connect(self, daemon.base_url, token="r3ad")
        anonymous = self.connect(self, daemon.base_url)
        await self.call(admin.put_queue, "q")
        self.assertEqual([q.name for q in await self.call(reader.queues)], ["q"])
        self.assertTrue(await self.call(anonymous.healthy))
        for client, method, args, code, message in [
            (anonymous, "queues", (), 401,
             "Missing API token: send 'Authorization: Bearer <token>'"),
            (reader, "put_queue", ("q2",), 403, "API token scope read does not allow PUT /queue/q2"),
        ]:
            with self.assertRaises(APIError) as raised:
                await self.call(getattr(client, method), *args)
            self.assertEqual((raised.exception.code, raised.exception.message), (code, message))


class BlockingClientTests(ClientScenario, TestCase):
    def connect(self, case: TestCase, server: str, token: str | None = None) -> Client:
        client = Client(server, token=token)
        case.addCleanup(client.close)
        return client

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await deferToThread(method, *args, **kwargs)

    async def walk(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        return await deferToThread(lambda: list(method(*args, **kwargs)))  # type: ignore[no-any-return]


class TwistedClientTests(ClientScenario, TestCase):
    def connect(self, case: TestCase, server: str, token: str | None = None) -> TwistedClient:
        client = TwistedClient(server, token=token)
        case.addCleanup(client.close)
        return client

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await method(*args, **kwargs)

    async def walk(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        return [item async for item in method(*args, **kwargs)]


class OfflineTests(TestCase):
    def test_server_address(self) -> None:
        """When the server is given without scheme, or behind a path prefix, requests go to
        the right place; anything but http(s) is refused."""
        self.assertEqual(Client("127.0.0.1:9").address.url, "http://127.0.0.1:9")
        self.assertEqual(Client("https://jobs.example/fq/").address.prefix, "/fq")
        self.assertRaises(ValueError, Client, "ftp://x/")

    def test_push_body(self) -> None:
        """When a push is built, payload_json is sent verbatim and members left out are not
        sent."""
        from fireworq.client import api
        body = api.push("c", "http://w/", payload_json='{"a": 1.50}', retry_delay=3).request.body
        self.assertEqual(body, b'{"url":"http://w/","retry_delay":3,"payload":{"a": 1.50}}')
        self.assertEqual(json.loads(api.push("c", "http://w/", "text").request.body or b""),
                         {"url": "http://w/", "payload": "text"})
        self.assertRaises(ValueError, api.push, "c", "http://w/", 1, payload_json="1")
        keyed = api.push("c", "http://w/", unique_key="k", idempotency_key="h").request
        self.assertEqual((keyed.body, keyed.headers),
                         (b'{"url":"http://w/","unique_key":"k"}', (("Idempotency-Key", "h"),)))
        batch = api.push_batch("c", [api.job_members("http://w/", payload_json="[1 ]")])
        self.assertEqual((batch.request.path, batch.request.body),
                         ("/jobs/c", b'{"jobs":[{"url":"http://w/","payload":[1 ]}]}'))

    def test_values_checked(self) -> None:
        """When an answer's members are not of their documented types, that is an
        UnexpectedAnswer; members a newer daemon adds are kept in raw."""
        from fireworq.client import UnexpectedAnswer
        self.assertRaises(UnexpectedAnswer, Queue.from_json, [])
        self.assertRaises(UnexpectedAnswer, Queue.from_json, {"name": "q", "max_workers": "2"})
        self.assertRaises(UnexpectedAnswer, Queue.from_json, {"name": "q", "max_workers": True})
        self.assertRaises(UnexpectedAnswer, Queue.from_json, {"name": "q", "max_workers": 2,
                                                              "paused": "yes"})
        queue = Queue.from_json({"name": "q", "max_workers": 2, "paused": True, "newer": 1})
        self.assertEqual((queue, queue.raw["newer"]), (Queue("q", 0, 2, 0, 0, paused=True), 1))

    def test_put_queue_body(self) -> None:
        """When a queue is put, named parameters beat ``more`` and absent ones are not sent."""
        from fireworq.client import api
        body = api.put_queue("q", max_workers=4, more={"max_workers": 1, "x": True}).request.body
        self.assertEqual(json.loads(body or b""), {"max_workers": 4, "x": True})

    def test_delivery_policy(self) -> None:
        """The delivery policy members (docs/api.md, Delivery policy) go in put_queue and
        push bodies when given, and read back from a queue, at their defaults when left
        out."""
        from fireworq.client import api
        body = api.put_queue("q", retry_backoff="exponential", retry_max_delay=60,
                             retry_jitter=True, result_mode="webhook",
                             headers={"X-Tenant": "acme"},
                             signing_secrets=("whsec_\u2026(redacted)",)).request.body
        self.assertEqual(json.loads(body or b""), {
            "retry_backoff": "exponential", "retry_max_delay": 60, "retry_jitter": True,
            "result_mode": "webhook", "headers": {"X-Tenant": "acme"},
            "signing_secrets": ["whsec_\u2026(redacted)"]})
        body = api.push("c", "http://w/", retry_backoff="fixed", retry_jitter=False,
                        retry_max_delay=0, headers={"X-A": "1"}).request.body
        self.assertEqual(json.loads(body or b""), {
            "url": "http://w/", "retry_backoff": "fixed", "retry_max_delay": 0,
            "retry_jitter": False, "headers": {"X-A": "1"}})
        plain = Queue.from_json({"name": "q", "max_workers": 2})
        self.assertEqual((plain.retry_backoff, plain.retry_max_delay, plain.retry_jitter,
                          plain.result_mode, plain.headers, plain.signing_secrets),
                         ("fixed", 0, False, "fireworq", {}, ()))
        shown = Queue.from_json({
            "name": "q", "max_workers": 2, "retry_backoff": "exponential",
            "retry_max_delay": 9, "retry_jitter": True, "result_mode": "webhook",
            "headers": {"A": "b"}, "signing_secrets": ["whsec_\u2026(redacted)"]})
        self.assertEqual((shown.retry_backoff, shown.retry_max_delay, shown.retry_jitter,
                          shown.result_mode, shown.headers, shown.signing_secrets),
                         ("exponential", 9, True, "webhook", {"A": "b"},
                          ("whsec_\u2026(redacted)",)))
        from fireworq.client import UnexpectedAnswer
        self.assertRaises(UnexpectedAnswer, Queue.from_json,
                          {"name": "q", "max_workers": 2, "headers": {"A": 1}})
        self.assertRaises(UnexpectedAnswer, Queue.from_json,
                          {"name": "q", "max_workers": 2, "retry_jitter": 1})
