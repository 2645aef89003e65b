"""Batch pushes and idempotent pushes through the HTTP API (docs/api.md, POST /jobs and
Idempotent pushes), on a whole in-memory node (L{apptools.ApiHarness})."""

from __future__ import annotations

import json
from typing import Any

from apptools import SUCCESS
from test_api import URL, APITestCase

DUPLICATE = b"fireworq-duplicate"
DUPLICATE_JOBS = b"fireworq-duplicate-jobs"


def answer(job_id: int, payload: str = "null", **members: Any) -> bytes:
    """A push's answer text (docs/api.md, POST /job) for a job of the fixture."""
    values = {"run_after": 0, "timeout": 0, "retry_delay": 0, "max_retries": 0, **members}
    return (b'{"id":%d,"queue_name":"mail","category":"send_welcome","url":"%s",'
            b'"payload":%s,"run_after":%d,"timeout":%d,"retry_delay":%d,"max_retries":%d}'
            % (job_id, URL.encode(), payload.encode(), values["run_after"], values["timeout"],
               values["retry_delay"], values["max_retries"]))


class BatchPushTests(APITestCase):
    """docs/api.md, POST /jobs."""

    overrides = {"max_request_body": "200000"}

    def setUp(self) -> None:
        super().setUp()
        self.define()
        self.route()
        # Nothing is grabbed: every job stored stays in the waiting and deferred lists.
        self.assertEqual(self.node.post("/queue/mail/pause").status, 200)

    def batch(self, jobs: Any, category: str = "send_welcome", **kwargs: Any) -> Any:
        return self.node.post("/jobs/" + category, {"jobs": jobs}, **kwargs)

    def stored(self) -> list[int]:
        waiting = self.node.get("/queue/mail/waiting?order=asc&limit=1000").json()["jobs"]
        deferred = self.node.get("/queue/mail/deferred?order=asc&limit=1000").json()["jobs"]
        return sorted(job["id"] for job in waiting + deferred)

    def test_answersInOrder(self) -> None:
        """When jobs are pushed in a batch, each is stored and answered as a push of its
        own would be, in order, payloads as sent (compacted)."""
        response = self.batch([
            {"url": URL, "payload": {"n": 1}},
            {"url": URL, "payload": "text", "run_after": 60, "timeout": 5},
            {"url": URL, "max_retries": 2, "retry_delay": 3, "category": "ignored"},
        ])
        self.assertJSONResponse(response, 200, b'{"jobs":[' + b",".join([
            answer(1, '{"n":1}'), answer(2, '"text"', run_after=60, timeout=5),
            answer(3, max_retries=2, retry_delay=3)]) + b"]}")
        self.assertIsNone(response.header(DUPLICATE))
        self.assertEqual(self.stored(), [1, 2, 3])
        self.assertEqual(self.node.get("/queue/mail/job/2").json()["payload"], "text")

    def test_thousandJobs(self) -> None:
        """When 1000 jobs are pushed in a batch, all are stored; 1001 or none is 400."""
        response = self.batch([{"url": URL, "payload": n} for n in range(1000)])
        self.assertEqual(response.status, 200, response.body[:300])
        self.assertEqual([job["id"] for job in response.json()["jobs"]], list(range(1, 1001)))
        self.assertEqual(len(self.stored()), 1000)
        for jobs in ([{"url": URL}] * 1001, []):
            self.assertError(self.batch(jobs), 400, "Field 'jobs' must hold 1 to 1000 jobs")
        self.assertEqual(len(self.stored()), 1000)

    def test_invalidJobStoresNothing(self) -> None:
        """When one job of a batch is invalid, it is 400 naming its index (from 0) and
        the push's own message, and no job is stored."""
        good = {"url": URL}
        cases = [
            ([good, good, good, {"payload": 1}], "Job 3: Missing field: url"),
            ([good, {"url": "ftp://x"}], "Job 1: Invalid url: must be an absolute http or"
                                         " https URL"),
            ([{"url": URL, "timeout": -1}], "Job 0: Field 'timeout' must be an integer from"
                                            " 0 to 86400"),
            ([good, 7], "Job 1: must be a JSON object"),
            ([good, {"url": URL, "unique_key": ""}],
             "Job 1: Field 'unique_key' must be a string of 1 to 255 bytes of UTF-8"),
            ([{"url": URL, "unique_key": "k" * 256}],
             "Job 0: Field 'unique_key' must be a string of 1 to 255 bytes of UTF-8"),
        ]
        for jobs, message in cases:
            self.assertError(self.batch(jobs), 400, message)
        self.assertEqual(self.stored(), [])

    def test_badBodies(self) -> None:
        """When the body has no job array, it is 400 saying so."""
        for body, message in [
            (b"{}", "Missing field: jobs"), (b'{"jobs":null}', "Missing field: jobs"),
            (b'{"jobs":{"url":"http://h/"}}', "Field 'jobs' must be an array of job objects"),
            (b"[]", "Request body must be a JSON object"),
            (b'{"jobs":[}', "Invalid JSON: Expecting value: line 1 column 10"),
        ]:
            self.assertError(self.node.post("/jobs/send_welcome", body), 400, message)
        self.assertError(self.node.post("/jobs/" + "c" * 256, {"jobs": [{"url": URL}]}), 400,
                         "Invalid job category: must be 1 to 255 bytes")
        self.assertError(self.batch([{"url": URL}], "unrouted"), 404,
                         "No routing of job category 'unrouted' exists")

    def test_bodyLimit(self) -> None:
        """When the whole batch is over FIREWORQ_MAX_REQUEST_BODY, it is 413 and nothing is
        stored."""
        response = self.batch([{"url": URL, "payload": "x" * 1000}] * 200)
        self.assertError(response, 413, "Request body exceeds 200000 bytes")
        self.assertEqual(self.stored(), [])

    def test_storeSilent(self) -> None:
        """When the store does not take a batch within the push deadline, it is 503 and
        none of its jobs is ever stored."""
        self.node.store.hang.add("push")
        response = self.batch([{"url": URL}, {"url": URL}])
        self.assertEqual(response.status, 503, response.body)
        self.node.store.hang.clear()
        self.node.store.resume()
        self.node.advance(0)
        self.assertEqual(self.stored(), [])

    def test_withSinglePushes(self) -> None:
        """When a batch is stored with single pushes of the same turn, each gets its
        answer; the batch's jobs come in its order."""
        first = self.node.connect()
        first.send(b'POST /job/send_welcome HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n'
                   % len(json.dumps({"url": URL})) + json.dumps({"url": URL}).encode())
        batch = self.batch([{"url": URL, "payload": n} for n in range(3)])
        single = first.response()
        first.close()
        self.assertEqual(single.status, 200)
        ids = [job["id"] for job in batch.json()["jobs"]]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(sorted(self.stored()), sorted([single.json()["id"], *ids]))

    def test_delivered(self) -> None:
        """Jobs of a batch are delivered like any other."""
        self.batch([{"url": URL, "payload": n} for n in range(5)])
        self.node.deliverer.script = lambda job: SUCCESS
        self.node.post("/queue/mail/resume")
        self.node.advance(1)
        self.assertEqual(self.stored(), [])
        self.assertEqual(self.node.get("/queue/mail/stats").json()["total_successes"], 5)

    def test_duplicatesInBatch(self) -> None:
        """When jobs of a batch carry unique keys already seen (or seen earlier in the
        batch), they store nothing and answer the first push's answer; the header
        Fireworq-Duplicate-Jobs names them, Fireworq-Duplicate is set when all are."""
        first = self.node.post("/job/send_welcome", {"url": URL, "unique_key": "a",
                                                     "payload": 1})
        response = self.batch([{"url": URL, "unique_key": "a", "payload": 2},
                               {"url": URL, "unique_key": "b", "payload": 3},
                               {"url": URL, "unique_key": "b", "payload": 4}])
        self.assertJSONResponse(response, 200, b'{"jobs":[' + b",".join(
            [first.body, answer(2, "3"), answer(2, "3")]) + b"]}")
        self.assertEqual(response.header(DUPLICATE_JOBS), b"0, 2")
        self.assertIsNone(response.header(DUPLICATE))
        again = self.batch([{"url": URL, "unique_key": "b"}, {"url": URL, "unique_key": "a"}])
        self.assertEqual(again.header(DUPLICATE), b"true")
        self.assertEqual(again.header(DUPLICATE_JOBS), b"0, 1")
        self.assertEqual(self.stored(), [1, 2])

    def test_idempotencyHeaderRefused(self) -> None:
        """When a batch comes with an Idempotency-Key header, it is 400: a batch's jobs
        carry their own keys."""
        response = self.batch([{"url": URL}], headers=[(b"Idempotency-Key", b"k")])
        self.assertError(response, 400, "The Idempotency-Key header is for POST /job only;"
                                        " give each job of a batch its unique_key")
        self.assertEqual(self.stored(), [])

    def test_accessLog(self) -> None:
        """A batch push has its access-log line like any request."""
        self.batch([{"url": URL}])
        self.node.request("GET", "/jobs/send_welcome")
        lines = [(line["method"], line["url"], line["status"])
                 for line in self.node.access_lines() if line["url"].startswith("/jobs/")]
        self.assertEqual(lines, [("POST", "/jobs/send_welcome", 200),
                                 ("GET", "/jobs/send_welcome", 405)])


class IdempotentPushTests(APITestCase):
    """docs/api.md, Idempotent pushes."""

    def setUp(self) -> None:
        super().setUp()
        self.define()
        self.route()

    def post(self, body: Any, **kwargs: Any) -> Any:
        return self.node.post("/job/send_welcome", body, **kwargs)

    def test_duplicate(self) -> None:
        """When a push carries a unique key seen in the window, nothing is stored and the
        answer is the first push's, with Fireworq-Duplicate: true, even after the first
        job ran."""
        self.node.deliverer.script = lambda job: SUCCESS
        first = self.post({"url": URL, "payload": {"a": [1, 2]}, "unique_key": "order-42",
                           "run_after": 0, "timeout": 3})
        self.assertJSONResponse(first, 200, answer(1, '{"a":[1,2]}', timeout=3))
        self.assertIsNone(first.header(DUPLICATE))
        self.node.advance(1)
        self.assertError(self.node.get("/queue/mail/job/1"), 404, "No such job: 1")
        again = self.post({"url": URL, "payload": "other", "unique_key": "order-42"})
        self.assertJSONResponse(again, 200, first.body)
        self.assertEqual(again.header(DUPLICATE), b"true")
        self.assertEqual(self.node.get("/queue/mail/stats").json()["total_pushes"], 1)
        self.assertEqual(self.node.post("/job/send_welcome", {"url": URL}).json()["id"], 2)

    def test_header(self) -> None:
        """The Idempotency-Key header keys a push as unique_key does; both may be given
        when they are equal."""
        first = self.post({"url": URL}, headers=[(b"Idempotency-Key", b"k1")])
        same = self.post({"url": URL, "unique_key": "k1"})
        self.assertEqual((same.body, same.header(DUPLICATE)), (first.body, b"true"))
        both = self.post({"url": URL, "unique_key": "k1"},
                         headers=[(b"Idempotency-Key", b"k1")])
        self.assertEqual(both.header(DUPLICATE), b"true")

    def test_badKeys(self) -> None:
        """When a key is not 1 to 255 bytes of UTF-8, or the header and the member
        differ, it is 400 and nothing is stored."""
        member = "Field 'unique_key' must be a string of 1 to 255 bytes of UTF-8"
        header = "Invalid Idempotency-Key header: must be 1 to 255 bytes of UTF-8"
        for body, headers, message in [
            ({"url": URL, "unique_key": ""}, [], member),
            ({"url": URL, "unique_key": "\u00e9" * 128}, [], member),
            ({"url": URL, "unique_key": 5}, [], "Field 'unique_key' must be a string"),
            (b'{"url":"%s","unique_key":"\\ud800"}' % URL.encode(), [], member),
            ({"url": URL}, [(b"Idempotency-Key", b"\xff")], header),
            ({"url": URL}, [(b"Idempotency-Key", b"k" * 256)], header),
            ({"url": URL}, [(b"Idempotency-Key", b"a"), (b"Idempotency-Key", b"a")],
             "Invalid Idempotency-Key header: given more than once"),
            ({"url": URL, "unique_key": "a"}, [(b"Idempotency-Key", b"b")],
             "Field 'unique_key' and the Idempotency-Key header differ"),
        ]:
            self.assertError(self.post(body, headers=headers), 400, message)
        self.assertEqual(self.post({"url": URL, "unique_key": "\u00e9" * 127}).status, 200)
        self.assertEqual(self.node.get("/queue/mail/stats").json()["total_pushes"], 1)

    def test_window(self) -> None:
        """A key is remembered unique_window seconds (default 86400): GET shows the member
        only when set; after the window the push is stored again; 0 remembers none."""
        self.assertNotIn("unique_window", self.node.get("/queue/mail").json())
        self.assertError(self.node.put("/queue/mail", {"unique_window": 31536001}), 400,
                         "Field 'unique_window' must be an integer from 0 to 31536000")
        self.assertEqual(self.define(unique_window=10)["unique_window"], 10)
        self.assertEqual(self.post({"url": URL, "unique_key": "k"}).json()["id"], 1)
        self.node.advance(9.9)
        self.assertEqual(self.post({"url": URL, "unique_key": "k"}).header(DUPLICATE), b"true")
        self.node.advance(0.1)
        self.assertEqual(self.post({"url": URL, "unique_key": "k"}).json()["id"], 2)
        self.assertNotIn("unique_window", self.define(unique_window=86400))
        self.define(unique_window=0)
        self.assertEqual(self.post({"url": URL, "unique_key": "z"}).json()["id"], 3)
        self.assertEqual(self.post({"url": URL, "unique_key": "z"}).json()["id"], 4)

    def test_keysPerQueue(self) -> None:
        """A key is per queue: the same key pushed to another queue is stored."""
        self.define("other")
        self.route("other_category", "other")
        self.assertEqual(self.post({"url": URL, "unique_key": "k"}).status, 200)
        response = self.node.post("/job/other_category", {"url": URL, "unique_key": "k"})
        self.assertIsNone(response.header(DUPLICATE))

    def test_pruned(self) -> None:
        """The active node forgets keys after the window (and counts them in
        /metrics)."""
        self.define(unique_window=5)
        self.post({"url": URL, "unique_key": "k"})
        self.node.advance(61)
        metrics = self.node.get("/metrics").body.decode()
        self.assertIn('fireworq_unique_keys_pruned_total{queue="mail"} 1.0', metrics)
        self.assertEqual(self.node.store.memory._tables["mail"].unique, {})

    def test_duplicatesCounted(self) -> None:
        """/metrics counts the pushes answered as duplicates."""
        for _ in range(3):
            self.post({"url": URL, "unique_key": "k"})
        metrics = self.node.get("/metrics").body.decode()
        self.assertIn('fireworq_duplicate_pushes_total{queue="mail"} 2.0', metrics)
