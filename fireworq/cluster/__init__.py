"""Which node dispatches which queue.

``fireworq.cluster.ownership`` runs the life of every queue on this node (wait for its
lock, recover its orphan jobs, dispatch, lose it) the same way on every driver. What differs
between drivers is only how a queue's lock is held, which is the ``LockDriver`` seam:

* ``memory`` (in-memory driver): a table of locks in this process; this node holds them all.
* ``filelock`` (sqlite): one OS file lock beside the database file, for every queue at once.
* ``mysql``: per queue, a ``GET_LOCK`` on this node's lock session.
"""

from __future__ import annotations

import os
import socket
from typing import Callable, Collection, Mapping, Protocol

from fireworq.model import InFlight, Node


class LockDriver(Protocol):
    """How a driver holds the locks that make a node the active node of its queues."""

    async def check(self, queues: Mapping[str, str]) -> set[str]:
        """Keep the locks this node holds and try, without waiting, to take the others;
        ``queues`` maps each watched queue name to its job table. The names of the queues
        whose lock this node holds now. Raises when it cannot tell (the store is away)."""
        ...

    async def release(self, queue_name: str) -> None:
        """Give up one queue's lock (the queue was deleted), if the driver can."""
        ...

    async def holder(self, queue_name: str) -> Node | None:
        """The node holding the queue's lock, ``None`` when nobody does."""
        ...

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when every lock this node held is gone at once (its session
        ended), between two checks."""
        ...

    async def recover(self, table: str, keep: Collection[InFlight]) -> int:
        """Set the table's grabbed jobs but ``keep`` back to ``claimed`` (while holding
        its lock); the number set back."""
        ...

    async def close(self) -> None:
        """Give up every lock (after the dispatchers have finished)."""
        ...


def this_process() -> Node:
    return Node(id=str(os.getpid()), host=socket.gethostname())
