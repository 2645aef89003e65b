"""The life of each queue on this node, the same on every driver.

::

    waiting ──lock taken──▶ recovering ──orphans recovered──▶ dispatching
                               │    ▲
                        failed ▼    │ after 1, 2, 5, 10, 20, then every 30 s
                              retrying

    recovering, retrying, dispatching ──lock lost, store away, queue removed──▶ waiting

Once a second the ``LockDriver`` is asked to keep the locks held and to try the others.
A queue whose lock this node takes first recovers its orphan jobs (grabbed, with no
delivery in flight here), and only then is dispatched. A recovery that fails is retried
for as long as the lock is held, never given up in silence: each failure is in the error
log and in ``/queue/{q}/node`` (``status``). While dispatching, the same recovery runs again
every ``SWEEP_INTERVAL`` seconds: a job whose outcome this node could not write does not stay
``grabbed`` until the next restart.

Other parts hook in here: ``subscribe`` tells every change of a queue's state (a job that
must run only on the active node, such as pruning, starts at ``dispatching`` and stops at
any other state), and ``dispatching(q)`` says whether this node delivers the queue now.
"""

from __future__ import annotations

import functools
from enum import Enum
from typing import Awaitable, Callable, Collection, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from fireworq.cluster import LockDriver
from fireworq.errors import StoreUnavailable
from fireworq.model import InFlight, Node

log = Logger()

#: Seconds between two lock checks: a backup takes a queue over about this long after the
#: old node's lock is gone.
CHECK_INTERVAL = 1.0
#: Seconds between two looks, while dispatching, for jobs grabbed with nothing in flight.
SWEEP_INTERVAL = 60.0
#: Seconds a process of a node of several (``--processes``) leaves a newly watched queue
#: that it does not prefer to the process that does, before competing for it too.
PREFERENCE_GRACE = 5.0
#: Seconds before each new attempt at a failed recovery; the last one repeats.
RECOVERY_RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0)


def recovery_retry_delay(failures: int) -> float:
    """The wait after the ``failures``-th failed recovery in a row (1-based)."""
    return RECOVERY_RETRY_DELAYS[min(failures, len(RECOVERY_RETRY_DELAYS)) - 1]


class OwnershipState(Enum):
    WAITING = "waiting"  # for the lock: another node (or none) is the active node
    RECOVERING = "recovering"  # lock held, orphan recovery running
    RETRYING = "retrying"  # lock held, recovery failed, next attempt scheduled
    DISPATCHING = "dispatching"  # this node is the queue's active node


@attrs.frozen
class OwnershipStatus:
    """A queue's state on this node; ``failures`` and ``error`` tell about the recoveries
    that failed since the lock was taken (the last one's reason)."""

    state: OwnershipState
    failures: int = 0
    error: str | None = None


class Dispatch(Protocol):
    """What ownership drives: the dispatcher of one queue."""

    @property
    def table(self) -> str: ...

    def set_owned(self, owned: bool) -> None:
        """Whether this node holds the queue's lock (completion writes retry meanwhile)."""
        ...

    def set_active(self, active: bool) -> None:
        """Whether to grab and deliver."""
        ...

    def exclusive(
        self, action: Callable[[Collection[InFlight]], Awaitable[int]]
    ) -> Deferred[int]:
        """Run ``action`` with the deliveries in flight while no grab runs."""
        ...


#: Called with (queue name, new state) at every change.
OwnershipListener = Callable[[str, OwnershipState], None]


@attrs.define(eq=False)
class _Queue:
    name: str
    dispatch: Dispatch
    state: OwnershipState = OwnershipState.WAITING
    failures: int = 0
    error: str | None = None
    #: Bumped at every change of state: what a recovery or sweep begun in an earlier turn
    #: finds is no longer acted on.
    turn: int = 0
    retry: IDelayedCall | None = None
    next_sweep: float = 0.0
    sweeping: bool = False
    watched_since: float = 0.0


class QueueOwnership:
    """The queues this node watches, each in one ``OwnershipState``."""

    def __init__(
        self, driver: LockDriver, clock: IReactorTime, *,
        check_interval: float = CHECK_INTERVAL, sweep_interval: float = SWEEP_INTERVAL,
        preferred: Callable[[str], bool] | None = None,
        preference_grace: float = PREFERENCE_GRACE,
    ) -> None:
        """``preferred(queue name)``: with several processes on one node, whether this
        process should be the one dispatching the queue (the others compete for its lock
        only ``preference_grace`` seconds after they started watching it), so that the
        queues spread over the processes."""
        self._driver = driver
        self._preferred = preferred
        self._preference_grace = preference_grace
        self._clock = clock
        self._check_interval = check_interval
        self._sweep_interval = sweep_interval
        self._queues: dict[str, _Queue] = {}
        self._listeners: list[OwnershipListener] = []
        self._loop = LoopingCall(self._check)
        self._loop.clock = clock
        self._soon: IDelayedCall | None = None
        self._checking = False
        self._again = False
        #: Bumped when the driver reports every lock lost: a check that began before
        #: may have seen them held.
        self._epoch = 0
        self._stopped = False
        driver.on_lost(self._lost)

    # Lifetime

    def start(self) -> None:
        self._loop.start(self._check_interval, now=True).addErrback(
            lambda f: log.failure("Queue lock checks stopped", f)
        )

    def stop(self) -> Deferred[None]:
        """Give up every queue and its lock (once the dispatchers have finished)."""
        self._stopped = True
        if self._loop.running:
            self._loop.stop()
        if self._soon is not None and self._soon.active():
            self._soon.cancel()
        self._soon = None
        for queue in self._sorted():
            self._enter(queue, OwnershipState.WAITING)
        return Deferred.fromCoroutine(self._driver.close())

    # Queues

    def watch(self, name: str, dispatch: Dispatch) -> None:
        """Compete for the queue's lock; once it is held, recover and let ``dispatch`` run."""
        previous = self._queues.get(name)
        if previous is not None:
            self._enter(previous, OwnershipState.WAITING)
        self._queues[name] = _Queue(name, dispatch, watched_since=self._clock.seconds())
        self._check_soon()

    def unwatch(self, name: str) -> None:
        """Stop dispatching the queue and give up its lock."""
        queue = self._queues.pop(name, None)
        if queue is None:
            return
        self._enter(queue, OwnershipState.WAITING)
        Deferred.fromCoroutine(self._driver.release(name)).addErrback(
            lambda f: log.failure("Releasing the lock of {queue} failed", f, queue=name)
        )

    def subscribe(self, listener: OwnershipListener) -> None:
        """Call ``listener(queue name, state)`` at every change of a queue's state."""
        self._listeners.append(listener)

    def status(self, name: str) -> OwnershipStatus | None:
        queue = self._queues.get(name)
        if queue is None:
            return None
        return OwnershipStatus(queue.state, queue.failures, queue.error)

    def dispatching(self, name: str) -> bool:
        queue = self._queues.get(name)
        return queue is not None and queue.state is OwnershipState.DISPATCHING

    async def node(self, name: str) -> Node | None:
        """The queue's lock holder, ``None`` when nobody holds it."""
        return await self._driver.holder(name)

    def _sorted(self) -> list[_Queue]:
        return [self._queues[name] for name in sorted(self._queues)]

    # States

    def _enter(self, queue: _Queue, state: OwnershipState) -> None:
        previous = queue.state
        queue.turn += 1
        if queue.retry is not None and queue.retry.active():
            queue.retry.cancel()
        queue.retry = None
        queue.state = state
        if state is OwnershipState.WAITING:
            queue.failures, queue.error = 0, None
            queue.dispatch.set_active(False)
            queue.dispatch.set_owned(False)
            if previous is not OwnershipState.WAITING:
                log.info("This node is no longer the active node of queue {queue}",
                         queue=queue.name)
        elif state is OwnershipState.RECOVERING and previous is OwnershipState.WAITING:
            queue.dispatch.set_owned(True)
            log.debug("This node holds the lock of queue {queue}: recovering its orphan jobs",
                      queue=queue.name)
        elif state is OwnershipState.DISPATCHING:
            if queue.failures:
                log.info("Queue {queue} taken over after {failures} failed recoveries",
                         queue=queue.name, failures=queue.failures)
            queue.failures, queue.error = 0, None
            queue.next_sweep = self._clock.seconds() + self._sweep_interval
            queue.dispatch.set_active(True)
            log.info("This node is now the active node of queue {queue}", queue=queue.name)
        if state is not previous:
            for listener in list(self._listeners):
                listener(queue.name, state)

    def _lost(self) -> None:
        # Every lock went with the driver's session: stop at once, look again soon.
        self._epoch += 1
        if self._owns_any():
            log.warn("The database session holding this node's queue locks ended: dispatching"
                     " paused until they are taken again")
        self._lose_all()
        self._check_soon()

    def _owns_any(self) -> bool:
        return any(q.state is not OwnershipState.WAITING for q in self._queues.values())

    def _lose_all(self) -> None:
        for queue in self._sorted():
            if queue.state is not OwnershipState.WAITING:
                self._enter(queue, OwnershipState.WAITING)

    # Checks

    def _check_soon(self) -> None:
        if self._stopped:
            return
        if self._checking:
            self._again = True
        elif self._soon is None:
            self._soon = self._clock.callLater(0, self._check_now)

    def _check_now(self) -> None:
        self._soon = None
        Deferred.fromCoroutine(self._check())

    async def _check(self) -> None:
        if self._stopped or self._checking:
            return
        self._checking = True
        try:
            await self._check_locks()
        except Exception:
            log.failure("Checking queue locks failed")
        finally:
            self._checking = False
        if self._again:
            self._again = False
            self._check_soon()

    async def _check_locks(self) -> None:
        epoch = self._epoch
        owned = self._owns_any()
        watched = {name: queue.dispatch.table for name, queue in self._queues.items()
                   if self._competes(queue)}
        try:
            held = await self._driver.check(watched)
        except StoreUnavailable as e:
            if owned:
                log.warn("Lost contact with the database ({reason}): dispatching paused",
                         reason=e.reason)
            self._lose_all()
            return
        except Exception:
            log.failure("Checking queue locks failed; nothing is dispatched until a check works")
            self._lose_all()
            return
        if self._stopped:
            return
        if epoch != self._epoch:
            self._again = True  # lost meanwhile: this answer may be older than the loss
            return
        for name, queue in list(self._queues.items()):
            if name not in watched:
                continue  # watched meanwhile: the next check asks
            if name in held:
                if queue.state is OwnershipState.WAITING:
                    self._enter(queue, OwnershipState.RECOVERING)
                    self._start_recovery(queue)
            elif queue.state is not OwnershipState.WAITING:
                self._enter(queue, OwnershipState.WAITING)
        self._sweep_due()

    def _competes(self, queue: _Queue) -> bool:
        return (self._preferred is None or queue.state is not OwnershipState.WAITING
                or self._preferred(queue.name)
                or self._clock.seconds() - queue.watched_since >= self._preference_grace)

    # Recovery

    def _recover_orphans(self, queue: _Queue) -> Deferred[int]:
        return queue.dispatch.exclusive(
            functools.partial(self._driver.recover, queue.dispatch.table))

    def _start_recovery(self, queue: _Queue) -> None:
        turn = queue.turn
        self._recover_orphans(queue).addCallbacks(
            self._recovered, self._recovery_failed, callbackArgs=(queue, turn),
            errbackArgs=(queue, turn),
        ).addErrback(self._bug, "Taking queue {queue} over failed", queue.name)

    def _recovered(self, recovered: int, queue: _Queue, turn: int) -> None:
        if queue.turn != turn:
            return
        if recovered:
            log.info("Recovered {count} orphan job(s) of queue {queue}", count=recovered,
                     queue=queue.name)
        self._enter(queue, OwnershipState.DISPATCHING)

    def _recovery_failed(self, failure: Failure, queue: _Queue, turn: int) -> None:
        if queue.turn != turn:
            return
        error = failure.value
        failures = queue.failures + 1
        delay = recovery_retry_delay(failures)
        self._enter(queue, OwnershipState.RETRYING)
        queue.failures = failures
        if isinstance(error, StoreUnavailable):
            queue.error = error.reason
            log.error(
                "Cannot take queue {queue} over: recovering its orphan jobs failed ({reason});"
                " it is not dispatched until that succeeds. Failed {failures} time(s);"
                " next attempt in {delay:g} s", queue=queue.name, reason=error.reason,
                failures=failures, delay=delay)
        else:
            queue.error = "%s: %s" % (type(error).__name__, error)
            log.failure(
                "Cannot take queue {queue} over: recovering its orphan jobs failed; it is not"
                " dispatched until that succeeds. Failed {failures} time(s); next attempt in"
                " {delay:g} s", failure, queue=queue.name, failures=failures, delay=delay)
        queue.retry = self._clock.callLater(delay, self._retry, queue, queue.turn)

    def _retry(self, queue: _Queue, turn: int) -> None:
        queue.retry = None
        if queue.turn != turn or self._queues.get(queue.name) is not queue:
            return
        self._enter(queue, OwnershipState.RECOVERING)
        self._start_recovery(queue)

    # Sweeps

    def _sweep_due(self) -> None:
        now = self._clock.seconds()
        for queue in self._sorted():
            if (queue.state is OwnershipState.DISPATCHING and not queue.sweeping
                    and now >= queue.next_sweep):
                queue.sweeping = True
                self._recover_orphans(queue).addBoth(self._swept, queue)

    def _bug(self, failure: Failure, message: str, name: str) -> None:
        log.failure(message, failure, queue=name)

    def _swept(self, outcome: int | Failure, queue: _Queue) -> None:
        queue.sweeping = False
        queue.next_sweep = self._clock.seconds() + self._sweep_interval
        if isinstance(outcome, Failure):
            if outcome.check(StoreUnavailable):
                log.warn("Cannot look for jobs of queue {queue} left grabbed: {reason}",
                         queue=queue.name, reason=outcome.value.reason)  # type: ignore[union-attr]
            else:
                log.failure("Looking for jobs of queue {queue} left grabbed failed", outcome,
                            queue=queue.name)
        elif outcome:
            log.warn("Set {count} job(s) of queue {queue} back to waiting: grabbed, but no"
                     " delivery of them was in progress here (their outcome could not be"
                     " written)", count=outcome, queue=queue.name)
