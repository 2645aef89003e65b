"""Group the requests of one reactor turn into one store round trip."""

from __future__ import annotations

from typing import Awaitable, Callable, Generic, Sequence, TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

Item = TypeVar("Item")
Result = TypeVar("Result")


class TurnBatcher(Generic[Item, Result]):
    """Collects items and hands them to ``flush`` together.

    A batch starts ``delay`` seconds after its first item (0: at the end of the current
    reactor turn). At most ``concurrency`` flushes run at once; items that arrive meanwhile
    wait for the next one, so batches grow exactly when the store is the bottleneck.
    ``flush`` answers one result per item, in order; if it raises, every item of the
    batch gets the failure. With a ``deadline``, an item not answered that many seconds
    after it was submitted fails with ``expired()`` (its flush may still complete later);
    one timer serves all items.
    """

    def __init__(
        self,
        clock: IReactorTime,
        flush: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        delay: float = 0.0,
        concurrency: int = 1,
        max_batch: int = 1000,
        deadline: float | None = None,
        expired: Callable[[], BaseException] | None = None,
    ) -> None:
        self._clock = clock
        self._flush = flush
        self._delay = delay
        self._concurrency = concurrency
        self._max_batch = max_batch
        self._deadline = deadline
        self._expired = expired
        self._pending: list[_Entry[Item, Result]] = []
        self._flushing: list[list[_Entry[Item, Result]]] = []
        self._timer: IDelayedCall | None = None
        self._watch: IDelayedCall | None = None

    def submit(self, item: Item) -> Deferred[Result]:
        waiter: Deferred[Result] = Deferred()
        self._pending.append(_Entry(item, waiter, self._clock.seconds()))
        if self._timer is None and len(self._flushing) < self._concurrency:
            self._timer = self._clock.callLater(self._delay, self._start)
        if self._deadline is not None and self._watch is None:
            self._watch = self._clock.callLater(self._deadline, self._expire)
        return waiter

    @property
    def busy(self) -> bool:
        return bool(self._pending) or bool(self._flushing)

    def _start(self) -> None:
        self._timer = None
        while self._pending and len(self._flushing) < self._concurrency:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._flushing.append(batch)
            Deferred.fromCoroutine(self._run(batch))

    async def _run(self, batch: list[_Entry[Item, Result]]) -> None:
        try:
            results = await self._flush([entry.item for entry in batch])
        except BaseException:
            failure = Failure()
            self._done(batch)
            for entry in batch:
                if not entry.waiter.called:  # it may have expired meanwhile
                    entry.waiter.errback(failure)
        else:
            # The next batch goes to the store first, then this one's results are handed
            # out: the store works on it while the waiters' callbacks run (for pushes, the
            # writing of every answer), instead of after them.
            self._done(batch)
            for entry, result in zip(batch, results):
                if not entry.waiter.called:
                    entry.waiter.callback(result)

    def _done(self, batch: list[_Entry[Item, Result]]) -> None:
        self._flushing.remove(batch)
        if self._pending and self._timer is None:
            if self._delay:
                self._timer = self._clock.callLater(0, self._start)
            else:
                self._start()
        if not self.busy and self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _expire(self) -> None:
        self._watch = None
        assert self._deadline is not None and self._expired is not None
        limit = self._clock.seconds() - self._deadline
        oldest = None
        for batch in (*self._flushing, self._pending):
            for entry in batch:
                if entry.waiter.called:
                    continue
                if entry.submitted <= limit:
                    entry.waiter.errback(self._expired())
                    continue
                if oldest is None or entry.submitted < oldest:
                    oldest = entry.submitted
                break  # entries of one batch are in submission order
        if oldest is not None:
            self._watch = self._clock.callLater(
                oldest + self._deadline - self._clock.seconds(), self._expire)

    def cancel(self) -> None:
        """Drop the timers (for shutdown); items not yet flushed are never answered."""
        for timer in (self._timer, self._watch):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._watch = None


@attrs.define
class _Entry(Generic[Item, Result]):
    item: Item
    waiter: Deferred[Result]
    submitted: float
