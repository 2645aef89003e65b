"""Taking over a database that Fireworq 1.5 wrote (docs/migrating-from-fireworq.md).

The test builds Fireworq's schema with Fireworq's own DDL (copied literally below from
fireworq/fireworq ``data/repository/mysql/schema/*.sql`` and ``data/jobqueue/mysql/schema/*.sql``,
template placeholders included, so that this test does not depend on our driver's copy), fills
it the way Fireworq's Go code writes it (``repository/mysql/queue.go``,
``jobqueue/mysql/jobqueue.go``, ``failure_log.go``), then starts our daemon on it:

* every stored job is delivered: due ones, a retried one (its counters kept), one left
  ``grabbed`` by a session that no longer exists (orphan recovery, docs/worker-protocol.md,
  At-least-once delivery), and a deferred one only once its ``next_try`` has come;
* Fireworq's failure-log rows read back through ``GET /queue/{q}/failed`` with the JSON Go wrote
  (``<``, ``>``, ``&`` escaped as ``\\u003c`` ``\\u003e`` ``\\u0026``) and the times rendered in
  the daemon's ``TZ``;
* ``GET /queues`` and ``GET /routings`` show Fireworq's definitions, the FLOAT throttle rate read
  back rounded to 7 significant digits (``0.1``, not ``0.10000000149011612``);
* a stored queue whose name is longer than 46 characters is listed, readable and deletable, but
  not run: its other endpoints answer 404 and the error log says why
  (docs/migrating-from-fireworq.md, Differences).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import Daemon, Worker, eventually, now, permanent_failure, success

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
DEFER_MS = 6000  # longer than a daemon start on a loaded machine (about 3 s)
TZ = "Asia/Tokyo"

# (failure_id, job_id, payload, result, fail_count, failed_at, created_at), as Go wrote them.
FAILURES = [
    (1, 3, b'{"user": 44}', go_json_result("failure", 500, "boom <x> & y"), 4,
     1732790400250, 1732790400012),
    # A pushed JSON string is stored as its characters (docs/api.md, Payloads): not JSON when
    # re-read.
    (2, 7, b"plain <text> & more",
     go_json_result("permanent-failure", 400, "bad <input> & more"), 1,
     1732790460000, 1732790401500),
]
# The same rows as GET /queue/{q}/failed renders them with TZ=Asia/Tokyo (docs/api.md, Times).
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
        # Compact JSON with <, >, & escaped (docs/api.md, Responses), as Go wrote the result.
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

    def fireworq_columns(self) -> list[tuple[Any, ...]]:
        """Every column of Fireworq's tables as the server describes it, in order."""
        return self.sql(
            "SELECT TABLE_NAME, ORDINAL_POSITION, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE,"
            " COLUMN_DEFAULT, EXTRA FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME NOT LIKE 'fireworqpy%%'"
            " ORDER BY TABLE_NAME, ORDINAL_POSITION")

    def queue_definition_revision(self) -> int:
        [(revision,)] = self.sql(
            "SELECT revision FROM config_revision WHERE name = 'queue_definition'")
        return int(revision)

    async def test_new_features_leave_fireworq_tables_as_fireworq_reads_them(self) -> None:
        """Pause, retention members and retries used on a database Fireworq made: Fireworq's
        tables keep their columns, Fireworq's change counter does not move (its nodes would
        restart every queue), and the reads Fireworq makes find what our node wrote."""
        self.write_fireworq_database()
        columns = self.fireworq_columns()
        revision = self.queue_definition_revision()
        daemon = await Daemon.start(
            self, "mysql", [f"--mysql-dsn={mysqltools.dsn_text(self.database)}"],
            env={"TZ": TZ})
        daemon.check_errors = False  # the queue with a long name cannot run (logged)
        api = daemon.api
        jobs, failures = fireworq_tables(QUEUE)

        # A queue Fireworq defined, paused and given retention members through our node (a
        # TTL of ten years: Fireworq's entries were written in 2024).
        plain = {"name": QUEUE, "polling_interval": 200, "max_workers": 5}
        self.assertEqual(await api.ok("POST", f"/queue/{QUEUE}/pause"),
                         {**plain, "paused": True})
        ours = {**plain, "failed_job_ttl": 315360000, "failed_job_limit": 100}
        stored = await api.ok("PUT", f"/queue/{QUEUE}", json.dumps(
            {"max_workers": 5, "failed_job_ttl": 315360000, "failed_job_limit": 100}))
        self.assertEqual(stored, {**ours, "paused": True})

        # Fireworq's entries retried: one by id, with the settings inferred from its
        # fail_count (4 attempts: 3 retries), one through a bulk retry.
        retried = await api.ok("POST", f"/queue/{QUEUE}/failed/1/retry")
        self.assertEqual({k: retried[k] for k in ("category", "url", "payload", "max_retries",
                                                  "retry_delay", "timeout", "run_after")},
                         {"category": CATEGORY, "url": "http://worker.example/fail",
                          "payload": {"user": 44}, "max_retries": 3, "retry_delay": 0,
                          "timeout": 0, "run_after": 0})
        bulk = await api.ok("POST", f"/queue/{QUEUE}/failed/retry",
                            json.dumps({"category": CATEGORY}))
        self.assertEqual(bulk["retried"], 1)
        self.assertEqual(await api.failed(QUEUE), [])

        # A failure written by our node, in a queue Fireworq made.
        self.worker.policy = lambda received: (
            permanent_failure("no <thanks> & bye") if received.path == "/ours/fail"
            else success())
        pushed = await api.push_ok(THROTTLED_CATEGORY, self.worker.url("/ours/fail"),
                                   '{"kind": "ours"}', max_retries=0, timeout=3)

        async def written() -> Any:
            return await api.failed(THROTTLED)
        [entry] = await eventually(written, timeout=10, what="our failure-log entry")
        self.assertEqual(entry["job_id"], pushed["id"])

        self.assertEqual(self.queue_definition_revision(), revision)

        # What Fireworq's repository reads.
        self.assertEqual(self.sql("SELECT name, polling_interval, max_workers FROM queue"
                                  " ORDER BY name ASC"),
                         sorted([(QUEUE.encode(), 200, 5), (THROTTLED.encode(), 100, 4),
                                 (LONG.encode(), 200, 20)]))
        self.assertEqual(
            self.sql("SELECT name, max_dispatches_per_second, max_burst_size FROM"
                     " queue_throttle WHERE name IN (%s, %s) ORDER BY name", (QUEUE, THROTTLED)),
            [(QUEUE.encode(), 0.0, 0), (THROTTLED.encode(), 0.1, 3)])
        # What its job queue reads: the retried jobs are due claimed jobs of its own shape.
        due = {int(job_id) for (job_id,) in self.sql(
            f"SELECT job_id FROM `{jobs}` WHERE status = 'claimed'"
            f" AND next_try <= {NOW_MS} ORDER BY next_try ASC LIMIT 100")}
        self.assertLessEqual({retried["id"], *bulk["jobs"]}, due)
        [row] = self.sql(
            f"SELECT job_id, category, url, payload, status, grabber_id, retry_count,"
            f" retry_delay, fail_count, timeout FROM `{jobs}` WHERE job_id = %s",
            (retried["id"],))
        self.assertEqual(row, (retried["id"], CATEGORY.encode(), b"http://worker.example/fail",
                               b'{"user": 44}', b"claimed", None, 3, 0, 0, 0))
        # ... and its failure log: our entry, its result as Fireworq writes results.
        [row] = self.sql(
            "SELECT failure_id, job_id, category, url, payload, result, fail_count, failed_at,"
            " created_at FROM `%s` WHERE created_at <= %s ORDER BY created_at DESC,"
            " failure_id DESC LIMIT 100" % (fireworq_tables(THROTTLED)[1], NOW_MS))
        self.assertEqual(row[1:5], (pushed["id"], THROTTLED_CATEGORY.encode(),
                                    self.worker.url("/ours/fail").encode(), b'{"kind": "ours"}'))
        self.assertEqual(bytes(row[5]), go_json_result(
            "permanent-failure", 400, "no <thanks> & bye"))
        self.assertEqual(row[6], 1)

        # A batch push and idempotent pushes into the (paused) queue Fireworq made, with a
        # unique_window of ours: Fireworq's job queue reads the jobs as its own, the keys
        # are in our table only, and Fireworq's counter does not move.
        await api.ok("PUT", f"/queue/{QUEUE}", json.dumps(
            {"max_workers": 5, "failed_job_ttl": 315360000, "failed_job_limit": 100,
             "unique_window": 3600}))
        url = "http://worker.example/batch"
        batch = await api.ok("POST", f"/jobs/{CATEGORY}", json.dumps({"jobs": [
            {"url": url, "payload": {"n": n}, "unique_key": "b%d" % (n % 2)}
            for n in range(3)]}))
        ids = [answer["id"] for answer in batch["jobs"]]
        self.assertEqual((ids[0] == ids[2], ids[0] != ids[1]), (True, True))
        again = await api.request("POST", f"/job/{CATEGORY}", json.dumps(
            {"url": url, "unique_key": "b1"}))
        self.assertEqual((again.code, again.json["id"]), (200, ids[1]))
        self.assertEqual(self.queue_definition_revision(), revision)
        batch_rows = self.sql(
            f"SELECT job_id, category, url, payload, status, grabber_id, retry_count,"
            f" retry_delay, fail_count, timeout FROM `{jobs}` WHERE status = 'claimed'"
            f" AND next_try <= {NOW_MS} AND url = %s ORDER BY next_try ASC, job_id ASC"
            f" LIMIT 100", (url,))
        self.assertEqual(batch_rows, [
            (ids[0], CATEGORY.encode(), url.encode(), b'{"n": 0}', b"claimed", None, 0, 0, 0, 0),
            (ids[1], CATEGORY.encode(), url.encode(), b'{"n": 1}', b"claimed", None, 0, 0, 0, 0)])
        self.assertEqual(sorted(self.sql(
            f"SELECT ukey, job_id FROM `fireworqpy_uniq({fireworq_table_part(QUEUE)})`")),
            [(b"b0", ids[0]), (b"b1", ids[1])])

        # Fireworq's tables as they were; ours beside them.
        self.assertEqual(self.fireworq_columns(), columns)
        self.assertEqual(self.sql("SELECT name, paused FROM fireworqpy_queue"),
                         [(QUEUE.encode(), 1)])
        await api.ok("POST", f"/queue/{QUEUE}/resume")
        self.assertEqual(self.queue_definition_revision(), revision)
        self.assertEqual(failures, fireworq_tables(QUEUE)[1])
