"""A push answered 503 "not stored" is never stored (issue 8, item 1).

L{QueueManager} on a L{Clock} with a store that stalls for longer than the push deadline
(L{queues.PUSH_TIMEOUT}, 5 s) under a steady push load, then recovers. A stalled store call
waits (as a MySQL push waits for a pool thread or a connection) before it takes its batch;
the one call that was already sending when the stall began (its statement went out) takes
its batch first. Afterwards:

* every push answered 503 "not stored" is absent from the store, every 200 is there with
  the id it was answered, and only the pushes answered "outcome unknown" may be either;
* with a limit on pending pushes, the pushes held never exceed it, and the pushes past it
  are answered at once.
"""

from __future__ import annotations

import io
from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from storage_contract import Taken

from fireworq.cluster.memory import MemoryLocks
from fireworq.cluster.ownership import QueueOwnership
from fireworq.errors import StoreUnavailable
from fireworq.logs import LineWriter, QueueLog
from fireworq.model import JobState, NewJob, Routing
from fireworq.queues import PUSH_TIMEOUT, QueueDefaults, QueueManager
from fireworq.storage.memory import MemoryStore

OUTCOME_UNKNOWN = "outcome unknown, the job may have been stored"
RATE = 128  # pushes per second (a power of 2: the times of the load are exact floats)
STALL_START = 1.0
STALL = 3 * PUSH_TIMEOUT
END = STALL_START + STALL + 2 * PUSH_TIMEOUT


class StallingStore:
    """A L{MemoryStore} whose pushes can be stalled until L{resume}."""

    def __init__(self, clock: Clock) -> None:
        self.memory = MemoryStore(clock)
        self.stalled = False
        #: The next stalled push takes its batch before it stalls (its statement went out).
        self.sending = False
        self._gates: list[Deferred[None]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.memory, name)

    async def push(self, jobs: Sequence[tuple[str, NewJob]], handover: Any = None) -> Any:
        if self.stalled:
            if self.sending and handover is not None:
                self.sending = False
                handover = Taken(handover.take())
            gate: Deferred[None] = Deferred()
            self._gates.append(gate)
            await gate
        return await self.memory.push(jobs, handover)

    def resume(self) -> None:
        self.stalled = False
        gates, self._gates = self._gates, []
        for gate in gates:
            gate.callback(None)


class Never:
    async def deliver(self, job: Any, queue: Any = None) -> Any:
        return Deferred()


class StallTests(SynchronousTestCase):
    def make_manager(self, **options: Any) -> QueueManager:
        self.clock = Clock()
        self.store = StallingStore(self.clock)
        writer = LineWriter(self.clock, "", io.BytesIO())
        ownership = QueueOwnership(MemoryLocks(self.store), self.clock)  # type: ignore[arg-type]
        manager = QueueManager(
            clock=self.clock, store=self.store, ownership=ownership,  # type: ignore[arg-type]
            deliverer=Never(), queue_log=QueueLog(writer, self.clock, "q", "info"),
            defaults=QueueDefaults(polling_interval=200, max_workers=1, default_queue=""),
            refresh_interval=1.0, **options,
        )
        self.successResultOf(Deferred.fromCoroutine(manager.start()))
        definition = manager.resolve("mail", 0, 0, 0.0, 0)
        self.successResultOf(Deferred.fromCoroutine(manager.put_queue(definition)))
        self.successResultOf(Deferred.fromCoroutine(manager.put_routing(Routing("mail", "c"))))

        def stop() -> None:
            stopped = Deferred.fromCoroutine(manager.stop_dispatching(0))
            self.clock.advance(0)
            self.successResultOf(stopped)
            ownership.stop()
            manager.close()
            writer.close()
            self.assertEqual(self.clock.getDelayedCalls(), [])

        self.addCleanup(stop)
        return manager

    def run_load(self, manager: QueueManager, track_held: bool = False
                 ) -> tuple[dict[int, Any], list[int]]:
        """Push RATE a second until END (the store stalled from STALL_START for STALL s);
        each push's outcome by its number, and the pushes held after each push."""
        outcomes: dict[int, Any] = {}
        held: list[int] = []
        self.at_once: set[int] = set()
        step = 1.0 / RATE
        for n in range(int(END * RATE)):
            now = n * step
            if now >= STALL_START and not self.store.stalled and now < STALL_START + STALL:
                self.store.stalled = self.store.sending = True
            if now >= STALL_START + STALL and self.store.stalled:
                self.store.resume()
            self.clock.advance(max(0.0, now - self.clock.seconds()))
            # Far in the future: nothing is delivered, every stored job stays to be found.
            job = NewJob("c", "http://worker/", b"%d" % n, 3600, 0, 0, 0)
            outcomes[n] = None
            manager.push_nowait("c", job).addBoth(lambda outcome, n=n: outcomes.update(
                {n: outcome}))
            if outcomes[n] is not None:
                self.at_once.add(n)
            if track_held:
                held.append(manager.pending_pushes)
        self.clock.advance(PUSH_TIMEOUT + 1)
        return outcomes, held

    def stored(self) -> dict[int, int]:
        """The stored jobs: id by push number."""
        page = self.successResultOf(Deferred.fromCoroutine(
            self.store.memory.list_jobs("mail", JobState.DEFERRED, True, None, 1000000)))
        return {int(job.payload): job.id for job in page.items}

    def test_notStoredMeansAbsent(self) -> None:
        """When the store stalls for longer than the deadline, every push answered 503 "not
        stored" is absent after the recovery; every 200 is stored with its answered id."""
        manager = self.make_manager()
        outcomes, _ = self.run_load(manager)
        stored = self.stored()
        self.assertNotIn(None, outcomes.values(), "pushes without an answer")
        accepted = {n: o.job.id for n, o in outcomes.items() if not isinstance(o, Failure)}
        refused = {n: o.value.reason for n, o in outcomes.items() if isinstance(o, Failure)}
        not_stored = [n for n, reason in refused.items() if reason != OUTCOME_UNKNOWN]
        unknown = [n for n, reason in refused.items() if reason == OUTCOME_UNKNOWN]
        for failure in outcomes.values():
            if isinstance(failure, Failure):
                failure.trap(StoreUnavailable)
        self.assertGreater(len(not_stored), RATE * PUSH_TIMEOUT)
        self.assertEqual({n: stored[n] for n in accepted if n in stored}, accepted)
        leaked = sorted(n for n in not_stored if n in stored)
        self.assertEqual(leaked, [], "%d of %d pushes answered 503 'not stored' were stored"
                                     % (len(leaked), len(not_stored)))
        self.assertEqual(len(unknown), 1)  # the one batch that was being sent
        self.assertEqual(set(stored), set(accepted) | set(unknown))

    def test_pendingBounded(self) -> None:
        """When the store stalls under load with max_pending_pushes set, the pushes held
        never exceed it, and those past it are answered 503 at once."""
        manager = self.make_manager(max_pending_pushes=50)
        outcomes, held = self.run_load(manager, track_held=True)
        self.assertLessEqual(max(held), 50)
        self.assertEqual(max(held), 50)
        full = [n for n, o in outcomes.items() if isinstance(o, Failure)
                and o.value.reason.startswith("50 pushes already wait for the store")]
        for failure in outcomes.values():
            if isinstance(failure, Failure):
                failure.trap(StoreUnavailable)
        self.assertGreater(len(full), RATE * PUSH_TIMEOUT)
        self.assertLessEqual(set(full), self.at_once)
        self.assertFalse(set(full) & set(self.stored()))
        self.assertEqual(manager.pending_pushes, 0)
