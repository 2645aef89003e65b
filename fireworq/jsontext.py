"""JSON text as the HTTP API reads and writes it (docs/api.md, Conventions).

Request bodies are parsed with the C scanner of :mod:`json`, one top-level member at a time, so
that each member keeps its exact source text (payloads are stored byte for byte). Responses are
written the way Go's ``encoding/json`` writes them.

Syntax errors are described by this module's own checker (``syntax_error``), not by the
scanner: CPython rewords its messages between versions (3.13 says "Illegal trailing comma"),
and the API's messages must read the same on every Python it runs on.
"""

from __future__ import annotations

import codecs
import math
import re
import sys

# The C implementations, imported directly: the pure-Python fallbacks in json.scanner would be
# several times slower on the push path.
from _json import make_scanner, scanstring
from json import JSONDecodeError, JSONDecoder
from typing import Any, Callable, NoReturn, cast

import attrs

from fireworq.errors import InvalidInput

__all__ = [
    "Member",
    "RawJSON",
    "array_members",
    "compact",
    "encode",
    "encode_indented",
    "encode_str",
    "get_int",
    "get_number",
    "get_string",
    "parse_object",
    "payload_echo",
    "describe_syntax_error",
    "syntax_error",
    "reread_payload",
    "stored_payload",
]

MAX_DEPTH = 512

_EMPTY_BODY = "Request body is empty; a JSON object is expected"
_NOT_UTF8 = "Request body is not valid UTF-8"
_NOT_AN_OBJECT = "Request body must be a JSON object"

_WS = " \t\n\r"
_WS_BYTES = b" \t\n\r"
_WS_RUN = re.compile(r"[ \t\n\r]*")
_WS_CHAR = re.compile(r"[ \t\n\r]")
# A complete string literal; the unrolled loop never backtracks, so it stays linear.
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
# Brackets outside strings. A quote that starts no complete string ends the scan: everything
# after it is inside an unterminated string, which the parser reports on its own.
_NESTING_TOKEN = re.compile(_STRING + r'|(")|([\[{])|([\]}])', re.S)
_NON_FINITE_TOKEN = re.compile(_STRING + r"|(-?Infinity|NaN)", re.S)
_STRING_OR_WS = re.compile(f"({_STRING})|[ \\t\\n\\r]+", re.S)
_INDENT_TOKEN = re.compile(_STRING + r'|[{}\[\],:]|[^"{}\[\],:]+', re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")

_HTML_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_HTML_UNSAFE = re.compile("[<>&\u2028\u2029]")

_STR_ESCAPES = {chr(c): f"\\u{c:04x}" for c in range(0x20)}
_STR_ESCAPES.update({'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_STR_ESCAPES.update(_HTML_ESCAPES)
_STR_UNSAFE = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029\ud800-\udfff]')
_STR_HARD = re.compile('[\x00-\x1f<>&\u2028\u2029\ud800-\udfff]')


@attrs.frozen
class RawJSON:
    """JSON text that is emitted verbatim by encode(). text must already be compact and escaped as
    docs/api.md, Responses says."""

    text: str


@attrs.frozen
class Member:
    """A top-level member of a request object: its value and its exact source text."""

    value: object
    raw: str


class _NonFiniteLiteral(Exception):
    pass


def _reject_non_finite(name: str) -> NoReturn:
    raise _NonFiniteLiteral(name)


def _int_or_overflow(digits: str) -> int | float:
    # Past sys.get_int_max_str_digits() int() refuses (quadratic-time guard); such a number is
    # out of every range we check, and a float of it is inf, which every check rejects.
    try:
        return int(digits)
    except ValueError:
        return float(digits)


_scan_once = make_scanner(cast(Any, JSONDecoder(parse_constant=_reject_non_finite)))
_scan_once_long_ints = make_scanner(
    cast(Any, JSONDecoder(parse_constant=_reject_non_finite, parse_int=_int_or_overflow))
)


def _scan_with(scanner: Callable[[str, int], tuple[Any, int]], text: str, idx: int) -> tuple[object, int]:
    try:
        return scanner(text, idx)
    except StopIteration as stop:
        raise JSONDecodeError("Expecting value", text, stop.value) from None
    except _NonFiniteLiteral:
        raise JSONDecodeError("Expecting value", text, _non_finite_position(text, idx)) from None


def _scan_strict(text: str, idx: int) -> tuple[object, int]:
    try:
        return _scan_with(_scan_once, text, idx)
    except JSONDecodeError:
        raise
    except ValueError:
        return _scan_with(_scan_once_long_ints, text, idx)


def _scan_value(text: str, idx: int) -> tuple[object, int]:
    """One strict JSON value at idx: (value, end). Nesting must have been checked already."""
    try:
        return _scan_strict(text, idx)
    except RecursionError:
        pass
    # The C scanner counts its nesting against the interpreter's recursion limit, so a caller
    # that is itself deep in the stack can hit it below MAX_DEPTH levels; give it the room.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 4 * MAX_DEPTH)
    try:
        return _scan_strict(text, idx)
    finally:
        sys.setrecursionlimit(limit)


def _non_finite_position(text: str, start: int) -> int:
    # The scanner reached the literal, so everything before it is well-formed JSON and the first
    # NaN/Infinity outside a string is the one it met.
    for m in _NON_FINITE_TOKEN.finditer(text, start):
        if m.lastindex:
            return m.start()
    return start


def _excess_nesting(text: str) -> int | None:
    """Where the bracket opening level MAX_DEPTH + 1 is, or None."""
    depth = 0
    for m in _NESTING_TOKEN.finditer(text):
        kind = m.lastindex
        if kind == 2:
            depth += 1
            if depth > MAX_DEPTH:
                return m.start()
        elif kind == 3:
            depth -= 1
        elif kind == 1:
            return None
    return None


def _check_nesting(text: str, openers: int) -> None:
    # Fewer openers than the limit in the whole text cannot nest too deep: skip the scan.
    if openers > MAX_DEPTH:
        pos = _excess_nesting(text)
        if pos is not None:
            raise JSONDecodeError(f"nesting deeper than {MAX_DEPTH} levels", text, pos)


def _skip_ws(text: str, idx: int) -> int:
    m = _WS_RUN.match(text, idx)
    return m.end() if m else idx


def _parse_members(text: str) -> dict[str, Member] | None:
    """The members of the object text holds, or None when it holds another valid value."""
    n = len(text)
    idx = 0
    if text[0] in _WS:
        idx = _skip_ws(text, 0)
    if not text.startswith("{", idx):
        idx = _scan_value(text, idx)[1]
        if idx < n and text[idx] in _WS:
            idx = _skip_ws(text, idx)
        if idx != n:
            raise JSONDecodeError("Extra data", text, idx)
        return None
    # Mirrors the object parser of CPython's _json.c, so errors read exactly as json.loads's.
    members: dict[str, Member] = {}
    idx += 1
    if idx < n and text[idx] in _WS:
        idx = _skip_ws(text, idx)
    if text.startswith("}", idx):
        idx += 1
    else:
        while True:
            if not text.startswith('"', idx):
                raise JSONDecodeError("Expecting property name enclosed in double quotes", text, idx)
            key, idx = scanstring(text, idx + 1, True)
            if not text.startswith(":", idx):
                idx = _skip_ws(text, idx)
                if not text.startswith(":", idx):
                    raise JSONDecodeError("Expecting ':' delimiter", text, idx)
            idx += 1
            if idx < n and text[idx] in _WS:
                idx = _skip_ws(text, idx)
            value, end = _scan_value(text, idx)
            members[key] = Member(value, text[idx:end])
            idx = end
            if idx < n and text[idx] in _WS:
                idx = _skip_ws(text, idx)
            if text.startswith(",", idx):
                idx += 1
                if idx < n and text[idx] in _WS:
                    idx = _skip_ws(text, idx)
                continue
            if text.startswith("}", idx):
                idx += 1
                break
            raise JSONDecodeError("Expecting ',' delimiter", text, idx)
    if idx < n and text[idx] in _WS:
        idx = _skip_ws(text, idx)
    if idx != n:
        raise JSONDecodeError("Extra data", text, idx)
    return members


def parse_object(body: bytes) -> dict[str, Member]:
    """The top-level members of a request body (docs/api.md, Requests); the last of duplicate keys
    wins."""
    if not body or (body[0] in _WS_BYTES and not body.strip(_WS_BYTES)):
        raise InvalidInput(_EMPTY_BODY)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(_NOT_UTF8) from None
    try:
        _check_nesting(text, body.count(b"{") + body.count(b"["))
    except JSONDecodeError as e:
        raise InvalidInput(f"Invalid JSON: {e.msg}: {_where(text, e.pos)}") from None
    try:
        members = _parse_members(text)
    except JSONDecodeError as e:
        raise InvalidInput("Invalid JSON: " + describe_syntax_error(text, e)) from None
    if members is None:
        raise InvalidInput(_NOT_AN_OBJECT)
    return members


def array_members(raw: str) -> list[dict[str, Member] | None]:
    """The members of each element of the JSON array ``raw`` (a member's source text, so
    valid JSON), each keeping its exact source text; None for an element that is not an
    object."""
    elements: list[dict[str, Member] | None] = []
    idx = _skip_ws(raw, 1)  # past "["
    if raw.startswith("]", idx):
        return elements
    while True:
        end = _scan_value(raw, idx)[1]
        elements.append(_parse_members(raw[idx:end]))
        idx = _skip_ws(raw, end)
        if raw.startswith("]", idx):
            return elements
        idx = _skip_ws(raw, idx + 1)  # past ","


# Syntax errors, in the project's own words.

_LITERAL_OR_NUMBER = re.compile(r"null|true|false|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_STRING_PLAIN = re.compile(r'[^"\\\x00-\x1f]*')
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_SIMPLE_ESCAPES = frozenset('"\\/bfnrt')
_CLOSERS = {"{": "}", "[": "]"}


class _SyntaxAt(Exception):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(message, position)
        self.message = message
        self.position = position


def _where(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return f"line {line} column {column}"


def _string_end(text: str, start: int) -> int:
    """The index after the string literal whose quote is at start."""
    n = len(text)
    i = start + 1
    while True:
        i = cast(re.Match[str], _STRING_PLAIN.match(text, i)).end()
        if i >= n:
            raise _SyntaxAt("Unterminated string starting at", start)
        char = text[i]
        if char == '"':
            return i + 1
        if char != "\\":
            raise _SyntaxAt("Invalid control character at", i)
        i += 1
        if i >= n:
            raise _SyntaxAt("Unterminated string starting at", start)
        char = text[i]
        if char == "u":
            # Four hex digits, and the string must go on after them.
            if i + 5 >= n or _HEX4.match(text, i + 1) is None:
                raise _SyntaxAt("Invalid \\uXXXX escape", i)
            i += 5
        elif char in _SIMPLE_ESCAPES:
            i += 1
        else:
            raise _SyntaxAt("Invalid \\escape", i - 1)


def _member_value_start(text: str, i: int) -> int:
    """From a member's key at i to the start of its value."""
    if not text.startswith('"', i):
        raise _SyntaxAt("Expecting property name enclosed in double quotes", i)
    i = _skip_ws(text, _string_end(text, i))
    if not text.startswith(":", i):
        raise _SyntaxAt("Expecting ':' delimiter", i)
    return _skip_ws(text, i + 1)


def _value_end(text: str, i: int) -> int:
    """The index after the JSON value at i. Iterative: a body may nest without limit here."""
    open_containers: list[str] = []
    while True:
        closer = _CLOSERS.get(text[i:i + 1])
        if closer is not None:
            i = _skip_ws(text, i + 1)
            if text.startswith(closer, i):
                i += 1
            else:
                open_containers.append(closer)
                if closer == "}":
                    i = _member_value_start(text, i)
                continue
        elif text.startswith('"', i):
            i = _string_end(text, i)
        else:
            m = _LITERAL_OR_NUMBER.match(text, i)
            if m is None:
                raise _SyntaxAt("Expecting value", i)
            i = m.end()
        # A value ended: close what it ends, or go on to the next member or element.
        while open_containers:
            i = _skip_ws(text, i)
            closer = open_containers[-1]
            if text.startswith(",", i):
                i = _skip_ws(text, i + 1)
                if closer == "}":
                    i = _member_value_start(text, i)
                break
            if not text.startswith(closer, i):
                raise _SyntaxAt("Expecting ',' delimiter", i)
            open_containers.pop()
            i += 1
        else:
            return i


def syntax_error(text: str) -> tuple[str, int] | None:
    """The first syntax error of text as one strict JSON value (RFC 8259, whitespace around
    it allowed): (what, index), or None when it is valid. Nesting depth is not checked."""
    try:
        end = _skip_ws(text, _value_end(text, _skip_ws(text, 0)))
    except _SyntaxAt as e:
        return e.message, e.position
    return None if end == len(text) else ("Extra data", end)


def describe_syntax_error(text: str, error: JSONDecodeError, offset: bool = False) -> str:
    """``<what>: line <l> column <c>`` for text, which the json module refused with error;
    with offset, `` (char <index>)`` follows."""
    found = syntax_error(text)
    # Only a disagreement with the json module gets here: its own words are better than none.
    message, position = found if found is not None else (error.msg, error.pos)
    described = f"{message}: {_where(text, position)}"
    return f"{described} (char {position})" if offset else described


def _present(members: dict[str, Member], name: str) -> Member | None:
    member = members.get(name)
    if member is None or member.value is None:
        return None
    return member


def get_int(members: dict[str, Member], name: str, minimum: int, maximum: int) -> int | None:
    """An integer field, or None when absent or null."""
    member = _present(members, name)
    if member is None:
        return None
    value = member.value
    # The C scanner yields an int only for -?(0|[1-9][0-9]*) (a fraction or exponent gives a
    # float), so the type decides what the raw text would; bool is excluded by the exact type.
    if type(value) is int and minimum <= value <= maximum:
        return value
    raise InvalidInput(f"Field '{name}' must be an integer from {minimum} to {maximum}")


def _format_bound(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else _format_float(float(bound))


def get_number(members: dict[str, Member], name: str, minimum: float, maximum: float) -> float | None:
    """A number field, or None when absent or null."""
    member = _present(members, name)
    if member is None:
        return None
    value = member.value
    # The range test comes before float(): a long integer would overflow it. inf fails the test.
    if isinstance(value, (int, float)) and not isinstance(value, bool) and minimum <= value <= maximum:
        return float(value)
    raise InvalidInput(
        f"Field '{name}' must be a number from {_format_bound(minimum)} to {_format_bound(maximum)}"
    )


def get_string(members: dict[str, Member], name: str) -> str | None:
    """A string field, or None when absent or null."""
    member = _present(members, name)
    if member is None:
        return None
    if isinstance(member.value, str):
        return member.value
    raise InvalidInput(f"Field '{name}' must be a string")


def stored_payload(member: Member | None) -> bytes:
    """The stored payload for a push's payload member (docs/api.md, Payloads)."""
    if member is None or member.value is None:
        return b""
    value = member.value
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            # Only escaped lone surrogates ("\ud800") can get here.
            return _SURROGATE.sub("\ufffd", value).encode("utf-8")
    return member.raw.encode("utf-8")


def payload_echo(member: Member | None) -> RawJSON | None:
    """The payload a push answers with: the received text compacted; None for absent/null."""
    if member is None or member.value is None:
        return None
    return RawJSON(compact(member.raw))


def _escape_html(m: re.Match[str]) -> str:
    return _HTML_ESCAPES[m.group()]


def compact(raw: str) -> str:
    """Valid JSON text without insignificant whitespace and with <, >, &, U+2028/9 escaped."""
    if _WS_CHAR.search(raw) is not None:
        raw = _STRING_OR_WS.sub(r"\1", raw)
    # Outside strings valid JSON has none of these characters, so no need to know where strings are.
    return _HTML_UNSAFE.sub(_escape_html, raw)


def _replace_each_byte(error: UnicodeError) -> tuple[str, int]:
    # One U+FFFD per invalid byte, as Go reads invalid UTF-8 (Python's "replace" gives one per
    # maximal invalid subsequence).
    if isinstance(error, UnicodeDecodeError):
        return "\ufffd" * (error.end - error.start), error.end
    raise error


_REPLACE_EACH_BYTE = "fireworq.jsontext.replace_each_byte"
codecs.register_error(_REPLACE_EACH_BYTE, _replace_each_byte)


def _is_json_value(text: str) -> bool:
    """Whether non-empty, stripped text is exactly one strict JSON value."""
    try:
        _check_nesting(text, text.count("{") + text.count("["))
        return _scan_value(text, 0)[1] == len(text)
    except JSONDecodeError:
        return False


def reread_payload(stored: bytes) -> RawJSON:
    """A stored payload as job inspection and the failure log show it (docs/api.md, Payloads)."""
    text = stored.decode("utf-8", _REPLACE_EACH_BYTE)
    value_text = text.strip(_WS)
    if value_text and _is_json_value(value_text):
        return RawJSON(compact(value_text))
    return RawJSON(encode_str(text))


def _escape_str_char(m: re.Match[str]) -> str:
    return _STR_ESCAPES.get(m.group(), "\ufffd")


def encode_str(s: str) -> str:
    """A JSON string literal for s, escaped as Go's encoding/json does (docs/api.md, Responses)."""
    if _STR_UNSAFE.search(s) is None:
        return '"' + s + '"'
    if _STR_HARD.search(s) is None:
        # Only quotes and backslashes, as in most JSON payloads: no per-character callback.
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return '"' + _STR_UNSAFE.sub(_escape_str_char, s) + '"'


def format_number(x: float) -> str:
    """A number as JSON text, as encode() writes it (docs/api.md, Responses)."""
    return _format_float(x) if isinstance(x, float) else str(x)


def _format_float(x: float) -> str:
    """Go's encoding/json float text: shortest round-trip digits, plain within [1e-6, 1e21)."""
    if not math.isfinite(x):
        raise ValueError(f"JSON has no representation for {x!r}")
    text = repr(x)
    magnitude = abs(x)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        # repr already uses exponent form here, with a sign and at least two digits.
        return text
    mantissa, e, exponent = text.partition("e")
    if not e:
        return mantissa[:-2] if mantissa.endswith(".0") else mantissa
    sign = ""
    if mantissa.startswith("-"):
        sign, mantissa = "-", mantissa[1:]
    head, _, tail = mantissa.partition(".")
    digits = head + tail
    point = len(head) + int(exponent)
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


_KEY_TEXT: dict[object, str] = {}
_KEY_TEXT_LIMIT = 4096


def _key_text(key: object) -> str:
    text = _KEY_TEXT.get(key)
    if text is None:
        if not isinstance(key, str):
            raise TypeError(f"JSON object keys must be str, not {type(key).__name__}")
        text = encode_str(key) + ":"
        if len(_KEY_TEXT) < _KEY_TEXT_LIMIT:
            _KEY_TEXT[key] = text
    return text


def _encode_into(value: object, out: Callable[[str], None]) -> None:
    # Most frequent first; None, True and False before int, since bool is an int.
    if isinstance(value, str):
        out(encode_str(value))
    elif value is None:
        out("null")
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    elif isinstance(value, int):
        out(int.__repr__(value))
    elif isinstance(value, dict):
        sep = "{"
        for k, v in value.items():
            out(sep)
            out(_key_text(k))
            _encode_into(v, out)
            sep = ","
        out("}" if sep == "," else "{}")
    elif isinstance(value, RawJSON):
        out(value.text)
    elif isinstance(value, (list, tuple)):
        sep = "["
        for v in value:
            out(sep)
            _encode_into(v, out)
            sep = ","
        out("]" if sep == "," else "[]")
    elif isinstance(value, float):
        out(_format_float(value))
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _encode_text(value: object) -> str:
    parts: list[str] = []
    _encode_into(value, parts.append)
    return "".join(parts)


def encode(value: object) -> bytes:
    """Compact UTF-8 JSON for value, byte-compatible with Go's json.Marshal."""
    return _encode_text(value).encode("utf-8")


def _indent(text: str) -> str:
    # Go's json.Indent(dst, src, "", "  "): empty containers stay {} and [].
    out: list[str] = []
    depth = 0
    opened = False
    for m in _INDENT_TOKEN.finditer(text):
        token = m.group()
        c = token[0]
        if opened and c != "]" and c != "}":
            opened = False
            depth += 1
            out.append("\n" + "  " * depth)
        if c == "{" or c == "[":
            opened = True
            out.append(c)
        elif c == ",":
            out.append(",\n" + "  " * depth)
        elif c == ":":
            out.append(": ")
        elif c == "}" or c == "]":
            if opened:
                opened = False
            else:
                depth -= 1
                out.append("\n" + "  " * depth)
            out.append(c)
        else:
            out.append(token)
    return "".join(out)


def encode_indented(value: object) -> bytes:
    """Like encode(), indented by two spaces as Go's json.MarshalIndent(v, "", "  ")."""
    return _indent(_encode_text(value)).encode("utf-8")
