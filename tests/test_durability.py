"""Durability across ``kill -9`` (docs/worker-protocol.md, At-least-once delivery): of the
sqlite driver, and of a node of two processes (``--processes 2``, docs/performance.md, "More
than one core") on sqlite and MySQL, its parent or its child killed.

Nothing acknowledged is lost: every job whose push was answered 200 reaches the worker at least
once after a restart, however the previous process died. Duplicates are allowed only for jobs
that were ``grabbed`` at the kill, so at most ``max_workers`` of them.

Each test prints a one-line summary (see it with ``pytest -s``).
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import Daemon, Worker, always, bounded, eventually, free_port, now, only, sleep, slow

QUEUE = "dur"
CATEGORY = "dur_cat"
JOBS = 1000
PUSH_CONCURRENCY = 16
MAX_WORKERS = 20

if TYPE_CHECKING:
    _Base = TestCase
else:
    _Base = object


class _DurabilityMixin(_Base):
    driver: str
    processes = 1

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    def driver_options(self) -> tuple[str, ...]:
        return ()

    async def _setUp(self) -> None:
        self.daemon = await Daemon.start(self, self.driver, self.driver_options(),
                                         processes=self.processes)
        await self.define_queue()

    async def define_queue(self) -> None:
        await self.daemon.api.put_queue(QUEUE, max_workers=MAX_WORKERS)
        await self.daemon.api.put_routing(CATEGORY, QUEUE)

    async def push_all(self, url: str, **options: int) -> tuple[set[int], float]:
        """Push jobs {"n": 0..JOBS-1}, PUSH_CONCURRENCY at a time; the ``n``s answered 200
        and the time the last push was answered."""
        acknowledged: set[int] = set()
        last = 0.0

        def push(n: int) -> Any:
            async def one() -> None:
                nonlocal last
                reply = await self.daemon.api.push(CATEGORY, url, f'{{"n": {n}}}', **options)
                if reply.code == 200:
                    acknowledged.add(n)
                    last = max(last, reply.time)
            return one

        await bounded([push(n) for n in range(JOBS)], PUSH_CONCURRENCY)
        return acknowledged, last

    async def all_delivered(self, worker: Worker, acknowledged: set[int],
                            timeout: float) -> None:
        async def done() -> bool:
            return acknowledged <= {p["n"] for p in worker.payloads()}
        try:
            await eventually(done, timeout, step=0.1, what="every acknowledged job")
        except AssertionError:
            pass  # reported through the summary and the lost == 0 assertion

    async def queue_empty(self) -> bool:
        api = self.daemon.api
        for state in ("grabbed", "waiting", "deferred"):
            if (await api.ok("GET", f"/queue/{QUEUE}/{state}"))["jobs"]:
                return False
        return True

    def summary(self, label: str, acknowledged: set[int], worker: Worker,
                **extra: Any) -> tuple[int, int]:
        counts = Counter(p["n"] for p in worker.payloads())
        delivered = len(acknowledged & counts.keys())
        lost = len(acknowledged - counts.keys())
        duplicates = sum(c - 1 for c in counts.values())
        unacknowledged = len(counts.keys() - acknowledged)
        fields = " ".join(f"{k}={v}" for k, v in extra.items())
        print(f"\nDURABILITY {label}: acknowledged={len(acknowledged)} delivered={delivered}"
              f" lost={lost} duplicates={duplicates} delivered_unacknowledged={unacknowledged}"
              f" deliveries={len(worker.received)} {fields}".rstrip())
        return lost, duplicates

    async def kill9_while_delivering(self) -> None:
        """(b) worker up (20 ms a job, max_workers 20), 1000 jobs due 3 s after their push,
        kill -9 after ~300 deliveries, restart: nothing acknowledged is lost, and at most the
        jobs in flight at the kill (<= max_workers) are delivered twice."""
        worker = await Worker.start(self, always(slow(0.02)))
        started = now()
        pushes: Deferred[tuple[set[int], float]] = Deferred.fromCoroutine(
            self.push_all(worker.url(), run_after=3))
        await worker.wait_for(300, timeout=30)
        in_flight = worker.current
        at_kill = len(worker.received)
        exit = await self.daemon.kill9()
        self.assertEqual(exit.signal, 9)
        # Pushes still in progress at the kill (if pushing took over 3 s) fail: those jobs
        # are not acknowledged.
        acknowledged, last = await pushes
        pushed_before_deliveries = last - started < 3

        await self.daemon.spawn()
        restarted = now()
        await self.all_delivered(worker, acknowledged, timeout=30)
        took = now() - restarted
        await sleep(0.5)
        lost, duplicates = self.summary(
            f"b {self.driver} processes={self.processes}", acknowledged, worker,
            received_at_kill=at_kill, worker_in_flight_at_kill=in_flight,
            all_pushed_before_first_due=pushed_before_deliveries,
            delivery_after_restart_s=f"{took:.2f}", max_concurrency=worker.max_concurrency)
        self.assertEqual(lost, 0)
        self.assertLessEqual(duplicates, MAX_WORKERS)
        self.assertLessEqual(worker.max_concurrency, MAX_WORKERS)
        await eventually(self.queue_empty, 10, what="the queue to empty")
        self.assertEqual(await self.daemon.api.failed(QUEUE), [])


class SqliteDurabilityTests(_DurabilityMixin, TestCase):
    driver = "sqlite"

    async def test_a_kill9_after_pushes_worker_down(self) -> None:
        """(a) 1000 jobs pushed while the worker's port refuses connections (attempts fail
        and are retried every second), kill -9 right after the last 200, restart with the
        worker listening on that port: every acknowledged job is delivered."""
        port = free_port()
        worker = Worker()
        worker.port = port
        self.addCleanup(lambda: Deferred.fromCoroutine(worker.stop()))
        started = now()
        acknowledged, last = await self.push_all(
            f"http://127.0.0.1:{port}/work", max_retries=1000000, retry_delay=1)
        killed = now()
        exit = await self.daemon.kill9()
        pushing = last - started
        self.assertEqual(exit.signal, 9)
        self.assertEqual(worker.received, [])

        worker.listen(port)
        await self.daemon.spawn()
        restarted = now()
        await self.all_delivered(worker, acknowledged, timeout=30)
        took = now() - restarted
        await sleep(0.5)  # late duplicates, if any
        lost, duplicates = self.summary(
            "a", acknowledged, worker, push_s=f"{pushing:.2f}",
            kill_after_last_ack_ms=f"{(killed - last) * 1000:.1f}",
            delivery_after_restart_s=f"{took:.2f}")
        self.assertEqual(len(acknowledged), JOBS)
        self.assertEqual(lost, 0)
        self.assertEqual(duplicates, 0)
        await eventually(self.queue_empty, 10, what="the queue to empty")
        self.assertEqual(await self.daemon.api.failed(QUEUE), [])

    async def test_b_kill9_while_delivering(self) -> None:
        await self.kill9_while_delivering()


class _ProcessesDurabilityMixin(_DurabilityMixin):
    """A node of two processes: ``kill -9`` of the parent (its child gets SIGTERM and ends
    with it, then the node starts again), or of the child (the parent takes its queues over
    and starts a new child, the node runs on)."""

    processes = 2

    async def define_queue(self) -> None:
        # Defined with the parent stopped, so through the child alone: with MySQL the child
        # takes the queue's lock and dispatches it (the deliveries themselves are spread over
        # both processes). (With sqlite the parent dispatches every
        # queue whatever happens: it holds the file's dispatch lock from its start.)
        os.kill(self.daemon.pid, signal.SIGSTOP)
        try:
            await super().define_queue()

            async def dispatched() -> bool:
                reply = await self.daemon.api.request("GET", f"/queue/{QUEUE}/node")
                return reply.code == 200
            await eventually(dispatched, 10, what="a process to dispatch the queue")
        finally:
            os.kill(self.daemon.pid, signal.SIGCONT)

    async def test_b_kill9_of_the_parent_while_delivering(self) -> None:
        await self.kill9_while_delivering()

    async def test_c_kill9_of_the_child_while_delivering(self) -> None:
        """(c) as (b), but the child is killed, not the parent: the node runs on. The pushes
        the child was answering fail (not acknowledged); the parent takes the child's queues
        over (MySQL) and recovers their grabbed jobs, and starts a new child."""
        self.daemon.check_errors = False  # the parent reports the death: checked below
        worker = await Worker.start(self, always(slow(0.02)))
        [child] = self.daemon.children
        pushes: Deferred[tuple[set[int], float]] = Deferred.fromCoroutine(
            self.push_all(worker.url(), run_after=3))
        await worker.wait_for(300, timeout=30)
        in_flight = worker.current
        at_kill = len(worker.received)
        os.kill(child, signal.SIGKILL)
        killed = now()
        acknowledged, _ = await pushes
        await self.all_delivered(worker, acknowledged, timeout=30)
        took = now() - killed
        await sleep(0.5)
        lost, duplicates = self.summary(
            f"c {self.driver} processes={self.processes}", acknowledged, worker,
            received_at_kill=at_kill, worker_in_flight_at_kill=in_flight,
            delivered_after_kill_s=f"{took:.2f}",
            max_concurrency=worker.max_concurrency)
        self.assertEqual(lost, 0)
        self.assertLessEqual(duplicates, MAX_WORKERS)
        self.assertLessEqual(worker.max_concurrency, MAX_WORKERS)
        await eventually(self.queue_empty, 10, what="the queue to empty")
        self.assertEqual(await self.daemon.api.failed(QUEUE), [])
        # (test_processes checks that the parent starts a new child.)
        self.assertEqual(
            [line for line in self.daemon.error_lines() if "Process 2 of 2 died" not in line],
            [])


# One kill per driver, where it matters most, to keep CI's time down: with sqlite the parent
# dispatches every queue (it holds the file's dispatch lock), so killing it kills the
# dispatcher; with MySQL the child dispatches the queue (define_queue), so killing it makes
# the parent take the queue over while the node runs on.


@only("test_b_kill9_of_the_parent_while_delivering")
class SqliteProcessesDurabilityTests(_ProcessesDurabilityMixin, TestCase):
    driver = "sqlite"


@only("test_c_kill9_of_the_child_while_delivering")
class MySQLProcessesDurabilityTests(_ProcessesDurabilityMixin, TestCase):
    driver = "mysql"

    def driver_options(self) -> tuple[str, ...]:
        return mysqltools.daemon_database(self, "fwdur")[1]
