"""Group the requests of one reactor turn into one store round trip."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Awaitable, Callable, Generic, TypeVar, overload

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batch(Sequence[Item]):
    """The items of one flush, as the store gets them (a ``storage.Handover``).

    The store's thread takes them right before it sends them (``take``); until then the
    reactor may withdraw one whose deadline passed (``withdraw``). Whichever comes first
    decides, under a lock: a withdrawn item is never sent; a taken one may be stored,
    whatever its caller was told.
    """

    def __init__(self, items: Sequence[Item]) -> None:
        self._items = items
        self._lock = threading.Lock()
        self._withdrawn: set[int] = set()
        self._taken = False

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Item: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Item]: ...

    def __getitem__(self, index: int | slice) -> Item | Sequence[Item]:
        return self._items[index]

    def take(self) -> list[int]:
        with self._lock:
            self._taken = True
            return [i for i in range(len(self._items)) if i not in self._withdrawn]

    def withdraw(self, index: int) -> bool:
        """``False`` when it is too late: the item was taken."""
        with self._lock:
            if self._taken:
                return False
            self._withdrawn.add(index)
            return True


class TurnBatcher(Generic[Item, Result]):
    """Collects items and hands them to ``flush`` together.

    A batch starts ``delay`` seconds after its first item (0: at the end of the current
    reactor turn). At most ``concurrency`` flushes run at once; items that arrive meanwhile
    wait for the next one, so batches grow exactly when the store is the bottleneck.
    ``flush`` answers one result per item, in order; a result that is an exception fails
    its item alone; if ``flush`` raises, every item of the batch gets the failure.

    With a ``deadline``, an item not answered that many seconds after it was submitted
    fails with ``expired(sent)``; one timer serves all items. An item still waiting for
    its batch is dropped and never flushed (``sent`` false). An item of a running flush is
    withdrawn from it if the flush has not taken its batch yet (``sent`` false), otherwise
    its flush may still complete later (``sent`` true). A flush takes its batch when it is
    called, or, with ``taken_by_flush``, when it calls ``batch.take()`` itself (a store
    does so right before it sends the items).

    With a ``limit``, an item submitted while that many are held (waiting or being flushed)
    fails at once with ``overloaded()``.

    With ``size``, an item counts as that many (a batch push of many jobs): towards
    ``max_batch`` (a flush takes at least one item, however large) and towards ``limit``
    (an item that would take the held count past it is refused, unless nothing is held:
    an item larger than the limit goes alone).
    """

    def __init__(
        self,
        clock: IReactorTime,
        flush: Callable[[Batch[Item]], Awaitable[Sequence[Result | Exception]]],
        *,
        delay: float = 0.0,
        concurrency: int = 1,
        max_batch: int = 1000,
        deadline: float | None = None,
        expired: Callable[[bool], BaseException] | None = None,
        taken_by_flush: bool = False,
        limit: int | None = None,
        overloaded: Callable[[], BaseException] | None = None,
        size: Callable[[Item], int] | None = None,
    ) -> None:
        self._clock = clock
        self._flush = flush
        self._delay = delay
        self._concurrency = concurrency
        self._max_batch = max_batch
        self._deadline = deadline
        self._expired = expired
        self._taken_by_flush = taken_by_flush
        self._limit = limit
        self._overloaded = overloaded
        self._size = size
        self._pending: list[_Entry[Item, Result]] = []
        self._flushing: list[_Flush[Item, Result]] = []
        self._held = 0
        self._timer: IDelayedCall | None = None
        self._watch: IDelayedCall | None = None

    def submit(self, item: Item) -> Deferred[Result]:
        size = 1 if self._size is None else self._size(item)
        if self._limit is not None and self._held and self._held + size > self._limit:
            assert self._overloaded is not None
            return fail(self._overloaded())
        waiter: Deferred[Result] = Deferred()
        self._pending.append(_Entry(item, waiter, self._clock.seconds(), size))
        self._held += size
        if self._timer is None and len(self._flushing) < self._concurrency:
            self._timer = self._clock.callLater(self._delay, self._start)
        if self._deadline is not None and self._watch is None:
            self._watch = self._clock.callLater(self._deadline, self._expire)
        return waiter

    @property
    def busy(self) -> bool:
        return bool(self._pending) or bool(self._flushing)

    @property
    def held(self) -> int:
        """Items waiting for a flush or in one (answered or not)."""
        return self._held

    def _start(self) -> None:
        self._timer = None
        while self._pending and len(self._flushing) < self._concurrency:
            count = total = 0
            for entry in self._pending:
                if count and total + entry.size > self._max_batch:
                    break
                count += 1
                total += entry.size
            entries = self._pending[:count]
            del self._pending[:count]
            flush = _Flush(entries, Batch([entry.item for entry in entries]))
            self._flushing.append(flush)
            Deferred.fromCoroutine(self._run(flush))

    async def _run(self, flush: _Flush[Item, Result]) -> None:
        try:
            if not self._taken_by_flush:
                flush.batch.take()
            results = await self._flush(flush.batch)
        except BaseException:
            failure = Failure()
            self._done(flush)
            for entry in flush.entries:
                if not entry.waiter.called:  # it may have expired meanwhile
                    entry.waiter.errback(failure)
        else:
            # The next batch goes to the store first, then this one's results are handed
            # out: the store works on it while the waiters' callbacks run (for pushes, the
            # writing of every answer), instead of after them.
            self._done(flush)
            for entry, result in zip(flush.entries, results):
                if entry.waiter.called:
                    continue
                if isinstance(result, Exception):
                    entry.waiter.errback(Failure(result))
                else:
                    entry.waiter.callback(result)

    def _done(self, flush: _Flush[Item, Result]) -> None:
        self._flushing.remove(flush)
        self._held -= sum(entry.size for entry in flush.entries)
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
        now = self._clock.seconds()
        deadline = self._deadline
        # Waiting entries are in submission order: the expired ones are a prefix. (The
        # test is the same sum as the timer's: a float difference may not round alike.)
        count = 0
        while count < len(self._pending) and self._pending[count].submitted + deadline <= now:
            count += 1
        expired = [(entry, False) for entry in self._pending[:count]]
        del self._pending[:count]
        self._held -= sum(entry.size for entry, _ in expired)
        oldest = self._pending[0].submitted if self._pending else None
        for flush in self._flushing:
            for index, entry in enumerate(flush.entries):
                if entry.waiter.called:
                    continue
                if entry.submitted + deadline <= now:
                    expired.append((entry, not flush.batch.withdraw(index)))
                    continue
                if oldest is None or entry.submitted < oldest:
                    oldest = entry.submitted
                break  # entries of one batch are in submission order
        if oldest is not None:
            self._watch = self._clock.callLater(oldest + deadline - now, self._expire)
        # Last: a waiter's callbacks may submit again.
        for entry, sent in expired:
            if not entry.waiter.called:
                entry.waiter.errback(self._expired(sent))

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
    size: int = 1


@attrs.define(eq=False)
class _Flush(Generic[Item, Result]):
    entries: list[_Entry[Item, Result]]
    batch: Batch[Item]
