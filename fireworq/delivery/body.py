"""Reading a worker's response body with a size limit (docs/worker-protocol.md, The answer, row 3).

``Response.deliverBody`` with a protocol of our own rather than ``readBody`` or treq's
``content()``: the limit is checked as bytes arrive (a larger body is never held in memory), the
connection is dropped as soon as it is exceeded, and gzip is inflated here so that the limit
bounds the inflated size too (a small gzip body can inflate to gigabytes in one zlib call).
"""

from __future__ import annotations

import zlib

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import GzipDecoder, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IResponse

from fireworq.delivery.errors import describe

__all__ = ["BodyError", "BodyTooLarge", "BodyReader", "body_source"]

# zlib's window bits for "gzip header and trailer expected".
_GZIP = 16 + zlib.MAX_WBITS


class BodyError(Exception):
    """The body could not be read completely; the message says why."""


class BodyTooLarge(BodyError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"response body exceeds {limit} bytes")


def body_source(response: IResponse) -> tuple[IResponse, bool]:
    """The response to read the body from, and whether to gunzip it.

    treq's ContentDecoderAgent has already wrapped a gzip response in GzipDecoder (and removed
    ``Content-Encoding``); unwrap it to inflate here instead. As in Go's client, only a body
    whose one encoding is ``gzip`` (any case) is inflated; stacked encodings are read as sent.
    """
    source = getattr(response, "original", response)  # treq's _Response wrapper
    layers = 0
    while isinstance(source, GzipDecoder):
        source = source.original
        layers += 1
    encodings = source.headers.getRawHeaders(b"content-encoding")
    if layers == 1:
        return source, encodings is None
    if layers == 0 and encodings is not None and len(encodings) == 1:
        return source, encodings[0].strip().lower() == b"gzip"
    return source, False


class _Gunzip:
    """Inflates a gzip stream, every member of it as Go's reader does, to at most ``room`` bytes
    per call."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(_GZIP)
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        out = b""
        while data:
            if self._inflater.eof:
                self._inflater = zlib.decompressobj(_GZIP)
            self._started = True
            out += self._inflater.decompress(data, room - len(out))
            if len(out) >= room:
                # Anything left (unconsumed_tail) can only make it longer: the caller fails.
                return out
            # Below the bound zlib consumed all input, except what follows a member's end.
            data = self._inflater.unused_data if self._inflater.eof else b""
        return out

    def check_complete(self) -> None:
        # Go reads an empty body as empty, and stops with "unexpected EOF" in a member.
        if self._started and not self._inflater.eof:
            raise zlib.error("unexpected end of gzip stream")


class BodyReader(Protocol):
    """Collects a body of at most ``limit`` bytes into ``done``; errbacks ``done`` with
    BodyError (after dropping the connection when it got too long). Cancelling ``done`` drops
    the connection."""

    def __init__(self, limit: int, gunzip: bool) -> None:
        self.done: Deferred[bytes] = Deferred(lambda _: self._drop())
        self._limit = limit
        self._size = 0
        self._chunks: list[bytes] = []
        self._gunzip = _Gunzip() if gunzip else None

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        if self._gunzip is not None:
            try:
                data = self._gunzip.feed(data, self._limit - self._size + 1)
            except zlib.error as exc:
                self._fail(BodyError(f"invalid gzip data: {exc}"))
                return
        self._size += len(data)
        if self._size > self._limit:
            self._fail(BodyTooLarge(self._limit))
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        # PotentialDataLoss: no length was given and the body ended with the connection, which
        # is how such a body ends (Go reads it the same way).
        if not reason.check(ResponseDone, PotentialDataLoss):
            cause = describe(reason.value) if reason.value is not None else reason.getErrorMessage()
            self.done.errback(Failure(BodyError(cause)))
            return
        if self._gunzip is not None:
            try:
                self._gunzip.check_complete()
            except zlib.error as exc:
                self.done.errback(Failure(BodyError(f"invalid gzip data: {exc}")))
                return
        self.done.callback(b"".join(self._chunks))

    def _fail(self, error: BodyError) -> None:
        self._drop()
        self.done.errback(Failure(error))

    def _drop(self) -> None:
        # The rest of the body is not wanted; the connection cannot be reused without it.
        self._chunks = []
        if self.transport is not None:
            self.transport.loseConnection()
