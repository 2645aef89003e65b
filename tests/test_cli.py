"""The ``fireworq`` command as a new user meets it: versions, usage errors, a bad SQLite path,
the start-up line, the logs of twistd's daemon mode, ``python -m fireworq``, and the image's
health check against a real daemon."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
from typing import Any

from twisted.trial.unittest import TestCase

import fireworq
from e2e import ApiClient, Daemon, eventually, free_port
from proctools import TWISTD, Child, run_to_end, venv_command
from test_packaging import dockerfile_instructions

VERSION_LINE = f"fireworq-py {fireworq.__version__}\n"
PYTHON_M = [sys.executable, "-m", "fireworq"]


def temporary_directory(case: TestCase) -> str:
    directory = tempfile.mkdtemp(prefix="fireworq-cli-")
    case.addCleanup(shutil.rmtree, directory, True)
    return directory


class VersionAndUsageTests(TestCase):
    async def test_version(self) -> None:
        """When asked for its version, each way of starting the daemon prints fireworq-py's."""
        for argv in (venv_command("fireworq", "--version"), [*PYTHON_M, "--version"],
                     venv_command("twistd", "fireworq", "--version")):
            self.assertEqual(await run_to_end(argv), (0, VERSION_LINE, ""), argv)

    async def test_unknown_option(self) -> None:
        """When an option is unknown, one line says so and where to look: no usage text."""
        line = "fireworq: unknown option --bogus; see fireworq --help\n"
        for argv in (venv_command("fireworq", "--bogus"), [*PYTHON_M, "--bogus"],
                     [*TWISTD, "-n", "fireworq", "--bogus"]):
            self.assertEqual(await run_to_end(argv), (2, "", line), argv)

    async def test_help(self) -> None:
        """When asked for help, fireworq lists its commands and the daemon's options."""
        code, out, err = await run_to_end(venv_command("fireworq", "--help"))
        self.assertEqual((code, err), (0, ""))
        for text in ("fireworq COMMAND", "push CATEGORY", "failed QUEUE", "--sqlite-path=",
                     "FIREWORQ_BIND"):
            self.assertIn(text, out)


class BadSqlitePathTests(TestCase):
    async def assertRefused(self, path: str, reason: str) -> None:
        code, out, err = await run_to_end(
            venv_command("fireworq", f"--sqlite-path={path}", f"--bind=127.0.0.1:{free_port()}"),
            cwd=temporary_directory(self))
        self.assertEqual(code, 1, err)
        self.assertIn(f"fireworq: cannot open {path}: {reason}\n", err)
        self.assertNotIn("Traceback", err)

    async def test_missing_directory(self) -> None:
        await self.assertRefused("/nonexistent-fireworq-dir/q.sqlite3", "directory does not exist")

    async def test_directory(self) -> None:
        await self.assertRefused(temporary_directory(self), "is a directory")


class StartLineTests(TestCase):
    async def test_sqlite(self) -> None:
        """When the daemon is up, one line gives its version, address, driver and data file;
        Twisted's "FireworqSite starting on" and "Port closed" lines are gone."""
        daemon = await Daemon.start(self, "sqlite")
        await daemon.stop()
        err = daemon.stderr()
        self.assertIn(
            f"fireworq listening on 127.0.0.1:{daemon.port} (fireworq-py {fireworq.__version__},"
            f" driver sqlite, data in {os.path.realpath(daemon.dir)}/fireworq.sqlite3)", err)
        self.assertNotRegex(err, r"starting on|Port \d+ Closed")


async def wait_gone(pid: int, timeout: float = 30.0) -> None:
    async def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    await eventually(gone, timeout=timeout, what=f"process {pid} to exit")


def kill_if_alive(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class TwistdLogTests(TestCase):
    async def daemon_mode(self, *twistd_options: str) -> tuple[str, str]:
        """Run ``twistd [options] fireworq`` without -n, make one request, stop it; the
        directory it ran in and its logs' file."""
        directory = temporary_directory(self)
        port = free_port()
        code, out, err = await run_to_end(
            venv_command("twistd", *twistd_options, "fireworq", f"--bind=127.0.0.1:{port}"),
            cwd=directory)
        self.assertEqual((code, out, err), (0, "", ""))
        pid_file = os.path.join(directory, "twistd.pid")

        async def pid_written() -> bool:
            return os.path.exists(pid_file) and os.path.getsize(pid_file) > 0
        await eventually(pid_written, what="twistd.pid")
        with open(pid_file) as f:
            pid = int(f.read())
        self.addCleanup(kill_if_alive, pid)
        api = ApiClient(self, f"http://127.0.0.1:{port}")

        async def healthy() -> bool:
            try:
                return (await api.request("GET", "/healthz", timeout=0.5)).code == 200
            except Exception:
                return False
        await eventually(healthy, what="the daemon to answer")
        os.kill(pid, signal.SIGTERM)
        await wait_gone(pid)
        return directory, pid_file

    def read_lines(self, path: str) -> list[dict[str, Any]]:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    async def test_daemon_mode(self) -> None:
        """When twistd daemonizes, the error, access and queue logs go to twistd.log, as JSON
        lines."""
        directory, _ = await self.daemon_mode()
        lines = self.read_lines(os.path.join(directory, "twistd.log"))
        messages = [line.get("message", "") for line in lines]
        self.assertTrue([m for m in messages if m.startswith("fireworq listening on")], lines)
        self.assertIn("Received SIGTERM; stopping gracefully", messages)
        self.assertEqual([line["url"] for line in lines if line.get("tag") == "fireworq.access"],
                         ["/healthz"])

    async def test_daemon_mode_logfile(self) -> None:
        """When --logfile is given, the logs go there instead."""
        directory, _ = await self.daemon_mode("--logfile", "logs/fireworq.log")
        self.assertFalse(os.path.exists(os.path.join(directory, "twistd.log")))
        lines = self.read_lines(os.path.join(directory, "logs", "fireworq.log"))
        self.assertTrue([line for line in lines if line.get("tag") == "fireworq.access"])

    async def test_refused(self) -> None:
        """When twistd is asked to log where the daemon cannot, it says so in one line."""
        directory = temporary_directory(self)
        code, out, err = await run_to_end(
            venv_command("twistd", "--logfile", "-", "fireworq"), cwd=directory)
        self.assertEqual((code, err), (1, "fireworq: --logfile - (standard output) needs -n"
                                          " (--nodaemon)\n"))
        self.assertFalse(os.path.exists(os.path.join(directory, "twistd.pid")))


class HealthCheckTests(TestCase):
    def health_command(self) -> list[str]:
        [check] = [args for name, args in dockerfile_instructions() if name == "HEALTHCHECK"]
        return list(json.loads(re.sub(r"^.*?CMD\s+", "", check)))

    async def test_image_health_check(self) -> None:
        """When the image's health check runs beside a daemon on FIREWORQ_BIND's port, it
        passes; with nothing there, it fails."""
        daemon = await Daemon.start(self, "in-memory")
        command = [sys.executable if word == "python" else word
                   for word in self.health_command()]
        code, _, err = await run_to_end(command, env={"FIREWORQ_BIND": f"0.0.0.0:{daemon.port}"})
        self.assertEqual(code, 0, err)
        code, _, _ = await run_to_end(command, env={"FIREWORQ_BIND": f"0.0.0.0:{free_port()}"})
        self.assertNotEqual(code, 0)


class PythonDashMTests(TestCase):
    async def test_runs_the_daemon(self) -> None:
        """When started as ``python -m fireworq``, the daemon runs as ``fireworq`` would."""
        port = free_port()
        child = Child(self, "python-m", [*PYTHON_M, f"--bind=127.0.0.1:{port}",
                                         "--driver=in-memory"], cwd=temporary_directory(self))
        await child.wait_for_text(f"fireworq listening on 127.0.0.1:{port}")
        exit = await child.stop("TERM")
        self.assertEqual((exit.code, exit.signal), (0, None))
