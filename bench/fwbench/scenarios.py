"""The five scenarios. Each measurement gets a fresh temp dir, database and daemon."""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

from fwbench.infra import (
    BenchError,
    Daemon,
    Http,
    MySQLServer,
    MySQLStore,
    Nginx,
    Proc,
    RssWatch,
    SQLiteStore,
    Store,
    free_port,
    push_jobs,
    run_tool,
    run_wrk,
    each_cpu_seconds,
    tree_cpu_seconds,
    wait_http,
    wrk_post_script,
)
from fwbench.mysqlproxy import CountingProxy
from fwbench.report import Recorder

from fireworq.storage import mysql as mysql_storage
from fireworq.storage import sqlite as sqlite_storage
from fireworq.storage.sqlcommon import job_table

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "latency_worker.py")
PAYLOAD = {"user": 42, "lang": "ja"}


@dataclass(frozen=True)
class Durations:
    push_warmup: float = 2
    push_seconds: float = 10
    drain_jobs: int = 20_000
    latency_rate: int = 100
    latency_seconds: float = 10
    idle_queues: int = 100
    idle_settle: float = 5
    idle_seconds: float = 20
    idle_background: float = 3
    ceiling_seconds: float = 10


FULL = Durations()
QUICK = Durations(push_warmup=1, push_seconds=3, drain_jobs=3_000, latency_seconds=3,
                  idle_settle=2, idle_seconds=5, idle_background=1, ceiling_seconds=3)


@dataclass
class Context:
    driver: str
    python: str
    durations: Durations
    mysql: MySQLServer
    root: str
    rec: Recorder
    daemon_args: tuple[str, ...] = ()
    twistd_args: tuple[str, ...] = ()  # before the subcommand, e.g. --reactor
    cpus: str | None = None  # the daemon runs under ``taskset -c <cpus>``


class Fresh:
    """One measurement's temp dir and fresh store (and daemon): all undone on exit."""

    def __init__(self, ctx: Context, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.stack = contextlib.ExitStack()
        self.watch: RssWatch | None = None

    def __enter__(self) -> Fresh:
        self.stack.__enter__()
        try:
            self.dir = tempfile.mkdtemp(prefix=self.name + "-", dir=self.ctx.root)
            self.stack.callback(shutil.rmtree, self.dir, True)
            self.store: Store = (MySQLStore(self.stack, self.ctx.mysql, self.name)
                                 if self.ctx.driver == "mysql" else SQLiteStore(self.dir))
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> bool | None:
        return self.stack.__exit__(*exc)

    def daemon(self, *extra: str, proxy_port: int | None = None) -> Daemon:
        daemon = Daemon(self.stack, self.ctx.python, self.dir,
                        self.store.daemon_args(proxy_port), (*extra, *self.ctx.daemon_args),
                        self.ctx.twistd_args, self.ctx.cpus)
        self.watch = RssWatch(daemon.pid)
        self.stack.callback(self.watch.stop)
        return daemon

    def record_rss(self, scenario: str) -> None:
        assert self.watch is not None
        self.watch.sample()
        self.ctx.rec.figure(scenario, "rss_max_mb", "daemon RSS, max of 1 s samples",
                            self.watch.max_kb / 1024, "MB", "{:.1f}")


def _sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.5))


# 1. push

def push(ctx: Context) -> None:
    rec, d = ctx.rec, ctx.durations
    with Fresh(ctx, "push") as fresh:
        daemon = fresh.daemon()
        daemon.define("push", "bench", max_workers=20, polling_interval=200)
        body = json.dumps({"url": "http://127.0.0.1:%d/work" % free_port(), "payload": PAYLOAD,
                           "run_after": 3600})
        url = "http://127.0.0.1:%d/job/bench" % daemon.port
        runs = {}
        for phase, seconds in (("warmup", d.push_warmup), ("measured", d.push_seconds)):
            script = wrk_post_script(body, os.path.join(fresh.dir, "ids-" + phase))
            cpu_before = tree_cpu_seconds(daemon.pid)
            runs[phase] = run_wrk(fresh.dir, "push-" + phase, script, url, threads=2,
                                  connections=32, seconds=seconds)
            runs[phase]["cpu"] = tree_cpu_seconds(daemon.pid) - cpu_before
            daemon.check_alive()
        main = runs["measured"]
        seconds = main["duration_us"] / 1e6
        rec.figure("push", "jobs_per_s", "jobs/s accepted (200), wrk -c32", main["ok"] / seconds,
                   "jobs/s")
        rec.figure("push", "p50_ms", "response time p50", main["p50_us"] / 1000, "ms", "{:.2f}")
        rec.figure("push", "p99_ms", "response time p99", main["p99_us"] / 1000, "ms", "{:.2f}")
        rec.figure("push", "non_200", "non-200 answers and socket errors",
                   main["other"] + main["connect_errors"] + main["read_errors"]
                   + main["write_errors"] + main["timeouts"], "")
        rec.figure("push", "cpu_us_per_job", "daemon CPU per push",
                   main["cpu"] / max(1, main["ok"]) * 1e6, "µs", "{:.0f}")
        _check_stored(ctx, fresh, runs)
        fresh.record_rss("push")
        rec.detail("push", {name: {k: v for k, v in run.items() if k != "output"}
                            for name, run in runs.items()})


def _check_stored(ctx: Context, fresh: Fresh, runs: dict[str, dict[str, Any]]) -> None:
    """Every 200 answer's job is stored; extra rows only from requests wrk abandoned."""
    acknowledged: list[str] = []
    for path in glob.glob(os.path.join(fresh.dir, "ids-*.txt")):
        with open(path) as ids:
            acknowledged.extend(line.strip() for line in ids if line.strip())
    oks = sum(run["ok"] for run in runs.values())
    in_flight = sum(max(0, run["sent"] - run["ok"] - run["other"]) for run in runs.values())
    rows: set[int] = set()
    deadline = time.time() + 10
    while True:  # pushes wrk abandoned at its stop may still be committing
        previous, rows = rows, set(fresh.store.job_ids("push"))
        if previous == rows and len(rows) >= oks or time.time() > deadline:
            break
        time.sleep(0.5)
    unparsed = sum(1 for value in acknowledged if not value.isdigit())
    acked = {int(value) for value in acknowledged if value.isdigit()}
    missing, extra = acked - rows, rows - acked
    ok = (len(acknowledged) == oks and not unparsed and len(acked) == oks and not missing
          and len(extra) <= in_flight)
    ctx.rec.check("push", "stored jobs = 200 answers", ok,
                  "%d answers 200 (warm-up + measured), %d rows; %d acknowledged jobs missing,"
                  " %d duplicate ids; %d more rows, from the %d requests in flight when wrk"
                  " stopped" % (oks, len(rows), len(missing), oks - len(acked), len(extra),
                                in_flight))


# 2. drain

def drain(ctx: Context, max_workers: int) -> None:
    rec, n = ctx.rec, ctx.durations.drain_jobs
    scenario = "drain/%d" % max_workers
    with Fresh(ctx, "drain%d" % max_workers) as fresh:
        nginx = Nginx(fresh.stack, fresh.dir)
        daemon = fresh.daemon("--dispatch-keep-alive=true")
        interval_ms = 200
        daemon.define("drain", "drain", max_workers=max_workers, polling_interval=interval_ms)
        # Pushed an hour ahead, then all made due at one instant by setting next_try in the
        # store: run_after is whole seconds from each push, so pushes alone cannot make
        # 20,000 jobs due together. The due check reads next_try from the store.
        statuses = push_jobs(daemon.port, "drain", n, lambda i: json.dumps(
            {"url": nginx.url, "payload": {"n": i}, "run_after": 3600}).encode())
        if statuses != {200: n}:
            raise BenchError("pushing %d jobs answered %r" % (n, statuses))
        interval = interval_ms / 1000
        # Mid-way between two polls (they fall on multiples of the interval): the wait for
        # the first poll is the average one, interval / 2.
        due = math.ceil((time.time() + 2.0) / interval) * interval + interval / 2
        changed = fresh.store.make_due("drain", int(due * 1000))
        if changed != n or time.time() > due - 0.5:
            raise BenchError("making %d jobs due changed %d rows (or took too long)"
                             % (n, changed))
        nginx_before = nginx.status()
        _sleep_until(due - 0.05)
        cpu_before = tree_cpu_seconds(daemon.pid)
        each_before = each_cpu_seconds(daemon.pid)
        _sleep_until(due)
        first_grab = finished = None
        deadline = due + max(60.0, n / 300)
        # Progress read from the store rather than from /queue/{q}/stats: with --processes
        # the process that answers need not be the one dispatching.
        progress = "SELECT COUNT(*), SUM(status = 'grabbed') FROM %s" % job_table("drain")
        left = grabbed = n
        tick = due
        while True:
            tick += 0.05
            _sleep_until(tick)
            left, grabbed = (int(value or 0) for value in fresh.store.query(progress)[0])
            now = time.time()
            if first_grab is None and (grabbed > 0 or left < n):
                first_grab = now
            if left == 0:
                finished = now
                break
            if now > deadline:
                raise BenchError("drain not finished %.0f s after the due time: %d jobs left"
                                 % (now - due, left))
            daemon.check_alive()
        cpu = tree_cpu_seconds(daemon.pid) - cpu_before
        each_after = each_cpu_seconds(daemon.pid)
        nginx_after = nginx.status()
        rec.figure(scenario, "jobs_per_s", "jobs/s, due time → last job deleted",
                   n / (finished - due), "jobs/s")
        rec.figure(scenario, "first_grab_ms", "due time → first grab seen (50 ms reads)",
                   ((first_grab or finished) - due) * 1000, "ms", "{:.0f}")
        rec.figure(scenario, "cpu_us_per_job", "daemon CPU per job", cpu / n * 1e6, "µs",
                   "{:.0f}")
        if len(each_after) > 1:  # --processes: the first process's share, and the others'
            shares = [(after - each_before.get(pid, after)) / n * 1e6
                      for pid, after in each_after.items()]
            rec.figure(scenario, "first_cpu_us_per_job", "CPU per job, first process",
                       shares[0], "µs", "{:.0f}")
            rec.figure(scenario, "others_cpu_us_per_job", "CPU per job, the others",
                       sum(shares[1:]), "µs", "{:.0f}")
        delivered = nginx_after["requests"] - nginx_before["requests"] - 1
        connections = nginx_after["accepts"] - nginx_before["accepts"] - 1
        rec.figure(scenario, "worker_connections", "new connections to nginx", connections, "")
        rec.check(scenario, "nginx received every job", delivered >= n,
                  "%d requests for %d jobs" % (delivered, n))
        left, failed = fresh.store.count_jobs("drain"), fresh.store.count_failures("drain")
        rec.check(scenario, "no job left", left == 0 and failed == 0,
                  "%d rows left, %d in the failure log" % (left, failed))
        fresh.record_rss(scenario)
        rec.detail(scenario, {"jobs": n, "due": due, "seconds": finished - due,
                              "nginx_before": nginx_before, "nginx_after": nginx_after})


# 3. latency

def latency(ctx: Context, interval_ms: int) -> None:
    rec, d = ctx.rec, ctx.durations
    scenario = "latency/%dms" % interval_ms
    with Fresh(ctx, "latency%d" % interval_ms) as fresh:
        worker_port = free_port()
        worker = Proc("worker", [ctx.python, WORKER, str(worker_port)], fresh.dir)
        fresh.stack.callback(worker.stop, 5)
        wait_http(worker_port, "/count", worker, 30, "the latency worker")
        daemon = fresh.daemon("--dispatch-keep-alive=true")
        daemon.define("latency", "latency", max_workers=20, polling_interval=interval_ms)
        worker_url = "http://127.0.0.1:%d/work" % worker_port
        n = int(d.latency_rate * d.latency_seconds)
        client = Http(daemon.port)
        fresh.stack.callback(client.close)
        push_times, bad = [], 0
        start = time.monotonic() + 0.2
        for index in range(n):  # one client, one push every 1/rate s (late ones at once)
            delay = start + index / d.latency_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.time()
            status, _ = client.request("POST", "/job/latency", json.dumps(
                {"url": worker_url, "payload": {"i": index, "t": sent}}).encode())
            push_times.append(time.time() - sent)
            bad += status != 200
        if bad:
            raise BenchError("%d of %d pushes were not accepted" % (bad, n))
        probe = Http(worker_port)
        fresh.stack.callback(probe.close)
        deadline = time.time() + 30 + interval_ms / 1000
        while int(probe.request("GET", "/count")[1]) < n and time.time() < deadline:
            time.sleep(0.05)
        rows = json.loads(probe.request("GET", "/results")[1])
        latencies: list[float] = sorted((arrived - sent) * 1000 for _, sent, arrived in rows)
        if not latencies:
            raise BenchError("the worker received no job")

        def percentile(p: float) -> float:
            return latencies[min(len(latencies) - 1, math.ceil(p / 100 * len(latencies)) - 1)]

        rec.figure(scenario, "p50_ms", "push → worker p50", percentile(50), "ms", "{:.1f}")
        rec.figure(scenario, "p90_ms", "push → worker p90", percentile(90), "ms", "{:.1f}")
        rec.figure(scenario, "p99_ms", "push → worker p99", percentile(99), "ms", "{:.1f}")
        rec.figure(scenario, "max_ms", "push → worker max", latencies[-1], "ms", "{:.1f}")
        rec.figure(scenario, "push_p50_ms", "push response time p50",
                   statistics.median(push_times) * 1000, "ms", "{:.2f}")
        indexes = sorted(row[0] for row in rows)
        rec.check(scenario, "every job delivered once", indexes == list(range(n)),
                  "%d deliveries of %d jobs, %d distinct" % (len(rows), n, len(set(indexes))))
        fresh.record_rss(scenario)


# 4. idle

def idle(ctx: Context) -> None:
    rec, d = ctx.rec, ctx.durations
    with Fresh(ctx, "idle") as fresh:
        proxy = monitor = None
        if isinstance(fresh.store, MySQLStore):
            # Through a counting proxy: the server's Questions counter also counts every
            # other client of a shared server. Questions is read too, for comparison.
            proxy = CountingProxy(ctx.mysql.host, ctx.mysql.port)
            proxy.start()
            fresh.stack.callback(proxy.stop)
            monitor = ctx.mysql.connect()
            fresh.stack.callback(monitor.close)
            first, began = ctx.mysql.questions(monitor), time.time()
            time.sleep(d.idle_background)
            background = (ctx.mysql.questions(monitor) - first - 1) / (time.time() - began)
        daemon = fresh.daemon(proxy_port=proxy.port if proxy else None)
        for index in range(d.idle_queues):
            daemon.api.json("PUT", "/queue/idle%03d" % index, {})
        time.sleep(d.idle_settle)
        counted = proxy.snapshot() if proxy else None
        questions = ctx.mysql.questions(monitor) if monitor else 0
        cpu, began = tree_cpu_seconds(daemon.pid), time.time()
        time.sleep(d.idle_seconds)
        cpu = tree_cpu_seconds(daemon.pid) - cpu
        counted_after = proxy.snapshot() if proxy else None
        questions = ctx.mysql.questions(monitor) - questions - 1 if monitor else 0
        seconds = time.time() - began
        daemon.check_alive()
        scenario = "idle"
        rec.figure(scenario, "cpu_pct", "daemon CPU, %d idle queues" % d.idle_queues,
                   cpu / seconds * 100, "% of a core", "{:.2f}")
        if counted is not None and counted_after is not None:
            rec.figure(scenario, "queries_per_s", "daemon's queries/s (counting proxy)",
                       (counted_after["questions"] - counted["questions"]) / seconds, "/s",
                       "{:.1f}")
            rec.figure(scenario, "global_questions_per_s",
                       "Questions/s, whole server, minus own", questions / seconds, "/s",
                       "{:.1f}")
            rec.figure(scenario, "background_questions_per_s",
                       "Questions/s before the daemon started", background, "/s", "{:.1f}")
            shapes = {shape: count - counted["shapes"].get(shape, 0)
                      for shape, count in counted_after["shapes"].items()}
            top = sorted(((c, s) for s, c in shapes.items() if c), reverse=True)[:8]
            rec.detail(scenario, {"statements": [{"count": c, "per_s": round(c / seconds, 2),
                                                  "statement": s} for c, s in top],
                                  "commands": counted_after["commands"]})
            for count, shape in top[:3]:
                rec.note(scenario, "  %.1f/s" % (count / seconds), shape)
        else:
            rec.note(scenario, "queries/s", "n/a with the sqlite driver")
        assert fresh.watch is not None
        rec.figure(scenario, "rss_mb", "daemon RSS at the end", fresh.watch.sample() / 1024,
                   "MB", "{:.1f}")
        fresh.record_rss(scenario)


# 5. ceilings

def ceilings(ctx: Context) -> None:
    with Fresh(ctx, "ceilings") as fresh:
        if isinstance(fresh.store, MySQLStore):
            _mysql_insert_ceiling(ctx, fresh.store, fresh.dir)
        else:
            assert isinstance(fresh.store, SQLiteStore)
            _sqlite_insert_ceiling(ctx, fresh.store, fresh.dir)
        _nginx_ceiling(ctx, fresh)


CEILING_TABLE = "x"


def _mysql_insert(table: str) -> str:
    """The daemon's single-job INSERT (fireworq/storage/mysql.py) with literal values."""
    now = mysql_storage.NOW_MS
    return ("INSERT INTO %s (next_try, created_at, retry_count, retry_delay, fail_count,"
            " category, url, payload, timeout) VALUES (%s + 3600000, %s, 0, 0, 0, 'bench',"
            " 'http://127.0.0.1:9/work', '%s', 0)" % (table, now, now, json.dumps(PAYLOAD)))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _mysql_insert_ceiling(ctx: Context, store: MySQLStore, directory: str) -> None:
    rec, seconds, clients = ctx.rec, ctx.durations.ceiling_seconds, 32
    table = job_table(CEILING_TABLE)
    store.execute(mysql_storage._JOB_TABLE_SCHEMA[0].format(jobs=table))
    query = _mysql_insert(table)
    slap = shutil.which("mariadb-slap") or shutil.which("mysqlslap")

    def count() -> int:
        return store.count_jobs(CEILING_TABLE)

    if slap:
        def run(queries: int) -> tuple[int, float, float, float]:
            before, cpu, began = count(), _children_cpu(), time.time()
            argv = [slap, "-h", ctx.mysql.host, "-P", str(ctx.mysql.port), "-u", ctx.mysql.user,
                    "--create-schema=" + store.database, "--no-drop", "--iterations=1",
                    "--concurrency=%d" % clients, "--number-of-queries=%d" % queries,
                    "--query=" + query]
            if ctx.mysql.password:
                argv.insert(1, "--password=" + ctx.mysql.password)
            result = run_tool(argv, timeout=600, directory=directory)
            wall, cpu = time.time() - began, _children_cpu() - cpu
            match = re.search(r"Average number of seconds to run all queries: ([\d.]+)",
                              result.stdout)
            if result.returncode or not match:
                raise BenchError("%s failed:\n%s\n%s" % (slap, result.stdout, result.stderr))
            return count() - before, float(match.group(1)), cpu, wall

        rows, elapsed, _, _ = run(clients * 50)  # calibration and warm-up
        rate = rows / max(elapsed, 0.001)
        rows, elapsed, cpu, wall = run(max(clients * 100, int(rate * seconds) // clients * clients))
        tool = os.path.basename(slap)
    else:
        rows, elapsed, cpu, wall = _python_insert_clients(ctx, store, query, clients, seconds,
                                                           directory)
        tool = "%d PyMySQL processes" % clients
    rec.figure("ceilings", "insert_rows_per_s",
               "MariaDB single-row INSERTs/s, %d clients" % clients, rows / elapsed, "rows/s")
    rec.figure("ceilings", "insert_client_cores", "  its client (%s) CPU" % tool,
               cpu / wall, "cores", "{:.2f}")
    rec.check("ceilings", "INSERT client is not the limit", cpu / wall < 0.5,
              "the client used %.2f of %d cores" % (cpu / wall, os.cpu_count() or 0))


PY_CLIENT = r"""
import sys, time, pymysql
host, port, user, password, database, query = sys.argv[1:7]
start, end = float(sys.argv[7]), float(sys.argv[8])
connection = pymysql.connect(host=host, port=int(port), user=user, password=password,
                             database=database, autocommit=True)
cursor = connection.cursor()
while time.time() < start:
    time.sleep(0.001)
cpu, done = time.process_time(), 0
while time.time() < end:
    cursor.execute(query)
    done += 1
print(done, time.process_time() - cpu)
"""


def _python_insert_clients(ctx: Context, store: MySQLStore, query: str, clients: int,
                           seconds: float, directory: str) -> tuple[int, float, float, float]:
    """Fallback without mariadb-slap: processes each looping over autocommit INSERTs."""
    start = time.time() + 3
    argv = [sys.executable, "-c", PY_CLIENT, ctx.mysql.host, str(ctx.mysql.port),
            ctx.mysql.user, ctx.mysql.password, store.database, query, str(start),
            str(start + seconds)]
    procs = []
    try:
        for _ in range(clients):
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                                          start_new_session=True, cwd=directory))
        rows = cpu = 0.0
        for proc in procs:
            out, _ = proc.communicate(timeout=seconds + 60)
            done, used = out.split()
            rows, cpu = rows + int(done), cpu + float(used)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return int(rows), seconds, cpu, seconds


SQLITE_CLIENTS = r"""
import sqlite3, sys, threading, time
path, insert, clients, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
counts = []
def connect():
    connection = sqlite3.connect(path, timeout=30, isolation_level=None,
                                 check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=5000"):
        connection.execute("PRAGMA " + pragma)
    return connection
def loop(connection, end):
    done = 0
    while time.time() < end:
        connection.execute(insert)
        done += 1
    counts.append(done)
connections = [connect() for _ in range(clients)]
end = time.time() + seconds
threads = [threading.Thread(target=loop, args=(c, end)) for c in connections]
for thread in threads: thread.start()
for thread in threads: thread.join()
print(sum(counts), time.process_time())
"""


def _sqlite_insert_ceiling(ctx: Context, store: SQLiteStore, directory: str) -> None:
    """Autocommit single-row INSERTs with the daemon's pragmas (WAL, synchronous=FULL)."""
    names = {"jobs": job_table(CEILING_TABLE), "failures": "`x_fail`",
             "grab_index": "`x_grab`", "created_index": "`x_created`",
             "failed_index": "`x_failed`", "settings": "`x_settings`"}
    for statement in sqlite_storage._JOB_TABLE_SCHEMA:
        store.execute(statement.format(**names))
    now = int(time.time() * 1000)  # the daemon binds its times as parameters
    insert = ("INSERT INTO %s (next_try, created_at, retry_count, retry_delay, fail_count,"
              " category, url, payload, timeout) VALUES (%d, %d, 0, 0, 0, 'bench',"
              " 'http://127.0.0.1:9/work', '%s', 0)"
              % (names["jobs"], now + 3_600_000, now, json.dumps(PAYLOAD)))
    best = 0.0
    for clients in (1, 32):
        result = run_tool([sys.executable, "-c", SQLITE_CLIENTS, store.path, insert,
                           str(clients), str(ctx.durations.ceiling_seconds)],
                          timeout=ctx.durations.ceiling_seconds + 60, directory=directory)
        if result.returncode:
            raise BenchError("sqlite INSERT loop failed:\n%s" % result.stderr)
        rows, cpu = result.stdout.split()
        rate = int(rows) / ctx.durations.ceiling_seconds
        best = max(best, rate)
        ctx.rec.figure("ceilings", "sqlite_rows_per_s_%d" % clients,
                       "SQLite single-row INSERTs/s, %d client%s" % (clients, "s" * (clients > 1)),
                       rate, "rows/s")
    ctx.rec.figure("ceilings", "insert_rows_per_s", "INSERT ceiling (best of the above)",
                   best, "rows/s")


def _nginx_ceiling(ctx: Context, fresh: Fresh) -> None:
    nginx = Nginx(fresh.stack, fresh.dir)
    body = json.dumps(PAYLOAD)
    script = wrk_post_script(body)
    run_wrk(fresh.dir, "nginx-warmup", script, nginx.url, threads=2, connections=32, seconds=1)
    result = run_wrk(fresh.dir, "nginx", script, nginx.url, threads=2, connections=32,
                     seconds=ctx.durations.ceiling_seconds)
    ctx.rec.figure("ceilings", "nginx_posts_per_s", "nginx POSTs/s, wrk -t2 -c32 keep-alive",
                   result["requests"] / (result["duration_us"] / 1e6), "req/s")


def drains(ctx: Context) -> None:
    drain(ctx, 50)
    drain(ctx, 200)


def latencies(ctx: Context) -> None:
    latency(ctx, 200)
    latency(ctx, 1000)


SCENARIOS: dict[str, Callable[[Context], None]] = {
    "push": push,
    "drain": drains,
    "latency": latencies,
    "idle": idle,
    "ceilings": ceilings,
}
