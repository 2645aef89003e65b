"""``fireworq COMMAND``: the command line of a running daemon's API, run as a user runs it (the
installed script, a real daemon, a real worker). Exit status 0 when it worked, 1 for an error
answer or no answer, 2 for a usage error."""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.trial.unittest import TestCase

from e2e import Daemon, Received, Worker, eventually, failure, free_port, success
from proctools import run_to_end, venv_command

CATEGORY = "welcome"


def fail_when_asked(received: Received) -> Any:
    body = received.json if received.body else None
    return failure("asked to fail", 500) if isinstance(body, dict) and body.get("fail") else success()


class CommandTests(TestCase):
    async def start(self) -> None:
        self.worker = await Worker.start(self, fail_when_asked)
        self.daemon = await Daemon.start(self, "sqlite")

    async def fireworq(self, *args: str, status: int = 0, **env: str) -> str:
        """Run ``fireworq args`` against the daemon; its standard output."""
        code, out, err = await run_to_end(venv_command("fireworq", *args),
                                   env={"FIREWORQ_URL": self.daemon.base_url, **env})
        self.assertEqual(code, status, f"fireworq {' '.join(args)}: {out}{err}")
        if status == 0:
            self.assertEqual(err, "")
        self.err = err
        return out

    async def json(self, *args: str) -> Any:
        return json.loads(await self.fireworq(*args, "--json"))

    async def test_push_unique_key(self) -> None:
        """When a job is pushed twice with one --unique-key, the second stores nothing and
        says which job was pushed before."""
        await self.start()
        await self.fireworq("queue", "mail", "--set", "max_workers=1")
        await self.fireworq("routing", CATEGORY, "--queue", "mail")
        first = await self.json("push", CATEGORY, "--url", self.worker.url(), "--run-after",
                                "600", "--unique-key", "order-7")
        out = await self.fireworq("push", CATEGORY, "--url", self.worker.url(),
                                  "--unique-key", "order-7")
        self.assertEqual(out, f"job {first['id']} of queue mail was pushed before with this"
                              " unique key; nothing was stored\n")
        jobs = await self.json("jobs", "mail", "--state", "deferred")
        self.assertEqual([job["id"] for job in jobs], [first["id"]])

    async def test_define_and_push(self) -> None:
        """When a queue and a routing are set and a job pushed from the command line, the
        worker gets the payload as written, and the lists show them."""
        await self.start()
        out = await self.fireworq("queue", "mail", "--set", "max_workers=4")
        self.assertEqual(out, "name              mail\npolling_interval  200\nmax_workers       4\n")
        # --set changes only what it names: the throttle stays.
        await self.fireworq("queue", "mail", "--set", "max_dispatches_per_second=5",
                            "--set", "max_burst_size=10")
        self.assertEqual(await self.json("queue", "mail", "--set", "max_workers=6"), {
            "name": "mail", "polling_interval": 100, "max_workers": 6,
            "max_dispatches_per_second": 5, "max_burst_size": 10})
        self.assertIn("mail  6", await self.fireworq("queues"))
        self.assertEqual(await self.json("routing", CATEGORY, "--queue", "mail"),
                         {"queue_name": "mail", "job_category": CATEGORY})
        self.assertEqual(await self.fireworq("routings"), "CATEGORY  QUEUE\nwelcome   mail\n")

        out = await self.fireworq("push", CATEGORY, "--url", self.worker.url("/send"),
                                  "--payload", '{"user": 42, "amount": 1.50}')
        self.assertRegex(out, r"^pushed job \d+ to queue mail\n$")
        [received] = await self.worker.wait_for(1)
        self.assertEqual(received.body, b'{"user": 42, "amount": 1.50}')
        pushed = await self.json("push", CATEGORY, "--url", self.worker.url(), "--payload", "[1]",
                                 "--run-after", "600", "--max-retries", "3", "--retry-delay",
                                 "7", "--timeout", "9")
        self.assertEqual({k: pushed[k] for k in ("queue_name", "payload", "run_after",
                                                 "max_retries", "retry_delay", "timeout")},
                         {"queue_name": "mail", "payload": [1], "run_after": 600,
                          "max_retries": 3, "retry_delay": 7, "timeout": 9})
        [job] = await self.json("jobs", "mail", "--state", "deferred")
        self.assertEqual((job["id"], job["status"]), (pushed["id"], "claimed"))
        out = await self.fireworq("jobs", "mail")
        self.assertIn("ID  STATUS   NEXT_TRY", out)
        self.assertIn(f"{pushed['id']}   claimed", out)

        async def one_success() -> bool:
            return (await self.json("stats", "mail"))["total_successes"] == 1
        await eventually(one_success, what="the first job to succeed")
        stats = await self.json("stats")
        self.assertEqual(list(stats), ["mail"])
        self.assertIn("QUEUE  PUSHES  POPS", await self.fireworq("stats"))
        await self.fireworq("queue", "mail", "--delete")
        self.assertEqual(await self.fireworq("queues"), "(none)\n")

    async def test_delivery_policy(self) -> None:
        """The delivery policy from the command line (docs/api.md, Delivery policy): queue
        members with --set (signing secrets shown redacted, and kept by a later --set), job
        members with push options; the worker gets the headers."""
        await self.start()
        secret = "whsec_" + "a" * 32
        shown = await self.json(
            "queue", "mail", "--set", "retry_backoff=exponential", "--set",
            'headers={"X-Tenant": "acme"}', "--set", f'signing_secrets=["{secret}"]')
        self.assertEqual((shown["retry_backoff"], shown["headers"], shown["signing_secrets"]),
                         ("exponential", {"X-Tenant": "acme"}, ["whsec_\u2026(redacted)"]))
        kept = await self.json("queue", "mail", "--set", "retry_jitter=true")
        self.assertEqual(kept["signing_secrets"], ["whsec_\u2026(redacted)"])
        self.assertNotIn(secret, await self.fireworq("queue", "mail"))
        await self.fireworq("routing", CATEGORY, "--queue", "mail")
        await self.fireworq("push", CATEGORY, "--url", self.worker.url(), "--retry-backoff",
                            "fixed", "--retry-max-delay", "30", "--no-retry-jitter",
                            "--header", "X-Trace: t-1", "--header", "X-Tenant: other")
        [received] = await self.worker.wait_for(1)
        self.assertEqual(received.header("X-Trace"), "t-1")
        self.assertEqual(received.header("X-Tenant"), "other")
        self.assertIsNotNone(received.header("webhook-signature"))
        await self.fireworq("push", CATEGORY, "--url", self.worker.url(), "--header", "X",
                            status=2)
        self.assertIn("--header takes 'Name: value'", self.err)
        await self.fireworq("push", CATEGORY, "--url", self.worker.url(), "--header",
                            "Host: x", status=1)
        self.assertIn("Header not allowed in 'headers': Host", self.err)

    async def four_failed_jobs(self) -> None:
        """Queue mail gets two failing jobs of each of categories a and b; returns once they
        are in its failure log."""
        await self.daemon.api.put_queue("mail", max_workers=4)
        for category in ("a", "b"):
            await self.daemon.api.put_routing(category, "mail")
            for n in range(2):
                await self.daemon.api.push_ok(category, self.worker.url(),
                                              json.dumps({"fail": True, "n": n}))
        await self.four_in_failure_log()

    async def four_in_failure_log(self) -> None:
        async def four_failed() -> bool:
            return len(await self.json("failed", "mail")) == 4
        await eventually(four_failed, what="4 failure-log entries")

    async def test_failure_log(self) -> None:
        """When jobs have failed, ``failed`` lists them, filters them and deletes those the
        filters select; deleting the whole log needs --all."""
        await self.start()
        await self.four_failed_jobs()
        out = await self.fireworq("failed", "mail", "--category", "a")
        self.assertEqual(out.count("failure 500 asked to fail"), 2)
        self.assertEqual(len(await self.json("failed", "mail", "--limit", "3")), 3)
        self.assertEqual(await self.json("failed", "mail", "--failed-after", "2999-01-01T00:00:00Z"),
                         [])

        await self.fireworq("failed", "mail", "--delete", status=2)
        self.assertIn("add --all", self.err)
        deleted = await self.json("failed", "mail", "--delete", "--category", "a")
        self.assertEqual(deleted["deleted"], 2)
        self.assertEqual({e["category"] for e in await self.json("failed", "mail")}, {"b"})
        out = await self.fireworq("failed", "mail", "--delete", "--all")
        self.assertEqual(out, "deleted 2 failed job(s) from queue mail\n")
        self.assertEqual(await self.fireworq("failed", "mail"), "(none)\n")

    async def test_retry_and_pause(self) -> None:
        """When a queue is paused from the command line, failed jobs retried with --retry wait
        in it (a filter or --all is needed), and are delivered once it is resumed."""
        await self.start()
        await self.four_failed_jobs()
        self.assertEqual((await self.json("queue", "mail", "--pause"))["paused"], True)
        self.assertIn("paused            true", await self.fireworq("queue", "mail"))
        await self.fireworq("failed", "mail", "--retry", status=2)
        self.assertIn("add --all", self.err)
        await self.fireworq("failed", "mail", "--retry", "--delete", status=2)
        retried = await self.json("failed", "mail", "--retry", "--category", "a")
        self.assertEqual((retried["retried"], len(retried["jobs"])), (2, 2))
        out = await self.fireworq("failed", "mail", "--retry", "--all")
        self.assertEqual(out, "retried 2 failed job(s) of queue mail\n")
        self.assertEqual(await self.fireworq("failed", "mail"), "(none)\n")
        self.assertEqual(len(await self.json("jobs", "mail", "--state", "waiting")), 4)
        self.assertNotIn("paused", await self.json("queue", "mail", "--resume"))
        await self.four_in_failure_log()

    async def test_errors(self) -> None:
        """When the daemon answers an error the command prints it and exits 1; when nothing
        answers, the same; a usage error exits 2."""
        await self.start()
        await self.fireworq("queue", "nope", status=1)
        self.assertEqual(self.err, "fireworq: 404 Not Found: No such queue: nope\n")
        await self.fireworq("push", CATEGORY, "--url", "ftp://x/", status=1)
        self.assertIn("400 Bad Request: Invalid url", self.err)
        await self.fireworq("queues", "--server", f"http://127.0.0.1:{free_port()}", status=1)
        self.assertIn("cannot reach", self.err)
        await self.fireworq("push", CATEGORY, status=2)
        self.assertIn("--url", self.err)
        await self.fireworq("push", CATEGORY, "--url", self.worker.url(), "--payload", "{x",
                            status=2)
        self.assertIn("--payload is not JSON", self.err)
        await self.fireworq("queue", "q", "--set", "max_workers=many", status=2)
        await self.fireworq("queues", "--server", "ftp://x", status=2)

    async def test_server_and_token(self) -> None:
        """When --server and --token are given (before or after the command), requests go
        there with the token as a bearer token; --server beats FIREWORQ_URL."""
        await self.start()
        out = await self.fireworq("--server", self.daemon.base_url, "queues",
                                  FIREWORQ_URL=f"http://127.0.0.1:{free_port()}")
        self.assertEqual(out, "(none)\n")
        # The worker answers {"status": ...} to anything: not a list of queues.
        await self.fireworq("queues", "--server", self.worker.url(""), "--token", "t0k", status=1)
        self.assertIn("unexpected answer", self.err)
        [received] = await self.worker.wait_for(1)
        self.assertEqual((received.path, received.header("authorization")),
                         ("/queues", "Bearer t0k"))

    async def test_daemonWithTokens(self) -> None:
        """Against a daemon with API tokens, the token of --token or FIREWORQ_TOKEN is sent;
        without one the command prints the 401 and exits 1."""
        self.daemon = await Daemon.start(self, "in-memory", ["--api-tokens=adm1n:admin"])
        self.assertEqual(await self.fireworq("queues", "--token", "adm1n"), "(none)\n")
        self.assertEqual(await self.fireworq("queues", FIREWORQ_TOKEN="adm1n"), "(none)\n")
        await self.fireworq("queues", status=1)
        self.assertEqual(self.err, "fireworq: 401 Unauthorized: Missing API token: send"
                                   " 'Authorization: Bearer <token>'\n")

    async def test_python_dash_m(self) -> None:
        """When run as ``python -m fireworq``, the commands work the same."""
        await self.start()
        code, out, err = await run_to_end([sys.executable, "-m", "fireworq", "queues", "--json"],
                                   env={"FIREWORQ_URL": self.daemon.base_url})
        self.assertEqual((code, out, err), (0, "[]\n", ""))
