"""What the daemon says about itself as it starts: where it listens and keeps its data, why it
cannot start, and where its logs go when twistd runs it as a daemon."""

from __future__ import annotations

import errno
import os
import re
import stat
from typing import Any, Iterable, Mapping

import attrs
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IListeningPort

from fireworq.config import Config
from fireworq.dsn import MySQLDSN

#: Where twistd writes its log in daemon mode when not told otherwise.
TWISTD_LOG = "twistd.log"
_UNKNOWN_DATABASE = re.compile(r"MySQL error 1049: Unknown database '(.*)'")
_PLAIN_IDENTIFIER = re.compile(r"[0-9A-Za-z_$]+")


def address_text(port: IListeningPort) -> str:
    """``host:port`` (``[v6]:port``, ``unix:/path``) of a listening port."""
    address = port.getHost()
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        return "unix:" + (name.decode("utf-8", "replace") if isinstance(name, bytes) else
                          str(name))
    return str(address)


def _server(dsn: MySQLDSN) -> str:
    return f"unix:{dsn.socket_path}" if dsn.network == "unix" else f"{dsn.host}:{dsn.port}"


def data_text(config: Config) -> str:
    """Where the data is, for the start-up line: never a password."""
    if config.driver == "sqlite":
        return "data in " + os.path.abspath(config.sqlite_path)
    if config.driver == "in-memory":
        return "data in memory only, lost at exit"
    repository, queue = config.repository_mysql_dsn_parsed, config.queue_mysql_dsn_parsed
    definitions = f"database {repository.database} on {_server(repository)}"
    jobs = f"database {queue.database} on {_server(queue)}"
    if definitions == jobs:
        return "data in " + definitions
    return f"definitions in {definitions}, jobs in {jobs}"


def ready_text(config: Config, ports: Iterable[IListeningPort], version: str) -> str:
    addresses = ", ".join(address_text(port) for port in ports)
    return (f"fireworq listening on {addresses} (fireworq-py {version}, driver {config.driver},"
            f" {data_text(config)})")


def sqlite_path_problem(path: str) -> str | None:
    """Why the daemon could not open (or create) the SQLite database at ``path``, or None.

    SQLite itself only says "unable to open database file". The file is created when
    missing (SQLite would create it anyway), and its directory must be writable too: the
    journal and the dispatch lock are files beside it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(directory).st_mode
    except OSError as e:
        return "directory does not exist" if e.errno == errno.ENOENT else _reason(e)
    if not stat.S_ISDIR(mode):
        return f"{directory} is not a directory"
    if os.path.isdir(path):
        return "is a directory"
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as e:
        return _reason(e)
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"permission denied (the directory {directory} is not writable)"
    return None


def _reason(error: OSError) -> str:
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.ENOTDIR:
        return "a part of its directory is not a directory"
    return (error.strerror or str(error)).lower()


def start_failure_text(reason: str, config: Config) -> str:
    """The line that says why the daemon could not start, with what to do where we know."""
    unknown = _UNKNOWN_DATABASE.search(reason)
    if unknown is None or config.driver != "mysql":
        return reason
    name = unknown.group(1)
    dsns = [config.repository_mysql_dsn_parsed, config.queue_mysql_dsn_parsed]
    where = next((_server(d) for d in dsns if d.database == name), _server(dsns[0]))
    quoted = name if _PLAIN_IDENTIFIER.fullmatch(name) else "`%s`" % name.replace("`", "``")
    return (f"the MySQL database {name} does not exist on {where}; create it first:"
            f" CREATE DATABASE {quoted}")


class LoggingRefused(Exception):
    """twistd options that the daemon's logs cannot follow."""


def with_twistd_logging(config: Config, twistd: Mapping[str, Any] | None) -> Config:
    """The configuration with twistd's ``--logfile`` and daemon mode applied to the logs.

    ``--logfile FILE`` names the error-log file (as ``FIREWORQ_ERROR_LOG`` does). In daemon
    mode (no ``-n``) standard output and error are gone, so every log given no file goes to
    that one, ``twistd.log`` by default.

    @raise LoggingRefused: for ``--syslog`` and for ``--logfile -`` in daemon mode.
    """
    if twistd is None:
        return config
    if twistd.get("syslog"):
        raise LoggingRefused("--syslog is not supported; use --logfile or FIREWORQ_ERROR_LOG")
    daemon = not twistd.get("nodaemon")
    logfile = twistd.get("logfile") or ""
    if logfile == "-":
        if daemon:
            raise LoggingRefused("--logfile - (standard output) needs -n (--nodaemon)")
        logfile = ""
    if logfile and config.error_log and os.path.abspath(logfile) != os.path.abspath(
            config.error_log):
        raise LoggingRefused(f"--logfile {logfile} and FIREWORQ_ERROR_LOG/--error-log"
                             f" {config.error_log} both name the error log; give one")
    error_log = config.error_log or logfile or (TWISTD_LOG if daemon else "")
    if not daemon:
        return attrs.evolve(config, error_log=error_log)
    return attrs.evolve(config, error_log=error_log, queue_log=config.queue_log or error_log,
                        access_log=config.access_log or error_log)
