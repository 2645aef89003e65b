"""Worker URL passwords never reach a log (docs/configuration.md, Logs): the queue
log and the error log show ``user:***@``, while the API keeps the URL as pushed."""

from __future__ import annotations

import json
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from apptools import SUCCESS, ApiHarness, utc
from fireworq.delivery import Deliverer, DeliverySettings
from fireworq.masking import mask_url
from fireworq.model import Job, JobStatus

SECRET_URL = "http://app:s3cr%40t:x@worker.internal:8000/send?to=a@b#frag"
MASKED_URL = "http://app:***@worker.internal:8000/send?to=a@b#frag"


class MaskURLTests(SynchronousTestCase):
    def test_masked(self) -> None:
        """When a URL has a password, everything between the first ``:`` of the user
        information and its last ``@`` becomes ``***``."""
        for url, masked in [
            ("http://u:p@host/", "http://u:***@host/"),
            ("https://u:@host:8443/x", "https://u:***@host:8443/x"),
            ("http://u:p:q@host", "http://u:***@host"),
            ("http://u:p@q@[::1]:80/a@b", "http://u:***@[::1]:80/a@b"),
            ("HTTP://u:p@host?x=1", "HTTP://u:***@host?x=1"),
            ("http://u:p@host#f@g", "http://u:***@host#f@g"),
            (SECRET_URL, MASKED_URL),
        ]:
            self.assertEqual(mask_url(url), masked, url)

    def test_unchanged(self) -> None:
        """When a URL has no password, it is shown as it is."""
        for url in ["http://host/", "http://u@host/", "http://host/a:b@c", "http://host?u:p@x",
                    "http://host:80/#u:p@x", "not a url u:p@x", ""]:
            self.assertEqual(mask_url(url), url)


class QueueLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.addCleanup(utc())
        self.node = ApiHarness({"queue_default": "mail", "queue_log_level": "debug"})
        self.addCleanup(self.node.stop)

    def test_queueLogMasked(self) -> None:
        """When a job's URL has a password, every queue-log line shows it masked; the push
        answer and the job listing show the URL as pushed."""
        self.node.deliverer.script = lambda job: SUCCESS
        accepted = self.node.push("c", url=SECRET_URL)
        self.assertEqual(accepted["url"], SECRET_URL)
        self.node.advance(0.5)
        self.node.queue_writer.flush()
        lines = [json.loads(line) for line in self.node.queue_stream.getvalue().splitlines()]
        self.assertEqual([line["action"] for line in lines], ["push", "pop", "complete"])
        self.assertEqual({line["url"] for line in lines}, {MASKED_URL})
        self.assertNotIn(b"s3cr", self.node.queue_stream.getvalue())
        held = self.node.push("c", url=SECRET_URL, run_after=60)
        job = self.node.get("/queue/mail/job/%d" % held["id"]).json()
        self.assertEqual(job["url"], SECRET_URL)


class ErrorLogTests(SynchronousTestCase):
    def test_unexpectedDeliveryErrorMasked(self) -> None:
        """When a delivery fails unexpectedly, the error-log line names the URL masked."""
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        clock = Clock()
        deliverer = Deliverer(HTTPClient(BrokenResponseAgent()), clock, DeliverySettings(
            user_agent="Fireworq/0.1.0", keep_alive=False, max_conns_per_host=10,
            idle_conn_timeout=0, max_response_body=1024))
        job = Job(1, "c", SECRET_URL, b"", JobStatus.GRABBED, 0, 0, 0, 0, 0, 0)
        result = self.successResultOf(Deferred.fromCoroutine(deliverer.deliver(job)))
        self.assertEqual(result.status, "internal-failure")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        [line] = [formatEvent(e) for e in events if "Unexpected error" in formatEvent(e)]
        self.assertEqual(line, "Unexpected error delivering job 1 to " + MASKED_URL)


class BrokenResponse:
    headers = Headers()

    @property
    def code(self) -> int:
        raise RuntimeError("broken response")


class BrokenResponseAgent:
    """Answers with a response that breaks when read: a bug the deliverer must survive."""

    def request(self, method: bytes, uri: bytes, headers: Any = None,
                bodyProducer: Any = None) -> Deferred[Any]:
        return succeed(BrokenResponse())
