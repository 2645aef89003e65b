"""Starting on MySQL as a new user does: the database is away, or was never created.

* The server is not reachable at start: the daemon listens anyway. ``/healthz`` answers 200
  (a liveness probe must not restart it for ever), ``/readyz``, pushes and everything that
  needs the store answer 503 with ``Retry-After``, the other checks keep their order (an
  unknown path is still 404); once the server answers, the daemon starts for real, without
  a restart.
* The database does not exist: the daemon stops with one line that says how to create it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

import mysqltools
from e2e import Daemon, Worker, eventually
from proctools import Child, daemon_argv, venv_command
from test_mysql_outage import Proxy


class DatabaseAwayAtStartTests(TestCase):
    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.database = mysqltools.create_database("fwstart")
        self.addCleanup(mysqltools.drop_database, self.database)
        self.proxy = Proxy.start(self)
        await self.proxy.refuse()

    async def test_listens_while_waiting(self) -> None:
        """When MySQL cannot be reached at start, the daemon answers liveness at once and
        503 for readiness and store work; it serves normally once the server is back."""
        worker = await Worker.start(self)
        daemon = await Daemon.start(self, "mysql", [f"--mysql-dsn={self.proxy.dsn(self.database)}"])
        api = daemon.api
        self.assertEqual((await api.request("GET", "/healthz")).code, 200)
        for method, path, body in [
            ("GET", "/readyz", None),
            ("POST", "/job/welcome", json.dumps({"url": worker.url()})),
            ("GET", "/queues", None),
            ("PUT", "/queue/mail", "{}"),
        ]:
            reply = await api.request(method, path, body)
            self.assertEqual(reply.code, 503, (method, path, reply.body))
            self.assertEqual(reply.headers["retry-after"], ["1"])
            self.assertTrue(reply.json["message"].startswith(
                "Store unavailable: waiting for the database: "), reply.json)
        self.assertEqual((await api.request("GET", "/nowhere")).code, 404)
        self.assertEqual((await api.request("PUT", "/queue/mail", "[]")).code, 400)
        self.assertEqual((await api.request("GET", "/queues/stats")).json, {})
        self.assertNotIn("fireworq listening on", daemon.stderr())
        self.assertIn("Waiting for the database", daemon.stderr())

        self.proxy.restore()

        async def ready() -> bool:
            return (await api.request("GET", "/readyz")).code == 200
        await eventually(ready, timeout=20, what="/readyz 200 after the restore")
        await api.put_queue("mail", max_workers=2)
        await api.put_routing("welcome", "mail")
        await api.push_ok("welcome", worker.url(), '{"n": 1}')
        [received] = await worker.wait_for(1)
        self.assertEqual(received.json, {"n": 1})
        self.assertEqual(daemon.stderr().count("fireworq listening on"), 1)
        self.assertIn(f"driver mysql, data in database {self.database} on 127.0.0.1:"
                      f"{self.proxy.port})", daemon.stderr())


class MissingDatabaseTests(TestCase):
    async def test_says_how_to_create_it(self) -> None:
        """When the DSN's database does not exist, the daemon stops with status 1 and one line
        that says how to create it."""
        mysqltools.require_mysql()
        missing = "fwmissing_%d" % os.getpid()
        mysqltools.drop_database(missing)
        directory = tempfile.mkdtemp(prefix="fireworq-missing-")
        self.addCleanup(shutil.rmtree, directory, True)
        dsn = mysqltools.dsn_text(missing)
        server = mysqltools.server_dsn()
        where = (f"unix:{server.socket_path}" if server.network == "unix"
                 else f"{server.host}:{server.port}")
        for argv in (venv_command("fireworq", "--driver=mysql", f"--mysql-dsn={dsn}"),
                     daemon_argv("--driver=mysql", f"--mysql-dsn={dsn}")):
            child = Child(self, "missing", argv, cwd=directory)
            exit = await child.wait_exit()
            self.assertEqual(exit.code, 1, child.err)
            self.assertIn(
                f"fireworq: cannot start: the MySQL database {missing} does not exist on"
                f" {where}; create it first: CREATE DATABASE {missing}\n",
                child.err)
