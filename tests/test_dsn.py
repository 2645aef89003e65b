"""Tests for L{fireworq.dsn}: the MySQL DSN syntax of docs/configuration.md, MySQL DSN."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from fireworq.dsn import MySQLDSN, mask_dsn, parse_dsn, parse_duration


class ExampleTests(SynchronousTestCase):
    """The examples of docs/configuration.md, MySQL DSN."""

    def test_passwordWithAt(self) -> None:
        """When the password contains C{@}, the last C{@} ends the user information."""
        dsn = parse_dsn("app:s3cr@t@tcp(db.internal:3306)/fireworq?timeout=5s")
        self.assertEqual(
            dsn,
            MySQLDSN(
                user="app",
                password="s3cr@t",
                network="tcp",
                host="db.internal",
                port=3306,
                socket_path="",
                database="fireworq",
                connect_timeout=5.0,
                read_timeout=None,
                write_timeout=None,
                tls="false",
                charset="utf8mb4",
                collation=None,
                session_variables=(),
            ),
        )

    def test_emptyPassword(self) -> None:
        """When the user is followed by C{:} and C{@}, the password is empty, not absent."""
        dsn = parse_dsn("root:@tcp(127.0.0.1:3306)/fireworq")
        self.assertEqual((dsn.user, dsn.password), ("root", ""))
        self.assertEqual((dsn.host, dsn.port, dsn.database), ("127.0.0.1", 3306, "fireworq"))

    def test_unixWithPath(self) -> None:
        """When the network is unix with a path, that path is the socket and there is no
        password."""
        dsn = parse_dsn("app@unix(/run/mysqld/mysqld.sock)/fireworq")
        self.assertEqual((dsn.user, dsn.password), ("app", None))
        self.assertEqual(
            (dsn.network, dsn.socket_path, dsn.host, dsn.port),
            ("unix", "/run/mysqld/mysqld.sock", "", 0),
        )
        self.assertEqual(dsn.database, "fireworq")

    def test_fireworqDefault(self) -> None:
        """When the DSN is Fireworq's default, it is the anonymous user on localhost:3306."""
        dsn = parse_dsn("tcp(localhost:3306)/fireworq")
        self.assertEqual((dsn.user, dsn.password), (None, None))
        self.assertEqual((dsn.network, dsn.host, dsn.port), ("tcp", "localhost", 3306))


class ConnectionPartTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """When only C{/dbname} is given, it is tcp to 127.0.0.1:3306 with the defaults."""
        dsn = parse_dsn("/fireworq")
        self.assertEqual((dsn.network, dsn.host, dsn.port), ("tcp", "127.0.0.1", 3306))
        self.assertEqual(dsn.connect_timeout, 10.0)
        self.assertEqual((dsn.read_timeout, dsn.write_timeout), (None, None))
        self.assertEqual((dsn.tls, dsn.charset, dsn.collation), ("false", "utf8mb4", None))
        self.assertEqual(dsn.session_variables, ())

    def test_tcpWithoutAddress(self) -> None:
        """When the network is tcp without address (with or without parentheses), the address
        is 127.0.0.1:3306."""
        for text in ("tcp/db", "tcp()/db", "u:p@tcp/db"):
            dsn = parse_dsn(text)
            self.assertEqual((dsn.host, dsn.port), ("127.0.0.1", 3306), text)

    def test_hostWithoutPort(self) -> None:
        """When a host has no port, the port is 3306."""
        self.assertEqual(parse_dsn("tcp(db.internal)/x").port, 3306)

    def test_emptyHost(self) -> None:
        """When only a port is given, the host is the local one, as Go dials it."""
        dsn = parse_dsn("tcp(:3307)/x")
        self.assertEqual((dsn.host, dsn.port), ("127.0.0.1", 3307))

    def test_ipv6(self) -> None:
        """When the host is an IPv6 address in brackets, the brackets are removed, with or
        without a port."""
        dsn = parse_dsn("tcp([::1]:3307)/x")
        self.assertEqual((dsn.host, dsn.port), ("::1", 3307))
        dsn = parse_dsn("tcp([fe80::1])/x")
        self.assertEqual((dsn.host, dsn.port), ("fe80::1", 3306))

    def test_bareIPv6(self) -> None:
        """When an address has several colons and no brackets, it is all host, as the Go driver
        reads it."""
        dsn = parse_dsn("tcp(::1)/x")
        self.assertEqual((dsn.host, dsn.port), ("::1", 3306))

    def test_unixWithoutPath(self) -> None:
        """When the network is unix without path, the socket is /tmp/mysql.sock."""
        for text in ("unix/x", "unix()/x", "u@unix/x"):
            dsn = parse_dsn(text)
            self.assertEqual((dsn.network, dsn.socket_path), ("unix", "/tmp/mysql.sock"), text)

    def test_addressWithoutNetwork(self) -> None:
        """When an address is given without network, the network is tcp."""
        dsn = parse_dsn("(db:1234)/x")
        self.assertEqual((dsn.network, dsn.host, dsn.port), ("tcp", "db", 1234))

    def test_passwordWithColonAtSlash(self) -> None:
        """When a password contains C{:}, C{@} and C{/}, the first C{:} and the last C{@}
        delimit it."""
        dsn = parse_dsn("app:a:b@c/d@tcp(h:1)/db")
        self.assertEqual((dsn.user, dsn.password), ("app", "a:b@c/d"))
        self.assertEqual((dsn.host, dsn.port, dsn.database), ("h", 1, "db"))

    def test_userWithoutPassword(self) -> None:
        """When the user information has no C{:}, there is no password."""
        dsn = parse_dsn("app@tcp(h)/db")
        self.assertEqual((dsn.user, dsn.password), ("app", None))

    def test_emptyDatabase(self) -> None:
        """When the database name is empty, the DSN is valid (as in the Go driver)."""
        self.assertEqual(parse_dsn("tcp(h)/").database, "")
        self.assertEqual(parse_dsn("tcp(h)/?timeout=1s").database, "")

    def test_lastSlash(self) -> None:
        """When a unix socket path has C{/}, the last C{/} still starts the database name."""
        dsn = parse_dsn("unix(/var/run/mysqld/mysqld.sock)/db?charset=utf8")
        self.assertEqual(dsn.socket_path, "/var/run/mysqld/mysqld.sock")
        self.assertEqual((dsn.database, dsn.charset), ("db", "utf8"))

    def test_invalid(self) -> None:
        """When the DSN breaks the grammar, ValueError is raised."""
        for text in (
            "",
            "app:pw@tcp(h:3306)",  # no /
            "fireworq",
            "tcp(h:3306/db",  # ( not closed
            "tcp(h:3306)x/db",  # ) not last
            "app@tcp(h/db",
            "udp(h)/db",
            "localhost/db",
            "tcp(h:0)/db",
            "tcp(h:65536)/db",
            "tcp(h:)/db",
            "tcp(h:port)/db",
            "tcp([::1)/db",
            "tcp([::1]x)/db",
        ):
            with self.assertRaises(ValueError, msg=text):
                parse_dsn(text)

    def test_reasonHidesPassword(self) -> None:
        """When a DSN is invalid, the reason does not contain the password."""
        for text in ("app:hunter2@tcp(h", "app:hunter2@tcp(h)/db?compress=1", "app:hunter2@x"):
            with self.assertRaises(ValueError) as caught:
                parse_dsn(text)
            self.assertNotIn("hunter2", str(caught.exception))

    def test_reprHidesPassword(self) -> None:
        """When a parsed DSN is shown with repr, the password is not."""
        self.assertNotIn("hunter2", repr(parse_dsn("app:hunter2@tcp(h)/db")))


class ParameterTests(SynchronousTestCase):
    def test_timeouts(self) -> None:
        """When timeout, readTimeout and writeTimeout are given, they are read as durations."""
        dsn = parse_dsn("/db?timeout=500ms&readTimeout=1m30s&writeTimeout=1h")
        self.assertEqual(dsn.connect_timeout, 0.5)
        self.assertEqual(dsn.read_timeout, 90.0)
        self.assertEqual(dsn.write_timeout, 3600.0)

    def test_zeroIOTimeout(self) -> None:
        """When an I/O timeout is 0, there is none (as in Go)."""
        dsn = parse_dsn("/db?readTimeout=0&writeTimeout=0s")
        self.assertEqual((dsn.read_timeout, dsn.write_timeout), (None, None))

    def test_badTimeouts(self) -> None:
        """When a timeout is not a duration or is negative, the DSN is invalid."""
        for value in ("5", "", "5x", "-1s", "s", ".s", "1.5.s"):
            for name in ("timeout", "readTimeout", "writeTimeout"):
                with self.assertRaises(ValueError, msg=f"{name}={value}"):
                    parse_dsn(f"/db?{name}={value}")

    def test_tls(self) -> None:
        """When tls is given, it is normalised to false, true, skip-verify or preferred."""
        cases = {
            "true": "true",
            "1": "true",
            "TRUE": "true",
            "True": "true",
            "false": "false",
            "0": "false",
            "FALSE": "false",
            "False": "false",
            "skip-verify": "skip-verify",
            "preferred": "preferred",
        }
        for value, expected in cases.items():
            self.assertEqual(parse_dsn(f"/db?tls={value}").tls, expected, value)
        for value in ("", "custom", "yes", "t"):
            with self.assertRaises(ValueError, msg=value):
                parse_dsn(f"/db?tls={value}")

    def test_charsetCollation(self) -> None:
        """When charset and collation are given, they are kept; a list or empty name is
        invalid."""
        dsn = parse_dsn("/db?charset=utf8mb3&collation=utf8mb3_general_ci")
        self.assertEqual((dsn.charset, dsn.collation), ("utf8mb3", "utf8mb3_general_ci"))
        for query in ("charset=", "charset=utf8mb4,utf8", "collation=", "collation=a b"):
            with self.assertRaises(ValueError, msg=query):
                parse_dsn(f"/db?{query}")

    def test_ignored(self) -> None:
        """When Fireworq's other parameters are given, whatever their value, they are
        ignored."""
        names = (
            "allowAllFiles",
            "allowCleartextPasswords",
            "allowNativePasswords",
            "allowOldPasswords",
            "checkConnLiveness",
            "clientFoundRows",
            "columnsWithAlias",
            "interpolateParams",
            "loc",
            "maxAllowedPacket",
            "multiStatements",
            "parseTime",
            "rejectReadOnly",
            "serverPubKey",
        )
        query = "&".join(f"{name}=whatever%" for name in names)
        self.assertEqual(parse_dsn(f"/db?{query}"), parse_dsn("/db"))

    def test_refused(self) -> None:
        """When compress or strict is given, the DSN is invalid."""
        for query in ("compress=true", "strict=true", "compress=false", "timeout=1s&strict=0"):
            with self.assertRaises(ValueError, msg=query):
                parse_dsn(f"/db?{query}")

    def test_sessionVariables(self) -> None:
        """When other parameters are given, they are session variables in order, their values
        percent-decoded (C{+} is a space, as in Go's QueryUnescape)."""
        dsn = parse_dsn("/db?time_zone=%27%2B09%3A00%27&sql_mode=%27ANSI%27&autocommit=1&x=a+b")
        self.assertEqual(
            dsn.session_variables,
            (("time_zone", "'+09:00'"), ("sql_mode", "'ANSI'"), ("autocommit", "1"), ("x", "a b")),
        )

    def test_sessionVariableRepeated(self) -> None:
        """When a session variable is given twice, the last value wins at the first place."""
        dsn = parse_dsn("/db?a=1&b=2&a=3")
        self.assertEqual(dsn.session_variables, (("a", "3"), ("b", "2")))

    def test_badSessionVariables(self) -> None:
        """When a session variable has a broken escape, a name that cannot be a variable or
        a value that is not UTF-8, the DSN is invalid."""
        for query in ("x=%zz", "x=50%", "=1", "a b=1", "x=%ff"):
            with self.assertRaises(ValueError, msg=query):
                parse_dsn(f"/db?{query}")

    def test_entryWithoutEquals(self) -> None:
        """When a parameter entry has no C{=}, it is ignored."""
        self.assertEqual(parse_dsn("/db?compress&strict&&x").session_variables, ())
        self.assertEqual(parse_dsn("/db?"), parse_dsn("/db"))

    def test_valueWithEquals(self) -> None:
        """When a value contains C{=}, only the first C{=} splits the entry."""
        self.assertEqual(parse_dsn("/db?x=a=b").session_variables, (("x", "a=b"),))


class DurationTests(SynchronousTestCase):
    def test_valid(self) -> None:
        """When a duration uses Go's syntax, it is read as seconds."""
        cases = {
            "0": 0.0,
            "500ms": 0.5,
            "5s": 5.0,
            "1m30s": 90.0,
            "1h": 3600.0,
            "1.5h": 5400.0,
            ".5s": 0.5,
            "1.s": 1.0,
            "100ns": 1e-7,
            "3us": 3e-6,
            "3\u00b5s": 3e-6,
            "3\u03bcs": 3e-6,
            "+2s": 2.0,
            "-2s": -2.0,
            "1h1m1s1ms": 3661.001,
        }
        for text, seconds in cases.items():
            self.assertAlmostEqual(parse_duration(text), seconds, msg=text)

    def test_invalid(self) -> None:
        """When a text is not a Go duration, ValueError is raised."""
        for text in ("", "5", "s", ".s", "1x", "1 s", "1s2", "+", "1e3s", "3000000h"):
            with self.assertRaises(ValueError, msg=text):
                parse_duration(text)


class MaskTests(SynchronousTestCase):
    def test_examples(self) -> None:
        """When a DSN has a password, it is replaced as in the examples of docs/configuration.md,
        MySQL DSN."""
        self.assertEqual(
            mask_dsn("app:s3cr@t@tcp(db.internal:3306)/fireworq"),
            "app:***@tcp(db.internal:3306)/fireworq",
        )
        self.assertEqual(
            mask_dsn("root:@tcp(127.0.0.1:3306)/fireworq"),
            "root:***@tcp(127.0.0.1:3306)/fireworq",
        )

    def test_noPassword(self) -> None:
        """When a DSN has no C{:} in its user information, or none at all, it is unchanged."""
        for text in (
            "app@unix(/run/mysqld/mysqld.sock)/fireworq",
            "tcp(localhost:3306)/fireworq",
            "/db?x=%27a:b@c%27",
            "tcp(h:1)/db?x=a:b@c",
        ):
            self.assertEqual(mask_dsn(text), text)

    def test_passwordWithColonAtSlash(self) -> None:
        """When a password contains C{:}, C{@} and C{/}, all of it is masked."""
        self.assertEqual(mask_dsn("app:a:b@c/d@tcp(h:1)/db?x=1"), "app:***@tcp(h:1)/db?x=1")

    def test_invalid(self) -> None:
        """When a DSN is invalid, its password is masked all the same."""
        cases = {
            "app:hunter2@tcp(h": "app:***@tcp(h",
            "app:hunter2@tcp(h)/db?strict=1": "app:***@tcp(h)/db?strict=1",
            # No / after the password: the user information cannot end before its last @.
            "app:hun/ter2@tcp(h)": "app:***@tcp(h)",
            "app:hunter2@x/y@tcp(h)": "app:***@tcp(h)",
        }
        for text, masked in cases.items():
            self.assertEqual(mask_dsn(text), masked, text)
