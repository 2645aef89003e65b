"""The in-memory driver's locks: named locks in a table of this process.

A daemon on the in-memory driver is the only node there is, so it takes every lock at its
first check. Several nodes may share one ``LockTable`` (and one ``MemoryStore``): that is how
the ownership tests run a cluster on a clock. ``LockTable.end_session`` is what a MySQL
server does when a node's session dies: its locks are free and the node is told.
"""

from __future__ import annotations

from typing import Callable, Collection, Mapping

from fireworq.cluster import this_process
from fireworq.model import InFlight, Node
from fireworq.storage import JobStore


class LockTable:
    """Lock name -> the node holding it."""

    def __init__(self) -> None:
        self._holders: dict[str, Node] = {}
        self._lost: dict[Node, list[Callable[[], None]]] = {}

    def take(self, name: str, node: Node) -> bool:
        holder = self._holders.setdefault(name, node)
        return holder == node

    def release(self, name: str, node: Node) -> None:
        if self._holders.get(name) == node:
            del self._holders[name]

    def holder(self, name: str) -> Node | None:
        return self._holders.get(name)

    def on_lost(self, node: Node, callback: Callable[[], None]) -> None:
        self._lost.setdefault(node, []).append(callback)

    def end_session(self, node: Node) -> None:
        """Free every lock of ``node`` and tell it, as a server does when a session dies."""
        self._holders = {name: holder for name, holder in self._holders.items()
                         if holder != node}
        for callback in list(self._lost.get(node, ())):
            callback()


class MemoryLocks:
    """The ``LockDriver`` of the in-memory driver: one lock per queue, named after it."""

    def __init__(self, store: JobStore, node: Node | None = None,
                 table: LockTable | None = None) -> None:
        self._store = store
        self._node = node or this_process()
        self._table = table or LockTable()
        self._names: set[str] = set()

    async def check(self, queues: Mapping[str, str]) -> set[str]:
        self._names.update(queues)
        return {name for name in queues if self._table.take(name, self._node)}

    async def release(self, queue_name: str) -> None:
        self._names.discard(queue_name)
        self._table.release(queue_name, self._node)

    async def holder(self, queue_name: str) -> Node | None:
        return self._table.holder(queue_name)

    def on_lost(self, callback: Callable[[], None]) -> None:
        self._table.on_lost(self._node, callback)

    async def recover(self, table: str, keep: Collection[InFlight]) -> int:
        return await self._store.recover(table, keep)

    async def close(self) -> None:
        for name in sorted(self._names):
            self._table.release(name, self._node)
        self._names.clear()
