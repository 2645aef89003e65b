"""A three-node cluster on one database (docs/api.md, Several nodes; docs/configuration.md, mysql).

Three daemons share one MariaDB database; five queues are defined through different nodes
(so their locks spread over the nodes); 600 jobs are pushed through all three nodes while a
worker holds each request 20 ms. Each node has its own ``--dispatch-user-agent``, so the
worker knows which node delivered what.

* One active node per queue at every moment: every ~100 ms the test reads
  ``GET /queue/{q}/stats`` on all three nodes; the sum of ``active_nodes`` per queue is never
  above 1 (and is 1 in almost every sample outside the failover). From the worker's side, two
  nodes never have deliveries of one queue in progress at the same time.
* ``kill -9`` of the active node of a queue while it delivers: another node is active
  (``GET /queue/{q}/node`` names another session, and that node's stats say
  ``active_nodes`` 1) within 3 s.
* Nothing acknowledged is lost; the only jobs delivered twice are jobs the killed node had
  grabbed. To know exactly which, the node is frozen (SIGSTOP) just before the kill: its
  session still holds its locks, so nothing moves, and the test reads the rows still
  ``grabbed`` by that session (in delivery, or delivered but with the completion write not
  landed). The worker's own view (requests from that node unanswered at the freeze) must be
  among them. Then SIGKILL; failover times are measured from the SIGKILL.

It prints ``CLUSTER: acknowledged=... delivered=... lost=0 duplicates=... failover=...s``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import (
    Daemon,
    Worker,
    always,
    asyncCleanup,
    bounded,
    eventually,
    gather,
    now,
    sleep,
    slow,
)

NODES = 3
QUEUES = [f"cq{i}" for i in range(5)]
MAX_WORKERS = 5
JOBS = 600
PUSH_CONCURRENCY = 12
HOLD = 0.02  # the worker's time per request
KILL_AFTER = 150  # deliveries received before the kill
SAMPLE_INTERVAL = 0.1
AFTER_SAMPLES = 20  # samples taken after the failover, at least
FAILOVER_LIMIT = 3.0


def user_agent(node: int) -> str:
    return f"cluster-node-{node}"


class TimedWorker(Worker):
    """A worker that also records when each request ended: ``ends[i]`` is (time, answered)
    for ``received[i]`` (answered False: the connection was lost first)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ends: dict[int, tuple[float, bool]] = {}

    def _handle(self, request: Any) -> Any:
        index = len(self.received)
        result = super()._handle(request)

        def ended(outcome: object) -> None:
            self.ends[index] = (now(), not isinstance(outcome, Failure))

        request.notifyFinish().addBoth(ended)
        return result

    def interval(self, index: int) -> tuple[float, float]:
        """When request ``index`` was in progress (open-ended if still running)."""
        end = self.ends.get(index)
        return self.received[index].time, end[0] if end is not None else float("inf")


class ClusterTests(TestCase):
    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.database = mysqltools.create_database("fwcluster")
        self.addCleanup(mysqltools.drop_database, self.database)
        self.worker: TimedWorker = await TimedWorker.start(  # type: ignore[assignment]
            self, always(slow(HOLD)))
        dsn = f"--mysql-dsn={mysqltools.dsn_text(self.database)}"
        self.nodes: list[Daemon] = await gather(
            Daemon.start(self, "mysql", [dsn, f"--dispatch-user-agent={user_agent(i)}"])
            for i in range(NODES))

    # -- observations

    async def active_on(self, node: int, queue: str) -> int | None:
        """``active_nodes`` of a queue on a node; None when the node is dead or did not
        answer."""
        daemon = self.nodes[node]
        if not daemon.running:
            return None
        try:
            reply = await daemon.api.request("GET", f"/queue/{queue}/stats", timeout=2)
        except Exception:
            return None
        return int(reply.json["active_nodes"]) if reply.code == 200 else None

    async def snapshot(self) -> dict[str, list[int | None]]:
        values = await gather(self.active_on(n, q) for q in QUEUES for n in range(NODES))
        return {q: values[i * NODES:(i + 1) * NODES] for i, q in enumerate(QUEUES)}

    async def sampler(self, samples: list[tuple[float, dict[str, list[int | None]]]],
                      running: list[bool]) -> None:
        while running[0]:
            started = now()
            samples.append((started, await self.snapshot()))
            await sleep(max(0.0, SAMPLE_INTERVAL - (now() - started)))

    def job_table(self, queue: str) -> str:
        return f"`fireworq_jq({queue})`"

    async def grabbed_by(self, session: int) -> set[int]:
        """The ``k`` of every job still grabbed by ``session``, read from the store."""
        rows = await deferToThread(
            mysqltools.execute, self.database, " UNION ALL ".join(
                f"SELECT payload FROM {self.job_table(queue)}"
                " WHERE status = 'grabbed' AND grabber_id = %(session)s" for queue in QUEUES),
            {"session": session})
        return {json.loads(payload)["k"] for (payload,) in rows}

    # -- the test

    async def test_one_active_node_per_queue_and_failover(self) -> None:
        for i, queue in enumerate(QUEUES):
            definer = self.nodes[i % NODES].api
            await definer.put_queue(queue, max_workers=MAX_WORKERS, polling_interval=100)
            await definer.put_routing(f"{queue}_cat", queue)

        async def settled() -> Any:
            snapshot = await self.snapshot()
            return all(None not in values and sum(values) == 1  # type: ignore[arg-type]
                       for values in snapshot.values()) and snapshot
        snapshot = await eventually(settled, timeout=10, what="every queue known to every node"
                                    " and active on exactly one")
        owners = {q: values.index(1) for q, values in snapshot.items()}
        # Every node names the same session as a queue's node, one session per active node.
        sessions: dict[int, str] = {}
        for queue in QUEUES:
            answers = [await d.api.ok("GET", f"/queue/{queue}/node") for d in self.nodes]
            self.assertEqual([a["host"] for a in answers], ["127.0.0.1"] * NODES)
            self.assertEqual(len({a["id"] for a in answers}), 1, answers)
            self.assertEqual(sessions.setdefault(owners[queue], answers[0]["id"]),
                             answers[0]["id"])
        self.assertEqual(len(set(sessions.values())), len(sessions))

        samples: list[tuple[float, dict[str, list[int | None]]]] = []
        running = [True]
        sampling = Deferred.fromCoroutine(self.sampler(samples, running))

        acknowledged: dict[int, int] = {}  # k -> job id

        def push(k: int) -> Any:
            queue = QUEUES[k % len(QUEUES)]

            async def one() -> None:
                node = (k // len(QUEUES)) % NODES
                while not self.nodes[node].running:  # a client skips a node that is down
                    node = (node + 1) % NODES
                reply = await self.nodes[node].api.push(
                    f"{queue}_cat", self.worker.url(f"/{queue}/{k}"), json.dumps({"k": k}))
                if reply.code == 200:
                    acknowledged[k] = reply.json["id"]
            return one

        pushing = Deferred.fromCoroutine(bounded([push(k) for k in range(JOBS)],
                                                 PUSH_CONCURRENCY))

        async def stop_load() -> None:  # also when the test fails half-way
            running[0] = False
            await sampling
            await pushing
        asyncCleanup(self, stop_load)

        # The node to kill: the active node of cq0, once it is delivering a job of cq0.
        victim = owners[QUEUES[0]]
        victim_agent = user_agent(victim)
        victim_session = int(sessions[victim])
        victim_queues = sorted(q for q, owner in owners.items() if owner == victim)

        def in_flight_of(queue: str | None = None) -> list[int]:
            return [i for i, r in enumerate(self.worker.received)
                    if i not in self.worker.ends and r.header("User-Agent") == victim_agent
                    and (queue is None or r.path.startswith(f"/{queue}/"))]

        async def victim_delivering() -> bool:
            return len(self.worker.received) >= KILL_AFTER and bool(in_flight_of(QUEUES[0]))
        await eventually(victim_delivering, timeout=30, step=0.002,
                         what=f"{KILL_AFTER} deliveries and node {victim} delivering a job of cq0")

        # Freeze it: its session keeps its locks and its grabbed rows; read them.
        self.nodes[victim].send_signal("STOP")
        frozen = now()
        unanswered = {self.worker.received[i].json["k"] for i in in_flight_of()}
        received_at_kill = len(self.worker.received)
        # Its last statements may still be on their way to the server: read until stable.
        grabbed, previous = await self.grabbed_by(victim_session), None
        while grabbed != previous:
            previous, grabbed = grabbed, await self.grabbed_by(victim_session)
        killed = now()
        exit = await self.nodes[victim].kill9()
        self.assertEqual(exit.signal, 9)

        # Another node takes each of its queues over within FAILOVER_LIMIT s.
        survivors = [n for n in range(NODES) if n != victim]

        async def taken_over() -> Any:
            node = await self.nodes[survivors[0]].api.request("GET", f"/queue/{QUEUES[0]}/node")
            if node.code != 200 or node.json["id"] == str(victim_session):
                return None
            for n in survivors:
                if await self.active_on(n, QUEUES[0]) == 1:
                    return node.time, n, node.json
            return None
        node_seen, new_owner, node_answer = await eventually(
            taken_over, timeout=FAILOVER_LIMIT + 2, step=0.02,
            what="another node to be active for cq0")
        self.assertEqual(node_answer["host"], "127.0.0.1")

        await pushing
        all_acknowledged = set(acknowledged)

        async def all_delivered() -> bool:
            return all_acknowledged <= {r.json["k"] for r in self.worker.received}
        await eventually(all_delivered, timeout=30, step=0.1, what="every acknowledged job")

        async def all_idle() -> bool:
            return self.worker.current == 0 and len(self.worker.ends) == len(self.worker.received)
        await eventually(all_idle, timeout=5, what="the worker to be idle")

        # Keep watching the two survivors a little longer.
        async def watched_after_failover() -> bool:
            return sum(1 for taken, _ in samples if taken > node_seen) >= AFTER_SAMPLES
        await eventually(watched_after_failover, timeout=AFTER_SAMPLES * SAMPLE_INTERVAL * 5,
                         what=f"{AFTER_SAMPLES} samples after the failover")
        await stop_load()

        # -- the verdicts
        counts = Counter(r.json["k"] for r in self.worker.received)
        lost = all_acknowledged - counts.keys()
        duplicates = {k for k, c in counts.items() if c > 1}
        self.assertEqual(lost, set())
        self.assertLessEqual(unanswered, grabbed,
                             "a job the victim was delivering was not grabbed by it")
        self.assertLessEqual(duplicates, grabbed, "duplicates not grabbed by the killed node")
        # Every job it had grabbed is delivered (again) by another node after the kill.
        after_kill = {r.json["k"] for r in self.worker.received
                      if r.time > killed and r.header("User-Agent") != victim_agent}
        self.assertLessEqual(grabbed, after_kill)
        self.assertTrue(all(c <= 2 for c in counts.values()), counts.most_common(3))

        # No two nodes have deliveries of one queue in progress at once. The victim sent
        # nothing after the freeze and was gone at the kill: a request of it that the
        # worker's reactor read or answered later was in progress by then at the latest.
        by_queue: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
        for i, r in enumerate(self.worker.received):
            start, end = self.worker.interval(i)
            if r.header("User-Agent") == victim_agent:
                start, end = min(start, frozen), min(end, killed)
            by_queue[r.path.split("/")[1]].append((start, end, r.header("User-Agent") or ""))
        for queue, intervals in by_queue.items():
            intervals.sort()
            latest_end: dict[str, float] = {}
            for start, end, agent in intervals:
                for other, other_end in latest_end.items():
                    self.assertFalse(other != agent and other_end > start,
                                     f"{queue}: {other} still delivering when {agent} began")
                latest_end[agent] = max(latest_end.get(agent, 0.0), end)

        # Samples: never two active nodes; one almost always, outside the failover.
        failover_samples: dict[str, float] = {}
        for taken, snap in samples:
            for queue, values in snap.items():
                self.assertLessEqual(sum(v or 0 for v in values), 1,
                                     f"{queue} at {taken}: {values}")
                if (taken > killed and queue not in failover_samples
                        and any(values[n] == 1 for n in survivors)):
                    failover_samples[queue] = taken
        self.assertEqual(sorted(failover_samples), QUEUES)
        ones = complete = 0
        for taken, snap in samples:
            for queue, values in snap.items():
                if queue in victim_queues and frozen <= taken < failover_samples[queue]:
                    continue
                live = [values[n] for n in range(NODES) if n != victim or taken < frozen]
                if None in live:
                    continue  # a node did not answer in time
                complete += 1
                ones += sum(live) == 1  # type: ignore[arg-type]
        self.assertGreaterEqual(ones / complete, 0.9, f"{ones} of {complete}")

        failover = failover_samples[QUEUES[0]] - killed
        first_delivery = min((r.time for r in self.worker.received
                              if r.time > killed and r.path.startswith(f"/{QUEUES[0]}/")
                              and r.header("User-Agent") != victim_agent), default=None)
        self.assertIsNotNone(first_delivery, "no job of cq0 delivered after the kill")
        assert first_delivery is not None
        node_failover = node_seen - killed
        print(f"\nCLUSTER: acknowledged={len(all_acknowledged)} delivered="
              f"{len(all_acknowledged & counts.keys())} lost={len(lost)}"
              f" duplicates={len(duplicates)} failover={failover:.2f}s"
              f" failover_node_endpoint={node_failover:.2f}s"
              f" failover_first_delivery={first_delivery - killed:.2f}s"
              f" victim=node-{victim} victim_queues={','.join(victim_queues)}"
              f" new_owner=node-{new_owner}"
              f" grabbed_at_kill={len(grabbed)} unanswered_at_kill={len(unanswered)}"
              f" delivered_unacknowledged={len(counts.keys() - all_acknowledged)}"
              f" received_at_kill={received_at_kill} deliveries={len(self.worker.received)}"
              f" samples={len(samples)} one_active={ones}/{complete}"
              f" frozen_ms={(killed - frozen) * 1000:.0f}"
              f" max_failover_all_queues="
              f"{max(failover_samples[q] for q in victim_queues) - killed:.2f}s")
        self.assertLessEqual(failover, FAILOVER_LIMIT)
        self.assertLessEqual(node_failover, FAILOVER_LIMIT)
        self.assertLessEqual(first_delivery - killed, FAILOVER_LIMIT + 1)
