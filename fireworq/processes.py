"""``--processes N``: the node as N processes on one listening socket (docs/performance.md,
"More than one core").

The process twistd starts (the parent) listens, then starts N - 1 children, each a whole
daemon of its own on the same store, serving the parent's listening socket (handed down as
``SERVER_STARTER_PORT``, the way a graceful restart hands it down). The kernel spreads the
connections over the processes; every process stores the pushes it accepts. Each queue is
dispatched by the one process that holds its lock, as between the nodes of a cluster: a
process that dies loses its locks with it, another one takes its queues over and recovers
their grabbed jobs, and the parent starts a new child in its place.

The children run in process groups of their own (a Ctrl-C at a terminal reaches only the
parent, which then stops each child once) and get SIGTERM should the parent die. The
parent's stop stops every child gracefully and waits for them within ``shutdown_timeout``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any, Callable, Mapping, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from fireworq.config import SPECS, Config
from fireworq.peers import PEERS_ENV

log = Logger()

#: Set in a child's environment: the parent's pid.
CHILD_ENV = "FIREWORQ_PARENT_PID"
#: Seconds before a child that died is started again; doubled while they keep dying.
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
_PR_SET_PDEATHSIG = 1


def child_arguments(config: Config) -> tuple[list[str], dict[str, str]]:
    """The options and environment variables that give a child this process's configuration:
    every key given, as given (so its ``/settings`` is the same), and every plain value that
    differs from its default (a log file twistd named, say); secrets (DSNs, API tokens) by
    environment rather than on the command line, which every user can read. The child also
    inherits this process's environment."""
    given = dict(config.given_text)
    options, environ = [], {}
    for spec in SPECS:
        if spec.key in ("processes", "pid"):
            continue
        text = given.get(spec.key)
        if spec.key == "api_tokens":  # given_text keeps "(hidden)" only: the tokens again
            text = ",".join("%s:%s" % (token.token, token.scope)
                            for token in config.api_tokens) or None
        if text is None:
            value = getattr(config, spec.key)
            if not isinstance(value, (str, int)):  # set only by a given text
                continue
            if spec.default is not None and spec.parse(spec.default) == value:
                continue
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if spec.secret or spec.hidden:
            environ[spec.env] = text
        else:
            options.append("--%s=%s" % (spec.option, text))
    # A child never writes the PID file (the parent does) and starts no children.
    options += ["--pid=", "--processes=1"]
    return options, environ


def listening_descriptors(ports: Sequence[IListeningPort]) -> list[tuple[str, int]]:
    """``(address, fd)`` of each listening port, for ``SERVER_STARTER_PORT``."""
    found = []
    for port in ports:
        fileno = getattr(port, "fileno", None)
        if fileno is None:
            raise ValueError("cannot hand %r down to a child process" % (port,))
        address = port.getHost()
        name = getattr(address, "name", None) or "%s:%s" % (
            getattr(address, "host", ""), getattr(address, "port", ""))
        found.append((str(name), int(fileno())))
    return found


def become_child(environ: Mapping[str, str]) -> None:
    """In a child at start: a process group of its own, SIGTERM when the parent dies (and
    at once if it has died already)."""
    parent = environ.get(CHILD_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    os.setpgrp()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if str(os.getppid()) != parent:
        os.kill(os.getpid(), signal.SIGTERM)


class _Child(ProcessProtocol):
    def __init__(self, children: ChildProcesses, slot: int) -> None:
        self._children = children
        self.slot = slot
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        self._children._ended(self, reason)
        self.ended.callback(None)


class ChildProcesses:
    """The parent's N - 1 children: started, restarted when they die, stopped."""

    def __init__(self, reactor: Any, config: Config, count: int,
                 peers_environment: Callable[[int], str],
                 argv_prefix: Sequence[str] | None = None) -> None:
        self._reactor = reactor
        #: ``FIREWORQ_PEERS`` of the child in a slot (``fireworq.peers``).
        self._peers_environment = peers_environment
        self._config = config
        self._count = count
        self._argv_prefix = list(argv_prefix or [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "--nodaemon", "--pidfile=", "fireworq"])
        self._running: dict[int, tuple[_Child, Any]] = {}
        self._failures: dict[int, int] = {}
        self._pending: dict[int, IDelayedCall] = {}
        self._descriptors: list[tuple[str, int]] = []
        self._stopping = False

    @property
    def pids(self) -> list[int]:
        return [int(transport.pid) for _, transport in self._running.values()
                if transport.pid is not None]

    def start(self, ports: Sequence[IListeningPort]) -> None:
        self._descriptors = listening_descriptors(ports)
        for slot in range(1, self._count):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        self._pending.pop(slot, None)
        if self._stopping:
            return
        options, secrets = child_arguments(self._config)
        environ = dict(os.environ)
        environ.update(secrets)
        environ[CHILD_ENV] = str(os.getpid())
        environ[PEERS_ENV] = self._peers_environment(slot)
        environ["SERVER_STARTER_PORT"] = ";".join(
            "%s=%d" % (name, fd) for name, fd in self._descriptors)
        for variable in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            environ.pop(variable, None)
        child_fds: dict[int, Any] = {0: "w", 1: 1, 2: 2}
        for _, fd in self._descriptors:
            child_fds[fd] = fd
        protocol = _Child(self, slot)
        transport = self._reactor.spawnProcess(
            protocol, self._argv_prefix[0], [*self._argv_prefix, *options], env=environ,
            childFDs=child_fds)
        self._running[slot] = (protocol, transport)
        log.info("Started process {slot} of {count} (pid {pid})", slot=slot + 1,
                 count=self._count, pid=transport.pid)

    def _ended(self, child: _Child, reason: Failure) -> None:
        self._running.pop(child.slot, None)
        if self._stopping:
            return
        failures = self._failures.get(child.slot, 0) + 1
        self._failures[child.slot] = failures
        delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS)) - 1]
        how = ("exited" if reason.check(ProcessDone) else "died: %s" % reason.getErrorMessage())
        log.error("Process {slot} of {count} {how}; starting it again in {delay} s (its"
                  " queues are taken over and their grabbed jobs recovered meanwhile)",
                  slot=child.slot + 1, count=self._count, how=how, delay=delay)
        self._pending[child.slot] = self._reactor.callLater(delay, self._spawn, child.slot)

    def signal_all(self, number: int) -> None:
        for _, transport in list(self._running.values()):
            try:
                transport.signalProcess(number)
            except Exception:  # ended meanwhile
                pass

    async def stop(self, deadline: float) -> None:
        """SIGTERM to every child (each stops gracefully), then wait until ``deadline``;
        SIGKILL to what is left."""
        self._stopping = True
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        children = [child for child, _ in self._running.values()]
        self.signal_all(signal.SIGTERM)
        for child in children:
            remaining = deadline - self._reactor.seconds()
            if child.ended.called:
                continue
            timer = self._reactor.callLater(max(0.0, remaining) + 1.0, self.signal_all,
                                            signal.SIGKILL)
            await child.ended
            if timer.active():
                timer.cancel()
