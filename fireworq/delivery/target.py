"""Where one request of a delivery goes: a worker URL checked and split once
(docs/worker-protocol.md, The request)."""

from __future__ import annotations

import functools
import re
from base64 import b64encode
from urllib.parse import quote, unquote_to_bytes, urljoin, urlsplit

import attrs

__all__ = ["InvalidTarget", "Target", "parse_target", "resolve_location"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# urlsplit() silently drops tabs and newlines and strips spaces; refuse them (and every other
# control character) before it gets the chance.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_PRINTABLE_ASCII = "".join(map(chr, range(0x21, 0x7F)))


class InvalidTarget(ValueError):
    """The URL cannot make a request; the message says why."""


@attrs.frozen
class Target:
    url: str
    """What the agent is sent to: absolute, ASCII, without user information or fragment."""
    base: str
    """The URL as given, which a relative ``Location`` is resolved against."""
    origin: tuple[str, str, int]
    """Scheme, lower-case host and port: where credentials may go."""
    authorization: bytes | None
    """``Basic …`` from the URL's user information, if it has any."""


@functools.lru_cache(maxsize=1024)  # the jobs of a queue mostly go to a few URLs
def parse_target(url: str) -> Target:
    """Check and split a worker URL; raises InvalidTarget."""
    return _parse_target(url)


def _parse_target(url: str) -> Target:
    bad = _FORBIDDEN.search(url)
    if bad is not None:
        raise InvalidTarget(f"invalid character {bad.group()!r} in URL")
    wire = url if url.isascii() else _to_ascii(url)
    try:
        parts = urlsplit(wire)
        port = parts.port
    except ValueError as exc:
        raise InvalidTarget(str(exc)) from None
    scheme = parts.scheme
    default_port = _DEFAULT_PORTS.get(scheme)
    if default_port is None:
        raise InvalidTarget(
            f"unsupported protocol scheme {scheme!r}" if scheme else "no scheme in URL"
        )
    host = parts.hostname
    if not host:
        raise InvalidTarget("no host in URL")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    authorization = None
    if at:
        user, _, password = userinfo.partition(":")
        credentials = unquote_to_bytes(user) + b":" + unquote_to_bytes(password)
        authorization = b"Basic " + b64encode(credentials)
    if port is None:
        # "host:" means the default port; the Agent would take "host:" for the host name.
        hostport = hostport.removesuffix(":")
    target = f"{scheme}://{hostport}{parts.path or '/'}"
    if parts.query:
        target = f"{target}?{parts.query}"
    return Target(
        target, url, (scheme, host, default_port if port is None else port), authorization
    )


def resolve_location(current: Target, location: str) -> Target:
    """The target a redirect's ``Location`` names; raises InvalidTarget."""
    return parse_target(urljoin(current.base, location))


def _to_ascii(url: str) -> str:
    # Only URLs stored by other programs get here (ours are ASCII): encode the host with IDNA and
    # percent-encode everything else non-ASCII as UTF-8, as Go's client would put it on the wire.
    try:
        parts = urlsplit(url)
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError) as exc:
        raise InvalidTarget(f"invalid host: {exc}") from None
    if ":" in host:
        host = f"[{host}]"
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{_quote(userinfo)}{at}{host}"
    if port is not None:
        netloc = f"{netloc}:{port}"
    path = _quote(parts.path)
    query = _quote(parts.query)
    return f"{parts.scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def _quote(text: str) -> str:
    # surrogateescape: bytes of a Location header that were not UTF-8 go out as they came.
    return quote(text, safe=_PRINTABLE_ASCII, errors="surrogateescape")
