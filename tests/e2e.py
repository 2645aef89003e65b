"""End-to-end harness: the real daemon as a subprocess, an in-process worker, an API client.

Not a test module (pytest collects ``test_*.py`` only); ``test_e2e.py`` and
``test_durability.py`` import it by module name, as ``tests/`` is on ``sys.path`` under
pytest's default import mode.

Everything runs on the real reactor inside trial ``TestCase``s: a daemon is a
``reactor.spawnProcess`` child whose standard output and error go straight to files in its own
``tempfile.mkdtemp`` directory; the worker is a ``twisted.web`` server on 127.0.0.1; the client
is treq on its own non-persistent connection pool. Each of them registers its own cleanup on the
test case, so a test leaves no process, delayed call or socket behind whatever happens:

    worker = await Worker.start(self)
    daemon = await Daemon.start(self, "sqlite")
    await daemon.api.put_queue("q", max_workers=3)
    job = await daemon.api.push("cat", worker.url("/work"), '{"n": 1}')
    [request] = await worker.wait_for(1)

Waits never sleep the process: they are ``deferLater`` steps or Deferreds with a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Mapping, Sequence

import attrs
from treq.client import HTTPClient
from twisted.internet import reactor as _reactor
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.error import ProcessDone, ProcessTerminated, TimeoutError
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

import mysqltools

reactor: Any = _reactor

#: How long a daemon may take to answer ``GET /healthz`` after it was spawned.
READY_TIMEOUT = 10.0
#: How much longer a daemon of several processes may take: its children start once it listens.
CHILDREN_READY_TIMEOUT = 20.0
#: Per-attempt timeout of the readiness probe.
PROBE_TIMEOUT = 0.5
#: How long ``stop()`` and the cleanup wait for a signalled daemon to exit.
EXIT_TIMEOUT = 30.0
QUEUE_LOG_TAG = "fireworq.queue"
USER_AGENT = "Fireworq/0.1.0"
#: What each process of a daemon says on standard error once it serves its socket.
LISTENING = "fireworq listening on"


# --- small async helpers -------------------------------------------------------------------


def sleep(seconds: float) -> Deferred[None]:
    """A reactor-timed pause (never ``time.sleep``)."""
    return deferLater(reactor, seconds, lambda: None)


def now() -> float:
    return float(reactor.seconds())


async def eventually(
    check: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,
    step: float = 0.05,
    what: str = "condition",
) -> Any:
    """Run ``check`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = now() + timeout
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if now() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        await sleep(step)


async def with_timeout(d: Deferred[Any], timeout: float, what: str) -> Any:
    d.addTimeout(timeout, reactor)
    try:
        return await d
    except (CancelledError, TimeoutError):
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_directory(directory: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run with ``directory`` as its working directory, in the same process (exec).

    ``reactor.spawnProcess(path=...)`` cannot use posix_spawn (which has no chdir) and forks
    instead, and a fork of this multi-threaded test process is deprecated from Python 3.12
    on; the child changes directory itself instead."""
    return [sys.executable, "-c", _CHDIR_EXEC, directory, *argv]


_CHDIR_EXEC = "import os, sys; os.chdir(sys.argv[1]); os.execvp(sys.argv[2], sys.argv[2:])"


def asyncCleanup(case: TestCase, f: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """``addCleanup`` for a coroutine function."""
    case.addCleanup(lambda: Deferred.fromCoroutine(f(*args)))  # type: ignore[arg-type]


def only(*names: str) -> Callable[[type[Any]], type[Any]]:
    """A class decorator: of the ``test_*`` methods the class has, only ``names`` run. The
    others become ``None``, which neither pytest nor trial collects (they are not skipped:
    they are not there)."""
    def select(cls: type[Any]) -> type[Any]:
        tests = {name for name in dir(cls) if name.startswith("test")}
        unknown = set(names) - tests
        assert not unknown, f"no such tests: {sorted(unknown)}"
        for name in tests - set(names):
            setattr(cls, name, None)
        return cls
    return select


def child_pids(pid: int) -> list[int]:
    """The children of process ``pid`` (Linux ``/proc``; none once it has ended)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                found.extend(int(child) for child in listing.read().split())
    except OSError:
        pass
    return found


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def processes_ended(pids: Iterable[int], timeout: float, what: str) -> None:
    """Wait until none of ``pids`` is alive; past ``timeout``, SIGKILL those left (they are
    processes the test started, named by pid) and fail."""
    pids = list(pids)

    async def ended() -> bool:
        return not any(alive(pid) for pid in pids)

    try:
        await eventually(ended, timeout, step=0.05, what=what)
    except AssertionError:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise


# --- the daemon's HTTP API -----------------------------------------------------------------


@attrs.frozen
class Reply:
    """A daemon API response, its body read and decoded when it is JSON."""

    code: int
    headers: Mapping[str, Sequence[str]]
    body: bytes
    #: ``reactor.seconds()`` when the response (headers and body) was in.
    time: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class ApiClient:
    """treq on its own non-persistent pool, aimed at one daemon."""

    def __init__(self, case: TestCase, base_url: str) -> None:
        self.base_url = base_url
        self._pool = HTTPConnectionPool(reactor, persistent=False)
        self._http = HTTPClient(Agent(reactor, pool=self._pool))
        asyncCleanup(case, self.close)

    async def close(self) -> None:
        await self._pool.closeCachedConnections()

    async def request(
        self, method: str, path: str, body: bytes | str | None = None, timeout: float = 10.0,
    ) -> Reply:
        data = body.encode("utf-8") if isinstance(body, str) else body
        headers: dict[bytes | str, bytes | str] | None = (
            {"Content-Type": "application/json"} if data is not None else None)
        response = await self._http.request(
            method, self.base_url + path, data=data, headers=headers, timeout=timeout
        )
        content = await response.content()
        return Reply(
            response.code,
            {k.decode().lower(): [v.decode() for v in vs]
             for k, vs in response.headers.getAllRawHeaders()},
            content,
            now(),
        )

    async def ok(self, method: str, path: str, body: bytes | str | None = None) -> Any:
        """The JSON of a 200 answer (anything else fails the test)."""
        reply = await self.request(method, path, body)
        if reply.code != 200:
            raise AssertionError(f"{method} {path} -> {reply.code} {reply.body!r}")
        return reply.json

    # Conveniences for the routes the suites use.

    async def put_queue(self, name: str, **definition: Any) -> Any:
        return await self.ok("PUT", f"/queue/{name}", json.dumps(definition))

    async def put_routing(self, category: str, queue: str) -> Any:
        return await self.ok("PUT", f"/routing/{category}", json.dumps({"queue_name": queue}))

    async def push(self, category: str, url: str, payload_text: str | None = None,
                   **options: int) -> Reply:
        """POST /job/{category}; ``payload_text`` is spliced into the body verbatim, so the
        worker must receive exactly those bytes (docs/api.md, Payloads). Returns the raw reply (its
        ``time`` is when the 200 came back)."""
        members = [f'"url": {json.dumps(url)}']
        if payload_text is not None:
            members.append(f'"payload": {payload_text}')
        members += [f'"{k}": {json.dumps(v)}' for k, v in options.items()]
        return await self.request("POST", f"/job/{category}", "{" + ", ".join(members) + "}")

    async def push_ok(self, category: str, url: str, payload_text: str | None = None,
                      **options: int) -> Any:
        reply = await self.push(category, url, payload_text, **options)
        if reply.code != 200:
            raise AssertionError(f"push -> {reply.code} {reply.body!r}")
        return reply.json

    async def stats(self, queue: str) -> Any:
        return await self.ok("GET", f"/queue/{queue}/stats")

    async def failed(self, queue: str) -> list[Any]:
        return list((await self.ok("GET", f"/queue/{queue}/failed"))["failed_jobs"])


# --- the daemon process --------------------------------------------------------------------


@attrs.frozen
class Exit:
    """How a daemon process ended: ``code`` for a normal exit, ``signal`` when killed."""

    code: int | None
    signal: int | None

    @classmethod
    def of(cls, reason: BaseException) -> Exit:
        if isinstance(reason, ProcessDone):
            return cls(0, None)
        if isinstance(reason, ProcessTerminated):
            return cls(reason.exitCode, reason.signal)
        raise reason


class _Watch(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[Exit] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(Exit.of(reason.value))  # type: ignore[arg-type]


class Daemon:
    """A ``twistd -n fireworq`` child on 127.0.0.1 with its own temporary directory.

    Its working directory (and so the default ``--sqlite-path``) is the temporary directory;
    run ``n`` writes ``stdout.<n>`` and ``stderr.<n>`` there. ``restart()`` starts a new run on
    the same directory and port.

    With ``processes`` > 1 it runs with ``--processes`` (docs/performance.md, "More than one
    core"): a run is ready once every process says it listens, and a stop or kill of the
    parent is over once its children have ended too (they hold the listening socket that the
    next run binds again). Their standard output and error are the parent's files.
    """

    def __init__(self, case: TestCase, driver: str, options: Iterable[str] = (),
                 env: Mapping[str, str] | None = None, processes: int = 1) -> None:
        self.driver = driver
        self.processes = processes
        self.options = list(options)
        self.env = dict(env or {})
        self.dir = tempfile.mkdtemp(prefix="fireworq-e2e-")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api = ApiClient(case, self.base_url)
        self.runs = 0
        self._process: Any = None
        self._watch: _Watch | None = None
        self.exit: Exit | None = None
        #: Fail the test at cleanup when the error log shows errors (see error_lines).
        self.check_errors = True
        # Added after the client's cleanup, so it runs before it (cleanups are LIFO).
        asyncCleanup(case, self._cleanup)

    @classmethod
    async def start(cls, case: TestCase, driver: str, options: Iterable[str] = (),
                    env: Mapping[str, str] | None = None, processes: int = 1) -> Daemon:
        daemon = cls(case, driver, options, env, processes)
        await daemon.spawn()
        return daemon

    # -- process

    @property
    def running(self) -> bool:
        return self._watch is not None and not self._watch.ended.called

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    @property
    def children(self) -> list[int]:
        """The pids of the running parent's children (``processes`` > 1)."""
        return child_pids(self.pid) if self.running else []

    def argv(self) -> list[str]:
        processes = [f"--processes={self.processes}"] if self.processes > 1 else []
        return [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "fireworq",
            f"--bind=127.0.0.1:{self.port}", f"--driver={self.driver}", *processes,
            *self.options,
        ]

    async def spawn(self) -> None:
        """Start a new run and wait until it answers ``GET /healthz``."""
        assert not self.running, "the daemon is already running"
        self.runs += 1
        self.exit = None
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIREWORQ_")}
        env.update(self.env)
        fds = [
            os.open(os.devnull, os.O_RDONLY),
            os.open(self.stdout_path(self.runs), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            os.open(self.stderr_path(self.runs), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        ]
        try:
            self._watch = _Watch()
            argv = in_directory(self.dir, self.argv())
            self._process = reactor.spawnProcess(
                self._watch, argv[0], argv, env=env, childFDs={0: fds[0], 1: fds[1], 2: fds[2]},
            )
        finally:
            for fd in fds:
                os.close(fd)
        self._watch.ended.addCallback(self._ended)
        await self._wait_ready()

    def _ended(self, exit: Exit) -> Exit:
        self.exit = exit
        return exit

    async def _wait_ready(self) -> None:
        timeout = READY_TIMEOUT + (CHILDREN_READY_TIMEOUT if self.processes > 1 else 0.0)
        deadline = now() + timeout
        while True:
            if not self.running:
                raise AssertionError(
                    f"the daemon exited ({self.exit}) before it was ready; stderr:\n"
                    + self.stderr())
            try:
                reply = await self.api.request("GET", "/healthz", timeout=PROBE_TIMEOUT)
                # The children's own lines (a daemon of one process may log elsewhere).
                if reply.code == 200 and (self.processes == 1
                                          or self.listening() >= self.processes):
                    return
            except Exception:
                pass
            if now() >= deadline:
                await self.kill9()
                raise AssertionError(
                    f"the daemon did not answer GET /healthz within {timeout} s (with"
                    f" {self.listening()} of {self.processes} processes listening); stderr:\n"
                    + self.stderr())
            await sleep(0.05)

    def listening(self) -> int:
        """How many processes of the current run have said they listen."""
        return self.stderr(self.runs).count(LISTENING)

    def send_signal(self, sig: int | str) -> None:
        """Send a signal (``signal.SIGTERM`` or a name such as ``"TERM"``)."""
        name = sig if isinstance(sig, str) else signal.Signals(sig).name.removeprefix("SIG")
        self._process.signalProcess(name)

    async def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> Exit:
        assert self._watch is not None
        ended: Deferred[Exit] = Deferred()

        def relay(result: Exit) -> Exit:
            ended.callback(result)
            return result

        self._watch.ended.addCallback(relay)
        return await with_timeout(ended, timeout, "the daemon to exit")  # type: ignore[no-any-return]

    async def stop(self, sig: int | str = signal.SIGTERM, timeout: float = EXIT_TIMEOUT) -> Exit:
        """Signal the daemon and wait for its exit status (and for its children to end)."""
        if not self.running:
            assert self.exit is not None
            return self.exit
        children = self.children
        self.send_signal(sig)
        exit = await self.wait_exit(timeout)
        await processes_ended(children, timeout, "the daemon's children to end")
        return exit

    async def kill9(self) -> Exit:
        return await self.stop("KILL")

    async def restart(self, sig: int | str = signal.SIGTERM) -> Exit | None:
        """Stop the running process (if any), then start a new run on the same directory
        and port. Returns how the previous run ended."""
        previous = await self.stop(sig) if self.running else self.exit
        await self.spawn()
        return previous

    async def _cleanup(self) -> None:
        try:
            if self.running:
                # Children too: killed alone, the parent would have them stop gracefully.
                for child in self.children:
                    os.kill(child, signal.SIGKILL)
                await self.kill9()
            problems = self.error_lines()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
        if problems and self.check_errors:
            raise AssertionError(
                "the daemon's error log has errors:\n" + "\n".join(problems))

    def error_lines(self) -> list[str]:
        """Error-log lines that show a daemon bug: tracebacks, unhandled errors, critical
        and error events (twistd's text format: ``<time> [<namespace>#<level>] ...``)."""
        return [
            line for line in self.stderr().splitlines()
            if "Traceback" in line or "Unhandled" in line
            or "#critical]" in line or "#error]" in line
        ]

    # -- output

    def stdout_path(self, run: int) -> str:
        return os.path.join(self.dir, f"stdout.{run}")

    def stderr_path(self, run: int) -> str:
        return os.path.join(self.dir, f"stderr.{run}")

    def _read(self, path: str) -> str:
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout(self, run: int | None = None) -> str:
        runs = [run] if run is not None else range(1, self.runs + 1)
        return "".join(self._read(self.stdout_path(r)) for r in runs)

    def stderr(self, run: int | None = None) -> str:
        runs = [run] if run is not None else range(1, self.runs + 1)
        return "".join(
            f"--- run {r} ---\n" + self._read(self.stderr_path(r)) for r in runs)

    def json_lines(self, run: int | None = None) -> list[dict[str, Any]]:
        """Every complete JSON line of standard output (queue and access log)."""
        lines = []
        for line in self.stdout(run).splitlines(keepends=True):
            if line.endswith("\n") and line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def queue_log(self, run: int | None = None, **match: Any) -> list[dict[str, Any]]:
        """Queue-log lines (docs/configuration.md, Queue log), those whose members equal ``match``
        if given."""
        return [
            line for line in self.json_lines(run)
            if line.get("tag") == QUEUE_LOG_TAG
            and all(line.get(k) == v for k, v in match.items())
        ]


# --- the worker ----------------------------------------------------------------------------


@attrs.frozen
class Received:
    """One request the worker got."""

    time: float
    method: str
    #: The request target: path and query.
    path: str
    #: Header names lower-cased, each with all its values.
    headers: Mapping[str, Sequence[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@attrs.frozen
class Answer:
    """What the worker answers: HTTP ``code`` and raw ``body``, after ``delay`` seconds."""

    body: bytes
    code: int = 200
    delay: float = 0.0
    content_type: str = "application/json"
    #: More response headers, (name, value) pairs.
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def result(cls, status: str, message: str = "", code: int = 200,
               delay: float = 0.0) -> Answer:
        return cls(json.dumps({"status": status, "message": message}).encode(), code, delay)


def success(message: str = "done", code: int = 200) -> Answer:
    return Answer.result("success", message, code)


def failure(message: str = "boom", code: int = 500) -> Answer:
    return Answer.result("failure", message, code)


def permanent_failure(message: str = "bad job", code: int = 400) -> Answer:
    return Answer.result("permanent-failure", message, code)


def not_json(text: str = "<html>oops</html>", code: int = 200) -> Answer:
    return Answer(text.encode(), code, content_type="text/html")


def unknown_status(code: int = 200) -> Answer:
    return Answer(b'{"status":"ok"}', code)


def slow(seconds: float, answer: Answer | None = None) -> Answer:
    return attrs.evolve(answer or success(), delay=seconds)


Policy = Callable[[Received], Answer]


def always(answer: Answer) -> Policy:
    return lambda received: answer


class _Channel(HTTPChannel):
    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        self.factory.worker._channels.add(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.factory.worker._channels.discard(self)
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


class _WorkerResource(Resource):
    isLeaf = True

    def __init__(self, worker: Worker) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._worker = worker

    def render(self, request: Request) -> Any:
        return self._worker._handle(request)


class Worker:
    """An in-process HTTP worker on 127.0.0.1 that records requests and answers per
    ``policy`` (``success()`` unless set; a function of the L{Received} request).

    ``current`` / ``max_concurrency`` count requests from arrival until their response is
    written (or their connection lost).
    """

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy: Policy = policy or always(success())
        self.received: list[Received] = []
        self.current = 0
        self.max_concurrency = 0
        self.port = 0
        self._listening: Any = None
        self._channels: set[_Channel] = set()
        self._pending: set[Deferred[None]] = set()
        self._waiters: list[tuple[int, Deferred[list[Received]]]] = []
        site = Site(_WorkerResource(self), timeout=None)
        site.protocol = _Channel  # type: ignore[assignment]
        site.worker = self  # type: ignore[attr-defined]
        site.noisy = False
        self._site = site

    @classmethod
    async def start(cls, case: TestCase, policy: Policy | None = None, port: int = 0) -> Worker:
        worker = cls(policy)
        worker.listen(port)
        asyncCleanup(case, worker.stop)
        return worker

    def listen(self, port: int = 0) -> None:
        """Listen on ``port`` (0: any free one); the port is kept for later ``listen()``s."""
        assert self._listening is None
        self._listening = reactor.listenTCP(port or self.port, self._site, interface="127.0.0.1")
        self.port = self._listening.getHost().port

    def url(self, path: str = "/work") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def payloads(self) -> list[Any]:
        return [r.json for r in self.received]

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``n`` requests in total have been received; returns the first ``n``."""
        if len(self.received) >= n:
            return self.received[:n]
        d: Deferred[list[Received]] = Deferred()
        entry = (n, d)
        self._waiters.append(entry)
        try:
            return await with_timeout(  # type: ignore[no-any-return]
                d, timeout, f"{n} worker requests (got {len(self.received)})")
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _handle(self, request: Request) -> Any:
        received = Received(
            time=now(),
            method=request.method.decode(),
            path=request.uri.decode(),
            headers={k.decode().lower(): [v.decode() for v in vs]
                     for k, vs in request.requestHeaders.getAllRawHeaders()},
            body=request.content.read() if request.content is not None else b"",
        )
        self.received.append(received)
        self.current += 1
        self.max_concurrency = max(self.max_concurrency, self.current)
        request.notifyFinish().addBoth(self._finished)
        for entry in list(self._waiters):
            if len(self.received) >= entry[0]:
                self._waiters.remove(entry)
                entry[1].callback(self.received[:entry[0]])
        answer = self.policy(received)
        if answer.delay <= 0:
            return self._write(request, answer)
        d = deferLater(reactor, answer.delay, lambda: None)
        self._pending.add(d)

        def reply(_: None) -> None:
            if not request._disconnected:
                request.write(self._write(request, answer))
                request.finish()

        def lost(_: Any) -> None:
            if not d.called:
                d.cancel()

        request.notifyFinish().addErrback(lost)
        d.addCallback(reply)
        d.addErrback(lambda f: f.trap(CancelledError))
        d.addBoth(lambda _: self._pending.discard(d))
        return NOT_DONE_YET

    @staticmethod
    def _write(request: Request, answer: Answer) -> bytes:
        request.setResponseCode(answer.code)
        request.setHeader(b"Content-Type", answer.content_type.encode())
        for name, value in answer.headers:
            request.setHeader(name.encode(), value.encode())
        return answer.body

    def _finished(self, _: Any) -> None:
        self.current -= 1

    async def stop_listening(self) -> None:
        """Stop accepting connections, abort open ones and drop pending answers."""
        if self._listening is not None:
            listening, self._listening = self._listening, None
            await listening.stopListening()
        for d in list(self._pending):
            d.cancel()
        for channel in list(self._channels):
            channel.transport.abortConnection()  # type: ignore[union-attr]
        await eventually(self._no_channels, timeout=5, step=0.01, what="worker connections")

    async def _no_channels(self) -> bool:
        return not self._channels

    async def stop(self) -> None:
        for _, d in self._waiters:
            d.cancel()
        await self.stop_listening()


async def gather(coroutines: Iterable[Awaitable[Any]]) -> list[Any]:
    return await gatherResults(
        [Deferred.fromCoroutine(c) for c in coroutines], consumeErrors=True)  # type: ignore[arg-type]


async def bounded(coroutines: Iterable[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run the coroutine functions at most ``limit`` at a time; results in order. Each
    result is the value or the exception it raised."""
    factories = list(coroutines)
    results: list[Any] = [None] * len(factories)
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < len(factories):
            i = next_index
            next_index += 1
            try:
                results[i] = await factories[i]()
            except Exception as e:
                results[i] = e

    await gather(lane() for _ in range(limit))
    return results


if TYPE_CHECKING:
    _Base = TestCase
else:
    _Base = object


class DaemonScenarios(_Base):
    """Mixed into a trial ``TestCase``: a worker and a daemon of ``driver`` started for each
    test; on mysql, each test on a database of its own (named after ``database_prefix``),
    created before its daemon starts and dropped after it is gone."""

    driver: str
    #: Extra daemon options of the driver (set here for mysql: the DSN).
    driver_options: tuple[str, ...] = ()
    #: ``--processes`` of the daemon (docs/performance.md, "More than one core").
    processes: int = 1
    database_prefix = "fwe2e"

    worker: Worker
    daemon: Daemon

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        if self.driver == "mysql":
            self.database, self.driver_options = mysqltools.daemon_database(
                self, self.database_prefix)
        self.worker = await self.start_worker()
        self.daemon = await self.start_daemon()

    async def start_worker(self) -> Worker:
        return await Worker.start(self)

    async def start_daemon(self, *options: str) -> Daemon:
        return await Daemon.start(self, self.driver, (*self.driver_options, *options),
                                  processes=self.processes)


__all__ = [
    "Answer", "ApiClient", "Daemon", "DaemonScenarios", "Exit", "LISTENING", "Received",
    "Reply", "Worker",
    "alive", "always", "bounded", "child_pids", "eventually", "failure", "free_port", "gather",
    "in_directory", "not_json", "now", "only", "permanent_failure", "processes_ended", "sleep",
    "slow", "success", "unknown_status", "with_timeout", "USER_AGENT",
]
