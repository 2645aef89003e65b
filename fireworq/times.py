"""Rendering of store times (ms since the epoch) as docs/api.md, Times wants them."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def format_ms(ms: int) -> str:
    """RFC 3339 in the local time zone (``TZ``), milliseconds without trailing zeros."""
    seconds, millis = divmod(ms, 1000)
    t = time.localtime(seconds)
    text = "%04d-%02d-%02dT%02d:%02d:%02d" % (
        t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
    )
    if millis:
        text += (".%03d" % millis).rstrip("0")
    return text + _zone(t.tm_gmtoff)


def format_seconds(seconds: float) -> str:
    """RFC 3339 with whole seconds, for the access log."""
    t = time.localtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02d%s" % (
        t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, _zone(t.tm_gmtoff),
    )


def _zone(offset: int) -> str:
    if offset == 0:
        return "Z"
    sign = "+" if offset > 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return "%s%02d:%02d" % (sign, hours, minutes)


def parse_ms(text: str) -> int | None:
    """An RFC 3339 time (any fraction of a second, a ``Z`` or numeric offset) as ms since
    the epoch, finer fractions cut; ``None`` when the text is not one."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, utc, sign, offset_hours, offset_minutes = match.group(7, 8, 9, 10, 11)
    zone = timezone.utc
    if not utc:
        if int(offset_hours) > 23 or int(offset_minutes) > 59:
            return None
        offset = timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
        zone = timezone(-offset if sign == "-" else offset)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        return None
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    whole = (moment - epoch) // timedelta(seconds=1)
    return whole * 1000 + int((fraction or "0")[:3].ljust(3, "0"))
