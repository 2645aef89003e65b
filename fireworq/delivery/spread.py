"""Deliveries spread over the processes of a node (``--processes N``, docs/performance.md,
"More than one core").

The process dispatching a queue keeps everything that must be exact for the node: the grab,
the worker slots (``max_workers``), the throttle, the outcome write. Only the worker
exchange, the larger part of a job's CPU time, is handed to the process with the fewest
deliveries in flight (this one counting double, as it also grabs and writes), over the peer
link; the result comes back and is written as if delivered here.

A process that cannot be reached, or refuses because it is stopping, or whose queue
definition differs from ours (it has not seen the last change yet), leaves the delivery to
this process. So does a process that goes away or falls silent during a delivery: the job
is delivered again from here without counting an attempt, as a job grabbed by a node that
died is (at least once: the worker may have had it already).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from fireworq.dispatch.dispatcher import Deliverer
from fireworq.model import Job, JobOptions, JobStatus, QueueDefinition, WorkerResult
from fireworq.peers import PeerError, PeerLink

log = Logger()

#: Seconds a delivery handed to another process may take beyond the job's own timeout
#: before the attempt is failed here.
CALL_MARGIN = 10.0
#: A job without a timeout of its own, handed over: how long before it is failed here.
UNBOUNDED_CALL = 3600.0
#: The dispatching process also grabs and writes: its deliveries in flight weigh this much.
LOCAL_WEIGHT = 8
#: Answer of a process that does not take the delivery (stopping, or another definition).
REFUSED = "refused"


_JOB_FIELDS = tuple(field.name for field in attrs.fields(Job))


def job_to_wire(job: Job) -> tuple[Any, ...]:
    """A job as plain values for the peer link (``job_from_wire``)."""
    values = [getattr(job, name) for name in _JOB_FIELDS]
    values[_JOB_FIELDS.index("status")] = job.status.value
    values[_JOB_FIELDS.index("options")] = (
        None if job.options is None else job.options.encode())
    return tuple(values)


def job_from_wire(values: tuple[Any, ...]) -> Job:
    fields = dict(zip(_JOB_FIELDS, values))
    fields["status"] = JobStatus(fields["status"])
    fields["options"] = JobOptions.decode(fields["options"])
    return Job(**fields)


def result_to_wire(result: WorkerResult) -> tuple[str, int, str, float | None]:
    return (result.status, result.code, result.message, result.retry_after)


def result_from_wire(values: tuple[Any, ...]) -> WorkerResult:
    status, code, message, retry_after = values
    return WorkerResult(status, code, message, retry_after=retry_after)


class _Fingerprints:
    """A stable digest of each queue definition (Python's ``hash`` differs between
    processes), computed once per definition object."""

    def __init__(self) -> None:
        self._known: dict[QueueDefinition, str] = {}

    def __call__(self, definition: QueueDefinition) -> str:
        found = self._known.get(definition)
        if found is None:
            if len(self._known) > 256:
                self._known.clear()
            text = json.dumps(attrs.asdict(definition), sort_keys=True, default=str)
            found = hashlib.sha1(text.encode("utf-8")).hexdigest()
            self._known[definition] = found
        return found


class SpreadDeliverer:
    """A ``Deliverer`` for the dispatchers of this process that hands deliveries to the
    node's other processes, and the ``deliver`` op serving theirs."""

    def __init__(self, reactor: Any, local: Deliverer, link: PeerLink,
                 definition: Callable[[str], QueueDefinition | None]) -> None:
        self._reactor = reactor
        self._local = local
        self._link = link
        self._definition = definition
        self._fingerprint = _Fingerprints()
        self._in_flight = {slot: 0 for slot in range(link.count)}
        self._serving: set[Deferred[Any]] = set()
        self._stopping = False
        self._idle: list[Deferred[None]] = []
        #: Deliveries handed to each process (by slot), for the tests and benchmarks.
        self.handed = {slot: 0 for slot in range(link.count)}
        link.handle("deliver", self._serve)

    def _choose(self) -> int:
        me = self._link.slot
        best, best_load = me, (self._in_flight[me] + 1) * LOCAL_WEIGHT
        for slot in self._link.others:
            load = self._in_flight[slot] + 1
            if load < best_load:
                best, best_load = slot, load
        return best

    async def deliver(self, job: Job, queue: QueueDefinition | None = None) -> WorkerResult:
        slot = self._choose() if queue is not None and not self._stopping else self._link.slot
        self.handed[slot] += 1
        self._in_flight[slot] += 1
        try:
            if slot != self._link.slot and queue is not None:
                result = await self._hand_over(slot, job, queue)
                if result is not None:
                    return result
            return await self._local.deliver(job, queue)
        finally:
            self._in_flight[slot] -= 1

    async def _hand_over(self, slot: int, job: Job, queue: QueueDefinition
                         ) -> WorkerResult | None:
        """The result of the delivery by process ``slot``; None when it did not take it."""
        body = (queue.name, self._fingerprint(queue), job_to_wire(job))
        timeout = job.timeout + CALL_MARGIN if job.timeout > 0 else UNBOUNDED_CALL
        try:
            answer = await self._link.call(slot, "deliver", body, timeout)
        except PeerError as e:
            if e.sent:
                log.warn("Job {id} of queue {queue}: process {slot} of the node went away or"
                         " fell silent while delivering it ({why}); delivering it again",
                         id=job.id, queue=queue.name, slot=slot + 1, why=str(e))
            return None
        if answer == REFUSED:
            return None
        return result_from_wire(answer)

    # Serving the deliveries of other processes

    def _serve(self, body: tuple[str, str, tuple[Any, ...]]) -> Deferred[Any] | str:
        name, fingerprint, wire_job = body
        definition = self._definition(name)
        if (self._stopping or definition is None
                or self._fingerprint(definition) != fingerprint):
            return REFUSED
        job = job_from_wire(wire_job)
        served = Deferred.fromCoroutine(self._local.deliver(job, definition))
        self._serving.add(served)

        def done(result: WorkerResult) -> tuple[Any, ...]:
            self._serving.discard(served)
            if not self._serving and self._idle:
                # Next turn: the answer this returns is sent first.
                self._reactor.callLater(0, self._wake_idle)
            return result_to_wire(result)

        return served.addCallback(done)

    def _wake_idle(self) -> None:
        if not self._serving:
            waiters, self._idle = self._idle, []
            for waiter in waiters:
                waiter.callback(None)

    def stop_serving(self) -> Deferred[None]:
        """Takes no more deliveries from other processes (nor hands any over); fires once
        those being served are done."""
        self._stopping = True
        if not self._serving:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        return waiter
