"""Child processes for the lifecycle suites: daemons (or supervisors such as ``start_server``)
whose standard error is read as it comes, so a test can wait for a line such as
``fireworq listening on`` instead of polling a port that several generations share.

Not a test module. ``e2e.Daemon`` owns a port of its own and probes it; the processes here are
for tests that hand the daemon an inherited socket, restart it under a supervisor, or signal it
in the middle of something:

    child = Child(self, "gen-1", daemon_argv("--driver=sqlite"), cwd=directory,
                  fds={3: sock.fileno()}, env={"SERVER_STARTER_PORT": f"127.0.0.1:{port}=3"})
    await child.wait_for_text("fireworq listening on")
    exit = await child.stop("TERM")

Every child is killed (SIGKILL, by its own pid) at the test's cleanup if it still runs, and its
standard error is checked for tracebacks and error events then (``check_errors``).
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from e2e import (
    EXIT_TIMEOUT,
    LISTENING,
    Exit,
    asyncCleanup,
    eventually,
    in_directory,
    now,
    reactor,
    sleep,
    with_timeout,
)

#: ``twistd`` as the harness runs it: the venv's interpreter, in the foreground, no
#: ``twistd.pid``.
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def daemon_argv(*options: str) -> list[str]:
    return [*TWISTD, "-n", "--pidfile=", "fireworq", *options]


def venv_command(name: str, *arguments: str) -> list[str]:
    """``<venv>/bin/<name> arguments`` when the script is installed beside the interpreter
    (``twistd``, ``fireworq``), else the equivalent ``python -c`` form."""
    script = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(script, os.X_OK):
        return [script, *arguments]
    if name == "fireworq":
        return [sys.executable, "-c", "from fireworq.cli import main; main()", *arguments]
    return [*TWISTD, *arguments]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without anything the daemon reads (FIREWORQ_*, inherited
    sockets), plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("FIREWORQ_", "LISTEN_", "SERVER_STARTER_"))
    }
    env.update(extra or {})
    return env


async def run_to_end(argv: list[str], cwd: str | None = None,
                     env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run a command to its end: (exit status, standard output, standard error)."""
    command = in_directory(cwd, argv) if cwd else argv
    out, err, code = await getProcessOutputAndValue(
        command[0], command[1:], env=clean_env(env), reactor=reactor)
    return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def error_lines(text: str) -> list[str]:
    """Lines of a (text) error log that show a daemon bug."""
    return [
        line for line in text.splitlines()
        if "Traceback" in line or "Unhandled" in line
        or "#critical]" in line or "#error]" in line
    ]


class Child(ProcessProtocol):
    """A child process; its standard error is kept in ``err`` (and in ``<cwd>/<label>.err``),
    its standard output goes to ``<cwd>/<label>.out``."""

    def __init__(self, case: TestCase, label: str, argv: list[str], *, cwd: str,
                 env: Mapping[str, str] | None = None, fds: Mapping[int, int] | None = None,
                 ) -> None:
        self.label = label
        self.err = ""
        self.exit: Exit | None = None
        self.check_errors = True
        self._ended: Deferred[Exit] = Deferred()
        self._waiters: list[tuple[str, int, Deferred[None]]] = []
        # Closed when the process ends (processEnded).
        self._err_file = open(os.path.join(cwd, f"{label}.err"), "ab")  # noqa: SIM115
        out = os.open(os.path.join(cwd, f"{label}.out"), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                      0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        child_fds: dict[int, Any] = {0: devnull, 1: out, 2: "r"}
        child_fds.update(fds or {})
        try:
            command = in_directory(cwd, argv)
            self.process = reactor.spawnProcess(
                self, command[0], command, env=clean_env(env), childFDs=child_fds)
        finally:
            os.close(out)
            os.close(devnull)
        self.pid = int(self.process.pid)
        asyncCleanup(case, self._cleanup)

    # -- ProcessProtocol

    def childDataReceived(self, fd: int, data: bytes) -> None:
        self._err_file.write(data)
        self._err_file.flush()
        self.err += data.decode("utf-8", "replace")
        for entry in list(self._waiters):
            text, count, d = entry
            if self.err.count(text) >= count:
                self._waiters.remove(entry)
                d.callback(None)

    def processEnded(self, reason: Failure) -> None:
        self.exit = Exit.of(reason.value)  # type: ignore[arg-type]
        self._err_file.close()
        for _, _, d in self._waiters:
            d.errback(AssertionError(
                f"{self.label} exited ({self.exit}) while waited for; stderr:\n{self.err}"))
        self._waiters.clear()
        self._ended.callback(self.exit)

    # -- control

    @property
    def running(self) -> bool:
        return self.exit is None

    async def wait_for_text(self, text: str, count: int = 1, timeout: float = 15.0) -> float:
        """Wait until ``text`` has appeared ``count`` times on standard error; returns when."""
        if self.err.count(text) < count:
            if not self.running:
                raise AssertionError(
                    f"{self.label} exited ({self.exit}); stderr:\n{self.err}")
            d: Deferred[None] = Deferred()
            entry = (text, count, d)
            self._waiters.append(entry)
            try:
                await with_timeout(d, timeout, f"{text!r} x{count} from {self.label}")
            finally:
                if entry in self._waiters:
                    self._waiters.remove(entry)
        return now()

    def signal(self, sig: int | str) -> None:
        """Send ``sig``: a number or a name without ``SIG`` ("TERM", "HUP", "USR1")."""
        if isinstance(sig, str):
            sig = signal.Signals["SIG" + sig].value
        self.process.signalProcess(sig)

    async def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> Exit:
        if self.exit is not None:
            return self.exit
        relay: Deferred[Exit] = Deferred()

        def forward(result: Exit) -> Exit:
            relay.callback(result)
            return result

        self._ended.addCallback(forward)
        return await with_timeout(relay, timeout, f"{self.label} to exit")  # type: ignore[no-any-return]

    async def stop(self, sig: int | str = "TERM", timeout: float = EXIT_TIMEOUT) -> Exit:
        if self.exit is not None:
            return self.exit
        self.signal(sig)
        return await self.wait_exit(timeout)

    async def _cleanup(self) -> None:
        if self.running:
            await self.stop("KILL", timeout=10)
        problems = error_lines(self.err)
        if problems and self.check_errors:
            raise AssertionError(f"{self.label}'s error log has errors:\n" + "\n".join(problems))


STALL_BEAT = 0.01


class Pusher:
    """``clients`` paced keep-alive clients pushing ``{"n": <unique>}`` jobs of ``category``
    at ``rate`` pushes/s in total until stopped. Each client is treq on a persistent
    ``HTTPConnectionPool`` of its own that keeps one idle connection and never retries: a
    request lost with its connection is a failure, as is any answer but 200."""

    def __init__(self, case: TestCase, base_url: str, category: str, worker_url: str, *,
                 clients: int, rate: float, timeout: float = 15.0) -> None:
        self._url = f"{base_url}/job/{category}"
        self._worker_url = worker_url
        self._rate = rate
        self._timeout = timeout
        self._pools = []
        self._clients = []
        for _ in range(clients):
            pool = HTTPConnectionPool(reactor, persistent=True)
            pool.maxPersistentPerHost = 1
            pool.retryAutomatically = False
            self._pools.append(pool)
            self._clients.append(HTTPClient(Agent(reactor, pool=pool)))
        self._numbers = itertools.count()
        self._stopping = False
        self._lanes: Deferred[Any] | None = None
        self.pushes = 0
        self.acknowledged: set[int] = set()
        #: (time, n, what went wrong)
        self.failures: list[tuple[float, int, str]] = []
        #: The longest time a push took to be answered.
        self.slowest = 0.0
        #: The longest this test process's reactor was late for a 10 ms timer while pushing
        #: (a paused client lets a draining daemon see its kept connections as idle).
        self.stall = 0.0
        self._beat = LoopingCall(self._heartbeat)
        self._last_beat = 0.0
        asyncCleanup(case, self.close)

    def _heartbeat(self) -> None:
        at = now()
        if self._last_beat:
            self.stall = max(self.stall, at - self._last_beat - STALL_BEAT)
        self._last_beat = at

    def start(self) -> None:
        # The clients run in the test process, whose heap holds what every earlier test left
        # (about 280,000 objects late in the suite): each full collection of it stalled them
        # for 0.35-0.5 s under CI's load, and a draining daemon rightly closes a kept
        # connection idle that long, just as the stalled client reuses it (a push lost in a
        # race no server can prevent: docs/operations.md, Graceful shutdown). Frozen objects
        # are left out of collections.
        gc.freeze()
        self._beat.start(STALL_BEAT)
        self._lanes = gatherResults(
            [Deferred.fromCoroutine(self._lane(i, http)) for i, http in enumerate(self._clients)],
            consumeErrors=True)

    async def _lane(self, index: int, http: HTTPClient) -> None:
        period = len(self._clients) / self._rate
        next_at = now() + index * period / len(self._clients)
        while not self._stopping:
            wait = next_at - now()
            if wait > 0:
                await sleep(wait)
            n = next(self._numbers)
            self.pushes += 1
            body = json.dumps({"url": self._worker_url, "payload": {"n": n}}).encode()
            headers: dict[bytes | str, bytes | str] = {"Content-Type": "application/json"}
            sent = now()
            try:
                response = await http.post(
                    self._url, data=body, headers=headers,
                    timeout=self._timeout)
                content = await response.content()
            except Exception as e:  # noqa: BLE001 - any client-side error is a failed push
                self.failures.append((now(), n, repr(e)))
            else:
                if response.code == 200:
                    self.acknowledged.add(n)
                else:
                    self.failures.append((now(), n, f"{response.code} {content[:200]!r}"))
            self.slowest = max(self.slowest, now() - sent)
            next_at = max(next_at + period, now())

    async def wait_acknowledged(self, count: int, timeout: float = 30.0) -> None:
        async def enough() -> bool:
            return len(self.acknowledged) >= count
        await eventually(enough, timeout, step=0.02, what=f"{count} acknowledged pushes")

    async def stop(self) -> None:
        self._stopping = True
        if self._beat.running:
            self._beat.stop()
        if self._lanes is not None:
            lanes, self._lanes = self._lanes, None
            await lanes

    async def close(self) -> None:
        await self.stop()
        for pool in self._pools:
            await pool.closeCachedConnections()
        gc.unfreeze()


__all__ = [
    "LISTENING", "TWISTD", "Child", "Pusher", "clean_env", "daemon_argv", "error_lines",
    "run_to_end",
    "venv_command",
]
