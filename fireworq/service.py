"""The composition root: builds the daemon from its configuration and runs its lifetime.

This is the only module that touches the global reactor (in ``makeService``). Start:
open the store → load queues and start dispatchers → listen. Stop (docs/configuration.md, Stopping):
stop listening → finish API requests → stop grabbing and wait for deliveries → release
locks → close the HTTP pool, the logs and the store; all within ``shutdown_timeout``.
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import sys
import zlib
from typing import Any, Callable, NoReturn

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from fireworq import __version__, inherited
from fireworq.access import AccessCheck
from fireworq.api.app import FireworqAPI
from fireworq.api.site import FireworqSite
from fireworq.cluster import LockDriver
from fireworq.cluster.filelock import FileLock
from fireworq.cluster.memory import MemoryLocks
from fireworq.cluster.mysql import MySQLLocks
from fireworq.cluster.ownership import QueueOwnership
from fireworq.config import Config, Options, settings
from fireworq.delivery import Deliverer, DeliverySettings, make_http_client
from fireworq.delivery.spread import SpreadDeliverer
from fireworq.errors import StoreMisconfigured, StoreUnavailable
from fireworq.lifecycle import (
    SignalHandling,
    drain_connections,
    listen,
    tune_garbage_collector,
    within,
)
from fireworq.logs import AccessLog, ErrorLog, LineWriter, QueueLog, stdout_bytes
from fireworq.nodewide import NodeFigures, RefreshOthers, WakeOthers
from fireworq.peers import PeerLink
from fireworq.processes import ChildProcesses, become_child
from fireworq.queues import QueueDefaults, QueueManager
from fireworq.startup import (
    LoggingRefused,
    address_text,
    ready_text,
    sqlite_path_problem,
    start_failure_text,
    with_twistd_logging,
)
from fireworq.storage import Store
from fireworq.storage.memory import MemoryStore
from fireworq.storage.mysql import MySQLStore
from fireworq.storage.sqlite import SqliteStore
from fireworq.storage.unavailable import UnavailableStore

__all__ = ["Options", "makeService", "FireworqService"]

log = Logger()

#: Push batches written at once: one for sqlite (one writer anyway); with mysql a second
#: batch can be on its way while the first waits for its commit.
PUSH_CONCURRENCY: dict[str, int] = {}


def build_store(config: Config, reactor: Any) -> tuple[Store, LockDriver]:
    if config.driver == "in-memory":
        memory = MemoryStore(reactor)
        return memory, MemoryLocks(memory)
    if config.driver == "sqlite":
        path = os.path.abspath(config.sqlite_path)
        sqlite = SqliteStore(path, reactor, reactor)
        return sqlite, FileLock(path + ".lock", sqlite)
    mysql = MySQLStore(config.repository_mysql_dsn_parsed, config.queue_mysql_dsn_parsed,
                       reactor, reactor)
    return mysql, MySQLLocks(mysql, config.mysql_lock_scope)


class FireworqService(Service):
    """The whole daemon as one twisted service."""

    def __init__(self, config: Config, reactor: Any) -> None:
        self.config = config
        self._reactor = reactor
        stdout = stdout_bytes()
        self._queue_writer = LineWriter(reactor, config.queue_log, stdout)
        self._access_writer = LineWriter(reactor, config.access_log, stdout)
        self.store, locks = build_store(config, reactor)
        #: With ``processes`` > 1, this is the parent (slot 0): it starts the others once
        #: listening. Every process of such a node has a peer link to the others.
        self.children: ChildProcesses | None = None
        self._peers: PeerLink | None = None
        if config.processes > 1:
            self._peers = PeerLink(reactor, secrets.token_hex(8), 0, config.processes)
            self.children = ChildProcesses(reactor, config, config.processes,
                                           self._peers.environment_for)
        else:
            self._peers = PeerLink.from_environment(reactor, os.environ)
        self.error_log = ErrorLog(
            config.error_log, config.error_log_level,
            None if self._peers is None else (self._peers.slot + 1, self._peers.count))
        # The sqlite driver's one lock dispatches every queue in the process holding it: a
        # preference there would leave each new queue undispatched for PREFERENCE_GRACE.
        self.ownership = QueueOwnership(
            locks, reactor,
            preferred=None if isinstance(locks, FileLock) else _preferred(self._peers))
        delivery_settings = DeliverySettings(
            user_agent=config.dispatch_user_agent,
            keep_alive=config.dispatch_keep_alive,
            max_conns_per_host=config.dispatch_max_conns_per_host,
            idle_conn_timeout=config.dispatch_idle_conn_timeout,
            max_response_body=config.dispatch_max_response_body,
        )
        http, self._http_pool = make_http_client(
            reactor, delivery_settings, destinations=config.destinations)
        self._deliverer = Deliverer(http, reactor, delivery_settings)
        self._queue_log = QueueLog(
            self._queue_writer, reactor, config.queue_log_tag, config.queue_log_level
        )
        self._wake: WakeOthers | None = None
        self._refresh_others: RefreshOthers | None = None
        self._spread: SpreadDeliverer | None = None
        if self._peers is not None:
            self._wake = WakeOthers(reactor, self._peers, lambda name: self.manager.wake(name))
            self._refresh_others = RefreshOthers(self._peers, lambda: self.manager.refresh_now())
            self._spread = SpreadDeliverer(reactor, self._deliverer, self._peers,
                                           lambda name: self.manager.definition(name))
        self.manager = self._manager(self.store, self.ownership)
        self._figures = NodeFigures(self._peers, self.manager.snapshots)
        self._started_at = reactor.seconds()
        self._api = self._api_resource(self.store, self.manager, self.ownership)
        #: Why the store cannot be opened yet, while the daemon waits for its database.
        self._waiting_for: str = ""
        self.site = FireworqSite(
            self._api, clock=reactor,
            access_log=AccessLog(self._access_writer, config.access_log_tag),
            max_request_body=config.max_request_body, keep_alive=config.keep_alive,
        )
        self._signals = SignalHandling(reactor, reopen_logs=self.reopen_logs)
        self.ports: list[IListeningPort] = []
        self._started: Deferred[None] | None = None

    def _manager(self, store: Store, ownership: QueueOwnership) -> QueueManager:
        config = self.config
        return QueueManager(
            clock=self._reactor,
            store=store,
            ownership=ownership,
            deliverer=self._spread or self._deliverer,
            queue_log=self._queue_log,
            defaults=QueueDefaults(
                polling_interval=config.queue_default_polling_interval,
                max_workers=config.queue_default_max_workers,
                default_queue=config.queue_default,
            ),
            refresh_interval=config.config_refresh_interval / 1000.0,
            push_concurrency=PUSH_CONCURRENCY.get(config.driver, 1),
            max_pending_pushes=config.max_pending_pushes,
            wake_elsewhere=self._wake.wake_elsewhere if self._wake is not None else None,
            changed_elsewhere=(self._refresh_others.refresh_elsewhere
                               if self._refresh_others is not None else None),
        )

    def _api_resource(
        self, store: Store, manager: QueueManager, ownership: QueueOwnership
    ) -> Any:
        return FireworqAPI(
            clock=self._reactor, store=store, manager=manager, ownership=ownership,
            settings=settings(self.config), started_at=self._started_at,
            access=AccessCheck(self.config.all_api_tokens,
                               metrics_public=self.config.metrics_public),
            destinations=self.config.destinations,
            figures=self._figures if manager is self.manager else None,
        ).resource()

    def setServiceParent(self, parent: Any) -> None:
        # twistd sets up logging from the application's ILogObserver component, if any:
        # that is how the error log gets its destination and level.
        if isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.error_log.observer())
        Service.setServiceParent(self, parent)

    def startService(self) -> None:
        Service.startService(self)
        # Once the reactor runs: its own signal handlers are installed as it starts, and ours
        # must replace them before anything (a PID file, the listening socket) says we are up.
        self._reactor.callWhenRunning(self._begin)

    def _begin(self) -> None:
        tune_garbage_collector()
        self._signals.install()
        if not self.running:
            return
        self._started = Deferred.fromCoroutine(self._start())
        self._started.addErrback(self._start_failed)

    async def _start(self) -> None:
        if self._peers is not None:
            self._peers.start()
        await self._open_store()
        await self.manager.start()
        if self.ports:  # listening since the database was found away
            self.site.resource = self._api
        else:
            self.ports = await listen(self._reactor, self.config, self.site, inherited.SOCKETS)
        log.info("{line}", line=ready_text(self.config, self.ports, __version__))
        if self.children is not None:
            self.children.start(self.ports)
        self._write_pid_file()

    async def _listen_while_waiting(self) -> None:
        """Answer as a daemon without its store: liveness yes (``/healthz``), readiness and
        everything that needs the store 503, so that a supervisor does not restart a node
        whose database is away, and load balancers keep away from it."""
        store = UnavailableStore(lambda: "waiting for the database: " + self._waiting_for)
        ownership = QueueOwnership(MemoryLocks(store), self._reactor)  # never started
        self.site.resource = self._api_resource(store, self._manager(store, ownership), ownership)
        self.ports = await listen(self._reactor, self.config, self.site, inherited.SOCKETS)
        log.warn("Waiting for the database; meanwhile answering on {addresses}"
                 " (/healthz 200, /readyz and requests that need the store 503)",
                 addresses=", ".join(address_text(port) for port in self.ports))

    def _write_pid_file(self) -> None:
        path = self.config.pid
        if path:
            directory = os.path.dirname(path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            with open(path, "w") as pid_file:
                pid_file.write("%d\n" % os.getpid())

    def _remove_pid_file(self) -> None:
        path = self.config.pid
        if path:
            try:
                with open(path) as pid_file:
                    ours = pid_file.read().strip() == str(os.getpid())
                if ours:  # a newer generation may have written its own pid since
                    os.unlink(path)
            except OSError:
                pass

    async def _open_store(self) -> None:
        # A database that is down at start is waited for (it may be starting beside us);
        # an unusable sqlite file is a setup error and stops the daemon.
        delay = 1.0
        while True:
            try:
                await self.store.open()
                return
            except StoreUnavailable as e:
                if self.config.driver != "mysql" or isinstance(e, StoreMisconfigured):
                    raise
                self._waiting_for = e.reason
                if not self.ports:
                    await self._listen_while_waiting()
                log.warn("Database unavailable at start ({reason}); retrying in {delay} s",
                         reason=e.reason, delay=delay)
                await self.store.close()
                await deferLater(self._reactor, delay, lambda: None)
                delay = min(delay * 2, 10.0)

    def _start_failed(self, failure: Failure) -> None:
        if failure.check(CancelledError) and not self.running:
            return  # stopped (SIGTERM) before the start finished: a normal exit
        if not failure.check(StoreUnavailable, CannotListenError, OSError):
            log.failure("Start-up failed", failure)
        sys.__stderr__.write(  # type: ignore[union-attr]
            "fireworq: cannot start: %s\n"
            % start_failure_text(failure.getErrorMessage(), self.config))
        # twistd exits 0 once the reactor stops; a failed start must not look like success.
        atexit.register(os._exit, 1)
        self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        deadline = self._reactor.seconds() + self.config.shutdown_timeout
        if self._started is not None and not self._started.called:
            self._started.cancel()
        children = (Deferred.fromCoroutine(self.children.stop(deadline))
                    if self.children is not None else None)
        serving = self._spread.stop_serving() if self._spread is not None else None
        for port in self.ports:
            stopped = port.stopListening()
            if stopped is not None:
                await stopped
        await drain_connections(self.site, self._reactor, deadline)
        remaining = max(0.0, deadline - self._reactor.seconds())
        if not await self.manager.stop_dispatching(remaining):
            log.warn("Shutdown timeout: abandoned the deliveries still in progress; their"
                     " jobs stay grabbed and are recovered by the next active node")
        if serving is not None and not await within(self._reactor, serving, deadline):
            log.warn("Shutdown timeout: abandoned deliveries this process made for another"
                     " process of the node; their jobs are retried")
        await self.ownership.stop()
        self.manager.close()
        await self._http_pool.closeCachedConnections()
        await self.store.close()
        if children is not None:
            await children
        if self._wake is not None:
            self._wake.stop()
        if self._peers is not None:
            await self._peers.stop()
        self._queue_writer.close()
        self._access_writer.close()
        self._remove_pid_file()

    def reopen_logs(self) -> None:
        self._queue_writer.reopen()
        self._access_writer.reopen()
        self.error_log.reopen()
        if self.children is not None:
            self.children.signal_all(signal.SIGUSR1)


def _preferred(peers: PeerLink | None) -> Callable[[str], bool] | None:
    """With several processes, each prefers to dispatch its own share of the queues."""
    if peers is None:
        return None
    slot, count = peers.slot, peers.count
    return lambda name: zlib.crc32(name.encode("utf-8", "surrogatepass")) % count == slot


def _refuse_start(line: str) -> NoReturn:
    sys.stderr.write("fireworq: %s\n" % line)
    raise SystemExit(1)


def makeService(options: Options) -> FireworqService:
    from twisted.internet import reactor

    try:
        config = with_twistd_logging(options.config, options.parent)
    except LoggingRefused as e:
        _refuse_start(str(e))
    if config.processes > 1 and config.driver == "in-memory":
        _refuse_start("processes %d needs a store the processes share: the sqlite or mysql"
                      " driver, not in-memory" % config.processes)
    become_child(os.environ)
    if config.driver == "sqlite":
        problem = sqlite_path_problem(config.sqlite_path)
        if problem is not None:
            _refuse_start("cannot open %s: %s" % (os.path.abspath(config.sqlite_path), problem))
    try:
        return FireworqService(config, reactor)
    except OSError as e:  # a log file that cannot be opened, say
        _refuse_start("cannot start: %s" % e)
