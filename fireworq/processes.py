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
from twisted.internet.protocol import DatagramProtocol, ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from fireworq.config import SPECS, Config

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

    def __init__(self, reactor: Any, config: Config, count: int, wake_group: str,
                 argv_prefix: Sequence[str] | None = None) -> None:
        self._reactor = reactor
        self._wake_group = wake_group
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
        environ[WAKE_ENV] = "%s:%d:%d" % (self._wake_group, slot, self._count)
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


#: Set in a child's environment: ``<group>:<slot>:<count>`` of its wake-up socket.
WAKE_ENV = "FIREWORQ_WAKE"


def wake_address(group: str, slot: int) -> str:
    """The wake-up socket of process ``slot`` of a node: a Linux abstract UNIX socket
    name, so that nothing is left in the file system however the processes end."""
    return "\0fireworq-wake-%s-%d" % (group, slot)


class WakeChannel(DatagramProtocol):
    """Wake-ups between the processes of one node: a push stored by a process that does not
    dispatch its queue tells the others (one datagram per process and reactor turn, the
    names of the queues), and the one dispatching it grabs at once instead of at its next
    poll. Process ``slot`` of ``count`` listens on ``wake_address(group, slot)``; a lost
    datagram only delays the jobs until the poll."""

    def __init__(self, reactor: Any, group: str, slot: int, count: int,
                 on_wake: Callable[[str], None]) -> None:
        self._reactor = reactor
        self.group = group
        self._slot = slot
        self._count = count
        self._on_wake = on_wake
        self._pending: set[str] = set()
        self._flush_call: IDelayedCall | None = None
        self._port: Any = None

    @classmethod
    def from_environment(cls, reactor: Any, environ: Mapping[str, str],
                         on_wake: Callable[[str], None]) -> WakeChannel | None:
        group, _, rest = environ.get(WAKE_ENV, "").partition(":")
        slot, _, count = rest.partition(":")
        if not group or not slot.isdigit() or not count.isdigit():
            return None
        return cls(reactor, group, int(slot), int(count), on_wake)

    def start(self) -> None:
        self._port = self._reactor.listenUNIXDatagram(wake_address(self.group, self._slot), self)

    def wake_elsewhere(self, queue_name: str) -> None:
        self._pending.add(queue_name)
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        data = "\n".join(sorted(self._pending)).encode("utf-8")
        self._pending.clear()
        if self.transport is None:
            return
        for slot in range(self._count):
            if slot != self._slot:
                try:
                    self.transport.write(data, wake_address(self.group, slot))  # type: ignore[arg-type]
                except Exception:  # that process is being restarted, or its socket is full
                    pass

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        for name in datagram.decode("utf-8", "replace").split("\n"):
            if name:
                self._on_wake(name)

    async def stop(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if self._port is not None:
            stopped = self._port.stopListening()
            self._port = None
            if stopped is not None:
                await stopped
