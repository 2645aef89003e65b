"""The sub-commands of ``fireworq``: a command line for a running daemon's API (docs/client.md).

Tables for people, ``--json`` for scripts. Exit status 0 when it worked, 1 for an error answer
or no answer, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TextIO

from fireworq.client import APIError, Client, FailedJob, Job, UnexpectedAnswer
from fireworq.client.api import DEFAULT_SERVER, JOB_STATES

EXIT_OK, EXIT_API, EXIT_USAGE = 0, 1, 2
#: Items a list shows unless told otherwise.
DEFAULT_LIMIT = 100
#: Widest a table cell gets (payloads and URLs can be long).
CELL_WIDTH = 48
#: Queue members and how their --set values are read; other names take JSON or text.
_QUEUE_MEMBERS: dict[str, Callable[[str], Any]] = {
    "polling_interval": int, "max_workers": int, "max_dispatches_per_second": float,
    "max_burst_size": int,
}


class UsageError(Exception):
    pass


# --- output ---------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"


def write_table(out: TextIO, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    cells = [[_cell(value) for value in row] for row in rows]
    if not cells:
        out.write("(none)\n")
        return
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


def write_fields(out: TextIO, raw: Mapping[str, Any]) -> None:
    width = max((len(name) for name in raw), default=0)
    for name, value in raw.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        out.write(f"{name.ljust(width)}  {shown}\n")


def write_json(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, ensure_ascii=False) + "\n")


def write_one(out: TextIO, args: argparse.Namespace, raw: Mapping[str, Any]) -> None:
    """One object: its JSON with --json, else a member per line."""
    if args.json:
        write_json(out, raw)
    else:
        write_fields(out, raw)


# --- the commands ---------------------------------------------------------------------------


def _push(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    if args.payload is not None:
        try:
            json.loads(args.payload)
        except ValueError as e:
            raise UsageError(f"--payload is not JSON: {e}") from None
    headers = dict(_header(text) for text in args.header) if args.header else None
    job = client.push(args.category, args.url, payload_json=args.payload,
                      run_after=args.run_after, max_retries=args.max_retries,
                      retry_delay=args.retry_delay, timeout=args.timeout,
                      unique_key=args.unique_key,
                      retry_backoff=args.retry_backoff, retry_max_delay=args.retry_max_delay,
                      retry_jitter=args.retry_jitter, headers=headers)
    if args.json:
        write_json(out, job.raw)
    elif job.duplicate:
        out.write(f"job {job.id} of queue {job.queue_name} was pushed before with this unique"
                  " key; nothing was stored\n")
    else:
        out.write(f"pushed job {job.id} to queue {job.queue_name}\n")


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise UsageError(f"--header takes 'Name: value', not {text!r}")
    return name.strip(), value.strip()


def _queues(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    queues = client.queues()
    if args.json:
        write_json(out, [queue.raw for queue in queues])
        return
    write_table(out, ["NAME", "MAX_WORKERS", "POLLING_INTERVAL", "RATE", "BURST"], [
        [q.name, q.max_workers, q.polling_interval, q.max_dispatches_per_second or "-",
         q.max_burst_size or "-"] for q in queues
    ])


def _setting(text: str) -> tuple[str, Any]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise UsageError(f"--set takes name=value, not {text!r}")
    read = _QUEUE_MEMBERS.get(name)
    if read is not None:
        try:
            return name, read(value)
        except ValueError:
            raise UsageError(f"--set {name}: {value!r} is not a number") from None
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def _queue(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    if args.delete and (args.set or args.pause or args.resume):
        raise UsageError("--delete goes alone, without --set, --pause or --resume")
    if args.delete:
        queue = client.delete_queue(args.name)
    elif args.set:
        # A PUT replaces the whole definition: start from the stored one, so that --set
        # changes only what it names.
        try:
            members = dict(client.queue(args.name).raw)
        except APIError as e:
            if e.code != 404:
                raise
            members = {}
        members.pop("name", None)
        members.update(_setting(text) for text in args.set)
        queue = client.put_queue(args.name, more=members)
    else:
        queue = client.queue(args.name)
    # After --set, so that a queue can be defined and paused at once.
    if args.pause:
        queue = client.pause_queue(args.name)
    elif args.resume:
        queue = client.resume_queue(args.name)
    write_one(out, args, queue.raw)


def _limit(args: argparse.Namespace, default: int | None = DEFAULT_LIMIT) -> int | None:
    return None if args.all else (args.limit if args.limit is not None else default)


def _jobs(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    states = JOB_STATES if args.state == "all" else (args.state,)
    limit = _limit(args)

    def every() -> Iterator[Job]:
        left = limit
        for state in states:
            for job in client.jobs(args.queue, state, order=args.order, limit=left):
                yield job
                if left is not None:
                    left -= 1
            if left == 0:
                return

    jobs = list(every())
    if args.json:
        write_json(out, [job.raw for job in jobs])
        return
    write_table(out, ["ID", "STATUS", "NEXT_TRY", "FAILS", "MAX_RETRIES", "CATEGORY", "URL",
                      "PAYLOAD"], [
        [j.id, j.status, j.raw.get("next_try"), j.fail_count, j.max_retries, j.category, j.url,
         j.payload] for j in jobs
    ])


def _time_option(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # the local time zone, as the daemon renders times
    return moment


def _failed_matches(args: argparse.Namespace) -> Callable[[FailedJob], bool]:
    def matches(job: FailedJob) -> bool:
        return ((args.category is None or job.category == args.category)
                and (args.failed_after is None or job.failed_at >= args.failed_after)
                and (args.failed_before is None or job.failed_at < args.failed_before))
    return matches


#: The most entries one bulk request to the daemon may take (docs/api.md, Failure log).
BULK_LIMIT = 10000


def _failed_in_bulk(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    filtered = (args.category, args.failed_after, args.failed_before) != (None, None, None)
    action = "--retry" if args.retry else "--delete"
    if not (filtered or args.all or args.limit is not None):
        raise UsageError(f"failed {action} without --category, --failed-after, --failed-before"
                         " or --limit takes the whole failure log; add --all to do that")
    left = _limit(args, None)
    done, job_ids = 0, []
    failed_before = args.failed_before
    if args.retry:
        # Requests go on until the filter selects no more; a retried job that fails again
        # meanwhile must not be taken once more, so the run ends at the newest failure that was
        # in the log when it started (its time is the daemon's, so clocks need not agree).
        newest = client.failed_page(args.queue, order="failed", limit=1).items
        if not newest:
            left = 0
        else:
            end = newest[0].failed_at + timedelta(milliseconds=1)  # times are shown to the ms
            failed_before = end if failed_before is None else min(failed_before, end)
    while left is None or left > 0:
        size = BULK_LIMIT if left is None else min(left, BULK_LIMIT)
        filters = {"category": args.category, "failed_after": args.failed_after,
                   "failed_before": failed_before, "limit": size}
        if args.retry:
            retried = client.retry_failed(args.queue, **filters)
            count = retried.retried
            job_ids.extend(retried.jobs)
        else:
            count = client.delete_failed(args.queue, **filters)
        done += count
        if left is not None:
            left -= count
        if count < size:
            break
    if args.retry:
        if args.json:
            write_json(out, {"retried": done, "jobs": job_ids})
        else:
            out.write(f"retried {done} failed job(s) of queue {args.queue}\n")
    elif args.json:
        write_json(out, {"deleted": done})
    else:
        out.write(f"deleted {done} failed job(s) from queue {args.queue}\n")


def _failed(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    if args.retry or args.delete:
        _failed_in_bulk(client, args, out)
        return
    # The daemon lists the log by time alone: the filters of a listing are applied here.
    limit = _limit(args)
    matches = _failed_matches(args)
    found: list[FailedJob] = []
    for job in client.failed(args.queue, order=args.order):
        if limit is not None and len(found) >= limit:
            break
        if matches(job):
            found.append(job)
    if args.json:
        write_json(out, [job.raw for job in found])
        return
    write_table(out, ["ID", "JOB_ID", "FAILED_AT", "FAILS", "CATEGORY", "RESULT", "PAYLOAD"], [
        [f.id, f.job_id, f.raw.get("failed_at"), f.fail_count, f.category,
         f"{f.result.status} {f.result.code} {f.result.message}", f.payload] for f in found
    ])


def _routing(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    if args.delete and args.queue:
        raise UsageError("give --queue or --delete, not both")
    if args.delete:
        routing = client.delete_routing(args.category)
    elif args.queue:
        routing = client.put_routing(args.category, args.queue)
    else:
        routing = client.routing(args.category)
    write_one(out, args, routing.raw)


def _routings(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    routings = client.routings()
    if args.json:
        write_json(out, [routing.raw for routing in routings])
        return
    write_table(out, ["CATEGORY", "QUEUE"], [[r.job_category, r.queue_name] for r in routings])


_STATS_COLUMNS = [
    ("PUSHES", "total_pushes"), ("POPS", "total_pops"), ("SUCCESSES", "total_successes"),
    ("FAILURES", "total_failures"), ("FAILED", "total_permanent_failures"),
    ("OUTSTANDING", "outstanding_jobs"), ("WORKERS", "total_workers"),
    ("IDLE", "idle_workers"), ("ACTIVE", "active_nodes"),
]


def _stats(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    if args.queue is not None:
        write_one(out, args, client.queue_stats(args.queue).raw)
        return
    by_queue = client.queues_stats()
    if args.json:
        write_json(out, {name: stats.raw for name, stats in by_queue.items()})
        return
    write_table(out, ["QUEUE", *(title for title, _ in _STATS_COLUMNS)], [
        [name, *(getattr(stats, member) for _, member in _STATS_COLUMNS)]
        for name, stats in by_queue.items()
    ])


# --- the parser -----------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--server", metavar="URL", default=argparse.SUPPRESS,
        help=f"the daemon's URL (default: FIREWORQ_URL, else {DEFAULT_SERVER})")
    group.add_argument(
        "--token", metavar="TOKEN", default=argparse.SUPPRESS,
        help="sent as 'Authorization: Bearer TOKEN' (default: FIREWORQ_TOKEN)")
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="print the daemon's JSON, for scripts")
    return common


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return value


def _list_options(parser: argparse.ArgumentParser, what: str) -> None:
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--limit", type=_positive, metavar="N",
                        help=f"show at most N {what} (default {DEFAULT_LIMIT})")
    amount.add_argument("--all", action="store_true", help=f"show every {what[:-1]}")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="fireworq", parents=[common],
        description="Talk to a running fireworq-py daemon. Without a command, fireworq runs"
                    " the daemon (fireworq --help).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, run: Callable[[Client, argparse.Namespace, TextIO], None],
                help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    push = command("push", _push, "push a job of a category")
    push.add_argument("category")
    push.add_argument("--url", required=True, help="the worker URL the payload is POSTed to")
    push.add_argument("--payload", metavar="JSON",
                      help="the payload, JSON text the worker receives as written")
    push.add_argument("--run-after", type=int, metavar="S", help="delay before the first try")
    push.add_argument("--max-retries", type=int, metavar="N", help="retries after a failure")
    push.add_argument("--retry-delay", type=int, metavar="S", help="delay between tries")
    push.add_argument("--timeout", type=int, metavar="S", help="limit of one worker exchange")
    push.add_argument("--unique-key", metavar="KEY",
                      help="store the job only if the queue has not seen this key lately")
    push.add_argument("--retry-backoff", choices=["fixed", "exponential"],
                      help="how the delay between tries grows (over the queue's)")
    push.add_argument("--retry-max-delay", type=int, metavar="S",
                      help="longest delay between tries (over the queue's)")
    push.add_argument("--retry-jitter", action=argparse.BooleanOptionalAction, default=None,
                      help="wait a random part of each delay (over the queue's)")
    push.add_argument("--header", action="append", metavar="'NAME: VALUE'",
                      help="a header sent with the job (over the queue's); repeatable")

    command("queues", _queues, "list the queues")

    queue = command("queue", _queue,
                    "show a queue; define or change it with --set, pause or resume it")
    queue.add_argument("name")
    queue.add_argument("--set", action="append", metavar="NAME=VALUE",
                       help="set a member (max_workers=8); the others keep their values")
    queue.add_argument("--delete", action="store_true",
                       help="delete the definition (its jobs and failure log stay)")
    state = queue.add_mutually_exclusive_group()
    state.add_argument("--pause", action="store_true",
                       help="stop delivering the queue's jobs (pushes are still stored)")
    state.add_argument("--resume", action="store_true", help="deliver the queue's jobs again")

    jobs = command("jobs", _jobs, "list the jobs of a queue")
    jobs.add_argument("queue")
    jobs.add_argument("--state", choices=[*JOB_STATES, "all"], default="all")
    jobs.add_argument("--order", choices=["desc", "asc"], default="desc",
                      help="by next try: latest first (desc) or earliest first")
    _list_options(jobs, "jobs")

    failed = command("failed", _failed,
                     "list a queue's failure log, or --retry or --delete entries of it")
    failed.add_argument("queue")
    action = failed.add_mutually_exclusive_group()
    action.add_argument("--retry", action="store_true",
                        help="push the entries the filters select again (oldest failure first)"
                             " and remove them from the log")
    action.add_argument("--delete", action="store_true",
                        help="delete the entries the filters select (oldest failure first)")
    failed.add_argument("--category", help="only jobs of this category")
    failed.add_argument("--failed-after", type=_time_option, metavar="TIME",
                        help="only failures at or after TIME (RFC 3339)")
    failed.add_argument("--failed-before", type=_time_option, metavar="TIME",
                        help="only failures before TIME (RFC 3339)")
    failed.add_argument("--order", choices=["failed", "created"], default="failed",
                        help="most recent failure first, or most recently pushed first")
    _list_options(failed, "entries")

    command("routings", _routings, "list the routings")

    routing = command("routing", _routing, "show a routing; route a category with --queue")
    routing.add_argument("category")
    routing.add_argument("--queue", help="send jobs of the category to this queue")
    routing.add_argument("--delete", action="store_true", help="delete the routing")

    stats = command("stats", _stats, "the stats of every queue, or of one")
    stats.add_argument("queue", nargs="?")
    return parser


#: The names that make ``fireworq`` a client rather than the daemon.
COMMANDS = ("push", "queues", "queue", "jobs", "failed", "routings", "routing", "stats")
#: Options that may come before the command.
LEADING_OPTIONS = ("--server", "--token", "--json")


def is_command(args: Sequence[str]) -> bool:
    if not args:
        return False
    first = args[0].partition("=")[0]
    return first in COMMANDS or first in LEADING_OPTIONS


def run(args: Sequence[str], stdout: TextIO | None = None, stderr: TextIO | None = None,
        environ: Mapping[str, str] | None = None) -> int:
    """Run one command; the exit status."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    env = os.environ if environ is None else environ
    parser = build_parser()
    try:
        parsed = parser.parse_args(list(args))
    except SystemExit as e:  # argparse's usage errors (2), and --help (0)
        return int(e.code or 0)
    parsed.json = getattr(parsed, "json", False)
    server = getattr(parsed, "server", None) or env.get("FIREWORQ_URL") or DEFAULT_SERVER
    token = getattr(parsed, "token", None) or env.get("FIREWORQ_TOKEN") or None
    try:
        client = Client(server, token=token)
    except ValueError as e:
        err.write(f"fireworq: --server: {e}\n")
        return EXIT_USAGE
    try:
        with client:
            parsed.run(client, parsed, out)
    except UsageError as e:
        err.write(f"fireworq {parsed.command}: {e}\n")
        return EXIT_USAGE
    except UnexpectedAnswer as e:
        err.write(f"fireworq: unexpected answer from {client.address.url}: {e}\n")
        return EXIT_API
    except APIError as e:
        err.write(f"fireworq: {e}\n")
        return EXIT_API
    return EXIT_OK
