"""The ``sqlite`` driver: the embedded, durable default.

One database file in WAL mode with ``synchronous=FULL``, reached through an adbapi pool of
one connection (SQLite serialises writers anyway). The tables mirror Fireworq's MySQL
schema, so the two drivers read alike. Several processes may open the same file; which of
them dispatches is decided by ``fireworq.cluster.filelock``, not here.
"""

from __future__ import annotations

import random
import sqlite3
from typing import Any, Callable, Collection, Sequence, TypeVar

import attrs
from twisted.enterprise import adbapi
from twisted.internet.interfaces import IReactorCore, IReactorTime

from fireworq.errors import NotStored, StoreUnavailable
from fireworq.model import (
    Completion,
    Cursor,
    DuplicateJob,
    FailedFilter,
    FailedJob,
    FailedOrder,
    InFlight,
    Job,
    JobState,
    NewJob,
    Page,
    PushedJob,
    QueueDefinition,
    RetriedJob,
    Routing,
    StateCounts,
    failed_position,
    job_position,
)
from fireworq.storage import COUNT_LIMIT, Handover, handed_over, not_sent
from fireworq.storage.sqlcommon import (
    FAILED_COLUMNS,
    GRAB_COLUMNS,
    RETRY_COLUMNS,
    JOB_COLUMNS,
    bounded_counts,
    encode_result,
    except_in_flight,
    OWN_QUEUE_TABLE,
    OWN_REVISION,
    OWN_REVISION_TABLE,
    encode_members,
    failed_cutoff,
    failed_from_row,
    failed_with_settings,
    failure_table,
    grab_source,
    grabbed_from_row,
    group_completions,
    job_from_row,
    job_table,
    jobs_for_retry,
    delete_entry_options,
    options_table,
    options_to_clean,
    keyset_condition,
    page_of,
    selection_condition,
    settings_table,
    UNIQUE_COLUMNS,
    duplicate_from_row,
    unique_table,
    unique_values,
    with_stored_members,
)

T = TypeVar("T")
Cursor_ = Any  # a DB-API cursor (adbapi's Transaction proxies one)

_REPOSITORY_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS queue ("
    " name TEXT NOT NULL PRIMARY KEY, polling_interval INTEGER NOT NULL,"
    " max_workers INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS queue_throttle ("
    " name TEXT NOT NULL PRIMARY KEY, max_dispatches_per_second REAL NOT NULL,"
    " max_burst_size INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS routing ("
    " job_category TEXT NOT NULL PRIMARY KEY, queue_name TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS config_revision ("
    " name TEXT NOT NULL PRIMARY KEY, revision INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS %s ("
    " name TEXT NOT NULL PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0,"
    " members BLOB NOT NULL)" % OWN_QUEUE_TABLE,
    "CREATE TABLE IF NOT EXISTS %s ("
    " name TEXT NOT NULL PRIMARY KEY, revision INTEGER NOT NULL)" % OWN_REVISION_TABLE,
)

_JOB_TABLE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {jobs} ("
    " job_id INTEGER PRIMARY KEY AUTOINCREMENT, next_try INTEGER NOT NULL,"
    " grabber_id INTEGER, status TEXT NOT NULL DEFAULT 'claimed',"
    " created_at INTEGER NOT NULL, retry_count INTEGER NOT NULL DEFAULT 0,"
    " retry_delay INTEGER NOT NULL DEFAULT 0, fail_count INTEGER NOT NULL DEFAULT 0,"
    " category TEXT NOT NULL, url BLOB, payload BLOB, timeout INTEGER)",
    "CREATE INDEX IF NOT EXISTS {grab_index} ON {jobs} (status, next_try, job_id)",
    "CREATE TABLE IF NOT EXISTS {failures} ("
    " failure_id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL,"
    " category TEXT NOT NULL, url BLOB, payload BLOB, result BLOB,"
    " fail_count INTEGER NOT NULL, failed_at INTEGER NOT NULL, created_at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {created_index} ON {failures} (created_at, failure_id)",
    "CREATE INDEX IF NOT EXISTS {failed_index} ON {failures} (failed_at, failure_id)",
    "CREATE TABLE IF NOT EXISTS {settings} ("
    " failure_id INTEGER NOT NULL PRIMARY KEY, job_id INTEGER NOT NULL,"
    " max_retries INTEGER NOT NULL, retry_delay INTEGER NOT NULL, timeout INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {unique} ("
    " ukey BLOB NOT NULL PRIMARY KEY, job_id INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    " category BLOB NOT NULL, url BLOB NOT NULL, answer_payload BLOB NOT NULL,"
    " run_after INTEGER NOT NULL, timeout INTEGER NOT NULL, retry_delay INTEGER NOT NULL,"
    " max_retries INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {unique_index} ON {unique} (created_at)",
    "CREATE TABLE IF NOT EXISTS {options} ("
    " job_id INTEGER NOT NULL PRIMARY KEY, created_at INTEGER NOT NULL,"
    " options BLOB NOT NULL)",
)

_MAX_INTEGER = 2**63 - 1

_STATE_CONDITIONS = {
    JobState.GRABBED: "status = 'grabbed'",
    JobState.WAITING: "status = 'claimed' AND next_try <= ?",
    JobState.DEFERRED: "status = 'claimed' AND next_try > ?",
}


def _open_connection(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA journal_mode=WAL")
    # FULL: a push is answered only once its commit is on disk, not just in the OS cache.
    connection.execute("PRAGMA synchronous=FULL")
    # Another process on the same file (a graceful restart) may hold the write lock briefly.
    connection.execute("PRAGMA busy_timeout=5000")


class SqliteStore:
    """Definitions and jobs in one SQLite file."""

    def __init__(self, path: str, reactor: IReactorCore, clock: IReactorTime) -> None:
        self.path = path
        self._reactor = reactor
        self._clock = clock
        self._pool: adbapi.ConnectionPool | None = None
        self._prepared: set[str] = set()
        # Unique per process start, so that jobs a dead predecessor grabbed are recognised
        # as orphans even when the new process got the same pid (pid 1 in a container).
        self.grabber_id = random.getrandbits(62) + 1

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    async def _run(self, description: str, function: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            raise StoreUnavailable("store is closed")
        try:
            result: T = await self._pool.runInteraction(function, *args)
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as e:
            if isinstance(e, sqlite3.IntegrityError):
                raise
            raise StoreUnavailable("%s: %s" % (description, e)) from e
        return result

    async def open(self) -> None:
        self._pool = adbapi.ConnectionPool(
            "sqlite3", self.path, check_same_thread=False, isolation_level=None,
            cp_min=1, cp_max=1, cp_openfun=_open_connection, cp_reactor=self._reactor,
            cp_noisy=False,
        )
        await self._run("create schema", _create_repository)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()

    async def ping(self) -> None:
        await self._run("ping", _ping)

    # Definitions

    async def list_queues(self) -> list[QueueDefinition]:
        return await self._run("list queues", _list_queues, None)

    async def get_queue(self, name: str) -> QueueDefinition | None:
        found = await self._run("get queue", _list_queues, name)
        return found[0] if found else None

    async def put_queue(self, definition: QueueDefinition) -> bool:
        return await self._run("put queue", _put_queue, definition)

    async def set_paused(self, name: str, paused: bool) -> QueueDefinition | None:
        return await self._run("pause queue", _set_paused, name, paused)

    async def delete_queue(self, name: str) -> QueueDefinition | None:
        return await self._run("delete queue", _delete_queue, name)

    async def list_routings(self) -> list[Routing]:
        return await self._run("list routings", _list_routings, None)

    async def get_routing(self, category: str) -> Routing | None:
        found = await self._run("get routing", _list_routings, category)
        return found[0] if found else None

    async def put_routing(self, routing: Routing) -> bool:
        return await self._run("put routing", _put_routing, routing)

    async def delete_routing(self, category: str) -> Routing | None:
        return await self._run("delete routing", _delete_routing, category)

    async def revisions(self) -> tuple[int, int, int]:
        return await self._run("read revisions", _revisions)

    # Jobs

    async def prepare_queue(self, table: str) -> None:
        if table not in self._prepared:
            await self._run("create queue tables", _create_job_tables, table)
            self._prepared.add(table)

    async def push(
        self, jobs: Sequence[tuple[str, NewJob]], handover: Handover | None = None,
        groups: Sequence[int] | None = None,
    ) -> list[PushedJob | DuplicateJob | NotStored]:
        # No size limit to mind: values are bound as parameters, and SQLite's own limit
        # (SQLITE_MAX_LENGTH, 1e9 bytes a value) is far above the largest request body.
        # So every job can be stored: ``groups`` never has to fail a request.
        return await self._run("push", _push, jobs, handover, self._now())

    async def prune_unique_keys(self, table: str, window: int, limit: int) -> int:
        return await self._run("prune unique keys", _prune_unique_keys, table,
                               self._now() - window * 1000, limit)

    async def due_tables(self, tables: Sequence[str]) -> set[str]:
        return await self._run("due check", _due_tables, tables, self._now())

    async def grab(self, table: str, limit: int) -> list[Job]:
        return await self._run("grab", _grab, table, limit, self._now(), self.grabber_id)

    async def complete(self, completions: Sequence[Completion]) -> None:
        await self._run("complete", _complete, completions, self._now())

    async def recover(self, table: str, keep: Collection[InFlight] = ()) -> int:
        return await self._run("recover", _recover, table, keep)

    async def list_jobs(
        self, table: str, state: JobState, ascending: bool, cursor: Cursor | None, limit: int
    ) -> Page[Job]:
        return await self._run(
            "list jobs", _list_jobs, table, state, ascending, cursor, limit, self._now()
        )

    async def get_job(self, table: str, job_id: int) -> Job | None:
        return await self._run("get job", _get_job, table, job_id, False)

    async def delete_job(self, table: str, job_id: int) -> Job | None:
        return await self._run("delete job", _get_job, table, job_id, True)

    async def list_failed(
        self, table: str, order: FailedOrder, cursor: Cursor | None, limit: int
    ) -> Page[FailedJob]:
        return await self._run("list failed", _list_failed, table, order, cursor, limit)

    async def get_failed(self, table: str, failure_id: int) -> FailedJob | None:
        return await self._run("get failed", _get_failed, table, failure_id, False)

    async def delete_failed(self, table: str, failure_id: int) -> FailedJob | None:
        return await self._run("delete failed", _get_failed, table, failure_id, True)

    async def retry_failed(
        self, table: str, selection: FailedFilter, limit: int, run_after: int
    ) -> list[RetriedJob]:
        return await self._run("retry failed", _retry_failed, table, selection, limit,
                               run_after, self._now())

    async def delete_failed_matching(
        self, table: str, selection: FailedFilter, limit: int
    ) -> int:
        return await self._run("delete failed", _delete_failed_matching, table, selection,
                               limit)

    async def failed_cutoff(self, table: str, keep: int) -> Cursor | None:
        return await self._run("find failure cutoff", failed_cutoff, table, keep)

    async def counts(
        self, tables: Sequence[str], limit: int = COUNT_LIMIT
    ) -> dict[str, StateCounts]:
        # One short interaction per queue: pushes and grabs wait behind one queue's bounded
        # counts at most, not behind all of them, on the only connection.
        result = {}
        for table in tables:
            result[table] = await self._run("count jobs", _counts, table, limit, self._now())
        return result


# Transactions: plain functions on a cursor, run in the pool's thread. Writers begin with
# BEGIN IMMEDIATE: the sqlite3 module never opens a transaction before a SELECT itself, and
# taking the write lock up front avoids a deadlock between two processes upgrading.


def _ping(txn: Cursor_) -> None:
    txn.execute("SELECT 1")
    txn.fetchall()


def _create_repository(txn: Cursor_) -> None:
    txn.execute("BEGIN IMMEDIATE")
    for statement in _REPOSITORY_SCHEMA:
        txn.execute(statement)
    for name in ("queue_definition", "routing"):
        txn.execute(
            "INSERT OR IGNORE INTO config_revision (name, revision) VALUES (?, 0)", (name,)
        )
    txn.execute("INSERT OR IGNORE INTO %s (name, revision) VALUES (?, 0)" % OWN_REVISION_TABLE,
                (OWN_REVISION,))


def _create_job_tables(txn: Cursor_, part: str) -> None:
    names = {
        "jobs": job_table(part),
        "failures": failure_table(part),
        "settings": settings_table(part),
        "unique": unique_table(part),
        "unique_index": "`fireworqpy_uniq(%s)_created`" % part,
        "options": options_table(part),
        "grab_index": "`fireworq_jq(%s)_grab`" % part,
        "created_index": "`fireworq_jq_fail(%s)_created`" % part,
        "failed_index": "`fireworq_jq_fail(%s)_failed`" % part,
    }
    txn.execute("BEGIN IMMEDIATE")
    for statement in _JOB_TABLE_SCHEMA:
        txn.execute(statement.format(**names))


def _bump_revision(txn: Cursor_, name: str) -> None:
    txn.execute("UPDATE config_revision SET revision = revision + 1 WHERE name = ?", (name,))


def _bump_own_revision(txn: Cursor_) -> None:
    txn.execute("UPDATE %s SET revision = revision + 1 WHERE name = ?" % OWN_REVISION_TABLE,
                (OWN_REVISION,))


def _list_queues(txn: Cursor_, name: str | None) -> list[QueueDefinition]:
    query = (
        "SELECT q.name, q.polling_interval, q.max_workers,"
        " t.max_dispatches_per_second, t.max_burst_size, o.paused, o.members"
        " FROM queue q LEFT JOIN queue_throttle t ON t.name = q.name"
        " LEFT JOIN %s o ON o.name = q.name" % OWN_QUEUE_TABLE
    )
    if name is None:
        txn.execute(query + " ORDER BY q.name")
    else:
        txn.execute(query + " WHERE q.name = ?", (name,))
    return [
        with_stored_members(QueueDefinition(
            name=row[0], polling_interval=int(row[1]), max_workers=int(row[2]),
            max_dispatches_per_second=float(row[3] or 0.0), max_burst_size=int(row[4] or 0),
        ), row[5], row[6])
        for row in txn.fetchall()
    ]


def _put_queue(txn: Cursor_, definition: QueueDefinition) -> bool:
    txn.execute("BEGIN IMMEDIATE")
    existing = _list_queues(txn, definition.name)
    members_changed = _put_members(txn, definition, existing[0] if existing else None)
    if existing and existing[0].fireworq_members == definition.fireworq_members:
        return members_changed
    txn.execute(
        "INSERT INTO queue (name, polling_interval, max_workers) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET polling_interval = excluded.polling_interval,"
        " max_workers = excluded.max_workers",
        (definition.name, definition.polling_interval, definition.max_workers),
    )
    txn.execute(
        "INSERT INTO queue_throttle (name, max_dispatches_per_second, max_burst_size)"
        " VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
        " max_dispatches_per_second = excluded.max_dispatches_per_second,"
        " max_burst_size = excluded.max_burst_size",
        (definition.name, definition.max_dispatches_per_second, definition.max_burst_size),
    )
    _bump_revision(txn, "queue_definition")
    return True


def _put_members(txn: Cursor_, definition: QueueDefinition,
                 existing: QueueDefinition | None) -> bool:
    """Our members of a definition; whether they changed. A new queue starts unpaused
    (a row left by a queue that Fireworq deleted is replaced); a stored one keeps its
    paused flag."""
    members = encode_members(definition)
    if existing is None:
        txn.execute("INSERT OR REPLACE INTO %s (name, paused, members) VALUES (?, 0, ?)"
                    % OWN_QUEUE_TABLE, (definition.name, members))
    elif encode_members(existing) == members:
        return False
    else:
        txn.execute("INSERT INTO %s (name, paused, members) VALUES (?, 0, ?)"
                    " ON CONFLICT (name) DO UPDATE SET members = excluded.members"
                    % OWN_QUEUE_TABLE, (definition.name, members))
    _bump_own_revision(txn)
    return True


def _set_paused(txn: Cursor_, name: str, paused: bool) -> QueueDefinition | None:
    txn.execute("BEGIN IMMEDIATE")
    existing = _list_queues(txn, name)
    if not existing or existing[0].paused == paused:
        return existing[0] if existing else None
    txn.execute(
        "INSERT INTO %s (name, paused, members) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET paused = excluded.paused" % OWN_QUEUE_TABLE,
        (name, int(paused), encode_members(existing[0])),
    )
    _bump_own_revision(txn)
    return attrs.evolve(existing[0], paused=paused)


def _delete_queue(txn: Cursor_, name: str) -> QueueDefinition | None:
    txn.execute("BEGIN IMMEDIATE")
    existing = _list_queues(txn, name)
    if not existing:
        return None
    txn.execute("DELETE FROM queue WHERE name = ?", (name,))
    txn.execute("DELETE FROM queue_throttle WHERE name = ?", (name,))
    txn.execute("DELETE FROM %s WHERE name = ?" % OWN_QUEUE_TABLE, (name,))
    _bump_revision(txn, "queue_definition")
    return existing[0]


def _list_routings(txn: Cursor_, category: str | None) -> list[Routing]:
    if category is None:
        txn.execute(
            "SELECT queue_name, job_category FROM routing ORDER BY queue_name, job_category"
        )
    else:
        txn.execute(
            "SELECT queue_name, job_category FROM routing WHERE job_category = ?", (category,)
        )
    return [Routing(queue_name=row[0], job_category=row[1]) for row in txn.fetchall()]


def _put_routing(txn: Cursor_, routing: Routing) -> bool:
    txn.execute("BEGIN IMMEDIATE")
    existing = _list_routings(txn, routing.job_category)
    if existing and existing[0] == routing:
        return False
    txn.execute(
        "INSERT INTO routing (job_category, queue_name) VALUES (?, ?)"
        " ON CONFLICT (job_category) DO UPDATE SET queue_name = excluded.queue_name",
        (routing.job_category, routing.queue_name),
    )
    _bump_revision(txn, "routing")
    return True


def _delete_routing(txn: Cursor_, category: str) -> Routing | None:
    txn.execute("BEGIN IMMEDIATE")
    existing = _list_routings(txn, category)
    if not existing:
        return None
    txn.execute("DELETE FROM routing WHERE job_category = ?", (category,))
    _bump_revision(txn, "routing")
    return existing[0]


def _revisions(txn: Cursor_) -> tuple[int, int, int]:
    txn.execute("SELECT name, revision FROM config_revision UNION ALL"
                " SELECT '.' || name, revision FROM %s" % OWN_REVISION_TABLE)
    found = {row[0]: int(row[1]) for row in txn.fetchall()}
    return (found.get("queue_definition", 0), found.get("routing", 0),
            found.get("." + OWN_REVISION, 0))


def _push(
    txn: Cursor_, jobs: Sequence[tuple[str, NewJob]], handover: Handover | None, now: int
) -> list[PushedJob | DuplicateJob | NotStored]:
    txn.execute("BEGIN IMMEDIATE")  # may wait for another process (busy_timeout)
    pushed: list[PushedJob | DuplicateJob | NotStored] = not_sent(len(jobs))
    handed = handed_over(len(jobs), handover)
    # The write lock is held: no other push reads or writes the keys meanwhile. Each table's
    # keys are read at once; a key stored by this call counts for the jobs after it.
    seen: dict[str, dict[str, DuplicateJob]] = {}
    for part, keys in _keys_by_table(jobs, handed).items():
        seen[part] = found = {}
        for start in range(0, len(keys), _MAX_KEYS_READ):
            chunk = keys[start:start + _MAX_KEYS_READ]
            txn.execute("SELECT %s FROM %s WHERE ukey IN (%s)" % (
                UNIQUE_COLUMNS, unique_table(part), ",".join("?" * len(chunk))), chunk)
            for row in txn.fetchall():
                found[bytes(row[0]).decode("utf-8")] = duplicate_from_row(row)
    claimed: dict[str, list[tuple[Any, ...]]] = {}
    for index in handed:
        part, job = jobs[index]
        unique = job.unique
        if unique is None or not unique.window:
            pushed[index] = _insert_job(txn, part, job, now)
            continue
        first = seen[part].get(unique.key)
        if first is not None and first.pushed.created_at > now - unique.window * 1000:
            pushed[index] = first
            continue
        stored = pushed[index] = _insert_job(txn, part, job, now)
        seen[part][unique.key] = DuplicateJob.of(stored, job)
        key, job_id, *rest = unique_values(job, stored.id)
        claimed.setdefault(part, []).append((key, job_id, now, *rest))
    for part, rows in claimed.items():
        txn.executemany("INSERT OR REPLACE INTO %s (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        % (unique_table(part), UNIQUE_COLUMNS), rows)
    return pushed


#: Keys read by one statement: within SQLite's 32766 bound parameters.
_MAX_KEYS_READ = 500


def _keys_by_table(jobs: Sequence[tuple[str, NewJob]], indexes: Sequence[int]
                   ) -> dict[str, list[bytes]]:
    """The unique keys (with a window) of these jobs, by table, each once."""
    keys: dict[str, dict[bytes, None]] = {}
    for index in indexes:
        part, job = jobs[index]
        if job.unique is not None and job.unique.window:
            keys.setdefault(part, {})[job.unique.key.encode("utf-8")] = None
    return {part: list(found) for part, found in keys.items()}


def _prune_unique_keys(txn: Cursor_, part: str, cutoff: int, limit: int) -> int:
    txn.execute("BEGIN IMMEDIATE")
    txn.execute("DELETE FROM %s WHERE ukey IN (SELECT ukey FROM %s WHERE created_at <= ?"
                " ORDER BY created_at LIMIT ?)" % (unique_table(part), unique_table(part)),
                (cutoff, limit))
    return int(txn.rowcount)


def _insert_jobs(txn: Cursor_, jobs: Sequence[tuple[str, NewJob]], now: int
                 ) -> list[PushedJob]:
    return [_insert_job(txn, part, job, now) for part, job in jobs]


def _insert_job(txn: Cursor_, part: str, job: NewJob, now: int) -> PushedJob:
    next_try = now + job.run_after * 1000
    txn.execute(
        "INSERT INTO %s (next_try, created_at, retry_count, retry_delay, fail_count,"
        " category, url, payload, timeout) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)"
        % job_table(part),
        (next_try, now, job.max_retries, job.retry_delay, job.category,
         job.url.encode("utf-8"), job.payload, job.timeout),
    )
    job_id = int(txn.lastrowid)
    if job.options is not None:
        # A row left under this id (by a node that does not remove them) is replaced.
        txn.execute("INSERT OR REPLACE INTO %s (job_id, created_at, options) VALUES (?, ?, ?)"
                    % options_table(part), (job_id, now, job.options.encode()))
    return PushedJob(job_id, now, next_try)


def _due_tables(txn: Cursor_, parts: Sequence[str], now: int) -> set[str]:
    if not parts:
        return set()
    query = " UNION ALL ".join(
        "SELECT %d WHERE EXISTS (SELECT 1 FROM %s WHERE status = 'claimed' AND next_try <= ?)"
        % (index, job_table(part))
        for index, part in enumerate(parts)
    )
    txn.execute(query, (now,) * len(parts))
    return {parts[int(row[0])] for row in txn.fetchall()}


def _grab(txn: Cursor_, part: str, limit: int, now: int, grabber_id: int) -> list[Job]:
    txn.execute("BEGIN IMMEDIATE")
    table = job_table(part)
    txn.execute(
        "SELECT %s FROM %s WHERE j.status = 'claimed' AND j.next_try <= ?"
        " ORDER BY j.next_try, j.job_id LIMIT ?" % (GRAB_COLUMNS, grab_source(part)),
        (now, limit),
    )
    rows = txn.fetchall()
    if not rows:
        return []
    ids = [row[0] for row in rows]
    txn.execute(
        "UPDATE %s SET status = 'grabbed', grabber_id = ? WHERE job_id IN (%s)"
        % (table, ",".join("?" * len(ids))),
        (grabber_id, *ids),
    )
    return [grabbed_from_row(row, grabber_id) for row in rows]


def _complete(txn: Cursor_, completions: Sequence[Completion], now: int) -> None:
    deletes, retries, failures = group_completions(completions)
    txn.execute("BEGIN IMMEDIATE")
    guard = "status = 'grabbed' AND grabber_id = ?"
    for (part, grabber_id), ids in deletes.items():
        txn.execute(
            "DELETE FROM %s WHERE job_id IN (%s) AND %s"
            % (job_table(part), ",".join("?" * len(ids)), guard),
            (*ids, grabber_id),
        )
    for (part, grabber_id, retry_in), ids in retries.items():
        wait = "retry_delay * 1000" if retry_in is None else "%d" % retry_in
        txn.execute(
            "UPDATE %s SET status = 'claimed', grabber_id = NULL,"
            " next_try = ? + %s, retry_count = retry_count - 1,"
            " fail_count = fail_count + 1 WHERE job_id IN (%s) AND %s"
            % (job_table(part), wait, ",".join("?" * len(ids)), guard),
            (now, *ids, grabber_id),
        )
    for completion in failures:
        job = completion.job
        txn.execute(
            "DELETE FROM %s WHERE job_id = ? AND %s" % (job_table(completion.table), guard),
            (job.id, job.grabber_id),
        )
        if txn.rowcount != 1:
            continue  # deleted meanwhile or no longer ours: its outcome is not written
        txn.execute(
            "INSERT INTO %s (job_id, category, url, payload, result, fail_count, failed_at,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)" % failure_table(completion.table),
            (job.id, job.category, job.url.encode("utf-8"), job.payload,
             encode_result(completion.result), job.fail_count + 1, now, job.created_at),
        )
        txn.execute(
            "INSERT OR REPLACE INTO %s (failure_id, job_id, max_retries, retry_delay, timeout)"
            " VALUES (?, ?, ?, ?, ?)" % settings_table(completion.table),
            (txn.lastrowid, job.id, job.max_retries, job.retry_delay, job.timeout),
        )
    for part, ids in options_to_clean(completions).items():
        _delete_options(txn, part, ids)


def _delete_options(txn: Cursor_, part: str, ids: Sequence[int]) -> None:
    """Remove the job members of these jobs, of those that are gone (a job no longer ours
    may have been grabbed again, and keeps them)."""
    marks = ",".join("?" * len(ids))
    txn.execute(
        "DELETE FROM %s WHERE job_id IN (%s) AND job_id NOT IN (SELECT job_id FROM %s"
        " WHERE job_id IN (%s))" % (options_table(part), marks, job_table(part), marks),
        (*ids, *ids))


def _recover(txn: Cursor_, part: str, keep: Collection[InFlight]) -> int:
    txn.execute("BEGIN IMMEDIATE")
    txn.execute(
        "UPDATE %s SET status = 'claimed', grabber_id = NULL WHERE status = 'grabbed'%s"
        % (job_table(part), except_in_flight(keep, "IS"))
    )
    return int(txn.rowcount)


def _position(cursor: Cursor) -> list[Any]:
    """A cursor's (time, time, id) parameters of ``keyset_condition``. Its id may be above SQLite's
    largest integer (docs/api.md, Lists and cursors allows up to 2^64-1), which would not bind; as
    a REAL it compares exactly as it should: above every stored id."""
    item: float = cursor.id if cursor.id <= _MAX_INTEGER else float(cursor.id)
    return [cursor.time, cursor.time, item]


def _list_jobs(
    txn: Cursor_, part: str, state: JobState, ascending: bool, cursor: Cursor | None,
    limit: int, now: int,
) -> Page[Job]:
    conditions = [_STATE_CONDITIONS[state]]
    params: list[Any] = [] if state is JobState.GRABBED else [now]
    if cursor is not None:
        conditions.append(keyset_condition("next_try", "job_id", not ascending))
        params += _position(cursor)
    direction = "ASC" if ascending else "DESC"
    txn.execute(
        "SELECT %s FROM %s WHERE %s ORDER BY next_try %s, job_id %s LIMIT ?"
        % (JOB_COLUMNS, job_table(part), " AND ".join(conditions), direction, direction),
        (*params, limit + 1),
    )
    return page_of(txn.fetchall(), limit, job_from_row, job_position)


def _get_job(txn: Cursor_, part: str, job_id: int, delete: bool) -> Job | None:
    if delete:
        txn.execute("BEGIN IMMEDIATE")
    txn.execute("SELECT %s FROM %s WHERE job_id = ?" % (JOB_COLUMNS, job_table(part)), (job_id,))
    row = txn.fetchone()
    if row is None:
        return None
    if delete:
        txn.execute("DELETE FROM %s WHERE job_id = ?" % job_table(part), (job_id,))
        txn.execute("DELETE FROM %s WHERE job_id = ?" % options_table(part), (job_id,))
    return job_from_row(row)


def _list_failed(
    txn: Cursor_, part: str, order: FailedOrder, cursor: Cursor | None, limit: int
) -> Page[FailedJob]:
    time_column = "failed_at" if order is FailedOrder.FAILED else "created_at"
    where, params = "", []
    if cursor is not None:
        where = " WHERE " + keyset_condition(time_column, "failure_id", True)
        params = _position(cursor)
    txn.execute(
        "SELECT %s FROM %s%s ORDER BY %s DESC, failure_id DESC LIMIT ?"
        % (FAILED_COLUMNS, failure_table(part), where, time_column),
        (*params, limit + 1),
    )
    return page_of(txn.fetchall(), limit, failed_from_row, failed_position(order))


def _get_failed(txn: Cursor_, part: str, failure_id: int, delete: bool) -> FailedJob | None:
    if delete:
        txn.execute("BEGIN IMMEDIATE")
    txn.execute(
        "SELECT %s FROM %s WHERE failure_id = ?" % (FAILED_COLUMNS, failure_table(part)),
        (failure_id,),
    )
    row = txn.fetchone()
    if row is None:
        return None
    if delete:
        _delete_failures(txn, part, [failure_id])
    return failed_from_row(row)


def _delete_failures(txn: Cursor_, part: str, ids: Sequence[int]) -> int:
    marks = ",".join("?" * len(ids))
    txn.execute(delete_entry_options(part, marks), ids)
    txn.execute("DELETE FROM %s WHERE failure_id IN (%s)" % (failure_table(part), marks), ids)
    deleted = int(txn.rowcount)
    txn.execute("DELETE FROM %s WHERE failure_id IN (%s)" % (settings_table(part), marks), ids)
    return deleted


def _select_failed(txn: Cursor_, columns: str, source: str, selection: FailedFilter,
                   limit: int) -> list[Any]:
    """``columns`` of the matching entries (``failure f`` in ``source``), oldest failure
    first."""
    condition, params = selection_condition(selection, "?", selection.category)
    txn.execute(
        "SELECT %s FROM %s WHERE %s ORDER BY f.failed_at, f.failure_id LIMIT ?"
        % (columns, source, condition),
        (*params, limit),
    )
    return list(txn.fetchall())


def _retry_failed(txn: Cursor_, part: str, selection: FailedFilter, limit: int,
                  run_after: int, now: int) -> list[RetriedJob]:
    txn.execute("BEGIN IMMEDIATE")
    taken = jobs_for_retry(_select_failed(
        txn, RETRY_COLUMNS, failed_with_settings(part), selection, limit), run_after)
    if not taken:
        return []
    pushed = _insert_jobs(txn, [(part, job) for _, job in taken], now)
    _delete_failures(txn, part, [failure_id for failure_id, _ in taken])
    return [RetriedJob(failure_id, job, done) for (failure_id, job), done in zip(taken, pushed)]


def _delete_failed_matching(txn: Cursor_, part: str, selection: FailedFilter, limit: int
                            ) -> int:
    txn.execute("BEGIN IMMEDIATE")
    ids = [row[0] for row in _select_failed(
        txn, "f.failure_id", failure_table(part) + " f", selection, limit)]
    return _delete_failures(txn, part, ids) if ids else 0


def _counts(txn: Cursor_, part: str, limit: int, now: int) -> StateCounts:
    txn.execute(bounded_counts(part, _STATE_CONDITIONS, "?"),
                (now, limit, now, limit, limit, limit))
    waiting, deferred, grabbed, failed = txn.fetchone()
    return StateCounts(int(waiting), int(deferred), int(grabbed), int(failed))
