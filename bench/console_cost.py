"""What an open console costs the daemon, and what the console weighs (docs/console.md).

One daemon (this tree, sqlite in a temp dir, in-memory with --driver in-memory) with
--queues queues (default 100), each with a routing. Then, each for --seconds (default 60):

  idle     nobody asks the daemon anything: its CPU time (user + system, from /proc);
  console  a headless Chromium shows the console's overview, which polls every 2 s: the
           daemon's CPU time, and the requests and bytes the page made;
  idle     again, so that drift of a shared machine shows.

Printed: CPU seconds per minute and % of one core for each phase, the difference the page
makes, and the page weight of the overview: the bytes transferred (encoded, headers
excluded, as Chromium counts them) for its first load, the console's files and the API's
answers apart, and the bytes per minute of its polling.

Usage: .venv/bin/python bench/console_cost.py [--queues 100] [--seconds 60] [--driver sqlite]
Needs Debian's chromium and chromium-driver, and selenium (the `test` extra).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.dirname(HERE)
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(port: int, method: str, path: str, body: str | None = None) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return json.loads(data) if data.startswith((b"{", b"[")) else data
    finally:
        connection.close()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
                     "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def transfers(driver: webdriver.Chrome) -> dict[str, int]:
    """Bytes per request URL since the last call (encodedDataLength of finished loads)."""
    urls: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFinished":
            url = urls.get(params["requestId"], "?")
            sizes[url] = sizes.get(url, 0) + int(params["encodedDataLength"])
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--driver", default="sqlite", choices=["sqlite", "in-memory"])
    args = parser.parse_args()

    port = free_port()
    directory = tempfile.mkdtemp(prefix="bench-console-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREWORQ_")}
    env["PYTHONPATH"] = REPO
    log = open(os.path.join(directory, "daemon.log"), "wb")
    daemon = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
         "--pidfile=", "fireworq", f"--bind=127.0.0.1:{port}", f"--driver={args.driver}"],
        cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT)
    driver = None
    try:
        for _ in range(100):
            try:
                request(port, "GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        for n in range(args.queues):
            request(port, "PUT", f"/queue/q{n:03d}", "{}")
            request(port, "PUT", f"/routing/c{n:03d}", json.dumps({"queue_name": f"q{n:03d}"}))
        time.sleep(2)
        print(f"daemon: {args.driver}, {args.queues} queues; {args.seconds:g} s per phase",
              flush=True)

        idle_before = measure(daemon.pid, args.seconds)
        print(f"idle:     {idle_before:.2f} CPU s  ({100 * idle_before / args.seconds:.1f} % of a core)",
              flush=True)

        driver = browser()
        driver.get(f"http://127.0.0.1:{port}/console/#/")
        deadline = time.time() + 30
        while time.time() < deadline and driver.execute_script(
                "return document.getElementById('main').dataset.route") != "#/":
            time.sleep(0.05)
        time.sleep(3)  # the node column's requests, the first polls
        first = transfers(driver)
        console = sum(v for k, v in first.items() if "/console/" in k)
        api = sum(v for k, v in first.items() if "/console/" not in k)
        rows = driver.execute_script("return document.querySelectorAll('tbody tr').length")
        print(f"overview page weight: {console + api} bytes on first load "
              f"({console} of console files, {api} of API answers, {len(first)} URLs; "
              f"{rows} queue rows)", flush=True)

        with_page = measure(daemon.pid, args.seconds)
        polled = transfers(driver)
        print(f"console:  {with_page:.2f} CPU s  ({100 * with_page / args.seconds:.1f} % of a core); "
              f"the page fetched {sum(polled.values()) * 60 / args.seconds / 1024:.0f} KiB/min",
              flush=True)
        driver.quit()
        driver = None

        idle_after = measure(daemon.pid, args.seconds)
        print(f"idle:     {idle_after:.2f} CPU s  ({100 * idle_after / args.seconds:.1f} % of a core)",
              flush=True)
        baseline = (idle_before + idle_after) / 2
        print(f"an open overview costs {100 * (with_page - baseline) / args.seconds:.1f} % of a "
              f"core ({(with_page - baseline) * 60 / args.seconds:.2f} CPU s per minute) "
              f"with {args.queues} queues", flush=True)
    finally:
        if driver is not None:
            driver.quit()
        daemon.terminate()
        daemon.wait(30)
        log.close()


if __name__ == "__main__":
    main()
