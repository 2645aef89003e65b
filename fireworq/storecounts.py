"""The store-backed figures of ``/metrics``: jobs by state and failure-log sizes.

A scrape must not cost the store in proportion to the jobs it holds, nor make queries pile
up when the store is slow or scrapes come often (several Prometheus servers, a dashboard
refreshing). So the figures are read by bounded counts (``JobStore.counts``), at most once
every ``interval`` seconds, by one read at a time: a scrape made while a read runs waits for
that read (up to ``timeout``), never starts another, and a read that outlasts a scrape's
wait still lands for the scrapes after it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fireworq.errors import StoreUnavailable
from fireworq.model import StateCounts
from fireworq.storage import JobStore

log = Logger()

#: Seconds a reading is served before the store is read again.
REFRESH_INTERVAL = 5.0


@attrs.frozen
class _Reading:
    #: When the read ended (store clock does not matter: this paces our own reads).
    taken_at: float
    tables: frozenset[str]
    #: ``None``: the store did not answer.
    counts: Mapping[str, StateCounts] | None


class StoreCounts:
    """The last reading of the store's counts, refreshed on demand, single-flight."""

    def __init__(self, store: JobStore, clock: IReactorTime, *, timeout: float,
                 interval: float = REFRESH_INTERVAL) -> None:
        self._store = store
        self._clock = clock
        self._timeout = timeout
        self._interval = interval
        self._reading: _Reading | None = None
        self._refresh: Deferred[None] | None = None

    async def read(self, tables: Sequence[str]) -> Mapping[str, StateCounts] | None:
        """The counts of ``tables``; ``None`` when the store did not answer, or not within
        ``timeout`` seconds."""
        reading = self._reading
        if reading is None or not self._serves(reading, tables):
            refresh = self._refresh
            if refresh is None:
                refresh = Deferred.fromCoroutine(self._read_store(sorted(set(tables))))
                if not refresh.called:  # (a store may answer at once)
                    self._refresh = refresh
            waiter: Deferred[None] = Deferred()
            refresh.addBoth(_relay_to, waiter)
            try:
                await waiter.addTimeout(self._timeout, self._clock)
            except DeferredTimeoutError:
                return None  # the read goes on, for the next scrapes
            reading = self._reading
            assert reading is not None
        return reading.counts

    def _serves(self, reading: _Reading, tables: Sequence[str]) -> bool:
        fresh = self._clock.seconds() - reading.taken_at < self._interval
        return fresh and reading.tables.issuperset(tables)

    async def _read_store(self, tables: list[str]) -> None:
        counts: Mapping[str, StateCounts] | None = None
        try:
            counts = await self._store.counts(tables)
        except StoreUnavailable:
            pass
        except Exception:
            log.failure("Reading the job counts for the metrics failed")
        finally:
            # A failed read is a reading too: a store that is down is not asked again by
            # every scrape.
            self._reading = _Reading(self._clock.seconds(), frozenset(tables), counts)
            self._refresh = None


def _relay_to(result: None, waiter: Deferred[None]) -> None:
    # A waiter that timed out was cancelled (called) already; the shared read goes on.
    if not waiter.called:
        waiter.callback(None)
    return result
