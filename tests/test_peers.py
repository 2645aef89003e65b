"""The local channel between the processes of a node (``fireworq.peers``) and what they tell
each other over it (``fireworq.nodewide``): calls answered, messages told, a process that is
not there or does not answer, and node-wide figures added up from each process's."""

from __future__ import annotations

import secrets
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fireworq.dispatch.stats import (
    QueueStats,
    merge_snapshots,
    snapshot_from_json,
    snapshot_to_json,
)
from fireworq.metrics import node_process_figures
from fireworq.nodewide import NodeFigures, WakeOthers
from fireworq.peers import PeerError, PeerLink

reactor: Any = _reactor


def _snapshot(pushes: int, *, active: bool, busy: int = 0, delivery: float = 0.2) -> Any:
    stats = QueueStats(reactor)
    stats.pushed(pushes)
    stats.delivery_seconds.observe(delivery)
    return stats.snapshot(active=active, max_workers=10, busy=busy, waiting_for_token=0)


class SnapshotTests(SynchronousTestCase):
    def test_json_round_trip(self) -> None:
        snapshot = _snapshot(3, active=True, busy=2)
        self.assertEqual(snapshot_from_json(snapshot_to_json(snapshot)), snapshot)

    def test_merge_adds_counters_and_counts_slots_of_the_active_process(self) -> None:
        merged = merge_snapshots([_snapshot(3, active=True, busy=4),
                                  _snapshot(5, active=False, delivery=2.0)])
        self.assertEqual(merged.total_pushes, 8)
        self.assertTrue(merged.active)
        self.assertEqual((merged.total_workers, merged.idle_workers, merged.busy), (10, 6, 4))
        self.assertEqual(dict(merged.delivery_seconds.buckets)["0.25"], 1)
        self.assertEqual(dict(merged.delivery_seconds.buckets)["+Inf"], 2)
        self.assertAlmostEqual(merged.delivery_seconds.total, 2.2)

    def test_process_figures(self) -> None:
        merged = node_process_figures([
            {"process_cpu_seconds_total": 1.5, "process_start_time_seconds": 200.0,
             "process_max_fds": 1024.0, "process_resident_memory_bytes": 10.0},
            {"process_cpu_seconds_total": 2.0, "process_start_time_seconds": 100.0,
             "process_max_fds": 4096.0, "process_resident_memory_bytes": 5.0},
        ])
        self.assertEqual(merged, {
            "process_cpu_seconds_total": 3.5, "process_start_time_seconds": 100.0,
            "process_max_fds": 1024.0, "process_resident_memory_bytes": 15.0})


class PeerLinkTests(TestCase):
    def links(self, count: int) -> list[PeerLink]:
        group = secrets.token_hex(8)
        made = [PeerLink(reactor, group, slot, count) for slot in range(count)]
        for link in made:
            link.start()
            self.addCleanup(link.stop)
        return made

    async def _call_and_tell(self) -> None:
        first, second = self.links(2)
        second.handle("add", lambda body: body[0] + body[1])
        second.handle("later", _later)  # a coroutine
        second.handle("fails", lambda body: 1 / 0)
        told: Deferred[Any] = Deferred()
        second.handle("note", told.callback)
        self.assertEqual(await first.call(1, "add", (2, 3), 5), 5)
        self.assertEqual(await first.call(1, "later", b"\x00\xff", 5), {"got": b"\x00\xff"})
        first.tell(1, "note", "é\u2603")
        self.assertEqual(await told, "é\u2603")
        with self.assertRaises(PeerError) as raised:
            await first.call(1, "nothing", None, 5)
        self.assertIn("unknown op", str(raised.exception))
        with self.assertRaises(PeerError) as raised:
            await first.call(1, "fails", None, 5)
        self.assertIn("division by zero", str(raised.exception))

    def test_call_and_tell(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._call_and_tell())

    async def _failures(self) -> None:
        first, second, third = self.links(3)
        await second.stop()  # process 2 is away
        with self.assertRaises(PeerError) as raised:
            await first.call(1, "x", None, 5)
        self.assertFalse(raised.exception.sent)
        third.handle("slow", lambda _: Deferred())  # process 3 never answers
        with self.assertRaises(PeerError) as raised:
            await first.call(2, "slow", None, 0.2)
        self.assertTrue(raised.exception.sent)
        self.assertIn("did not answer", str(raised.exception))

    def test_a_process_away_or_silent_fails_the_call(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._failures())

    async def _figures(self) -> None:
        first, second = self.links(2)
        woken: list[str] = []
        WakeOthers(reactor, second, woken.append)
        wakes = WakeOthers(reactor, first, lambda name: None)
        ours = NodeFigures(first, lambda: {"q": _snapshot(2, active=False),
                                           "only-here": _snapshot(1, active=False)})
        NodeFigures(second, lambda: {"q": _snapshot(3, active=True),
                                     "only-there": _snapshot(1, active=True)})
        snapshots = await ours.snapshots()
        self.assertEqual(sorted(snapshots), ["only-here", "q"])
        self.assertEqual(snapshots["q"].total_pushes, 5)
        self.assertEqual(snapshots["q"].total_workers, 10)
        merged, process = await ours.with_process()
        self.assertEqual(merged, snapshots)
        self.assertGreater(process["process_resident_memory_bytes"], 0)
        wakes.wake_elsewhere("q")
        wakes.wake_elsewhere("r")
        for _ in range(50):
            if woken:
                break
            await Deferred.fromCoroutine(_turn())
        self.assertEqual(woken, ["q", "r"])

    def test_figures_and_wake_ups(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._figures())


async def _later(body: bytes) -> dict[str, bytes]:
    await _turn()
    return {"got": body}


async def _turn() -> None:
    from twisted.internet.task import deferLater
    await deferLater(reactor, 0.02, lambda: None)
