"""End to end: batch pushes and idempotent pushes (docs/api.md, POST /jobs and Idempotent
pushes) on the real daemon with a real worker, on each storage driver; and one key pushed
at once through two MySQL nodes.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import Daemon, DaemonScenarios, Worker, eventually, gather, now, sleep

QUEUE = "pushes"
CATEGORY = "pushes_job"

class PushesMixin(DaemonScenarios):
    database_prefix = "fwpushes"

    async def _setUp(self) -> None:
        await super()._setUp()
        await self.daemon.api.put_queue(QUEUE, max_workers=50, polling_interval=100)
        await self.daemon.api.put_routing(CATEGORY, QUEUE)

    async def batch(self, jobs: list[Any], daemon: Daemon | None = None) -> Any:
        return await (daemon or self.daemon).api.request(
            "POST", f"/jobs/{CATEGORY}", json.dumps({"jobs": jobs}), timeout=30)

    async def nothing_delivered(self, seconds: float) -> None:
        deadline = now() + seconds
        while now() < deadline:
            self.assertEqual(self.worker.received, [])
            await sleep(0.1)

    async def test_batch_of_1000_delivered(self) -> None:
        """A batch of 1000 jobs is answered in order and every job is delivered once, with
        its payload as sent."""
        url = self.worker.url("/batch")
        reply = await self.batch([{"url": url, "payload": {"n": n}} for n in range(1000)])
        self.assertEqual(reply.code, 200, reply.body[:300])
        answers = reply.json["jobs"]
        self.assertEqual([answer["payload"] for answer in answers],
                         [{"n": n} for n in range(1000)])
        self.assertEqual(len({answer["id"] for answer in answers}), 1000)
        received = await self.worker.wait_for(1000, timeout=60)
        self.assertEqual(sorted(json.loads(r.body)["n"] for r in received), list(range(1000)))
        await sleep(0.5)
        self.assertEqual(len(self.worker.received), 1000)
        stats = await self.daemon.api.stats(QUEUE)
        self.assertEqual(stats["total_pushes"], 1000)

    async def test_invalid_job_stores_nothing(self) -> None:
        """A batch with one invalid job is 400 naming it, and none of its jobs is stored
        or delivered."""
        url = self.worker.url("/batch")
        jobs: list[Any] = [{"url": url, "payload": {"n": n}} for n in range(1000)]
        jobs[517] = {"payload": {"n": 517}}
        reply = await self.batch(jobs)
        self.assertEqual((reply.code, reply.json["message"]),
                         (400, "Job 517: Missing field: url"))
        await self.nothing_delivered(1.5)
        waiting = await self.daemon.api.ok("GET", f"/queue/{QUEUE}/waiting")
        self.assertEqual(waiting["jobs"], [])
        self.assertEqual((await self.daemon.api.stats(QUEUE))["total_pushes"], 0)

    async def test_one_key_pushed_at_once(self) -> None:
        """100 pushes of one unique key at once store one job: every answer is its
        answer, 99 say Fireworq-Duplicate, the worker gets it once."""
        url = self.worker.url("/once")
        body = json.dumps({"url": url, "payload": {"order": 7}, "unique_key": "order-7"})
        replies = await gather(self.daemon.api.request("POST", f"/job/{CATEGORY}", body)
                               for _ in range(100))
        self.assertEqual({reply.code for reply in replies}, {200})
        self.assertEqual({reply.body for reply in replies}, {replies[0].body})
        duplicates = [reply for reply in replies if reply.headers.get("fireworq-duplicate")]
        self.assertEqual(len(duplicates), 99)
        await self.worker.wait_for(1)
        await sleep(1.0)
        self.assertEqual(len(self.worker.received), 1)
        again = await self.daemon.api.request("POST", f"/job/{CATEGORY}", body)
        self.assertEqual((again.body, again.headers.get("fireworq-duplicate")),
                         (replies[0].body, ["true"]))


class DurablePushesMixin(PushesMixin):
    async def test_key_survives_a_restart(self) -> None:
        """A unique key is remembered across a restart."""
        body = json.dumps({"url": self.worker.url("/once"), "unique_key": "k"})
        first = await self.daemon.api.request("POST", f"/job/{CATEGORY}", body)
        await self.worker.wait_for(1)
        await self.daemon.restart()
        again = await self.daemon.api.request("POST", f"/job/{CATEGORY}", body)
        self.assertEqual((again.code, again.body, again.headers.get("fireworq-duplicate")),
                         (200, first.body, ["true"]))


class SqlitePushesTests(DurablePushesMixin, TestCase):
    driver = "sqlite"


class InMemoryPushesTests(PushesMixin, TestCase):
    driver = "in-memory"


class MySQLPushesTests(DurablePushesMixin, TestCase):
    driver = "mysql"


class MySQLClusterPushesTests(TestCase):
    """Two daemons on one MariaDB database."""

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.worker = await Worker.start(self)
        self.database = mysqltools.create_database("fwpushcl")
        self.addCleanup(mysqltools.drop_database, self.database)
        options = [f"--mysql-dsn={mysqltools.dsn_text(self.database)}"]
        self.nodes: list[Daemon] = await gather(
            Daemon.start(self, "mysql", options) for _ in range(2))
        await self.nodes[0].api.put_queue(QUEUE, polling_interval=100)
        await self.nodes[0].api.put_routing(CATEGORY, QUEUE)

    async def test_one_key_over_two_nodes(self) -> None:
        """The same unique_key pushed 100 times at once, half through each node, stores
        one job: every answer is its answer, the worker gets it once, one row in the job
        table."""
        url = self.worker.url("/once")
        body = json.dumps({"url": url, "payload": {"order": 9}, "unique_key": "order-9"})
        replies = await gather(self.nodes[n % 2].api.request("POST", f"/job/{CATEGORY}", body)
                               for n in range(100))
        self.assertEqual({reply.code for reply in replies}, {200}, replies[0].body)
        self.assertEqual({reply.body for reply in replies}, {replies[0].body})
        stored = [reply for reply in replies if not reply.headers.get("fireworq-duplicate")]
        self.assertEqual(len(stored), 1)
        await self.worker.wait_for(1)
        await sleep(1.0)
        self.assertEqual(len(self.worker.received), 1)
        [(count,)] = mysqltools.execute(
            self.database, "SELECT COUNT(*) FROM `fireworqpy_uniq(pushes)`")
        self.assertEqual(count, 1)

    async def test_batches_with_keys_over_two_nodes(self) -> None:
        """Batches of 100 jobs with overlapping keys pushed through both nodes at once
        store one job per key."""
        url = self.worker.url("/batch")

        def jobs(start: int) -> list[Any]:
            return [{"url": url, "payload": {"key": k}, "unique_key": "key-%d" % k}
                    for k in range(start, start + 100)]
        replies = await gather(
            self.nodes[n % 2].api.request("POST", f"/jobs/{CATEGORY}",
                                          json.dumps({"jobs": jobs(n * 50)}), timeout=30)
            for n in range(6))
        self.assertEqual({reply.code for reply in replies}, {200})
        received = await self.worker.wait_for(350, timeout=30)
        await sleep(1.0)
        self.assertEqual(len(self.worker.received), 350)
        self.assertEqual(sorted(json.loads(r.body)["key"] for r in received), list(range(350)))

    async def test_keys_pruned_by_the_active_node(self) -> None:
        """With a unique_window of 1 s, the queue's active node forgets the keys (and
        counts them); the other node prunes none; a key pushed again is then stored."""
        await self.nodes[0].api.put_queue(QUEUE, polling_interval=100, unique_window=1)
        url = self.worker.url("/keys")
        for n in range(5):
            reply = await self.nodes[n % 2].api.request("POST", f"/job/{CATEGORY}", json.dumps(
                {"url": url, "unique_key": "k%d" % n}))
            self.assertEqual(reply.code, 200)

        async def forgotten() -> bool:
            [(count,)] = mysqltools.execute(
                self.database, "SELECT COUNT(*) FROM `fireworqpy_uniq(pushes)`")
            return count == 0
        await eventually(forgotten, timeout=10, what="the keys to be pruned")
        pruned = [await self.pruned_on(node) for node in self.nodes]
        self.assertEqual(sorted(pruned), [0.0, 5.0])
        again = await self.nodes[0].api.request("POST", f"/job/{CATEGORY}", json.dumps(
            {"url": url, "unique_key": "k0"}))
        self.assertIsNone(again.headers.get("fireworq-duplicate"))

    async def pruned_on(self, node: Daemon) -> float:
        body = (await node.api.request("GET", "/metrics")).body.decode()
        prefix = f'fireworq_unique_keys_pruned_total{{queue="{QUEUE}"}} '
        [line] = [line for line in body.splitlines() if line.startswith(prefix)]
        return float(line[len(prefix):])
