"""Passwords in worker URLs, hidden for logs the way DSN passwords are (docs/configuration.md,
Logs)."""

from __future__ import annotations


def mask_url(url: str) -> str:
    """C{url} with the password of its user information replaced by ``***``:
    ``http://u:***@host/``. The authority is read as the deliverer reads it (up to the first
    ``/``, ``?`` or ``#``; the user information up to its last ``@``), so what is hidden is
    exactly what would be sent as the password."""
    if "@" not in url:  # nearly every URL: one scan
        return url
    start = url.find("://")
    if start < 0:
        return url
    start += 3
    end = len(url)
    for separator in "/?#":
        found = url.find(separator, start, end)
        if found >= 0:
            end = found
    at = url.rfind("@", start, end)
    colon = url.find(":", start, at) if at >= 0 else -1
    if colon < 0:
        return url
    return f"{url[: colon + 1]}***{url[at:]}"
