"""Deliveries handed to the other processes of a node (``fireworq.delivery.spread``): each
process in one test process, on real peer links, with stand-in deliverers. Which process
delivers, what comes back, and every case where the dispatching process delivers itself."""

from __future__ import annotations

import secrets
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fireworq.delivery import spread as spread_module
from fireworq.delivery.spread import SpreadDeliverer, job_from_wire, job_to_wire
from fireworq.model import Job, JobOptions, JobStatus, QueueDefinition, WorkerResult
from fireworq.peers import PeerLink

reactor: Any = _reactor
QUEUE = QueueDefinition(name="q", polling_interval=200, max_workers=10,
                        headers=(("X-Team", "blue"),))


def job(n: int, payload: bytes = b'{"n": 1}') -> Job:
    return Job(id=n, category="c", url="http://127.0.0.1:1/w", payload=payload,
               status=JobStatus.GRABBED, created_at=5, next_try=6, retry_count=2,
               retry_delay=3, fail_count=1, timeout=30, grabber_id=7,
               options=JobOptions(retry_jitter=True, headers=(("X-A", "1"),)))


class StandIn:
    """Answers every delivery with a result naming this process, at once or when told."""

    def __init__(self, name: str, hold: bool = False) -> None:
        self.name = name
        self.hold = hold
        self.delivered: list[tuple[Job, QueueDefinition | None]] = []
        self.held: list[Deferred[WorkerResult]] = []

    async def deliver(self, job: Job, queue: QueueDefinition | None = None) -> WorkerResult:
        self.delivered.append((job, queue))
        if self.hold:
            waiting: Deferred[WorkerResult] = Deferred()
            self.held.append(waiting)
            return await waiting
        return WorkerResult("success", 200, "by " + self.name, retry_after=1.5)


class JobCodecTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        for payload in (b'{"n": 1}', "\u00e9\u2603".encode(), bytes(range(256))):
            self.assertEqual(job_from_wire(job_to_wire(job(1, payload))), job(1, payload))


class SpreadTests(TestCase):
    def node(self, count: int, hold: bool = False, hold_here: bool = False,
             definitions: dict[int, QueueDefinition | None] | None = None
             ) -> list[tuple[SpreadDeliverer, StandIn, PeerLink]]:
        group = secrets.token_hex(8)
        made = []
        for slot in range(count):
            link = PeerLink(reactor, group, slot, count)
            link.start()
            self.addCleanup(link.stop)
            local = StandIn("p%d" % (slot + 1), hold=hold and (slot > 0 or hold_here))
            known = (definitions or {}).get(slot, QUEUE)
            made.append((SpreadDeliverer(reactor, local, link, lambda _, d=known: d),
                         local, link))
        return made

    async def _spread(self) -> None:
        self.patch(spread_module, "LOCAL_WEIGHT", 2)
        node = self.node(3, hold=True, hold_here=True)
        spread, here, _ = node[0]
        deliveries = [Deferred.fromCoroutine(spread.deliver(job(n), QUEUE)) for n in range(8)]
        for _ in range(100):
            if len(node[1][1].held) + len(node[2][1].held) + len(here.delivered) == 8:
                break
            await _turn()
        # Its deliveries counting double here, 8 deliveries go 2 here, 3 and 3 elsewhere.
        self.assertEqual((len(here.delivered), len(node[1][1].held), len(node[2][1].held)),
                         (2, 3, 3))
        received, queue = node[1][1].delivered[0]
        self.assertEqual(queue, QUEUE)
        self.assertIn(received, [job(n) for n in range(8)])
        for _, stand_in, _ in node:
            for n, waiting in enumerate(stand_in.held):
                waiting.callback(WorkerResult("failure", 500, stand_in.name, retry_after=2.0))
        results = [await d for d in deliveries]
        self.assertEqual(sorted(r.message for r in results), ["p1"] * 2 + ["p2"] * 3 + ["p3"] * 3)
        self.assertEqual({r.retry_after for r in results}, {2.0})

    def test_deliveries_go_to_the_least_busy_process(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._spread())

    async def _local_cases(self) -> None:
        # Process 2 knows another definition of the queue; process 3 is not there.
        changed = QueueDefinition(name="q", polling_interval=200, max_workers=10)
        node = self.node(3, definitions={1: changed})
        spread, here, _ = node[0]
        await node[2][2].stop()
        for n in range(6):
            result = await spread.deliver(job(n), QUEUE)
            self.assertEqual(result.message, "by p1")
        self.assertEqual(len(here.delivered), 6)
        self.assertEqual(node[1][1].delivered, [])
        # Without a queue (tools, tests) nothing is handed over.
        await spread.deliver(job(9))
        self.assertEqual(len(here.delivered), 7)

    def test_delivered_here_when_another_process_cannot_take_it(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._local_cases())

    async def _gone(self) -> None:
        node = self.node(2, hold=True)
        spread, here, _ = node[0]
        first = Deferred.fromCoroutine(spread.deliver(job(1), QUEUE))  # process 2, held
        for _ in range(100):
            if node[1][1].held:
                break
            await _turn()
        self.assertEqual(len(node[1][1].held), 1)
        await node[1][2].stop()  # process 2 goes away with the delivery in progress
        self.assertEqual((await first).message, "by p1")
        self.assertEqual([j.id for j, _ in here.delivered], [1])
        self.flushLoggedErrors()

    def test_delivered_again_here_when_the_other_process_goes_away(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._gone())

    async def _stopping(self) -> None:
        node = self.node(2, hold=True, hold_here=True)
        spread, here, _ = node[0]
        other_spread, other, _ = node[1]
        first = Deferred.fromCoroutine(spread.deliver(job(1), QUEUE))  # to process 2
        for _ in range(100):
            if other.held:
                break
            await _turn()
        stopped = other_spread.stop_serving()
        self.assertFalse(stopped.called)  # its delivery in progress is finished first
        second = Deferred.fromCoroutine(spread.deliver(job(2), QUEUE))  # here
        third = Deferred.fromCoroutine(spread.deliver(job(3), QUEUE))  # refused: here too
        for _ in range(100):
            if len(here.held) == 2:
                break
            await _turn()
        self.assertEqual([j.id for j, _ in here.delivered], [2, 3])
        for waiting in [*here.held, *other.held]:
            waiting.callback(WorkerResult("success", 200, "done"))
        await first, await second, await third
        await stopped
        self.assertEqual([j.id for j, _ in other.delivered], [1])

    def test_a_stopping_process_finishes_what_it_took_and_takes_no_more(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stopping())


async def _turn() -> None:
    from twisted.internet.task import deferLater
    await deferLater(reactor, 0.01, lambda: None)
