"""API tokens: who may call which route (docs/api.md, Authentication).

With no token configured the API is open. With tokens, every request but the public paths
carries ``Authorization: Bearer <token>``; the token's scope decides what it may do:

- ``read``: every ``GET`` and ``HEAD``;
- ``push``: what ``read`` may, and ``POST /job/{category}`` and ``POST /jobs/{category}``;
- ``admin``: everything.

Tokens are kept only as SHA-256 digests, and a presented token is compared with every one of
them with ``hmac.compare_digest``, so neither the time taken nor a log line tells anything of a
token. The scope decision depends on the method and the path only, never on the routes: a path
no route serves gets its 401 or 403 before its 404, so that routes cannot be probed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence

import attrs

__all__ = [
    "ADMIN",
    "PUSH",
    "READ",
    "SCOPES",
    "AccessCheck",
    "ApiToken",
    "Decision",
    "TokenFile",
    "parse_token_file",
    "parse_tokens",
    "scope_allows",
]

READ = "read"
PUSH = "push"
ADMIN = "admin"
SCOPES = (READ, PUSH, ADMIN)

#: Paths answered without a token, whatever is configured: the probes of load balancers and
#: supervisors (docs/operations.md, Health and readiness checks), and what the web console
#: needs before it has a token (its static files and the API description, which hold no data).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/console"})
PUBLIC_PREFIXES = ("/console/",)
METRICS_PATH = "/metrics"

# RFC 6750's b64token, the characters a Bearer token may have.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_READ_METHODS = frozenset({b"GET", b"HEAD"})
_PUSH_PREFIXES = ("/job/", "/jobs/")


@attrs.frozen
class ApiToken:
    """One configured token and its scope; the token never appears in a repr."""

    token: str = attrs.field(repr=False)
    scope: str


@attrs.frozen
class TokenFile:
    """The value of ``api_tokens_file``: the path as given and the tokens it holds."""

    path: str
    tokens: tuple[ApiToken, ...] = attrs.field(default=(), repr=lambda t: f"<{len(t)} tokens>")


def _token(text: str, scope: str) -> ApiToken:
    if not _TOKEN.fullmatch(text):
        raise ValueError("a token is one or more of A-Z a-z 0-9 - . _ ~ + / (then = signs)")
    if scope not in SCOPES:
        raise ValueError(f"the scope must be read, push or admin, not {scope!r}")
    return ApiToken(text, scope)


def parse_tokens(text: str) -> tuple[ApiToken, ...]:
    """``token:scope`` pairs separated by commas (spaces around them ignored); the empty text
    is no token. The error never repeats a token: it names the entry by its position."""
    tokens: list[ApiToken] = []
    if not text.strip():
        return ()
    for number, entry in enumerate(text.split(","), 1):
        token, colon, scope = entry.strip().rpartition(":")
        if not colon:
            raise ValueError(f"entry {number} is not token:scope")
        try:
            tokens.append(_token(token, scope))
        except ValueError as e:
            raise ValueError(f"entry {number}: {e}") from None
    _check_unique(tokens)
    return tuple(tokens)


def parse_token_file(path: str) -> TokenFile:
    """The tokens of a file of ``token scope`` lines; blank lines and lines starting with
    ``#`` are skipped. The empty path is no file."""
    if not path:
        return TokenFile("")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot be read: {getattr(e, 'strerror', None) or e}") from None
    tokens: list[ApiToken] = []
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        try:
            if len(words) != 2:
                raise ValueError("a line is 'token scope' (two words)")
            tokens.append(_token(words[0], words[1]))
        except ValueError as e:
            raise ValueError(f"line {number}: {e}") from None
    _check_unique(tokens)
    return TokenFile(path, tuple(tokens))


def _check_unique(tokens: Sequence[ApiToken]) -> None:
    seen: set[str] = set()
    for number, token in enumerate(tokens, 1):
        if token.token in seen:
            raise ValueError(f"token {number} is given twice")
        seen.add(token.token)


def scope_allows(scope: str, method: bytes, path: str) -> bool:
    """Whether a token of ``scope`` may make this request."""
    if scope == ADMIN or method in _READ_METHODS:
        return True
    return scope == PUSH and method == b"POST" and path.startswith(_PUSH_PREFIXES)


def is_public(method: bytes, path: str, metrics_public: bool) -> bool:
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return True
    return metrics_public and path == METRICS_PATH


@attrs.frozen
class Decision:
    """What the check says of one request: ``status`` 0 to go on (``scope`` is the token's,
    None for a public path or an open API), else 401 or 403 with the message to answer."""

    status: int
    scope: str | None = None
    message: str = ""


_OPEN = Decision(0)
_MISSING = Decision(401, None, "Missing API token: send 'Authorization: Bearer <token>'")
_UNKNOWN = Decision(401, None, "Unknown API token")


class AccessCheck:
    """The tokens in effect, and the decision for each request."""

    def __init__(self, tokens: Iterable[ApiToken], *, metrics_public: bool = False) -> None:
        # Digests only: equal lengths for compare_digest, and no token kept in memory as text.
        self._digests = tuple(
            (hashlib.sha256(t.token.encode("ascii")).digest(), t.scope) for t in tokens)
        self._metrics_public = metrics_public
        self._allowed = {scope: Decision(0, scope) for scope in SCOPES}

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, method: bytes, path: str, authorization: bytes | None) -> Decision:
        """The decision for a request to ``path`` (percent-decoded; bytes that are not UTF-8
        replaced)."""
        if not self._digests or is_public(method, path, self._metrics_public):
            return _OPEN
        scope = self.scope_of(authorization)
        if scope is None:
            return _MISSING if authorization is None else _UNKNOWN
        if not scope_allows(scope, method, path):
            return Decision(403, scope, "API token scope %s does not allow %s %s" % (
                scope, method.decode("latin-1"), path))
        return self._allowed[scope]

    def scope_of(self, authorization: bytes | None) -> str | None:
        """The scope of the token an ``Authorization`` header carries, or None."""
        if authorization is None:
            return None
        kind, _, token = authorization.strip().partition(b" ")
        if kind.lower() != b"bearer":
            return None
        presented = hashlib.sha256(token.strip()).digest()
        found = None
        # Every digest is compared, whichever matches: the time does not depend on which.
        for digest, scope in self._digests:
            if hmac.compare_digest(digest, presented):
                found = scope
        return found
