"""Operating queues on a cluster: two daemons share one MariaDB database.

* A pause made through the backup node stops the active node within the refresh interval,
  and survives the active node's death: the node that takes the queue over keeps it
  paused until it is resumed. Neither changes Fireworq's ``queue_definition`` counter
  (Fireworq nodes restart every queue when it moves).
* Retention is enforced by the queue's active node only.
"""

from __future__ import annotations

import json
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import Daemon, Worker, always, eventually, gather, now, permanent_failure, sleep

REFRESH_MS = 300
QUEUE = "opsq"
CATEGORY = "opsq_job"


class ClusterOperationsTests(TestCase):
    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.worker = await Worker.start(self)
        self.database = mysqltools.create_database("fwclops")
        self.addCleanup(mysqltools.drop_database, self.database)
        options = [f"--mysql-dsn={mysqltools.dsn_text(self.database)}",
                   f"--config-refresh-interval={REFRESH_MS}"]
        self.nodes: list[Daemon] = await gather(
            Daemon.start(self, "mysql", options) for _ in range(2))
        await self.nodes[0].api.put_queue(QUEUE, polling_interval=100)
        await self.nodes[0].api.put_routing(CATEGORY, QUEUE)

    async def active_node(self) -> int:
        async def found() -> int | None:
            for index, node in enumerate(self.nodes):
                if not node.running:
                    continue
                reply = await node.api.request("GET", f"/queue/{QUEUE}/stats")
                if reply.code == 200 and reply.json["active_nodes"] == 1:
                    return index + 1
            return None
        return int(await eventually(found, timeout=10, what="an active node")) - 1

    def queue_revision(self) -> int:
        [(revision,)] = mysqltools.execute(
            self.database, "SELECT revision FROM config_revision WHERE name = 'queue_definition'")
        return int(revision)

    async def pruned_on(self, node: Daemon) -> float:
        body = (await node.api.request("GET", "/metrics")).body.decode()
        [line] = [line for line in body.splitlines()
                  if line.startswith(f'fireworq_failed_jobs_pruned_total{{queue="{QUEUE}"}}')]
        return float(line.split()[-1])

    async def nothing_delivered(self, seconds: float) -> None:
        deadline = now() + seconds
        while now() < deadline:
            self.assertEqual(self.worker.received, [])
            await sleep(0.1)

    async def test_pause_follows_and_survives_failover(self) -> None:
        active = await self.active_node()
        backup = 1 - active
        revision = self.queue_revision()
        await self.nodes[backup].api.ok("POST", f"/queue/{QUEUE}/pause")

        async def paused_on_active() -> bool:
            stats = await self.nodes[active].api.stats(QUEUE)
            return bool(stats.get("paused"))
        await eventually(paused_on_active, timeout=REFRESH_MS / 1000 + 2,
                         what="the pause on the active node")
        # Pushed through the active node itself, which would wake its dispatcher at once.
        for n in range(5):
            await self.nodes[active].api.push_ok(
                CATEGORY, self.worker.url("/ops"), json.dumps({"n": n}))
        await self.nothing_delivered(2.0)

        await self.nodes[active].kill9()
        self.assertEqual(await self.active_node(), backup)
        await self.nothing_delivered(2.0)
        stats = await self.nodes[backup].api.stats(QUEUE)
        self.assertEqual((stats["paused"], stats["active_nodes"]), (True, 1))

        await self.nodes[backup].api.ok("POST", f"/queue/{QUEUE}/resume")
        received = await self.worker.wait_for(5, timeout=5)
        self.assertEqual(sorted(json.loads(r.body)["n"] for r in received), list(range(5)))
        self.assertEqual(self.queue_revision(), revision)

    async def test_retention_by_the_active_node(self) -> None:
        active = await self.active_node()
        revision = self.queue_revision()
        await self.nodes[1 - active].api.put_queue(QUEUE, polling_interval=100,
                                                   failed_job_limit=1)
        self.assertEqual(self.queue_revision(), revision)

        # Whether the active node learns the limit before or after the failures below, it
        # prunes: a changed limit starts a pass at once.
        self.worker.policy = always(permanent_failure())
        for n in range(4):
            await self.nodes[1 - active].api.push_ok(
                CATEGORY, self.worker.url("/ops"), json.dumps({"n": n}))
        await self.worker.wait_for(4)

        async def pruned_counts() -> list[float] | None:
            # The four entries are written (and pruned) over time: wait until all but one
            # of them were pruned.
            if len(await self.nodes[0].api.failed(QUEUE)) != 1:
                return None
            counts = [await self.pruned_on(node) for node in self.nodes]
            return counts if sum(counts) == 3 else None
        counts = await eventually(pruned_counts, timeout=5, what="the log pruned to one entry")
        self.assertEqual(counts[active], 3.0)
        self.assertEqual(counts[1 - active], 0.0)
