#!/usr/bin/env python3
"""A stand-in for systemd socket activation (there is no systemd on the test machines).

    python3 tests/sdlauncher.py [--listen ADDR]... [--name NAME]... [--no-fdnames] \
        -- COMMAND [ARG...]

Like a ``.socket`` unit, it binds and listens on every ``--listen`` address (``host:port``,
``[v6]:port`` or a unix socket path; port 0 picks a free port) and keeps the sockets for its
whole life. Like the ``.service`` unit, it forks and, in the child, puts the sockets on
descriptors 3, 4, … and ``execve``s COMMAND with ``LISTEN_FDS`` = their number,
``LISTEN_PID`` = the child's pid (``execve`` keeps it) and, unless ``--no-fdnames``,
``LISTEN_FDNAMES`` = the ``--name`` values joined with ``:`` (``FileDescriptorName=``;
default ``fd0:fd1:…``). COMMAND is looked up on ``PATH``.

Signals, as ``systemctl`` would drive them:

* SIGTERM or SIGINT (``systemctl stop``): sent on to the service (``KillSignal=SIGTERM``);
  the launcher exits with the service's status once it has exited.
* SIGHUP (here: ``systemctl restart``): SIGTERM to the service, wait for its exit, then start
  it again on the same sockets. Meanwhile the sockets stay open, so connections queue in
  their backlog instead of being refused.

It reports on standard error, one line each: ``sdlauncher: listening on ADDR``,
``sdlauncher: started PID`` and ``sdlauncher: PID exited with status N`` (``N`` as in a shell:
128+signal for a signal).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from typing import Any

FIRST_FD = 3


def _bind(address: str) -> socket.socket:
    if address.startswith(("/", "./")):
        if os.path.exists(address):
            os.unlink(address)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(address)
    else:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    sock.listen(1024)
    return sock


def _shown(sock: socket.socket) -> str:
    name: Any = sock.getsockname()
    if isinstance(name, str):
        return name
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    return f"{name[0]}:{name[1]}"


def _say(text: str) -> None:
    sys.stderr.write(f"sdlauncher: {text}\n")
    sys.stderr.flush()


def _start(sockets: list[socket.socket], names: list[str] | None, command: list[str]) -> int:
    pid = os.fork()
    if pid:
        _say(f"started {pid}")
        return pid
    try:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        # Move the sockets out of the way first, so that dup2 onto 3, 4, … never closes one
        # still to be placed.
        high = [os.dup(s.fileno()) for s in sockets]
        for index, fd in enumerate(high):
            os.dup2(fd, FIRST_FD + index)  # dup2 leaves the new descriptor inheritable
            os.close(fd)
        env = dict(os.environ, LISTEN_FDS=str(len(sockets)), LISTEN_PID=str(os.getpid()))
        env.pop("LISTEN_FDNAMES", None)
        if names is not None:
            env["LISTEN_FDNAMES"] = ":".join(names)
        os.execvpe(command[0], command, env)
    except BaseException as e:  # noqa: BLE001 - the forked child must never return
        sys.stderr.write(f"sdlauncher: cannot start {command[0]}: {e}\n")
    os._exit(127)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", action="append", default=[], metavar="ADDR")
    parser.add_argument("--name", action="append", default=[], metavar="NAME")
    parser.add_argument("--no-fdnames", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command or not options.listen:
        parser.error("need at least one --listen and a command after --")
    sockets = [_bind(address) for address in options.listen]
    for sock in sockets:
        _say(f"listening on {_shown(sock)}")
    names = None if options.no_fdnames else (
        options.name or [f"fd{i}" for i in range(len(sockets))])

    state = {"restart": False, "pid": _start(sockets, names, command)}

    def forward(signum: int, frame: Any) -> None:
        os.kill(state["pid"], signum)

    def restart(signum: int, frame: Any) -> None:
        state["restart"] = True
        os.kill(state["pid"], signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, restart)
    while True:
        pid, status = os.waitpid(state["pid"], 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        _say(f"{pid} exited with status {code}")
        if not state["restart"]:
            return code
        state["restart"] = False
        state["pid"] = _start(sockets, names, command)


if __name__ == "__main__":
    sys.exit(main())
