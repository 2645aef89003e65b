"""Signals, log reopening and the PID file (docs/configuration.md, Stopping;
docs/operations.md, PID files and the twistd.pid trap).

* SIGTERM, SIGHUP and SIGINT stop gracefully: the delivery in flight finishes, its outcome is
  written, and the daemon exits 0 before ``--shutdown-timeout``.
* A second stop signal exits at once with status 1; the job in flight stays ``grabbed`` in the
  SQLite file and is delivered again by the next start.
* SIGUSR1 after a logrotate-style rename sends new queue-, access- and error-log lines to new
  files; what was written before stays in the renamed ones.
* ``--pid=run/fw.pid`` exists (``<pid>\\n``) while the daemon runs and is gone after a clean exit.
* Two generations started with ``--pidfile=`` run side by side in one directory (the second one
  through the ``fireworq`` command); without it, twistd's own ``twistd.pid`` makes a second
  start in the same directory fail (docs/operations.md, PID files and the twistd.pid trap).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from e2e import Daemon, Exit, Worker, always, eventually, free_port, now, slow, success
from proctools import LISTENING, TWISTD, Child, venv_command

QUEUE = "sig"
CATEGORY = "sig_cat"


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_lines(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            return [json.loads(line) for line in f if line.endswith(b"\n")]
    except FileNotFoundError:
        return []


class SignalTests(TestCase):
    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.worker = await Worker.start(self)

    async def daemon(self, *options: str) -> Daemon:
        daemon = await Daemon.start(self, "sqlite", options)
        await daemon.api.put_queue(QUEUE, max_workers=2)
        await daemon.api.put_routing(CATEGORY, QUEUE)
        return daemon

    async def wait_stderr(self, daemon: Daemon, text: str) -> None:
        async def seen() -> bool:
            return text in daemon.stderr()
        await eventually(seen, 10, step=0.01, what=repr(text))

    async def graceful_stop_with_a_job_in_flight(self, sig: signal.Signals) -> None:
        daemon = await self.daemon("--shutdown-timeout=20")
        self.worker.policy = always(slow(1))
        pushed = await daemon.api.push_ok(CATEGORY, self.worker.url(), '{"n": 1}')
        await self.worker.wait_for(1)
        signalled = now()
        exit = await daemon.stop(sig)
        took = now() - signalled
        print(f"\nSIGNALS {sig.name} with a 1 s delivery in flight: {exit} after {took:.3f} s")
        self.assertEqual(exit, Exit(0, None), daemon.stderr())
        self.assertTrue(0.8 <= took < 5, f"exited {took:.3f} s after {sig.name}")
        self.assertIn(f"Received {sig.name}; stopping gracefully", daemon.stderr())
        [complete] = daemon.queue_log(id=pushed["id"], action="complete")
        self.assertEqual((complete["status"], complete["message"]), ("completed", "done"))
        # The outcome is in the store: the next start has nothing to deliver again.
        self.worker.policy = always(success())
        await daemon.spawn()
        reply = await daemon.api.request("GET", f"/queue/{QUEUE}/job/{pushed['id']}")
        self.assertEqual(reply.code, 404)
        self.assertEqual((await daemon.api.stats(QUEUE))["total_pops"], 0)
        self.assertEqual(len(self.worker.received), 1)

    async def test_sigterm_finishes_the_job_in_flight(self) -> None:
        await self.graceful_stop_with_a_job_in_flight(signal.SIGTERM)

    async def test_sighup_stops_gracefully(self) -> None:
        await self.graceful_stop_with_a_job_in_flight(signal.SIGHUP)

    async def test_sigint_stops_gracefully(self) -> None:
        await self.graceful_stop_with_a_job_in_flight(signal.SIGINT)

    async def test_second_sigterm_stops_at_once(self) -> None:
        """The second SIGTERM during the wait for a 10 s delivery: exit status 1 at once, no
        outcome written, the job left ``grabbed`` in the file and delivered after a restart."""
        daemon = await self.daemon("--shutdown-timeout=20")
        self.worker.policy = always(slow(10))
        pushed = await daemon.api.push_ok(CATEGORY, self.worker.url(), '{"n": 2}')
        await self.worker.wait_for(1)
        daemon.send_signal(signal.SIGTERM)
        await self.wait_stderr(daemon, "Received SIGTERM; stopping gracefully")
        self.assertTrue(daemon.running)
        signalled = now()
        exit = await daemon.stop(signal.SIGTERM, timeout=5)
        took = now() - signalled
        print(f"\nSIGNALS second SIGTERM: {exit} after {took:.3f} s")
        self.assertEqual(exit, Exit(1, None))
        self.assertLess(took, 1.0)
        self.assertIn("second signal, stopping at once", daemon.stderr())
        self.assertEqual(daemon.queue_log(action="complete"), [])

        with sqlite3.connect(os.path.join(daemon.dir, "fireworq.sqlite3")) as db:
            rows = db.execute(
                f"SELECT job_id, status FROM `fireworq_jq({QUEUE})`").fetchall()
        db.close()
        self.assertEqual(rows, [(pushed["id"], "grabbed")])

        self.worker.policy = always(success())
        await daemon.spawn()
        [_, again] = await self.worker.wait_for(2)
        self.assertEqual(again.json, {"n": 2})

        async def gone() -> bool:
            reply = await daemon.api.request("GET", f"/queue/{QUEUE}/job/{pushed['id']}")
            return reply.code == 404
        await eventually(gone, what="the job to complete after the restart")

    async def test_sigusr1_reopens_the_log_files(self) -> None:
        """logrotate's way: rename queue.log, access.log and error.log to *.1, then SIGUSR1."""
        daemon = await self.daemon(
            "--queue-log=queue.log", "--access-log=access.log", "--error-log=error.log")

        def path(name: str) -> str:
            return os.path.join(daemon.dir, name)

        before = await daemon.api.push_ok(CATEGORY, self.worker.url(), '{"n": "before"}')

        async def completed(name: str, job_id: int) -> bool:
            return any(line.get("action") == "complete" and line["id"] == job_id
                       for line in read_lines(path(name)))
        await eventually(lambda: completed("queue.log", before["id"]), what="first completion")
        for name in ("queue.log", "access.log", "error.log"):
            os.rename(path(name), path(name + ".1"))
        os.kill(daemon.pid, signal.SIGUSR1)  # (Daemon.send_signal knows the stop signals)

        async def reopened() -> bool:
            return all(os.path.exists(path(n)) for n in ("queue.log", "access.log", "error.log"))
        await eventually(reopened, what="new log files")
        after = await daemon.api.push_ok(CATEGORY, self.worker.url(), '{"n": "after"}')
        await eventually(lambda: completed("queue.log", after["id"]), what="second completion")
        self.assertEqual(await daemon.stop(), Exit(0, None))

        old_queue, new_queue = read_lines(path("queue.log.1")), read_lines(path("queue.log"))
        self.assertEqual({line["id"] for line in old_queue}, {before["id"]})
        self.assertEqual({line["id"] for line in new_queue}, {after["id"]})
        self.assertEqual({line["action"] for line in new_queue}, {"push", "complete"})

        def pushes(name: str) -> int:
            return len([line for line in read_lines(path(name))
                        if line["method"] == "POST" and line["url"] == f"/job/{CATEGORY}"])
        self.assertEqual((pushes("access.log.1"), pushes("access.log")), (1, 1))

        old_errors = [line["message"] for line in read_lines(path("error.log.1"))]
        new_errors = [line["message"] for line in read_lines(path("error.log"))]
        self.assertTrue(any(LISTENING in m for m in old_errors), old_errors)
        self.assertIn("Received SIGTERM; stopping gracefully", new_errors)
        self.assertFalse(any("SIGTERM" in m for m in old_errors), old_errors)

    async def test_pid_file(self) -> None:
        daemon = await Daemon.start(self, "sqlite", ["--pid=run/fw.pid"])
        pid_file = os.path.join(daemon.dir, "run", "fw.pid")
        self.assertEqual(read_text(pid_file), f"{daemon.pid}\n")
        self.assertEqual(await daemon.stop(), Exit(0, None))
        self.assertFalse(os.path.exists(pid_file))
        self.assertFalse(os.path.exists(os.path.join(daemon.dir, "twistd.pid")))

    async def test_pid_file_from_the_environment(self) -> None:
        daemon = await Daemon.start(self, "in-memory", env={"FIREWORQ_PID": "fw.pid"})
        self.assertEqual(read_text(os.path.join(daemon.dir, "fw.pid")), f"{daemon.pid}\n")
        self.assertEqual(await daemon.stop(), Exit(0, None))
        self.assertFalse(os.path.exists(os.path.join(daemon.dir, "fw.pid")))

    async def test_two_generations_in_one_directory(self) -> None:
        """Generation 1 (``twistd -n --pidfile= fireworq``) and generation 2 (the ``fireworq``
        command) on one SQLite file: both serve, the second takes over dispatch once the first
        stops. Without ``--pidfile=``, a second twistd in that directory refuses to start."""
        first = await self.daemon()
        port = free_port()
        second = Child(self, "second", venv_command("fireworq", f"--bind=127.0.0.1:{port}"),
                       cwd=first.dir)
        await second.wait_for_text(LISTENING)
        second_api = type(first.api)(self, f"http://127.0.0.1:{port}")
        for api in (first.api, second_api):
            self.assertEqual(await api.ok("GET", "/healthz"), {"status": "ok"})
            self.assertEqual((await api.ok("GET", f"/queue/{QUEUE}/node"))["id"], str(first.pid))
        self.assertFalse(os.path.exists(os.path.join(first.dir, "twistd.pid")))

        self.assertEqual(await first.stop(), Exit(0, None))

        async def second_dispatches() -> bool:
            reply = await second_api.request("GET", f"/queue/{QUEUE}/node")
            # 404 "No node is active" until the second takes the lock (within ~1 s)
            return reply.code == 200 and reply.json["id"] == str(second.pid)
        await eventually(second_dispatches, what="the second generation to take over")
        await second_api.push_ok(CATEGORY, self.worker.url(), '{"n": "second"}')
        await self.worker.wait_for(1)
        self.assertEqual(await second.stop("TERM"), Exit(0, None))

        # The trap: twistd's default pid file.
        plain = [*TWISTD, "-n", "fireworq", "--driver=in-memory"]
        one = Child(self, "plain-1", [*plain, f"--bind=127.0.0.1:{free_port()}"], cwd=first.dir)
        await one.wait_for_text(LISTENING)
        self.assertTrue(os.path.exists(os.path.join(first.dir, "twistd.pid")))
        two = Child(self, "plain-2", [*plain, f"--bind=127.0.0.1:{free_port()}"], cwd=first.dir)
        self.assertEqual(await two.wait_exit(15), Exit(1, None))
        self.assertIn("Another twistd server is running", two.err)
        self.assertEqual(await one.stop("TERM"), Exit(0, None))
