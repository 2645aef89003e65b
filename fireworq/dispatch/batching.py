"""Group the requests of one reactor turn into one store round trip."""

from __future__ import annotations

from typing import Awaitable, Callable, Generic, Sequence, TypeVar

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
    batch gets the failure.
    """

    def __init__(
        self,
        clock: IReactorTime,
        flush: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        delay: float = 0.0,
        concurrency: int = 1,
        max_batch: int = 1000,
    ) -> None:
        self._clock = clock
        self._flush = flush
        self._delay = delay
        self._concurrency = concurrency
        self._max_batch = max_batch
        self._pending: list[tuple[Item, Deferred[Result]]] = []
        self._timer: IDelayedCall | None = None
        self._running = 0

    def submit(self, item: Item) -> Deferred[Result]:
        waiter: Deferred[Result] = Deferred()
        self._pending.append((item, waiter))
        if self._timer is None and self._running < self._concurrency:
            self._timer = self._clock.callLater(self._delay, self._start)
        return waiter

    @property
    def busy(self) -> bool:
        return bool(self._pending) or self._running > 0

    def _start(self) -> None:
        self._timer = None
        while self._pending and self._running < self._concurrency:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._running += 1
            Deferred.fromCoroutine(self._run(batch))

    async def _run(self, batch: list[tuple[Item, Deferred[Result]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except BaseException:
            failure = Failure()
            for _, waiter in batch:
                waiter.errback(failure)
        else:
            for (_, waiter), result in zip(batch, results):
                waiter.callback(result)
        finally:
            self._running -= 1
            if self._pending and self._timer is None:
                self._timer = self._clock.callLater(0, self._start)

    def cancel(self) -> None:
        """Drop the timer (for shutdown); items not yet flushed are never answered."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
