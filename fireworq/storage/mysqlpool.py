"""adbapi pools for MySQL/MariaDB with explicit timeouts and quiet reconnection.

adbapi's own reconnection logs a traceback for every lost connection and only notices the
loss on the next rollback. Here a connection-level error drops the thread's connection at
once (the next call opens a new one) and surfaces as ``StoreUnavailable``; read-only
statements skip the BEGIN/COMMIT round trips.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Callable, TypeVar

import pymysql
from twisted.enterprise import adbapi

from fireworq.dsn import MySQLDSN
from fireworq.errors import StoreMisconfigured, StoreUnavailable

T = TypeVar("T")

#: Used when the DSN sets no I/O timeout: a store that stops answering must not hold a
#: pool thread (and a push) forever.
DEFAULT_IO_TIMEOUT = 10.0
#: The grab-and-lock connection gives up sooner: while it hangs this node cannot tell
#: whether it still holds its queues.
LOCK_IO_TIMEOUT = 5.0

# Client-side codes that mean the connection is unusable (2000-2099: CR_* errors) and
# server codes that mean the server is going away or the session was killed.
_SERVER_GONE = {1053, 1077, 1078, 1079, 1080, 1152, 1153, 1154, 1156, 1158, 1159, 1160, 1161,
                1184, 1927, 4031}
# Transient server answers worth one more try by the caller, reported as unavailable.
_TRANSIENT = {1205, 1213, 1040, 1203}
# Access denied, unknown database: the configuration (or the grants) must change.
_MISCONFIGURED = {1044, 1045, 1049, 1142, 1227}


def is_connection_error(error: BaseException) -> bool:
    if isinstance(error, (socket.timeout, ConnectionError, OSError)):
        return True
    if isinstance(error, pymysql.err.InterfaceError):
        return True
    if isinstance(error, pymysql.err.OperationalError):
        code = error.args[0] if error.args else 0
        return not isinstance(code, int) or 2000 <= code < 2100 or code in _SERVER_GONE
    return False


def is_unavailable(error: BaseException) -> bool:
    if is_connection_error(error):
        return True
    if isinstance(error, pymysql.err.OperationalError) and error.args:
        return error.args[0] in _TRANSIENT
    return False


def is_misconfigured(error: BaseException) -> bool:
    return (isinstance(error, pymysql.err.MySQLError) and bool(error.args)
            and error.args[0] in _MISCONFIGURED)


def describe(error: BaseException) -> str:
    if isinstance(error, pymysql.err.MySQLError) and len(error.args) >= 2:
        return "MySQL error %s: %s" % (error.args[0], error.args[1])
    return str(error) or type(error).__name__


def connect_arguments(dsn: MySQLDSN, io_timeout: float) -> dict[str, Any]:
    """PyMySQL ``connect()`` keyword arguments for a DSN."""
    arguments: dict[str, Any] = {
        "user": dsn.user or "",
        "password": dsn.password or "",
        "database": dsn.database,
        "charset": dsn.charset,
        # PyMySQL's connect_timeout covers only the TCP connect; the read timeout also
        # bounds the handshake, so a server that accepts but never greets cannot hang us.
        "connect_timeout": dsn.connect_timeout or 31536000,
        "read_timeout": dsn.read_timeout or io_timeout,
        "write_timeout": dsn.write_timeout or io_timeout,
        # Single statements commit themselves; transactions begin explicitly.
        "autocommit": True,
    }
    if dsn.network == "unix":
        arguments["unix_socket"] = dsn.socket_path
    else:
        arguments["host"] = dsn.host
        arguments["port"] = dsn.port
    if dsn.collation:
        arguments["collation"] = dsn.collation
    if dsn.tls == "false":
        # Without this PyMySQL negotiates TLS whenever the server offers it.
        arguments["ssl_disabled"] = True
    elif dsn.tls in ("true", "skip-verify"):
        context = ssl.create_default_context()
        if dsn.tls == "skip-verify":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        arguments["ssl"] = context
    # "preferred": PyMySQL's own default, TLS when offered, without certificate checks.
    return arguments


def session_setup(dsn: MySQLDSN, extra: tuple[str, ...] = ()) -> Callable[[Any], None]:
    """What every new connection runs first."""
    statements = (
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        # Job times are UNIX_TIMESTAMP(NOW(3)): exact in UTC, even across DST changes.
        "SET time_zone = '+00:00'",
        "SET SESSION innodb_lock_wait_timeout = 10",
        *extra,
        *("SET %s = %s" % (name, value) for name, value in dsn.session_variables),
    )

    def setup(connection: Any) -> None:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        connection.commit()

    return setup


class MySQLPool(adbapi.ConnectionPool):
    """An adbapi pool whose failures are ``StoreUnavailable`` when the server is away."""

    def __init__(
        self, dsn: MySQLDSN, reactor: Any, *, size: int, io_timeout: float,
        on_connect: Callable[[Any], None] | None = None,
        before: Callable[[Any], None] | None = None,
        implicit_transactions: bool = False,
    ) -> None:
        """With ``implicit_transactions`` the connection runs with autocommit off: every
        interaction is a transaction that its first statement begins, which saves the BEGIN
        round trip of each one; single statements then pay a COMMIT instead."""
        self._before = before
        self._implicit = implicit_transactions
        setup = session_setup(dsn)

        def open_connection(connection: Any) -> None:
            setup(connection)
            if on_connect is not None:
                on_connect(connection)

        arguments = connect_arguments(dsn, io_timeout)
        arguments["autocommit"] = not implicit_transactions
        adbapi.ConnectionPool.__init__(
            self, "pymysql", cp_min=1, cp_max=size, cp_reconnect=False, cp_noisy=False,
            cp_openfun=open_connection, cp_reactor=reactor, **arguments,
        )

    def _runInteraction(self, interaction: Any, *args: Any, **kw: Any) -> Any:
        transaction = kw.pop("transaction", True)
        connection = adbapi.ConnectionPool.connect(self)
        cursor = connection.cursor()
        try:
            if self._before is not None:
                self._before(cursor)
            if transaction and not self._implicit:
                connection.begin()
            result = interaction(cursor, *args, **kw)
            cursor.close()
            if transaction or self._implicit:
                connection.commit()
            return result
        except BaseException as error:
            if is_connection_error(error):
                self.disconnect(connection)
            else:
                try:
                    connection.rollback()
                except BaseException:
                    self.disconnect(connection)
            raise

    def close(self) -> None:
        adbapi.ConnectionPool.close(self)

    def disconnect(self, connection: Any) -> None:
        try:
            adbapi.ConnectionPool.disconnect(self, connection)
        except Exception:
            pass

    async def run(self, description: str, function: Callable[..., T], *args: Any,
                  transaction: bool = True) -> T:
        """Run ``function(cursor, *args)`` in a pool thread; ``transaction=False`` for a
        single statement, which then commits by itself (one round trip less)."""
        try:
            result: T = await adbapi.ConnectionPool.runInteraction(
                self, function, *args, transaction=transaction
            )
        except Exception as error:
            if is_misconfigured(error):
                raise StoreMisconfigured("%s: %s" % (description, describe(error))) from error
            if is_unavailable(error):
                raise StoreUnavailable("%s: %s" % (description, describe(error))) from error
            raise
        return result
