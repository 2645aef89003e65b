"""What a ``GET /metrics`` scrape costs with a million stored jobs: a baseline git ref (default
``main``) against this tree, in one run, on mysql and on sqlite.

Per driver: a fresh database (mysql: a new database ``bench_metrics_<hex>``, dropped
afterwards; sqlite: a file in a temp dir) gets one queue, ``bench``, holding --jobs jobs (80 %
due, 19 % deferred, 1 % grabbed, each with a 130-byte payload) and --failed failure-log entries,
written by SQL. The bench holds the queue's dispatch lock itself (mysql: the queue's GET_LOCK;
sqlite: the file lock), so the daemons serve the API and the metrics as backups and never
deliver. Then, for each version in turn (baseline first, then this tree, --rounds times), a
daemon of that version's code (PYTHONPATH at a ``git archive`` of the ref, or at this tree)
is started with a shim that times, inside the daemon, every SQL statement that counts a job
table (the metrics reads), and is measured:

  spaced   --scrapes scrapes 5.3 s apart (longer than this tree's 5 s refresh interval, so
           each one reads the store): the scrape's response time; the database time it caused
           (the counting statements' execute time, summed, once they are done, also when the
           read outlasts the scrape); and the response time of a push sent 50 ms into the
           scrape (sqlite: does the scrape hold the only connection?).
  burst    20 scrapes back to back: mean response time, and database time per scrape.

Printed: one line per figure (medians over the spaced scrapes), baseline and this tree.

Usage: .venv/bin/python bench/metrics_scrape.py [--drivers mysql,sqlite] [--jobs 1000000]
       [--failed 100000] [--scrapes 5] [--rounds 1] [--baseline main]
Needs MariaDB 10.x (its seq_1_to_N tables fill the job table) at --mysql.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.dirname(HERE)
QUEUE = "bench"
SPACING = 5.3  # longer than fireworq.storecounts.REFRESH_INTERVAL
BURST = 20


# The shim: runs inside the daemon (``metrics_scrape.py --shim STATS -- <twistd options>``).

def shim(stats_path: str, options: list[str]) -> None:
    """Time every statement that counts a job table, then run the daemon. One line per
    statement (seconds) is appended to ``stats_path``."""
    import sqlite3

    import pymysql.cursors

    lock = threading.Lock()
    out = open(stats_path, "a", buffering=1)

    def record(sql: Any, seconds: float) -> None:
        text = str(sql)
        if "fireworq_jq" in text and ("COUNT(" in text or "SUM(" in text):
            with lock:
                out.write("%.6f\n" % seconds)

    plain_execute = pymysql.cursors.Cursor.execute

    def execute(self: Any, query: Any, args: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return plain_execute(self, query, args)
        finally:
            record(query, time.perf_counter() - started)

    pymysql.cursors.Cursor.execute = execute  # type: ignore[method-assign]

    class TimedCursor(sqlite3.Cursor):
        def execute(self, sql: str, parameters: Any = (), /) -> Any:  # type: ignore[override]
            started = time.perf_counter()
            try:
                return super().execute(sql, parameters)
            finally:
                record(sql, time.perf_counter() - started)

    class TimedConnection(sqlite3.Connection):
        def cursor(self, factory: Any = TimedCursor) -> Any:  # type: ignore[override]
            return super().cursor(factory)

    plain_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("factory", TimedConnection)
        return plain_connect(*args, **kwargs)

    sqlite3.connect = connect  # type: ignore[assignment]
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", "-n", "--pidfile=", "fireworq", *options]
    run()  # type: ignore[no-untyped-call]


# The bench

def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 timeout: float = 60) -> tuple[int, bytes, float]:
    """One request on a new connection: status, body, seconds to the whole answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        started = time.perf_counter()
        connection.request(method, path, body=body,
                           headers={"Content-Type": "application/json"} if body else {})
        response = connection.getresponse()
        data = response.read()
        return response.status, data, time.perf_counter() - started
    finally:
        connection.close()


class DbClock:
    """The counting statements' time the daemon's shim recorded."""

    def __init__(self, path: str) -> None:
        self.path = path
        open(path, "a").close()
        self._seen = 0

    def _lines(self) -> list[float]:
        with open(self.path) as stats:
            return [float(line) for line in stats.read().split()]

    def settle(self, quiet: float = 0.6, limit: float = 120.0) -> float:
        """Seconds recorded since the last call, once nothing new came for ``quiet`` s."""
        deadline = time.monotonic() + limit
        count, since = len(self._lines()), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = len(self._lines())
            if now != count:
                count, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        lines = self._lines()
        new, self._seen = lines[self._seen:], len(lines)
        return sum(new)


def start_daemon(infra: Any, directory: str, name: str, code: str, store_args: list[str],
                 stats: str) -> tuple[Any, int]:
    port = infra.free_port()
    env = dict(os.environ, PYTHONPATH=code)
    argv = [sys.executable, os.path.realpath(__file__), "--shim", stats, "--", *store_args,
            "--bind=127.0.0.1:%d" % port, "--queue-log=" + os.path.join(directory, name + ".q"),
            "--access-log=" + os.path.join(directory, name + ".a"), "--shutdown-timeout=5"]
    proc = infra.Proc(name, argv, directory, env=env)
    infra.wait_http(port, "/readyz", proc, 120, "the %s daemon" % name)
    return proc, port


def measure(infra: Any, port: int, db: DbClock, scrapes: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"scrape": [], "db": [], "push": [],
                                       "burst_scrape": [], "burst_db": []}
    status, _, _ = http_request(port, "GET", "/metrics")  # warm-up
    assert status == 200
    db.settle()
    job = json.dumps({"url": "http://127.0.0.1:9/work", "run_after": 3600}).encode()
    for _ in range(scrapes):
        time.sleep(SPACING)
        answer: list[tuple[int, bytes, float]] = []
        scraper = threading.Thread(target=lambda: answer.append(
            http_request(port, "GET", "/metrics")))
        scraper.start()
        time.sleep(0.05)
        pushed = http_request(port, "POST", "/job/" + QUEUE, job)
        scraper.join()
        (status, body, seconds), = answer
        if status != 200 or pushed[0] != 200:
            raise infra.BenchError("scrape %d / push %d" % (status, pushed[0]))
        if b'fireworq_queue_jobs{queue="%s"' % QUEUE.encode() not in body:
            print("    (a scrape without the store gauges: the store took over 2 s)", flush=True)
        figures["scrape"].append(seconds)
        figures["push"].append(pushed[2])
        figures["db"].append(db.settle())
    time.sleep(SPACING)
    started = time.perf_counter()
    for _ in range(BURST):
        status, _, _ = http_request(port, "GET", "/metrics")
    figures["burst_scrape"].append((time.perf_counter() - started) / BURST)
    figures["burst_db"].append(db.settle() / BURST)
    return figures


def populate_mysql(store: Any, jobs: int, failed: int) -> None:
    now = "FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)"
    payload = "CONCAT('{\"user\":', seq, ',\"pad\":\"', REPEAT('x', 100), '\"}')"
    with contextlib.closing(store.connect()) as connection, connection.cursor() as cursor:
        for first in range(1, jobs + 1, 250_000):
            last = min(jobs, first + 249_999)
            cursor.execute(
                "INSERT INTO `fireworq_jq(%s)` (next_try, status, grabber_id, created_at,"
                " retry_count, retry_delay, category, url, payload, timeout)"
                " SELECT %s + IF(seq %% 5 = 0, 3600000, -1000),"
                " IF(seq %% 100 = 0, 'grabbed', 'claimed'), IF(seq %% 100 = 0, 1, NULL),"
                " %s - 1000, 3, 30, 'bench', 'http://127.0.0.1:9/work', %s, 10"
                " FROM seq_%d_to_%d" % (QUEUE, now, now, payload, first, last))
        if failed:
            cursor.execute(
                "INSERT INTO `fireworq_jq_fail(%s)` (job_id, category, url, payload, result,"
                " fail_count, failed_at, created_at) SELECT seq, 'bench',"
                " 'http://127.0.0.1:9/work', %s,"
                " '{\"status\":\"failure\",\"code\":500,\"message\":\"boom\"}', 4,"
                " %s - seq, %s - seq - 1000 FROM seq_1_to_%d" % (QUEUE, payload, now, now, failed))


def populate_sqlite(store: Any, jobs: int, failed: int) -> None:
    now = int(time.time() * 1000)
    payload = "'{\"user\":' || n || ',\"pad\":\"' || printf('%.100c', 'x') || '\"}'"
    series = "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %d) "
    store.execute(
        series % jobs
        + "INSERT INTO `fireworq_jq(%s)` (next_try, status, grabber_id, created_at, retry_count,"
        " retry_delay, category, url, payload, timeout) SELECT"
        " %d + CASE WHEN n %% 5 = 0 THEN 3600000 ELSE -1000 END,"
        " CASE WHEN n %% 100 = 0 THEN 'grabbed' ELSE 'claimed' END,"
        " CASE WHEN n %% 100 = 0 THEN 1 END, %d, 3, 30, 'bench', 'http://127.0.0.1:9/work',"
        " %s, 10 FROM s" % (QUEUE, now, now - 1000, payload))
    if failed:
        store.execute(
            series % failed
            + "INSERT INTO `fireworq_jq_fail(%s)` (job_id, category, url, payload, result,"
            " fail_count, failed_at, created_at) SELECT n, 'bench', 'http://127.0.0.1:9/work',"
            " %s, '{\"status\":\"failure\",\"code\":500,\"message\":\"boom\"}', 4, %d - n,"
            " %d - n FROM s" % (QUEUE, payload, now, now - 1000))


def run_driver(infra: Any, driver: str, arguments: argparse.Namespace,
               versions: dict[str, str], directory: str) -> None:
    from fireworq.storage.mysql import lock_name

    with contextlib.ExitStack() as stack:
        if driver == "mysql":
            store: Any = infra.MySQLStore(stack, infra.MySQLServer.parse(arguments.mysql),
                                          "metrics")
        else:
            store = infra.SQLiteStore(directory)
        store_args = store.daemon_args()
        proc, port = start_daemon(infra, directory, "setup", REPO, store_args,
                                  os.path.join(directory, "setup.stats"))
        for method, path, body in [("PUT", "/queue/" + QUEUE, {}),
                                   ("PUT", "/routing/" + QUEUE, {"queue_name": QUEUE})]:
            status, answer, _ = http_request(port, method, path, json.dumps(body).encode())
            if status != 200:
                raise infra.BenchError("%s %s: %d %r" % (method, path, status, answer))
        proc.stop(15)
        started = time.monotonic()
        (populate_mysql if driver == "mysql" else populate_sqlite)(
            store, arguments.jobs, arguments.failed)
        print("%s: %d jobs and %d failure-log entries written in %.0f s"
              % (driver, arguments.jobs, arguments.failed, time.monotonic() - started),
              flush=True)
        # The bench holds the dispatch lock: the daemons are backups, they never deliver.
        if driver == "mysql":
            holder = stack.enter_context(contextlib.closing(store.connect()))
            with holder.cursor() as cursor:
                cursor.execute("SELECT GET_LOCK(%s, 0)",
                               (lock_name(QUEUE, store.database, "database"),))
                if cursor.fetchone()[0] != 1:
                    raise infra.BenchError("cannot take the queue's lock")
        else:
            lock_file = stack.enter_context(open(store.path + ".lock", "a"))
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        results: dict[str, dict[str, list[float]]] = {
            label: {} for label in versions}
        for round_number in range(arguments.rounds):
            for label, code in versions.items():
                name = "%s-%s-%d" % (driver, "baseline" if code != REPO else "tree",
                                     round_number)
                stats = os.path.join(directory, name + ".stats")
                proc, port = start_daemon(infra, directory, name, code, store_args, stats)
                try:
                    db = DbClock(stats)
                    db.settle()
                    for key, values in measure(infra, port, db, arguments.scrapes).items():
                        results[label].setdefault(key, []).extend(values)
                finally:
                    proc.stop(15)
        print("%s, %d jobs + %d failure-log entries, medians of %d spaced scrapes:"
              % (driver, arguments.jobs, arguments.failed, arguments.scrapes * arguments.rounds))
        rows = [("scrape response, spaced", "scrape"), ("database time a scrape, spaced", "db"),
                ("push sent during a scrape", "push"),
                ("scrape response, burst of %d" % BURST, "burst_scrape"),
                ("database time a scrape, burst", "burst_db")]
        for title, key in rows:
            print("  %-34s %s" % (title, "  ".join(
                "%s %8.1f ms" % (label, statistics.median(results[label][key]) * 1e3)
                for label in versions)), flush=True)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--shim":
        shim(sys.argv[2], sys.argv[sys.argv.index("--") + 1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drivers", default="mysql,sqlite")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--failed", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline", default="main", help="git ref to compare with")
    parser.add_argument("--mysql", default="root@127.0.0.1:3306",
                        metavar="USER[:PW]@HOST[:PORT]")
    arguments = parser.parse_args()
    sys.path.insert(0, HERE)
    from fwbench import infra

    with tempfile.TemporaryDirectory(prefix="metrics_scrape.") as directory:
        baseline = os.path.join(directory, "baseline")
        os.mkdir(baseline)
        archive = subprocess.run(["git", "-C", REPO, "archive", arguments.baseline],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", baseline], input=archive, check=True)
        versions = {arguments.baseline: baseline, "tree": REPO}
        try:
            for driver in arguments.drivers.split(","):
                run_driver(infra, driver.strip(), arguments, versions, directory)
        finally:
            for done in infra.sweep():
                print("cleanup: " + done, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
