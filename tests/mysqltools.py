"""MariaDB/MySQL for tests: one fresh database per test, dropped afterwards.

The server is ``FIREWORQ_TEST_MYSQL`` (a DSN without database, default
``root:@tcp(127.0.0.1:3306)/``). When it cannot be reached the MySQL tests are skipped,
unless ``FIREWORQ_TEST_REQUIRE_MYSQL`` is set (CI): then they fail.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import pymysql
from twisted.trial.unittest import SkipTest

from fireworq.dsn import MySQLDSN, parse_dsn

_counter = itertools.count(1)
_reachable: bool | None = None


def server_dsn() -> MySQLDSN:
    return parse_dsn(os.environ.get("FIREWORQ_TEST_MYSQL", "root:@tcp(127.0.0.1:3306)/"))


def _connect(dsn: MySQLDSN, database: str | None = None) -> Any:
    arguments: dict[str, Any] = dict(
        user=dsn.user or "", password=dsn.password or "", connect_timeout=3,
        read_timeout=30, write_timeout=30, autocommit=True,
        # PyMySQL 2 otherwise "prefers" TLS: a default SSL context (the system CA store,
        # 40-110 ms of CPU) for every connection, and TLS whenever the server offers it.
        ssl_disabled=dsn.tls == "false",
    )
    if dsn.network == "unix":
        arguments["unix_socket"] = dsn.socket_path
    else:
        arguments.update(host=dsn.host, port=dsn.port)
    if database:
        arguments["database"] = database
    return pymysql.connect(**arguments)


def require_mysql() -> MySQLDSN:
    """Skip (or, in CI, fail) when the test server is not there."""
    global _reachable
    dsn = server_dsn()
    if _reachable is None:
        try:
            _connect(dsn).close()
            _reachable = True
        except pymysql.err.MySQLError:
            _reachable = False
    if not _reachable:
        message = "MariaDB/MySQL not reachable at %s" % dsn.host
        if os.environ.get("FIREWORQ_TEST_REQUIRE_MYSQL"):
            raise AssertionError(message + " (FIREWORQ_TEST_REQUIRE_MYSQL is set)")
        raise SkipTest(message)
    return dsn


def create_database(prefix: str = "fwtest") -> str:
    """A new empty database; its name is unique to this process and call."""
    dsn = require_mysql()
    name = "%s_%d_%d" % (prefix, os.getpid(), next(_counter))
    connection = _connect(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS `%s`" % name)
            cursor.execute("CREATE DATABASE `%s`" % name)
    finally:
        connection.close()
    return name


def drop_database(name: str) -> None:
    connection = _connect(server_dsn())
    try:
        with connection.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS `%s`" % name)
    finally:
        connection.close()


def daemon_database(case: Any, prefix: str) -> tuple[str, tuple[str, ...]]:
    """A new database for a daemon of ``case`` (a trial TestCase), dropped at its cleanup,
    and the daemon options that name it. Call it before the daemon starts, so that the
    database is dropped after the daemon is gone (cleanups run last in, first out)."""
    name = create_database(prefix)
    case.addCleanup(drop_database, name)
    return name, (f"--mysql-dsn={dsn_text(name)}",)


def dsn_text(database: str) -> str:
    """A ``FIREWORQ_MYSQL_DSN`` for a test database."""
    dsn = server_dsn()
    user = dsn.user or ""
    credentials = "%s:%s@" % (user, dsn.password) if dsn.password else "%s@" % user
    if dsn.network == "unix":
        return "%sunix(%s)/%s" % (credentials, dsn.socket_path, database)
    return "%stcp(%s:%d)/%s" % (credentials, dsn.host, dsn.port, database)


def execute(database: str, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
    connection = _connect(server_dsn(), database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, args)
            return list(cursor.fetchall())
    finally:
        connection.close()


def hold_server_globals(case: Any, timeout: int = 900) -> None:
    """Make ``case`` the only test, across every test run on this server, that changes or
    counts on global server variables (``max_allowed_packet``), until its cleanup: CI runs
    the suite on two Pythons at once against one server. The lock is the connection's, so
    closing it (or the process ending) releases it."""
    connection = _connect(server_dsn())
    with connection.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK('fireworq_tests_server_globals', %s)", (timeout,))
        [(taken,)] = cursor.fetchall()
    if taken != 1:
        connection.close()
        raise AssertionError("the server's global variables stayed locked for %d s" % timeout)
    case.addCleanup(connection.close)
