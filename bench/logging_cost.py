"""What the queue and access logs cost per request, next to what a request costs.

1. Micro: the CPU time to format and write one access-log line and one queue-log line
   (a push writes one of each) to a file, through the daemon's own LineWriter.
2. Macro: the daemon's CPU time per push under wrk load (in-memory driver, logs to files,
   jobs delayed by an hour so nothing is dispatched), from /proc/<pid>/stat.
The figure is (1) / (2): the share of a push's CPU spent on its log lines.

Usage: python bench/logging_cost.py [--seconds 5] [--connections 16]
Needs wrk (Debian package wrk).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from twisted.internet.task import Clock

from fireworq.logs import AccessLog, LineWriter, QueueLog
from fireworq.model import NewJob, PushedJob

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"url":"http://127.0.0.1:9/work","payload":{"user":42,"lang":"ja"},"run_after":3600}'
"""


def micro(lines: int = 50_000) -> float:
    """Microseconds of CPU per request for its two log lines."""
    clock = Clock()
    clock.advance(1_732_790_400)
    directory = tempfile.mkdtemp()
    try:
        writer = LineWriter(clock, os.path.join(directory, "log"), io.BytesIO())
        queue_log = QueueLog(writer, clock, "fireworq.queue", "info")
        access_log = AccessLog(writer, "fireworq.access")
        job = NewJob(category="send_welcome", url="http://worker.internal:8000/send",
                     payload=b'{"user": 42, "lang": "ja"}', run_after=0, max_retries=3,
                     retry_delay=30, timeout=10)
        pushed = PushedJob(17, 1_732_790_400_012, 1_732_790_400_012)
        started = time.process_time()
        for index in range(lines):
            queue_log.push("mail", job, pushed)
            access_log.log("127.0.0.1:53122", "wrk", "POST", "/job/send_welcome", 200,
                           2.731, 1_732_790_400.25)
            if index % 16 == 15:
                writer.flush()  # the daemon flushes once per reactor turn
        writer.close()
        return (time.process_time() - started) / lines * 1e6
    finally:
        shutil.rmtree(directory)


def cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def macro(seconds: int, connections: int) -> tuple[float, float]:
    """(pushes per second, CPU microseconds per push) of the daemon under wrk."""
    directory = tempfile.mkdtemp()
    port = 18700 + os.getpid() % 200
    daemon = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
         "--pidfile=", "fireworq", "--driver=in-memory", "--bind=127.0.0.1:%d" % port,
         "--queue-default=default", "--keep-alive=true",
         "--queue-log=" + os.path.join(directory, "queue.log"),
         "--access-log=" + os.path.join(directory, "access.log")],
        cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        script = os.path.join(directory, "push.lua")
        with open(script, "w") as lua:
            lua.write(WRK_SCRIPT)
        url = "http://127.0.0.1:%d/job/bench" % port
        subprocess.run(["wrk", "-t1", "-c%d" % connections, "-d2s", "-s", script, url],
                       capture_output=True, check=True)  # warm-up
        before = cpu_seconds(daemon.pid)
        result = subprocess.run(
            ["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds, "-s", script, url],
            capture_output=True, text=True, check=True)
        used = cpu_seconds(daemon.pid) - before
        rate = float(result.stdout.split("Requests/sec:")[1].split()[0])
        return rate, used / (rate * seconds) * 1e6
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        shutil.rmtree(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    arguments = parser.parse_args()
    log_us = micro()
    rate, request_us = macro(arguments.seconds, arguments.connections)
    share = log_us / request_us
    print("log lines per push (access + queue): %.1f us CPU" % log_us)
    print("push through the daemon: %.0f/s, %.1f us CPU each" % (rate, request_us))
    print("logging share of a push's CPU: %.1f %%" % (share * 100))
    print(json.dumps({"log_us_per_push": round(log_us, 2), "pushes_per_second": round(rate),
                      "cpu_us_per_push": round(request_us, 1),
                      "logging_share": round(share, 4)}))


if __name__ == "__main__":
    main()
