"""Retention of one queue's failure log (``failed_job_ttl``, ``failed_job_limit``) and
of its unique keys (``unique_window``).

Run by the queue's dispatcher while this node is its active node, so that one node prunes
each queue. A pass removes what is too old (and, for the failure log, then what is beyond
the limit: the oldest entries), in transactions of ``PRUNE_BATCH`` rows: no lock is held
long enough to hold up pushes, completion writes or the API, and a pass stopped halfway
leaves a consistent log.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from fireworq.dispatch.stats import QueueStats
from fireworq.errors import StoreUnavailable
from fireworq.model import FailedFilter, QueueDefinition
from fireworq.storage import JobStore

log = Logger()

PRUNE_BATCH = 500
#: The longest wait between two passes while retention is set: it catches entries that
#: were written elsewhere (by a Fireworq node, before this node became active). A TTL
#: shorter than this is checked once per TTL, at most once a second.
MAX_INTERVAL = 60.0
MIN_INTERVAL = 1.0
#: How soon after this node writes a failure a ``failed_job_limit`` is enforced again.
LIMIT_DELAY = 1.0


class Pruner:
    """Passes of pruning while this node is the queue's active node and the definition
    asks for them; a subclass says what a pass does and how often."""

    #: What is pruned, for the log.
    what = "the queue"

    def __init__(self, clock: IReactorTime, store: JobStore, stats: QueueStats,
                 definition: QueueDefinition) -> None:
        self._clock = clock
        self._store = store
        self._stats = stats
        self._definition = definition
        self._active = False
        self._running = True
        self._timer: IDelayedCall | None = None
        self._pass: Deferred[None] | None = None
        #: A pass was asked for while one was running.
        self._again = False

    def configure(self, definition: QueueDefinition) -> None:
        old, self._definition = self._definition, definition
        if self._settings(old) != self._settings(definition):
            self._schedule(0)

    def set_active(self, active: bool) -> None:
        self._active = active
        if active:
            self._schedule(0)
        else:
            self._cancel_timer()

    def stop(self) -> None:
        """No pass any more; one in progress is abandoned between two transactions."""
        self._running = False
        self._cancel_timer()
        if self._pass is not None:
            self._pass.cancel()

    def _wanted(self) -> bool:
        return self._running and self._active and self._asked(self._definition)

    def _settings(self, definition: QueueDefinition) -> object:
        """The members that shape the passes: a change starts one at once."""
        raise NotImplementedError

    def _asked(self, definition: QueueDefinition) -> bool:
        return True

    def _interval(self) -> float:
        return MAX_INTERVAL

    async def _prune(self) -> None:
        raise NotImplementedError

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _schedule(self, delay: float) -> None:
        if not self._wanted():
            self._cancel_timer()
            return
        if self._pass is not None:
            self._again = True
            return
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self._clock.seconds() + delay:
                return
            self._timer.cancel()
        self._timer = self._clock.callLater(delay, self._start_pass)

    def _start_pass(self) -> None:
        self._timer = None
        self._again = False
        running = self._pass = Deferred.fromCoroutine(self._prune())
        running.addErrback(self._pass_failed)
        running.addBoth(self._pass_ended)

    def _pass_failed(self, failure: Failure) -> None:
        queue = self._definition.name
        if failure.check(CancelledError):
            return
        if failure.check(StoreUnavailable):
            log.warn("Cannot prune {what} of queue {queue}: {reason}", what=self.what,
                     queue=queue, reason=failure.value.reason)  # type: ignore[union-attr]
        else:
            log.failure("Pruning {what} of queue {queue} failed", failure, what=self.what,
                        queue=queue)

    def _pass_ended(self, _: object) -> None:
        self._pass = None
        self._schedule(LIMIT_DELAY if self._again else self._interval())


class FailureLogPruner(Pruner):
    what = "the failure log"

    def failure_written(self) -> None:
        """This node wrote a failure-log entry of the queue."""
        if self._definition.failed_job_limit:
            self._schedule(LIMIT_DELAY)

    def _settings(self, definition: QueueDefinition) -> object:
        return definition.failed_job_ttl, definition.failed_job_limit

    def _asked(self, definition: QueueDefinition) -> bool:
        return definition.has_retention

    def _interval(self) -> float:
        ttl = self._definition.failed_job_ttl
        return min(MAX_INTERVAL, max(MIN_INTERVAL, float(ttl))) if ttl else MAX_INTERVAL

    async def _prune(self) -> None:
        definition = self._definition
        if definition.failed_job_ttl:
            # This node's clock: entries are kept for the TTL give or take the clock skew
            # between nodes and the database.
            now_ms = int(self._clock.seconds() * 1000)
            expired = FailedFilter(failed_before=now_ms - definition.failed_job_ttl * 1000)
            await self._remove(definition.table, expired)
        if definition.failed_job_limit and self._wanted():
            cutoff = await self._store.failed_cutoff(definition.table,
                                                     definition.failed_job_limit)
            if cutoff is not None:
                await self._remove(definition.table, FailedFilter(up_to=cutoff))

    async def _remove(self, table: str, selection: FailedFilter) -> None:
        while self._wanted():
            removed = await self._store.delete_failed_matching(table, selection, PRUNE_BATCH)
            self._stats.failures_pruned += removed
            if removed < PRUNE_BATCH:
                return


class UniqueKeyPruner(Pruner):
    """Forgets the unique keys older than the queue's ``unique_window`` (all of them at
    window 0): at most one window and ``MAX_INTERVAL`` late. Always asked for: keys may
    have been stored by any node, at any earlier window."""

    what = "the unique keys"

    def _settings(self, definition: QueueDefinition) -> object:
        return definition.unique_window

    def _interval(self) -> float:
        return min(MAX_INTERVAL, max(MIN_INTERVAL, float(self._definition.unique_window)))

    async def _prune(self) -> None:
        while self._wanted():
            definition = self._definition
            removed = await self._store.prune_unique_keys(
                definition.table, definition.unique_window, PRUNE_BATCH)
            self._stats.unique_keys_pruned += removed
            if removed < PRUNE_BATCH:
                return
