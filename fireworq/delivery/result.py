"""Reading a worker's answer into a result (docs/worker-protocol.md, The answer, rows 4 to 6).
Pure: no I/O."""

from __future__ import annotations

import re
from datetime import timezone
from email.utils import parsedate_to_datetime
from json import JSONDecodeError, JSONDecoder
from typing import NoReturn

from fireworq.jsontext import describe_syntax_error
from fireworq.model import ResultStatus, WorkerResult

__all__ = [
    "ECHO_LIMIT", "WEBHOOK_ECHO_LIMIT", "body_echo", "interpret_response", "interpret_webhook",
    "parse_retry_after",
]

#: Longest echo of a response body in a failure message, in bytes of UTF-8.
ECHO_LIMIT = 4096
#: Longest echo of a response body in a result of the ``webhook`` mode, in bytes.
WEBHOOK_ECHO_LIMIT = 1024
#: Statuses the ``webhook`` mode retries besides 5xx (docs/worker-protocol.md).
_WEBHOOK_RETRIED = frozenset({408, 425, 429})
_SUCCESS = ResultStatus.SUCCESS.value
_PERMANENT = ResultStatus.PERMANENT_FAILURE.value
_RETRY_AFTER_SECONDS = re.compile(r"[0-9]{1,10}")

_FAILURE = ResultStatus.FAILURE.value
_FINAL_STATUSES = frozenset(
    {ResultStatus.SUCCESS.value, ResultStatus.FAILURE.value, ResultStatus.PERMANENT_FAILURE.value}
)
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# An int64 literal has at most 19 digits and a sign; anything longer is out of range, and not
# converting it keeps int()'s digit limit (a ValueError) out of the way.
_INT64_LITERAL_LENGTH = 20
_SURROGATE = re.compile("[\ud800-\udfff]")
_BLANK = re.compile(r"[ \t\n\r]*\Z")


class _NotAnInteger:
    """Stands for a number literal that may not be a ``code``: a fraction, an exponent, or out
    of int64 range. Numbers elsewhere are never looked at, so they need no conversion."""


_NOT_AN_INTEGER = _NotAnInteger()


class _NotJSON(ValueError):
    pass


def _reject_constant(name: str) -> NoReturn:
    raise _NotJSON(f"{name} is not JSON")


def _parse_int(literal: str) -> int | _NotAnInteger:
    if len(literal) > _INT64_LITERAL_LENGTH:
        return _NOT_AN_INTEGER
    value = int(literal)
    return value if _INT64_MIN <= value <= _INT64_MAX else _NOT_AN_INTEGER


# Objects become tuples of (name, value) pairs, so that repeated names all stay visible and
# arrays (lists) stay distinguishable from objects.
_DECODER = JSONDecoder(
    object_pairs_hook=tuple,
    parse_constant=_reject_constant,
    parse_int=_parse_int,
    parse_float=lambda literal: _NOT_AN_INTEGER,
)

_KIND = {
    str: "a string",
    bool: "a boolean",
    list: "an array",
    int: "a number",
    _NotAnInteger: "a number",
}


def _kind(value: object) -> str:
    return _KIND.get(type(value), "an object")


def _clean(text: str) -> str:
    # json accepts escaped lone surrogates ("\ud800"); they cannot be encoded as UTF-8 later, and
    # Go's decoder turns them into U+FFFD.
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _read_result_object(body: bytes) -> tuple[str | None, str | None]:
    """(status, message) of a result object; raises ValueError with the reason otherwise."""
    # Invalid UTF-8 inside strings is replaced rather than refused, as Go's encoding/json does.
    text = body.decode("utf-8", "replace")
    if _BLANK.match(text):
        raise _NotJSON("unexpected end of JSON input")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise _NotJSON("JSON nested too deeply") from None
    except JSONDecodeError as e:
        raise _NotJSON(describe_syntax_error(text, e, offset=True)) from None
    if value is None:
        return None, None
    if type(value) is not tuple:
        raise _NotJSON(f"the body is {_kind(value)}, not a JSON object")
    status: str | None = None
    message: str | None = None
    for name, member in value:
        # Only ASCII letters fold: str.lower() would also map the Kelvin sign to "k", and
        # non-ASCII names can match none of the three anyway.
        if len(name) > 7 or not name.isascii():
            continue
        name = name.lower()
        if name == "status" or name == "message":
            if member is None:
                # As in Go, null leaves the member as it was, so it cannot undo an earlier value.
                continue
            if type(member) is not str:
                raise _NotJSON(f'"{name}" must be a string or null, not {_kind(member)}')
            if name == "status":
                status = member
            else:
                message = member
        elif name == "code" and member is not None and type(member) is not int:
            raise _NotJSON(
                f'"code" must be an integer in the int64 range or null, not {_kind(member)}'
            )
    return status, message


def body_echo(body: bytes, limit: int = ECHO_LIMIT) -> str:
    """The body as failure messages quote it: UTF-8 with invalid sequences replaced by U+FFFD,
    cut to its first ``limit`` bytes at a character boundary."""
    # A replacement character takes at least as many bytes as what it replaces, so the first
    # ``limit`` bytes of text come from at most that many bytes of body; 3 more complete the
    # last character.
    text = body[: limit + 3].decode("utf-8", "replace")
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def interpret_webhook(http_status: int, body: bytes) -> WorkerResult:
    """The result in the ``webhook`` mode (docs/worker-protocol.md, Webhook mode): the HTTP
    status decides, whatever the body; the message is ``HTTP <status>`` and, when there is
    a body, a newline and its first WEBHOOK_ECHO_LIMIT bytes."""
    if 200 <= http_status < 300:
        status = _SUCCESS
    elif 400 <= http_status < 500 and http_status not in _WEBHOOK_RETRIED:
        status = _PERMANENT
    else:  # 408, 425, 429, 5xx, and a 3xx that is not followed
        status = _FAILURE
    message = f"HTTP {http_status}"
    if body:
        message = f"{message}\n{body_echo(body, WEBHOOK_ECHO_LIMIT)}"
    return WorkerResult(status, http_status, message)


def parse_retry_after(value: bytes, now: float) -> float | None:
    """Seconds from ``now`` that a ``Retry-After`` value asks for (delay-seconds or an HTTP
    date, RFC 9110 10.2.3); ``None`` when it is neither. A date in the past gives 0."""
    text = value.decode("latin-1").strip()
    if _RETRY_AFTER_SECONDS.fullmatch(text):
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC as well (RFC 5322)
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def interpret_response(http_status: int, body: bytes) -> WorkerResult:
    """The result of an attempt whose response (status and complete body) was received."""
    try:
        status, message = _read_result_object(body)
    except ValueError as exc:
        return _failure(http_status, f"Cannot parse body as JSON: {exc}", body)
    if status not in _FINAL_STATUSES:
        return _failure(http_status, f"Invalid result status: {_clean(status or '')}", body)
    assert status is not None
    return WorkerResult(status, http_status, _clean(message) if message else "")


def _failure(http_status: int, problem: str, body: bytes) -> WorkerResult:
    return WorkerResult(
        _FAILURE, http_status, f"{problem}\nOriginal response body:\n{body_echo(body)}"
    )
