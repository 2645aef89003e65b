"""A tiny worker for trying fireworq-py: prints each job and answers success.

Run it with `python3 docs/examples/worker.py` (port 8000), or `... 8001` for another port.
A payload of {"fail": true} makes it answer a retryable failure.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Worker(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        print("job for", self.path, "payload:", body.decode("utf-8", "replace"), flush=True)
        try:
            failing = json.loads(body).get("fail") is True
        except (ValueError, AttributeError):
            failing = False
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
