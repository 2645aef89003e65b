"""Primary/backup per queue with MySQL named locks (DESIGN.md section 6).

A node is the active node of a queue while its grab connection holds the queue's
``GET_LOCK``. Once a second one statement keeps the locks this node holds and tries
(without waiting) those it does not: backups take a queue over about a second after the
old session ends. A failed check, or a grab connection that was replaced (new connection
id, so its locks are gone), makes this node inactive for every queue at once; the locks
are then taken again on the new connection, and orphan recovery runs as for any
activation. Grabs themselves check the lock in the same statement, so a stale view here
can never lead to two nodes grabbing one queue.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from fireworq.cluster import ActivationListener
from fireworq.errors import StoreUnavailable
from fireworq.model import Node, table_part
from fireworq.storage.mysql import MySQLStore, lock_name

log = Logger()

CHECK_INTERVAL = 1.0


class MySQLActivator:
    def __init__(self, store: MySQLStore, clock: IReactorTime, scope: str) -> None:
        self._store = store
        self._clock = clock
        self._scope = scope
        self._listener: ActivationListener | None = None
        self._locks: dict[str, str] = {}  # queue name -> lock name
        self._active: set[str] = set()
        self._connection_id: int | None = None
        self._check = LoopingCall(self._heartbeat)
        self._check.clock = clock
        self._stopped = False
        self._checking = False
        self._soon: IDelayedCall | None = None
        store.grab_connection_lost = self._connection_lost

    def lock_name(self, queue_name: str) -> str:
        return lock_name(queue_name, self._store.database, self._scope)

    def start(self, listener: ActivationListener) -> None:
        self._listener = listener
        self._check.start(CHECK_INTERVAL, now=True).addErrback(
            lambda f: log.failure("Queue activation checks stopped", f)
        )

    def watch(self, queue_name: str) -> None:
        name = self.lock_name(queue_name)
        self._locks[queue_name] = name
        self._store.locks_by_table.setdefault(table_part(queue_name), set()).add(name)
        # A new queue need not wait for the next periodic check to be taken.
        if self._check.running and self._soon is None:
            self._soon = self._clock.callLater(0, self._check_now)

    def _connection_lost(self) -> None:
        # The session holding our locks is gone or unusable: stop at once, look again soon.
        self._deactivate_all()
        if self._check.running and self._soon is None:
            self._soon = self._clock.callLater(0, self._check_now)

    def _check_now(self) -> None:
        self._soon = None
        Deferred.fromCoroutine(self._heartbeat()).addErrback(
            lambda f: log.failure("Checking queue locks failed", f)
        )

    def unwatch(self, queue_name: str) -> None:
        name = self._locks.pop(queue_name, None)
        if name is None:
            return
        guards = self._store.locks_by_table.get(table_part(queue_name))
        if guards is not None:
            guards.discard(name)
        self._set(queue_name, False)
        Deferred.fromCoroutine(self._release([name])).addErrback(
            lambda f: log.failure("Releasing the lock of {queue} failed", f, queue=queue_name)
        )

    def is_active(self, queue_name: str) -> bool:
        return queue_name in self._active

    async def node(self, queue_name: str) -> Node | None:
        name = self._locks.get(queue_name) or self.lock_name(queue_name)
        holder = await self._store.lock_holder(name)
        return None if holder is None else Node(id=holder[0], host=holder[1])

    def _set(self, queue_name: str, active: bool) -> None:
        if (queue_name in self._active) == active:
            return
        if active:
            self._active.add(queue_name)
            log.info("This node is now the active node of queue {queue}", queue=queue_name)
        else:
            self._active.discard(queue_name)
            log.info("This node is no longer the active node of queue {queue}",
                     queue=queue_name)
        if self._listener is not None:
            self._listener(queue_name, active)

    def _deactivate_all(self) -> None:
        for queue_name in sorted(self._active):
            self._set(queue_name, False)

    async def _heartbeat(self) -> None:
        if self._stopped or self._checking:
            return
        self._checking = True
        try:
            await self._check_locks()
        finally:
            self._checking = False

    async def _check_locks(self) -> None:
        watched = dict(self._locks)
        try:
            connection_id, held = await self._store.check_locks(sorted(set(watched.values())))
        except StoreUnavailable as e:
            if self._active:
                log.warn("Lost contact with the database ({reason}): dispatching paused",
                         reason=e.reason)
            self._deactivate_all()
            return
        except Exception:
            log.failure("Checking queue locks failed")
            self._deactivate_all()
            return
        if not self._check.running:
            return  # stopped while the check ran
        previous = self._connection_id
        if previous is not None and connection_id != previous:
            # The grab connection was replaced: its locks died with it. If the old session
            # still lives on the server (a half-open connection), end it so that it stops
            # holding the locks; its grabbed jobs are recovered on reactivation.
            self._deactivate_all()
            await self._end_session(previous)
        self._connection_id = connection_id
        for queue_name, name in watched.items():
            if queue_name in self._locks:
                self._set(queue_name, held.get(name, False))

    async def _end_session(self, connection_id: int) -> None:
        try:
            await self._store.kill_session(connection_id)
        except Exception as e:
            log.debug("Old session {id} not ended: {error}", id=connection_id, error=e)

    async def _release(self, names: list[str]) -> None:
        try:
            await self._store.release_locks(names)
        except StoreUnavailable:
            pass  # the session is gone, and its locks with it

    def stop(self) -> Deferred[None]:
        self._stopped = True
        if self._check.running:
            self._check.stop()
        if self._soon is not None and self._soon.active():
            self._soon.cancel()
        self._soon = None
        names = sorted(set(self._locks.values()))
        self._deactivate_all()
        return Deferred.fromCoroutine(self._release(names))
