"""Short texts for the ``<reason>`` part of failed-delivery messages (docs/worker-protocol.md, The
answer)."""

from __future__ import annotations

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.web.client import (
    RequestGenerationFailed,
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)

__all__ = ["describe"]

# Twisted wraps the real causes in these; their own str() is a list of Failure reprs.
_WRAPPERS = (
    ResponseNeverReceived,
    ResponseFailed,
    RequestTransmissionFailed,
    RequestGenerationFailed,
)


def describe(error: BaseException) -> str:
    """One line naming the cause of a failed exchange."""
    if isinstance(error, _WRAPPERS) and error.reasons:
        texts: list[str] = []
        for reason in error.reasons:
            text = describe(reason.value)
            if text not in texts:
                texts.append(text)
        return "; ".join(texts)
    if isinstance(error, SSL.Error):
        # args[0] is OpenSSL's error queue: (library, function, reason) triples.
        queue = error.args[0] if error.args and isinstance(error.args[0], list) else []
        reasons = [str(entry[-1]) for entry in queue if isinstance(entry, tuple) and entry]
        return "TLS error: " + ("; ".join(reasons) or str(error))
    if isinstance(error, VerificationError):
        return "TLS certificate does not match the host name"
    text = " ".join(str(error).split()).rstrip(".")
    return text or type(error).__name__
