"""The daemon's configuration: options of the ``fireworq`` twistd plugin, ``FIREWORQ_*``
environment variables and defaults, validated into one frozen L{Config} (docs/configuration.md).

One table, L{SPECS}, drives the options, their help, parsing, validation and ``/settings``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TextIO

import attrs
from twisted.python import usage

from fireworq import __version__
from fireworq.access import ApiToken, TokenFile, parse_token_file, parse_tokens
from fireworq.destinations import DestinationList, DestinationPolicy, parse_destinations
from fireworq.dsn import MySQLDSN, mask_dsn, parse_dsn
from fireworq.errors import ConfigError
from fireworq.model import MAX_QUEUE_NAME_LENGTH, is_valid_queue_name

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
DRIVERS = ("sqlite", "mysql", "in-memory")
LOCK_SCOPES = ("database", "server")
DEFAULT_USER_AGENT = f"Fireworq/{__version__}"

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INTEGER = re.compile(r"[+-]?[0-9]+")
# getopt's words for the two common slips, as twisted.python.usage passes them on.
_UNKNOWN_OPTION = re.compile(r"option (\S+) not (?:recognized|a unique prefix)")
_MISSING_VALUE = re.compile(r"option (\S+) requires argument")
_PORT = re.compile(r"[0-9]{1,5}")
_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
_HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
# Go's int: what Fireworq accepted for keys with no upper bound of their own.
_INT64_MAX = 2**63 - 1

Parser = Callable[[str], Any]


def _integer(low: int, high: int) -> Parser:
    def parse(text: str) -> int:
        # int() alone would also take " 5", "1_000" and non-ASCII digits.
        if _INTEGER.fullmatch(text):
            try:
                value = int(text)
            except ValueError:  # more digits than Python converts
                value = None
            if value is not None and low <= value <= high:
                return value
        raise ValueError(f"is not an integer from {low} to {high}")

    return parse


#: ``processes`` = ``auto`` until ``load_config`` resolves it (``auto_processes``).
AUTO_PROCESSES = 0
_process_count = _integer(1, 64)


def _processes(text: str) -> int:
    if text == "auto":
        return AUTO_PROCESSES
    try:
        return int(_process_count(text))
    except ValueError:
        raise ValueError("is not auto or an integer from 1 to 64") from None


def auto_processes(driver: str, cpus: int) -> int:
    """``processes = auto`` (docs/performance.md, "More than one core"): one process but
    with the mysql driver on 4 CPUs or more, where half of them (at most 4) serve the node.
    With sqlite the processes would queue for the file's one writer; on 2 CPUs shared with
    the database the second process costs more than it brings (both measured)."""
    if driver != "mysql" or cpus < 4:
        return 1
    return min(cpus // 2, 4)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _boolean(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("is not a boolean (1 t T TRUE true True or 0 f F FALSE false False)")


def _level(text: str) -> str:
    if text.lower() in LOG_LEVELS:
        return text.lower()
    if len(text) == 1 and "0" <= text <= "4":
        return LOG_LEVELS[int(text)]
    raise ValueError("is not a log level (debug, info, warn, error, fatal, any case, or 0-4)")


def _choice(*choices: str) -> Parser:
    def parse(text: str) -> str:
        if text in choices:
            return text
        raise ValueError(f"is not one of {', '.join(choices)}")

    return parse


def _any(text: str) -> str:
    return text


def _non_empty(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


def _user_agent(text: str) -> str:
    # It becomes a header value: no control characters, no leading or trailing blanks.
    if not _HEADER_VALUE.fullmatch(text):
        raise ValueError("is not a User-Agent (printable ASCII, not empty)")
    return text


def _dsn(text: str) -> str:
    try:
        parse_dsn(text)
    except ValueError as e:
        raise ValueError(f"is not a valid MySQL DSN: {e}") from None
    return text


def _optional_dsn(text: str) -> str:
    return _dsn(text) if text else text


def _queue_name(text: str) -> str:
    if text and not is_valid_queue_name(text):
        raise ValueError(f"is not a queue name of 1 to {MAX_QUEUE_NAME_LENGTH} characters")
    return text


def split_bind(text: str) -> tuple[str, int]:
    """Host and port of a ``bind`` value; the host is ``""`` for all interfaces (``:8080``)
    and IPv6 hosts come without brackets.

    @raise ValueError: when C{text} is not ``host:port``, ``[ipv6]:port`` or ``:port`` with a
        port from 0 to 65535.
    """
    host, colon, port_text = text.rpartition(":")
    if colon and _PORT.fullmatch(port_text) and int(port_text) <= 65535:
        if host.startswith("[") and host.endswith("]"):
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                pass
            else:
                return host[1:-1], int(port_text)
        elif host == "" or _HOST_NAME.fullmatch(host):
            return host, int(port_text)
    raise ValueError("is not host:port, [ipv6]:port or :port with a port from 0 to 65535")


def _bind(text: str) -> str:
    split_bind(text)
    return text


@attrs.frozen
class KeySpec:
    """One configuration key of docs/configuration.md, Keys."""

    key: str
    parse: Parser
    #: The default as text; None when it is computed from other values.
    default: str | None
    help: str
    #: How the default reads in ``--help``, when the bare default text would say too little.
    default_help: str | None = None
    #: The value is a DSN: show it masked.
    secret: bool = False
    #: The value is never repeated, in an error message or in ``/settings``.
    hidden: bool = False
    #: How ``/settings`` shows the parsed value, when not as given.
    show: Callable[[Any], str] | None = None

    @property
    def env(self) -> str:
        return "FIREWORQ_" + self.key.upper()

    @property
    def option(self) -> str:
        return self.key.replace("_", "-")

    @property
    def full_help(self) -> str:
        default = self.default_help if self.default_help is not None else self.default
        return f"{self.help} [env {self.env}] (default: {default})"


_LEVEL_DEFAULT = "info; debug when DEBUG is set"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")

#: Every key, in the order of docs/configuration.md, Keys and of ``/settings`` (alphabetical, as
#: Fireworq's).
SPECS: tuple[KeySpec, ...] = (
    KeySpec("access_log", _any, "", "file the access log is appended to", "standard output"),
    KeySpec("access_log_tag", _any, "fireworq.access", "tag of access-log lines"),
    KeySpec(
        "api_tokens",
        parse_tokens,
        "",
        "token:scope pairs, comma-separated (scopes: read, push, admin); with none here nor in"
        " api_tokens_file the API is open. /settings shows how many",
        "none",
        hidden=True,
        show=lambda tokens: str(len(tokens)),
    ),
    KeySpec(
        "api_tokens_file",
        parse_token_file,
        "",
        "file of API tokens, a 'token scope' line each (# comments), read at start;"
        " /settings shows its path and how many",
        "none",
        show=lambda file: f"{file.path} ({_count(len(file.tokens), 'token')})" if file.path else "",
    ),
    KeySpec(
        "bind",
        _bind,
        "127.0.0.1:8080",
        "address:port to listen on ([::1]:8080 for IPv6, :8080 for all interfaces);"
        " ignored when listening sockets are inherited",
    ),
    KeySpec(
        "config_refresh_interval",
        _integer(1, 3_600_000),
        "1000",
        "ms, 1-3600000: how often to look for queue and routing changes made through other nodes",
    ),
    KeySpec(
        "dispatch_allow",
        parse_destinations,
        "",
        "CIDRs and host names deliveries may reach even when dispatch_deny denies them",
        "none",
        show=lambda value: value.text,
    ),
    KeySpec(
        "dispatch_deny",
        parse_destinations,
        "",
        "CIDRs and host names deliveries must not reach, checked after name resolution",
        "none",
        show=lambda value: value.text,
    ),
    KeySpec(
        "dispatch_idle_conn_timeout",
        _integer(0, _INT64_MAX),
        "0",
        "s, >= 0: idle time after which a kept-alive worker connection is closed; 0 = never",
    ),
    KeySpec(
        "dispatch_keep_alive",
        _boolean,
        None,
        "boolean: reuse connections to workers",
        "the value of keep_alive",
    ),
    KeySpec(
        "dispatch_max_conns_per_host",
        _integer(0, _INT64_MAX),
        "10",
        ">= 0: idle worker connections kept per host when reusing them; 0 means 2",
    ),
    KeySpec(
        "dispatch_max_response_body",
        _integer(1, 1_073_741_824),
        "1048576",
        "bytes, 1-1073741824: longest worker response body read",
    ),
    KeySpec(
        "dispatch_user_agent",
        _user_agent,
        None,
        "User-Agent of worker requests",
        DEFAULT_USER_AGENT,
    ),
    KeySpec("driver", _choice(*DRIVERS), "sqlite", "store: sqlite, mysql or in-memory"),
    KeySpec(
        "error_log",
        _any,
        "",
        "file the error log is appended to as JSON lines",
        "standard error, human-readable",
    ),
    KeySpec(
        "error_log_level",
        _level,
        None,
        "lowest level written to the error log: debug, info, warn, error, fatal or 0-4",
        _LEVEL_DEFAULT,
    ),
    KeySpec(
        "keep_alive",
        _boolean,
        "false",
        "boolean: keep API connections open (when false, every response closes its connection)",
    ),
    KeySpec(
        "max_pending_pushes",
        _integer(1, _INT64_MAX),
        "10000",
        ">= 1: pushes this node holds until the store answers them; past it a push gets 503"
        " at once",
    ),
    KeySpec(
        "max_request_body",
        _integer(1, 16_777_215),
        "1048576",
        "bytes, 1-16777215: largest request body accepted",
    ),
    KeySpec(
        "metrics_public",
        _boolean,
        "false",
        "boolean: /metrics answers without an API token",
    ),
    KeySpec(
        "mysql_dsn",
        _dsn,
        "tcp(localhost:3306)/fireworq",
        "DSN of the database for definitions and jobs (mysql driver only)",
        secret=True,
    ),
    KeySpec(
        "mysql_lock_scope",
        _choice(*LOCK_SCOPES),
        "database",
        "database or server: how queue locks are named; server = Fireworq's exact names",
    ),
    KeySpec("pid", _any, "", "file the process id is written to", "none"),
    KeySpec(
        "processes",
        _processes,
        "auto",
        "processes serving the API on one listening socket and sharing the deliveries;"
        " auto: 1, or with the mysql driver and 4 CPUs or more half of them, at most 4"
        " (docs/performance.md)",
    ),
    KeySpec(
        "queue_default",
        _queue_name,
        "",
        "default queue, for jobs of categories without routing; defined at start unless it exists",
        "none",
    ),
    KeySpec(
        "queue_default_max_workers",
        _integer(1, 10_000),
        "20",
        "1-10000: max_workers of queues defined without one",
    ),
    KeySpec(
        "queue_default_polling_interval",
        _integer(1, 3_600_000),
        "200",
        "ms, 1-3600000: polling_interval of queues defined without one",
    ),
    KeySpec("queue_log", _any, "", "file the queue log is appended to", "standard output"),
    KeySpec(
        "queue_log_level",
        _level,
        None,
        "lowest level written to the queue log (debug adds pop lines): debug, info, warn,"
        " error, fatal or 0-4",
        _LEVEL_DEFAULT,
    ),
    KeySpec("queue_log_tag", _any, "fireworq.queue", "tag of queue-log lines"),
    KeySpec(
        "queue_mysql_dsn",
        _optional_dsn,
        "",
        "DSN for job tables, failure tables and queue locks",
        "mysql_dsn",
        secret=True,
    ),
    KeySpec(
        "repository_mysql_dsn",
        _optional_dsn,
        "",
        "DSN for the tables queue, queue_throttle, routing and config_revision",
        "mysql_dsn",
        secret=True,
    ),
    KeySpec(
        "shutdown_timeout",
        _integer(0, 86_400),
        "30",
        "s, 0-86400: longest graceful shutdown",
    ),
    KeySpec(
        "sqlite_path",
        _non_empty,
        "fireworq.sqlite3",
        "SQLite database file (relative to the working directory), created when missing",
    ),
)
KEYS: tuple[str, ...] = tuple(spec.key for spec in SPECS)
# usage.docMakeChunks: "  -s, --<option>=  " then the help column.
_HELP_WIDTH = (
    max(len(spec.option) for spec in SPECS)
    + len("  -s, --=  ")
    + max(len(word) for spec in SPECS for word in spec.full_help.split())
)
_SPEC = {spec.key: spec for spec in SPECS}


def _masked_repr(dsn: str) -> str:
    # A logged Config must not show a password either.
    return repr(mask_dsn(dsn))


@attrs.frozen
class Config:
    """The effective configuration. Build it with L{load_config}; in tests,
    ``attrs.evolve(load_config({}, {}), driver="in-memory")`` gives a variant of the defaults.
    """

    KEYS: ClassVar[tuple[str, ...]] = KEYS

    access_log: str
    access_log_tag: str
    api_tokens: tuple[ApiToken, ...] = attrs.field(repr=lambda t: f"<{len(t)} tokens>")
    api_tokens_file: TokenFile
    bind: str
    config_refresh_interval: int
    dispatch_allow: DestinationList
    dispatch_deny: DestinationList
    dispatch_idle_conn_timeout: int
    dispatch_keep_alive: bool
    dispatch_max_conns_per_host: int
    dispatch_max_response_body: int
    dispatch_user_agent: str
    driver: str
    error_log: str
    error_log_level: str
    keep_alive: bool
    max_pending_pushes: int
    max_request_body: int
    metrics_public: bool
    mysql_dsn: str = attrs.field(repr=_masked_repr)
    mysql_lock_scope: str
    pid: str
    processes: int
    queue_default: str
    queue_default_max_workers: int
    queue_default_polling_interval: int
    queue_log: str
    queue_log_level: str
    queue_log_tag: str
    queue_mysql_dsn: str = attrs.field(repr=_masked_repr)
    repository_mysql_dsn: str = attrs.field(repr=_masked_repr)
    shutdown_timeout: int
    sqlite_path: str
    #: (key, text) of every key given by an option or the environment, exactly as given:
    #: ``/settings`` shows these (docs/api.md, GET /settings).
    given_text: tuple[tuple[str, str], ...] = attrs.field(default=(), kw_only=True, repr=False)

    @property
    def all_api_tokens(self) -> tuple[ApiToken, ...]:
        """The tokens of api_tokens and of api_tokens_file (docs/api.md, Authentication)."""
        return self.api_tokens + self.api_tokens_file.tokens

    @property
    def destinations(self) -> DestinationPolicy:
        return DestinationPolicy(self.dispatch_deny, self.dispatch_allow)

    @property
    def bind_host(self) -> str:
        """``""`` for all interfaces; an IPv6 address without brackets."""
        return split_bind(self.bind)[0]

    @property
    def bind_port(self) -> int:
        return split_bind(self.bind)[1]

    @property
    def mysql_dsn_parsed(self) -> MySQLDSN:
        return parse_dsn(self.mysql_dsn)

    @property
    def queue_mysql_dsn_parsed(self) -> MySQLDSN:
        """The DSN in effect for job tables and queue locks."""
        return parse_dsn(self.queue_mysql_dsn or self.mysql_dsn)

    @property
    def repository_mysql_dsn_parsed(self) -> MySQLDSN:
        """The DSN in effect for definitions and routings."""
        return parse_dsn(self.repository_mysql_dsn or self.mysql_dsn)


def _quote(text: str) -> str:
    """C{text} in double quotes, with anything that could break the one-line message escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def load_config(options: Mapping[str, str | None], environ: Mapping[str, str]) -> Config:
    """Resolve every key from C{options} (by key name, None = not given), then C{environ} (empty =
    unset), then the default, and validate it (docs/configuration.md, How values are given).

    @raise ConfigError: naming the key, where its value came from and the problem.
    """
    unknown = set(options) - set(KEYS)
    if unknown:
        raise ValueError(f"unknown configuration keys: {sorted(unknown)}")

    given: dict[str, str] = {}
    values: dict[str, Any] = {}
    for spec in SPECS:
        option_value = options.get(spec.key)
        if option_value is not None:
            text, source = option_value, "--" + spec.option
        elif environ.get(spec.env):
            text, source = environ[spec.env], spec.env
        else:
            if spec.default is not None:
                values[spec.key] = spec.parse(spec.default)
            continue
        try:
            values[spec.key] = spec.parse(text)
        except ValueError as e:
            if spec.hidden:
                raise ConfigError(f"invalid {spec.key} ({source}): {e}") from None
            shown = mask_dsn(text) if spec.secret else text
            raise ConfigError(f"invalid {spec.key} ({source}): {_quote(shown)} {e}") from None
        # A hidden value is not kept as text: /settings shows it through spec.show only.
        given[spec.key] = "(hidden)" if spec.hidden else text
    file_tokens = {t.token for t in values["api_tokens_file"].tokens}
    if any(t.token in file_tokens for t in values["api_tokens"]):
        raise ConfigError("invalid api_tokens: a token is also in api_tokens_file")

    # The computed defaults (default None in SPECS).
    level = "debug" if environ.get("DEBUG") else "info"
    values.setdefault("error_log_level", level)
    values.setdefault("queue_log_level", level)
    values.setdefault("dispatch_keep_alive", values["keep_alive"])
    values.setdefault("dispatch_user_agent", DEFAULT_USER_AGENT)
    if values["processes"] == AUTO_PROCESSES:
        values["processes"] = auto_processes(values["driver"], usable_cpus())
    return Config(**values, given_text=tuple(given.items()))


def _render(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def settings(config: Config) -> dict[str, str]:
    """The object of ``GET /settings`` (docs/api.md, GET /settings): every key in order, given
    values exactly as given, defaults (computed ones too) resolved, DSN passwords masked."""
    given = dict(config.given_text)
    result = {}
    for spec in SPECS:
        value = getattr(config, spec.key)
        if spec.show is not None:
            result[spec.key] = spec.show(value)
            continue
        text = given.get(spec.key)
        # A Config changed with attrs.evolve may carry text that no longer matches its value.
        if text is None or spec.parse(text) != value:
            text = _render(value)
        result[spec.key] = mask_dsn(text) if spec.secret and text else text
    return result


def load_config_or_exit(
    options: Mapping[str, str | None], environ: Mapping[str, str], stderr: TextIO
) -> Config:
    """L{load_config}, but an invalid value ends the process with status 1 and exactly one line
    on C{stderr}: twistd would print its whole usage text for a UsageError, which buries the
    one line that matters.
    """
    try:
        return load_config(options, environ)
    except ConfigError as e:
        stderr.write(f"fireworq: {e}\n")
        stderr.flush()
        raise SystemExit(1) from None


def _usage_problem(message: str) -> str:
    unknown = _UNKNOWN_OPTION.fullmatch(message)
    if unknown:
        return f"unknown option {unknown.group(1)}"
    missing = _MISSING_VALUE.fullmatch(message)
    if missing:
        return f"option {missing.group(1)} needs a value"
    return message


class Options(usage.Options):
    """Options of the ``fireworq`` twistd plugin; the result is in C{self.config}."""

    # twistd puts "Usage: twistd [options] fireworq" before it.
    synopsis = "[options]"
    longdesc = (
        "Every option can also be given as its environment variable; an option beats the"
        " environment, the environment beats the default. An empty environment variable"
        " counts as unset."
    )
    # Defaults stay None here so that "not given" differs from "given empty".
    optParameters: ClassVar[list[list[Any]]] = [
        [spec.option, None, None, spec.full_help] for spec in SPECS
    ]

    config: Config
    #: Where postOptions reads the environment and reports an invalid value; None means the
    #: process's own, looked up when needed (test runners replace sys.stderr).
    environ: Mapping[str, str] | None = None
    stderr: TextIO | None = None

    def opt_version(self) -> None:
        """Print the fireworq-py version and exit."""
        sys.stdout.write(f"fireworq-py {__version__}\n")
        raise SystemExit(0)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """As usage.Options does, but a usage error ends the process with status 2 and one
        line (twistd would print its whole usage text under a heading of its own)."""
        try:
            super().parseOptions(options)  # type: ignore[no-untyped-call]
        except usage.UsageError as e:
            stderr = sys.stderr if self.stderr is None else self.stderr
            stderr.write(f"fireworq: {_usage_problem(str(e))}; see fireworq --help\n")
            stderr.flush()
            raise SystemExit(2) from None

    def parseArgs(self, *args: str) -> None:
        if args:
            raise usage.UsageError(f"unexpected argument {args[0]!r}")

    def getUsage(self, width: int | None = None) -> str:
        # Twisted's wrapping splits words longer than the help column; a split variable name
        # could not be found with grep, so widen the text until the longest word fits.
        columns = os.environ.get("COLUMNS", "")
        width = width or (int(columns) if columns.isdigit() else 80)
        return super().getUsage(width=max(width, _HELP_WIDTH))

    def postOptions(self) -> None:
        given = {spec.key: self[spec.option] for spec in SPECS}
        self.config = load_config_or_exit(
            given,
            os.environ if self.environ is None else self.environ,
            sys.stderr if self.stderr is None else self.stderr,
        )
