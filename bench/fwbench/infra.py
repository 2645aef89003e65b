"""What the scenarios start and create, and how all of it is undone, even on Ctrl-C.

Every process is started in its own session (so a Ctrl-C in the terminal reaches only the
bench, which then stops them in order) and with PR_SET_PDEATHSIG, so that even a bench killed
with SIGKILL takes its daemon, nginx and workers with it. Every undo step is registered on
an ``ExitStack`` right after the thing it undoes was made.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pymysql

from fireworq.storage.sqlcommon import failure_table, job_table

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(BENCH_DIR)
WRK = shutil.which("wrk") or "/usr/bin/wrk"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A measurement cannot go on: a process did not start, a precondition failed."""


# What is alive or exists now, for a last sweep should an undo step itself be interrupted.
LIVE_PROCS: set[Proc] = set()
LIVE_DATABASES: dict[str, MySQLServer] = {}


def sweep() -> list[str]:
    """Kill every process and drop every database still registered; what was done."""
    done = []
    for proc in list(LIVE_PROCS):
        proc.stop(2)
        done.append("stopped %s (pid %d)" % (proc.name, proc.pid))
    for database, server in list(LIVE_DATABASES.items()):
        with contextlib.closing(server.connect()) as connection:
            with connection.cursor() as cursor:
                cursor.execute("DROP DATABASE IF EXISTS `%s`" % database)
        LIVE_DATABASES.pop(database, None)
        done.append("dropped database %s" % database)
    for directory in list(LIVE_CHECKOUTS):
        remove_checkout(directory)
        done.append("removed the baseline checkout %s" % directory)
    return done


# Processes

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    # Runs in the child between fork and exec: die with the bench, whatever kills it.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port() -> int:
    """A loopback port nothing listens on now (also used as a closed port for job URLs)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Proc:
    """A child process in its own session, its stdout and stderr in ``<dir>/<name>.log``."""

    def __init__(self, name: str, argv: list[str], directory: str,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(directory, name + ".log")
        self._log = open(self.log_path, "wb")
        try:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                cwd=directory, env=env, start_new_session=True, preexec_fn=_child_setup)
        except BaseException:
            self._log.close()
            raise
        LIVE_PROCS.add(self)

    @property
    def pid(self) -> int:
        return int(self.popen.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, limit: int = 6000) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - limit))
                return log.read().decode("utf-8", "replace")
        except OSError as error:
            return "(no output: %s)" % error

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds (or at once if
        the wait is interrupted)."""
        try:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(grace)
        finally:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
            # Group members that outlived their leader (an nginx worker).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self._log.close()
            LIVE_PROCS.discard(self)


def run_tool(argv: list[str], timeout: float, directory: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    """Run a load generator to completion; it is killed if the bench is interrupted."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=directory,
                          start_new_session=True, preexec_fn=_child_setup)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> int:
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssWatch:
    """Samples a process's VmRSS every second (and on demand); keeps the maximum."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_kb = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-watch", daemon=True)
        self._thread.start()

    def sample(self) -> int:
        """The largest VmRSS of the process and its descendants (the target is per
        process)."""
        value = 0
        for member in process_tree(self.pid):
            with contextlib.suppress(OSError):
                value = max(value, rss_kb(member))
        self.max_kb = max(self.max_kb, value)
        return value

    def _run(self) -> None:
        while not self._stopped.is_set():
            self.sample()
            self._stopped.wait(1.0)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)


# HTTP

class Http:
    """One keep-alive HTTP/1.1 connection (http.client) to 127.0.0.1:<port>."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.port = port
        self._timeout = timeout
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                retry: bool = False) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):
            try:
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self._conn.close()
                if not retry or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        data = None if body is None else json.dumps(body).encode()
        status, answer = self.request(method, path, data, retry=method in ("GET", "PUT"))
        if status != expect:
            raise BenchError("%s %s answered %d: %s"
                             % (method, path, status, answer[:500].decode("utf-8", "replace")))
        return json.loads(answer) if answer else None

    def close(self) -> None:
        self._conn.close()


def push_jobs(port: int, category: str, count: int, body: Callable[[int], bytes],
              connections: int = 8) -> dict[int, int]:
    """POST ``count`` jobs over ``connections`` keep-alive connections; statuses counted."""
    indexes = iter(range(count))
    lock = threading.Lock()
    statuses: dict[int, int] = {}
    errors: list[BaseException] = []

    def pusher() -> None:
        client = Http(port)
        try:
            while True:
                with lock:
                    index = next(indexes, None)
                if index is None:
                    return
                status, _ = client.request("POST", "/job/" + category, body(index))
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
        except BaseException as error:
            errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=pusher, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError("pushing failed: %r" % errors[0])
    return statuses


def wait_http(port: int, path: str, proc: Proc, timeout: float, what: str) -> None:
    """Wait until GET <path> answers 200; fail with the process's output if it died."""
    deadline = time.monotonic() + timeout
    client = Http(port, timeout=5)
    try:
        while True:
            if not proc.alive():
                raise BenchError("%s exited with status %s at start; its output:\n%s"
                                 % (what, proc.popen.returncode, proc.output()))
            try:
                status, _ = client.request("GET", path)
                if status == 200:
                    return
            except (OSError, http.client.HTTPException):
                client.close()
            if time.monotonic() > deadline:
                raise BenchError("%s not ready after %.0f s (GET %s); its output:\n%s"
                                 % (what, timeout, path, proc.output()))
            time.sleep(0.1)
    finally:
        client.close()


# Stores

@dataclass(frozen=True)
class MySQLServer:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    @classmethod
    def parse(cls, text: str) -> MySQLServer:
        """``USER[:PASSWORD]@HOST[:PORT]``."""
        match = re.fullmatch(r"([^:@]+)(?::(.*))?@([^:@]+)(?::(\d+))?", text)
        if not match:
            raise ValueError("expected USER[:PASSWORD]@HOST[:PORT], got %r" % text)
        user, password, host, port = match.groups()
        return cls(host, int(port or 3306), user, password or "")

    def connect(self, database: str | None = None) -> Any:
        return pymysql.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, database=database, autocommit=True,
                               connect_timeout=5, read_timeout=120, write_timeout=120)

    def dsn(self, database: str, port: int | None = None) -> str:
        return "%s:%s@tcp(%s:%d)/%s" % (self.user, self.password, self.host,
                                         port or self.port, database)

    def questions(self, connection: Any) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
            return int(cursor.fetchone()[1])


class Store:
    """A fresh database for one measurement (the daemon's options and the bench's checks)."""

    kind = ""

    def daemon_args(self, proxy_port: int | None = None) -> list[str]:
        raise NotImplementedError

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def execute(self, sql: str, args: Iterable[Any] = ()) -> int:
        raise NotImplementedError

    def job_ids(self, queue: str) -> list[int]:
        return [int(row[0]) for row in self.query("SELECT job_id FROM %s" % job_table(queue))]

    def count_jobs(self, queue: str) -> int:
        return int(self.query("SELECT COUNT(*) FROM %s" % job_table(queue))[0][0])

    def count_failures(self, queue: str) -> int:
        return int(self.query("SELECT COUNT(*) FROM %s" % failure_table(queue))[0][0])

    def make_due(self, queue: str, due_ms: int) -> int:
        """Every job of the queue due at ``due_ms`` (ms since the epoch); rows changed."""
        return self.execute("UPDATE %s SET next_try = %d" % (job_table(queue), due_ms))


class MySQLStore(Store):
    kind = "mysql"

    def __init__(self, stack: contextlib.ExitStack, server: MySQLServer, label: str) -> None:
        self.server = server
        self.database = "bench_%s_%s" % (re.sub(r"\W", "", label), secrets.token_hex(4))
        with contextlib.closing(server.connect()) as connection:
            with connection.cursor() as cursor:
                cursor.execute("CREATE DATABASE `%s`" % self.database)
        LIVE_DATABASES[self.database] = server
        stack.callback(self._drop)

    def _drop(self) -> None:
        with contextlib.closing(self.server.connect()) as connection:
            with connection.cursor() as cursor:
                cursor.execute("DROP DATABASE IF EXISTS `%s`" % self.database)
        LIVE_DATABASES.pop(self.database, None)

    def daemon_args(self, proxy_port: int | None = None) -> list[str]:
        if proxy_port is None:
            dsn = self.server.dsn(self.database)
        else:
            dsn = "%s:%s@tcp(127.0.0.1:%d)/%s" % (self.server.user, self.server.password,
                                                  proxy_port, self.database)
        return ["--driver=mysql", "--mysql-dsn=" + dsn]

    def connect(self) -> Any:
        return self.server.connect(self.database)

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.connect()) as connection:
            with connection.cursor() as cursor:
                cursor.execute(sql, tuple(args) or None)
                return list(cursor.fetchall())

    def execute(self, sql: str, args: Iterable[Any] = ()) -> int:
        with contextlib.closing(self.connect()) as connection:
            with connection.cursor() as cursor:
                return int(cursor.execute(sql, tuple(args) or None))


class SQLiteStore(Store):
    kind = "sqlite"

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "fireworq.sqlite3")  # removed with the directory

    def daemon_args(self, proxy_port: int | None = None) -> list[str]:
        return ["--driver=sqlite", "--sqlite-path=" + self.path]

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        connection.execute("PRAGMA busy_timeout=30000")
        return connection

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(self._connect()) as connection:
            return list(connection.execute(sql, tuple(args)).fetchall())

    def execute(self, sql: str, args: Iterable[Any] = ()) -> int:
        with contextlib.closing(self._connect()) as connection:
            return int(connection.execute(sql, tuple(args)).rowcount)


# The daemon, nginx, wrk

class Daemon:
    """``twistd -n fireworq`` on a free port; ready once GET /readyz answers 200."""

    def __init__(self, stack: contextlib.ExitStack, python: str, directory: str,
                 store_args: list[str], extra: Iterable[str] = (),
                 twistd_args: Iterable[str] = (), cpus: str | None = None) -> None:
        self.port = free_port()
        pin = [shutil.which("taskset") or "taskset", "-c", cpus] if cpus else []
        argv = [*pin, python, "-c", "from twisted.scripts.twistd import run; run()", "-n",
                "--pidfile=", *twistd_args, "fireworq", *store_args, "--bind=127.0.0.1:%d" % self.port,
                "--keep-alive=true", "--queue-log=" + os.path.join(directory, "queue.log"),
                "--access-log=" + os.path.join(directory, "access.log"),
                "--shutdown-timeout=5", *extra]
        self.proc = Proc("daemon", argv, directory)
        stack.callback(self.proc.stop, 15)
        wait_http(self.port, "/readyz", self.proc, 60, "the daemon (%s)" % " ".join(argv))
        self.api = Http(self.port)
        stack.callback(self.api.close)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if not self.proc.alive():
            raise BenchError("the daemon died (status %s); its output:\n%s"
                             % (self.proc.popen.returncode, self.proc.output()))

    def define(self, queue: str, category: str | None, **settings: Any) -> None:
        self.api.json("PUT", "/queue/" + queue, settings)
        if category is not None:
            self.api.json("PUT", "/routing/" + category, {"queue_name": queue})

    def stats(self, queue: str) -> dict[str, int]:
        stats: dict[str, int] = self.api.json("GET", "/queue/%s/stats" % queue)
        return stats


NGINX_CONF = """\
# written by bench/run
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 3600s;
    keepalive_requests 1000000000;
    server {{
        listen 127.0.0.1:{port};
        location = /nginx_status {{ stub_status; }}
        location / {{
            default_type application/json;
            return 200 '{{"status":"success"}}';
        }}
    }}
}}
"""


class Nginx:
    """nginx with one worker answering every POST ``{"status":"success"}``."""

    def __init__(self, stack: contextlib.ExitStack, directory: str) -> None:
        self.port = free_port()
        self.dir = os.path.join(directory, "nginx")
        os.makedirs(self.dir)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as out:
            out.write(NGINX_CONF.format(dir=self.dir, port=self.port))
        self.proc = Proc("nginx", [NGINX, "-p", self.dir + "/", "-c", conf,
                                   "-e", os.path.join(self.dir, "error.log")], self.dir)
        stack.callback(self.proc.stop, 10)
        wait_http(self.port, "/nginx_status", self.proc, 20, "nginx")
        self.url = "http://127.0.0.1:%d/work" % self.port

    def status(self) -> dict[str, int]:
        """stub_status counters (this request counts in ``requests``)."""
        client = Http(self.port, timeout=10)
        try:
            status, body = client.request("GET", "/nginx_status")
        finally:
            client.close()
        match = re.search(rb"Active connections:\s*(\d+).*?(\d+)\s+(\d+)\s+(\d+)", body, re.S)
        if status != 200 or not match:
            raise BenchError("nginx stub_status answered %d: %r" % (status, body))
        active, accepts, handled, requests = (int(group) for group in match.groups())
        return {"active": active, "accepts": accepts, "handled": handled, "requests": requests}


WRK_DONE = r"""
function done(summary, latency, requests)
  local sent, ok, other = 0, 0, 0
  for _, t in ipairs(threads) do
    sent = sent + (t:get("sent") or 0)
    ok = ok + (t:get("ok") or 0)
    other = other + (t:get("other") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us":%d,"requests":%d,"sent":%d,"ok":%d,"other":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,' ..
    '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.duration, summary.requests, sent, ok, other, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def wrk_post_script(body: str, ids_prefix: str | None = None) -> str:
    """A wrk script POSTing ``body``; with ``ids_prefix``, each thread writes the ``id`` of
    every 200 answer to ``<ids_prefix>-<thread>.txt`` and counts what it sent and got."""
    head = ("-- written by bench/run\nthreads = {}\nwrk.method = \"POST\"\n"
            "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
            "wrk.body = %s\n" % lua_string(body))
    head += "function setup(thread)\n  table.insert(threads, thread)\n" \
            "  thread:set(\"tid\", #threads)\nend\n"
    if ids_prefix is None:
        return head + WRK_DONE
    counting = r"""
function init(args)
  sent, ok, other = 0, 0, 0
  ids = assert(io.open(%s .. "-" .. tid .. ".txt", "w"))
  ids:setvbuf("line")
  req = wrk.format()
end

function request()
  sent = sent + 1
  return req
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    ids:write((string.match(body, '"id":(%%d+)') or "?") .. "\n")
  else
    other = other + 1
  end
end
""" % lua_string(ids_prefix)
    return head + counting + WRK_DONE


def run_wrk(directory: str, name: str, script: str, url: str, *, threads: int,
            connections: int, seconds: float) -> dict[str, Any]:
    path = os.path.join(directory, name + ".lua")
    with open(path, "w") as out:
        out.write(script)
    argv = [WRK, "-t%d" % threads, "-c%d" % connections, "-d%ds" % max(1, round(seconds)),
            "--timeout", "10s", "--latency", "-s", path, url]
    result = run_tool(argv, timeout=seconds + 60, directory=directory)
    for line in result.stdout.splitlines():
        if line.startswith("WRKJSON "):
            figures: dict[str, Any] = json.loads(line[8:])
            figures["output"] = result.stdout
            return figures
    raise BenchError("wrk failed (status %d):\n%s\n%s"
                     % (result.returncode, result.stdout, result.stderr))


# A commit's daemon as the baseline

class Checkout:
    """``commit`` checked out in a throwaway worktree (``git worktree add --detach``) with a
    venv of its own holding that tree installed (pip, its own pyproject's dependencies);
    both removed by the stack."""

    def __init__(self, stack: contextlib.ExitStack, commit: str, root: str | None = None
                 ) -> None:
        resolved = subprocess.run(["git", "-C", REPO_DIR, "rev-parse", "--verify",
                                   commit + "^{commit}"], capture_output=True, text=True)
        if resolved.returncode:
            raise BenchError("--baseline %s: not a commit of %s (%s)"
                             % (commit, REPO_DIR, resolved.stderr.strip()))
        self.commit = resolved.stdout.strip()
        self.dir = os.path.join(root or "/tmp", "fireworq-baseline-%s-%s"
                                % (self.commit[:9], secrets.token_hex(3)))
        added = subprocess.run(["git", "-C", REPO_DIR, "worktree", "add", "--detach", self.dir,
                                self.commit], capture_output=True, text=True)
        if added.returncode:
            raise BenchError("git worktree add failed: %s" % added.stderr.strip())
        LIVE_CHECKOUTS.add(self.dir)
        stack.callback(remove_checkout, self.dir)
        venv = os.path.join(self.dir, ".venv")
        for argv in ([_system_python(), "-m", "venv", venv],
                     [os.path.join(venv, "bin", "pip"), "install", "-q", self.dir]):
            result = subprocess.run(argv, capture_output=True, text=True, timeout=900,
                                    cwd="/")
            if result.returncode:
                raise BenchError("%s failed:\n%s%s" % (" ".join(argv), result.stdout[-3000:],
                                                       result.stderr[-3000:]))
        self.python = os.path.join(venv, "bin", "python")


LIVE_CHECKOUTS: set[str] = set()


def _system_python() -> str:
    """The interpreter the running venv was made from (a venv's own ``-m venv`` would do,
    but its prefix names the base)."""
    import sys
    base = os.path.join(sys.base_prefix, "bin", "python%d.%d" % sys.version_info[:2])
    return base if os.access(base, os.X_OK) else sys.executable


def remove_checkout(directory: str) -> None:
    subprocess.run(["git", "-C", REPO_DIR, "worktree", "remove", "--force", directory],
                   capture_output=True)
    shutil.rmtree(directory, ignore_errors=True)
    subprocess.run(["git", "-C", REPO_DIR, "worktree", "prune"], capture_output=True)
    LIVE_CHECKOUTS.discard(directory)


# Several processes: a daemon's CPU and RSS with its children

def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/<pid>/task/*/children)."""
    tree, index = [pid], 0
    while index < len(tree):
        current = tree[index]
        index += 1
        with contextlib.suppress(OSError):
            for task in os.listdir("/proc/%d/task" % current):
                with open("/proc/%d/task/%s/children" % (current, task)) as children:
                    tree.extend(int(child) for child in children.read().split())
    return tree


def each_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU of a process and of each of its live descendants, by pid."""
    found = {}
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            found[member] = cpu_seconds(member)
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live descendants (a child that exited before the second
    reading takes its share with it: start them before the first)."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(member)
    return total


def host_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat, for a share over an interval."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return float(sum(fields) - idle), float(sum(fields))
