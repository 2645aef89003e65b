"""The MySQL lock session (``LockSession``) when its connection is replaced (issue 8 item 5).

A replaced lock connection may leave its old session alive in the server (half-open), still
holding the node's queue locks; it must be ended. But connection ids restart with the server
and are reused: the old id may now be another node's session, which must survive. The
session proves an id is its own through a lock named after a token only it knows.

The tests replace the session's connection by making its pool forget it without closing it
(so the server keeps the old session, as with a half-open connection), then run a check.
"""

from __future__ import annotations

from typing import Any

import pymysql
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import eventually
from fireworq.cluster.mysql import MySQLLocks
from fireworq.dsn import parse_dsn
from fireworq.storage.mysql import MySQLStore

QUEUE = "lockq"


class LockSessionTests(TestCase):
    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.database = mysqltools.create_database("fwlocks")
        self.addCleanup(mysqltools.drop_database, self.database)
        dsn = parse_dsn(mysqltools.dsn_text(self.database))
        self.store = MySQLStore(dsn, dsn, reactor, reactor, pool_size=2)
        await self.store.open()
        self.addCleanup(self.store.close)
        self.locks = MySQLLocks(self.store, "database")
        self.lost = 0

        def lost() -> None:
            self.lost += 1

        self.locks.on_lost(lost)

    def connect(self) -> Any:
        """A session of another node."""
        connection = mysqltools._connect(mysqltools.server_dsn(), self.database)
        self.addCleanup(self.close_quietly, connection)
        return connection

    def close_quietly(self, connection: Any) -> None:
        try:
            connection.close()
        except Exception:
            pass

    def alive(self, connection: Any) -> bool:
        try:
            connection.ping(reconnect=False)
            return True
        except pymysql.err.MySQLError:
            return False

    def holder(self, name: str) -> int | None:
        [(holder,)] = mysqltools.execute(self.database, "SELECT IS_USED_LOCK(%s)", (name,))
        return None if holder is None else int(holder)

    def forget_connection(self) -> Any:
        """Make the session's pool open a new connection next time, leaving the old
        session alive in the server (as a half-open connection does)."""
        pool = self.store.session._pool
        assert pool is not None
        [old] = list(pool.connections.values())
        pool.connections.clear()
        self.addCleanup(self.close_quietly, old)
        return old

    async def test_halfOpenSessionOfOursIsEnded(self) -> None:
        """When the connection was replaced while its old session still holds the queue's
        lock, the old session is proved ours, ended, and the lock taken again."""
        self.assertEqual(await self.locks.check({QUEUE: QUEUE}), {QUEUE})
        first = self.store.grab_connection_id
        old = self.forget_connection()
        self.assertEqual(await self.locks.check({QUEUE: QUEUE}), set())
        self.assertEqual(self.lost, 1)
        second = self.store.grab_connection_id
        self.assertNotEqual(second, first)
        self.assertFalse(self.alive(old))

        # The server frees a killed session's locks as its thread ends, which may be a moment
        # after KILL answers; the node's next checks take the lock then.
        async def taken() -> bool:
            return await self.locks.check({QUEUE: QUEUE}) == {QUEUE}
        await eventually(taken, timeout=5, what="the lock to be taken again")
        self.assertEqual(self.holder(self.locks.lock_name(QUEUE)), second)
        self.assertEqual(self.lost, 1)

    async def test_sessionOfAnotherNodeSurvives(self) -> None:
        """When the id of the replaced connection now belongs to another node's session (the
        server restarted, and ids were reused), that session is not ended: it keeps its
        locks."""
        other = self.connect()
        other_lock = "fireworq_jq(%s/other_queue)" % self.database
        with other.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 0)", (other_lock,))
        other_id = other.thread_id()
        self.assertEqual(await self.locks.check({QUEUE: QUEUE}), {QUEUE})
        session = self.store.session
        # Our connection of before the restart had the id the other node's session has now.
        # Its own lock died with it.
        session._proofs = {other_id: "fireworq_session(%s.0)" % session._token}
        session._checked = other_id
        self.forget_connection()
        await self.locks.check({QUEUE: QUEUE})
        self.assertTrue(self.alive(other))
        self.assertEqual(self.holder(other_lock), other_id)
        self.assertEqual(session._proofs, {self.store.grab_connection_id: session._proofs[
            self.store.grab_connection_id]})

    async def test_releaseAndHolder(self) -> None:
        """A lock taken by a check names this session as its holder, until released."""
        self.assertEqual(await self.locks.check({QUEUE: QUEUE}), {QUEUE})
        node = await self.locks.holder(QUEUE)
        assert node is not None
        self.assertEqual(node.id, str(self.store.grab_connection_id))
        await self.locks.release(QUEUE)
        self.assertIsNone(await self.locks.holder(QUEUE))
        self.assertEqual(self.store.session.guards(QUEUE), [])
