"""Process figures for ``/stats`` (docs/api.md, GET /stats)."""

from __future__ import annotations

import gc
import os
import platform
import resource
import threading
from typing import Any

from fireworq import __version__


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        # ru_maxrss is the peak, in KiB on Linux: the best figure left.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def process_stats(now: float, started_at: float) -> dict[str, Any]:
    times = os.times()
    return {
        "time": int(now * 1_000_000) * 1000,  # µs are what a float holds exactly
        "version": __version__,
        "python_version": platform.python_version(),
        "pid": os.getpid(),
        "uptime_seconds": round(max(0.0, now - started_at), 3),
        "rss_bytes": _rss_bytes(),
        "cpu_user_seconds": round(times.user, 3),
        "cpu_system_seconds": round(times.system, 3),
        "threads": _threads(),
        "gc_counts": [generation["collections"] for generation in gc.get_stats()],
        "open_fds": _open_fds(),
    }
