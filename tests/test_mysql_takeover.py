"""Taking over a database that Fireworq 1.5 wrote (DESIGN.md 4, API.md 1.8, 5.4, 7 items 20, 24).

The test builds Fireworq's schema with Fireworq's own DDL (copied literally below from
fireworq/fireworq ``data/repository/mysql/schema/*.sql`` and ``data/jobqueue/mysql/schema/*.sql``,
template placeholders included, so that this test does not depend on our driver's copy), fills
it the way Fireworq's Go code writes it (``repository/mysql/queue.go``,
``jobqueue/mysql/jobqueue.go``, ``failure_log.go``), then starts our daemon on it:

* every stored job is delivered: due ones, a retried one (its counters kept), one left
  ``grabbed`` by a session that no longer exists (orphan recovery, API.md 3.6), and a deferred one
  only once its ``next_try`` has come;
* Fireworq's failure-log rows read back through ``GET /queue/{q}/failed`` with the JSON Go wrote
  (``<``, ``>``, ``&`` escaped as ``\\u003c`` ``\\u003e`` ``\\u0026``) and the times rendered in
  the daemon's ``TZ``;
* ``GET /queues`` and ``GET /routings`` show Fireworq's definitions, the FLOAT throttle rate read
  back rounded to 7 significant digits (``0.1``, not ``0.10000000149011612``);
* a stored queue whose name is longer than 46 characters is listed, readable and deletable, but
  not run: its other endpoints answer 404 and the error log says why (API.md 7 item 24).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import Daemon, Worker, eventually, now

# --- Fireworq 1.5's DDL, verbatim -----------------------------------------------------------

FIREWORQ_QUEUE_SQL = """\
CREATE TABLE IF NOT EXISTS `queue` (
  `name` VARCHAR(255) NOT NULL,
  `polling_interval` INT UNSIGNED NOT NULL,
  `max_workers` INT UNSIGNED NOT NULL,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=binary;
"""

FIREWORQ_QUEUE_THROTTLE_SQL = """\
CREATE TABLE IF NOT EXISTS `queue_throttle` (
  `name` VARCHAR(255) NOT NULL,
  `max_dispatches_per_second` FLOAT UNSIGNED NOT NULL,
  `max_burst_size` INT UNSIGNED NOT NULL,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=binary;
"""

FIREWORQ_ROUTING_SQL = """\
CREATE TABLE IF NOT EXISTS `routing` (
  `job_category` VARCHAR(255) NOT NULL,
  `queue_name` VARCHAR(255) NOT NULL,
  PRIMARY KEY (`job_category`),
  UNIQUE KEY `job_queue` (`job_category`, `queue_name`)
) ENGINE=InnoDB DEFAULT CHARSET=binary;
"""

FIREWORQ_CONFIG_REVISION_SQL = """\
CREATE TABLE IF NOT EXISTS `config_revision` (
  `name` VARCHAR(255) NOT NULL,
  `revision` BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=binary;
"""

FIREWORQ_JOB_QUEUE_SQL = """\
CREATE TABLE IF NOT EXISTS `{{.JobQueue}}` (
  `job_id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `next_try` BIGINT UNSIGNED NOT NULL,
  `grabber_id` BIGINT UNSIGNED,
  `status` ENUM('claimed', 'grabbed') NOT NULL DEFAULT 'claimed',
  `created_at` BIGINT UNSIGNED NOT NULL,
  `retry_count` INT UNSIGNED NOT NULL DEFAULT 0,
  `retry_delay` INT UNSIGNED NOT NULL DEFAULT 0,
  `fail_count` INT UNSIGNED NOT NULL DEFAULT 0,

  `category` VARCHAR(255) NOT NULL,
  `url` BLOB,
  `payload` MEDIUMBLOB,
  `timeout` INT UNSIGNED,

  PRIMARY KEY (`job_id`),
  KEY `grab` (`status`, `next_try`)
) ENGINE=InnoDB DEFAULT CHARSET=binary;
"""

FIREWORQ_JOB_FAILURE_SQL = """\
CREATE TABLE IF NOT EXISTS `{{.Failure}}` (
  `failure_id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `job_id` BIGINT UNSIGNED NOT NULL,
  `category` VARCHAR(255) NOT NULL,
  `url` BLOB,
  `payload` MEDIUMBLOB,
  `result` MEDIUMBLOB,
  `fail_count` INT UNSIGNED NOT NULL,
  `failed_at` BIGINT UNSIGNED NOT NULL,
  `created_at` BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (`failure_id`),
  KEY `creation_order` (`created_at`)
) ENGINE=InnoDB DEFAULT CHARSET=binary;
"""

NOW_MS = "FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)"


def fireworq_table_part(queue_name: str) -> str:
    """``newTableName`` in Fireworq's jobqueue/mysql/sql.go."""
    return re.sub("[^0-9a-z_]", "_", queue_name)


def fireworq_tables(queue_name: str) -> tuple[str, str]:
    part = fireworq_table_part(queue_name)
    return f"fireworq_jq({part})", f"fireworq_jq_fail({part})"


def go_json_result(status: str, code: int, message: str) -> bytes:
    """``json.Marshal`` of Fireworq's ``jobqueue.Result``: compact, members in struct order,
    HTML-safe escaping of ``<``, ``>`` and ``&``."""
    text = json.dumps({"status": status, "code": code, "message": message},
                      separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .encode("utf-8"))


# --- what Fireworq left in the database ------------------------------------------------------

QUEUE = "legacy-Jobs"  # table part "legacy__obs": upper case and '-' map to '_'
THROTTLED = "legacy_throttled"
LONG = "legacy_queue_whose_name_is_longer_than_46_characters"
CATEGORY = "legacy_cat"
THROTTLED_CATEGORY = "throttled_cat"
LONG_CATEGORY = "long_cat"
ORPHAN_GRABBER = 999999999  # a connection id no session has
DEFER_MS = 3000
TZ = "Asia/Tokyo"

# (failure_id, job_id, payload, result, fail_count, failed_at, created_at), as Go wrote them.
FAILURES = [
    (1, 3, b'{"user": 44}', go_json_result("failure", 500, "boom <x> & y"), 4,
     1732790400250, 1732790400012),
    # A pushed JSON string is stored as its characters (API.md 1.6): not JSON when re-read.
    (2, 7, b"plain <text> & more",
     go_json_result("permanent-failure", 400, "bad <input> & more"), 1,
     1732790460000, 1732790401500),
]
# The same rows as GET /queue/{q}/failed renders them with TZ=Asia/Tokyo (API.md 1.5, 2.24).
FAILED_RENDERED = {
    1: ("2024-11-28T19:40:00.25+09:00", "2024-11-28T19:40:00.012+09:00",
        {"status": "failure", "code": 500, "message": "boom <x> & y"}, {"user": 44}),
    2: ("2024-11-28T19:41:00+09:00", "2024-11-28T19:40:01.5+09:00",
        {"status": "permanent-failure", "code": 400, "message": "bad <input> & more"},
        "plain <text> & more"),
}


def iso_ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


class FireworqTakeoverTests(TestCase):
    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.assertGreater(len(LONG), 46)
        self.database = mysqltools.create_database("fwtakeover")
        self.addCleanup(mysqltools.drop_database, self.database)
        self.worker = await Worker.start(self)

    def sql(self, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        return mysqltools.execute(self.database, statement, args)

    def write_fireworq_database(self) -> dict[str, int]:
        """Fireworq's schema and data; returns the job ids by kind."""
        for ddl in (FIREWORQ_QUEUE_SQL, FIREWORQ_QUEUE_THROTTLE_SQL, FIREWORQ_ROUTING_SQL,
                    FIREWORQ_CONFIG_REVISION_SQL):
            self.sql(ddl)
        for name in (QUEUE, THROTTLED):  # Fireworq could not create LONG's tables
            jobs, failures = fireworq_tables(name)
            self.sql(FIREWORQ_JOB_QUEUE_SQL.replace("{{.JobQueue}}", jobs))
            self.sql(FIREWORQ_JOB_FAILURE_SQL.replace("{{.Failure}}", failures))

        # queueRepository.Add: a queue row and a throttle row (0, 0 when unthrottled), then
        # the revision bumped; routingRepository the same way.
        for name, interval, workers, rate, burst in (
            (QUEUE, 200, 5, 0.0, 0), (THROTTLED, 100, 4, 0.1, 3), (LONG, 200, 20, 0.0, 0),
        ):
            self.sql("INSERT INTO queue (name, polling_interval, max_workers) VALUES (%s, %s, %s)",
                     (name, interval, workers))
            self.sql("INSERT INTO queue_throttle (name, max_dispatches_per_second, max_burst_size)"
                     " VALUES (%s, %s, %s)", (name, rate, burst))
        for category, queue in ((CATEGORY, QUEUE), (THROTTLED_CATEGORY, THROTTLED),
                                (LONG_CATEGORY, LONG)):
            self.sql("INSERT INTO routing (job_category, queue_name) VALUES (%s, %s)",
                     (category, queue))
        self.sql("INSERT INTO config_revision (name, revision) VALUES"
                 " ('queue_definition', 5), ('routing', 3)")

        # insert_job.sql (next_try = now + delay, created_at = now, in ms of the DB clock),
        # then what Pop / Update leave behind.
        jobs, failures = fireworq_tables(QUEUE)
        insert = (f"INSERT INTO `{jobs}` (next_try, created_at, retry_count, retry_delay,"
                  f" fail_count, category, url, payload, timeout)"
                  f" VALUES ({NOW_MS} + %s, {NOW_MS} + %s, %s, %s, %s, %s, %s, %s, %s)")

        def job(kind: str, delay_ms: int, created_ms: int = 0, retry_count: int = 0,
                retry_delay: int = 0, fail_count: int = 0, timeout: int = 0,
                table: str = jobs, category: str = CATEGORY, payload: str | None = None) -> int:
            if payload is None:
                payload = json.dumps({"kind": kind})
            self.sql(insert.replace(f"`{jobs}`", f"`{table}`"),
                     (delay_ms, created_ms, retry_count, retry_delay, fail_count, category,
                      self.worker.url(f"/legacy/{kind}"), payload, timeout))
            [(job_id,)] = self.sql(f"SELECT MAX(job_id) FROM `{table}`")
            return int(job_id)

        ids = {
            "due": job("due", 0),
            "deferred": job("deferred", DEFER_MS, retry_count=3, retry_delay=7, timeout=30),
            # Fireworq stores a push without payload as an empty string.
            "empty": job("empty", 0, payload=""),
            # Failed once, 2 retries left, its retry due now (update_job.sql).
            "retried": job("retried", 0, created_ms=-5000, retry_count=2, retry_delay=1,
                           fail_count=1),
            # Grabbed by a Fireworq node whose session is gone.
            "orphan": job("orphan", -2000, created_ms=-2000),
        }
        self.sql(f"UPDATE `{jobs}` SET status = 'grabbed', grabber_id = %s WHERE job_id = %s",
                 (ORPHAN_GRABBER, ids["orphan"]))
        ids["throttled"] = job("throttled", 0, table=fireworq_tables(THROTTLED)[0],
                               category=THROTTLED_CATEGORY)
        # failure_log.go Add: the result marshalled by Go, failed_at from the Go clock.
        for failure_id, job_id, payload, result, fail_count, failed_at, created_at in FAILURES:
            self.sql(f"INSERT INTO `{failures}` (job_id, category, url, payload, result,"
                     f" fail_count, failed_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                     (job_id, CATEGORY, "http://worker.example/fail", payload, result,
                      fail_count, failed_at, created_at))
        return ids

    async def test_fireworq_database_is_taken_over(self) -> None:
        ids = self.write_fireworq_database()
        [(deferred_next_try, deferred_created_at)] = self.sql(
            f"SELECT next_try, created_at FROM `{fireworq_tables(QUEUE)[0]}` WHERE job_id = %s",
            (ids["deferred"],))
        deferred_next_try, deferred_created_at = int(deferred_next_try), int(deferred_created_at)
        daemon = await Daemon.start(
            self, "mysql", [f"--mysql-dsn={mysqltools.dsn_text(self.database)}"],
            env={"TZ": TZ})
        started = now()
        api = daemon.api

        # The deferred job as Fireworq stored it, read while it waits.
        inspected = await api.ok("GET", f"/queue/{QUEUE}/job/{ids['deferred']}")
        created_text, next_try_text = inspected.pop("created_at"), inspected.pop("next_try")
        self.assertEqual(inspected, {
            "id": ids["deferred"], "category": CATEGORY,
            "url": self.worker.url("/legacy/deferred"), "payload": {"kind": "deferred"},
            "status": "claimed", "timeout": 30, "fail_count": 0, "max_retries": 3,
            "retry_delay": 7,
        })
        self.assertEqual((iso_ms(created_text), iso_ms(next_try_text)),
                         (deferred_created_at, deferred_next_try))
        self.assertTrue(next_try_text.endswith("+09:00"), next_try_text)

        # Every job is delivered, the orphan too; the deferred one last, not before its time.
        kinds = {"due", "empty", "retried", "orphan", "throttled", "deferred"}
        received = await self.worker.wait_for(len(kinds), timeout=DEFER_MS / 1000 + 10)
        by_kind = {r.path.removeprefix("/legacy/"): r for r in received}
        self.assertEqual(set(by_kind), kinds)
        for kind, r in by_kind.items():
            expected_body = b"" if kind == "empty" else json.dumps({"kind": kind}).encode()
            self.assertEqual(r.body, expected_body)
            self.assertEqual(r.header("Content-Type"), "application/json")
        deferred_at = by_kind["deferred"].time * 1000
        self.assertIs(received[-1], by_kind["deferred"])
        self.assertGreaterEqual(deferred_at, deferred_next_try - 5)  # one clock, ms floors
        self.assertLessEqual(deferred_at, deferred_next_try + 200 + 800)
        print("\nTAKEOVER: delivered (s from the daemon's first /healthz 200; dispatch starts"
              " before listening): " + ", ".join(
                  f"{kind} {r.time - started:+.3f}" for kind, r in by_kind.items())
              + f"; the deferred one {deferred_at - deferred_next_try:.0f} ms after its next_try")

        async def all_done() -> bool:
            return len(daemon.queue_log(action="complete")) == len(kinds)
        await eventually(all_done, what="a complete line per job")
        completes = {line["id"]: line for line in daemon.queue_log(action="complete")
                     if line["queue"] == QUEUE}
        retried = completes[ids["retried"]]
        # The retried job kept Fireworq's counters: one failure so far, two retries left.
        self.assertEqual((retried["status"], retried["fail_count"], retried["retry_count"],
                          retried["retry_delay"]), ("completed", 1, 2, 1))
        self.assertEqual(completes[ids["orphan"]]["status"], "completed")
        for state in ("waiting", "deferred", "grabbed"):
            for queue in (QUEUE, THROTTLED):
                page = await api.ok("GET", f"/queue/{queue}/{state}")
                self.assertEqual(page["jobs"], [], f"{queue} {state}")
        self.assertEqual(self.sql(f"SELECT COUNT(*) FROM `{fireworq_tables(QUEUE)[0]}`"),
                         [(0,)])

        # Fireworq's failure log, most recent failure first.
        failed_reply = await api.request("GET", f"/queue/{QUEUE}/failed")
        self.assertEqual(failed_reply.code, 200)
        failed = failed_reply.json
        # Compact JSON with <, >, & escaped (API.md 1.3), as Go wrote the result.
        self.assertIn(b'"payload":"plain \\u003ctext\\u003e \\u0026 more"', failed_reply.body)
        self.assertIn(b'"message":"boom \\u003cx\\u003e \\u0026 y"', failed_reply.body)
        self.assertEqual(failed["next_cursor"], "")
        self.assertEqual([f["id"] for f in failed["failed_jobs"]], [2, 1])
        for entry in failed["failed_jobs"]:
            failed_at, created_at, result, payload = FAILED_RENDERED[entry["id"]]
            row = next(f for f in FAILURES if f[0] == entry["id"])
            self.assertEqual(entry, {
                "id": row[0], "job_id": row[1], "category": CATEGORY,
                "url": "http://worker.example/fail", "payload": payload, "result": result,
                "fail_count": row[4], "failed_at": failed_at, "created_at": created_at,
            })
            self.assertEqual((iso_ms(failed_at), iso_ms(created_at)), (row[5], row[6]))
            self.assertEqual(await api.ok("GET", f"/queue/{QUEUE}/failed/{entry['id']}"), entry)
        by_created = await api.ok("GET", f"/queue/{QUEUE}/failed?order=created")
        self.assertEqual([f["id"] for f in by_created["failed_jobs"]], [2, 1])

        # Fireworq's definitions, as stored; the FLOAT rate rounded to 7 digits.
        queues = await api.request("GET", "/queues")
        self.assertEqual(queues.code, 200)
        expected: list[dict[str, Any]] = sorted([
            {"name": QUEUE, "polling_interval": 200, "max_workers": 5},
            {"name": THROTTLED, "polling_interval": 100, "max_workers": 4,
             "max_dispatches_per_second": 0.1, "max_burst_size": 3},
            {"name": LONG, "polling_interval": 200, "max_workers": 20},
        ], key=lambda q: str(q["name"]).encode())
        self.assertEqual(queues.json, expected)
        self.assertIn(b'"max_dispatches_per_second":0.1,', queues.body)
        self.assertEqual(await api.ok("GET", "/routings"), sorted([
            {"queue_name": QUEUE, "job_category": CATEGORY},
            {"queue_name": THROTTLED, "job_category": THROTTLED_CATEGORY},
            {"queue_name": LONG, "job_category": LONG_CATEGORY},
        ], key=lambda r: (r["queue_name"].encode(), r["job_category"].encode())))
        self.assertEqual(sorted(await api.ok("GET", "/queues/stats")), sorted([QUEUE, THROTTLED]))

        # The node of a taken-over queue is this daemon's session.
        node = await api.ok("GET", f"/queue/{QUEUE}/node")
        self.assertEqual(node["host"], "127.0.0.1")
        self.assertTrue(node["id"].isdigit(), node)

        # New pushes go on in Fireworq's table, after its ids.
        pushed = await api.push_ok(CATEGORY, self.worker.url("/legacy/new"), '{"kind": "new"}')
        self.assertEqual(pushed["queue_name"], QUEUE)
        self.assertGreater(pushed["id"], max(ids.values()))
        await self.worker.wait_for(len(kinds) + 1)

        # The queue with a name too long to run: listed and readable, known to no node.
        self.assertEqual(await api.ok("GET", f"/queue/{LONG}"),
                         {"name": LONG, "polling_interval": 200, "max_workers": 20})
        for path in ("stats", "node", "failed", "waiting", "grabbed", "deferred", "job/1",
                     "failed/1"):
            reply = await api.request("GET", f"/queue/{LONG}/{path}")
            self.assertEqual((reply.code, reply.json["message"]),
                             (404, f"No such queue: {LONG}"), path)
        reply = await api.push(LONG_CATEGORY, self.worker.url("/legacy/long"), '{"kind": "long"}')
        self.assertEqual((reply.code, reply.json["message"]), (404, f"Undefined queue: {LONG}"))
        errors = daemon.error_lines()
        self.assertEqual(len(errors), 1, errors)
        self.assertIn(LONG, errors[0])
        self.assertIn("46", errors[0])
        daemon.check_errors = False  # that one error is expected
        # ... and deletable.
        self.assertEqual((await api.request("DELETE", f"/queue/{LONG}")).code, 200)
        self.assertEqual([q["name"] for q in await api.ok("GET", "/queues")],
                         sorted([QUEUE, THROTTLED], key=str.encode))
        self.assertEqual(len(self.worker.received), len(kinds) + 1)
