"""Operating a queue through the HTTP API: retrying and removing failure-log entries, pausing
and resuming, and the retention of the failure log (docs/api.md, "Operating queues").

Like C{test_api}, every test talks to a whole in-memory node (L{apptools.ApiHarness}) on a
L{task.Clock}, over raw HTTP into the real site.
"""

from __future__ import annotations

import json
from typing import Any

from apptools import FAILURE, PERMANENT, SUCCESS, build_request, run_turns
from test_api import URL, APITestCase, go_json, ordered

from fireworq.dispatch.retention import MAX_INTERVAL, PRUNE_BATCH
from fireworq.failures import BULK_BATCH


class OperationsTestCase(APITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.define(max_workers=10)
        self.route()

    def fail_jobs(self, count: int = 1, category: str = "send_welcome", **members: Any
             ) -> list[int]:
        """Push C{count} jobs and fail each for good; their job ids."""
        ids = [self.push(category, **members)["id"] for _ in range(count)]
        self.node.advance(0)
        for job_id in ids:
            self.node.deliverer.finish(job_id, FAILURE, category)
        self.node.advance(0)
        return ids

    def entries(self) -> list[dict[str, Any]]:
        """The whole failure log of mail, newest failure first."""
        entries: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = self.node.get("/queue/mail/failed?limit=1000&cursor=" + cursor).json()
            entries += page["failed_jobs"]
            cursor = page["next_cursor"]
            if not cursor:
                return entries

    def queue_lines(self, **match: Any) -> list[dict[str, Any]]:
        self.node.queue_writer.flush()
        lines = [json.loads(line) for line in self.node.queue_stream.getvalue().splitlines()]
        return [line for line in lines if all(line.get(k) == v for k, v in match.items())]


class QueueMemberTests(OperationsTestCase):
    """PUT and GET of failed_job_ttl and failed_job_limit."""

    def test_members(self) -> None:
        """When set, the members come after Fireworq's, in every answer with a definition."""
        expected = {"name": "mail", "polling_interval": 200, "max_workers": 3,
                    "failed_job_ttl": 86400, "failed_job_limit": 1000}
        response = self.node.put(
            "/queue/mail", {"failed_job_limit": 1000, "max_workers": 3, "failed_job_ttl": 86400})
        self.assertOK(response, expected)
        self.assertEqual([k for k, _ in ordered(response.body)], list(expected))
        self.assertOK(self.node.get("/queue/mail"), expected)
        self.assertOK(self.node.get("/queues"), [expected])
        self.assertOK(self.node.delete("/queue/mail"), expected)

    def test_unsetMembersAreNotShown(self) -> None:
        """Zero is not set: the answer is Fireworq's, byte for byte."""
        response = self.node.put("/queue/mail", {"failed_job_ttl": 0, "failed_job_limit": 0})
        self.assertJSONResponse(
            response, 200, b'{"name":"mail","polling_interval":200,"max_workers":20}')
        self.node.put("/queue/mail", {"failed_job_ttl": 5})
        self.assertJSONResponse(self.node.get("/queue/mail"), 200,
                                b'{"name":"mail","polling_interval":200,"max_workers":20,'
                                b'"failed_job_ttl":5}')

    def test_replaced(self) -> None:
        """A later PUT without a member sets it back to 0, as for Fireworq's members."""
        self.node.put("/queue/mail", {"failed_job_ttl": 60, "failed_job_limit": 5})
        self.assertOK(self.node.put("/queue/mail", {"failed_job_limit": 7}),
                      {"name": "mail", "polling_interval": 200, "max_workers": 20,
                       "failed_job_limit": 7})

    def test_ranges(self) -> None:
        """Out of range or not integers: 400 with the field and its range."""
        for name, top in (("failed_job_ttl", 315360000), ("failed_job_limit", 100000000)):
            message = "Field '%s' must be an integer from 0 to %d" % (name, top)
            for value in (-1, top + 1, 1.5, "60", True, [1]):
                self.assertError(self.node.put("/queue/mail", {name: value}), 400, message)
            self.assertEqual(self.node.put("/queue/mail", {name: top}).status, 200)
        self.assertEqual(self.node.put("/queue/mail", {"failed_job_ttl": None}).json(),
                         {"name": "mail", "polling_interval": 200, "max_workers": 20})


class PauseTests(OperationsTestCase):
    """POST /queue/{q}/pause and /resume."""

    def test_answers(self) -> None:
        """Both answer the definition; paused shows only while paused, everywhere."""
        paused = {"name": "mail", "polling_interval": 200, "max_workers": 10, "paused": True}
        self.assertOK(self.node.post("/queue/mail/pause"), paused)
        self.assertOK(self.node.post("/queue/mail/pause"), paused)
        self.assertOK(self.node.get("/queue/mail"), paused)
        self.assertOK(self.node.get("/queues"), [paused])
        stats = self.node.get("/queue/mail/stats")
        self.assertEqual(ordered(stats.body)[-1], ("paused", True))
        self.assertEqual(self.node.get("/queues/stats").json()["mail"]["paused"], True)
        resumed = {"name": "mail", "polling_interval": 200, "max_workers": 10}
        self.assertOK(self.node.post("/queue/mail/resume"), resumed)
        self.assertOK(self.node.post("/queue/mail/resume"), resumed)
        self.assertNotIn(b"paused", self.node.get("/queue/mail/stats").body)

    def test_unknownQueue(self) -> None:
        for action in ("pause", "resume"):
            self.assertError(self.node.post("/queue/nope/%s" % action), 404,
                             "No such queue: nope")

    def test_pausedQueueTakesPushesAndGrabsNothing(self) -> None:
        """While paused, pushes are stored and nothing is grabbed, not even polled for;
        on resume, every due job is delivered at once."""
        self.node.post("/queue/mail/pause")
        for n in range(3):
            self.push(payload={"n": n})
        self.node.store.calls.clear()
        self.node.advance(5)
        self.assertEqual(self.node.deliverer.delivered, [])
        self.assertNotIn("grab", self.node.store.calls)
        self.assertNotIn("due_tables", self.node.store.calls)
        waiting = self.node.get("/queue/mail/waiting").json()["jobs"]
        self.assertEqual(len(waiting), 3)
        self.assertEqual(self.node.get("/queue/mail/stats").json()["total_pushes"], 3)

        self.node.post("/queue/mail/resume")
        run_turns(self.node.clock)
        self.assertEqual(sorted(job.id for job in self.node.deliverer.delivered), [1, 2, 3])

    def test_deliveriesInProgressFinish(self) -> None:
        """A delivery in progress when the queue is paused finishes and its outcome is
        written; its retry waits for the resume."""
        self.push(max_retries=1)
        self.node.advance(0)
        self.assertEqual(len(self.node.deliverer.pending), 1)
        self.node.post("/queue/mail/pause")
        self.node.deliverer.finish(1, FAILURE)
        self.node.advance(10)
        self.assertEqual(len(self.node.deliverer.delivered), 1)
        job = self.node.get("/queue/mail/job/1").json()
        self.assertEqual((job["status"], job["fail_count"]), ("claimed", 1))
        self.node.post("/queue/mail/resume")
        run_turns(self.node.clock)
        self.node.deliverer.finish(1, SUCCESS)
        self.node.advance(0)
        self.assertEqual(self.node.get("/queue/mail/job/1").status, 404)

    def test_putKeepsPaused(self) -> None:
        """A PUT of the queue keeps it paused."""
        self.node.post("/queue/mail/pause")
        self.assertOK(self.node.put("/queue/mail", {"max_workers": 4}),
                      {"name": "mail", "polling_interval": 200, "max_workers": 4,
                       "paused": True})
        self.push()
        self.node.advance(2)
        self.assertEqual(self.node.deliverer.delivered, [])

    def test_metrics(self) -> None:
        """fireworq_queue_paused is 1 for a paused queue, 0 for the others."""
        self.define("other")
        self.node.post("/queue/mail/pause")
        body = self.node.get("/metrics").body
        self.assertIn(b'fireworq_queue_paused{queue="mail"} 1.0', body)
        self.assertIn(b'fireworq_queue_paused{queue="other"} 0.0', body)


class RetryTests(OperationsTestCase):
    """POST /queue/{q}/failed/{id}/retry."""

    def test_retry(self) -> None:
        """The entry becomes a new job with the push's settings, answered as a push; it is
        delivered, counted and logged as a push; a second retry finds nothing."""
        self.push(payload={"user": 44}, max_retries=1, retry_delay=5, timeout=7)
        self.node.advance(0)
        self.node.deliverer.finish(1, FAILURE)
        self.node.advance(5.25)
        self.node.deliverer.finish(1, PERMANENT)
        self.node.advance(0)
        [entry] = self.entries()
        self.assertEqual((entry["id"], entry["job_id"], entry["fail_count"]), (1, 1, 2))

        response = self.node.post("/queue/mail/failed/1/retry")
        self.assertJSONResponse(response, 200, go_json({
            "id": 2, "queue_name": "mail", "category": "send_welcome", "url": URL,
            "payload": {"user": 44}, "run_after": 0, "timeout": 7, "retry_delay": 5,
            "max_retries": 1}))
        self.assertEqual(self.entries(), [])
        run_turns(self.node.clock)
        self.assertEqual([job.id for job in self.node.deliverer.delivered], [1, 1, 2])
        retried = self.node.deliverer.delivered[-1]
        self.assertEqual((retried.payload, retried.timeout, retried.retry_count),
                         (b'{"user":44}', 7, 1))
        stats = self.node.get("/queue/mail/stats").json()
        self.assertEqual((stats["total_pushes"], stats["total_pops"]), (2, 3))
        [push] = self.queue_lines(action="push", id=2)
        self.assertEqual((push["message"], push["retry_count"]), ("New job accepted", 1))

        self.assertError(self.node.post("/queue/mail/failed/1/retry"), 404,
                         "No such failed job: 1")

    def test_runAfter(self) -> None:
        """The body may defer the new job."""
        self.fail_jobs()
        response = self.node.post("/queue/mail/failed/1/retry", {"run_after": 30})
        self.assertEqual(response.json()["run_after"], 30)
        self.node.advance(29)
        self.assertEqual([job.id for job in self.node.deliverer.delivered], [1])
        self.assertEqual(len(self.node.get("/queue/mail/deferred").json()["jobs"]), 1)
        self.node.advance(1.25)
        self.assertEqual([job.id for job in self.node.deliverer.delivered], [1, 2])

    def test_errors(self) -> None:
        """Path, then body, then the queue, then the entry."""
        self.fail_jobs()
        self.assertError(self.node.post("/queue/mail/failed/x/retry"), 400,
                         "Invalid failure id: x")
        self.assertError(self.node.post("/queue/mail/failed/1/retry", {"run_after": -1}), 400,
                         "Field 'run_after' must be an integer from 0 to 315360000")
        self.assertError(self.node.post("/queue/mail/failed/1/retry", b"[]"), 400,
                         "Request body must be a JSON object")
        self.assertError(self.node.post("/queue/nope/failed/1/retry"), 404,
                         "No such queue: nope")
        self.assertError(self.node.post("/queue/mail/failed/2/retry"), 404,
                         "No such failed job: 2")
        self.assertEqual(self.node.post("/queue/mail/failed/1/retry", b" \r\n").status, 200)

    def test_storeDown(self) -> None:
        """503 when the store does not answer; the entry stays."""
        self.fail_jobs()
        self.node.store.down = True
        self.assertError(self.node.post("/queue/mail/failed/1/retry"), 503,
                         "Store unavailable: connection refused")
        self.node.store.down = False
        self.assertEqual(len(self.entries()), 1)


class BulkTests(OperationsTestCase):
    """POST /queue/{q}/failed/retry and DELETE /queue/{q}/failed."""

    def fixture(self) -> list[dict[str, Any]]:
        """Six entries, categories a and b alternating, failing a second apart."""
        self.route("a")
        self.route("b")
        for n in range(6):
            self.fail_jobs(category="ab"[n % 2], payload={"n": n})
            self.node.advance(1)
        entries = sorted(self.entries(), key=lambda e: e["id"])
        self.assertEqual([e["category"] for e in entries], list("ababab"))
        return entries

    def test_retryWithFilter(self) -> None:
        """Matching entries are retried oldest failure first, at most limit; the answer
        lists the new jobs in that order."""
        entries = self.fixture()
        response = self.node.post("/queue/mail/failed/retry", {
            "category": "a", "failed_after": entries[1]["failed_at"], "limit": 1})
        self.assertOK(response, {"retried": 1, "jobs": [7]})
        self.assertEqual(ordered(response.body), [("retried", 1), ("jobs", [7])])
        self.assertNotIn(entries[2]["id"], [e["id"] for e in self.entries()])
        response = self.node.post("/queue/mail/failed/retry", {
            "failed_before": entries[5]["failed_at"]})
        self.assertOK(response, {"retried": 4, "jobs": [8, 9, 10, 11]})
        self.assertEqual([e["id"] for e in self.entries()], [entries[5]["id"]])
        run_turns(self.node.clock)
        payloads = [json.loads(job.payload)["n"] for job in self.node.deliverer.delivered[6:]]
        self.assertEqual(payloads, [2, 0, 1, 3, 4])

    def test_deleteWithFilter(self) -> None:
        entries = self.fixture()
        self.assertOK(self.node.delete("/queue/mail/failed", body={"category": "b"}),
                      {"deleted": 3})
        self.assertEqual([e["category"] for e in self.entries()], ["a", "a", "a"])
        self.assertOK(self.node.delete("/queue/mail/failed", body={"limit": 2}),
                      {"deleted": 2})
        self.assertEqual([e["id"] for e in self.entries()], [entries[4]["id"]])
        self.assertOK(self.node.delete("/queue/mail/failed"), {"deleted": 1})
        self.assertOK(self.node.delete("/queue/mail/failed"), {"deleted": 0})
        self.assertEqual(self.node.deliverer.delivered[6:], [])

    def test_timeZones(self) -> None:
        """Filter times are RFC 3339 in any offset, to the millisecond."""
        entries = self.fixture()
        first = entries[0]["failed_at"]  # "...Z": the tests render in UTC
        self.assertTrue(first.endswith("Z"), first)
        hours = first.replace("Z", "").split("T")
        shifted = "%sT%02d%s+09:00" % (hours[0], int(hours[1][:2]) + 9, hours[1][2:])
        response = self.node.post("/queue/mail/failed/retry", {"failed_before": shifted})
        self.assertOK(response, {"retried": 0, "jobs": []})
        response = self.node.post("/queue/mail/failed/retry", {"failed_after": shifted,
                                                              "failed_before": shifted})
        self.assertOK(response, {"retried": 0, "jobs": []})
        response = self.node.post("/queue/mail/failed/retry", {"failed_before": entries[1][
            "failed_at"].replace("Z", "+00:00")})
        self.assertOK(response, {"retried": 1, "jobs": [7]})

    def test_errors(self) -> None:
        self.fail_jobs()
        for method, path in (("POST", "/queue/mail/failed/retry"),
                             ("DELETE", "/queue/mail/failed")):
            for body, message in (
                ({"limit": 0}, "Field 'limit' must be an integer from 1 to 10000"),
                ({"limit": 10001}, "Field 'limit' must be an integer from 1 to 10000"),
                ({"category": 5}, "Field 'category' must be a string"),
                ({"failed_after": "yesterday"},
                 "Field 'failed_after' must be a time in RFC 3339 form"),
                ({"failed_before": 1732790400000},
                 "Field 'failed_before' must be a string"),
                ({"failed_before": "2024-11-28T10:40:00"},
                 "Field 'failed_before' must be a time in RFC 3339 form"),
                (b"null", "Request body must be a JSON object"),
            ):
                self.assertError(self.node.request(method, path, body), 400, message)
            self.assertError(self.node.request(method, "/queue/nope/failed" + path[18:]), 404,
                             "No such queue: nope")
        self.assertEqual(len(self.entries()), 1)

    def test_defaultLimitAndBatches(self) -> None:
        """Without a limit, 1000 entries are taken, in transactions of at most BULK_BATCH."""
        self.define(max_workers=10000)
        self.node.deliverer.script = lambda job: FAILURE
        for _ in range(1200):
            self.push()
        self.node.advance(0.25)
        self.assertEqual(len(self.entries()), 1200)
        self.node.deliverer.script = None
        self.node.store.calls.clear()
        answer = self.node.post("/queue/mail/failed/retry").json()
        self.assertEqual(answer["retried"], 1000)
        self.assertEqual(answer["jobs"], list(range(1201, 2201)))
        self.assertEqual(self.node.store.calls.count("retry_failed"), -(-1000 // BULK_BATCH))
        self.assertEqual(len(self.entries()), 200)

    def test_onlyEntriesPresentAtTheStart(self) -> None:
        """An entry written while a bulk retry runs (a retried job failing again) is not
        taken by it."""
        self.node.deliverer.script = lambda job: FAILURE
        for _ in range(BULK_BATCH + 10):
            self.push()
        self.node.advance(0.25)
        self.node.store.hang.add("retry_failed")
        connection = self.node.connect()
        connection.send(build_request("POST", "/queue/mail/failed/retry", b""))
        run_turns(self.node.clock)
        self.node.store.resume()  # the first batch is retried ...
        run_turns(self.node.clock)
        self.node.advance(0.25)  # ... and its jobs fail again before the second batch
        self.assertEqual(len(self.node.deliverer.delivered), 2 * BULK_BATCH + 10)
        self.node.store.hang.clear()
        self.node.store.resume()
        answer = connection.response().json()
        self.assertEqual(answer["retried"], BULK_BATCH + 10)
        self.assertEqual(len(set(answer["jobs"])), BULK_BATCH + 10)


class RetentionTests(OperationsTestCase):
    """failed_job_ttl and failed_job_limit, enforced by the active node."""

    def pruned(self) -> float:
        for line in self.node.get("/metrics").body.decode().splitlines():
            if line.startswith('fireworq_failed_jobs_pruned_total{queue="mail"}'):
                return float(line.split()[-1])
        raise AssertionError("no fireworq_failed_jobs_pruned_total series of mail")

    def test_byAge(self) -> None:
        """Entries older than the TTL go, checked once per TTL (at least once a second)."""
        self.node.put("/queue/mail", {"max_workers": 10, "failed_job_ttl": 10})
        self.node.advance(0.5)
        self.fail_jobs(3)
        self.node.advance(14.5)
        self.fail_jobs(1)
        self.assertEqual(len(self.entries()), 4)
        self.node.advance(5.5)
        self.assertEqual([e["job_id"] for e in self.entries()], [4])
        self.assertEqual(self.pruned(), 3.0)
        self.node.advance(10)
        self.assertEqual(self.entries(), [])
        self.assertEqual(self.pruned(), 4.0)

    def test_byCount(self) -> None:
        """Beyond the limit, the oldest entries go about a second after a failure."""
        self.node.put("/queue/mail", {"max_workers": 10, "failed_job_limit": 2})
        for n in range(5):
            self.fail_jobs(payload={"n": n})
            self.node.advance(0.1)
        self.node.advance(1)
        self.assertEqual(sorted(e["payload"]["n"] for e in self.entries()), [3, 4])
        self.assertEqual(self.pruned(), 3.0)

    def test_backlogInBatches(self) -> None:
        """A limit set on a long log prunes it in batches of PRUNE_BATCH, at once."""
        self.define(max_workers=10000)
        self.node.deliverer.script = lambda job: FAILURE
        for _ in range(PRUNE_BATCH * 2 + 5):
            self.push()
        self.node.advance(0.25)
        self.node.store.calls.clear()
        self.node.put("/queue/mail", {"max_workers": 10000, "failed_job_limit": 3})
        run_turns(self.node.clock)
        self.assertEqual(len(self.entries()), 3)
        self.assertEqual(self.node.store.calls.count("delete_failed_matching"), 3)
        self.assertEqual(self.pruned(), PRUNE_BATCH * 2 + 2)

    def test_nothingWithoutRetention(self) -> None:
        """A queue without retention settings costs no pruning query."""
        self.fail_jobs(3)
        self.node.advance(MAX_INTERVAL * 2)
        self.assertNotIn("delete_failed_matching", self.node.store.calls)
        self.assertNotIn("failed_cutoff", self.node.store.calls)
        self.assertEqual(self.pruned(), 0.0)
        self.assertEqual(len(self.entries()), 3)

    def test_periodicPass(self) -> None:
        """Entries written elsewhere are caught by the pass every MAX_INTERVAL s."""
        self.node.put("/queue/mail", {"max_workers": 10, "failed_job_limit": 1})
        self.node.advance(1)
        self.node.store.calls.clear()
        self.node.advance(MAX_INTERVAL)
        self.assertEqual(self.node.store.calls.count("failed_cutoff"), 1)

    def test_storeDown(self) -> None:
        """A pass that fails is tried again at the next one."""
        self.node.put("/queue/mail", {"max_workers": 10, "failed_job_ttl": 1})
        self.fail_jobs(2)
        self.node.store.down = True
        self.node.advance(3)
        self.node.store.down = False
        self.node.advance(1)
        self.assertEqual(self.entries(), [])


class AccessLogTests(OperationsTestCase):
    def test_logged(self) -> None:
        """The new routes are in the access log like every other."""
        self.fail_jobs()
        for method, path in (("POST", "/queue/mail/pause"), ("POST", "/queue/mail/resume"),
                             ("POST", "/queue/mail/failed/1/retry"),
                             ("POST", "/queue/mail/failed/retry"),
                             ("DELETE", "/queue/mail/failed")):
            self.node.request(method, path)
        lines = [(line["method"], line["url"], line["status"])
                 for line in self.node.access_lines()][-5:]
        self.assertEqual(lines, [
            ("POST", "/queue/mail/pause", 200), ("POST", "/queue/mail/resume", 200),
            ("POST", "/queue/mail/failed/1/retry", 200),
            ("POST", "/queue/mail/failed/retry", 200), ("DELETE", "/queue/mail/failed", 200)])
