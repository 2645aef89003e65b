"""What the daemon says as it starts (fireworq.startup): where it listens and keeps its data,
why it cannot open its SQLite file or its MySQL database, where twistd's logs go."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from typing import Any

import attrs
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase

from fireworq.config import Config, load_config
from fireworq.startup import (
    LoggingRefused,
    address_text,
    data_text,
    ready_text,
    sqlite_path_problem,
    start_failure_text,
    with_twistd_logging,
)


class _Port:
    def __init__(self, address: object) -> None:
        self._address = address

    def getHost(self) -> object:
        return self._address


def port(address: object) -> Any:
    """A listening port as far as the start-up line looks at it."""
    return _Port(address)


def config(**keys: str) -> Config:
    return load_config(keys, {})


class StartLineTests(SynchronousTestCase):
    def test_addresses(self) -> None:
        """When the daemon listens, its address is plain host:port ([v6]:port, unix:path)."""
        self.assertEqual(address_text(port(IPv4Address("TCP", "127.0.0.1", 8080))),
                         "127.0.0.1:8080")
        self.assertEqual(address_text(port(IPv6Address("TCP", "::1", 8080))), "[::1]:8080")
        self.assertEqual(address_text(port(UNIXAddress(b"/run/fireworq.sock"))),
                         "unix:/run/fireworq.sock")

    def test_sqlite(self) -> None:
        """When the driver is sqlite, the line names the file, as an absolute path."""
        self.assertEqual(data_text(config(sqlite_path="data/q.sqlite3")),
                         "data in " + os.path.abspath("data/q.sqlite3"))

    def test_mysql_without_password(self) -> None:
        """When the driver is mysql, the line names the database and its server, never the
        password; both databases when definitions and jobs are apart."""
        one = config(driver="mysql", mysql_dsn="app:s3cr@t@tcp(db.internal:3306)/fireworq")
        self.assertEqual(data_text(one), "data in database fireworq on db.internal:3306")
        two = attrs.evolve(one, queue_mysql_dsn="app:pw2@unix(/run/mysqld.sock)/jobs")
        text = data_text(two)
        self.assertEqual(text, "definitions in database fireworq on db.internal:3306,"
                               " jobs in database jobs on unix:/run/mysqld.sock")
        self.assertNotIn("s3cr", text)
        self.assertNotIn("pw2", text)

    def test_in_memory(self) -> None:
        self.assertEqual(data_text(config(driver="in-memory")),
                         "data in memory only, lost at exit")

    def test_ready_line(self) -> None:
        """When the daemon is ready, one line says where it listens, its version, driver and
        data."""
        listening = port(IPv4Address("TCP", "127.0.0.1", 8080))
        self.assertEqual(
            ready_text(config(driver="in-memory"), [listening], "9.9.9"),
            "fireworq listening on 127.0.0.1:8080 (fireworq-py 9.9.9, driver in-memory,"
            " data in memory only, lost at exit)",
        )


class UnknownDatabaseTests(SynchronousTestCase):
    def test_how_to_create_it(self) -> None:
        """When the MySQL database does not exist, the start error says how to create it."""
        reason = "create schema: MySQL error 1049: Unknown database 'fireworq'"
        self.assertEqual(
            start_failure_text(reason, config(driver="mysql")),
            "the MySQL database fireworq does not exist on localhost:3306; create it first:"
            " CREATE DATABASE fireworq",
        )

    def test_quoted_name(self) -> None:
        """When the name needs quoting in SQL, the statement quotes it."""
        reason = "create schema: MySQL error 1049: Unknown database 'fw-1'"
        text = start_failure_text(reason, config(driver="mysql",
                                                 mysql_dsn="root@tcp(db:3307)/fw-1"))
        self.assertTrue(text.endswith("on db:3307; create it first: CREATE DATABASE `fw-1`"),
                        text)

    def test_other_reasons_unchanged(self) -> None:
        reason = "create schema: MySQL error 1045: Access denied for user 'x'@'y'"
        self.assertEqual(start_failure_text(reason, config(driver="mysql")), reason)


class SqlitePathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="fireworq-path-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    def test_usable(self) -> None:
        """When the file can be created, there is no problem (and the file exists)."""
        path = os.path.join(self.directory, "q.sqlite3")
        self.assertIsNone(sqlite_path_problem(path))
        self.assertTrue(os.path.isfile(path))

    def test_missing_directory(self) -> None:
        path = os.path.join(self.directory, "no", "such", "q.sqlite3")
        self.assertEqual(sqlite_path_problem(path), "directory does not exist")

    def test_is_a_directory(self) -> None:
        self.assertEqual(sqlite_path_problem(self.directory), "is a directory")

    def test_directory_is_a_file(self) -> None:
        file = os.path.join(self.directory, "file")
        open(file, "w").close()
        self.assertEqual(sqlite_path_problem(os.path.join(file, "q.sqlite3")),
                         f"{file} is not a directory")

    def test_permission_denied(self) -> None:
        """When the directory may not be written, that is the reason. Root ignores file
        modes: as root the directory is made immutable (chattr +i) where the file system
        allows, else the refusal is injected."""
        locked = os.path.join(self.directory, "locked")
        os.mkdir(locked)
        path = os.path.join(locked, "q.sqlite3")
        if os.geteuid() != 0:
            os.chmod(locked, 0o500)
            self.addCleanup(os.chmod, locked, 0o700)
        elif _immutable(locked):
            self.addCleanup(subprocess.run, ["chattr", "-i", locked], check=True)
        else:
            def refuse(*args: object) -> int:
                raise PermissionError(errno.EACCES, "Permission denied")
            self.patch(os, "open", refuse)
        self.assertEqual(sqlite_path_problem(path), "permission denied")


def _immutable(path: str) -> bool:
    try:
        return subprocess.run(["chattr", "+i", path], capture_output=True,
                              check=False).returncode == 0
    except OSError:
        return False


class TwistdLoggingTests(SynchronousTestCase):
    def test_not_under_twistd(self) -> None:
        base = config()
        self.assertIs(with_twistd_logging(base, None), base)

    def test_foreground(self) -> None:
        """When twistd runs in the foreground, the logs stay where they are configured."""
        base = config()
        self.assertEqual(with_twistd_logging(base, {"nodaemon": True, "logfile": None}), base)

    def test_foreground_logfile(self) -> None:
        """When --logfile is given, it is the error log's file."""
        changed = with_twistd_logging(config(), {"nodaemon": True, "logfile": "f.log"})
        self.assertEqual((changed.error_log, changed.queue_log, changed.access_log),
                         ("f.log", "", ""))

    def test_daemon_mode(self) -> None:
        """When twistd daemonizes, standard output and error are gone: every log without a
        file of its own goes to twistd.log, or to --logfile."""
        changed = with_twistd_logging(config(queue_log="q.log"), {"nodaemon": False})
        self.assertEqual((changed.error_log, changed.queue_log, changed.access_log),
                         ("twistd.log", "q.log", "twistd.log"))
        changed = with_twistd_logging(config(), {"nodaemon": False, "logfile": "all.log"})
        self.assertEqual((changed.error_log, changed.queue_log, changed.access_log),
                         ("all.log", "all.log", "all.log"))

    def test_refused(self) -> None:
        """When twistd is asked for something the logs cannot do, it is refused clearly."""
        for twistd, base in [
            ({"nodaemon": False, "logfile": "-"}, config()),
            ({"nodaemon": True, "syslog": True}, config()),
            ({"nodaemon": True, "logfile": "a.log"}, config(error_log="b.log")),
        ]:
            self.assertRaises(LoggingRefused, with_twistd_logging, base, twistd)
