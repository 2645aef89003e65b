"""Two deployments on one MySQL server (docs/configuration.md, Lock scope).

MySQL's named locks are global to the server, not to a database. Each deployment here has its
own database on the same server and the same queue name:

* with the default ``mysql_lock_scope=database`` the lock names carry the database
  (``fireworq_jq(<database>/<queue>)``), so both deployments are active for their queue and
  both dispatch;
* with ``mysql_lock_scope=server`` the names are Fireworq's (``fireworq_jq(<queue>)``): the two
  deployments compete for one lock, and only one of them is active for the queue at a time; the
  other one's jobs wait until it gets the lock (here: once the first deployment stops). That is
  Fireworq 1.5's behaviour, kept for clusters that mix Fireworq nodes and ours; such
  deployments must not share queue names.

``GET /queue/{q}/node`` answers the session holding the queue's lock: its connection id (the
test asks the server with ``IS_USED_LOCK``) and host ``127.0.0.1``, the daemons' client address.

Every test uses its own databases and, because of ``server`` scope, queue names unique to the
test process, so parallel runs never share a lock.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import Daemon, Exit, Worker, eventually, gather, now, sleep

_names = itertools.count(1)


def unique_queue_name() -> str:
    return f"dep_{os.getpid()}_{next(_names)}"


async def lock_holder(database: str, lock: str) -> int | None:
    """The connection id of the session holding ``lock``, as the server sees it."""
    [(holder,)] = await deferToThread(mysqltools.execute, database, "SELECT IS_USED_LOCK(%s)",
                                      (lock,))
    return None if holder is None else int(holder)


class DeploymentTests(TestCase):
    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.worker = await Worker.start(self)
        self.queue = unique_queue_name()
        self.category = self.queue + "_cat"
        self.databases = []
        for _ in range(2):
            database = mysqltools.create_database("fwdeploy")
            self.addCleanup(mysqltools.drop_database, database)
            self.databases.append(database)

    async def deployment(self, index: int, *options: str) -> Daemon:
        """A daemon on database ``index`` with the test's queue and routing; its worker
        requests carry the User-Agent ``deployment-<index>``."""
        daemon = await Daemon.start(self, "mysql", [
            f"--mysql-dsn={mysqltools.dsn_text(self.databases[index])}",
            f"--dispatch-user-agent=deployment-{index}", *options,
        ])
        await daemon.api.put_queue(self.queue, max_workers=2, polling_interval=100)
        await daemon.api.put_routing(self.category, self.queue)
        return daemon

    async def active(self, daemon: Daemon) -> int:
        return int((await daemon.api.stats(self.queue))["active_nodes"])

    async def push(self, daemon: Daemon, label: str) -> Any:
        return await daemon.api.push_ok(self.category, self.worker.url(f"/{label}"),
                                        f'{{"label": "{label}"}}')

    def delivered_by(self, label: str) -> list[str | None]:
        return [r.header("User-Agent") for r in self.worker.received
                if r.json["label"] == label]

    async def test_database_scope_both_dispatch(self) -> None:
        """Default scope: each deployment is active for its queue and delivers its jobs.
        A name ``fireworq_jq(<database>/<queue>)`` over 64 characters becomes
        ``fireworq_jq#<sha1 of database/queue>``."""
        daemons = [await self.deployment(0), await self.deployment(1)]
        long_queue = (self.queue + "_").ljust(46, "x")
        for daemon in daemons:
            await daemon.api.put_queue(long_queue, max_workers=1)

        async def both_active() -> bool:
            return [await self.active(d) for d in daemons] == [1, 1]
        await eventually(both_active, what="both deployments active for the queue")

        await gather(self.push(daemons[i], f"job-{i}-{n}") for i in range(2) for n in range(5))
        await self.worker.wait_for(10)
        for i in range(2):
            for n in range(5):
                self.assertEqual(self.delivered_by(f"job-{i}-{n}"), [f"deployment-{i}"])

        sessions = []
        for i, daemon in enumerate(daemons):
            lock = f"fireworq_jq({self.databases[i]}/{self.queue})"
            holder = await lock_holder(self.databases[i], lock)
            self.assertIsNotNone(holder, lock)
            node = await daemon.api.ok("GET", f"/queue/{self.queue}/node")
            self.assertEqual(node, {"id": str(holder), "host": "127.0.0.1"})
            sessions.append(holder)
        self.assertNotEqual(sessions[0], sessions[1])
        # Fireworq's server-wide name is not used.
        self.assertIsNone(await lock_holder(self.databases[0], f"fireworq_jq({self.queue})"))

        for i, daemon in enumerate(daemons):
            scoped = f"{self.databases[i]}/{long_queue}"
            self.assertGreater(len(f"fireworq_jq({scoped})"), 64)
            lock = "fireworq_jq#" + hashlib.sha1(scoped.encode()).hexdigest()

            async def held(database: str = self.databases[i], lock: str = lock) -> int | None:
                return await lock_holder(database, lock)
            holder = await eventually(held, what=f"a holder of {lock}")
            self.assertEqual(holder, sessions[i])  # the node's one lock connection
            self.assertEqual(await daemon.api.ok("GET", f"/queue/{long_queue}/node"),
                             {"id": str(holder), "host": "127.0.0.1"})
        print(f"\nDEPLOYMENTS database scope: both active; sessions {sessions}")

    async def test_server_scope_one_active_per_queue(self) -> None:
        """``--mysql-lock-scope=server``: Fireworq's lock names, global to the server. The
        second deployment, on another database, cannot get the queue while the first holds
        it: its jobs wait (Fireworq's behaviour) and its node endpoint names the first
        deployment's session. When the first stops, the second takes the queue over and
        delivers them."""
        lock = f"fireworq_jq({self.queue})"
        first = await self.deployment(0, "--mysql-lock-scope=server")
        await eventually(lambda: self.active(first), what="the first deployment to be active")
        holder = await lock_holder(self.databases[0], lock)
        self.assertIsNotNone(holder)
        second = await self.deployment(1, "--mysql-lock-scope=server")
        stuck = await self.push(second, "second-before")

        # Watch both for a while (the second tries the lock once a second): never both
        # active, always the first; the second's job is not delivered.
        watched_until = now() + 2.5
        samples = 0
        while now() < watched_until:
            self.assertEqual([await self.active(first), await self.active(second)], [1, 0])
            samples += 1
            await sleep(0.1)
        await self.push(first, "first")
        await self.worker.wait_for(1)
        self.assertEqual(self.delivered_by("first"), ["deployment-0"])
        self.assertEqual(self.delivered_by("second-before"), [])
        waiting = await second.api.ok("GET", f"/queue/{self.queue}/waiting")
        self.assertEqual([j["id"] for j in waiting["jobs"]], [stuck["id"]])
        expected = {"id": str(holder), "host": "127.0.0.1"}
        self.assertEqual(await first.api.ok("GET", f"/queue/{self.queue}/node"), expected)
        # The second deployment's node endpoint sees the first deployment's session.
        self.assertEqual(await second.api.ok("GET", f"/queue/{self.queue}/node"), expected)
        self.assertIsNone(
            await lock_holder(self.databases[0], f"fireworq_jq({self.databases[0]}/{self.queue})"))

        stopped = now()
        self.assertEqual(await first.stop(), Exit(0, None))
        await eventually(lambda: self.active(second), what="the second deployment to take over")
        took_over = now()
        await self.worker.wait_for(2)
        self.assertEqual(self.delivered_by("second-before"), ["deployment-1"])
        new_holder = await lock_holder(self.databases[1], lock)
        self.assertIsNotNone(new_holder)
        self.assertNotEqual(new_holder, holder)
        self.assertEqual(await second.api.ok("GET", f"/queue/{self.queue}/node"),
                         {"id": str(new_holder), "host": "127.0.0.1"})
        print(f"\nDEPLOYMENTS server scope: {samples} samples with only the first active; the"
              f" second took over {took_over - stopped:.2f} s after the first was told to stop")
