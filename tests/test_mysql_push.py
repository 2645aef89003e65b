"""Pushes on MySQL: what is answered is what is stored (issue 8, items 1 to 3).

* A push answered 503 "not stored" is never stored: the daemon reaches MariaDB through a
  test proxy (L{test_mysql_outage.Proxy}) that goes silent for longer than the push
  deadline under a push load.
* Answered ids are the stored ids when the session's ``auto_increment_increment`` is not 1
  (set through the DSN, as the Go DSN syntax allows).
* Batches stay under the server's ``max_allowed_packet``: big jobs are split over several
  statements, and a job too large for the server alone gets 413 while the others of its
  batch are stored. ``SET GLOBAL max_allowed_packet`` lowers the limit for a test (new
  sessions only) and is restored afterwards.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any, Iterator, Sequence

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import Daemon, Reply, eventually, gather, now, sleep
from storage_contract import newJob
from test_mysql_outage import Proxy

from fireworq.dsn import parse_dsn
from fireworq.errors import JobTooLarge
from fireworq.model import PushedJob
from fireworq.queues import PUSH_TIMEOUT
from fireworq.storage import mysql
from fireworq.storage.mysql import MySQLStore
from fireworq.storage.sqlcommon import job_table

OUTCOME_UNKNOWN = "Store unavailable: outcome unknown, the job may have been stored"
INCREMENT_PARAMS = "?auto_increment_increment=2&auto_increment_offset=1"
MiB = 1024 * 1024


def stored_payloads(database: str, table: str) -> dict[bytes, int]:
    """Every job of a table: its id by payload."""
    rows = mysqltools.execute(database, "SELECT payload, job_id FROM %s" % job_table(table))
    return {bytes(payload): int(job_id) for payload, job_id in rows}


async def push(daemon: Daemon, payload: str) -> Reply:
    """POST /job/c (routed to queue q) with this payload, due in an hour: nothing is
    delivered, every stored job stays in its table."""
    return await daemon.api.request("POST", "/job/c", json.dumps(
        {"url": "http://127.0.0.1:9/", "payload": payload, "run_after": 3600}), timeout=30)


def global_packet_limit(value: int | None = None) -> int:
    """The server's global max_allowed_packet (set first when a value is given)."""
    if value is not None:
        mysqltools.execute("", "SET GLOBAL max_allowed_packet = %d" % value)
    [(current,)] = mysqltools.execute("", "SELECT @@global.max_allowed_packet")
    return int(current)


class StoreTests(TestCase):
    """L{MySQLStore.push} on a database of its own."""

    def setUp(self) -> None:
        mysqltools.hold_server_globals(self)
        self.database = mysqltools.create_database("fwpush")
        self.addCleanup(mysqltools.drop_database, self.database)

    async def open_store(self, params: str = "") -> MySQLStore:
        dsn = parse_dsn(mysqltools.dsn_text(self.database) + params)
        store = MySQLStore(dsn, dsn, reactor, reactor, pool_size=2)
        await store.open()
        self.addCleanup(store.close)
        for table in ("mail", "bulk"):
            await store.prepare_queue(table)
        return store

    def assertStoredAsAnswered(self, jobs: Sequence[tuple[str, Any]],
                               answers: Sequence[Any]) -> None:
        for (table, job), answer in zip(jobs, answers):
            assert isinstance(answer, PushedJob), answer
            self.assertEqual(stored_payloads(self.database, table)[job.payload], answer.id,
                             job.payload[:20])

    async def test_idsWithIncrement(self) -> None:
        """When the DSN sets auto_increment_increment=2, every answered id is the stored id
        (a multi-row INSERT per table)."""
        await self.check_increment(await self.open_store(INCREMENT_PARAMS))

    async def test_idsWithIncrementInterleaved(self) -> None:
        """When the server does not give a multi-row INSERT consecutive ids
        (innodb_autoinc_lock_mode 2, read when a session connects), there is one INSERT per
        job, and every answered id is the stored id too."""
        def interleaved(connection: Any) -> None:
            read_session_limits(connection)
            connection.fireworq_limits = attrs.evolve(connection.fireworq_limits,
                                                      consecutive=False)

        read_session_limits = mysql._read_session_limits
        self.patch(mysql, "_read_session_limits", interleaved)
        await self.check_increment(await self.open_store(INCREMENT_PARAMS))

    async def check_increment(self, store: MySQLStore) -> None:
        counter = itertools.count()
        for _ in range(3):
            jobs = [("mail" if n % 3 else "bulk", newJob(payload=b"job %d" % n))
                    for n in itertools.islice(counter, 7)]
            answers = await store.push(jobs)
            self.assertStoredAsAnswered(jobs, answers)
        ids = sorted(stored_payloads(self.database, "mail").values())
        self.assertEqual(ids, list(range(1, 2 * len(ids), 2)))

    async def test_bigJobsSplit(self) -> None:
        """When a batch holds more than max_allowed_packet (24 jobs of 900 KB, hex-encoded
        in the statement), it is split over several INSERTs and every job is stored with its
        answered id."""
        store = await self.open_store()
        jobs = [("mail", newJob(payload=b"%02d" % n + b"x" * 900_000)) for n in range(24)]
        answers = await store.push(jobs)
        self.assertStoredAsAnswered(jobs, answers)
        self.assertEqual(sorted(a.id for a in answers), list(range(1, 25)))

    async def test_tooLargeJob(self) -> None:
        """When one job alone is larger than the server takes, it is answered JobTooLarge
        (its size and the limit), and the other jobs of its batch are stored."""
        original = global_packet_limit()
        try:
            global_packet_limit(MiB)
            store = await self.open_store()
            jobs = [("mail", newJob(payload=b"small %d" % n)) for n in range(3)]
            jobs.insert(1, ("mail", newJob(payload=b"big" + b"x" * 600_000)))
            jobs.append(("bulk", newJob(payload=b"z" * 400_000)))
            jobs.append(("bulk", newJob(payload=b"y" * 400_000)))
            answers = await store.push(jobs)
        finally:
            global_packet_limit(original)
        big = answers.pop(1)
        del jobs[1]
        assert isinstance(big, JobTooLarge), big
        self.assertRegex(str(big), r"^Job too large for the store: its INSERT statement needs"
                                   r" 120\d{4} bytes, the MySQL server's max_allowed_packet"
                                   r" is 1048576$")
        self.assertStoredAsAnswered(jobs, answers)
        self.assertNotIn(b"big", {p[:3] for p in stored_payloads(self.database, "mail")})

    async def test_tooLargeJobFailsItsRequest(self) -> None:
        """When one job of a request (a batch push) is too large for the server, every job
        of that request is answered JobTooLarge and none is stored; the jobs of other
        requests pushed with it are stored. (The session's limit is lowered for this
        store only.)"""
        def small_packets(connection: Any) -> None:
            read_session_limits(connection)
            connection.fireworq_limits = attrs.evolve(connection.fireworq_limits,
                                                      max_packet=MiB)

        read_session_limits = mysql._read_session_limits
        self.patch(mysql, "_read_session_limits", small_packets)
        store = await self.open_store()
        jobs = [("mail", newJob(payload=b"single %d" % n)) for n in range(2)]
        jobs += [("mail", newJob(payload=b"batch %d" % n)) for n in range(3)]
        jobs.insert(3, ("bulk", newJob(payload=b"big" + b"x" * 600_000)))
        answers = await store.push(jobs, None, [0, 1, 2, 2, 2, 2])
        for answer in answers[2:]:
            assert isinstance(answer, JobTooLarge), answer
        self.assertStoredAsAnswered(jobs[:2], answers[:2])
        self.assertEqual(set(stored_payloads(self.database, "mail")), {b"single 0", b"single 1"})
        self.assertEqual(stored_payloads(self.database, "bulk"), {})

    async def test_bigBatchIsOneTransaction(self) -> None:
        """When a request's jobs need several INSERTs (24 jobs of 900 KB) and a later one
        fails (a table that is gone), none of them is stored."""
        store = await self.open_store()
        jobs = [("mail", newJob(payload=b"%02d" % n + b"x" * 900_000)) for n in range(24)]
        jobs.append(("gone", newJob()))
        with self.assertRaises(Exception):
            await store.push(jobs, None, [0] * len(jobs))
        self.assertEqual(stored_payloads(self.database, "mail"), {})


class DaemonTests(TestCase):
    """The daemon on a database of its own."""

    def setUp(self) -> None:
        mysqltools.hold_server_globals(self)
        self.database = mysqltools.create_database("fwpushd")
        self.addCleanup(mysqltools.drop_database, self.database)

    async def start(self, *options: str, dsn: str | None = None) -> Daemon:
        daemon = await Daemon.start(self, "mysql", [
            f"--mysql-dsn={dsn or mysqltools.dsn_text(self.database)}", *options])
        await daemon.api.put_queue("q", max_workers=1)
        await daemon.api.put_routing("c", "q")
        return daemon

    def assertStored(self, replies: dict[str, Reply]) -> None:
        stored = stored_payloads(self.database, "q")
        for payload, reply in replies.items():
            self.assertEqual(reply.code, 200, reply.body[:300])
            self.assertEqual(stored[payload.encode()], reply.json["id"])

    async def test_idsWithIncrement(self) -> None:
        """When the DSN sets auto_increment_increment=2, concurrent pushes are answered the
        ids they are stored with."""
        daemon = await self.start(dsn=mysqltools.dsn_text(self.database) + INCREMENT_PARAMS)
        payloads = ["job %d" % n for n in range(30)]
        replies = await gather(push(daemon, p) for p in payloads)
        self.assertStored(dict(zip(payloads, replies)))

    async def test_bigConcurrentPushes(self) -> None:
        """When 24 pushes of 900 KB come at once (more than the default 16 MiB
        max_allowed_packet in one statement), all are answered 200 and stored."""
        daemon = await self.start("--max-request-body=2000000")
        payloads = ["%02d" % n + "x" * 900_000 for n in range(24)]
        replies = await gather(push(daemon, p) for p in payloads)
        self.assertStored(dict(zip(payloads, replies)))

    async def test_bigBatch(self) -> None:
        """When a batch push holds more than one INSERT takes (17 jobs of 900 KB: about
        30 MB as hex, over the default 16 MiB max_allowed_packet), it is stored whole,
        each job with its answered id."""
        daemon = await self.start("--max-request-body=16000000")
        payloads = ["%02d" % n + "x" * 900_000 for n in range(17)]
        reply = await daemon.api.request("POST", "/jobs/c", json.dumps({"jobs": [
            {"url": "http://127.0.0.1:9/", "payload": p, "run_after": 3600}
            for p in payloads]}), timeout=60)
        self.assertEqual(reply.code, 200, reply.body[:300])
        stored = stored_payloads(self.database, "q")
        self.assertEqual([stored[p.encode()] for p in payloads],
                         [answer["id"] for answer in reply.json["jobs"]])

    async def test_tooLargeIs413(self) -> None:
        """When a job is larger than the server's max_allowed_packet allows, its push is
        413 with its size and the limit, and the pushes sent with it are stored."""
        original = global_packet_limit()
        try:
            global_packet_limit(MiB)
            daemon = await self.start("--max-request-body=2000000")
            small = ["small %d" % n for n in range(10)]
            big = "big" + "x" * 600_000
            replies = await gather(push(daemon, p) for p in [*small, big])
        finally:
            global_packet_limit(original)
        too_large = replies.pop()
        self.assertEqual(too_large.code, 413, too_large.body)
        self.assertEqual(too_large.json["error"], "Request Entity Too Large")
        self.assertRegex(too_large.json["message"], r"^Job too large for the store: its INSERT"
                         r" statement needs 120\d{4} bytes, the MySQL server's"
                         r" max_allowed_packet is 1048576$")
        self.assertStored(dict(zip(small, replies)))
        self.assertNotIn(big.encode(), stored_payloads(self.database, "q"))
        reply = await push(daemon, "after")
        self.assertStored({"after": reply})


class SilentStoreTests(TestCase):
    """The database goes silent (L{Proxy.hang}) for longer than the push deadline, under a
    push load of a few clients, each pushing again 20 ms after its last answer."""

    PAUSE = 0.02
    SILENCE = PUSH_TIMEOUT + 3.0

    def setUp(self) -> None:
        self.database = mysqltools.create_database("fwpushs")
        self.addCleanup(mysqltools.drop_database, self.database)

    async def run_silence(self, clients: int, *options: str) -> dict[str, tuple[float, Reply]]:
        """Each push's (time sent, reply) by payload, after the silence and a recovery."""
        proxy = Proxy.start(self)
        daemon = await Daemon.start(self, "mysql", [
            "--mysql-dsn=" + proxy.dsn(self.database,
                                       "?timeout=2s&readTimeout=3s&writeTimeout=3s"),
            *options,
        ])
        await daemon.api.put_queue("q", max_workers=1)
        await daemon.api.put_routing("c", "q")
        numbers: Iterator[int] = itertools.count()
        replies: dict[str, tuple[float, Reply]] = {}
        running = [True]

        async def client() -> None:
            while running[0]:
                payload = "job %d" % next(numbers)
                sent = now()
                replies[payload] = (sent, await push(daemon, payload))
                await sleep(self.PAUSE)

        load = Deferred.fromCoroutine(gather(client() for _ in range(clients)))
        try:
            await eventually(lambda: _count(replies, 0, 200, 50), what="50 pushes before")
            proxy.hang()
            await sleep(self.SILENCE)
            proxy.restore()
            restored = now()
            await eventually(lambda: _count(replies, restored, 200, 50), timeout=20,
                             what="50 pushes after the silence")
        finally:
            running[0] = False
            await load
        await sleep(1.0)  # whatever was sent during the silence has landed by now
        return replies

    def check(self, replies: dict[str, tuple[float, Reply]]) -> list[str]:
        """Every 200 is stored with its id; no 503 other than "outcome unknown" is stored.
        The payloads of those 503s."""
        stored = stored_payloads(self.database, "q")
        codes = Counter(reply.code for _, reply in replies.values())
        refused = {p: r.json["message"] for p, (_, r) in replies.items() if r.code == 503}
        unknown = [p for p, message in refused.items() if message == OUTCOME_UNKNOWN]
        not_stored = [p for p, message in refused.items() if message != OUTCOME_UNKNOWN]
        leaked = sorted(p for p in not_stored if p.encode() in stored)
        print(f"\nSILENT STORE: pushes={len(replies)} codes={dict(codes)}"
              f" not_stored={len(not_stored)} outcome_unknown={len(unknown)}"
              f" (stored {sum(1 for p in unknown if p.encode() in stored)})"
              f" not_stored_but_stored={len(leaked)}")
        self.assertEqual(set(codes), {200, 503})
        self.assertEqual(leaked, [], "%d of %d pushes answered 503 'not stored' were stored"
                                     % (len(leaked), len(not_stored)))
        for payload, (_, reply) in replies.items():
            if reply.code == 200:
                self.assertEqual(stored.get(payload.encode()), reply.json["id"], payload)
        return not_stored

    async def test_notStoredMeansAbsent(self) -> None:
        """When pushes wait for a silent database past their deadline, those answered 503
        (other than "outcome unknown") are absent once it answers again; when more than
        max_pending_pushes wait, the pushes past the limit are answered 503 at once, and are
        not stored either."""
        replies = await self.run_silence(40, "--max-pending-pushes=10")
        not_stored = self.check(replies)
        full = [(sent, reply) for sent, reply in replies.values() if reply.code == 503
                and reply.json["message"].startswith("Store unavailable: 10 pushes")]
        print(f"SILENT STORE: of the not stored, {len(full)} at the limit,"
              f" {len(not_stored) - len(full)} at the deadline or refused by the store")
        self.assertGreater(len(not_stored), len(full))
        self.assertGreater(len(full), 0)
        self.assertLess(max(reply.time - sent for sent, reply in full), 1.0)


async def _count(replies: dict[str, tuple[float, Reply]], since: float, code: int,
                 at_least: int) -> bool:
    return sum(1 for sent, r in replies.values() if sent >= since and r.code == code) >= at_least
