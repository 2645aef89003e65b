"""One timer per polling interval for the dispatchers of a process (docs/performance.md, idle
cost): every idle queue polls several times a second, and a timer of its own each made the
timers most of an idle daemon's CPU time.

The polls of one interval run in one reactor turn, on multiples of the interval (so their
due checks share one query), each skipped while its previous check is still running.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Coroutine, Protocol, Sequence

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from fireworq.errors import StoreUnavailable

log = Logger()

#: A dispatcher's poll: a Deferred while its due check runs, else None.
Poll = Callable[[], "Deferred[None] | None"]
#: Which of these job tables have a due job: one query for all of them.
DueTables = Callable[[Sequence[str]], Coroutine[Any, Any, Collection[str]]]


class Polled(Protocol):
    """A dispatcher whose polls the ticker checks together with the others'."""

    def poll_table(self) -> str | None:
        """The job table to look for due jobs in now; None when not now."""
        ...

    def found_due(self) -> None:
        """Due jobs were found in its table."""
        ...


class _Group:
    def __init__(self, clock: IReactorTime, interval: float) -> None:
        self._clock = clock
        self.interval = interval
        self.polls: dict[Poll, bool] = {}  # poll → its check is still running
        self.polled: set[Polled] = set()
        self.due_tables: DueTables | None = None
        self._checking = False
        self._loop: LoopingCall | None = None
        self._start: IDelayedCall | None = None

    def start(self) -> None:
        now = self._clock.seconds()
        self._start = self._clock.callLater(
            self.interval - (now % self.interval), self._begin)

    def _begin(self) -> None:
        self._start = None
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: log.failure("Polling stopped", f))

    def _tick(self) -> None:
        if self.polled and not self._checking and self.due_tables is not None:
            self._check_together(self.due_tables)
        for poll, running in list(self.polls.items()):
            if running or poll not in self.polls:
                continue
            checking = poll()
            if checking is not None:
                self.polls[poll] = True
                checking.addBoth(self._checked, poll)

    def _check_together(self, due_tables: DueTables) -> None:
        waiting: dict[str, list[Polled]] = {}
        for polled in self.polled:
            table = polled.poll_table()
            if table is not None:
                waiting.setdefault(table, []).append(polled)
        if not waiting:
            return
        self._checking = True

        def found(due: Collection[str]) -> None:
            for table in due:
                for polled in waiting.get(table, ()):
                    if polled in self.polled:
                        polled.found_due()

        def failed(failure: Failure) -> None:
            if failure.check(StoreUnavailable):
                log.warn("Cannot poll {count} queue(s): {reason}", count=len(waiting),
                         reason=failure.value.reason)  # type: ignore[union-attr]
            else:
                log.failure("Polling {count} queue(s) failed", failure, count=len(waiting))

        def ended(_: object) -> None:
            self._checking = False

        checking: Deferred[Collection[str]] = ensureDeferred(due_tables(sorted(waiting)))
        checking.addCallbacks(found, failed).addBoth(ended)

    def _checked(self, _: object, poll: Poll) -> None:
        if poll in self.polls:
            self.polls[poll] = False

    @property
    def empty(self) -> bool:
        return not self.polls and not self.polled

    def stop(self) -> None:
        if self._start is not None and self._start.active():
            self._start.cancel()
        self._start = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None


class PollTicker:
    """The poll timers of every dispatcher of a process, one per polling interval."""

    def __init__(self, clock: IReactorTime, due_tables: DueTables | None = None) -> None:
        """``due_tables``: with it, ``add_polled`` checks the tables of all the dispatchers
        of an interval in one call (else each polls by itself, ``add``)."""
        self._clock = clock
        self.due_tables = due_tables
        self._groups: dict[float, _Group] = {}

    def _group(self, interval: float) -> _Group:
        group = self._groups.get(interval)
        if group is None:
            group = self._groups[interval] = _Group(self._clock, interval)
            group.due_tables = self.due_tables
            group.start()
        return group

    def _remover(self, interval: float, group: _Group, forget: Callable[[], object]
                 ) -> Callable[[], None]:
        def remove() -> None:
            forget()
            if group.empty and self._groups.get(interval) is group:
                group.stop()
                del self._groups[interval]

        return remove

    def add(self, interval: float, poll: Poll) -> Callable[[], None]:
        """Call ``poll`` every ``interval`` seconds, on multiples of it, from the next one;
        returns what stops it."""
        group = self._group(interval)
        group.polls[poll] = False
        return self._remover(interval, group, lambda: group.polls.pop(poll, None))

    def add_polled(self, interval: float, polled: Polled) -> Callable[[], None]:
        """Look for due jobs in ``polled``'s table every ``interval`` seconds together with
        the others of that interval (needs ``due_tables``); returns what stops it."""
        group = self._group(interval)
        group.polled.add(polled)
        return self._remover(interval, group, lambda: group.polled.discard(polled))
