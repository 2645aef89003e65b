"""What the processes of one node (``--processes N``) tell each other over their peer link
(``fireworq.peers``): wake-ups of the process dispatching a queue, changes of queues and
routings, and the figures behind
the statistics and ``/metrics``, which answer for the whole node whichever process the
connection landed on (docs/performance.md, "More than one core")."""

from __future__ import annotations

from typing import Any, Callable, Coroutine, Mapping

from twisted.internet.defer import DeferredList
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from fireworq.dispatch.stats import (
    QueueSnapshot,
    merge_snapshots,
    snapshot_from_json,
    snapshot_to_json,
)
from fireworq.metrics import node_process_figures, process_figures
from fireworq.peers import PeerLink

log = Logger()

#: Seconds the answering process waits for the others' figures; one that has not answered
#: by then (being restarted, say) is left out of that answer.
FIGURES_TIMEOUT = 1.0
#: Seconds a process that changed queues or routings waits for the others to have read them
#: again before it answers; one that has not by then reads them at its next refresh.
REFRESH_TIMEOUT = 1.0


class WakeOthers:
    """A push stored by a process that does not dispatch its queue tells the others (one
    message per process and reactor turn, the names of the queues); the one dispatching it
    grabs at once instead of at its next poll. A lost message only delays the jobs until
    the poll."""

    def __init__(self, reactor: Any, link: PeerLink, on_wake: Callable[[str], None]) -> None:
        self._reactor = reactor
        self._link = link
        self._pending: set[str] = set()
        self._flush_call: IDelayedCall | None = None
        link.handle("wake", self._woken)
        self._on_wake = on_wake

    def _woken(self, names: list[str]) -> None:
        for name in names:
            self._on_wake(name)

    def wake_elsewhere(self, queue_name: str) -> None:
        self._pending.add(queue_name)
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        names = sorted(self._pending)
        self._pending.clear()
        for slot in self._link.others:
            self._link.tell(slot, "wake", names)

    def stop(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None


class RefreshOthers:
    """A change of queues or routings is in effect at once on the node that made it
    (docs/api.md, DELETE /queue, pause), so on each of its processes: the one that made it
    has the others read them again, and waits for that, before it answers, rather than
    leaving them to their next refresh (``config_refresh_interval``)."""

    def __init__(self, link: PeerLink,
                 refresh: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._link = link
        link.handle("refresh", lambda _: refresh())

    async def refresh_elsewhere(self) -> None:
        calls = [self._link.call(slot, "refresh", None, REFRESH_TIMEOUT)
                 for slot in self._link.others]
        for ok, value in await DeferredList(calls, consumeErrors=True):
            if not ok:
                log.debug("A process did not read the changed definitions: {why}",
                          why=value.getErrorMessage())


class NodeFigures:
    """Each queue's snapshot for the node: this process's, added to the others'."""

    def __init__(self, link: PeerLink | None,
                 local: Callable[[], Mapping[str, QueueSnapshot]]) -> None:
        self._link = link
        self._local = local
        if link is not None:
            link.handle("figures", lambda _: self._mine())

    def _mine(self) -> dict[str, Any]:
        """What this process answers another's ``figures``."""
        return {
            "queues": {name: snapshot_to_json(s) for name, s in self._local().items()},
            "process": process_figures(),
        }

    async def _others(self) -> list[dict[str, Any]]:
        """The figures of every other process that answered in time (``FIGURES_TIMEOUT``)."""
        link = self._link
        if link is None or not link.others:
            return []
        calls = [link.call(slot, "figures", None, FIGURES_TIMEOUT) for slot in link.others]
        answers = await DeferredList(calls, consumeErrors=True)
        parts = []
        for slot, (ok, value) in zip(link.others, answers):
            if ok:
                parts.append(value)
            else:
                failure: Failure = value
                log.debug("No figures from process {slot}: {why}", slot=slot + 1,
                          why=failure.getErrorMessage())
        return parts

    async def snapshots(self) -> dict[str, QueueSnapshot]:
        """The queues this process knows, each with the figures of the whole node."""
        return _merged(self._local(), await self._others())

    async def with_process(self) -> tuple[dict[str, QueueSnapshot], dict[str, float]]:
        """``snapshots()`` and the node's process figures (``/metrics``); empty when this
        process is the whole node (its own are read as the metrics are rendered)."""
        others = await self._others()
        if not others:
            return dict(self._local()), {}
        return (_merged(self._local(), others),
                node_process_figures([process_figures(), *(part["process"] for part in others)]))


def _merged(mine: Mapping[str, QueueSnapshot], others: list[dict[str, Any]]
            ) -> dict[str, QueueSnapshot]:
    found: dict[str, list[QueueSnapshot]] = {name: [s] for name, s in mine.items()}
    for part in others:
        for name, figures in part["queues"].items():
            if name in found:  # a queue this process does not know (yet) is left out
                found[name].append(snapshot_from_json(figures))
    return {name: merge_snapshots(snapshots) for name, snapshots in found.items()}
