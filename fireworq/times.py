"""Rendering of store times (ms since the epoch) as API.md 1.5 wants them."""

from __future__ import annotations

import time


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
