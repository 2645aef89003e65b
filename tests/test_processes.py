"""``--processes N``: one node as N processes on one listening socket (docs/performance.md,
"More than one core"; docs/configuration.md, ``processes``).

End to end on real daemons: pushes spread over the processes are all stored and delivered,
a graceful stop ends every process only after the deliveries in flight, a child that dies
is started again, a parent killed with ``kill -9`` takes its children with it and the next
start delivers every acknowledged job, and the in-memory driver refuses the option.
"""

from __future__ import annotations

import io
import json
import os
import signal
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase

import mysqltools
from apptools import utc
from fireworq.config import load_config, settings
from fireworq.logs import JsonErrorLogObserver, classic_text
from fireworq.processes import child_arguments
from e2e import (
    LISTENING,
    Daemon,
    Worker,
    alive,
    always,
    bounded,
    child_pids,
    eventually,
    gather,
    sleep,
    slow,
    success,
)

QUEUE = "mp"
CATEGORY = "mp_cat"
PROCESSES = 3


def connected_to(pids: list[int], port: int) -> dict[int, int]:
    """How many TCP connections each of ``pids`` has open to 127.0.0.1:``port``."""
    owners: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owners[target[8:-1]] = pid
        except OSError:
            pass
    found: dict[int, int] = {}
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and int(remote.split(":")[1], 16) == port and inode in owners:
                found[owners[inode]] = found.get(owners[inode], 0) + 1
    return found


class _ProcessesTests:
    driver = "sqlite"

    def store_options(self) -> list[str]:
        return []

    def setUp(self) -> Deferred[None]:  # type: ignore[misc]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        case: Any = self
        self.daemon = await Daemon.start(
            case, self.driver, ["--processes=%d" % PROCESSES, "--keep-alive=false",
                                *self.store_options()])
        await eventually(self.all_children_listening, 30, 0.1, "every child to listen")
        await self.daemon.api.put_queue(QUEUE, max_workers=10, polling_interval=200)
        await self.daemon.api.put_routing(CATEGORY, QUEUE)

    async def all_children_listening(self) -> bool:
        return await self._listening_lines(PROCESSES)

    async def push_many(self, url: str, count: int, first: int = 0) -> set[int]:
        """``count`` pushes, each on a new connection (so the kernel spreads them over the
        processes); the ``n``s answered 200."""
        acknowledged: set[int] = set()

        def push(n: int) -> Any:
            async def one() -> None:
                reply = await self.daemon.api.push(CATEGORY, url, '{"n": %d}' % n)
                if reply.code == 200:
                    acknowledged.add(n)
            return one

        await bounded([push(n) for n in range(first, first + count)], 8)
        return acknowledged

    async def delivered(self, worker: Worker, count: int, timeout: float) -> None:
        """Wait for ``count`` deliveries. A timeout says where the jobs were (the queue's
        stats, its node and failure log, the processes' log), to tell a lost wake-up from
        a slow delivery."""
        try:
            await worker.wait_for(count, timeout=timeout)
        except Exception as error:
            details = [str(error)]
            for route in ("stats", "node", "failed"):
                path = f"/queue/{QUEUE}/{route}"
                try:
                    reply = await self.daemon.api.request("GET", path, timeout=5)
                    details.append(f"{path}: {reply.code} {reply.body[:2000]!r}")
                except Exception as failure:
                    details.append(f"{path}: {failure!r}")
            details.append("the processes' log:\n" + self.daemon.stderr()[-30000:])
            raise AssertionError("\n".join(details)) from error

    async def test_pushes_on_every_process_are_delivered(self) -> None:
        case: Any = self
        worker = await Worker.start(case, always(success()))
        case.assertEqual(len(child_pids(self.daemon.pid)), PROCESSES - 1)
        # With the parent stopped, only the children can accept and store pushes.
        os.kill(self.daemon.pid, signal.SIGSTOP)
        try:
            by_children = await self.push_many(worker.url(), 30)
        finally:
            os.kill(self.daemon.pid, signal.SIGCONT)
        case.assertEqual(by_children, set(range(30)))
        acknowledged = await self.push_many(worker.url(), 300, first=30)
        case.assertEqual(len(acknowledged), 300)
        await worker.wait_for(330, timeout=60)
        case.assertEqual(sorted(p["n"] for p in worker.payloads()), list(range(330)))
        exit = await self.daemon.stop()
        case.assertEqual(exit.code, 0)

    async def test_a_push_to_any_process_wakes_the_dispatching_one(self) -> None:
        """With polls an hour apart, jobs stored by the processes that do not dispatch
        their queue arrive at once: they tell the one that does."""
        case: Any = self
        await self.daemon.api.put_queue(QUEUE, max_workers=10, polling_interval=3600000)
        worker = await Worker.start(case, always(success()))
        await sleep(1.5)  # the first poll of the new interval is behind us
        # The parent, stopped, accepts nothing: the children store every push.
        os.kill(self.daemon.pid, signal.SIGSTOP)
        try:
            acknowledged = await self.push_many(worker.url(), 30)
        finally:
            os.kill(self.daemon.pid, signal.SIGCONT)
        case.assertEqual(len(acknowledged), 30)
        # Without the wake-ups they would wait an hour; 60 s leaves room for a loaded host.
        await self.delivered(worker, 30, timeout=60)
        await self.daemon.stop()

    async def test_each_log_line_names_its_process(self) -> None:
        """The processes share standard error: each line says which one wrote it
        (docs/configuration.md, Error log)."""
        case: Any = self
        listening = [line for line in self.daemon.stderr(self.daemon.runs).splitlines()
                     if LISTENING in line]
        labels = sorted(line.split("] ", 1)[1].split(LISTENING)[0] for line in listening)
        case.assertEqual(labels, ["(process %d of %d) " % (n, PROCESSES)
                                  for n in range(1, PROCESSES + 1)])
        await self.daemon.stop()

    async def test_graceful_stop_waits_for_deliveries_and_ends_every_process(self) -> None:
        case: Any = self
        worker = await Worker.start(case, always(slow(1.5, success())))
        acknowledged = await self.push_many(worker.url(), 20)
        case.assertEqual(len(acknowledged), 20)
        await worker.wait_for(10, timeout=30)  # max_workers deliveries in flight
        pids = child_pids(self.daemon.pid)
        case.assertEqual(len(pids), PROCESSES - 1)
        exit = await self.daemon.stop()
        case.assertEqual(exit.code, 0)
        case.assertEqual([pid for pid in pids if alive(pid)], [])
        # Every delivery that had started was answered before the process ended.
        case.assertEqual(worker.current, 0)
        await self.daemon.spawn()
        await worker.wait_for(20, timeout=60)
        case.assertEqual(sorted(p["n"] for p in worker.payloads()), list(range(20)))
        await self.daemon.stop()

    async def test_a_dead_child_is_started_again(self) -> None:
        case: Any = self
        self.daemon.check_errors = False  # the parent logs the child's death as an error
        before = child_pids(self.daemon.pid)
        os.kill(before[0], signal.SIGKILL)

        async def replaced() -> bool:
            now = child_pids(self.daemon.pid)
            return len(now) == PROCESSES - 1 and before[0] not in now

        await eventually(replaced, 30, 0.1, "a new child")
        await eventually(lambda: self._listening_lines(PROCESSES + 1), 30, 0.1,
                         "the new child to listen")
        worker = await Worker.start(case, always(success()))
        acknowledged = await self.push_many(worker.url(), 60)
        case.assertEqual(len(acknowledged), 60)
        await worker.wait_for(60, timeout=60)
        await self.daemon.stop()

    async def test_stats_and_metrics_are_node_wide(self) -> None:
        """Whichever process a connection lands on, the stats and ``/metrics`` count the
        pushes and deliveries of every process, and the node's worker slots once."""
        case: Any = self
        worker = await Worker.start(case, always(success()))
        os.kill(self.daemon.pid, signal.SIGSTOP)  # the children alone store these
        try:
            first = await self.push_many(worker.url(), 30)
        finally:
            os.kill(self.daemon.pid, signal.SIGCONT)
        rest = await self.push_many(worker.url(), 60, first=30)
        case.assertEqual(len(first | rest), 90)
        await worker.wait_for(90, timeout=60)
        expected = {"total_pushes": 90, "total_pops": 90, "total_successes": 90,
                    "total_completes": 90, "total_failures": 0, "total_workers": 10,
                    "idle_workers": 10, "active_nodes": 1}

        async def every_answer_node_wide() -> bool:
            # Each request on a new connection: over several, more than one process answers.
            for _ in range(3 * PROCESSES):
                stats = await self.daemon.api.stats(QUEUE)
                if {k: stats[k] for k in expected} != expected:
                    return False
                listed = await self.daemon.api.ok("GET", "/queues/stats")
                if {k: listed[QUEUE][k] for k in expected} != expected:
                    return False
            return True

        await eventually(every_answer_node_wide, 20, 0.2, "node-wide stats from every process")
        for _ in range(2 * PROCESSES):
            metrics = (await self.daemon.api.request("GET", "/metrics")).body.decode()
            case.assertIn('fireworq_jobs_pushed_total{queue="%s"} 90.0' % QUEUE, metrics)
            case.assertIn('fireworq_jobs_completed_total{outcome="success",queue="%s"} 90.0'
                          % QUEUE, metrics)
            case.assertIn('fireworq_queue_workers{queue="%s",state="total"} 10.0' % QUEUE,
                          metrics)
            case.assertIn('fireworq_delivery_duration_seconds_count{queue="%s"} 90.0' % QUEUE,
                          metrics)
        await self.daemon.stop()

    async def test_deliveries_of_one_queue_spread_over_the_processes(self) -> None:
        """One queue, dispatched by one process: its deliveries are made by the others
        too, and never more at once than its ``max_workers``."""
        case: Any = self
        worker = await Worker.start(case, always(slow(0.5, success())))
        acknowledged = await self.push_many(worker.url(), 60)
        case.assertEqual(len(acknowledged), 60)
        pids = [self.daemon.pid, *child_pids(self.daemon.pid)]
        port = int(worker.url().split(":")[2].split("/")[0])
        seen: dict[int, int] = {}

        async def several_processes_deliver() -> bool:
            for pid, count in connected_to(pids, port).items():
                seen[pid] = max(seen.get(pid, 0), count)
            case.assertLessEqual(worker.current, 10)
            return len(seen) >= 2

        await eventually(several_processes_deliver, 20, 0.05, "deliveries from several processes")
        await worker.wait_for(60, timeout=60)
        case.assertLessEqual(worker.max_concurrency, 10)
        case.assertEqual(sorted(p["n"] for p in worker.payloads()), sorted(acknowledged))

        async def all_succeeded() -> bool:
            stats = await self.daemon.api.stats(QUEUE)
            return (stats["total_successes"], stats["total_failures"]) == (60, 0)

        await eventually(all_succeeded, 20, 0.1, "60 successes and no failure")
        await self.daemon.stop()

    async def test_a_deleted_queue_is_deleted_at_once_on_every_process(self) -> None:
        """docs/api.md, DELETE /queue: the queue stops at once on this node, so on each of
        its processes, not at their next refresh (an hour away here): once the DELETE is
        answered, pushes to it are 404 on whichever process they land, and none is stored."""
        case: Any = self
        self.daemon.options.append("--config-refresh-interval=3600000")
        await self.daemon.restart()
        await eventually(self.all_children_listening, 30, 0.1, "every child to listen")
        worker = await Worker.start(case, always(success()))
        # Every process knows the queue (they read it from the store on a first request).
        case.assertEqual(len(await self.push_many(worker.url(), 30)), 30)
        await self.delivered(worker, 30, timeout=60)
        await self.daemon.api.ok("DELETE", f"/queue/{QUEUE}")
        replies = await gather(
            self.daemon.api.push(CATEGORY, worker.url(), '{"n": %d}' % n) for n in range(30))
        case.assertEqual([reply.code for reply in replies], [404] * 30,
                         [reply.body for reply in replies if reply.code != 404])
        await self.daemon.stop()

    async def _listening_lines(self, count: int) -> bool:
        """At least ``count`` processes of the current run said they listen."""
        return self.daemon.stderr(self.daemon.runs).count("fireworq listening on") >= count

    async def test_kill9_of_the_parent_loses_no_acknowledged_job(self) -> None:
        case: Any = self
        worker = await Worker.start(case, always(slow(1.0, success())))
        acknowledged = await self.push_many(worker.url(), 40)
        case.assertEqual(len(acknowledged), 40)
        await worker.wait_for(5, timeout=30)
        pids = child_pids(self.daemon.pid)
        await self.daemon.kill9()

        async def gone() -> bool:
            return not any(alive(pid) for pid in pids)

        await eventually(gone, 40, 0.1, "the children to end with their parent")
        await self.daemon.spawn()

        async def every_job() -> bool:
            return {p["n"] for p in worker.payloads()} == acknowledged

        # At least once: the jobs grabbed at the kill may come twice.
        await eventually(every_job, 60, 0.1, "every acknowledged job")
        await self.daemon.stop()


class SqliteProcessesTests(_ProcessesTests, TestCase):
    driver = "sqlite"


class MySQLProcessesTests(_ProcessesTests, TestCase):
    driver = "mysql"

    def store_options(self) -> list[str]:
        self.database = mysqltools.create_database("fwprocs")
        self.addCleanup(mysqltools.drop_database, self.database)
        return [f"--mysql-dsn={mysqltools.dsn_text(self.database)}"]


class InMemoryRefusedTests(TestCase):
    async def _refused(self) -> None:
        daemon = Daemon(self, "in-memory", ["--processes=2"])
        try:
            await daemon.spawn()
        except AssertionError as error:
            self.assertIn("needs a store the processes share", str(error))
        else:
            raise AssertionError("an in-memory daemon started with --processes=2")

    def test_in_memory_refuses_processes(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._refused())


class ProcessLabelTests(SynchronousTestCase):
    """The error log of a node of several processes names the process of each line."""

    EVENT = {"log_format": "Queue {queue} paused", "queue": "q", "log_level": LogLevel.info,
             "log_namespace": "fireworq.queues", "log_time": 1796256000.0}

    def setUp(self) -> None:
        self.addCleanup(utc())

    def test_text_lines_name_the_process_after_the_source(self) -> None:
        line = classic_text((2, 3))(self.EVENT)
        self.assertEqual(line, "2026-12-03T00:00:00+0000 [fireworq.queues#info]"
                               " (process 2 of 3) Queue q paused\n")

    def test_a_single_process_writes_twistds_lines(self) -> None:
        self.assertEqual(classic_text(None)(self.EVENT),
                         "2026-12-03T00:00:00+0000 [fireworq.queues#info] Queue q paused\n")

    def test_json_lines_have_a_process_member(self) -> None:
        for process, expected in ((2, {"process": 2}), (None, {})):
            output = io.BytesIO()
            JsonErrorLogObserver(lambda: output, process)(self.EVENT)
            line = json.loads(output.getvalue())
            self.assertEqual(line, {"level": "info", "time": line["time"],
                                    "source": "fireworq.queues", "message": "Queue q paused",
                                    **expected})


class ChildArgumentsTests(SynchronousTestCase):
    def test_a_child_gets_the_same_settings_and_secrets_stay_off_its_command_line(self) -> None:
        """When the parent was given secrets (a DSN with a password, API tokens) and plain
        values, its children get the secrets by environment only, and their settings are
        the parent's."""
        config = load_config({"api_tokens": "s3cret-token:admin", "processes": "3",
                              "mysql_dsn": "app:pw0rd@tcp(db:3306)/fireworq",
                              "queue_log": "/var/log/q.log", "keep_alive": "1"}, {})
        options, environ = child_arguments(config)
        self.assertEqual(environ, {"FIREWORQ_API_TOKENS": "s3cret-token:admin",
                                   "FIREWORQ_MYSQL_DSN": "app:pw0rd@tcp(db:3306)/fireworq"})
        self.assertFalse([o for o in options if "s3cret" in o or "pw0rd" in o])
        self.assertEqual(options[-2:], ["--pid=", "--processes=1"])
        given = {}
        for option in options:
            key, _, value = option[2:].partition("=")
            given[key.replace("-", "_")] = value
        child = load_config(given, environ)
        expected = dict(settings(config), processes="1")
        self.assertEqual(settings(child), expected)
