"""A tiny worker for trying fireworq-py: prints each job and answers success.

Run it with `python3 docs/examples/worker.py` (port 8000), or `... 8001` for another port.
A payload of {"fail": true} makes it answer a retryable failure; {"sleep": 30} makes it take
30 seconds (at most 300) before it answers, long enough to see the job grabbed.
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Worker(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        print("job for", self.path, "payload:", body.decode("utf-8", "replace"), flush=True)
        try:
            job = json.loads(body)
        except ValueError:
            job = None
        if not isinstance(job, dict):
            job = {}
        failing = job.get("fail") is True
        sleep = job.get("sleep")
        if isinstance(sleep, (int, float)) and not isinstance(sleep, bool) and sleep > 0:
            time.sleep(min(sleep, 300))
        if failing:
            result = {"status": "failure", "message": "asked to fail"}
        else:
            result = {"status": "success", "message": "done"}
        reply = json.dumps(result).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    print("worker listening on http://127.0.0.1:%d" % port, flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Worker).serve_forever()
