"""``fireworq``: the daemon, or a client of a running one.

Without a command it is shorthand for ``twistd --nodaemon --pidfile= fireworq [options]``:
the daemon runs in the foreground and writes no ``twistd.pid`` (use ``--pid`` for a PID
file), so two generations can run side by side during a graceful restart. With a command
(``fireworq queues``, ``fireworq push ...``) it talks to a daemon's API (fireworq.commands).
``python -m fireworq`` is the same command.
"""

from __future__ import annotations

import sys
from typing import Sequence

from fireworq import __version__

_USAGE = """\
Usage: fireworq [daemon options]       run the daemon in the foreground
       fireworq COMMAND [options]      talk to a running daemon
       fireworq --version

Commands (fireworq COMMAND --help for each):
  push CATEGORY --url URL [--payload JSON]   push a job
  queues                                     list the queues
  queue NAME [--set NAME=VALUE ...]          show, define or change a queue
  jobs QUEUE [--state STATE]                 list a queue's jobs
  failed QUEUE [--delete] [filters]          list or delete failure-log entries
  routings                                   list the routings
  routing CATEGORY [--queue QUEUE]           show or set where a category goes
  stats [QUEUE]                              queue stats
They take --server URL (default: FIREWORQ_URL, else http://127.0.0.1:8080), --token and
--json.

Daemon options (also twistd fireworq's; each has its FIREWORQ_* environment variable):
"""


def usage() -> str:
    from fireworq.config import Options

    # Options' own text, without its "Usage:" heading.
    options = Options().getUsage()  # type: ignore[no-untyped-call]
    return _USAGE + options[options.index("Options:") + len("Options:\n"):]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--help"], ["-h"]):
        sys.stdout.write(usage())
        return
    if args == ["--version"]:
        sys.stdout.write(f"fireworq-py {__version__}\n")
        return
    from fireworq import commands

    if commands.is_command(args):
        raise SystemExit(commands.run(args))
    run_daemon(args)


def run_daemon(args: Sequence[str]) -> None:
    from twisted.scripts.twistd import run

    sys.argv = ["fireworq", "--nodaemon", "--pidfile=", "fireworq", *args]
    run()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
