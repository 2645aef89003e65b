"""Graceful restarts under load (docs/operations.md, Zero-downtime restarts): no push is refused.

Eight keep-alive clients (treq, each on its own persistent ``HTTPConnectionPool``; the daemon
runs with ``--keep-alive=true`` so their connections really are reused) push about 200 jobs/s
in total while the daemon is restarted ten times on a listening socket held by a parent:

* ``server_starter``: Server::Starter (``start_server --port=127.0.0.1:PORT …``); a restart is
  SIGHUP to ``start_server``, which starts generation N+1 on the socket, waits ``--interval``
  (1 s) and SIGTERMs generation N. The next restart waits until the status file lists the new
  generation alone and the new generation has said ``fireworq listening on``.
* ``launcher``: the test itself holds the socket, starts generation N+1 with
  ``SERVER_STARTER_PORT=127.0.0.1:PORT=3``, waits for that process's own ``fireworq listening
  on`` (both generations share the port, so probing the port proves nothing), then SIGTERMs
  generation N and waits for its exit.

A worker is up throughout. Every push must be answered 200 (a treq error or any other status
is a failed push), and every acknowledged job must reach the worker once the load has stopped.
The same runs with ``--processes 2`` (each generation a parent and its child, fewer
restarts). Each test prints ``RESTART <driver> processes=<n> <launcher>: pushes=… failed=…
lost=… delivered=… duplicates=… restarts=10 seconds=…``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from collections import Counter
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, TestCase

import mysqltools
from e2e import ApiClient, Exit, Worker, asyncCleanup, eventually, free_port, now, only
from proctools import LISTENING, Child, Pusher, daemon_argv

QUEUE = "restart"
CATEGORY = "restart_cat"
CLIENTS = 8
RATE = 200.0  # pushes per second, all clients together
RESTARTS = 10
#: Pushes answered by the new generation before the next restart.
PUSHES_BETWEEN_RESTARTS = 100

if TYPE_CHECKING:
    _Base = TestCase
else:
    _Base = object


class ServerStarter:
    """``start_server`` holding 127.0.0.1:port, running generations of the daemon."""

    name = "server_starter"

    def __init__(self, case: TestCase, directory: str, port: int, options: list[str],
                 processes: int) -> None:
        self._case = case
        self._dir = directory
        self._port = port
        self._options = options
        self._processes = processes
        self._status_file = os.path.join(directory, "start_server.status")
        self.generation = 0
        self.child: Child | None = None

    async def start(self) -> None:
        start_server = shutil.which("start_server")
        if start_server is None:
            raise SkipTest("start_server not found (Debian: libserver-starter-perl)")
        argv = [
            start_server, f"--port=127.0.0.1:{self._port}",
            f"--pid-file={os.path.join(self._dir, 'start_server.pid')}",
            f"--status-file={self._status_file}", "--interval=1", "--",
            *daemon_argv(*self._options),
        ]
        self.child = Child(self._case, "start_server", argv, cwd=self._dir)
        # Cleanups run last-in first-out: this one, registered after the child's own
        # (SIGKILL to start_server alone), stops start_server and its workers first.
        asyncCleanup(self._case, self._cleanup)
        self.generation = 1
        await self._wait_generation()

    def _status(self) -> list[tuple[int, int]]:
        try:
            with open(self._status_file) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        return [(int(g), int(p)) for g, p in (line.split(":") for line in text.split())]

    async def _wait_generation(self) -> None:
        """Until the status file lists the current generation alone (the old one has exited)
        and it has said it listens."""
        assert self.child is not None

        async def alone() -> bool:
            status = self._status()
            return len(status) == 1 and status[0][0] == self.generation
        await eventually(alone, 30, step=0.02,
                         what=f"start_server's status to show generation {self.generation}")
        # Each generation's processes say it, all on start_server's standard error.
        await self.child.wait_for_text(LISTENING, self.generation * self._processes,
                                       timeout=30)

    async def restart(self) -> None:
        assert self.child is not None
        self.child.signal("HUP")
        self.generation += 1
        await self._wait_generation()

    def old_exits(self) -> list[Exit]:
        """How the replaced generations ended, from start_server's log (``status`` is the raw
        wait status: 0 is exit 0)."""
        assert self.child is not None
        statuses = re.findall(r"old worker \d+ died, status:(\d+)", self.child.err)
        return [Exit(int(s) >> 8, int(s) & 0x7F or None) for s in statuses]

    async def stop(self) -> None:
        if self.child is not None and self.child.running:
            exit = await self.child.stop("TERM")
            assert exit == Exit(0, None), exit

    async def _cleanup(self) -> None:
        if self.child is None or not self.child.running:
            return
        workers = [pid for _, pid in self._status()]
        try:
            await self.child.stop("TERM", timeout=20)
        except AssertionError:
            for pid in workers:  # processes of this test only, by pid
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            raise


class Launcher:
    """The test process holds the listening socket and runs the generations itself, with
    ``SERVER_STARTER_PORT=127.0.0.1:PORT=3``."""

    name = "launcher"

    def __init__(self, case: TestCase, directory: str, port: int, options: list[str],
                 processes: int) -> None:
        self._case = case
        self._dir = directory
        self._options = options
        self._processes = processes
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(1024)
        case.addCleanup(self.sock.close)  # after every generation is gone (LIFO)
        self._port = port
        self.generations: list[Child] = []
        self.exits: list[Exit] = []

    async def _spawn(self) -> Child:
        child = Child(
            self._case, f"gen-{len(self.generations) + 1}", daemon_argv(*self._options),
            cwd=self._dir, fds={3: self.sock.fileno()},
            env={"SERVER_STARTER_PORT": f"127.0.0.1:{self._port}=3"})
        self.generations.append(child)
        await child.wait_for_text(LISTENING, self._processes, timeout=30)
        return child

    async def start(self) -> None:
        await self._spawn()

    async def restart(self) -> None:
        old = self.generations[-1]
        await self._spawn()
        self.exits.append(await old.stop("TERM"))

    def old_exits(self) -> list[Exit]:
        return self.exits

    async def stop(self) -> None:
        exit = await self.generations[-1].stop("TERM")
        assert exit == Exit(0, None), exit


class RestartMixin(_Base):
    driver: str
    #: ``--processes`` of each generation (docs/performance.md, "More than one core").
    processes = 1
    restarts = RESTARTS

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="fireworq-restart-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.worker = await Worker.start(self)

    def driver_options(self) -> list[str]:
        return []

    async def _scenario(self, supervisor_class: Any) -> None:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        options = [
            f"--driver={self.driver}", *self.driver_options(), "--keep-alive=true",
            "--shutdown-timeout=10", f"--queue-log={self.dir}/queue.log",
            f"--access-log={self.dir}/access.log",
        ]
        if self.processes > 1:
            options.append(f"--processes={self.processes}")
        supervisor = supervisor_class(self, self.dir, port, options, self.processes)
        await supervisor.start()
        api = ApiClient(self, base_url)
        await api.put_queue(QUEUE, max_workers=20)
        await api.put_routing(CATEGORY, QUEUE)

        pusher = Pusher(self, base_url, CATEGORY, self.worker.url(), clients=CLIENTS,
                        rate=RATE)
        started = now()
        pusher.start()
        await pusher.wait_acknowledged(PUSHES_BETWEEN_RESTARTS)
        restart_times = []
        for _ in range(self.restarts):
            restart_times.append(now() - started)
            await supervisor.restart()
            await pusher.wait_acknowledged(len(pusher.acknowledged) + PUSHES_BETWEEN_RESTARTS)
        await pusher.stop()
        seconds = now() - started

        acknowledged = pusher.acknowledged

        async def all_delivered() -> bool:
            return acknowledged <= {p["n"] for p in self.worker.payloads()}
        try:
            await eventually(all_delivered, 30, step=0.1, what="every acknowledged job")
        except AssertionError:
            pass  # reported by the summary and the lost == 0 assertion
        await supervisor.stop()

        counts = Counter(p["n"] for p in self.worker.payloads())
        lost = len(acknowledged - counts.keys())
        delivered = len(acknowledged & counts.keys())
        duplicates = sum(c - 1 for c in counts.values())
        connections = self._push_connections()
        print(f"\nRESTART {self.driver} processes={self.processes} {supervisor.name}:"
              f" pushes={pusher.pushes}"
              f" failed={len(pusher.failures)} lost={lost} delivered={delivered}"
              f" duplicates={duplicates} restarts={self.restarts} seconds={seconds:.1f}"
              f" connections={connections} slowest_push={pusher.slowest:.3f}s"
              f" client_stall={pusher.stall:.3f}s")
        for at, n, what in pusher.failures[:20]:
            print(f"  failed push n={n} at {at - started:.3f} s: {what}")
        if pusher.failures:
            print("  restarts at: " + ", ".join(f"{t:.3f}" for t in restart_times))
        self.assertEqual(pusher.failures, [])
        self.assertEqual(lost, 0)
        self.assertEqual(pusher.pushes, len(acknowledged))
        self.assertEqual(supervisor.old_exits(), [Exit(0, None)] * self.restarts)
        # Keep-alive really was in use: a handful of connections per generation, not one per
        # push.
        self.assertLess(connections, pusher.pushes / 10)

    def _push_connections(self) -> int:
        """Distinct client connections (remote ip:port) that carried pushes, from the
        access log of all generations."""
        peers = set()
        with open(os.path.join(self.dir, "access.log"), "rb") as f:
            for line in f:
                entry = json.loads(line)
                if entry["method"] == "POST":
                    peers.add(entry["remote_addr"])
        return len(peers)

    async def test_server_starter(self) -> None:
        await self._scenario(ServerStarter)

    async def test_launcher(self) -> None:
        await self._scenario(Launcher)


class SqliteRestartTests(RestartMixin, TestCase):
    driver = "sqlite"


class MySQLRestartTests(RestartMixin, TestCase):
    driver = "mysql"

    async def _setUp(self) -> None:
        self.database = mysqltools.create_database("fwrestart")
        # Registered first, so it runs last (cleanups are LIFO): after every daemon is gone.
        self.addCleanup(mysqltools.drop_database, self.database)
        await super()._setUp()

    def driver_options(self) -> list[str]:
        return [f"--mysql-dsn={mysqltools.dsn_text(self.database)}"]


# With --processes 2 (docs/performance.md, "More than one core"): each generation is a parent
# and its child on the inherited socket, both stopped gracefully by the parent's SIGTERM. One
# supervisor per driver and two restarts keep CI's time down; the one-process classes
# above run both supervisors on both drivers ten times.


@only("test_server_starter")
class SqliteProcessesRestartTests(SqliteRestartTests):
    processes = 2
    restarts = 2


@only("test_launcher")
class MySQLProcessesRestartTests(MySQLRestartTests):
    processes = 2
    restarts = 2
