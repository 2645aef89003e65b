"""Listening sockets handed down by a supervisor: systemd socket activation
(``LISTEN_FDS``/``LISTEN_PID``, with or without ``LISTEN_FDNAMES``) and Server::Starter
(``SERVER_STARTER_PORT``).

Twisted's systemd support reads and deletes ``LISTEN_*`` when ``twisted.internet.endpoints``
is first imported, and ignores the descriptors when ``LISTEN_FDNAMES`` is missing, so the
variables are read here, when the ``fireworq`` package is imported (before anything imports
that module), and removed from the environment as systemd asks.
"""

from __future__ import annotations

import os
from typing import Mapping

import attrs

#: systemd passes its sockets from descriptor 3 on (sd_listen_fds(3)).
SYSTEMD_FIRST_FD = 3


@attrs.frozen
class InheritedSocket:
    fd: int
    name: str  # the systemd name, or the Server::Starter address, for the log


def systemd_sockets(environ: Mapping[str, str], pid: int) -> list[InheritedSocket]:
    if environ.get("LISTEN_PID") != str(pid):
        return []
    try:
        count = int(environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    names = environ.get("LISTEN_FDNAMES", "").split(":") if environ.get("LISTEN_FDNAMES") else []
    return [
        InheritedSocket(fd, names[index] if index < len(names) else "fd %d" % fd)
        for index, fd in enumerate(range(SYSTEMD_FIRST_FD, SYSTEMD_FIRST_FD + max(0, count)))
    ]


def server_starter_sockets(environ: Mapping[str, str]) -> list[InheritedSocket]:
    """``SERVER_STARTER_PORT``: ``addr=fd`` entries separated by ``;``, where addr is a
    port, ``host:port`` or a unix socket path."""
    sockets = []
    for entry in environ.get("SERVER_STARTER_PORT", "").split(";"):
        address, separator, fd = entry.rpartition("=")
        if separator and fd.isdigit():
            sockets.append(InheritedSocket(int(fd), address))
    return sockets


def _capture() -> list[InheritedSocket]:
    sockets = systemd_sockets(os.environ, os.getpid())
    for variable in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(variable, None)  # not for our children (sd_listen_fds unset_environment)
    return sockets or server_starter_sockets(os.environ)


#: What this process inherited, read once at import.
SOCKETS = _capture()
