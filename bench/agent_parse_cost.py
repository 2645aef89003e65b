"""CPU cost of worker answers shaped to make the delivery agent's parser work hard.

The agent (fireworq/delivery/agent.py) of a baseline git ref (default ``main``) and of the
working tree are loaded side by side and fed the same answers on in-memory connections, in
alternation, in one run. Each answer is compared with a plain answer of the same size (a
Content-Length body) that arrives in as many reads as the shaped one has pieces to parse: a
64 KiB head one byte a read (against a body one byte a read), a 64 KiB body in one-byte chunks
in one read and in 64 KiB reads (against a body in as many reads as there are chunks), 64 KiB
of ``100 Continue`` responses in one read (against a body in as many reads as there are
responses). Printed: the CPU time (``time.process_time``, the least of --repeat tries) of each
and the ratio; and the CPU time per request of an ordinary small answer, to show the common
case did not get slower.

Usage: .venv/bin/python bench/agent_parse_cost.py [--baseline main] [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import time
from types import ModuleType
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
AGENT = "fireworq/delivery/agent.py"
SMALL = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
         b'{"status":"success","message":"done ok"}')


def load(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Sink(Protocol):
    def __init__(self) -> None:
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        pass


class Endpoint:
    """Connects at once to an in-memory transport; remembers the last connection."""

    def __init__(self) -> None:
        self.protocol: Any = None

    def connect(self, factory: Any) -> Deferred[Any]:
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        self.protocol = protocol
        return succeed(protocol)


def feed_cost(module: ModuleType, answer: bytes, step: int | None, repeat: int) -> float:
    """Least CPU seconds to read ``answer`` fed ``step`` bytes a read (whatever the outcome)."""
    least = math.inf
    for _ in range(repeat):
        endpoint = Endpoint()
        agent = module.WorkerAgent(MemoryReactorClock(), lambda *key: endpoint,
                                   persistent=True, max_idle_per_host=1000, idle_timeout=None)
        d = agent.request(b"GET", b"http://worker.example/")
        d.addCallback(lambda response: response.deliverBody(Sink()))
        d.addErrback(lambda _: None)
        pieces = [answer] if step is None else [
            answer[start:start + step] for start in range(0, len(answer), step)]
        protocol = endpoint.protocol
        started = time.process_time()
        for piece in pieces:
            protocol.dataReceived(piece)
        least = min(least, time.process_time() - started)
        agent.closeCachedConnections()
    return least


def small_answer_cost(module: ModuleType, requests: int, repeat: int) -> float:
    """Least CPU seconds per request for ``requests`` small answers on one kept connection."""
    least = math.inf
    for _ in range(repeat):
        endpoint = Endpoint()
        agent = module.WorkerAgent(MemoryReactorClock(), lambda *key: endpoint,
                                   persistent=True, max_idle_per_host=10, idle_timeout=None)
        started = time.process_time()
        for _ in range(requests):
            d = agent.request(b"GET", b"http://worker.example/")
            endpoint.protocol.dataReceived(SMALL)
            d.addCallback(lambda response: response.deliverBody(Sink()))
        least = min(least, (time.process_time() - started) / requests)
        agent.closeCachedConnections()
    return least


def plain(size: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size


def long_head() -> bytes:
    lines = [b"HTTP/1.1 200 OK\r\n"]
    size = len(lines[0]) + len(b"Content-Length: 2\r\n\r\n")
    while size + 100 < 65536:
        lines.append(b"X-Pad-%04d: %s\r\n" % (len(lines), b"a" * 86))
        size += len(lines[-1])
    return b"".join(lines) + b"Content-Length: 2\r\n\r\nok"


def cases() -> list[tuple[str, bytes, int | None, int]]:
    """(name, answer, bytes a read or None for one read, pieces of the baseline)."""
    head = long_head()
    chunks = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * 65536 \
        + b"0\r\n\r\n"
    continues = b"HTTP/1.1 100 Continue\r\n\r\n" * (65536 // 25) + plain(2)
    return [
        ("64 KiB head, 1 byte a read", head, 1, len(head)),
        ("64 KiB of 1-byte chunks, one read", chunks, None, 65536),
        ("64 KiB of 1-byte chunks, 64 KiB reads", chunks, 65536, 65536),
        ("64 KiB of 100 Continue, one read", continues, None, 65536 // 25),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="main", help="git ref to compare with")
    parser.add_argument("--repeat", type=int, default=5, help="tries; the least counts")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        baseline_path = os.path.join(directory, "agent_baseline.py")
        with open(baseline_path, "wb") as out:
            out.write(subprocess.run(["git", "-C", REPO, "show", arguments.baseline + ":" + AGENT],
                                     check=True, capture_output=True).stdout)
        versions = {arguments.baseline: load("agent_baseline", baseline_path),
                    "this tree": load("agent_tree", os.path.join(REPO, AGENT))}
    print("CPU time, least of %d tries; ratio = shaped answer / plain answer of the same size"
          " in as many reads as it has pieces" % arguments.repeat)
    for name, answer, step, pieces in cases():
        baseline_answer = plain(len(answer))
        baseline_step = max(1, len(baseline_answer) // pieces)
        for label, module in versions.items():
            cost = feed_cost(module, answer, step, arguments.repeat)
            reference = feed_cost(module, baseline_answer, baseline_step, arguments.repeat)
            print("%-40s %-10s %9.1f ms  plain %7.1f ms  ratio %7.2f"
                  % (name, label, cost * 1e3, reference * 1e3, cost / reference), flush=True)
    for label, module in versions.items():
        print("%-40s %-10s %9.1f µs a request"
              % ("small answer, kept connection", label,
                 small_answer_cost(module, 2000, arguments.repeat) * 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
