"""Definition changes between nodes (docs/api.md, Several nodes).

Two daemons share one database. Queues and routings changed through one node are in effect
on the other within ``config_refresh_interval``, and only the difference is applied: a queue
whose definition did not change keeps its dispatcher, its lock (the same database session
holds it) and its stats.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import Daemon, Worker, eventually

REFRESH_MS = 300


class DefinitionPropagationTests(TestCase):
    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.worker = await Worker.start(self)
        self.database = mysqltools.create_database("fwdefs")
        self.addCleanup(mysqltools.drop_database, self.database)
        options = [f"--mysql-dsn={mysqltools.dsn_text(self.database)}",
                   f"--config-refresh-interval={REFRESH_MS}"]
        self.first = await Daemon.start(self, "mysql", options)
        self.second = await Daemon.start(self, "mysql", options)

    async def known(self, daemon: Daemon, queue: str) -> bool:
        reply = await daemon.api.request("GET", f"/queue/{queue}/stats")
        return reply.code == 200

    async def stats(self, daemon: Daemon) -> Any:
        return await daemon.api.ok("GET", "/queues/stats")

    async def test_onlyTheDifferenceIsApplied(self) -> None:
        """When a queue is added, changed and deleted through one node, the other follows
        within the refresh interval, and its other queues keep their lock and stats."""
        first, second = self.first, self.second
        await first.api.put_queue("steady", max_workers=4)
        await first.api.put_routing("steady_jobs", "steady")
        await eventually(lambda: self.known(second, "steady"), timeout=5, what="steady on 2")
        for n in range(5):
            await first.api.push_ok("steady_jobs", self.worker.url("/steady"), f'{{"n": {n}}}')
        await self.worker.wait_for(5)
        holder = await first.api.ok("GET", "/queue/steady/node")
        before = {name: await daemon.api.stats("steady") for name, daemon in
                  (("first", first), ("second", second))}
        self.assertEqual(before["first"]["total_pushes"], 5)

        # Added through the second node: the first one knows it soon after.
        await second.api.put_queue("added", max_workers=2)
        await eventually(lambda: self.known(first, "added"), timeout=REFRESH_MS / 1000 + 2,
                         what="the added queue on the first node")

        # Changed through the second node: the first one applies the new definition.
        await second.api.put_queue("added", max_workers=7)

        async def changed() -> bool:
            stats = (await self.stats(first)).get("added", {})
            return stats.get("total_workers") in (7, 0) and await self._definition_seen(7)
        await eventually(changed, timeout=REFRESH_MS / 1000 + 2, what="the change on node 1")

        # Deleted through the second node: the first one forgets it.
        await second.api.ok("DELETE", "/queue/added")

        async def forgotten() -> bool:
            return not await self.known(first, "added")
        await eventually(forgotten, timeout=REFRESH_MS / 1000 + 2, what="the deletion")

        # Through all of that, "steady" kept its lock holder and its counters on both nodes.
        self.assertEqual(await first.api.ok("GET", "/queue/steady/node"), holder)
        for name, daemon in (("first", first), ("second", second)):
            after = await daemon.api.stats("steady")
            for counter in ("total_pushes", "total_pops", "total_successes", "total_completes"):
                self.assertEqual(after[counter], before[name][counter], (name, counter))
        # And it still dispatches.
        await first.api.push_ok("steady_jobs", self.worker.url("/steady"), '{"n": 5}')
        await self.worker.wait_for(6)

    async def _definition_seen(self, max_workers: int) -> bool:
        """Whether the first node's dispatcher runs the queue with ``max_workers`` slots:
        ``total_workers`` shows it where the node is active; where it is a backup, its
        ``/queues/stats`` entry exists and the stored definition is the new one."""
        stats = (await self.stats(self.first)).get("added")
        if stats is None:
            return False
        if stats["active_nodes"]:
            return bool(stats["total_workers"] == max_workers)
        stored = await self.first.api.ok("GET", "/queue/added")
        return bool(stored["max_workers"] == max_workers)
