#!/usr/bin/env python3
"""What the delivery policy costs (docs/api.md, Delivery policy), each against its baseline
in the same run.

  signing     CPU µs per delivery of building the request headers of an attempt
              (Deliverer's plan and the per-request copy, as for a delivery without
              redirects), for a queue without secrets (the baseline), with 1 and with 3
              signing secrets, for a 1 KiB and a 64 KiB payload. Also the HMAC alone.
  push parse  CPU µs per push of reading a push request into a job (the API's parse and
              checks), without job members (the baseline) and with all four.
  push store  wall µs per push of a one-job push batch committed by the store, without job
              members (the baseline) and with them, alternating, for each driver asked
              (sqlite on a temporary file; mysql on a database of its own).
  grab read   sqlite, CPU µs of the grab's SELECT of 20 due jobs out of 10,000: as before
              job members (the job table alone, the baseline) and as now (joined with the
              options table, empty, or with a row for every job).

Each figure is the median of --rounds rounds (min - max). Usage:
  .venv/bin/python bench/delivery_policy.py [--driver sqlite,mysql,in-memory] [--rounds 5]
      [--pushes 500] [--mysql USER[:PW]@HOST[:PORT]]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

import attrs
import pymysql
from twisted.internet import defer, task
from twisted.internet.task import Clock

from fireworq import jsontext
from fireworq.api import validate
from fireworq.api.app import _new_job as new_job
from fireworq.delivery.client import DeliverySettings
from fireworq.delivery.deliverer import Deliverer
from fireworq.delivery.policy import signature, signing_keys
from fireworq.dsn import parse_dsn
from fireworq.model import Job, JobOptions, JobStatus, NewJob, QueueDefinition
from fireworq.storage.memory import MemoryStore
from fireworq.storage.mysql import MySQLStore
from fireworq.storage.sqlite import SqliteStore

SECRETS = tuple("whsec_" + base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2, 3))
QUEUE = QueueDefinition("bench", 200, 10)
SETTINGS = DeliverySettings("Fireworq/bench", True, 10, 0, 1 << 20)
PUSH_PLAIN = b'{"url":"http://127.0.0.1:8000/work","payload":{"user":42},"retry_delay":3}'
PUSH_MEMBERS = (b'{"url":"http://127.0.0.1:8000/work","payload":{"user":42},"retry_delay":3,'
                b'"retry_backoff":"exponential","retry_max_delay":600,"retry_jitter":true,'
                b'"headers":{"X-Tenant":"acme","X-Trace":"0af7651916cd43dd8448eb211c80319c"}}')
OPTIONS = JobOptions(retry_backoff="exponential", retry_max_delay=600, retry_jitter=True,
                     headers=(("X-Tenant", "acme"), ("X-Trace", "0af7651916cd43dd8448eb211c80319c")))


def median(values: list[float]) -> str:
    return "%.1f (%.1f - %.1f)" % (statistics.median(values), min(values), max(values))


def cpu_us(action: Callable[[], Any], count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        action()
    return (time.process_time() - started) / count * 1e6


def signing(rounds: int) -> None:
    deliverer = Deliverer(None, Clock(), SETTINGS)  # type: ignore[arg-type]  # no request made
    for size in (1024, 65536):
        job = Job(id=12345, category="send_welcome", url="http://127.0.0.1:8000/work",
                  payload=b"x" * size, status=JobStatus.GRABBED, created_at=0, next_try=0,
                  retry_count=3, retry_delay=3, fail_count=1, timeout=10)
        cases = {"no secret (baseline)": QUEUE,
                 "1 secret": attrs.evolve(QUEUE, signing_secrets=SECRETS[:1]),
                 "3 secrets": attrs.evolve(QUEUE, signing_secrets=SECRETS)}
        figures: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, queue in cases.items():
                def build(queue: QueueDefinition = queue) -> None:
                    # As Deliverer._exchange does for a request without redirect.
                    plan = deliverer._request_plan(job, queue)
                    headers = plan.headers
                    if plan.keys:
                        headers = headers.copy()
                        headers.addRawHeader(b"webhook-id", plan.message_id)
                        headers.addRawHeader(b"webhook-timestamp", plan.timestamp)
                        headers.addRawHeader(b"webhook-signature", signature(
                            plan.keys, plan.message_id, plan.timestamp, job.payload))
                figures[name].append(cpu_us(build, 5000))
        before = [cpu_us(deliverer._headers.copy, 5000) for _ in range(rounds)]
        print(f"signing  payload {size:6d} B  headers as before (no Fireworq-* headers)"
              f" {median(before)} µs/delivery")
        base = statistics.median(figures["no secret (baseline)"])
        for name, values in figures.items():
            extra = statistics.median(values) - base
            print(f"signing  payload {size:6d} B  {name:22s} {median(values)} µs/delivery"
                  + ("" if name.startswith("no") else f"   (+{extra:.1f} µs)"))
        keys = signing_keys(SECRETS[:1])
        hmac_only = [cpu_us(lambda: signature(keys, b"12345-2", b"1700000000", job.payload),
                            5000) for _ in range(rounds)]
        print(f"signing  payload {size:6d} B  HMAC alone, 1 secret   {median(hmac_only)} µs")


def push_parse(rounds: int) -> None:
    figures: dict[str, list[float]] = {"without job members (baseline)": [],
                                       "with job members": []}
    for _ in range(rounds):
        for name, body in (("without job members (baseline)", PUSH_PLAIN),
                           ("with job members", PUSH_MEMBERS)):
            figures[name].append(cpu_us(lambda body=body: new_job(
                jsontext.parse_object(body), "send_welcome", None), 5000))
    for name, values in figures.items():
        print(f"push parse  {name:32s} {median(values)} µs/push (CPU)")
    members = jsontext.parse_object(PUSH_PLAIN)
    check = [cpu_us(lambda: validate.job_options(members), 20000) for _ in range(rounds)]
    print(f"push parse  the job-member check alone, push without them: {median(check)} µs/push")


async def push_store(reactor: Any, driver: str, rounds: int, pushes: int, mysql: str) -> None:
    directory = tempfile.mkdtemp(prefix="fwbench-policy-")
    database = "fwbench_policy_%d" % os.getpid()
    store: Any
    try:
        if driver == "sqlite":
            store = SqliteStore(os.path.join(directory, "bench.sqlite3"), reactor, reactor)
        elif driver == "mysql":
            user, _, host = mysql.rpartition("@")
            login, _, password = user.partition(":")
            server, _, port = host.partition(":")
            connection = pymysql.connect(host=server, port=int(port or 3306), user=login,
                                         password=password)
            with connection.cursor() as cursor:
                cursor.execute("CREATE DATABASE `%s`" % database)
            connection.close()
            dsn = parse_dsn("%s@tcp(%s)/%s" % (user, host if ":" in host else host + ":3306",
                                               database))
            store = MySQLStore(dsn, dsn, reactor, reactor, pool_size=4)
        else:
            store = MemoryStore(reactor)
        await store.open()
        await store.prepare_queue("bench")
        plain = NewJob("send_welcome", "http://127.0.0.1:8000/work", b'{"user":42}', 0, 3, 3, 10)
        with_members = attrs.evolve(plain, options=OPTIONS)
        figures: dict[str, list[float]] = {"without job members (baseline)": [],
                                           "with job members": []}
        cases = [("without job members (baseline)", plain), ("with job members", with_members)]
        for round_number in range(rounds):
            # Alternating which goes first, so that neither always meets a warmer cache.
            for name, job in cases[::-1] if round_number % 2 else cases:
                started = time.perf_counter()
                for _ in range(pushes):
                    await store.push([("bench", job)])
                figures[name].append((time.perf_counter() - started) / pushes * 1e6)
        for name, values in figures.items():
            print(f"push store  {driver:9s} {name:32s} {median(values)} µs/push (wall)")
        await store.close()
    finally:
        shutil.rmtree(directory, True)
        if driver == "mysql":
            connection = pymysql.connect(host=server, port=int(port or 3306), user=login,
                                         password=password)
            with connection.cursor() as cursor:
                cursor.execute("DROP DATABASE IF EXISTS `%s`" % database)
            connection.close()


def grab_read(rounds: int) -> None:
    import sqlite3

    from fireworq.storage.sqlcommon import GRAB_COLUMNS, JOB_COLUMNS, grab_source, job_table
    from fireworq.storage.sqlite import _JOB_TABLE_SCHEMA

    connection = sqlite3.connect(":memory:")
    names = {"jobs": job_table("g"), "failures": "`f`", "settings": "`s`", "options":
             "`fireworqpy_opt(g)`", "grab_index": "`gi`", "created_index": "`ci`",
             "failed_index": "`fi`"}
    for statement in _JOB_TABLE_SCHEMA:
        connection.execute(statement.format(**names))
    connection.executemany(
        "INSERT INTO %s (next_try, created_at, category, url, payload, timeout)"
        " VALUES (?, 0, 'c', X'00', X'00', 0)" % job_table("g"), [(n,) for n in range(10000)])
    before = ("SELECT %s FROM %s WHERE status = 'claimed' AND next_try <= ?"
              " ORDER BY next_try, job_id LIMIT 20" % (JOB_COLUMNS, job_table("g")))
    now = ("SELECT %s FROM %s WHERE j.status = 'claimed' AND j.next_try <= ?"
           " ORDER BY j.next_try, j.job_id LIMIT 20" % (GRAB_COLUMNS, grab_source("g")))

    def timed(query: str) -> list[float]:
        return [cpu_us(lambda: connection.execute(query, (5000,)).fetchall(), 2000)
                for _ in range(rounds)]

    print(f"grab read   sqlite  before (job table alone, baseline)  {median(timed(before))} µs")
    print(f"grab read   sqlite  now, no job members stored          {median(timed(now))} µs")
    connection.execute("INSERT INTO `fireworqpy_opt(g)` SELECT job_id, created_at,"
                       " '{\"retry_jitter\":true}' FROM %s" % job_table("g"))
    print(f"grab read   sqlite  now, every job with members         {median(timed(now))} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--driver", default="sqlite,mysql,in-memory")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pushes", type=int, default=500)
    parser.add_argument("--mysql", default="root@127.0.0.1:3306")
    args = parser.parse_args()
    signing(args.rounds)
    push_parse(args.rounds)
    grab_read(args.rounds)

    async def stores(reactor: Any) -> None:
        for driver in args.driver.split(","):
            await push_store(reactor, driver, args.rounds, args.pushes, args.mysql)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(stores(reactor)))


if __name__ == "__main__":
    sys.exit(main())
