"""The ``mysql`` driver: Fireworq 1.5's schema on MySQL 5.7+/8 or MariaDB 10.6+.

Two adbapi pools, the repository (definitions) and the queue database (pushes, completion
writes, inspection), and the node's ``LockSession``: one dedicated connection for the queue
locks and the grabs they guard. Its connection id marks the jobs it grabs, exactly as
Fireworq's does, and every grab checks in the same statement that this session still holds
the queue's lock, so a node that lost its lock (or its session) can never grab.

Times are the database clock in ms. All SQL of the dialect is in this module.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
from typing import Any, Callable, Collection, Mapping, Sequence, TypeVar

import attrs
import pymysql
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fireworq.dsn import MySQLDSN
from fireworq.errors import JobTooLarge, NotStored, OutcomeUnknown, StoreUnavailable
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
from fireworq.storage.mysqlpool import (
    DEFAULT_IO_TIMEOUT,
    LOCK_IO_TIMEOUT,
    MySQLPool,
    is_connection_error,
)
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
    text,
    UNIQUE_COLUMNS,
    duplicate_from_row,
    unique_table,
    unique_values,
    with_stored_members,
)

Txn = Any  # a PyMySQL cursor
T = TypeVar("T")

log = Logger()

NOW_MS = "FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)"
MAX_LOCK_NAME = 64

# Fireworq's DDL, unchanged (binary charset: names compare and sort as bytes).
_REPOSITORY_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS `queue` ("
    " `name` VARCHAR(255) NOT NULL, `polling_interval` INT UNSIGNED NOT NULL,"
    " `max_workers` INT UNSIGNED NOT NULL, PRIMARY KEY (`name`)"
    ") ENGINE=InnoDB DEFAULT CHARSET=binary",
    "CREATE TABLE IF NOT EXISTS `queue_throttle` ("
    " `name` VARCHAR(255) NOT NULL, `max_dispatches_per_second` FLOAT UNSIGNED NOT NULL,"
    " `max_burst_size` INT UNSIGNED NOT NULL, PRIMARY KEY (`name`)"
    ") ENGINE=InnoDB DEFAULT CHARSET=binary",
    "CREATE TABLE IF NOT EXISTS `routing` ("
    " `job_category` VARCHAR(255) NOT NULL, `queue_name` VARCHAR(255) NOT NULL,"
    " PRIMARY KEY (`job_category`), UNIQUE KEY `job_queue` (`job_category`, `queue_name`)"
    ") ENGINE=InnoDB DEFAULT CHARSET=binary",
    "CREATE TABLE IF NOT EXISTS `config_revision` ("
    " `name` VARCHAR(255) NOT NULL, `revision` BIGINT UNSIGNED NOT NULL,"
    " PRIMARY KEY (`name`)"
    ") ENGINE=InnoDB DEFAULT CHARSET=binary",
)
# Ours, beside Fireworq's (sqlcommon says what they hold); Fireworq never reads them.
_OWN_REPOSITORY_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS `%s` ("
    " `name` VARCHAR(255) NOT NULL, `paused` TINYINT UNSIGNED NOT NULL DEFAULT 0,"
    " `members` BLOB NOT NULL, PRIMARY KEY (`name`)"
    ") ENGINE=InnoDB DEFAULT CHARSET=binary" % OWN_QUEUE_TABLE,
    "CREATE TABLE IF NOT EXISTS `%s` ("
    " `name` VARCHAR(255) NOT NULL, `revision` BIGINT UNSIGNED NOT NULL,"
    " PRIMARY KEY (`name`)"
    ") ENGINE=InnoDB DEFAULT CHARSET=binary" % OWN_REVISION_TABLE,
)
_SETTINGS_TABLE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {settings} ("
    " `failure_id` BIGINT UNSIGNED NOT NULL,"
    " `job_id` BIGINT UNSIGNED NOT NULL,"
    " `max_retries` INT UNSIGNED NOT NULL,"
    " `retry_delay` INT UNSIGNED NOT NULL,"
    " `timeout` INT UNSIGNED NOT NULL,"
    " PRIMARY KEY (`failure_id`)"
    ") ENGINE=InnoDB DEFAULT CHARSET=binary"
)

# Unique keys of pushes (sqlcommon.unique_table); the primary key is what makes two pushes
# with one key, on any nodes, store one job.
_UNIQUE_TABLE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {unique} ("
    " `ukey` VARBINARY(255) NOT NULL,"
    " `job_id` BIGINT UNSIGNED NOT NULL,"
    " `created_at` BIGINT UNSIGNED NOT NULL,"
    " `category` VARCHAR(255) NOT NULL,"
    " `url` BLOB,"
    " `answer_payload` LONGBLOB,"
    " `run_after` INT UNSIGNED NOT NULL,"
    " `timeout` INT UNSIGNED NOT NULL,"
    " `retry_delay` INT UNSIGNED NOT NULL,"
    " `max_retries` INT UNSIGNED NOT NULL,"
    " PRIMARY KEY (`ukey`),"
    " KEY `creation_order` (`created_at`)"
    ") ENGINE=InnoDB DEFAULT CHARSET=binary"
)

_OPTIONS_TABLE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {options} ("
    " `job_id` BIGINT UNSIGNED NOT NULL,"
    " `created_at` BIGINT UNSIGNED NOT NULL,"
    " `options` BLOB NOT NULL,"
    " PRIMARY KEY (`job_id`)"
    ") ENGINE=InnoDB DEFAULT CHARSET=binary"
)

_JOB_TABLE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {jobs} ("
    " `job_id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,"
    " `next_try` BIGINT UNSIGNED NOT NULL,"
    " `grabber_id` BIGINT UNSIGNED,"
    " `status` ENUM('claimed', 'grabbed') NOT NULL DEFAULT 'claimed',"
    " `created_at` BIGINT UNSIGNED NOT NULL,"
    " `retry_count` INT UNSIGNED NOT NULL DEFAULT 0,"
    " `retry_delay` INT UNSIGNED NOT NULL DEFAULT 0,"
    " `fail_count` INT UNSIGNED NOT NULL DEFAULT 0,"
    " `category` VARCHAR(255) NOT NULL,"
    " `url` BLOB,"
    " `payload` MEDIUMBLOB,"
    " `timeout` INT UNSIGNED,"
    " PRIMARY KEY (`job_id`),"
    " KEY `grab` (`status`, `next_try`)"
    ") ENGINE=InnoDB DEFAULT CHARSET=binary",
    "CREATE TABLE IF NOT EXISTS {failures} ("
    " `failure_id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,"
    " `job_id` BIGINT UNSIGNED NOT NULL,"
    " `category` VARCHAR(255) NOT NULL,"
    " `url` BLOB,"
    " `payload` MEDIUMBLOB,"
    " `result` MEDIUMBLOB,"
    " `fail_count` INT UNSIGNED NOT NULL,"
    " `failed_at` BIGINT UNSIGNED NOT NULL,"
    " `created_at` BIGINT UNSIGNED NOT NULL,"
    " PRIMARY KEY (`failure_id`),"
    " KEY `creation_order` (`created_at`),"
    " KEY `failure_order` (`failed_at`, `failure_id`)"
    ") ENGINE=InnoDB DEFAULT CHARSET=binary",
)
# Our one addition to Fireworq's schema: the failure log sorted by failure time
# (order=failed) without sorting the whole table. Additive, so Fireworq nodes keep working
# beside it; tables Fireworq created get it when the account may ALTER them.
_FAILED_ORDER_INDEX = "failure_order"

_STATE_CONDITIONS = {
    JobState.GRABBED: "status = 'grabbed'",
    JobState.WAITING: "status = 'claimed' AND next_try <= " + NOW_MS,
    JobState.DEFERRED: "status = 'claimed' AND next_try > " + NOW_MS,
}


def lock_name(queue_name: str, database: str, scope: str) -> str:
    """The ``GET_LOCK`` name of a queue (docs/configuration.md, mysql)."""
    if scope == "server":
        return "fireworq_jq(%s)" % queue_name
    scoped = "fireworq_jq(%s/%s)" % (database, queue_name)
    if len(scoped) <= MAX_LOCK_NAME:
        return scoped
    digest = hashlib.sha1(("%s/%s" % (database, queue_name)).encode("utf-8")).hexdigest()
    return "fireworq_jq#" + digest


def round_rate(rate: float) -> float:
    """A rate as a FLOAT column gives it back: 7 significant digits."""
    return float("%.7g" % rate) if rate else 0.0


def _placeholders(count: int) -> str:
    return ",".join(["%s"] * count)


class MySQLStore:
    """Definitions and jobs in a MySQL/MariaDB database shared by several nodes."""

    def __init__(
        self, repository: MySQLDSN, queue: MySQLDSN, reactor: Any, clock: IReactorTime,
        *, pool_size: int = 8, session_clock: IReactorTime | None = None,
    ) -> None:
        """``session_clock`` is for tests: the database clock then reads it (SET TIMESTAMP
        before every interaction) so that job times can be driven by a ``task.Clock``."""
        self._before: Callable[[Any], None] | None = None
        if session_clock is not None:
            self._before = lambda cursor: cursor.execute(
                "SET TIMESTAMP = %s", (session_clock.seconds(),))
        self._repository_dsn = repository
        self._queue_dsn = queue
        self._reactor = reactor
        self._clock = clock
        self._pool_size = pool_size
        self._same_database = (repository.host, repository.port, repository.socket_path,
                               repository.database) == (queue.host, queue.port,
                                                        queue.socket_path, queue.database)
        self.repository: MySQLPool | None = None
        self.jobs: MySQLPool | None = None
        #: The node's lock-and-grab connection; the cluster's ``mysql`` driver uses it.
        self.session = LockSession(queue, reactor, jobs=lambda: self._pools()[1],
                                   before=self._before)
        self._prepared: set[str] = set()
        self.skip_locked = True

    @property
    def database(self) -> str:
        return self._queue_dsn.database

    @property
    def grab_connection_id(self) -> int | None:
        """``CONNECTION_ID()`` of the grab connection: the grabber id of its grabs."""
        return self.session.connection_id

    def _pools(self) -> tuple[MySQLPool, MySQLPool]:
        if self.repository is None or self.jobs is None:
            raise StoreUnavailable("store is closed")
        return self.repository, self.jobs

    async def open(self) -> None:
        self.jobs = MySQLPool(self._queue_dsn, self._reactor, size=self._pool_size,
                              io_timeout=DEFAULT_IO_TIMEOUT, before=self._before,
                              on_connect=_read_session_limits)
        self.repository = (
            self.jobs if self._same_database else
            MySQLPool(self._repository_dsn, self._reactor, size=2,
                      io_timeout=DEFAULT_IO_TIMEOUT, before=self._before)
        )
        self.session.open()
        await self.repository.run("create schema", _create_repository)
        self.skip_locked = await self.jobs.run(
            "read settings", _server_features, transaction=False)

    async def close(self) -> None:
        self.session.close()
        pools = {id(p): p for p in (self.jobs, self.repository) if p is not None}
        self.jobs = self.repository = None
        for pool in pools.values():
            pool.close()

    async def ping(self) -> None:
        repository, jobs = self._pools()
        await repository.run("ping", _ping, transaction=False)
        if jobs is not repository:
            await jobs.run("ping", _ping, transaction=False)

    # Definitions

    async def list_queues(self) -> list[QueueDefinition]:
        return await self._pools()[0].run("list queues", _list_queues, None, transaction=False)

    async def get_queue(self, name: str) -> QueueDefinition | None:
        found = await self._pools()[0].run("get queue", _list_queues, name, transaction=False)
        return found[0] if found else None

    async def put_queue(self, definition: QueueDefinition) -> bool:
        stored = attrs.evolve(
            definition, max_dispatches_per_second=round_rate(definition.max_dispatches_per_second)
        )
        return await self._pools()[0].run("put queue", _put_queue, stored)

    async def set_paused(self, name: str, paused: bool) -> QueueDefinition | None:
        return await self._pools()[0].run("pause queue", _set_paused, name, paused)

    async def delete_queue(self, name: str) -> QueueDefinition | None:
        return await self._pools()[0].run("delete queue", _delete_queue, name)

    async def list_routings(self) -> list[Routing]:
        return await self._pools()[0].run("list routings", _list_routings, None, transaction=False)

    async def get_routing(self, category: str) -> Routing | None:
        found = await self._pools()[0].run(
            "get routing", _list_routings, category, transaction=False)
        return found[0] if found else None

    async def put_routing(self, routing: Routing) -> bool:
        return await self._pools()[0].run("put routing", _put_routing, routing)

    async def delete_routing(self, category: str) -> Routing | None:
        return await self._pools()[0].run("delete routing", _delete_routing, category)

    async def revisions(self) -> tuple[int, int, int]:
        return await self._pools()[0].run("read revisions", _revisions, transaction=False)

    # Jobs

    async def prepare_queue(self, table: str) -> None:
        if table not in self._prepared:
            await self._pools()[1].run("create queue tables", _create_job_tables, table)
            self._prepared.add(table)

    async def push(
        self, jobs: Sequence[tuple[str, NewJob]], handover: Handover | None = None,
        groups: Sequence[int] | None = None,
    ) -> list[PushedJob | DuplicateJob | NotStored]:
        now = int(self._clock.seconds() * 1000)
        sending = _Sending()
        try:
            answers = await self._pools()[1].run(
                "push", _push, jobs, handover, sending, False, groups, transaction=False)
        except StoreUnavailable as e:
            # Lost after the INSERT went out: the server may have committed it.
            if sending.started and e.__cause__ is not None and is_connection_error(e.__cause__):
                raise OutcomeUnknown() from e
            raise
        return [PushedJob(answer, now, now + job.run_after * 1000)
                if isinstance(answer, int) else answer
                for answer, (_, job) in zip(answers, jobs)]

    async def due_tables(self, tables: Sequence[str]) -> set[str]:
        return await self._pools()[1].run("due check", _due_tables, tables, transaction=False)

    async def grab(self, table: str, limit: int) -> list[Job]:
        locks = self.session.guards(table)
        if not locks:
            return []
        return await self.session.run("grab", _grab, table, limit, locks, self.skip_locked)

    async def complete(self, completions: Sequence[Completion]) -> None:
        deletes, retries, failures = group_completions(completions)
        # One DELETE (or one UPDATE) commits by itself: no BEGIN and COMMIT round trips.
        single = (not failures and len(deletes) + len(retries) == 1
                  and not options_to_clean(completions))
        await self._pools()[1].run("complete", _complete, completions, transaction=not single)

    async def recover(self, table: str, keep: Collection[InFlight] = ()) -> int:
        locks = self.session.guards(table)
        if not locks:
            return 0
        return await self.session.run("recover", _recover, table, locks, keep,
                                      transaction=False)

    async def list_jobs(
        self, table: str, state: JobState, ascending: bool, cursor: Cursor | None, limit: int
    ) -> Page[Job]:
        return await self._pools()[1].run(
            "list jobs", _list_jobs, table, state, ascending, cursor, limit, transaction=False)

    async def get_job(self, table: str, job_id: int) -> Job | None:
        return await self._pools()[1].run("get job", _get_job, table, job_id, False,
                                          transaction=False)

    async def delete_job(self, table: str, job_id: int) -> Job | None:
        return await self._pools()[1].run("delete job", _get_job, table, job_id, True)

    async def list_failed(
        self, table: str, order: FailedOrder, cursor: Cursor | None, limit: int
    ) -> Page[FailedJob]:
        return await self._pools()[1].run(
            "list failed", _list_failed, table, order, cursor, limit, transaction=False)

    async def get_failed(self, table: str, failure_id: int) -> FailedJob | None:
        return await self._pools()[1].run(
            "get failed", _get_failed, table, failure_id, False, transaction=False)

    async def delete_failed(self, table: str, failure_id: int) -> FailedJob | None:
        return await self._pools()[1].run("delete failed", _get_failed, table, failure_id, True)

    async def retry_failed(
        self, table: str, selection: FailedFilter, limit: int, run_after: int
    ) -> list[RetriedJob]:
        now = int(self._clock.seconds() * 1000)
        return await self._pools()[1].run("retry failed", _retry_failed, table, selection,
                                          limit, run_after, now)

    async def delete_failed_matching(
        self, table: str, selection: FailedFilter, limit: int
    ) -> int:
        return await self._pools()[1].run("delete failed", _delete_failed_matching, table,
                                          selection, limit)

    async def prune_unique_keys(self, table: str, window: int, limit: int) -> int:
        return await self._pools()[1].run("prune unique keys", _prune_unique_keys, table,
                                          window, limit, transaction=False)

    async def failed_cutoff(self, table: str, keep: int) -> Cursor | None:
        return await self._pools()[1].run("find failure cutoff", failed_cutoff, table, keep,
                                          transaction=False)

    async def counts(
        self, tables: Sequence[str], limit: int = COUNT_LIMIT
    ) -> dict[str, StateCounts]:
        return await self._pools()[1].run("count jobs", _counts, tables, limit,
                                          transaction=False)


class LockSession:
    """This node's session for the queue locks (docs/configuration.md, mysql) and the grabs they
    guard.

    ``GET_LOCK`` belongs to a session, so one dedicated connection holds every queue lock of
    the node, grabs (each checks the lock in its own statement) and recovers orphans.

    Every new connection first takes a lock of its own, ``fireworq_session(<token>.<n>)``,
    with a token random per process: only this node knows the name. When the connection is
    replaced (it broke, or timed out) the old session may live on in the server, half-open,
    holding its queue locks until ``wait_timeout``; it is ended with ``KILL`` only when
    ``IS_USED_LOCK`` of its own lock name is its id. Connection ids restart with the server
    and are reused: killing by id alone could end another node's session, which would then
    lose its queues and, reconnecting, kill a third node's session in turn.
    """

    def __init__(self, dsn: MySQLDSN, reactor: Any, *, jobs: Callable[[], MySQLPool],
                 before: Callable[[Any], None] | None = None, token: str | None = None) -> None:
        self._dsn = dsn
        self._reactor = reactor
        self._jobs = jobs
        self._before = before
        self._token = token or secrets.token_hex(8)
        self._sequence = itertools.count(1)
        self._pool: MySQLPool | None = None
        #: Every connection opened and not known to be over: id -> its own lock's name.
        #: Written by the pool thread as it connects.
        self._proofs: dict[int, str] = {}
        #: CONNECTION_ID() of the newest connection (written by the pool thread).
        self.connection_id: int | None = None
        self._checked: int | None = None  # the session the last check ran on
        self._guards: dict[str, list[str]] = {}  # job table -> the lock names guarding it
        self._lost: list[Callable[[], None]] = []

    def open(self) -> None:
        self._pool = MySQLPool(self._dsn, self._reactor, size=1, io_timeout=LOCK_IO_TIMEOUT,
                               on_connect=self._connected, before=self._before,
                               implicit_transactions=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _connected(self, connection: Any) -> None:
        # In the pool thread, before the connection's first use. thread_id() is the
        # server's CONNECTION_ID(), known from the handshake.
        proof = "fireworq_session(%s.%d)" % (self._token, next(self._sequence))
        with connection.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 0)", (proof,))
            cursor.fetchall()
        connection.commit()
        connection_id = int(connection.thread_id())
        self._proofs[connection_id] = proof
        self.connection_id = connection_id

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the session and the locks it held are gone."""
        self._lost.append(callback)

    def _connection_lost(self) -> None:
        for callback in list(self._lost):
            callback()

    def guards(self, table: str) -> list[str]:
        """The lock names that let this session grab from (and recover) a job table."""
        return self._guards.get(table, [])

    async def run(self, description: str, function: Callable[..., T], *args: Any,
                  transaction: bool = True) -> T:
        """``function(cursor, *args)`` on the session's connection."""
        if self._pool is None:
            raise StoreUnavailable("store is closed")
        try:
            return await self._pool.run(description, function, *args, transaction=transaction)
        except StoreUnavailable as e:
            # The locks lived on that connection: nothing may be grabbed until re-checked.
            if e.__cause__ is not None and is_connection_error(e.__cause__):
                self._connection_lost()
            raise

    async def check(self, wanted: Mapping[str, str]) -> set[str]:
        """Keep the locks held, try (without waiting) the others, in one statement;
        ``wanted`` maps each lock name to the job table it guards. The names held now."""
        guards: dict[str, list[str]] = {}
        for name, table in wanted.items():
            guards.setdefault(table, []).append(name)
        self._guards = {table: sorted(names) for table, names in guards.items()}
        names = sorted(wanted)
        connection_id, held = await self.run("check locks", _check_locks, names,
                                             transaction=False)
        if self._checked is not None and connection_id != self._checked:
            # Replaced: the locks died with the old session, or stay with it (half-open)
            # until it is ended below.
            self._connection_lost()
        self._checked = connection_id
        await self._end_old_sessions(connection_id)
        return {name for name in names if held[name]}

    async def _end_old_sessions(self, current: int) -> None:
        newest = self.connection_id
        for connection_id, proof in sorted(self._proofs.items()):
            if connection_id in (current, newest):
                continue
            try:
                ended = await self._jobs().run("end old session", _end_session_if_ours,
                                               connection_id, proof, transaction=False)
            except StoreUnavailable as e:
                log.debug("Old session {id} not ended yet: {reason}", id=connection_id,
                          reason=e.reason)
                return  # again at the next check
            del self._proofs[connection_id]
            if ended:
                log.info("Ended this node's previous lock session {id}, which was still"
                         " holding its locks", id=connection_id)

    async def release(self, names: Sequence[str]) -> None:
        released = set(names)
        self._guards = {table: [n for n in guarded if n not in released]
                        for table, guarded in self._guards.items()}
        if names:
            await self.run("release locks", _release_locks, names, transaction=False)

    async def holder(self, name: str) -> tuple[str, str] | None:
        """(connection id, client host) of the session holding a lock, if visible."""
        return await self._jobs().run("find lock holder", _lock_holder, name,
                                      transaction=False)


# Transactions: plain functions on a cursor, run in a pool thread.


def _ping(txn: Txn) -> None:
    txn.execute("SELECT 1")
    txn.fetchall()


def _server_features(txn: Txn) -> bool:
    """Whether the server knows ``FOR UPDATE SKIP LOCKED`` (MariaDB 10.6, MySQL 8)."""
    txn.execute("SELECT VERSION()")
    (version,) = txn.fetchone()
    return supports_skip_locked(text(version))


def supports_skip_locked(version: str) -> bool:
    version = version.removeprefix("5.5.5-")  # MariaDB's old-client compatibility prefix
    numbers = [int(part) for part in re.findall(r"\d+", version)[:2]] + [0, 0]
    if "mariadb" in version.lower():
        return (numbers[0], numbers[1]) >= (10, 6)
    return numbers[0] >= 8


def _create_repository(txn: Txn) -> None:
    for statement in (*_REPOSITORY_SCHEMA, *_OWN_REPOSITORY_SCHEMA):
        txn.execute(statement)


def _create_job_tables(txn: Txn, part: str) -> None:
    names = {"jobs": job_table(part), "failures": failure_table(part),
             "settings": settings_table(part), "unique": unique_table(part),
             "options": options_table(part)}
    for statement in (*_JOB_TABLE_SCHEMA, _SETTINGS_TABLE_SCHEMA, _UNIQUE_TABLE_SCHEMA,
                      _OPTIONS_TABLE_SCHEMA):
        txn.execute(statement.format(**names))
    txn.execute(
        "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME = %s AND INDEX_NAME = %s",
        ("fireworq_jq_fail(%s)" % part, _FAILED_ORDER_INDEX),
    )
    if int(txn.fetchone()[0]) == 0:
        try:
            txn.execute("ALTER TABLE %s ADD INDEX `%s` (`failed_at`, `failure_id`)"
                        % (failure_table(part), _FAILED_ORDER_INDEX))
        except pymysql.err.MySQLError as error:
            # 1061: another node added it meanwhile. 1142: no ALTER grant; the index only
            # speeds up one listing, so go on without it.
            if not error.args or error.args[0] not in (1061, 1142):
                raise


def _bump_revision(txn: Txn, name: str) -> None:
    txn.execute(
        "INSERT INTO config_revision (name, revision) VALUES (%s, 1)"
        " ON DUPLICATE KEY UPDATE revision = revision + 1",
        (name,),
    )


def _bump_own_revision(txn: Txn) -> None:
    txn.execute(
        "INSERT INTO %s (name, revision) VALUES (%%s, 1)"
        " ON DUPLICATE KEY UPDATE revision = revision + 1" % OWN_REVISION_TABLE,
        (OWN_REVISION,),
    )


def _list_queues(txn: Txn, name: str | None) -> list[QueueDefinition]:
    query = (
        "SELECT q.name, q.polling_interval, q.max_workers,"
        " t.max_dispatches_per_second, t.max_burst_size, o.paused, o.members"
        " FROM queue q LEFT JOIN queue_throttle t ON t.name = q.name"
        " LEFT JOIN %s o ON o.name = q.name" % OWN_QUEUE_TABLE
    )
    if name is None:
        txn.execute(query + " ORDER BY q.name")
    else:
        txn.execute(query + " WHERE q.name = %s", (name.encode("utf-8"),))
    return [
        with_stored_members(QueueDefinition(
            name=text(row[0]), polling_interval=int(row[1]), max_workers=int(row[2]),
            max_dispatches_per_second=round_rate(float(row[3] or 0.0)),
            max_burst_size=int(row[4] or 0),
        ), row[5], row[6])
        for row in txn.fetchall()
    ]


def _put_members(txn: Txn, definition: QueueDefinition, existing: QueueDefinition | None
                 ) -> bool:
    """Our members of a definition; whether they changed. A new queue starts unpaused
    (a row left by a queue that Fireworq deleted is reset); a stored one keeps its paused
    flag."""
    members = encode_members(definition)
    if existing is not None and encode_members(existing) == members:
        return False
    reset = ", paused = 0" if existing is None else ""
    txn.execute(
        "INSERT INTO %s (name, paused, members) VALUES (%%s, 0, %%s)"
        " ON DUPLICATE KEY UPDATE members = VALUES(members)%s" % (OWN_QUEUE_TABLE, reset),
        (definition.name.encode("utf-8"), members),
    )
    _bump_own_revision(txn)
    return True


def _put_queue(txn: Txn, definition: QueueDefinition) -> bool:
    existing = _list_queues(txn, definition.name)
    members_changed = _put_members(txn, definition, existing[0] if existing else None)
    if existing and existing[0].fireworq_members == definition.fireworq_members:
        return members_changed
    name = definition.name.encode("utf-8")
    txn.execute(
        "INSERT INTO queue (name, polling_interval, max_workers) VALUES (%s, %s, %s)"
        " ON DUPLICATE KEY UPDATE polling_interval = VALUES(polling_interval),"
        " max_workers = VALUES(max_workers)",
        (name, definition.polling_interval, definition.max_workers),
    )
    txn.execute(
        "INSERT INTO queue_throttle (name, max_dispatches_per_second, max_burst_size)"
        " VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE"
        " max_dispatches_per_second = VALUES(max_dispatches_per_second),"
        " max_burst_size = VALUES(max_burst_size)",
        (name, definition.max_dispatches_per_second, definition.max_burst_size),
    )
    _bump_revision(txn, "queue_definition")
    return True


def _delete_queue(txn: Txn, name: str) -> QueueDefinition | None:
    existing = _list_queues(txn, name)
    if not existing:
        return None
    encoded = name.encode("utf-8")
    txn.execute("DELETE FROM queue WHERE name = %s", (encoded,))
    txn.execute("DELETE FROM queue_throttle WHERE name = %s", (encoded,))
    txn.execute("DELETE FROM %s WHERE name = %%s" % OWN_QUEUE_TABLE, (encoded,))
    _bump_revision(txn, "queue_definition")
    return existing[0]


def _set_paused(txn: Txn, name: str, paused: bool) -> QueueDefinition | None:
    existing = _list_queues(txn, name)
    if not existing or existing[0].paused == paused:
        return existing[0] if existing else None
    txn.execute(
        "INSERT INTO %s (name, paused, members) VALUES (%%s, %%s, %%s)"
        " ON DUPLICATE KEY UPDATE paused = VALUES(paused)" % OWN_QUEUE_TABLE,
        (name.encode("utf-8"), int(paused), encode_members(existing[0])),
    )
    _bump_own_revision(txn)
    return attrs.evolve(existing[0], paused=paused)


def _list_routings(txn: Txn, category: str | None) -> list[Routing]:
    if category is None:
        txn.execute(
            "SELECT queue_name, job_category FROM routing ORDER BY queue_name, job_category"
        )
    else:
        txn.execute("SELECT queue_name, job_category FROM routing WHERE job_category = %s",
                    (category.encode("utf-8"),))
    return [Routing(queue_name=text(row[0]), job_category=text(row[1]))
            for row in txn.fetchall()]


def _put_routing(txn: Txn, routing: Routing) -> bool:
    existing = _list_routings(txn, routing.job_category)
    if existing and existing[0] == routing:
        return False
    txn.execute(
        "INSERT INTO routing (job_category, queue_name) VALUES (%s, %s)"
        " ON DUPLICATE KEY UPDATE queue_name = VALUES(queue_name)",
        (routing.job_category.encode("utf-8"), routing.queue_name.encode("utf-8")),
    )
    _bump_revision(txn, "routing")
    return True


def _delete_routing(txn: Txn, category: str) -> Routing | None:
    existing = _list_routings(txn, category)
    if not existing:
        return None
    txn.execute("DELETE FROM routing WHERE job_category = %s", (category.encode("utf-8"),))
    _bump_revision(txn, "routing")
    return existing[0]


def _revisions(txn: Txn) -> tuple[int, int, int]:
    txn.execute("SELECT name, revision FROM config_revision UNION ALL"
                " SELECT CONCAT('.', name), revision FROM %s" % OWN_REVISION_TABLE)
    found = {text(row[0]): int(row[1]) for row in txn.fetchall()}
    return (found.get("queue_definition", 0), found.get("routing", 0),
            found.get("." + OWN_REVISION, 0))


_INSERT_COLUMNS = (
    "(next_try, created_at, retry_count, retry_delay, fail_count, category, url, payload,"
    " timeout)"
)
# Values written as literals: integers in decimal, text and bytes as hex literals (X'..'),
# which need no escaping. PyMySQL's escaping of 7 parameters a job, in Python, cost more
# than the rest of a push's database work.
_ROW = "(%s + %%d, %s, %%d, %%d, 0, X'%%s', X'%%s', X'%%s', %%d)" % (NOW_MS, NOW_MS)


def _row(job: NewJob) -> str:
    return _ROW % (job.run_after * 1000, job.max_retries, job.retry_delay,
                   job.category.encode("utf-8").hex(), job.url.encode("utf-8").hex(),
                   job.payload.hex(), job.timeout)


@attrs.frozen
class SessionLimits:
    """A session's settings that shape a push, read when it connects (they may differ
    between sessions: a DSN parameter sets them, a global changed meanwhile, or the server
    behind the address is another one since a failover)."""

    #: Whether the rows of one multi-row INSERT get consecutive ids (steps of
    #: ``increment``): not with innodb_autoinc_lock_mode 2 (MySQL 8's default, Galera's
    #: requirement), where concurrent INSERTs interleave.
    consecutive: bool
    #: @@auto_increment_increment: the step between the ids one INSERT gets.
    increment: int
    #: @@max_allowed_packet: the longest statement the server reads; a longer one makes it
    #: drop the connection.
    max_packet: int


#: Bytes of a statement's packet besides its text (the command byte), with room to spare.
_PACKET_OVERHEAD = 16


def _read_session_limits(connection: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment,"
                       " @@max_allowed_packet")
        mode, increment, max_packet = cursor.fetchone()
    # It travels with the connection, into every interaction run on it.
    connection.fireworq_limits = SessionLimits(int(mode) != 2, int(increment), int(max_packet))


@attrs.define
class _Sending:
    """Set by the pool thread when a push's first INSERT goes out."""

    started: bool = False


def _push(
    txn: Txn, jobs: Sequence[tuple[str, NewJob]], handover: Handover | None, sending: _Sending,
    in_transaction: bool = False, groups: Sequence[int] | None = None,
) -> list[int | DuplicateJob | NotStored]:
    """Insert the jobs; ``in_transaction`` when the caller's transaction is open (a BEGIN
    would commit it)."""
    limits: SessionLimits = txn.connection.fireworq_limits
    answers: list[int | DuplicateJob | NotStored] = not_sent(len(jobs))
    handed = list(handed_over(len(jobs), handover))
    too_large: dict[int, JobTooLarge] = {}  # by request (``groups``), or by job
    rows: dict[int, str] = {}
    keyed: dict[int, _UniqueRow] = {}
    room = limits.max_packet - _PACKET_OVERHEAD
    for index in handed:
        part, job = jobs[index]
        request = index if groups is None else groups[index]
        row = rows[index] = _row(job)
        needed = len(_insert_prefix(part)) + len(row)
        if job.unique is not None and job.unique.window:
            # Its key's row says as much again, in a statement of its own (the longest:
            # the takeover of an expired key).
            unique = keyed[index] = _UniqueRow.of(job)
            needed = max(needed, len(_takeover_prefix(part)) + unique.size
                         + len(_UNIQUE_UPDATE))
        if needed > room and request not in too_large:
            too_large[request] = JobTooLarge(
                "Job too large for the store: its INSERT statement needs %d bytes, the"
                " MySQL server's max_allowed_packet is %d"
                % (needed + _PACKET_OVERHEAD, limits.max_packet))
    if too_large:
        for index in handed:
            error = too_large.get(index if groups is None else groups[index])
            if error is not None:
                answers[index] = error
        handed = [index for index in handed if not isinstance(answers[index], JobTooLarge)]
    by_table: dict[str, list[int]] = {}
    for index in handed:
        by_table.setdefault(jobs[index][0], []).append(index)
    statements: list[tuple[str, list[int]]] = []
    for part, indexes in by_table.items():
        insert = _insert_prefix(part)
        room = limits.max_packet - _PACKET_OVERHEAD - len(insert)
        chunk_rows: list[str] = []
        chunk: list[int] = []
        size = 0
        for index in indexes:
            row = rows[index]
            # Where a multi-row INSERT gets consecutive ids, one per table, split only to
            # stay under the server's limit; otherwise one per job, to read each id.
            if chunk_rows and (not limits.consecutive or size + 1 + len(row) > room):
                statements.append((insert + ",".join(chunk_rows), chunk))
                chunk_rows, chunk, size = [], [], 0
            size += len(row) + (1 if chunk_rows else 0)
            chunk_rows.append(row)
            chunk.append(index)
        if chunk_rows:
            statements.append((insert + ",".join(chunk_rows), chunk))
    if not statements:
        return answers
    # Several statements (or keys to claim, or job members of our own to write once the
    # jobs' ids are known) are one transaction: a request is stored whole or not at all,
    # however its INSERTs were split.
    with_options = any(jobs[index][1].options is not None
                       for _, chunk in statements for index in chunk)
    several = (len(statements) > 1 or bool(keyed) or with_options) and not in_transaction
    unsent = list(answers)
    for attempt in range(1, _ATTEMPTS + 1):
        if several:
            txn.connection.begin()
        sending.started = True
        try:
            for statement, chunk in statements:
                txn.execute(statement)
                first = int(txn.lastrowid)
                for offset, index in enumerate(chunk):
                    answers[index] = first + offset * limits.increment
            if keyed:
                _claim_keys(txn, jobs, answers, keyed, limits)
            if with_options:
                _insert_options(txn, jobs, answers)  # not for duplicates: deleted again
            if several:
                txn.connection.commit()
            return answers
        except pymysql.err.OperationalError as error:
            # Pushes claiming keys may deadlock (the duplicate checks of INSERT IGNORE
            # lock the gaps before existing keys); the server then rolled back the
            # whole transaction, so it can simply run again.
            if not several or attempt == _ATTEMPTS or not error.args or error.args[0] != 1213:
                raise
            txn.connection.rollback()
            answers[:] = unsent
    raise AssertionError("unreachable")


#: Runs of a push transaction that deadlocked, at most. Each deadlock lets one of its
#: transactions through, so with as many pushes at once as the pool has connections one may
#: lose several times in a row (5 was seen to run out with 10 concurrent keyed pushes under load).
_ATTEMPTS = 20


def _insert_prefix(part: str) -> str:
    return "INSERT INTO %s %s VALUES " % (job_table(part), _INSERT_COLUMNS)


def _takeover_prefix(part: str) -> str:
    return "INSERT INTO %s (%s) VALUES " % (unique_table(part), UNIQUE_COLUMNS)


_UNIQUE_UPDATE = (
    " ON DUPLICATE KEY UPDATE job_id = VALUES(job_id), created_at = VALUES(created_at),"
    " category = VALUES(category), url = VALUES(url), answer_payload = VALUES(answer_payload),"
    " run_after = VALUES(run_after), timeout = VALUES(timeout),"
    " retry_delay = VALUES(retry_delay), max_retries = VALUES(max_retries)"
)


@attrs.frozen
class _UniqueRow:
    """A unique key's row as literals, but for the job id, known once the job is in."""

    key: str  # hex
    head: str
    tail: str
    window: int

    @classmethod
    def of(cls, job: NewJob) -> _UniqueRow:
        assert job.unique is not None
        key = job.unique.key.encode("utf-8").hex()
        tail = ", %s, X'%s', X'%s', X'%s', %d, %d, %d, %d)" % (
            NOW_MS, job.category.encode("utf-8").hex(), job.url.encode("utf-8").hex(),
            job.unique.answer_payload.encode("utf-8").hex(), job.run_after, job.timeout,
            job.retry_delay, job.max_retries)
        return cls(key, "(X'%s', " % key, tail, job.unique.window)

    @property
    def size(self) -> int:
        return len(self.head) + 20 + len(self.tail)

    def values(self, job_id: int) -> str:
        return "%s%d%s" % (self.head, job_id, self.tail)


def _claim_keys(
    txn: Txn, jobs: Sequence[tuple[str, NewJob]], answers: list[int | DuplicateJob | NotStored],
    keyed: Mapping[int, _UniqueRow], limits: SessionLimits,
) -> None:
    """Claim the keys of the keyed jobs just inserted: a job whose key its table holds
    from an earlier push within the window (committed elsewhere, or earlier in this call)
    is a duplicate: its row is deleted again and it answers ``DuplicateJob``.

    INSERT IGNORE claims free keys and, for a key another transaction is claiming, waits
    for that one to end (the primary key's duplicate check); the shared-mode read that
    follows then sees every key's row as committed. Keys go in sorted order, so that two
    pushes wait for each other in one direction only."""
    by_table: dict[str, list[int]] = {}
    ids: dict[int, int] = {}  # the inserted job's id, by index
    for index in keyed:
        job_id = answers[index]
        if isinstance(job_id, int):
            ids[index] = job_id
            by_table.setdefault(jobs[index][0], []).append(index)
    deleted: dict[str, list[int]] = {}
    for part, indexes in sorted(by_table.items()):
        table = unique_table(part)
        indexes.sort(key=lambda index: keyed[index].key)  # stable: the first push wins
        prefix = "INSERT IGNORE INTO %s (%s) VALUES " % (table, UNIQUE_COLUMNS)
        inserted = 0
        for chunk in _chunks(prefix, [keyed[i].values(ids[i]) for i in indexes], "", limits):
            txn.execute(chunk)
            inserted += int(txn.rowcount)
        if inserted == len(indexes):
            continue  # every key was free: all claimed (the usual case, one round trip)
        keys = sorted({keyed[index].key for index in indexes})
        found: dict[str, tuple[Any, ...]] = {}
        now = 0
        select = "SELECT %s, %s FROM %s WHERE ukey IN (" % (UNIQUE_COLUMNS, NOW_MS, table)
        for chunk in _chunks(select, ["X'%s'" % key for key in keys], ") LOCK IN SHARE MODE",
                             limits):
            txn.execute(chunk)
            for row in txn.fetchall():
                found[bytes(row[0]).hex()] = tuple(row[:-1])
                now = int(row[-1])
        for index in sorted(indexes):
            unique = keyed[index]
            job_id = ids[index]
            row = found.get(unique.key)
            if row is not None and int(row[1]) == job_id:
                continue  # claimed
            if row is None or int(row[2]) <= now - unique.window * 1000:
                # Forgotten meanwhile, or older than the window and not pruned yet: ours.
                txn.execute(_takeover_prefix(part) + unique.values(job_id) + _UNIQUE_UPDATE)
                key, _, *rest = unique_values(jobs[index][1], job_id)
                found[unique.key] = (key, job_id, now, *rest)
                continue
            answers[index] = duplicate_from_row(row)
            deleted.setdefault(part, []).append(job_id)
    for part, doomed in deleted.items():
        txn.execute("DELETE FROM %s WHERE job_id IN (%s)"
                    % (job_table(part), ",".join("%d" % job_id for job_id in doomed)))


def _chunks(prefix: str, items: Sequence[str], suffix: str, limits: SessionLimits
            ) -> list[str]:
    """Statements ``prefix item,item,... suffix`` within the server's packet limit."""
    room = limits.max_packet - _PACKET_OVERHEAD - len(prefix) - len(suffix)
    statements: list[str] = []
    chunk: list[str] = []
    size = 0
    for item in items:
        if chunk and size + 1 + len(item) > room:
            statements.append(prefix + ",".join(chunk) + suffix)
            chunk, size = [], 0
        size += len(item) + (1 if chunk else 0)
        chunk.append(item)
    if chunk:
        statements.append(prefix + ",".join(chunk) + suffix)
    return statements


def _prune_unique_keys(txn: Txn, part: str, window: int, limit: int) -> int:
    txn.execute("DELETE FROM %s WHERE created_at <= %s - %d ORDER BY created_at LIMIT %d"
                % (unique_table(part), NOW_MS, window * 1000, limit))
    return int(txn.rowcount)


def _insert_options(txn: Txn, jobs: Sequence[tuple[str, NewJob]],
                    answers: Sequence[int | DuplicateJob | NotStored]) -> None:
    """The job members of the jobs just inserted, with each job's ``created_at`` as the
    server set it (read back from the job rows in the same statement)."""
    by_table: dict[str, list[tuple[int, bytes]]] = {}
    for (part, job), answer in zip(jobs, answers):
        if job.options is not None and isinstance(answer, int):
            by_table.setdefault(part, []).append((answer, job.options.encode()))
    for part, rows in by_table.items():
        cases = " ".join("WHEN %d THEN X'%s'" % (job_id, options.hex())
                         for job_id, options in rows)
        ids = ",".join("%d" % job_id for job_id, _ in rows)
        # A row left under this id (by a node that does not remove them) is replaced.
        txn.execute("INSERT INTO %s (job_id, created_at, options)"
                    " SELECT job_id, created_at, CASE job_id %s END FROM %s WHERE job_id IN (%s)"
                    " ON DUPLICATE KEY UPDATE created_at = VALUES(created_at),"
                    " options = VALUES(options)"
                    % (options_table(part), cases, job_table(part), ids))


def _due_tables(txn: Txn, parts: Sequence[str]) -> set[str]:
    if not parts:
        return set()
    query = " UNION ALL ".join(
        "SELECT %d FROM DUAL WHERE EXISTS (SELECT 1 FROM %s WHERE status = 'claimed'"
        " AND next_try <= %s)" % (index, job_table(part), NOW_MS)
        for index, part in enumerate(parts)
    )
    txn.execute(query)
    return {parts[int(row[0])] for row in txn.fetchall()}


def _holds_any(locks: Sequence[str]) -> str:
    return "(%s)" % " OR ".join(["IS_USED_LOCK(%s) = CONNECTION_ID()"] * len(locks))


def _grab(
    txn: Txn, part: str, limit: int, locks: Sequence[str], skip_locked: bool
) -> list[Job]:
    table = job_table(part)
    # 1. Pre-select without locking rows (a locking read here would block pushes), and
    #    only while this very session holds the queue's lock.
    txn.execute(
        "SELECT job_id FROM %s WHERE %s AND status = 'claimed' AND next_try <= %s"
        " ORDER BY next_try, job_id LIMIT %d" % (table, _holds_any(locks), NOW_MS, limit),
        tuple(locks),
    )
    ids = [row[0] for row in txn.fetchall()]
    if not ids:
        return []
    # 2. Lock those still claimed (READ COMMITTED; skip any another session holds, where
    #    the server can: MySQL 5.7 waits for them instead, innodb_lock_wait_timeout at most).
    txn.execute(
        "SELECT %s FROM %s WHERE j.job_id IN (%s) AND j.status = 'claimed' FOR UPDATE%s"
        % (GRAB_COLUMNS, grab_source(part), _placeholders(len(ids)),
           " SKIP LOCKED" if skip_locked else ""),
        ids,
    )
    rows = txn.fetchall()
    if not rows:
        return []
    # 3. Mark them ours.
    locked = [row[0] for row in rows]
    txn.execute(
        "UPDATE %s SET status = 'grabbed', grabber_id = CONNECTION_ID() WHERE job_id IN (%s)"
        % (table, _placeholders(len(locked))),
        locked,
    )
    grabber_id = int(txn.connection.thread_id())
    jobs = [grabbed_from_row(row, grabber_id) for row in rows]
    jobs.sort(key=lambda job: (job.next_try, job.id))
    return jobs


def _complete(txn: Txn, completions: Sequence[Completion]) -> None:
    deletes, retries, failures = group_completions(completions)
    guard = "status = 'grabbed' AND grabber_id = %s"
    for (part, grabber_id), ids in deletes.items():
        txn.execute(
            "DELETE FROM %s WHERE job_id IN (%s) AND %s"
            % (job_table(part), _placeholders(len(ids)), guard),
            (*ids, grabber_id),
        )
    for (part, grabber_id, retry_in), ids in retries.items():
        wait = "retry_delay * 1000" if retry_in is None else "%d" % retry_in
        txn.execute(
            "UPDATE %s SET status = 'claimed', grabber_id = NULL,"
            " next_try = %s + %s, retry_count = retry_count - 1,"
            " fail_count = fail_count + 1 WHERE job_id IN (%s) AND %s"
            % (job_table(part), NOW_MS, wait, _placeholders(len(ids)), guard),
            (*ids, grabber_id),
        )
    for completion in failures:
        job = completion.job
        txn.execute(
            "DELETE FROM %s WHERE job_id = %%s AND %s" % (job_table(completion.table), guard),
            (job.id, job.grabber_id),
        )
        if txn.rowcount != 1:
            continue  # deleted meanwhile or no longer ours: its outcome is not written
        txn.execute(
            "INSERT INTO %s (job_id, category, url, payload, result, fail_count, failed_at,"
            " created_at) VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %s, %%s)"
            % (failure_table(completion.table), NOW_MS),
            (job.id, job.category.encode("utf-8"), job.url.encode("utf-8"), job.payload,
             encode_result(completion.result), job.fail_count + 1, job.created_at),
        )
        # A row left under this id (InnoDB may reuse an id after a restart) is replaced.
        txn.execute(
            "INSERT INTO %s (failure_id, job_id, max_retries, retry_delay, timeout)"
            " VALUES (%%s, %%s, %%s, %%s, %%s) ON DUPLICATE KEY UPDATE job_id = VALUES(job_id),"
            " max_retries = VALUES(max_retries), retry_delay = VALUES(retry_delay),"
            " timeout = VALUES(timeout)" % settings_table(completion.table),
            (txn.lastrowid, job.id, job.max_retries, job.retry_delay, job.timeout),
        )
    for part, ids in options_to_clean(completions).items():
        _delete_options(txn, part, ids)


def _delete_options(txn: Txn, part: str, ids: Sequence[int]) -> None:
    """Remove the job members of these jobs, of those that are gone (a job no longer ours
    may have been grabbed again, and keeps them)."""
    marks = _placeholders(len(ids))
    txn.execute(
        "DELETE o FROM %s o LEFT JOIN %s j ON j.job_id = o.job_id"
        " WHERE o.job_id IN (%s) AND j.job_id IS NULL"
        % (options_table(part), job_table(part), marks), ids)


def _recover(txn: Txn, part: str, locks: Sequence[str], keep: Collection[InFlight]) -> int:
    txn.execute(
        "UPDATE %s SET status = 'claimed', grabber_id = NULL WHERE %s AND status = 'grabbed'%s"
        % (job_table(part), _holds_any(locks), except_in_flight(keep, "<=>")),
        tuple(locks),
    )
    return int(txn.rowcount)


def _list_jobs(
    txn: Txn, part: str, state: JobState, ascending: bool, cursor: Cursor | None, limit: int
) -> Page[Job]:
    conditions = [_STATE_CONDITIONS[state]]
    params: list[Any] = []
    if cursor is not None:
        conditions.append(keyset_condition("next_try", "job_id", not ascending, "%s"))
        params += [cursor.time, cursor.time, cursor.id]
    direction = "ASC" if ascending else "DESC"
    txn.execute(
        "SELECT %s FROM %s WHERE %s ORDER BY next_try %s, job_id %s LIMIT %d"
        % (JOB_COLUMNS, job_table(part), " AND ".join(conditions), direction, direction,
           limit + 1),
        params or None,
    )
    return page_of(txn.fetchall(), limit, job_from_row, job_position)


def _get_job(txn: Txn, part: str, job_id: int, delete: bool) -> Job | None:
    lock = " FOR UPDATE" if delete else ""
    txn.execute("SELECT %s FROM %s WHERE job_id = %%s%s" % (JOB_COLUMNS, job_table(part), lock),
                (job_id,))
    row = txn.fetchone()
    if row is None:
        return None
    if delete:
        txn.execute("DELETE FROM %s WHERE job_id = %%s" % job_table(part), (job_id,))
        txn.execute("DELETE FROM %s WHERE job_id = %%s" % options_table(part), (job_id,))
    return job_from_row(row)


def _list_failed(
    txn: Txn, part: str, order: FailedOrder, cursor: Cursor | None, limit: int
) -> Page[FailedJob]:
    time_column = "failed_at" if order is FailedOrder.FAILED else "created_at"
    where, params = "", []
    if cursor is not None:
        where = " WHERE " + keyset_condition(time_column, "failure_id", True, "%s")
        params = [cursor.time, cursor.time, cursor.id]
    txn.execute(
        "SELECT %s FROM %s%s ORDER BY %s DESC, failure_id DESC LIMIT %d"
        % (FAILED_COLUMNS, failure_table(part), where, time_column, limit + 1),
        params or None,
    )
    return page_of(txn.fetchall(), limit, failed_from_row, failed_position(order))


def _get_failed(txn: Txn, part: str, failure_id: int, delete: bool) -> FailedJob | None:
    lock = " FOR UPDATE" if delete else ""
    txn.execute("SELECT %s FROM %s WHERE failure_id = %%s%s"
                % (FAILED_COLUMNS, failure_table(part), lock), (failure_id,))
    row = txn.fetchone()
    if row is None:
        return None
    if delete:
        _delete_failures(txn, part, [failure_id])
    return failed_from_row(row)


def _delete_failures(txn: Txn, part: str, ids: Sequence[int]) -> int:
    marks = _placeholders(len(ids))
    txn.execute(delete_entry_options(part, marks), ids)
    txn.execute("DELETE FROM %s WHERE failure_id IN (%s)" % (failure_table(part), marks), ids)
    deleted = int(txn.rowcount)
    txn.execute("DELETE FROM %s WHERE failure_id IN (%s)" % (settings_table(part), marks), ids)
    return deleted


def _select_failed(txn: Txn, columns: str, source: str, selection: FailedFilter, limit: int
                   ) -> list[Any]:
    """``columns`` of the matching entries (``failure f`` in ``source``), oldest failure
    first, locked for the rest of the transaction (a concurrent bulk operation waits, then
    skips what this one took)."""
    category = None if selection.category is None else selection.category.encode("utf-8")
    condition, params = selection_condition(selection, "%s", category)
    txn.execute(
        "SELECT %s FROM %s WHERE %s ORDER BY f.failed_at, f.failure_id LIMIT %d FOR UPDATE"
        % (columns, source, condition, limit),
        params or None,
    )
    return list(txn.fetchall())


def _retry_failed(txn: Txn, part: str, selection: FailedFilter, limit: int, run_after: int,
                  now: int) -> list[RetriedJob]:
    taken = jobs_for_retry(_select_failed(
        txn, RETRY_COLUMNS, failed_with_settings(part), selection, limit), run_after)
    if not taken:
        return []
    ids = []
    for answer in _push(txn, [(part, job) for _, job in taken], None, _Sending(),
                        in_transaction=True):
        if isinstance(answer, NotStored):
            raise answer  # the entry stays: the whole transaction is rolled back
        assert isinstance(answer, int)  # retried jobs have no unique key
        ids.append(answer)
    _delete_failures(txn, part, [failure_id for failure_id, _ in taken])
    return [RetriedJob(failure_id, job, PushedJob(job_id, now, now + run_after * 1000))
            for (failure_id, job), job_id in zip(taken, ids)]


def _delete_failed_matching(txn: Txn, part: str, selection: FailedFilter, limit: int) -> int:
    ids = [row[0] for row in _select_failed(
        txn, "f.failure_id", failure_table(part) + " f", selection, limit)]
    return _delete_failures(txn, part, ids) if ids else 0


def _counts(txn: Txn, parts: Sequence[str], limit: int) -> dict[str, StateCounts]:
    result = {}
    for part in parts:
        txn.execute(bounded_counts(part, _STATE_CONDITIONS, "%s"), (limit,) * 4)
        waiting, deferred, grabbed, failed = txn.fetchone()
        result[part] = StateCounts(int(waiting), int(deferred), int(grabbed), int(failed))
    return result


def _check_locks(txn: Txn, names: Sequence[str]) -> tuple[int, dict[str, bool]]:
    # One statement for every queue: keep the locks held, try (without waiting) the others.
    columns = "".join(
        ", IF(IS_USED_LOCK(%s) = CONNECTION_ID(), 1, GET_LOCK(%s, 0))" for _ in names
    )
    txn.execute("SELECT CONNECTION_ID()" + columns,
                [value for name in names for value in (name, name)])
    row = txn.fetchone()
    return int(row[0]), {name: row[i + 1] == 1 for i, name in enumerate(names)}


def _release_locks(txn: Txn, names: Sequence[str]) -> None:
    txn.execute("SELECT " + ", ".join(["RELEASE_LOCK(%s)"] * len(names)), list(names))
    txn.fetchall()


def _end_session_if_ours(txn: Txn, connection_id: int, proof: str) -> bool:
    txn.execute("SELECT IS_USED_LOCK(%s)", (proof,))
    (holder,) = txn.fetchone()
    if holder is None or int(holder) != connection_id:
        return False  # gone, its lock with it; whoever has that id now is not ours
    try:
        txn.execute("KILL CONNECTION %d" % connection_id)
    except pymysql.err.OperationalError as error:
        if error.args and error.args[0] == 1094:  # Unknown thread id: it ended meanwhile
            return False
        raise
    return True


def _lock_holder(txn: Txn, name: str) -> tuple[str, str] | None:
    txn.execute(
        "SELECT p.ID, p.HOST FROM information_schema.PROCESSLIST p"
        " WHERE p.ID = IS_USED_LOCK(%s)", (name,))
    row = txn.fetchone()
    if row is None:
        return None
    host = text(row[1])
    if ":" in host:
        host = host.rsplit(":", 1)[0]  # the client's port, as Fireworq strips it
    return str(row[0]), host
