"""Which node dispatches which queue.

An activator tells the queue manager, through its listener, when this node becomes or
stops being the active node of a queue. ``local`` (in-memory driver): always this
process. ``filelock`` (sqlite): the process holding the database file's dispatch lock.
``mysql``: per queue, the session holding the queue's ``GET_LOCK``.
"""

from __future__ import annotations

import os
import socket
from typing import Callable, Protocol

from twisted.internet.defer import Deferred, succeed

from fireworq.model import Node

#: Called with (queue name, active) whenever this node's role for a queue changes.
ActivationListener = Callable[[str, bool], None]


class Activator(Protocol):
    def start(self, listener: ActivationListener) -> None: ...

    def watch(self, queue_name: str) -> None:
        """Start competing for the queue."""
        ...

    def unwatch(self, queue_name: str) -> None:
        """Stop dispatching the queue and give up its lock."""
        ...

    def is_active(self, queue_name: str) -> bool: ...

    async def node(self, queue_name: str) -> Node | None:
        """The queue's active node, ``None`` when no node is active."""
        ...

    def stop(self) -> Deferred[None]:
        """Give up every lock (after the dispatchers have finished)."""
        ...


def this_process() -> Node:
    return Node(id=str(os.getpid()), host=socket.gethostname())


class LocalActivator:
    """The only node there is: active for every queue at once."""

    def __init__(self) -> None:
        self._listener: ActivationListener | None = None
        self._queues: set[str] = set()

    def start(self, listener: ActivationListener) -> None:
        self._listener = listener

    def watch(self, queue_name: str) -> None:
        self._queues.add(queue_name)
        if self._listener is not None:
            self._listener(queue_name, True)

    def unwatch(self, queue_name: str) -> None:
        self._queues.discard(queue_name)

    def is_active(self, queue_name: str) -> bool:
        return queue_name in self._queues

    async def node(self, queue_name: str) -> Node | None:
        return this_process()

    def stop(self) -> Deferred[None]:
        self._queues.clear()
        return succeed(None)
