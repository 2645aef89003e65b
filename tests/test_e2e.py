"""End to end: the real daemon (``twistd -n fireworq``) against a real worker over HTTP.

docs/api.md (push, inspection, failure log, stats), docs/worker-protocol.md, the shutdown of
docs/configuration.md and its queue log. The scenarios live in L{E2EMixin}; one subclass per storage
driver runs them, and a selection runs with ``--processes 2`` (see the end of this module). The harness is ``tests/e2e.py``.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from e2e import (
    USER_AGENT,
    DaemonScenarios,
    Exit,
    always,
    eventually,
    failure,
    gather,
    not_json,
    now,
    only,
    permanent_failure,
    sleep,
    slow,
    success,
    unknown_status,
)

QUEUE = "q"
CATEGORY = "cat"


class E2EMixin(DaemonScenarios):
    """The scenarios, for one driver (``driver``; ``durable`` when jobs survive a restart)."""

    durable: bool

    async def queue(self, name: str = QUEUE, category: str = CATEGORY, **definition: Any) -> Any:
        stored = await self.daemon.api.put_queue(name, **definition)
        await self.daemon.api.put_routing(category, name)
        return stored

    async def job_gone(self, job_id: int) -> bool:
        reply = await self.daemon.api.request("GET", f"/queue/{QUEUE}/job/{job_id}")
        return reply.code == 404

    async def final_failure(self, job_id: int, timeout: float = 10.0) -> Any:
        """The failure-log entry of ``job_id``, once written."""
        async def entry() -> Any:
            return [f for f in await self.daemon.api.failed(QUEUE) if f["job_id"] == job_id]
        [found] = await eventually(entry, timeout, what=f"failure-log entry of job {job_id}")
        return found

    async def queue_log(self, timeout: float = 5.0, **match: Any) -> list[dict[str, Any]]:
        """Queue-log lines matching ``match``, once there is at least one."""
        async def lines() -> list[dict[str, Any]]:
            return self.daemon.queue_log(**match)
        return await eventually(lines, timeout, what=f"queue-log line {match}")  # type: ignore[no-any-return]

    # --- outcomes ------------------------------------------------------------------------

    async def test_success(self) -> None:
        """A pushed job is POSTed to its URL with the stored payload as body and the
        protocol's headers; on success it leaves the queue, the stats count it and the queue
        log has its push and complete lines."""
        await self.queue()
        payload = '{"n": 1,  "s": "caf\\u00e9", "x": 1.50}'
        pushed = await self.daemon.api.push_ok(CATEGORY, self.worker.url("/do/it?a=1&b=2"), payload)
        self.assertEqual(pushed["queue_name"], QUEUE)
        [request] = await self.worker.wait_for(1)
        self.assertEqual(request.method, "POST")
        self.assertEqual(request.path, "/do/it?a=1&b=2")
        self.assertEqual(request.body, payload.encode())
        self.assertEqual(request.header("Content-Type"), "application/json")
        self.assertEqual(request.header("User-Agent"), USER_AGENT)
        self.assertEqual(request.header("Content-Length"), str(len(payload)))
        self.assertEqual(request.header("Host"), f"127.0.0.1:{self.worker.port}")

        await eventually(lambda: self.job_gone(pushed["id"]), what="the job to leave the queue")

        async def counted() -> Any:
            stats = await self.daemon.api.stats(QUEUE)
            return stats if stats["total_completes"] == 1 else None
        stats = await eventually(counted, what="stats to count the completion")
        self.assertEqual(
            {k: stats[k] for k in ("total_pushes", "total_pops", "total_successes",
                                   "total_failures", "total_permanent_failures")},
            {"total_pushes": 1, "total_pops": 1, "total_successes": 1, "total_failures": 0,
             "total_permanent_failures": 0})
        [push] = await self.queue_log(id=pushed["id"], action="push")
        [complete] = await self.queue_log(id=pushed["id"], action="complete")
        self.assertEqual((push["status"], push["message"], push["queue"], push["category"]),
                         ("claimed", "New job accepted", QUEUE, CATEGORY))
        self.assertEqual(push["payload"], payload)
        self.assertEqual((complete["status"], complete["message"], complete["fail_count"]),
                         ("completed", "done", 0))
        self.assertEqual(self.daemon.queue_log(action="retry"), [])

    async def test_failure_retried_max_retries_times(self) -> None:
        """A failing job is attempted 1 + max_retries times, retry_delay apart, then goes to
        the failure log with its fail_count and the last result."""
        await self.queue()
        self.worker.policy = always(failure("boom", code=503))
        pushed = await self.daemon.api.push_ok(
            CATEGORY, self.worker.url(), '{"n": 2}', max_retries=2, retry_delay=1)
        entry = await self.final_failure(pushed["id"], timeout=8)
        self.assertEqual(len(self.worker.received), 3)
        times = [r.time for r in self.worker.received]
        gaps = [b - a for a, b in zip(times, times[1:])]
        for gap in gaps:
            # retry_delay 1 s, then found by the next poll (200 ms) at the latest.
            self.assertTrue(0.99 <= gap <= 1.6, f"gaps between attempts: {gaps}")
        self.assertEqual(entry["fail_count"], 3)
        self.assertEqual(entry["result"], {"status": "failure", "code": 503, "message": "boom"})
        self.assertEqual((entry["category"], entry["payload"]), (CATEGORY, {"n": 2}))
        self.assertTrue(await self.job_gone(pushed["id"]))

        stats = await self.daemon.api.stats(QUEUE)
        self.assertEqual(
            (stats["total_pops"], stats["total_failures"], stats["total_permanent_failures"],
             stats["total_completes"], stats["total_successes"]),
            (3, 3, 1, 1, 0))
        retries = await self.queue_log(id=pushed["id"], action="retry")
        [complete] = await self.queue_log(id=pushed["id"], action="complete")
        self.assertEqual(
            [(r["status"], r["fail_count"], r["retry_count"], r["message"]) for r in retries],
            [("failed", 1, 2, "boom"), ("failed", 2, 1, "boom")])
        self.assertEqual((complete["status"], complete["fail_count"], complete["retry_count"],
                          complete["message"]), ("failed", 3, 0, "boom"))
        # next_try of a retry/complete line is the one the attempt was made with.
        self.assertEqual(retries[0]["next_try"], retries[0]["created_at"])
        # The retry is due retry_delay after the store clock at its completion write, which
        # follows the line (by a few ms on MySQL, more on a loaded machine).
        self.assertTrue(990 <= retries[1]["next_try"] - retries[0]["time"] <= 1000 + 250,
                        retries)
        await sleep(1.3)
        self.assertEqual(len(self.worker.received), 3, "attempted again after the final failure")

    async def test_permanent_failure_not_retried(self) -> None:
        """permanent-failure ends the job at once despite retries left."""
        await self.queue()
        self.worker.policy = always(permanent_failure("no such user", code=422))
        pushed = await self.daemon.api.push_ok(
            CATEGORY, self.worker.url(), '{"n": 3}', max_retries=5, retry_delay=1)
        entry = await self.final_failure(pushed["id"])
        self.assertEqual(entry["fail_count"], 1)
        self.assertEqual(entry["result"],
                         {"status": "permanent-failure", "code": 422, "message": "no such user"})
        await sleep(1.3)
        self.assertEqual(len(self.worker.received), 1)
        self.assertTrue(await self.job_gone(pushed["id"]))

    async def test_non_json_body_is_a_failure(self) -> None:
        self.worker.policy = always(not_json("<html>Bad Gateway</html>", code=502))
        await self.queue()
        pushed = await self.daemon.api.push_ok(CATEGORY, self.worker.url(), '{"n": 4}')
        entry = await self.final_failure(pushed["id"])
        result = entry["result"]
        self.assertEqual((result["status"], result["code"]), ("failure", 502))
        self.assertTrue(result["message"].startswith("Cannot parse body as JSON: "), result)
        self.assertTrue(
            result["message"].endswith("\nOriginal response body:\n<html>Bad Gateway</html>"),
            result)
        self.assertEqual(entry["fail_count"], 1)

    async def test_unknown_status_is_a_failure(self) -> None:
        self.worker.policy = always(unknown_status(code=200))
        await self.queue()
        pushed = await self.daemon.api.push_ok(
            CATEGORY, self.worker.url(), '{"n": 5}', max_retries=1, retry_delay=1)
        entry = await self.final_failure(pushed["id"], timeout=6)
        result = entry["result"]
        self.assertEqual((result["status"], result["code"]), ("failure", 200))
        self.assertEqual(result["message"],
                         'Invalid result status: ok\nOriginal response body:\n{"status":"ok"}')
        self.assertEqual(entry["fail_count"], 2)
        self.assertEqual(len(self.worker.received), 2)

    # --- timing --------------------------------------------------------------------------

    async def test_run_after(self) -> None:
        """A job with run_after 2 is deferred for 2 s, then delivered by the next poll."""
        await self.queue()
        before = now()
        pushed = await self.daemon.api.push_ok(CATEGORY, self.worker.url(), '{"n": 6}',
                                               run_after=2)
        after = now()
        deferred = await self.daemon.api.ok("GET", f"/queue/{QUEUE}/deferred")
        self.assertEqual([j["id"] for j in deferred["jobs"]], [pushed["id"]])
        [request] = await self.worker.wait_for(1, timeout=5)
        # next_try is the push time in whole ms + 2000: allow the ms rounding.
        self.assertGreaterEqual(request.time, before + 2 - 0.002)
        # Found by the next poll (200 ms), plus slack for a loaded machine.
        self.assertLessEqual(request.time, after + 2 + 0.2 + 0.3)
        print(f"\nE2E {self.driver} run_after=2: delivered {request.time - before:.3f} s after"
              " the push was sent")

    async def test_timeout_is_an_internal_failure(self) -> None:
        """A worker slower than the job's timeout: the attempt fails as internal-failure
        after about the timeout."""
        self.worker.policy = always(slow(5))
        await self.queue()
        pushed = await self.daemon.api.push_ok(CATEGORY, self.worker.url(), '{"n": 7}',
                                               timeout=1)
        [request] = await self.worker.wait_for(1)
        entry = await self.final_failure(pushed["id"], timeout=4)
        observed = now()
        [complete] = await self.queue_log(id=pushed["id"], action="complete")
        result = entry["result"]
        self.assertEqual((result["status"], result["code"]), ("internal-failure", 0))
        self.assertTrue(result["message"].startswith("Request failed: "), result)
        taken = complete["time"] / 1000 - request.time
        print(f"\nE2E {self.driver} timeout=1 against a 5 s worker: failed {taken:.3f} s after"
              f" the worker got the request (seen by the test after {observed - request.time:.3f}"
              f" s); message {result['message']!r}")
        self.assertTrue(0.9 <= taken <= 2.0, f"attempt ended {taken:.3f} s after it began")
        self.assertEqual(complete["status"], "failed")
        # The daemon gave up on the exchange: it closed the connection, the worker's late
        # answer goes nowhere.
        await eventually(self._worker_idle, timeout=1, what="the daemon to close the connection")

    async def _worker_idle(self) -> bool:
        return self.worker.current == 0

    async def test_max_workers_never_exceeded(self) -> None:
        """max_workers 3 and 30 jobs of 100 ms each: the worker sees exactly 3 at a time."""
        self.worker.policy = always(slow(0.1))
        await self.queue(max_workers=3)
        await gather(self.daemon.api.push_ok(CATEGORY, self.worker.url(), f'{{"n": {i}}}')
                     for i in range(30))
        await self.worker.wait_for(30, timeout=10)
        self.assertEqual(sorted(p["n"] for p in self.worker.payloads()), list(range(30)))
        self.assertEqual(self.worker.max_concurrency, 3)
        times = [r.time for r in self.worker.received]
        print(f"\nE2E {self.driver} max_workers=3: 30 jobs of 100 ms in"
              f" {max(times) - min(times):.3f} s, max concurrency {self.worker.max_concurrency}")

    async def test_throttle_rate(self) -> None:
        """max_dispatches_per_second 5, max_burst_size 1: deliveries >= 0.2 s apart."""
        stored = await self.queue(max_dispatches_per_second=5, max_burst_size=1)
        self.assertEqual(stored["polling_interval"], 100)
        # The daemon's first connection to a worker costs a few ms more than the next ones
        # (thread pool start-up); spend it on another queue so that it does not shorten the
        # first gap.
        await self.queue("warm_up", "warm_up_cat")
        await self.daemon.api.push_ok("warm_up_cat", self.worker.url("/warm-up"))
        await self.worker.wait_for(1)
        del self.worker.received[:]
        # Due together 1 s later, so that the first delivery does not compete with the
        # handling of the other pushes (that delays its arrival by a few ms).
        await gather(self.daemon.api.push_ok(CATEGORY, self.worker.url(), f'{{"n": {i}}}',
                                             run_after=1)
                     for i in range(15))
        await self.worker.wait_for(15, timeout=8)
        times = [r.time for r in self.worker.received]
        gaps = [b - a for a, b in zip(times, times[1:])]
        print(f"\nE2E {self.driver} throttle 5/s burst 1: span {times[-1] - times[0]:.3f} s,"
              f" gaps {min(gaps):.3f}-{max(gaps):.3f} s")
        # Each arrival carries the jitter of a loaded machine (a 0.32 s gap then a 0.18 s one
        # was seen at a load of 7): single gaps are checked loosely, the rate by the span.
        self.assertGreaterEqual(min(gaps), 0.2 - 0.050, f"gaps: {gaps}")
        self.assertGreaterEqual(times[-1] - times[0], 2.8 - 0.010)
        self.assertEqual(sorted(p["n"] for p in self.worker.payloads()), list(range(15)))

    async def test_push_wakes_the_dispatcher(self) -> None:
        """An idle queue polling every 2 s delivers a push at once: within 0.5 s of its answer,
        and the median within 50 ms."""
        await self.queue(polling_interval=2000)
        await sleep(2.2)
        latencies = []
        for i in range(5):
            reply = await self.daemon.api.push(CATEGORY, self.worker.url(), f'{{"n": {i}}}')
            self.assertEqual(reply.code, 200)
            request = (await self.worker.wait_for(i + 1, timeout=3))[i]
            latencies.append(request.time - reply.time)
            # Next push at another phase of the 2 s poll.
            await sleep(0.37)
        print(f"\nE2E {self.driver} wake-up latency (worker receipt - push answer), ms: "
              + ", ".join(f"{x * 1000:.1f}" for x in latencies))
        # The 50 ms target is a figure of bench/run, not of a test on a shared machine: here
        # each delivery must come well before the 2 s poll would have found it, and most within
        # the target.
        for latency in latencies:
            self.assertLess(latency, 0.5, f"latencies: {latencies}")
        self.assertLess(sorted(latencies)[len(latencies) // 2], 0.050, f"latencies: {latencies}")

    # --- shutdown ------------------------------------------------------------------------

    async def test_sigterm_finishes_the_delivery_in_flight(self) -> None:
        """SIGTERM while a worker holds a job for 1 s: the daemon waits for it, writes its
        completion and exits 0, well before --shutdown-timeout."""
        self.daemon.options.append("--shutdown-timeout=20")
        await self.daemon.restart()
        self.worker.policy = always(slow(1))
        await self.queue()
        pushed = await self.daemon.api.push_ok(CATEGORY, self.worker.url(), '{"n": 8}')
        [request] = await self.worker.wait_for(1)
        signalled = now()
        exit = await self.daemon.stop()
        took = now() - signalled
        print(f"\nE2E {self.driver} SIGTERM with a 1 s delivery in flight: exit {exit} after"
              f" {took:.3f} s")
        self.assertEqual(exit, Exit(0, None), self.daemon.stderr())
        self.assertTrue(0.5 <= took <= 3.0, f"took {took:.3f} s")
        [complete] = self.daemon.queue_log(id=pushed["id"], action="complete")
        self.assertEqual((complete["status"], complete["message"]), ("completed", "done"))
        if self.durable:
            await self.daemon.spawn()
            self.assertTrue(await self.job_gone(pushed["id"]))
            await sleep(0.5)
            self.assertEqual(len(self.worker.received), 1, "delivered again after the restart")


class DurableE2EMixin(E2EMixin):
    """The scenarios of the drivers whose jobs survive a restart (``durable``)."""

    durable = True

    async def test_restart_keeps_data(self) -> None:
        """Queues, routings, deferred jobs and the failure log survive a graceful restart."""
        await self.queue(max_workers=7, polling_interval=300)
        await self.daemon.api.put_queue("other", max_dispatches_per_second=2.5, max_burst_size=4)
        await self.daemon.api.put_routing("other_cat", "other")
        deferred = await self.daemon.api.push_ok(
            CATEGORY, self.worker.url(), '{"n": "later"}', run_after=3600, max_retries=4,
            retry_delay=9, timeout=30)
        self.worker.policy = always(permanent_failure("nope"))
        failed = await self.daemon.api.push_ok(CATEGORY, self.worker.url(), '{"n": "fails"}')
        await self.final_failure(failed["id"])

        async def snapshot() -> dict[str, Any]:
            api = self.daemon.api
            return {
                "queues": await api.ok("GET", "/queues"),
                "routings": await api.ok("GET", "/routings"),
                "job": await api.ok("GET", f"/queue/{QUEUE}/job/{deferred['id']}"),
                "deferred": await api.ok("GET", f"/queue/{QUEUE}/deferred"),
                "failed": await api.ok("GET", f"/queue/{QUEUE}/failed"),
            }

        before = await snapshot()
        self.assertEqual(len(before["failed"]["failed_jobs"]), 1)
        self.assertEqual([j["id"] for j in before["deferred"]["jobs"]], [deferred["id"]])
        exit = await self.daemon.restart()
        self.assertEqual(exit, Exit(0, None))
        after = await snapshot()
        self.assertEqual(after, before)
        # The restarted daemon still routes and dispatches with the stored definitions.
        self.worker.policy = always(success())
        await self.daemon.api.push_ok(CATEGORY, self.worker.url(), '{"n": "after"}')
        await eventually(lambda: self._received({"n": "after"}), what="delivery after restart")

    async def test_shutdown_timeout_leaves_the_job_for_the_next_start(self) -> None:
        """A delivery longer than --shutdown-timeout: the daemon exits 0 at the timeout
        without writing an outcome; the next start recovers the job and delivers it again
        (docs/worker-protocol.md, At-least-once delivery)."""
        self.daemon.options.append("--shutdown-timeout=1")
        await self.daemon.restart()
        self.worker.policy = always(slow(4))
        await self.queue()
        pushed = await self.daemon.api.push_ok(CATEGORY, self.worker.url(), '{"n": 9}')
        await self.worker.wait_for(1)
        signalled = now()
        exit = await self.daemon.stop()
        took = now() - signalled
        self.assertEqual(exit, Exit(0, None))
        self.assertTrue(0.9 <= took <= 2.5, f"exited {took:.3f} s after SIGTERM")
        self.assertEqual(self.daemon.queue_log(action="complete"), [])
        self.worker.policy = always(success())
        await self.daemon.spawn()
        [_, again] = await self.worker.wait_for(2, timeout=5)
        self.assertEqual(again.body, b'{"n": 9}')
        await eventually(lambda: self.job_gone(pushed["id"]), what="the job to finish")
        print(f"\nE2E {self.driver} shutdown timeout 1 s with a 4 s delivery: exit {exit} after"
              f" {took:.3f} s; delivered again {again.time - signalled:.3f} s after SIGTERM")

    async def _received(self, payload: Any) -> bool:
        return payload in self.worker.payloads()


class SqliteE2ETests(DurableE2EMixin, TestCase):
    driver = "sqlite"


class InMemoryE2ETests(E2EMixin, TestCase):
    driver = "in-memory"
    durable = False


class MySQLE2ETests(DurableE2EMixin, TestCase):
    """The whole mixin on the mysql driver: real MariaDB (``tests/mysqltools.py``), each test
    on its own database, created before its daemon starts and dropped after it is gone.
    Skipped when the server cannot be reached (failed with FIREWORQ_TEST_REQUIRE_MYSQL)."""

    driver = "mysql"


# The daemon as two processes (--processes 2, docs/performance.md, "More than one core"): the
# test's requests, each on a connection of its own, land on either process, while one process
# dispatches the queue. A selection of the scenarios, split over the drivers, to keep CI's
# time down: node-wide stats, max_workers and throttles exact for the node, wake-ups between
# the processes, graceful stops of both, deferred jobs, the failure log read from either
# process, data kept over a restart.


@only("test_success", "test_permanent_failure_not_retried", "test_run_after",
      "test_throttle_rate", "test_sigterm_finishes_the_delivery_in_flight")
class SqliteProcessesE2ETests(SqliteE2ETests):
    processes = 2


@only("test_failure_retried_max_retries_times", "test_max_workers_never_exceeded",
      "test_push_wakes_the_dispatcher", "test_restart_keeps_data",
      "test_shutdown_timeout_leaves_the_job_for_the_next_start")
class MySQLProcessesE2ETests(MySQLE2ETests):
    processes = 2
