"""Keyset cursors of the list endpoints (docs/api.md, Lists and cursors)."""

from __future__ import annotations

import base64
import binascii
import re

from fireworq.errors import InvalidInput
from fireworq.model import Cursor

_CURSOR_TEXT = re.compile(rb"([0-9]{1,19}),([0-9]{1,20})")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_MAX_TIME = 2**63 - 1
_MAX_ID = 2**64 - 1


def encode_cursor(cursor: Cursor | None) -> str:
    if cursor is None:
        return ""
    return base64.b64encode(b"%d,%d" % (cursor.time, cursor.id)).decode("ascii")


def decode_cursor(text: str | None) -> Cursor | None:
    """``None`` for the first page; ``InvalidInput`` when the text is not a cursor."""
    if not text:
        return None
    # A '+' that a client did not percent-encode arrives as a space.
    raw = text.replace(" ", "+").encode("ascii", "replace")
    if len(raw) % 4 or not _BASE64.fullmatch(raw):
        raise InvalidInput("Invalid cursor")
    try:
        decoded = base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise InvalidInput("Invalid cursor") from None
    if base64.b64encode(decoded) != raw:
        # Non-canonical padding bits: not a cursor we could have written.
        raise InvalidInput("Invalid cursor")
    match = _CURSOR_TEXT.fullmatch(decoded)
    if match is None:
        raise InvalidInput("Invalid cursor")
    time_ms, item_id = int(match.group(1)), int(match.group(2))
    if time_ms > _MAX_TIME or item_id > _MAX_ID:
        raise InvalidInput("Invalid cursor")
    return Cursor(time_ms, item_id)
