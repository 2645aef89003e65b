"""Pieces shared by the SQL drivers: table names, row conversion, result encoding.

The SQL text itself lives with each dialect (``sqlite.py``, ``mysql.py``).
"""

from __future__ import annotations

import json
from typing import Any, Collection, Iterable, Mapping, Sequence

import attrs

from fireworq import jsontext
from fireworq.model import (
    Completion,
    CompletionKind,
    Cursor,
    DuplicateJob,
    FailedFilter,
    FailedJob,
    InFlight,
    Job,
    JobState,
    JobOptions,
    JobStatus,
    NewJob,
    Page,
    PushedJob,
    QueueDefinition,
    RetrySettings,
    UniqueKey,
    WorkerResult,
    own_members,
    with_own_members,
)

#: Columns of a job row, in the order ``job_from_row`` reads them.
JOB_COLUMNS = (
    "job_id, category, url, payload, status, created_at, next_try, "
    "retry_count, retry_delay, fail_count, timeout, grabber_id"
)
#: What a grab reads: a job row (alias ``j``) and its job members (alias ``o``, the
#: queue's options table joined on the job id), in the order ``grabbed_from_row`` reads them.
GRAB_COLUMNS = ", ".join("j." + column.strip() for column in JOB_COLUMNS.split(",")) + (
    ", o.options")
#: Columns of a failure-log row, in the order ``failed_from_row`` reads them.
FAILED_COLUMNS = (
    "failure_id, job_id, category, url, payload, result, fail_count, failed_at, created_at"
)


#: Our tables beside Fireworq's repository tables: one row per queue with our members
#: (a JSON object) and the paused flag, and the change counter of those rows.
OWN_QUEUE_TABLE = "fireworqpy_queue"
OWN_REVISION_TABLE = "fireworqpy_config_revision"
OWN_REVISION = "queue"
#: What retrying an entry reads: the failure log joined with its entries' push settings
#: (aliases ``f`` and ``s``), in the order ``jobs_for_retry`` reads them.
RETRY_COLUMNS = (
    "f.failure_id, f.category, f.url, f.payload, f.fail_count, s.max_retries, s.retry_delay,"
    " s.timeout, o.options"
)


def options_table(part: str) -> str:
    """The quoted name of a queue's table of job members of our own (``JobOptions``): one
    row per job that a push gave some, keyed by job id, removed with the job. Fireworq's
    job table keeps its shape; Fireworq nodes never read this one."""
    return "`fireworqpy_opt(%s)`" % part


def options_to_clean(completions: Iterable[Completion]) -> dict[str, list[int]]:
    """By table, the ids of the jobs that succeeded and have job members of our own: their
    rows go once the job is gone. Those of a job that failed for good stay with its
    failure-log entry (retrying it keeps them) and go with the entry
    (``delete_entry_options``)."""
    found: dict[str, list[int]] = {}
    for completion in completions:
        if completion.job.options is not None and completion.kind is CompletionKind.SUCCESS:
            found.setdefault(completion.table, []).append(completion.job.id)
    return found


def delete_entry_options(part: str, marks: str) -> str:
    """The statement that removes the job members of the failure-log entries about to be
    deleted, whose ids ``marks`` (placeholders) stands for."""
    return ("DELETE FROM %s WHERE (job_id, created_at) IN"
            " (SELECT job_id, created_at FROM %s WHERE failure_id IN (%s))"
            % (options_table(part), failure_table(part), marks))


def grab_source(part: str) -> str:
    """The tables a grab reads ``GRAB_COLUMNS`` from."""
    # created_at too: a row that a node which does not remove them left under an id the
    # database gave out again (InnoDB may, after a restart) is not the new job's.
    return "%s j LEFT JOIN %s o ON o.job_id = j.job_id AND o.created_at = j.created_at" % (
        job_table(part), options_table(part))


def grabbed_from_row(row: Sequence[Any], grabber_id: int) -> Job:
    """A job read with ``GRAB_COLUMNS``, as this grab leaves it."""
    job = job_from_row((*row[:4], "grabbed", *row[5:11], grabber_id))
    if row[12] is None:
        return job
    return attrs.evolve(job, options=JobOptions.decode(blob(row[12])))


def job_table(part: str) -> str:
    """The quoted name of a queue's job table (backquotes work in both dialects)."""
    return "`fireworq_jq(%s)`" % part


def failure_table(part: str) -> str:
    return "`fireworq_jq_fail(%s)`" % part


def settings_table(part: str) -> str:
    """Our table of the push settings of each failure-log entry we write.

    Per-queue tables of ours are named ``fireworqpy_<word>(<part>)``: a word of at most five
    letters keeps the name within MySQL's 64 characters for a 46-character queue name."""
    return "`fireworqpy_fail(%s)`" % part


def unique_table(part: str) -> str:
    """Our table of the unique keys of pushes: one row per key, with the first push's
    job id and what its answer needs besides (``UNIQUE_COLUMNS``)."""
    return "`fireworqpy_uniq(%s)`" % part


#: Columns of a unique key's row, in the order ``duplicate_from_row`` reads them.
UNIQUE_COLUMNS = (
    "ukey, job_id, created_at, category, url, answer_payload, run_after, timeout,"
    " retry_delay, max_retries"
)


def unique_values(job: NewJob, job_id: int) -> tuple[Any, ...]:
    """The values of ``UNIQUE_COLUMNS`` but ``created_at`` for a keyed job just stored."""
    assert job.unique is not None
    return (job.unique.key.encode("utf-8"), job_id, job.category.encode("utf-8"),
            job.url.encode("utf-8"), job.unique.answer_payload.encode("utf-8"),
            job.run_after, job.timeout, job.retry_delay, job.max_retries)


def duplicate_from_row(row: Sequence[Any]) -> DuplicateJob:
    """A push's answer read back from its unique key's row (``UNIQUE_COLUMNS``). The
    stored payload is not kept (``payload`` is empty): the answer's is."""
    (key, job_id, created_at, category, url, answer_payload, run_after, timeout,
     retry_delay, max_retries) = row
    job = NewJob(
        category=text(category), url=text(url), payload=b"", run_after=int(run_after),
        max_retries=int(max_retries), retry_delay=int(retry_delay), timeout=int(timeout),
        unique=UniqueKey(text(key), text(answer_payload)),
    )
    created = int(created_at)
    return DuplicateJob(PushedJob(int(job_id), created, created + job.run_after * 1000), job)


def failed_with_settings(part: str) -> str:
    """The failure log joined with the settings of its entries. An entry's settings row
    counts only for the same job: a failure id that Fireworq reused after our entry was
    deleted does not inherit it."""
    return ("%s f LEFT JOIN %s s ON s.failure_id = f.failure_id AND s.job_id = f.job_id"
            " LEFT JOIN %s o ON o.job_id = f.job_id AND o.created_at = f.created_at"
            % (failure_table(part), settings_table(part), options_table(part)))


def jobs_for_retry(rows: Sequence[Sequence[Any]], run_after: int) -> list[tuple[int, NewJob]]:
    """(failure id, new job) of each entry read with ``RETRY_COLUMNS``."""
    taken = []
    for row in rows:
        if row[5] is None:
            settings = RetrySettings.inferred(int(row[4]))
        else:
            settings = RetrySettings(int(row[5]), int(row[6]), int(row[7]))
        if row[8] is not None:
            settings = attrs.evolve(settings, options=JobOptions.decode(blob(row[8])))
        job = settings.job(text(row[1]), text(row[2]), blob(row[3]), run_after)
        taken.append((int(row[0]), job))
    return taken


def selection_condition(
    selection: FailedFilter, placeholder: str, category: Any
) -> tuple[str, list[Any]]:
    """The SQL condition of a ``FailedFilter`` on ``failure f``; ``category`` is the
    category as the dialect binds it."""
    conditions, params = ["1 = 1"], []
    if selection.failure_id is not None:
        conditions.append("f.failure_id = " + placeholder)
        params.append(selection.failure_id)
    if selection.category is not None:
        conditions.append("f.category = " + placeholder)
        params.append(category)
    if selection.failed_after is not None:
        conditions.append("f.failed_at >= " + placeholder)
        params.append(selection.failed_after)
    if selection.failed_before is not None:
        conditions.append("f.failed_at < " + placeholder)
        params.append(selection.failed_before)
    if selection.up_to is not None:
        conditions.append(keyset_condition("f.failed_at", "f.failure_id", True, placeholder))
        params += [selection.up_to.time, selection.up_to.time, selection.up_to.id]
    return " AND ".join(conditions), params


def failed_cutoff(txn: Any, part: str, keep: int) -> Cursor | None:
    """``JobStore.failed_cutoff`` in SQL both dialects speak."""
    # The id range bounds the number of entries: when it is within the limit there is
    # nothing to prune, and the scan of ``keep`` index entries below is not needed.
    txn.execute("SELECT MIN(failure_id), MAX(failure_id) FROM %s" % failure_table(part))
    low, high = txn.fetchone()
    if low is None or int(high) - int(low) + 1 <= keep:
        return None
    txn.execute(
        "SELECT failed_at, failure_id FROM %s ORDER BY failed_at DESC, failure_id DESC"
        " LIMIT 1 OFFSET %d" % (failure_table(part), keep))
    row = txn.fetchone()
    return None if row is None else Cursor(int(row[0]), int(row[1]))


def encode_members(definition: QueueDefinition) -> bytes:
    """Our members of a definition as stored: a compact JSON object, defaults left out."""
    return json.dumps(own_members(definition), separators=(",", ":")).encode("utf-8")


def with_stored_members(definition: QueueDefinition, paused: Any, members: Any
                        ) -> QueueDefinition:
    """A definition read from Fireworq's tables, completed with our row (``None``s when
    it has none, as for a queue defined by Fireworq)."""
    if members:
        try:
            stored = json.loads(blob(members).decode("utf-8", "replace"))
        except ValueError:
            stored = None
        if isinstance(stored, dict):
            definition = with_own_members(definition, stored)
    if paused:
        definition = attrs.evolve(definition, paused=True)
    return definition


def text(value: Any) -> str:
    """A column that Fireworq stores as binary: decoded, invalid UTF-8 as U+FFFD."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return bytes(value).decode("utf-8", "replace")


def blob(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def job_from_row(row: Sequence[Any]) -> Job:
    return Job(
        id=int(row[0]), category=text(row[1]), url=text(row[2]), payload=blob(row[3]),
        status=JobStatus(text(row[4])), created_at=int(row[5]), next_try=int(row[6]),
        retry_count=int(row[7]), retry_delay=int(row[8]), fail_count=int(row[9]),
        timeout=int(row[10] or 0), grabber_id=None if row[11] is None else int(row[11]),
    )


def failed_from_row(row: Sequence[Any]) -> FailedJob:
    return FailedJob(
        id=int(row[0]), job_id=int(row[1]), category=text(row[2]), url=text(row[3]),
        payload=blob(row[4]), result=decode_result(blob(row[5])), fail_count=int(row[6]),
        failed_at=int(row[7]), created_at=int(row[8]),
    )


def encode_result(result: WorkerResult) -> bytes:
    """The failure-log ``result`` column, as Fireworq writes it (Go's json.Marshal)."""
    return jsontext.encode(
        {"status": result.status, "code": result.code, "message": result.message}
    )


def decode_result(raw: bytes) -> WorkerResult:
    """Read a ``result`` column; Go's decoder matched member names ignoring case."""
    try:
        value = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        value = None
    members = {}
    if isinstance(value, dict):
        members = {key.lower(): item for key, item in value.items()}
    status, code, message = members.get("status"), members.get("code"), members.get("message")
    return WorkerResult(
        status=status if isinstance(status, str) else "",
        code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
        message=message if isinstance(message, str) else "",
    )


def page_of(
    rows: Sequence[Sequence[Any]], limit: int, convert: Any, key_of: Any
) -> Page[Any]:
    """Rows fetched with ``LIMIT limit + 1`` as a page and the cursor of the next one."""
    items = [convert(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        following = convert(rows[limit])
        next_cursor = Cursor(*key_of(following))
    return Page(items, next_cursor)


def keyset_condition(
    time_column: str, id_column: str, descending: bool, placeholder: str = "?"
) -> str:
    """The rows at or after a cursor in the list's order, compared as a pair."""
    later, at_or_later = ("<", "<=") if descending else (">", ">=")
    return "({t} {later} {p} OR ({t} = {p} AND {i} {at} {p}))".format(
        t=time_column, i=id_column, p=placeholder, later=later, at=at_or_later
    )


def bounded_counts(part: str, conditions: Mapping[JobState, str], placeholder: str) -> str:
    """The statement counting a queue's waiting, deferred and grabbed jobs (``conditions``:
    the dialect's condition of each state) and its failure-log entries, each up to a limit
    given as the parameter after the condition's own: a count walks at most that many
    entries of an index (the grab index covers the job states), however large the table."""

    def count(table: str, condition: str = "") -> str:
        where = " WHERE " + condition if condition else ""
        return "(SELECT COUNT(*) FROM (SELECT 1 FROM %s%s LIMIT %s) AS counted)" % (
            table, where, placeholder)

    jobs = job_table(part)
    return "SELECT %s, %s, %s, %s" % (
        count(jobs, conditions[JobState.WAITING]), count(jobs, conditions[JobState.DEFERRED]),
        count(jobs, conditions[JobState.GRABBED]), count(failure_table(part)))


def group_completions(
    completions: Iterable[Completion],
) -> tuple[dict[tuple[str, int | None], list[int]],
           dict[tuple[str, int | None, int | None], list[int]], list[Completion]]:
    """Split outcomes into batchable deletes (by table and grabber), retries (by table,
    grabber and wait: ``None`` for Fireworq's own ``retry_delay``) and failures."""
    deletes: dict[tuple[str, int | None], list[int]] = {}
    retries: dict[tuple[str, int | None, int | None], list[int]] = {}
    failures = []
    for completion in completions:
        key = (completion.table, completion.job.grabber_id)
        if completion.kind is CompletionKind.SUCCESS:
            deletes.setdefault(key, []).append(completion.job.id)
        elif completion.kind is CompletionKind.RETRY:
            retries.setdefault((*key, completion.retry_in), []).append(completion.job.id)
        else:
            failures.append(completion)
    return deletes, retries, failures


def except_in_flight(keep: Collection[InFlight], null_safe_equal: str) -> str:
    """``AND`` conditions that leave out the rows of the deliveries in flight, for orphan
    recovery; ``null_safe_equal`` is the dialect's ``IS NOT DISTINCT FROM`` (``IS``,
    ``<=>``). Ids and grabbers are integers, written as literals: a node can have
    thousands in flight, more than some servers allow parameters."""
    by_grabber: dict[int | None, list[int]] = {}
    for job_id, grabber_id in keep:
        by_grabber.setdefault(grabber_id, []).append(int(job_id))
    return "".join(
        " AND NOT (grabber_id %s %s AND job_id IN (%s))"
        % (null_safe_equal, "NULL" if grabber is None else "%d" % grabber,
           ",".join("%d" % job_id for job_id in sorted(ids)))
        for grabber, ids in sorted(by_grabber.items(), key=lambda item: item[0] or 0)
    )
