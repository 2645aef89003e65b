"""MySQL data source names in the syntax of Go's ``go-sql-driver/mysql`` (docs/configuration.md,
MySQL DSN).

Fireworq's DSNs must keep working unchanged, so the parse follows the Go driver's own scan
(last ``/``, last ``@``, first ``:``) rather than URL rules.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

import attrs

DEFAULT_PORT = 3306
DEFAULT_TCP_HOST = "127.0.0.1"
DEFAULT_SOCKET_PATH = "/tmp/mysql.sock"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_CHARSET = "utf8mb4"

#: Parameters Fireworq's DSNs may carry that have no meaning for us.
IGNORED_PARAMETERS = frozenset(
    {
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
    }
)
#: Parameters that changed the protocol in ways we cannot honour.
REFUSED_PARAMETERS = frozenset({"compress", "strict"})

_TRUE = frozenset({"1", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "false", "FALSE", "False"})
_NAME = re.compile(r"[A-Za-z0-9_]+")
# Session variable names end up verbatim in ``SET <name>=...``: refuse anything that cannot be
# a (possibly @@-qualified) variable name, so a typo fails at start and not at every connect.
_VARIABLE = re.compile(r"@{0,2}[A-Za-z0-9_$]+(\.[A-Za-z0-9_$]+)?")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PORT = re.compile(r"[0-9]{1,5}")

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu; Go accepts both
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_MAX_DURATION_NS = 2**63 - 1


@attrs.frozen
class MySQLDSN:
    """A parsed DSN. ``password`` is kept out of ``repr`` so that logging the object is safe."""

    user: str | None
    password: str | None = attrs.field(repr=False)
    #: ``"tcp"`` or ``"unix"``.
    network: str
    #: tcp only; ``""`` and ``0`` for unix. ``host`` is never bracketed.
    host: str
    port: int
    #: unix only; ``""`` for tcp.
    socket_path: str
    database: str
    #: Seconds; 0 means no connect timeout, as in Go (``timeout=0``).
    connect_timeout: float
    #: Seconds; None means no I/O timeout.
    read_timeout: float | None
    write_timeout: float | None
    #: ``"false"``, ``"true"`` (verify), ``"skip-verify"`` or ``"preferred"``.
    tls: str
    charset: str
    collation: str | None
    #: ``SET <name>=<value>`` on every connection, in DSN order; values are SQL text.
    session_variables: tuple[tuple[str, str], ...]


def parse_duration(text: str) -> float:
    """Seconds in a Go ``time.ParseDuration`` string (``500ms``, ``1m30s``, ``1.5h``, ``0``).

    @raise ValueError: when C{text} is not such a duration.
    """
    rest = text
    sign = 1
    if rest[:1] in ("+", "-"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"invalid duration {text!r}")
    total_ns = 0
    while rest:
        match = _DURATION_PART.match(rest)
        assert match is not None  # every part of the pattern may be empty
        whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3)
        if not whole and not fraction:
            raise ValueError(f"invalid duration {text!r}")
        if unit not in _UNIT_NS:
            raise ValueError(f"invalid duration {text!r}: unknown or missing unit")
        scale = _UNIT_NS[unit]
        total_ns += int(whole or "0") * scale
        if fraction:
            total_ns += int(fraction) * scale // 10 ** len(fraction)
        if total_ns > _MAX_DURATION_NS:
            raise ValueError(f"invalid duration {text!r}: too long")
        rest = rest[match.end() :]
    return sign * total_ns / 1e9


def _timeout(name: str, value: str) -> float:
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError(f"{name} must not be negative")
    return seconds


def _query_unescape(name: str, value: str) -> str:
    # Go's url.QueryUnescape: "+" is a space, and a stray "%" is an error.
    if _BAD_ESCAPE.search(value):
        raise ValueError(f"invalid percent-encoding in {name}")
    try:
        return unquote_plus(value, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"{name} is not UTF-8 once percent-decoded") from None


def _tcp_address(address: str) -> tuple[str, int]:
    if not address:
        return DEFAULT_TCP_HOST, DEFAULT_PORT
    if address.startswith("["):
        close = address.find("]")
        if close < 0:
            raise ValueError("unclosed [ in the address")
        host, after = address[1:close], address[close + 1 :]
        if after == "":
            port_text = None
        elif after.startswith(":"):
            port_text = after[1:]
        else:
            raise ValueError("unexpected text after ] in the address")
    elif address.count(":") == 1:
        host, port_text = address.split(":")
    else:
        # No colon: a host. Several colons: a bare IPv6 address, as the Go driver reads it.
        host, port_text = address, None
    if port_text is None:
        port = DEFAULT_PORT
    elif _PORT.fullmatch(port_text) and 1 <= int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise ValueError("the port must be a number from 1 to 65535")
    # Go dials ":3306" on the local system.
    return host or DEFAULT_TCP_HOST, port


def parse_dsn(text: str) -> MySQLDSN:
    """Parse a DSN of docs/configuration.md, MySQL DSN.

    @raise ValueError: with a short reason (never containing the password) when C{text} is
        not a valid DSN.
    """
    slash = text.rfind("/")
    if slash < 0:
        raise ValueError("no / before the database name")
    connection, rest = text[:slash], text[slash + 1 :]

    user: str | None = None
    password: str | None = None
    at = connection.rfind("@")
    if at >= 0:
        user, colon, secret = connection[:at].partition(":")
        password = secret if colon else None
    net_address = connection[at + 1 :]

    paren = net_address.find("(")
    if paren < 0:
        network, address = net_address, ""
    elif not net_address.endswith(")"):
        raise ValueError("( without a closing ) before the /")
    else:
        network, address = net_address[:paren], net_address[paren + 1 : -1]
    network = network or "tcp"

    if network == "tcp":
        host, port = _tcp_address(address)
        socket_path = ""
    elif network == "unix":
        host, port, socket_path = "", 0, address or DEFAULT_SOCKET_PATH
    else:
        raise ValueError("the network must be tcp or unix")

    database, _, query = rest.partition("?")
    connect_timeout = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float | None = None
    write_timeout: float | None = None
    tls = "false"
    charset = DEFAULT_CHARSET
    collation: str | None = None
    variables: dict[str, str] = {}
    for entry in query.split("&") if query else ():
        name, equals, value = entry.partition("=")
        if not equals:
            continue  # as the Go driver does
        if name in IGNORED_PARAMETERS:
            continue
        if name in REFUSED_PARAMETERS:
            raise ValueError(f"the parameter {name} is not supported")
        if name == "timeout":
            connect_timeout = _timeout(name, value)
        elif name == "readTimeout":
            read_timeout = _timeout(name, value) or None  # 0 means none, as in Go
        elif name == "writeTimeout":
            write_timeout = _timeout(name, value) or None
        elif name == "tls":
            if value in _TRUE:
                tls = "true"
            elif value in _FALSE:
                tls = "false"
            elif value in ("skip-verify", "preferred"):
                tls = value
            else:
                raise ValueError("tls must be a boolean, skip-verify or preferred")
        elif name == "charset":
            if not _NAME.fullmatch(value):
                raise ValueError("charset must be one character set name")
            charset = value
        elif name == "collation":
            if not _NAME.fullmatch(value):
                raise ValueError("collation must be one collation name")
            collation = value
        elif not _VARIABLE.fullmatch(name):
            raise ValueError(f"invalid session variable name {name!r}")
        else:
            variables[name] = _query_unescape(name, value)

    return MySQLDSN(
        user=user,
        password=password,
        network=network,
        host=host,
        port=port,
        socket_path=socket_path,
        database=database,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        write_timeout=write_timeout,
        tls=tls,
        charset=charset,
        collation=collation,
        session_variables=tuple(variables.items()),
    )


def mask_dsn(text: str) -> str:
    """C{text} with its password replaced by ``***`` (docs/configuration.md, MySQL DSN), for
    display and logs.

    An invalid DSN cannot be trusted to follow the grammar (a password containing ``/`` may be
    what made it invalid), so there the user information is taken to end at the **last** ``@``
    of the whole text: that hides more than needed rather than leak a password.
    """
    try:
        parse_dsn(text)
    except ValueError:
        at = text.rfind("@")
    else:
        at = text.rfind("@", 0, max(text.rfind("/"), 0))
    if at < 0:
        return text
    colon = text.find(":", 0, at)
    if colon < 0:
        return text
    return f"{text[: colon + 1]}***{text[at:]}"
