"""What a queue and a job add to each delivery: extra headers, signatures, the wait before a
retry (docs/api.md, Delivery policy; docs/worker-protocol.md). Pure: no I/O."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
from typing import Callable, Sequence

from fireworq.errors import InvalidInput
from fireworq.model import (
    BACKOFF_EXPONENTIAL,
    BACKOFF_FIXED,
    MAX_RETRY_DELAY,
    RESULT_MODE_WEBHOOK,
    HeaderPairs,
    Job,
    QueueDefinition,
)

__all__ = [
    "MAX_HEADERS", "MAX_HEADER_BYTES", "REDACTED_SECRET", "check_headers", "check_secrets",
    "header_bytes", "merge_headers", "redact_secrets", "retry_wait", "signature", "signing_keys",
]

#: Most headers of one ``headers`` member.
MAX_HEADERS = 32
#: Most bytes (UTF-8 names and values) of one ``headers`` member.
MAX_HEADER_BYTES = 8192
#: How a stored signing secret is shown; sent back in a PUT, it keeps the stored secret.
REDACTED_SECRET = "whsec_\u2026(redacted)"
SECRET_PREFIX = "whsec_"
MIN_SECRETS, MAX_SECRETS = 1, 3
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
#: Exponents beyond this are capped anyway (2^40 s is far above MAX_RETRY_DELAY).
_MAX_EXPONENT = 40

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters but horizontal tab (RFC 9110, field-value), which includes CR, LF, NUL.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Set by the daemon itself, or framing and hop-by-hop headers a worker request must not carry
# twice or at all.
_REFUSED = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
    "te", "trailer", "expect", "accept-encoding", "content-encoding",
})
_REFUSED_PREFIXES = ("proxy-", "fireworq-", "webhook-")


def check_headers(value: object, member: str) -> HeaderPairs:
    """A ``headers`` member (an object of string to string) as checked pairs; raises
    ``InvalidInput`` naming the offending header."""
    if not isinstance(value, dict):
        raise InvalidInput(f"Field '{member}' must be an object of strings")
    if len(value) > MAX_HEADERS:
        raise InvalidInput(f"Field '{member}' has more than {MAX_HEADERS} headers")
    seen: set[str] = set()
    size = 0
    for name, item in value.items():
        if not _TOKEN.fullmatch(name):
            raise InvalidInput(f"Invalid header name in '{member}': {name!r}")
        lowered = name.lower()
        if lowered in _REFUSED or lowered.startswith(_REFUSED_PREFIXES):
            raise InvalidInput(f"Header not allowed in '{member}': {name}")
        if lowered in seen:
            raise InvalidInput(f"Header given twice in '{member}': {name}")
        seen.add(lowered)
        if not isinstance(item, str):
            raise InvalidInput(f"Header {name} in '{member}' must be a string")
        if _CONTROL.search(item):
            raise InvalidInput(
                f"Header {name} in '{member}' has a control character (CR, LF, NUL, ...)")
        size += len(name) + len(item.encode("utf-8", "surrogatepass"))
        if size > MAX_HEADER_BYTES:
            raise InvalidInput(
                f"Field '{member}' is longer than {MAX_HEADER_BYTES} bytes (at header {name})")
    try:
        return tuple((name, item.encode("utf-8").decode("utf-8")) for name, item in value.items())
    except UnicodeError:
        raise InvalidInput(f"Field '{member}' has a value that is not valid Unicode") from None


def merge_headers(queue: HeaderPairs, job: HeaderPairs | None) -> HeaderPairs:
    """The job's headers over the queue's: a job header replaces the queue's of the same
    name (case-insensitive)."""
    if not job:
        return queue
    replaced = {name.lower() for name, _ in job}
    return tuple(pair for pair in queue if pair[0].lower() not in replaced) + job


def _secret_bytes(secret: str) -> bytes | None:
    if not secret.startswith(SECRET_PREFIX):
        return None
    text = secret[len(SECRET_PREFIX):]
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if MIN_SECRET_BYTES <= len(decoded) <= MAX_SECRET_BYTES else None


def check_secrets(value: object, stored: Sequence[str]) -> tuple[str, ...]:
    """A ``signing_secrets`` member as the secrets to store. The k-th redacted entry
    (``REDACTED_SECRET``) stands for the k-th secret stored now, so that a definition read
    with GET can be sent back as it is (docs/api.md, Signed deliveries)."""
    member = "signing_secrets"
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"Field '{member}' must be an array of strings")
    if not MIN_SECRETS <= len(value) <= MAX_SECRETS:
        raise InvalidInput(f"Field '{member}' must have {MIN_SECRETS} to {MAX_SECRETS} secrets")
    found: list[str] = []
    kept = 0
    for index, item in enumerate(value):
        if item == REDACTED_SECRET:
            if kept >= len(stored):
                raise InvalidInput(
                    f"Field '{member}' has more redacted secrets than the queue has stored")
            found.append(stored[kept])
            kept += 1
        elif _secret_bytes(item) is None:
            # The value itself is never echoed: it may be a secret with a typo.
            raise InvalidInput(
                f"Invalid secret {index + 1} in '{member}': must be 'whsec_' and the base64"
                f" of {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")
        else:
            found.append(item)
    if len(set(found)) != len(found):
        raise InvalidInput(f"Field '{member}' has the same secret twice")
    return tuple(found)


def redact_secrets(secrets: Sequence[str]) -> list[str]:
    return [REDACTED_SECRET] * len(secrets)


@functools.lru_cache(maxsize=256)
def signing_keys(secrets: tuple[str, ...]) -> tuple[bytes, ...]:
    """The HMAC keys of stored secrets (a secret that does not decode signs nothing)."""
    keys = (_secret_bytes(secret) for secret in secrets)
    return tuple(key for key in keys if key is not None)


def signature(keys: Sequence[bytes], message_id: bytes, timestamp: bytes, body: bytes
              ) -> bytes:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256>`` of
    ``id.timestamp.body`` for each key, space-separated (Standard Webhooks)."""
    signed = b"%s.%s.%s" % (message_id, timestamp, body)
    return b" ".join(
        b"v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
        for key in keys)


def _effective(job: Job, queue: QueueDefinition) -> tuple[str, int, bool]:
    backoff, max_delay, jitter = queue.retry_backoff, queue.retry_max_delay, queue.retry_jitter
    options = job.options
    if options is not None:
        if options.retry_backoff is not None:
            backoff = options.retry_backoff
        if options.retry_max_delay is not None:
            max_delay = options.retry_max_delay
        if options.retry_jitter is not None:
            jitter = options.retry_jitter
    return backoff, max_delay, jitter


def retry_wait(job: Job, queue: QueueDefinition, retry_after: float | None,
               random: Callable[[], float]) -> int | None:
    """ms to wait before retrying ``job`` after its attempt number ``fail_count + 1``
    failed; ``None`` for Fireworq's own wait (``retry_delay``), which the store computes.

    Exponential backoff waits ``retry_delay × 2^(attempt−1)``; the wait is capped at
    ``retry_max_delay`` (when set, else ``MAX_RETRY_DELAY``), then drawn from 0 to it with
    jitter. A worker's ``Retry-After`` replaces the backoff (within the cap, no jitter),
    except under Fireworq's plain policy (fixed, no cap, no jitter, ``fireworq`` results),
    which stays exactly as in Fireworq. ``random`` gives a float in [0, 1).
    """
    backoff, max_delay, jitter = _effective(job, queue)
    plain = backoff == BACKOFF_FIXED and not max_delay and not jitter
    if plain and queue.result_mode != RESULT_MODE_WEBHOOK:
        return None
    cap = max_delay or MAX_RETRY_DELAY
    if retry_after is not None:
        return int(min(max(retry_after, 0.0), float(cap)) * 1000)
    wait = job.retry_delay
    if backoff == BACKOFF_EXPONENTIAL:
        wait *= 2 ** min(max(job.fail_count, 0), _MAX_EXPONENT)
    wait = min(wait, cap)
    if jitter:
        return int(random() * wait * 1000)
    if wait == job.retry_delay:
        return None
    return wait * 1000


def header_bytes(pairs: HeaderPairs) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((name.encode("ascii"), value.encode("utf-8")) for name, value in pairs)

