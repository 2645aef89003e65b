"""Checks of path variables, query parameters and job fields (docs/api.md,
Conventions and POST /job)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote_to_bytes

from twisted.web.iweb import IRequest

from fireworq import jsontext
from fireworq.errors import InvalidInput
from fireworq.delivery.policy import check_headers
from fireworq.model import (
    BACKOFFS,
    MAX_FAILED_JOB_LIMIT,
    MAX_FAILED_JOB_TTL,
    MAX_QUEUE_NAME_LENGTH,
    MAX_RETRY_DELAY,
    MAX_UNIQUE_WINDOW,
    FailedFilter,
    HeaderPairs,
    JobOptions,
    is_valid_category,
)
from fireworq.times import parse_ms

_DIGITS = re.compile(r"[0-9]+")
_MAX_ID = 2**63 - 1
_MAX_URL_BYTES = 65535
_PRINTABLE_ASCII = re.compile(r"[!-~]+")
_SCHEME = re.compile(r"https?://", re.IGNORECASE)

#: The ranges (least, greatest) of the numeric members of request bodies, as the handlers
#: check them and the OpenAPI document states them (docs/api.md, Push a job, Queues).
PUSH_RANGES: dict[str, tuple[int, int]] = {
    "run_after": (0, 315360000),
    "max_retries": (0, 1000000),
    "retry_delay": (0, 31536000),
    "timeout": (0, 86400),
}
QUEUE_RANGES: dict[str, tuple[int, int]] = {
    "polling_interval": (0, 3600000),
    "max_workers": (0, 10000),
    "max_dispatches_per_second": (0, 1000000),
    "max_burst_size": (0, 1000000),
    "failed_job_ttl": (0, MAX_FAILED_JOB_TTL),
    "failed_job_limit": (0, MAX_FAILED_JOB_LIMIT),
    "unique_window": (0, MAX_UNIQUE_WINDOW),
}


def query_param(request: IRequest, name: bytes) -> str | None:
    """The first occurrence of a parameter; an empty value counts as absent.

    Read from the request target rather than ``request.args``: Twisted also splits the query
    on ``;``, which application/x-www-form-urlencoded does not (``?order=asc;x`` is no
    valid order), and drops the parameters written without ``=``.
    """
    uri: bytes = request.uri
    for pair in uri.partition(b"?")[2].split(b"&"):
        key, _, value = pair.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == name:
            if not value:
                return None
            return unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8", "replace")
    return None


def limit_param(request: IRequest) -> int:
    text = query_param(request, b"limit")
    if text is None:
        return 100
    value = _small_integer(text, 4)
    if value is None or not 1 <= value <= 1000:
        raise InvalidInput("Invalid limit: must be an integer from 1 to 1000")
    return value


def identifier(text: str, what: str) -> int:
    value = _small_integer(text, 19)
    if value is None or value > _MAX_ID:
        raise InvalidInput("Invalid %s: %s" % (what, text))
    return value


def _small_integer(text: str, max_digits: int) -> int | None:
    """Decimal digits only; ``None`` past ``max_digits`` significant digits.

    Checking the length first keeps int() away from huge inputs (it refuses 4300+ digits).
    """
    if not _DIGITS.fullmatch(text):
        return None
    significant = text.lstrip("0") or "0"
    return int(significant) if len(significant) <= max_digits else None


def time_field(members: dict[str, jsontext.Member], name: str) -> int | None:
    """A time member (docs/api.md, Times: RFC 3339) as ms, or None when absent or null."""
    text = jsontext.get_string(members, name)
    if text is None:
        return None
    value = parse_ms(text)
    if value is None:
        raise InvalidInput("Field '%s' must be a time in RFC 3339 form" % name)
    return value


#: Most jobs of one batch push (docs/api.md, POST /jobs).
MAX_BATCH_JOBS = 1000

#: Entries a bulk retry or delete takes when the request does not say.
DEFAULT_BULK_LIMIT = 1000
MAX_BULK_LIMIT = 10000


def failed_filter(members: dict[str, jsontext.Member]) -> tuple[FailedFilter, int]:
    """The filter and limit of a bulk retry or delete of failure-log entries."""
    selection = FailedFilter(
        category=jsontext.get_string(members, "category"),
        failed_after=time_field(members, "failed_after"),
        failed_before=time_field(members, "failed_before"),
    )
    limit = jsontext.get_int(members, "limit", 1, MAX_BULK_LIMIT) or DEFAULT_BULK_LIMIT
    return selection, limit


def category(text: str) -> str:
    if not is_valid_category(text):
        raise InvalidInput("Invalid job category: must be 1 to 255 bytes")
    return text


def queue_name(text: str) -> str:
    if not 1 <= len(text) <= MAX_QUEUE_NAME_LENGTH:
        raise InvalidInput("Invalid queue name: must be 1 to 46 characters")
    return text


# Most job URLs: a host name or IPv4 address, an optional port, a path. The general rule
# below decides the rest.
_PLAIN_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::(?P<port>[1-9][0-9]{0,4}))?(?:[/?#][!-~]*)?", re.IGNORECASE
)


def is_valid_url(url: str) -> bool:
    """An absolute http or https URL of printable ASCII (docs/api.md, POST /job)."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain is not None and len(url) <= _MAX_URL_BYTES:
        plain_port = plain.group("port")
        if plain_port is None or int(plain_port) <= 65535:
            return True
    if len(url) > _MAX_URL_BYTES or not _PRINTABLE_ASCII.fullmatch(url):
        return False
    split = _host_port(url)
    if split is None:
        return False
    port = split[1]
    if port is None:
        return True
    port_number = _small_integer(port, 5)
    return port_number is not None and 1 <= port_number <= 65535


def url_host(url: str) -> str:
    """The host of a URL that L{is_valid_url} accepts (an IPv6 address without brackets)."""
    split = _host_port(url)
    assert split is not None, "url_host of an invalid URL"
    return split[0]


def _host_port(url: str) -> tuple[str, str | None] | None:
    """Host and port text (None: no port) of an http(s) URL, or None when it has none."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return None
    rest = url[scheme.end():]
    end = len(rest)
    for separator in "/?#":
        found = rest.find(separator)
        if found != -1:
            end = min(end, found)
    host_port = rest[:end].rpartition("@")[2]
    if host_port.startswith("["):
        host, closing, after = host_port[1:].partition("]")
        if not closing or (after and not after.startswith(":")):
            return None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
        return host, after[1:] if after else None
    host, colon, port_text = host_port.partition(":")
    if not host or "[" in host or "]" in host:
        return None
    return host, port_text if colon else None


def boolean_field(members: dict[str, jsontext.Member], name: str) -> bool | None:
    """A boolean member, or None when absent or null."""
    member = members.get(name)
    if member is None or member.value is None:
        return None
    if type(member.value) is not bool:
        raise InvalidInput("Field '%s' must be a boolean" % name)
    return member.value


def choice_field(members: dict[str, jsontext.Member], name: str, choices: tuple[str, ...]
                 ) -> str | None:
    """A string member that must be one of ``choices``, or None when absent or null."""
    value = jsontext.get_string(members, name)
    if value is not None and value not in choices:
        raise InvalidInput("Field '%s' must be one of: %s" % (name, ", ".join(choices)))
    return value


def headers_field(members: dict[str, jsontext.Member], name: str) -> HeaderPairs | None:
    """A ``headers`` member (docs/api.md, Delivery headers), or None when absent or null."""
    member = members.get(name)
    if member is None or member.value is None:
        return None
    return check_headers(member.value, name)


def job_options(members: dict[str, jsontext.Member]) -> JobOptions | None:
    """The job members of our own a push gives (docs/api.md, Pushing jobs); None when it
    gives none, so that nothing more is stored."""
    if not _HAS_JOB_OPTION.intersection(members):
        return None
    options = JobOptions(
        retry_backoff=choice_field(members, "retry_backoff", BACKOFFS),
        retry_max_delay=jsontext.get_int(members, "retry_max_delay", 0, MAX_RETRY_DELAY),
        retry_jitter=boolean_field(members, "retry_jitter"),
        headers=headers_field(members, "headers") or None,
    )
    return None if options == JobOptions() else options


_HAS_JOB_OPTION = frozenset(("retry_backoff", "retry_max_delay", "retry_jitter", "headers"))
