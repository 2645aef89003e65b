"""Twisted's asyncio reactor on a uvloop event loop: ``twistd --reactor=uvloop fireworq``.

An experiment kept for measurement (docs/performance.md, "Cheap per-job wins"): on this
daemon's loads it is slower than the default epoll reactor, so nothing selects it unless
asked. Needs the ``uvloop`` extra (``pip install 'fireworq-py[uvloop]'``).
"""

from __future__ import annotations


def install() -> None:
    import uvloop
    from twisted.internet import asyncioreactor

    asyncioreactor.install(uvloop.new_event_loop())  # type: ignore[no-untyped-call]
