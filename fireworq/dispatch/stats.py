"""Per-queue counters of this node: the stats of docs/api.md, Queue stats object and the metric
histograms."""

from __future__ import annotations

import bisect
from typing import Sequence

import attrs
from twisted.internet.interfaces import IReactorTime

DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
LATENCY_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 21600, 86400,
)


class RateWindow:
    """Events in the last second, counted in 20 steps of 50 ms."""

    _STEPS = 20
    # Steps per second. Multiplying by it, not dividing by 0.05, puts a time on a step's
    # boundary in that step: 0.15 / 0.05 is 2.9999999999999996, 0.15 * 20 is 3.0000000000000004.
    _PER_SECOND = 20

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._counts = [0] * self._STEPS
        self._slot_of = [-1] * self._STEPS

    def add(self, count: int = 1) -> None:
        slot = int(self._clock.seconds() * self._PER_SECOND)
        index = slot % self._STEPS
        if self._slot_of[index] != slot:
            self._slot_of[index] = slot
            self._counts[index] = 0
        self._counts[index] += count

    def per_second(self) -> int:
        newest = int(self._clock.seconds() * self._PER_SECOND)
        return sum(
            count
            for count, slot in zip(self._counts, self._slot_of)
            if newest - self._STEPS < slot <= newest
        )


@attrs.frozen
class HistogramSnapshot:
    """A histogram at one moment: (upper bound label, cumulative count) pairs ending with
    ``+Inf``, and the sum of the values observed."""

    buckets: tuple[tuple[str, int], ...]
    total: float


class Histogram:
    """Cumulative-bucket histogram in Prometheus' shape, without its global registry."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound label, cumulative count) pairs, ending with ``+Inf``."""
        running, result = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self._counts):
            running += count
            result.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return result

    @property
    def count(self) -> int:
        return sum(self._counts)

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(tuple(self.cumulative()), self.total)


@attrs.frozen
class QueueSnapshot:
    """One queue's figures on this node at one moment, read-only: the stats of docs/api.md,
    Queue stats object, and what ``/metrics`` shows."""

    total_pushes: int
    total_pops: int
    total_successes: int
    total_failures: int
    total_permanent_failures: int
    total_completes: int
    total_elapsed: int
    worker_failure_outcomes: int
    pushes_per_second: int
    pops_per_second: int
    #: Grabbed jobs waiting for a throttle token.
    outstanding_jobs: int
    #: Worker slots taken: deliveries, throttle waits and outcome writes in progress.
    busy: int
    #: Whether this node is the queue's active node.
    active: bool
    #: ``max_workers`` on the active node, else 0.
    total_workers: int
    idle_workers: int
    delivery_seconds: HistogramSnapshot
    latency_seconds: HistogramSnapshot
    #: Whether the queue is paused (its definition says so).
    paused: bool = False
    #: Failure-log entries removed by retention.
    failures_pruned: int = 0
    #: Unique keys forgotten after the queue's ``unique_window``.
    unique_keys_pruned: int = 0
    #: Pushes answered as duplicates of an earlier push with their unique key.
    duplicate_pushes: int = 0


class QueueStats:
    """Counters of one queue on this node; kept across definition changes."""

    def __init__(self, clock: IReactorTime) -> None:
        self.total_pushes = 0
        self.total_pops = 0
        self.total_successes = 0
        self.total_failures = 0
        self.total_permanent_failures = 0
        self.total_completes = 0
        self.total_elapsed = 0
        self.worker_failure_outcomes = 0  # finished by the worker's permanent-failure
        self.failures_pruned = 0  # failure-log entries removed by retention
        self.unique_keys_pruned = 0  # unique keys older than the window, forgotten
        self.duplicate_pushes = 0  # pushes that found their unique key: nothing stored
        self.pushes = RateWindow(clock)
        self.pops = RateWindow(clock)
        self.delivery_seconds = Histogram(DELIVERY_BUCKETS)
        self.latency_seconds = Histogram(LATENCY_BUCKETS)

    def pushed(self, count: int = 1) -> None:
        self.total_pushes += count
        self.pushes.add(count)

    def popped(self, count: int) -> None:
        self.total_pops += count
        self.pops.add(count)

    def snapshot(
        self, *, active: bool, max_workers: int, busy: int, waiting_for_token: int,
        paused: bool = False,
    ) -> QueueSnapshot:
        """These counters with the dispatcher's slots (given by the dispatcher)."""
        total_workers = max_workers if active else 0
        return QueueSnapshot(
            total_pushes=self.total_pushes,
            total_pops=self.total_pops,
            total_successes=self.total_successes,
            total_failures=self.total_failures,
            total_permanent_failures=self.total_permanent_failures,
            total_completes=self.total_completes,
            total_elapsed=self.total_elapsed,
            worker_failure_outcomes=self.worker_failure_outcomes,
            pushes_per_second=self.pushes.per_second(),
            pops_per_second=self.pops.per_second(),
            outstanding_jobs=waiting_for_token,
            busy=busy,
            active=active,
            total_workers=total_workers,
            idle_workers=max(0, total_workers - busy),
            delivery_seconds=self.delivery_seconds.snapshot(),
            latency_seconds=self.latency_seconds.snapshot(),
            paused=paused,
            failures_pruned=self.failures_pruned,
            unique_keys_pruned=self.unique_keys_pruned,
            duplicate_pushes=self.duplicate_pushes,
        )


def snapshot_to_json(snapshot: QueueSnapshot) -> dict[str, object]:
    """A snapshot as JSON, for another process of the node (``snapshot_from_json``)."""
    return attrs.asdict(snapshot, recurse=True)


def snapshot_from_json(value: dict[str, object]) -> QueueSnapshot:
    fields = dict(value)
    for name in ("delivery_seconds", "latency_seconds"):
        histogram: dict[str, object] = fields[name]  # type: ignore[assignment]
        buckets: list[list[object]] = histogram["buckets"]  # type: ignore[assignment]
        fields[name] = HistogramSnapshot(
            tuple((str(label), int(count)) for label, count in buckets),  # type: ignore[call-overload]
            float(histogram["total"]))  # type: ignore[arg-type]
    return QueueSnapshot(**fields)  # type: ignore[arg-type]


def _merge_histograms(histograms: Sequence[HistogramSnapshot]) -> HistogramSnapshot:
    first = histograms[0]
    if any(len(h.buckets) != len(first.buckets) for h in histograms):
        return first  # another version's buckets: not summable
    buckets = tuple((label, sum(h.buckets[i][1] for h in histograms))
                    for i, (label, _) in enumerate(first.buckets))
    return HistogramSnapshot(buckets, sum(h.total for h in histograms))


def merge_snapshots(snapshots: Sequence[QueueSnapshot]) -> QueueSnapshot:
    """One queue's figures for the node from those of each of its processes
    (``--processes``): counters, rates and slots add up; a queue is active on the node when
    one of its processes dispatches it."""
    if len(snapshots) == 1:
        return snapshots[0]
    summed: dict[str, object] = {}
    for field in attrs.fields(QueueSnapshot):
        values = [getattr(s, field.name) for s in snapshots]
        if field.name in ("delivery_seconds", "latency_seconds"):
            summed[field.name] = _merge_histograms(values)
        elif field.type in (bool, "bool"):
            summed[field.name] = any(values)
        else:
            summed[field.name] = sum(values)
    return QueueSnapshot(**summed)  # type: ignore[arg-type]
