"""End to end: operating queues on the real daemon (``twistd -n fireworq``) with a real
worker, on each storage driver: retrying failure-log entries one by one and in bulk,
pausing and resuming, and failure-log retention.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from twisted.trial.unittest import TestCase

from e2e import (
    DaemonScenarios,
    always,
    bounded,
    eventually,
    now,
    permanent_failure,
    sleep,
    success,
)

QUEUE = "ops"
CATEGORY = "ops_job"
#: Failure-log entries of the bulk retry test: four of the store's bulk batches (BULK_BATCH).
BULK_ENTRIES = 2000

def metric(text: str, name: str, queue: str = QUEUE) -> float | None:
    prefix = '%s{queue="%s"} ' % (name, queue)
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return None


class OperationsMixin(DaemonScenarios):
    durable: bool
    database_prefix = "fwops"

    async def queue(self, **definition: Any) -> Any:
        stored = await self.daemon.api.put_queue(QUEUE, **definition)
        await self.daemon.api.put_routing(CATEGORY, QUEUE)
        return stored

    async def metric(self, name: str) -> float | None:
        reply = await self.daemon.api.request("GET", "/metrics")
        return metric(reply.body.decode(), name)

    async def entries(self) -> int:
        """The failure log's size, read page by page (``/metrics`` may be seconds old)."""
        count, cursor = 0, ""
        while True:
            page = await self.daemon.api.ok(
                "GET", f"/queue/{QUEUE}/failed?limit=1000&cursor={quote(cursor, safe='')}")
            count += len(page["failed_jobs"])
            cursor = page["next_cursor"]
            if not cursor:
                return count

    async def failed_count(self, expected: int, timeout: float = 20.0) -> None:
        async def counted() -> bool:
            return await self.entries() == expected
        await eventually(counted, timeout=timeout, step=0.1,
                         what=f"{expected} failure-log entries")

    async def push_many(self, count: int, category: str = CATEGORY, start: int = 0,
                        **options: int) -> None:
        url = self.worker.url("/ops")
        api = self.daemon.api

        def one(n: int) -> Any:
            return lambda: api.push_ok(category, url, json.dumps({"n": n}), **options)
        results = await bounded([one(n) for n in range(start, start + count)], 100)
        errors = [r for r in results if isinstance(r, Exception)]
        self.assertEqual(errors, [])

    # --- retry -----------------------------------------------------------------------------

    async def test_retry_one(self) -> None:
        """A failed job retried through the API is delivered again, with its settings, and
        its entry is gone."""
        await self.queue()
        self.worker.policy = always(permanent_failure())
        pushed = await self.daemon.api.push_ok(
            CATEGORY, self.worker.url("/ops"), '{"n": 1}', max_retries=2, retry_delay=3,
            timeout=9)
        await self.failed_count(1)
        [entry] = await self.daemon.api.failed(QUEUE)
        self.assertEqual(entry["job_id"], pushed["id"])
        self.worker.policy = always(success())

        retried = await self.daemon.api.ok("POST", f"/queue/{QUEUE}/failed/{entry['id']}/retry")
        self.assertGreater(retried["id"], pushed["id"])
        self.assertEqual({k: retried[k] for k in ("queue_name", "category", "url", "payload",
                                                  "run_after", "timeout", "retry_delay",
                                                  "max_retries")},
                         {"queue_name": QUEUE, "category": CATEGORY,
                          "url": self.worker.url("/ops"), "payload": {"n": 1}, "run_after": 0,
                          "timeout": 9, "retry_delay": 3, "max_retries": 2})
        [_, again] = await self.worker.wait_for(2)
        self.assertEqual(again.body, b'{"n": 1}')
        self.assertEqual(await self.daemon.api.failed(QUEUE), [])
        reply = await self.daemon.api.request(
            "POST", f"/queue/{QUEUE}/failed/{entry['id']}/retry")
        self.assertEqual((reply.code, reply.json["message"]),
                         (404, f"No such failed job: {entry['id']}"))

        async def done() -> bool:
            reply = await self.daemon.api.request("GET", f"/queue/{QUEUE}/job/{retried['id']}")
            return reply.code == 404
        await eventually(done, what="the retried job to finish")
        pushes = self.daemon.queue_log(action="push", queue=QUEUE)
        self.assertEqual([line["id"] for line in pushes], [pushed["id"], retried["id"]])

    async def test_bulk_retry_with_filter(self) -> None:
        """2,000 entries of one category are retried in one request, the other category's
        entries stay; every retried job is delivered once more. (bench/failure_log.py
        measures the rate.)"""
        await self.queue(max_workers=50)
        await self.daemon.api.put_routing("other_job", QUEUE)
        self.worker.policy = always(permanent_failure())
        await self.push_many(BULK_ENTRIES)
        await self.push_many(30, category="other_job", start=BULK_ENTRIES)
        await self.failed_count(BULK_ENTRIES + 30, timeout=60)
        self.worker.policy = always(success())

        started = now()
        answer = await self.daemon.api.ok("POST", f"/queue/{QUEUE}/failed/retry", json.dumps(
            {"category": CATEGORY, "limit": 10000}))
        took = now() - started
        self.assertEqual(answer["retried"], BULK_ENTRIES)
        self.assertEqual(len(set(answer["jobs"])), BULK_ENTRIES)
        received = await self.worker.wait_for(2 * BULK_ENTRIES + 30, timeout=60)
        again = [json.loads(r.body)["n"] for r in received[BULK_ENTRIES + 30:]]
        self.assertEqual(sorted(again), list(range(BULK_ENTRIES)))
        await self.failed_count(30)
        left = await self.daemon.api.failed(QUEUE)
        self.assertEqual({entry["category"] for entry in left}, {"other_job"})
        print(f"\nBULK RETRY ({self.driver}): {BULK_ENTRIES} entries in {took:.2f} s"
              f" ({BULK_ENTRIES / took:.0f} entries/s, answer included)")

    async def test_bulk_delete(self) -> None:
        await self.queue()
        self.worker.policy = always(permanent_failure())
        await self.push_many(20)
        await self.failed_count(20)
        answer = await self.daemon.api.ok("DELETE", f"/queue/{QUEUE}/failed",
                                          json.dumps({"limit": 15}))
        self.assertEqual(answer, {"deleted": 15})
        await self.failed_count(5)
        self.assertEqual(len(self.worker.received), 20)

    # --- pause -----------------------------------------------------------------------------

    async def test_pause_and_resume(self) -> None:
        """A paused queue stores pushes and delivers nothing (2 s of polling); on resume
        everything is delivered."""
        await self.queue(polling_interval=100)
        paused = await self.daemon.api.ok("POST", f"/queue/{QUEUE}/pause")
        self.assertEqual(paused["paused"], True)
        await self.push_many(10)
        deadline = now() + 2.0
        while now() < deadline:
            self.assertEqual(self.worker.received, [])
            await sleep(0.1)
        stats = await self.daemon.api.stats(QUEUE)
        self.assertEqual((stats["paused"], stats["total_pushes"], stats["total_pops"]),
                         (True, 10, 0))
        self.assertEqual(await self.metric("fireworq_queue_paused"), 1.0)
        waiting = await self.daemon.api.ok("GET", f"/queue/{QUEUE}/waiting")
        self.assertEqual(len(waiting["jobs"]), 10)

        resumed = await self.daemon.api.ok("POST", f"/queue/{QUEUE}/resume")
        self.assertNotIn("paused", resumed)
        received = await self.worker.wait_for(10, timeout=5)
        self.assertEqual(sorted(json.loads(r.body)["n"] for r in received), list(range(10)))
        self.assertEqual(await self.metric("fireworq_queue_paused"), 0.0)

    # --- retention -------------------------------------------------------------------------

    async def test_retention_by_age(self) -> None:
        await self.queue(failed_job_ttl=1)
        self.worker.policy = always(permanent_failure())
        await self.push_many(3)
        await self.failed_count(3)
        await self.failed_count(0, timeout=5)
        self.assertEqual(await self.metric("fireworq_failed_jobs_pruned_total"), 3.0)

    async def test_retention_by_count(self) -> None:
        await self.queue(failed_job_limit=2, max_workers=1)
        self.worker.policy = always(permanent_failure())
        await self.push_many(6)
        received = await self.worker.wait_for(6)
        await self.failed_count(2, timeout=5)
        left = await self.daemon.api.failed(QUEUE)
        # The newest two: one delivery at a time, so the last two the worker received.
        self.assertEqual(sorted(entry["payload"]["n"] for entry in left),
                         sorted(json.loads(r.body)["n"] for r in received[-2:]))
        self.assertEqual(await self.metric("fireworq_failed_jobs_pruned_total"), 4.0)


class DurableOperationsMixin(OperationsMixin):
    durable = True

    async def test_pause_survives_a_restart(self) -> None:
        await self.queue()
        await self.daemon.api.ok("POST", f"/queue/{QUEUE}/pause")
        await self.push_many(3)
        await self.daemon.restart()
        stored = await self.daemon.api.ok("GET", f"/queue/{QUEUE}")
        self.assertEqual(stored["paused"], True)
        await sleep(1.0)
        self.assertEqual(self.worker.received, [])
        await self.daemon.api.ok("POST", f"/queue/{QUEUE}/resume")
        await self.worker.wait_for(3)

    async def test_retry_after_a_restart(self) -> None:
        """An entry keeps its push settings across a restart."""
        await self.queue()
        self.worker.policy = always(permanent_failure())
        await self.daemon.api.push_ok(CATEGORY, self.worker.url("/ops"), '{"n": 1}',
                                      max_retries=4, retry_delay=2, timeout=5)
        await self.failed_count(1)
        await self.daemon.restart()
        [entry] = await self.daemon.api.failed(QUEUE)
        retried = await self.daemon.api.ok(
            "POST", f"/queue/{QUEUE}/failed/{entry['id']}/retry", '{"run_after": 600}')
        self.assertEqual((retried["max_retries"], retried["retry_delay"], retried["timeout"],
                          retried["run_after"]), (4, 2, 5, 600))


class SqliteOperationsTests(DurableOperationsMixin, TestCase):
    driver = "sqlite"


class InMemoryOperationsTests(OperationsMixin, TestCase):
    driver = "in-memory"
    durable = False


class MySQLOperationsTests(DurableOperationsMixin, TestCase):
    driver = "mysql"
