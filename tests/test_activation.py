"""Inherited listening sockets (docs/operations.md, Zero-downtime restarts): systemd socket
activation and Server::Starter's ``SERVER_STARTER_PORT``, the daemon serving on the socket it was
handed and not on its ``--bind``.

systemd is stood in for by ``tests/sdlauncher.py``: it binds the socket, forks, and in the
child puts it on descriptor 3 and ``execve``s the daemon with ``LISTEN_FDS=1``,
``LISTEN_PID=<the child's pid>`` (``execve`` keeps the pid) and, unless told not to,
``LISTEN_FDNAMES``. The daemon is started with the command lines of ``docs/operations.md``:
``<venv>/bin/twistd --nodaemon --pidfile= fireworq`` and the ``fireworq`` command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
from collections import Counter

from treq.client import HTTPClient
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from e2e import ApiClient, Exit, Worker, eventually, free_port, reactor
from proctools import LISTENING, Child, Pusher, daemon_argv, venv_command

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sdlauncher.py")
QUEUE = "act"
CATEGORY = "act_cat"


@implementer(IAgentEndpointFactory)
class _UnixEndpoints:
    def __init__(self, path: str) -> None:
        self._path = path

    def endpointForURI(self, uri: object) -> UNIXClientEndpoint:
        return UNIXClientEndpoint(reactor, self._path)


class ActivationTests(TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="fireworq-activation-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.bind_port = free_port()

    async def launch(self, label: str, command: list[str], *launcher_options: str,
                     ) -> tuple[Child, int]:
        """The daemon under sdlauncher on 127.0.0.1:<any port>; the child and its port."""
        child = Child(self, label, [sys.executable, LAUNCHER, "--listen", "127.0.0.1:0",
                                    *launcher_options, "--", *command], cwd=self.dir)
        await child.wait_for_text("sdlauncher: listening on")
        [port] = re.findall(r"sdlauncher: listening on 127\.0\.0\.1:(\d+)", child.err)
        await child.wait_for_text(LISTENING)
        return child, int(port)

    def started_pids(self, child: Child) -> list[int]:
        return [int(p) for p in re.findall(r"sdlauncher: started (\d+)", child.err)]

    async def assert_serves_inherited_only(self, child: Child, port: int) -> None:
        api = ApiClient(self, f"http://127.0.0.1:{port}")
        self.assertEqual((await api.ok("GET", "/healthz")), {"status": "ok"})
        # The process answering is the one exec'd with LISTEN_PID = its pid.
        await api.put_queue(QUEUE)
        node = await api.ok("GET", f"/queue/{QUEUE}/node")
        self.assertEqual([int(node["id"])], self.started_pids(child))
        with self.assertRaises(ConnectionRefusedError):
            await ApiClient(self, f"http://127.0.0.1:{self.bind_port}").request(
                "GET", "/healthz", timeout=5)

    async def stop(self, child: Child) -> None:
        """``systemctl stop``: SIGTERM to the launcher, which passes it on."""
        exit = await child.stop("TERM")
        self.assertEqual(exit, Exit(0, None), child.err)
        self.assertIn("exited with status 0", child.err)

    async def test_systemd_with_fdnames(self) -> None:
        """LISTEN_FDS=1, LISTEN_PID, LISTEN_FDNAMES=http; the unit's ExecStart line."""
        child, port = await self.launch(
            "systemd-named",
            venv_command("twistd", "--nodaemon", "--pidfile=", "fireworq", "--driver=in-memory",
                         f"--bind=127.0.0.1:{self.bind_port}"),
            "--name", "http")
        self.assertIn("Serving on the inherited socket http", child.err)
        self.assertIn(f"{LISTENING} 127.0.0.1:{port} (", child.err)
        await self.assert_serves_inherited_only(child, port)
        await self.stop(child)

    async def test_systemd_without_fdnames(self) -> None:
        """LISTEN_FDS=1 and LISTEN_PID only (systemd before 227, hand-written launchers);
        the ``fireworq`` command."""
        child, port = await self.launch(
            "systemd-unnamed",
            venv_command("fireworq", "--driver=in-memory", f"--bind=127.0.0.1:{self.bind_port}"),
            "--no-fdnames")
        self.assertIn("Serving on the inherited socket fd 3", child.err)
        await self.assert_serves_inherited_only(child, port)
        await self.stop(child)

    async def test_listen_pid_of_another_process_is_ignored(self) -> None:
        """Descriptors meant for another process (LISTEN_PID is not ours) are not taken:
        the daemon binds ``--bind``."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        self.addCleanup(sock.close)
        child = Child(self, "foreign-pid",
                      daemon_argv("--driver=in-memory", f"--bind=127.0.0.1:{self.bind_port}"),
                      cwd=self.dir, fds={3: sock.fileno()},
                      env={"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid()),
                           "LISTEN_FDNAMES": "http"})
        await child.wait_for_text(LISTENING)
        self.assertNotIn("inherited", child.err)
        self.assertIn(f"{LISTENING} 127.0.0.1:{self.bind_port} (", child.err)
        api = ApiClient(self, f"http://127.0.0.1:{self.bind_port}")
        self.assertEqual((await api.ok("GET", "/healthz")), {"status": "ok"})
        self.assertEqual(await child.stop("TERM"), Exit(0, None))

    async def test_server_starter_unix_socket(self) -> None:
        """SERVER_STARTER_PORT=/path/sock=3: HTTP over the unix socket (pushes included), and
        nothing on ``--bind``."""
        path = os.path.join(self.dir, "fireworq.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(16)
        self.addCleanup(sock.close)
        worker = await Worker.start(self)
        child = Child(self, "unix",
                      daemon_argv("--driver=sqlite", f"--bind=127.0.0.1:{self.bind_port}"),
                      cwd=self.dir, fds={3: sock.fileno()},
                      env={"SERVER_STARTER_PORT": f"{path}=3"})
        await child.wait_for_text(LISTENING)
        self.assertIn(f"Serving on the inherited socket {path}", child.err)

        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        http = HTTPClient(Agent.usingEndpointFactory(reactor, _UnixEndpoints(path), pool=pool))
        response = await http.get("http://fireworq/healthz", timeout=5)
        self.assertEqual((response.code, await response.json()), (200, {"status": "ok"}))
        response = await http.put("http://fireworq/queue/" + QUEUE, data=b"{}", timeout=5)
        self.assertEqual(response.code, 200, await response.text())
        await response.content()
        response = await http.post(
            "http://fireworq/job/" + CATEGORY, timeout=5,
            data=json.dumps({"url": worker.url(), "payload": {"via": "unix"}}).encode())
        self.assertEqual(response.code, 404)  # no routing yet: the API answers over the socket
        await response.content()
        response = await http.put(f"http://fireworq/routing/{CATEGORY}", timeout=5,
                                  data=json.dumps({"queue_name": QUEUE}).encode())
        await response.content()
        response = await http.post(
            "http://fireworq/job/" + CATEGORY, timeout=5,
            data=json.dumps({"url": worker.url(), "payload": {"via": "unix"}}).encode())
        self.assertEqual(response.code, 200, await response.text())
        [received] = await worker.wait_for(1)
        self.assertEqual(received.json, {"via": "unix"})

        with self.assertRaises(ConnectionRefusedError):
            await ApiClient(self, f"http://127.0.0.1:{self.bind_port}").request(
                "GET", "/healthz", timeout=5)
        self.assertEqual(await child.stop("TERM"), Exit(0, None))

    async def test_systemctl_restart_under_load(self) -> None:
        """``systemctl restart`` with the socket unit holding the socket (stop, then start):
        keep-alive clients lose no push; while no process accepts, connections wait in the
        socket's backlog."""
        worker = await Worker.start(self)
        child, port = await self.launch(
            "systemd-restart",
            venv_command("fireworq", "--driver=sqlite", "--keep-alive=true",
                         f"--bind=127.0.0.1:{self.bind_port}"),
            "--name", "http")
        api = ApiClient(self, f"http://127.0.0.1:{port}")
        await api.put_queue(QUEUE, max_workers=10)
        await api.put_routing(CATEGORY, QUEUE)
        pusher = Pusher(self, f"http://127.0.0.1:{port}", CATEGORY, worker.url(), clients=4,
                        rate=100)
        pusher.start()
        await pusher.wait_acknowledged(50)
        restarts = 3
        for generation in range(2, restarts + 2):
            child.signal("HUP")
            await child.wait_for_text(LISTENING, generation)
            await pusher.wait_acknowledged(len(pusher.acknowledged) + 50)
        await pusher.stop()

        async def all_delivered() -> bool:
            return pusher.acknowledged <= {p["n"] for p in worker.payloads()}
        await eventually(all_delivered, 20, step=0.1, what="every acknowledged job")
        counts = Counter(p["n"] for p in worker.payloads())
        print(f"\nACTIVATION systemctl restart x{restarts}: pushes={pusher.pushes}"
              f" failed={len(pusher.failures)} duplicates={sum(c - 1 for c in counts.values())}"
              f" slowest_push={pusher.slowest:.3f}s")
        self.assertEqual(pusher.failures, [])
        self.assertEqual(child.err.count("exited with status 0"), restarts)
        self.assertEqual(len(set(self.started_pids(child))), restarts + 1)
        await self.stop(child)

    # --- unix sockets handed down: their file belongs to the supervisor

    def unix_listener(self, mode: int) -> tuple[socket.socket, str]:
        path = os.path.join(self.dir, "fireworq.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(16)
        os.chmod(path, mode)
        self.addCleanup(sock.close)
        return sock, path

    async def unix_healthz(self, path: str) -> int:
        pool = HTTPConnectionPool(reactor, persistent=False)
        http = HTTPClient(Agent.usingEndpointFactory(reactor, _UnixEndpoints(path), pool=pool))
        try:
            response = await http.get("http://fireworq/healthz", timeout=5)
            await response.content()
            return int(response.code)
        finally:
            await pool.closeCachedConnections()

    def unix_generation(self, label: str, sock: socket.socket, path: str) -> Child:
        # sqlite: its start is asynchronous, so the stop signals are handled by the time it
        # says it listens (an in-memory daemon says so before its signal handlers are in).
        return Child(self, label, daemon_argv("--driver=sqlite",
                                              f"--bind=127.0.0.1:{self.bind_port}"),
                     cwd=self.dir, fds={3: sock.fileno()},
                     env={"SERVER_STARTER_PORT": f"{path}=3"})

    async def test_unix_socket_mode_is_kept(self) -> None:
        """The supervisor's permissions on the socket file (SocketMode=0660) stay as set."""
        sock, path = self.unix_listener(0o660)
        child = self.unix_generation("unix-mode", sock, path)
        await child.wait_for_text(LISTENING)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        self.assertEqual(oct(mode), oct(0o660))
        self.assertEqual(await child.stop("TERM"), Exit(0, None))

    async def test_unix_socket_survives_a_generation_change(self) -> None:
        """Server::Starter on a unix socket: generation 2 starts, generation 1 stops, and the
        socket path still reaches generation 2."""
        sock, path = self.unix_listener(0o666)
        first = self.unix_generation("unix-gen-1", sock, path)
        await first.wait_for_text(LISTENING)
        second = self.unix_generation("unix-gen-2", sock, path)
        await second.wait_for_text(LISTENING)
        self.assertEqual(await first.stop("TERM"), Exit(0, None))
        self.assertTrue(os.path.exists(path), "the socket path is gone")
        self.assertEqual(await self.unix_healthz(path), 200)
        self.assertEqual(await second.stop("TERM"), Exit(0, None))
        # A third generation on the same socket starts as well.
        third = self.unix_generation("unix-gen-3", sock, path)
        await third.wait_for_text(LISTENING)
        self.assertEqual(await third.stop("TERM"), Exit(0, None))

    async def cannot_listen(self, driver: str) -> None:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(16)
        self.addCleanup(taken.close)
        child = Child(self, f"taken-{driver}",
                      daemon_argv(f"--driver={driver}",
                                  f"--bind=127.0.0.1:{taken.getsockname()[1]}"),
                      cwd=self.dir)
        self.assertEqual(await child.wait_exit(5), Exit(1, None))
        self.assertIn("fireworq: cannot start: Couldn't listen on", child.err)

    async def test_address_in_use_exits_1(self) -> None:
        await self.cannot_listen("sqlite")

    async def test_address_in_use_exits_1_in_memory(self) -> None:
        await self.cannot_listen("in-memory")
