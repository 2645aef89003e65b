"""The three logs of docs/configuration.md, Logs: queue log, access log (JSON lines) and error log.

The queue and access logs are written once per job event and once per request, so they
bypass the global log publisher: lines are formatted directly and written once per reactor
turn. The error log is ``twisted.logger``'s, filtered by ``error_log_level``.
"""

from __future__ import annotations

import io
import os
import re
from typing import IO, Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    formatEventAsClassicLogText,
)
from zope.interface import implementer

from fireworq import jsontext
from fireworq.jsontext import encode_str, format_number
from fireworq.masking import mask_url
from fireworq.model import Job, NewJob, PushedJob
from fireworq.times import format_seconds

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "fatal": LogLevel.critical,
}


class LineWriter:
    """Appends lines to a file (or a standard stream when no path is given).

    Lines written during one reactor turn go out in one write at the end of the turn.
    """

    def __init__(self, clock: IReactorTime, path: str, stream: IO[bytes]) -> None:
        self._clock = clock
        self._path = path
        self._stream = stream
        self._file: IO[bytes] = self._open()
        self._buffer: list[bytes] = []
        self._timer: IDelayedCall | None = None

    def _open(self) -> IO[bytes]:
        if not self._path:
            return self._stream
        return _open_append(self._path)

    def write(self, line: bytes) -> None:
        self._buffer.append(line)
        if self._timer is None:
            self._timer = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        try:
            self._file.write(data)
            self._file.flush()
        except (OSError, ValueError):
            pass  # a closed or full log must not take the daemon down

    def reopen(self) -> None:
        """For log rotation (SIGUSR1): the renamed file is left, a new one started."""
        self.flush()
        if self._path:
            old, self._file = self._file, self._open()
            old.close()

    def close(self) -> None:
        self.flush()
        if self._path:
            self._file.close()


_QUEUE_LINE = (
    '{"level":"%s","time":%d,"tag":%s,"action":"%s","queue":%s,"category":%s,"id":%d,'
    '"status":"%s","created_at":%d,"elapsed":%d,"url":%s,"payload":%s,"next_try":%d,'
    '"retry_count":%d,"retry_delay":%d,"fail_count":%d,"timeout":%d%s}\n'
)
_ACCESS_LINE = (
    '{"level":"info","remote_addr":%s%s%s,"tag":%s,"method":%s,"url":%s,"status":%d,'
    '"duration":%s,"time":"%s"}\n'
)


class QueueLog:
    """One JSON line per job event (docs/configuration.md, Queue log)."""

    def __init__(self, writer: LineWriter, clock: IReactorTime, tag: str, level: str) -> None:
        self._writer = writer
        self._clock = clock
        self._tag = encode_str(tag)
        self._debug = LEVELS[level] <= LogLevel.debug
        self._info = LEVELS[level] <= LogLevel.info

    def _write(
        self, level: str, action: str, queue: str, category: str, job_id: int, status: str,
        created_at: int, url: str, payload: bytes, next_try: int, retry_count: int,
        retry_delay: int, fail_count: int, timeout: int, message: str,
    ) -> None:
        # A fixed template: a line per job event is too frequent for a generic encoder.
        now = int(self._clock.seconds() * 1000)
        line = _QUEUE_LINE % (
            level, now, self._tag, action, encode_str(queue), encode_str(category), job_id,
            status, created_at, now - created_at, encode_str(mask_url(url)),
            encode_str(payload.decode("utf-8", "replace")), next_try, retry_count,
            retry_delay, fail_count, timeout,
            ',"message":%s' % encode_str(message) if message else "",
        )
        self._writer.write(line.encode("utf-8"))

    def _emit(
        self, level: str, action: str, queue: str, job: Job, status: str, fail_count: int,
        message: str,
    ) -> None:
        self._write(level, action, queue, job.category, job.id, status, job.created_at,
                    job.url, job.payload, job.next_try, job.retry_count, job.retry_delay,
                    fail_count, job.timeout, message)

    def push(self, queue: str, job: NewJob, pushed: PushedJob) -> None:
        if self._info:
            self._write("info", "push", queue, job.category, pushed.id, "claimed",
                        pushed.created_at, job.url, job.payload, pushed.next_try,
                        job.max_retries, job.retry_delay, 0, job.timeout, "New job accepted")

    def pop(self, queue: str, job: Job) -> None:
        if self._debug:
            self._emit("debug", "pop", queue, job, "grabbed", job.fail_count, "A job grabbed")

    def complete(self, queue: str, job: Job, succeeded: bool, message: str) -> None:
        if self._info:
            status = "completed" if succeeded else "failed"
            fail_count = job.fail_count if succeeded else job.fail_count + 1
            self._emit("info", "complete", queue, job, status, fail_count, message)

    def retry(self, queue: str, job: Job, message: str) -> None:
        if self._info:
            self._emit("info", "retry", queue, job, "failed", job.fail_count + 1, message)


class AccessLog:
    """One JSON line per HTTP request, once its response is sent (docs/configuration.md, Access
    log)."""

    def __init__(self, writer: LineWriter, tag: str) -> None:
        self._writer = writer
        self._tag = encode_str(tag)
        self._second = -1
        self._time = ""

    def log(
        self, remote_addr: str, user_agent: str | None, method: str, url: str, status: int,
        duration_ms: float, finished_at: float, scope: str | None = None,
    ) -> None:
        """``scope``: the API token's, when one was checked; never the token itself."""
        second = int(finished_at)
        if second != self._second:  # one rendering per second is enough
            self._second, self._time = second, format_seconds(finished_at)
        line = _ACCESS_LINE % (
            encode_str(remote_addr),
            "" if user_agent is None else ',"user_agent":%s' % encode_str(user_agent),
            "" if scope is None else ',"scope":"%s"' % scope,
            self._tag, encode_str(method), encode_str(url), status,
            format_number(round(duration_ms, 3)), self._time,
        )
        self._writer.write(line.encode("utf-8"))


@implementer(ILogObserver)
class JsonErrorLogObserver:
    """The error log as JSON lines, for ``FIREWORQ_ERROR_LOG``; ``process``: this process's
    number in a node of several (``--processes``), written as the member ``process``."""

    def __init__(self, output: Callable[[], IO[bytes]], process: int | None = None) -> None:
        self._output = output
        self._process = process

    def __call__(self, event: LogEvent) -> None:
        line: dict[str, Any] = {
            "level": event.get("log_level", LogLevel.info).name,
            "time": format_seconds(event.get("log_time", 0.0)),
            "source": str(event.get("log_namespace", "")),
            "message": formatEvent(event),
        }
        if self._process is not None:
            line["process"] = self._process
        failure = event.get("log_failure")
        if failure is not None:
            line["traceback"] = failure.getTraceback()
        stream = self._output()
        try:
            stream.write(jsontext.encode(line) + b"\n")
            stream.flush()
        except (OSError, ValueError):
            pass


# Twisted's own lines for each port opened and closed ("FireworqSite starting on 8080",
# "(TCP Port 8080 Closed)"): the daemon's start-up line says where it listens, plainly.
_PORT_NOISE = re.compile(r"\S+ starting on \S+|\((?:\S+ )?Port \S+ Closed\)")
_DROP: PredicateResult = PredicateResult.no
_UNDECIDED: PredicateResult = PredicateResult.maybe


@implementer(ILogFilterPredicate)
class _WithoutPortNoise:
    def __call__(self, event: LogEvent) -> PredicateResult:
        if event.get("log_namespace") == "log_legacy" and _PORT_NOISE.fullmatch(
                formatEvent(event)):
            return _DROP
        return _UNDECIDED


def classic_text(process: tuple[int, int] | None) -> Callable[[LogEvent], str | None]:
    """twistd's text lines (``<time> [<namespace>#<level>] <message>``); in a node of
    several processes, ``(number, count)`` names the one writing after the brackets, since
    they all share standard error: ``... [fireworq.service#info] (process 2 of 3) ...``."""
    if process is None:
        return formatEventAsClassicLogText
    label = "(process %d of %d) " % process

    def labelled(event: LogEvent) -> str | None:
        text = formatEventAsClassicLogText(event)
        if not text:
            return text
        head, separator, rest = text.partition("] ")
        return head + separator + label + rest if separator else text

    return labelled


class ErrorLog:
    """Owns the error-log destination, so SIGUSR1 can reopen it. ``process``: this
    process's number and the count of the node's processes, when there are several."""

    def __init__(self, path: str, level: str, process: tuple[int, int] | None = None) -> None:
        self._path = path
        self._level = LEVELS[level]
        self._process = process
        self._file: IO[bytes] | None = _open_append(path) if path else None

    def observer(self) -> ILogObserver:
        if self._file is not None:
            base: ILogObserver = JsonErrorLogObserver(
                self._current, self._process[0] if self._process is not None else None)
        else:
            base = FileLogObserver(_stderr(), classic_text(self._process))
        predicate = LogLevelFilterPredicate(defaultLogLevel=self._level)
        return FilteringLogObserver(base, [predicate, _WithoutPortNoise()])

    def _current(self) -> IO[bytes]:
        assert self._file is not None
        return self._file

    def reopen(self) -> None:
        if self._file is not None:
            old, self._file = self._file, _open_append(self._path)
            old.close()


def _open_append(path: str) -> IO[bytes]:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    return open(path, "ab")


# twistd redirects sys.stdout and sys.stderr into the log system once logging starts, so
# the logs write to the file descriptors themselves.


def _stderr() -> io.TextIOWrapper:
    return io.TextIOWrapper(stderr_bytes(), encoding="utf-8", errors="replace", line_buffering=True)


def stdout_bytes() -> IO[bytes]:
    return open(1, "wb", closefd=False)


def stderr_bytes() -> IO[bytes]:
    return open(2, "wb", closefd=False)
