"""``GET /metrics`` of a running daemon (docs/api.md, GET /metrics), read with prometheus-client's
own parser.

One sqlite daemon, a worker answering per payload, and a known history:

* queue ``mq`` (4 workers): 5 successes, 2 permanent failures, 1 job failing twice with
  ``max_retries: 1`` (a final ``failure``), 1 job deferred by an hour;
* queue ``mq2`` (1 worker): one job held by the worker (grabbed), one waiting behind it;
* queue ``gone``: defined, then deleted (its series must not appear).

The scrape must have every family of docs/api.md, GET /metrics with its type and labels, counters
equal to that history, no ``_created`` series, the state gauges, ``fireworq_store_up 1``, the
process collector's metrics and the 0.0.4 content type whatever the ``Accept`` header.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from e2e import (
    Answer,
    Daemon,
    Received,
    Worker,
    eventually,
    failure,
    permanent_failure,
    reactor,
    slow,
    success,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DELIVERY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                    math.inf]
LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 21600,
                   86400, math.inf]
#: family name as the parser gives it (counters without ``_total``) → (type, label names)
FAMILIES = {
    "fireworq_jobs_pushed": ("counter", {"queue"}),
    "fireworq_jobs_popped": ("counter", {"queue"}),
    "fireworq_jobs_completed": ("counter", {"queue", "outcome"}),
    "fireworq_job_failures": ("counter", {"queue"}),
    "fireworq_delivery_duration_seconds": ("histogram", {"queue"}),
    "fireworq_job_latency_seconds": ("histogram", {"queue"}),
    "fireworq_queue_jobs": ("gauge", {"queue", "state"}),
    "fireworq_queue_workers": ("gauge", {"queue", "state"}),
    "fireworq_queue_active": ("gauge", {"queue"}),
    "fireworq_failed_jobs": ("gauge", {"queue"}),
    "fireworq_store_up": ("gauge", set()),
}
PROCESS = {
    "process_cpu_seconds": "counter",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
}


def answer(received: Received) -> Answer:
    kind = received.json["kind"]
    return {
        "ok": success(),
        "perm": permanent_failure(),
        "fail": failure(),
        "hold": slow(60),
    }[kind]


class MetricsTests(TestCase):
    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.worker = await Worker.start(self, answer)
        self.daemon = await Daemon.start(self, "sqlite")
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.http = HTTPClient(Agent(reactor, pool=pool))

    async def scrape(self, accept: str | None = None) -> tuple[str, list[str]]:
        headers: dict[bytes | str, bytes | str] | None = {"Accept": accept} if accept else None
        response = await self.http.get(self.daemon.base_url + "/metrics", headers=headers,
                                       timeout=10)
        text = await response.text("utf-8")
        self.assertEqual(response.code, 200)
        return text, response.headers.getRawHeaders("content-type")

    async def push(self, category: str, kind: str, **options: int) -> Any:
        return await self.daemon.api.push_ok(
            category, self.worker.url(), f'{{"kind": "{kind}"}}', **options)

    async def test_metrics(self) -> None:
        api = self.daemon.api
        await api.put_queue("mq", max_workers=4)
        await api.put_routing("mq_cat", "mq")
        await api.put_queue("mq2", max_workers=1)
        await api.put_routing("mq2_cat", "mq2")
        await api.put_queue("gone")
        await api.ok("DELETE", "/queue/gone")
        for _ in range(5):
            await self.push("mq_cat", "ok")
        for _ in range(2):
            await self.push("mq_cat", "perm")
        await self.push("mq_cat", "fail", max_retries=1, retry_delay=0)
        await self.push("mq_cat", "ok", run_after=3600)
        await self.push("mq2_cat", "hold")
        await self.worker.wait_for(1 + 5 + 2 + 2)  # the held job, and every attempt on mq
        await self.push("mq2_cat", "ok")

        async def settled() -> Any:
            stats = await api.stats("mq")
            finished = stats["total_successes"] + stats["total_permanent_failures"]
            return finished == 8 and len(await api.failed("mq")) == 3
        await eventually(settled, what="every outcome on mq to be written")

        text, content_type = await self.scrape()
        self.assertEqual(content_type, [CONTENT_TYPE])
        _, other_content_type = await self.scrape(
            accept="application/openmetrics-text; version=1.0.0")
        self.assertEqual(other_content_type, [CONTENT_TYPE])
        self.assertNotIn("_created", text)
        families = {f.name: f for f in text_string_to_metric_families(text)}

        for name, (kind, labels) in FAMILIES.items():
            self.assertIn(name, families)
            family = families[name]
            self.assertEqual(family.type, kind, name)
            for sample in family.samples:
                self.assertEqual(set(sample.labels) - {"le"}, labels, sample)
                self.assertNotEqual(sample.labels.get("queue"), "gone", sample)
        for name, kind in PROCESS.items():
            self.assertIn(name, families)
            self.assertEqual(families[name].type, kind, name)

        def value(name: str, sample_name: str | None = None, **labels: str) -> float:
            matches = [s.value for s in families[name].samples
                       if s.name == (sample_name or name) and s.labels == labels]
            self.assertEqual(len(matches), 1, f"{sample_name or name} {labels}: {matches}")
            return float(matches[0])

        def counter(name: str, **labels: str) -> float:
            return value(name, name + "_total", **labels)

        self.assertEqual(
            {q: counter("fireworq_jobs_pushed", queue=q) for q in ("mq", "mq2")},
            {"mq": 9, "mq2": 2})
        self.assertEqual(
            {q: counter("fireworq_jobs_popped", queue=q) for q in ("mq", "mq2")},
            {"mq": 9, "mq2": 1})
        self.assertEqual(
            {(q, o): counter("fireworq_jobs_completed", queue=q, outcome=o)
             for q in ("mq", "mq2") for o in ("success", "permanent_failure", "failure")},
            {("mq", "success"): 5, ("mq", "permanent_failure"): 2, ("mq", "failure"): 1,
             ("mq2", "success"): 0, ("mq2", "permanent_failure"): 0, ("mq2", "failure"): 0})
        self.assertEqual(
            {q: counter("fireworq_job_failures", queue=q) for q in ("mq", "mq2")},
            {"mq": 4, "mq2": 0})

        for name, buckets, counts in (
            ("fireworq_delivery_duration_seconds", DELIVERY_BUCKETS, {"mq": 9, "mq2": 0}),
            ("fireworq_job_latency_seconds", LATENCY_BUCKETS, {"mq": 8, "mq2": 0}),
        ):
            for queue, count in counts.items():
                les = [float(s.labels["le"]) for s in families[name].samples
                       if s.name == name + "_bucket" and s.labels["queue"] == queue]
                self.assertEqual(les, buckets, name)
                self.assertEqual(value(name, name + "_count", queue=queue), count)
                self.assertEqual(value(name, name + "_bucket", queue=queue, le="+Inf"), count)
                total = value(name, name + "_sum", queue=queue)
                self.assertTrue(total > 0 if count else total == 0, (name, queue, total))

        self.assertEqual(
            {(q, s): value("fireworq_queue_jobs", queue=q, state=s)
             for q in ("mq", "mq2") for s in ("waiting", "deferred", "grabbed")},
            {("mq", "waiting"): 0, ("mq", "deferred"): 1, ("mq", "grabbed"): 0,
             ("mq2", "waiting"): 1, ("mq2", "deferred"): 0, ("mq2", "grabbed"): 1})
        self.assertEqual(
            {(q, s): value("fireworq_queue_workers", queue=q, state=s)
             for q in ("mq", "mq2") for s in ("total", "idle")},
            {("mq", "total"): 4, ("mq", "idle"): 4, ("mq2", "total"): 1, ("mq2", "idle"): 0})
        self.assertEqual(
            {q: value("fireworq_queue_active", queue=q) for q in ("mq", "mq2")},
            {"mq": 1, "mq2": 1})
        self.assertEqual(
            {q: value("fireworq_failed_jobs", queue=q) for q in ("mq", "mq2")},
            {"mq": 3, "mq2": 0})
        self.assertEqual(value("fireworq_store_up"), 1)
        self.assertGreater(value("process_resident_memory_bytes"), 0)
        self.assertGreater(value("process_open_fds"), 0)
        self.assertGreater(value("process_cpu_seconds", "process_cpu_seconds_total"), 0)
        samples = sum(len(f.samples) for f in families.values())
        print(f"\nMETRICS: {len(families)} families, {samples} samples, {len(text)} bytes")
