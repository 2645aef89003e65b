"""The web console at ``/console/`` (docs/console.md): static files shipped in the package.

The files are read once, when the API is built, into a table keyed by file name: a request
can only ever get one of them, so there is no path to walk (no ``..``, no directory
listing). Each answer carries a strict ``Content-Security-Policy`` (only the console's own
scripts and styles, and requests to this same origin), an ``ETag`` for revalidation and
``Cache-Control: no-cache``: the files are small, their names carry no version, and a browser
must see a new console as soon as the daemon is upgraded.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from types import MappingProxyType
from typing import Mapping

import attrs
from twisted.web.iweb import IRequest

from fireworq import jsontext
from fireworq.api import render

PREFIX = "/console"
INDEX = "index.html"

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
    ".txt": b"text/plain; charset=utf-8",
}

CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'"
)
_ALLOWED = b"GET, HEAD"


@attrs.frozen
class StaticFile:
    body: bytes
    content_type: bytes
    etag: bytes


def load_files(
    package: str = "fireworq.console", folder: str = "static"
) -> Mapping[str, StaticFile]:
    """Every file of the package's ``static`` folder (not its subfolders), by name; read-only."""
    files: dict[str, StaticFile] = {}
    for entry in resources.files(package).joinpath(folder).iterdir():
        if not entry.is_file():
            continue
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        content_type = CONTENT_TYPES.get(suffix)
        if content_type is None:
            continue  # licences and notes are shipped beside the files, not served
        body = entry.read_bytes()
        etag = b'"%s"' % hashlib.sha256(body).hexdigest()[:20].encode("ascii")
        files[entry.name] = StaticFile(body, content_type, etag)
    return MappingProxyType(files)


class Console:
    """Answers ``/console`` and every path below it; ``path`` is already percent-decoded."""

    def __init__(self, files: Mapping[str, StaticFile]) -> None:
        self._files = files

    @staticmethod
    def claims(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    def render(self, request: IRequest, path: str) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", _ALLOWED)
            return _error(request, 405, "Method %s is not allowed on %s; allowed: GET, HEAD"
                          % (request.method.decode("latin-1"), path))
        if path == PREFIX:
            # The page's relative links need the slash.
            request.setHeader(b"location", b"/console/")
            return _answer(request, 301, b"", b"text/plain; charset=utf-8")
        name = path[len(PREFIX) + 1:] or INDEX
        found = self._files.get(name)
        if found is None:
            return _error(request, 404, "No such endpoint: %s" % path)
        request.setHeader(b"etag", found.etag)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        tags = _etags(request.getHeader(b"if-none-match"))
        if found.etag in tags or b"*" in tags:
            request.setResponseCode(304)
            return b""
        return _answer(request, 200, found.body, found.content_type)


def _etags(header: bytes | None) -> list[bytes]:
    if not header:
        return []
    return [tag.strip().removeprefix(b"W/") for tag in header.split(b",")]


def _answer(request: IRequest, code: int, body: bytes, content_type: bytes) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def _error(request: IRequest, code: int, message: str) -> bytes:
    return _answer(request, code, jsontext.encode(render.error(code, message)),
                   b"application/json")
