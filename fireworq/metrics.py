"""``/metrics`` (docs/api.md, GET /metrics): the node's counters in the Prometheus text format.

The numbers already live in each queue's ``QueueStats``; a registry is built per scrape
around them (no global registry, no ``_created`` series), plus prometheus-client's process
collector. Store-backed gauges come from the last reading of the store's counts, which
``fireworq.storecounts`` takes at most every few seconds.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from fireworq.dispatch.stats import QueueSnapshot
from fireworq.model import StateCounts

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class _Snapshot:
    """A one-scrape collector over the dispatchers and the store counts."""

    def __init__(
        self, snapshots: Mapping[str, QueueSnapshot], tables: Mapping[str, str],
        counts: Mapping[str, StateCounts] | None,
    ) -> None:
        self._snapshots = snapshots
        self._tables = tables
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        queues = sorted(self._snapshots.items())
        pushed = CounterMetricFamily(
            "fireworq_jobs_pushed", "Jobs accepted by pushes to this node.", labels=["queue"])
        popped = CounterMetricFamily(
            "fireworq_jobs_popped", "Jobs grabbed by this node.", labels=["queue"])
        completed = CounterMetricFamily(
            "fireworq_jobs_completed", "Jobs finished by this node, by outcome.",
            labels=["queue", "outcome"])
        failures = CounterMetricFamily(
            "fireworq_job_failures", "Failed delivery attempts.", labels=["queue"])
        delivery = HistogramMetricFamily(
            "fireworq_delivery_duration_seconds",
            "Duration of each attempt's worker exchange.", labels=["queue"])
        latency = HistogramMetricFamily(
            "fireworq_job_latency_seconds",
            "Time from a job's creation to its completion.", labels=["queue"])
        workers = GaugeMetricFamily(
            "fireworq_queue_workers", "Worker slots of this node by state.",
            labels=["queue", "state"])
        active = GaugeMetricFamily(
            "fireworq_queue_active", "1 if this node is the queue's active node.",
            labels=["queue"])
        jobs = GaugeMetricFamily(
            "fireworq_queue_jobs", "Jobs in the store by state.", labels=["queue", "state"])
        failed = GaugeMetricFamily(
            "fireworq_failed_jobs", "Entries in the queue's failure log.", labels=["queue"])
        paused = GaugeMetricFamily(
            "fireworq_queue_paused", "1 if the queue is paused (as this node knows it).",
            labels=["queue"])
        pruned = CounterMetricFamily(
            "fireworq_failed_jobs_pruned",
            "Failure-log entries removed by this node for the queue's retention settings.",
            labels=["queue"])
        keys_pruned = CounterMetricFamily(
            "fireworq_unique_keys_pruned",
            "Unique keys of pushes forgotten by this node after the queue's unique_window.",
            labels=["queue"])
        duplicates = CounterMetricFamily(
            "fireworq_duplicate_pushes",
            "Pushes through this node that found their unique key: nothing was stored.",
            labels=["queue"])
        for name, stats in queues:
            pushed.add_metric([name], stats.total_pushes)
            popped.add_metric([name], stats.total_pops)
            worker_failures = stats.worker_failure_outcomes
            completed.add_metric([name, "success"], stats.total_successes)
            completed.add_metric([name, "permanent_failure"], worker_failures)
            completed.add_metric(
                [name, "failure"], stats.total_permanent_failures - worker_failures)
            failures.add_metric([name], stats.total_failures)
            delivery.add_metric(
                [name], list(stats.delivery_seconds.buckets), stats.delivery_seconds.total)
            latency.add_metric(
                [name], list(stats.latency_seconds.buckets), stats.latency_seconds.total)
            workers.add_metric([name, "total"], stats.total_workers)
            workers.add_metric([name, "idle"], stats.idle_workers)
            active.add_metric([name], 1 if stats.active else 0)
            paused.add_metric([name], 1 if stats.paused else 0)
            pruned.add_metric([name], stats.failures_pruned)
            keys_pruned.add_metric([name], stats.unique_keys_pruned)
            duplicates.add_metric([name], stats.duplicate_pushes)
            if self._counts is not None:
                counts = self._counts.get(self._tables.get(name, ""), StateCounts())
                jobs.add_metric([name, "waiting"], counts.waiting)
                jobs.add_metric([name, "deferred"], counts.deferred)
                jobs.add_metric([name, "grabbed"], counts.grabbed)
                failed.add_metric([name], counts.failed)
        store_up = GaugeMetricFamily(
            "fireworq_store_up", "1 if the store answered this scrape's reads.")
        store_up.add_metric([], 1 if self._counts is not None else 0)
        families: list[Metric] = [
            pushed, popped, completed, failures, delivery, latency, workers, active, store_up,
            paused, pruned, keys_pruned, duplicates,
        ]
        if self._counts is not None:
            families += [jobs, failed]
        return families


def process_figures() -> dict[str, float]:
    """This process's samples of prometheus-client's process collector, by name."""
    return {sample.name: float(sample.value)
            for family in ProcessCollector(registry=None).collect()
            for sample in family.samples}


def node_process_figures(parts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The process figures of a node of several processes (``--processes``): CPU time,
    memory and open files add up; it started when its first process did; the limit of open
    files is each process's own (the first part's: this process's)."""
    merged = dict(parts[0])
    for part in parts[1:]:
        for name, value in part.items():
            if name not in merged:
                continue
            if name == "process_start_time_seconds":
                merged[name] = min(merged[name], value)
            elif name != "process_max_fds":
                merged[name] += value
    return merged


class _NodeProcess:
    """prometheus-client's process collector with the node's figures in its samples."""

    def __init__(self, figures: Mapping[str, float]) -> None:
        self._figures = figures

    def collect(self) -> Iterable[Metric]:
        for family in ProcessCollector(registry=None).collect():
            node = Metric(family.name, family.documentation, family.type)
            for sample in family.samples:
                node.add_sample(sample.name, sample.labels,
                                self._figures.get(sample.name, sample.value))
            yield node


def render_metrics(
    snapshots: Mapping[str, QueueSnapshot], tables: Mapping[str, str],
    counts: Mapping[str, StateCounts] | None,
    process: Mapping[str, float] | None = None,
) -> bytes:
    """``snapshots`` and ``tables`` (each queue's job table) by queue name; ``process``:
    the node's process figures (``node_process_figures``), this process's when not given."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(snapshots, tables, counts))
    registry.register(_NodeProcess(process or {}))
    output: bytes = generate_latest(registry)
    return output
