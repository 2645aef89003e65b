"""The latency scenario's worker: a bare twisted.web server that timestamps every job.

Usage: python latency_worker.py PORT

``POST /work`` (any path but the two below) records ``(time.time(), body)`` and answers
``{"status":"success"}``; the body is the job's payload ``{"i": <n>, "t": <push send time>}``.
``GET /count`` answers how many jobs arrived, ``GET /results`` a JSON array of
``[i, sent, arrived]``. Run as its own process so that the bench's pushing never delays a
timestamp.
"""

from __future__ import annotations

import json
import sys
import time

from twisted.internet import reactor
from twisted.web import resource, server

ARRIVALS: list[tuple[float, bytes]] = []


class Worker(resource.Resource):
    isLeaf = True

    def render_POST(self, request: server.Request) -> bytes:
        arrived = time.time()
        ARRIVALS.append((arrived, request.content.read() if request.content else b""))
        request.setHeader(b"content-type", b"application/json")
        return b'{"status":"success"}'

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        if request.path == b"/count":
            return b"%d" % len(ARRIVALS)
        rows = []
        for arrived, body in ARRIVALS:
            payload = json.loads(body)
            rows.append([payload["i"], payload["t"], arrived])
        return json.dumps(rows).encode()


def main() -> None:
    port = int(sys.argv[1])
    site = server.Site(Worker())
    site.log = lambda request: None  # type: ignore[method-assign]  # no access log
    reactor.listenTCP(port, site, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
