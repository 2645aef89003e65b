#!/usr/bin/env python3
"""Batch pushes against single pushes, and the cost of a unique key per push.

For each driver asked (mysql, sqlite) and each run, on a fresh daemon and database, with
the queue paused (so that the figures are the push path alone, not the deliveries), in
this order:

  single            POST /job/{c}, one job each, from wrk (-t2 -c32, keep-alive) for 5 s,
                    as bench/run's push scenario: the baseline of every other line.
  single+key        the same, each push with a unique_key of its own (all new keys): the
                    cost of a key is the difference of the time per push.
  duplicate         the same, with keys the previous line pushed (100 per wrk thread,
                    over and over): each stores nothing and answers the first push's
                    answer.
  batch 1000        10 POST /jobs/{c} of 1,000 jobs each, one after the other on one
                    connection (10,000 jobs).
  batch 100 x8      100 POST /jobs/{c} of 100 jobs each over 8 connections (10,000 jobs).
  batch 1000+key    10 batches of 1,000 jobs with new unique keys, on one connection.

Rates are jobs/s: accepted pushes over wrk's duration, and for batches from the first
request sent to the last answer. Every run checks that the job table holds what was
answered (no job lost, none stored twice; wrk may leave up to one push a connection
unanswered at its stop, which may be stored). Prints one line
per measurement, then medians (min - max) and the cost of a key per push.

Usage: .venv/bin/python bench/push_batches.py [--driver mysql,sqlite] [--runs 3]
       [--mysql USER[:PW]@HOST[:PORT]]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fwbench import infra  # noqa: E402  (after the path set-up above)

QUEUE = "bench_batch"
CATEGORY = "bench_batch_job"
SINGLE_SECONDS = 5
WRK_CONNECTIONS = 32
BATCH_JOBS = 10000
CONNECTIONS = 8
URL = "http://127.0.0.1:9/x"
#: The keys each wrk thread pushes again in the duplicate line.
DUPLICATE_KEYS = 100

# Each request a push of a new job: without a key, with a new key, or with a key of the
# keyed line again. ``tid`` is the wrk thread's number.
_WRK_PUSHES = r"""
threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  sent, ok, other, n = 0, 0, 0, 0
end
function request()
  n = n + 1
  sent = sent + 1
  local key = ""
  if MODE == "key" then
    key = ',"unique_key":"k' .. tid .. '-' .. n .. '"'
  elseif MODE == "duplicate" then
    key = ',"unique_key":"k' .. tid .. '-' .. ((n - 1) %% DUPLICATE_KEYS + 1) .. '"'
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    '{"url":"%s","payload":{"n":' .. n .. '}' .. key .. '}')
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end
"""


def push_with_wrk(directory: str, port: int, mode: str) -> tuple[int, float]:
    """Single pushes from wrk for ``SINGLE_SECONDS``: (pushes answered 200, seconds)."""
    script = ('MODE = "%s"\nDUPLICATE_KEYS = %d\n' % (mode, DUPLICATE_KEYS)
              + _WRK_PUSHES % URL + infra.WRK_DONE)
    result = infra.run_wrk(directory, "push-" + mode, script,
                           "http://127.0.0.1:%d/job/%s" % (port, CATEGORY), threads=2,
                           connections=WRK_CONNECTIONS, seconds=SINGLE_SECONDS)
    if result["other"] or result["status_errors"]:
        raise infra.BenchError("wrk (%s): answers other than 200:\n%s"
                               % (mode, result["output"]))
    return int(result["ok"]), result["duration_us"] / 1e6


def post_all(port: int, path: str, bodies: list[bytes], connections: int) -> float:
    """POST each body to ``path`` over ``connections`` keep-alive connections; the
    seconds from the first request to the last answer. Anything but 200 fails the run."""
    indexes = iter(range(len(bodies)))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def poster() -> None:
        client = infra.Http(port)
        try:
            while True:
                with lock:
                    index = next(indexes, None)
                if index is None:
                    return
                status, answer = client.request("POST", path, bodies[index])
                if status != 200:
                    raise infra.BenchError("POST %s answered %d: %s" % (
                        path, status, answer[:300].decode("utf-8", "replace")))
        except BaseException as error:
            errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=poster, daemon=True) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - started
    if errors:
        raise infra.BenchError("pushing failed: %r" % errors[0])
    return took


def job(n: int, key: str | None = None) -> dict[str, object]:
    members: dict[str, object] = {"url": URL, "payload": {"n": n}}
    if key is not None:
        members["unique_key"] = key
    return members


def batches(count: int, size: int, key: Callable[[int], str | None]) -> list[bytes]:
    return [json.dumps({"jobs": [job(n, key(n)) for n in range(b * size, (b + 1) * size)]})
            .encode() for b in range(count)]


def one_run(driver: str, server: infra.MySQLServer) -> dict[str, float]:
    figures: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="fwbench-batch-"))
        store: infra.Store = (infra.MySQLStore(stack, server, "push_batches")
                              if driver == "mysql" else infra.SQLiteStore(directory))
        daemon = infra.Daemon(stack, sys.executable, directory, store.daemon_args())
        daemon.define(QUEUE, CATEGORY)
        daemon.api.json("POST", "/queue/%s/pause" % QUEUE)
        expected = 0

        def check(name: str, stored: int, unanswered: int = 0) -> None:
            nonlocal expected
            expected += stored
            count = store.count_jobs(QUEUE)
            if not expected <= count <= expected + unanswered:
                raise infra.BenchError("%s: %d jobs stored, %d expected" % (name, count,
                                                                          expected))
            expected = count

        for name, mode in (("single", "plain"), ("single+key", "key"),
                           ("duplicate", "duplicate")):
            accepted, seconds = push_with_wrk(directory, daemon.port, mode)
            figures[name] = accepted / seconds
            time.sleep(1)  # pushes wrk left unanswered at its stop are committed by now
            check(name, 0 if mode == "duplicate" else accepted, WRK_CONNECTIONS)

        def measure(name: str, path: str, bodies: list[bytes], jobs: int, stored: int,
                    connections: int = CONNECTIONS) -> None:
            figures[name] = jobs / post_all(daemon.port, path, bodies, connections)
            check(name, stored)

        measure("batch 1000", "/jobs/" + CATEGORY,
                batches(BATCH_JOBS // 1000, 1000, lambda n: None), BATCH_JOBS, BATCH_JOBS, 1)
        measure("batch 100 x8", "/jobs/" + CATEGORY,
                batches(BATCH_JOBS // 100, 100, lambda n: None), BATCH_JOBS, BATCH_JOBS)
        measure("batch 1000+key", "/jobs/" + CATEGORY,
                batches(BATCH_JOBS // 1000, 1000, lambda n: "batch-key-%d" % n), BATCH_JOBS,
                BATCH_JOBS, 1)
        daemon.check_alive()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--driver", default="mysql,sqlite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mysql", default="root@127.0.0.1:3306")
    arguments = parser.parse_args()
    server = infra.MySQLServer.parse(arguments.mysql)
    drivers = [name.strip() for name in arguments.driver.split(",") if name.strip()]
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for run in range(1, arguments.runs + 1):
            for driver in drivers:
                for name, rate in one_run(driver, server).items():
                    results.setdefault((driver, name), []).append(rate)
                    print("run %d %-6s %-15s %8.0f jobs/s" % (run, driver, name, rate),
                          flush=True)
    finally:
        for line in infra.sweep():
            print("cleanup: " + line, file=sys.stderr)
    print("\nmedians over %d runs (min - max), jobs/s; load average %s"
          % (arguments.runs, os.getloadavg()))
    for (driver, name), rates in results.items():
        print("%-6s %-15s %8.0f  (%.0f - %.0f)" % (driver, name, statistics.median(rates),
                                                   min(rates), max(rates)))
    for driver in drivers:
        plain = statistics.median(results[(driver, "single")])
        keyed = statistics.median(results[(driver, "single+key")])
        batch = statistics.median(results[(driver, "batch 1000")])
        print("%-6s a unique key costs %+.3f ms a push (%+.0f%% time); a batch of 1000 is"
              " %.1fx single pushes" % (driver, 1000 / keyed - 1000 / plain,
                                        100 * (plain / keyed - 1), batch / plain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
