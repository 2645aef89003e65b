"""Primary/backup per queue with MySQL named locks (docs/configuration.md, mysql).

A node is the active node of a queue while its lock session (``LockSession`` of the store) holds
the queue's ``GET_LOCK`` (docs/configuration.md, mysql). Each check keeps the locks held and tries
the others in one statement, so backups take a queue over about a second after the old session
ends. A session that failed, or was replaced (new connection id), loses every lock at once; they
are taken again on the new connection and orphan recovery runs as for any activation. Grabs check
the lock in their own statement, so a stale view here can never lead to two nodes grabbing one
queue.
"""

from __future__ import annotations

from typing import Callable, Collection, Mapping

from fireworq.errors import StoreUnavailable
from fireworq.model import InFlight, Node
from fireworq.storage.mysql import MySQLStore, lock_name


class MySQLLocks:
    """The ``LockDriver`` of the mysql driver."""

    def __init__(self, store: MySQLStore, scope: str) -> None:
        self._store = store
        self._session = store.session
        self._scope = scope
        self._names: dict[str, str] = {}  # queue name -> lock name, of every queue checked

    def lock_name(self, queue_name: str) -> str:
        return lock_name(queue_name, self._store.database, self._scope)

    async def check(self, queues: Mapping[str, str]) -> set[str]:
        names = {queue: self.lock_name(queue) for queue in queues}
        self._names.update(names)
        held = await self._session.check({names[queue]: table for queue, table in queues.items()})
        return {queue for queue, name in names.items() if name in held}

    async def release(self, queue_name: str) -> None:
        name = self._names.pop(queue_name, None)
        if name is not None:
            await self._release([name])

    async def _release(self, names: list[str]) -> None:
        try:
            await self._session.release(names)
        except StoreUnavailable:
            pass  # the session is gone, and its locks with it

    async def holder(self, queue_name: str) -> Node | None:
        holder = await self._session.holder(self._names.get(queue_name)
                                            or self.lock_name(queue_name))
        return None if holder is None else Node(id=holder[0], host=holder[1])

    def on_lost(self, callback: Callable[[], None]) -> None:
        self._session.on_lost(callback)

    async def recover(self, table: str, keep: Collection[InFlight]) -> int:
        return await self._store.recover(table, keep)

    async def close(self) -> None:
        names = sorted(set(self._names.values()))
        self._names.clear()
        if names:
            await self._release(names)
