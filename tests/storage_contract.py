"""The storage contract: one suite that every driver of L{fireworq.storage.Store} must pass.

This module holds no test case of its own (its name does not start with C{test_}); the
driver suites in C{test_storage_contract.py} mix L{StoreContractMixin} into a trial
C{TestCase} and say how to build a fresh store.

Time: every store of a test reads C{self.clock}, a L{Clock} that starts at L{START} and only
moves when a test calls L{StoreContractMixin.advanceTo}. All expected times are computed
with the store's own formula (C{int(seconds * 1000)}), so assertions are exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence, TypeVar

import attrs
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from fireworq.model import (
    Completion,
    CompletionKind,
    Cursor,
    DuplicateJob,
    FailedFilter,
    FailedJob,
    FailedOrder,
    Job,
    JobOptions,
    JobState,
    JobStatus,
    NewJob,
    Page,
    PushedJob,
    QueueDefinition,
    RetriedJob,
    Routing,
    StateCounts,
    UniqueKey,
    WorkerResult,
)
from fireworq.errors import NotStored
from fireworq.storage import Store

T = TypeVar("T")

#: The store clock at the start of every test: 2024-11-28T10:40:00Z.
START = 1_732_790_400.0

#: The largest id a cursor may carry (docs/api.md, Lists and cursors): beyond SQLite's (and
#: BIGINT's) integers.
BEYOND = 2**64 - 1

#: Payloads as the API stores them, and some it never would: the store keeps bytes.
PAYLOADS = (
    b'{"user":42,"lang":"ja"}',
    b"",
    b"\xff\xfe\x00\x80not utf-8\xc3",
    '{"name":"\u65e5\u672c\u8a9e \U0001f600"}'.encode("utf-8"),
)

#: A failure message with HTML characters and text outside ASCII (docs/api.md, Failure log).
FAILURE_MESSAGE = (
    "Cannot parse body as JSON: Expecting value: line 1 column 1 (char 0)\n"
    "Original response body:\n<html>Bad Gateway & \u00abd\u00e9j\u00e0 vu\u00bb</html> "
    "\u65e5\u672c\u8a9e \U0001f600 \u2028"
)

if TYPE_CHECKING:
    _Base = TestCase
else:
    _Base = object


@attrs.frozen
class Taken:
    """A push's handover that hands over these jobs (the others were called back)."""

    indexes: Sequence[int]

    def take(self) -> Sequence[int]:
        return self.indexes


def newJob(
    category: str = "send_welcome",
    url: str = "http://worker.internal:8000/send",
    payload: bytes = b'{"user":42}',
    run_after: int = 0,
    max_retries: int = 3,
    retry_delay: int = 30,
    timeout: int = 10,
) -> NewJob:
    return NewJob(
        category=category, url=url, payload=payload, run_after=run_after,
        max_retries=max_retries, retry_delay=retry_delay, timeout=timeout,
    )


def keyedJob(key: str, window: int = 60, n: int = 0, **changes: Any) -> NewJob:
    """A job with a unique key, remembered ``window`` seconds; ``n`` tells jobs apart."""
    return attrs.evolve(newJob(payload=b'{"n":%d}' % n, **changes),
                        unique=UniqueKey(key, '{"n":%d}' % n, window))


def queue(name: str, **changes: Any) -> QueueDefinition:
    definition = QueueDefinition(name=name, polling_interval=200, max_workers=20)
    return attrs.evolve(definition, **changes)


def utf8(text: str) -> bytes:
    return text.encode("utf-8")


def jobKey(job: Job) -> tuple[int, int]:
    return job.next_try, job.id


def failedKey(order: FailedOrder) -> Callable[[FailedJob], tuple[int, int]]:
    if order is FailedOrder.FAILED:
        return lambda failed: (failed.failed_at, failed.id)
    return lambda failed: (failed.created_at, failed.id)


def atOrAfter(
    keys: Sequence[tuple[int, int]], cursor: Cursor, ascending: bool
) -> list[tuple[int, int]]:
    """The keys at or after the cursor's pair in the list's order (docs/api.md, Lists and
    cursors)."""
    pair = (cursor.time, cursor.id)
    return [key for key in keys if (key >= pair if ascending else key <= pair)]


# One generated case of the list property (see test_listJobsProperty): jobs as
# (push second 0-3, run_after 0-3), how many to grab at second 3, how many seconds more to
# wait before listing, and a cursor (second 0-8, id offset from the first job's id).
_LIST_CASES = st.tuples(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=8),
    st.integers(0, 8),
    st.integers(0, 4),
    st.tuples(st.integers(0, 8), st.integers(0, 9)),
)
ListCase = tuple[list[tuple[int, int]], int, int, tuple[int, int]]


class StoreContractMixin(_Base):
    """
    The behaviour that the API and the dispatchers rely on, for any driver.

    A driver suite subclasses this and C{twisted.trial.unittest.TestCase} and implements
    L{makeStore}, L{otherNode} and L{markGrabbedByNobody}. Everything else is shared.
    """

    clock: Clock
    store: Store

    # -- What a driver suite provides ----------------------------------------------------

    async def makeStore(self) -> Store:
        """
        A fresh, opened, empty store whose clock is C{self.clock}, closed at cleanup.
        """
        raise NotImplementedError()

    async def otherNode(self) -> Store:
        """
        Another node on the same data as C{self.store}, with a grabber of its own: what it
        grabs is not ours, and it sees our grabs as not its own. Closed at cleanup.
        """
        raise NotImplementedError()

    async def markGrabbedByNobody(self, table: str, job_id: int) -> None:
        """
        Set a job to C{grabbed} with no grabber (a NULL C{grabber_id}), as a Fireworq node
        of an older schema or a crash between statements could leave it.
        """
        raise NotImplementedError()

    def ourGrabberId(self) -> int | None:
        """The grabber id C{self.store} marks its grabs with."""
        grabber_id: int | None = getattr(self.store, "grabber_id")
        return grabber_id

    async def addForeignFailure(self, table: str, failed: FailedJob) -> int:
        """
        Write a failure-log entry as a Fireworq node does: its own columns only, none of
        our tables. C{failed.id} is ignored; answers the id the entry got.
        """
        raise NotImplementedError()

    async def breakJobTable(self, table: str) -> None:
        """Make every later insert of a job into C{table} fail with an exception."""
        raise NotImplementedError()

    async def storedJobOptions(self, table: str) -> int:
        """How many jobs of C{table} have job members of our own stored (rows of the
        driver's own table, for the SQL drivers)."""
        raise NotImplementedError()

    # -- Fixture and helpers -------------------------------------------------------------

    async def setUp(self) -> None:  # type: ignore[override]  # trial awaits it
        self.clock = Clock()
        self.clock.advance(START)
        self.store = await self.makeStore()

    def storeNow(self) -> int:
        """The store clock in ms, as the store computes it."""
        return int(self.clock.seconds() * 1000)

    def advanceTo(self, seconds: float) -> None:
        self.assertGreaterEqual(seconds, self.clock.seconds())
        self.clock.advance(seconds - self.clock.seconds())

    async def prepared(self, *tables: str) -> None:
        for table in tables:
            await self.store.prepare_queue(table)

    async def pushOne(self, table: str, job: NewJob | None = None) -> PushedJob:
        [pushed] = await self.store.push([(table, job or newJob())])
        return pushed

    async def getJob(self, table: str, job_id: int) -> Job:
        job = await self.store.get_job(table, job_id)
        assert job is not None, "no job %d in %s" % (job_id, table)
        return job

    async def grabbedJob(self, table: str, job: NewJob | None = None) -> Job:
        """Push one job and grab it; the table must hold no other due job."""
        pushed = await self.pushOne(table, job)
        [grabbed] = await self.store.grab(table, 10)
        self.assertEqual(grabbed.id, pushed.id)
        return grabbed

    async def failureLog(self, table: str) -> list[FailedJob]:
        page = await self.store.list_failed(table, FailedOrder.FAILED, None, 1000)
        self.assertIsNone(page.next_cursor)
        return list(page.items)

    async def walk(
        self,
        fetch: Callable[[Cursor | None, int], Awaitable[Page[T]]],
        key: Callable[[T], tuple[int, int]],
        limit: int,
    ) -> list[tuple[int, int]]:
        """
        Every item of a list, page by page: the keys in the order seen. Checks that only the
        last page is short and that each cursor names the first item of the page it opens.
        """
        seen: list[tuple[int, int]] = []
        cursor: Cursor | None = None
        for _ in range(1000):
            page = await fetch(cursor, limit)
            keys = [key(item) for item in page.items]
            if cursor is not None:
                self.assertTrue(keys, "a cursor opened an empty page")
                self.assertEqual(keys[0], (cursor.time, cursor.id))
            seen += keys
            if page.next_cursor is None:
                self.assertLessEqual(len(keys), limit)
                return seen
            self.assertEqual(len(keys), limit)
            cursor = page.next_cursor
        self.fail("the walk did not end")

    # -- Queue definitions ---------------------------------------------------------------

    async def test_putGetQueue(self) -> None:
        """A stored definition reads back equal; an unknown name reads as L{None}."""
        definition = queue("mail", polling_interval=150, max_workers=7)
        self.assertTrue(await self.store.put_queue(definition))
        self.assertEqual(await self.store.get_queue("mail"), definition)
        self.assertIsNone(await self.store.get_queue("nothing"))
        self.assertEqual(await self.store.list_queues(), [definition])

    async def test_listQueuesByteOrder(self) -> None:
        """L{list_queues} sorts by name in UTF-8 byte order (upper case before lower)."""
        names = [
            "zeta", "Zeta-2", "a_b", "a-b", "a.b", "\u00e9clair", "\uff5aenkaku",
            "\U0001f600smile", "\u65e5\u672c", "mail", "m", "Mail2",
        ]
        for name in names:
            self.assertTrue(await self.store.put_queue(queue(name)))
        listed = [definition.name for definition in await self.store.list_queues()]
        self.assertEqual(listed, sorted(names, key=utf8))

    async def test_queueRevisions(self) -> None:
        """Every change of a definition bumps the queue counter, and only that one."""
        before = await self.store.revisions()
        definition = queue("mail")
        self.assertTrue(await self.store.put_queue(definition))
        after_put = await self.store.revisions()
        self.assertGreater(after_put[0], before[0])
        self.assertEqual(after_put[1], before[1])

        self.assertFalse(await self.store.put_queue(definition))
        self.assertEqual(await self.store.revisions(), after_put)

        changed = attrs.evolve(definition, max_workers=21)
        self.assertTrue(await self.store.put_queue(changed))
        after_change = await self.store.revisions()
        self.assertGreater(after_change[0], after_put[0])
        self.assertEqual(after_change[1], before[1])
        self.assertEqual(await self.store.get_queue("mail"), changed)

        interval = attrs.evolve(changed, polling_interval=1000)
        self.assertTrue(await self.store.put_queue(interval))
        after_interval = await self.store.revisions()
        self.assertGreater(after_interval[0], after_change[0])

        throttled = attrs.evolve(interval, max_dispatches_per_second=2.5, max_burst_size=5)
        self.assertTrue(await self.store.put_queue(throttled))
        after_throttle = await self.store.revisions()
        self.assertGreater(after_throttle[0], after_interval[0])
        self.assertFalse(await self.store.put_queue(throttled))
        self.assertEqual(await self.store.revisions(), after_throttle)

        burst = attrs.evolve(throttled, max_burst_size=6)
        self.assertTrue(await self.store.put_queue(burst))
        after_burst = await self.store.revisions()
        self.assertGreater(after_burst[0], after_throttle[0])

        self.assertEqual(await self.store.delete_queue("mail"), burst)
        after_delete = await self.store.revisions()
        self.assertGreater(after_delete[0], after_burst[0])
        self.assertEqual(after_delete[1], before[1])

        self.assertIsNone(await self.store.delete_queue("mail"))
        self.assertEqual(await self.store.revisions(), after_delete)

    async def test_deleteQueue(self) -> None:
        """Deleting answers the definition as it was; the others stay."""
        mail, jobs = queue("mail", max_workers=3), queue("jobs")
        await self.store.put_queue(mail)
        await self.store.put_queue(jobs)
        self.assertEqual(await self.store.delete_queue("mail"), mail)
        self.assertIsNone(await self.store.get_queue("mail"))
        self.assertEqual(await self.store.list_queues(), [jobs])
        self.assertIsNone(await self.store.delete_queue("mail"))
        self.assertIsNone(await self.store.delete_queue("never"))

    async def test_throttleRoundTrip(self) -> None:
        """
        Throttle members read back: exactly for values a float and MySQL's 7 significant
        digits both hold, within 1e-6 relative for 0.1; storing the same again is no change.
        """
        exact = queue("exact", max_dispatches_per_second=2.5, max_burst_size=5)
        await self.store.put_queue(exact)
        self.assertEqual(await self.store.get_queue("exact"), exact)

        tenth = queue("tenth", max_dispatches_per_second=0.1, max_burst_size=1)
        await self.store.put_queue(tenth)
        found = await self.store.get_queue("tenth")
        assert found is not None
        self.assertAlmostEqual(found.max_dispatches_per_second, 0.1, delta=1e-7)
        self.assertEqual(attrs.evolve(found, max_dispatches_per_second=0.1), tenth)
        revisions = await self.store.revisions()
        self.assertFalse(await self.store.put_queue(tenth))
        self.assertEqual(await self.store.revisions(), revisions)

        self.assertEqual(
            [(d.name, d.throttled) for d in await self.store.list_queues()],
            [("exact", True), ("tenth", True)],
        )

    async def test_throttleRemoved(self) -> None:
        """
        A definition put without a throttle has none, whether the queue had one before or
        had one before it was deleted.
        """
        throttled = queue("mail", max_dispatches_per_second=2.5, max_burst_size=5)
        plain = queue("mail")
        await self.store.put_queue(throttled)
        self.assertTrue(await self.store.put_queue(plain))
        self.assertEqual(await self.store.get_queue("mail"), plain)

        await self.store.put_queue(throttled)
        await self.store.delete_queue("mail")
        self.assertTrue(await self.store.put_queue(plain))
        self.assertEqual(await self.store.get_queue("mail"), plain)
        self.assertEqual(await self.store.list_queues(), [plain])

    # -- Our queue members and the paused flag -------------------------------------------

    async def test_ownMembersRoundTrip(self) -> None:
        """Our members read back, in a single read and in the list; storing the same again
        is no change."""
        kept = queue("kept", failed_job_ttl=86400, failed_job_limit=1000)
        plain = queue("plain")
        self.assertTrue(await self.store.put_queue(kept))
        self.assertTrue(await self.store.put_queue(plain))
        self.assertEqual(await self.store.get_queue("kept"), kept)
        self.assertEqual(await self.store.list_queues(), [kept, plain])
        revisions = await self.store.revisions()
        self.assertFalse(await self.store.put_queue(kept))
        self.assertEqual(await self.store.revisions(), revisions)

    async def test_ownMemberRevisions(self) -> None:
        """
        A change of our members only bumps our counter (Fireworq nodes, which watch theirs,
        would restart every queue); a change of Fireworq's members bumps Fireworq's.
        """
        await self.store.put_queue(queue("mail"))
        start = await self.store.revisions()
        self.assertEqual(len(start), 3)

        self.assertTrue(await self.store.put_queue(queue("mail", failed_job_ttl=60)))
        ours = await self.store.revisions()
        self.assertEqual(ours[:2], start[:2])
        self.assertGreater(ours[2], start[2])

        self.assertTrue(await self.store.put_queue(
            queue("mail", failed_job_ttl=60, max_workers=3)))
        theirs = await self.store.revisions()
        self.assertGreater(theirs[0], ours[0])
        self.assertEqual(theirs[1:], ours[1:])

        # Replaced: a member left out goes back to its default.
        self.assertTrue(await self.store.put_queue(queue("mail", max_workers=3)))
        self.assertEqual(await self.store.get_queue("mail"), queue("mail", max_workers=3))
        self.assertGreater((await self.store.revisions())[2], theirs[2])

    async def test_deliveryPolicyMembersRoundTrip(self) -> None:
        """The delivery policy members (docs/api.md, Delivery policy) read back as stored,
        headers in their order; back at their defaults they are no longer stored."""
        policy = queue(
            "hooks", retry_backoff="exponential", retry_max_delay=600, retry_jitter=True,
            result_mode="webhook", headers=(("X-Tenant", "t\u00e9"), ("Authorization", "x")),
            signing_secrets=("whsec_" + "A" * 32, "whsec_" + "B" * 32))
        self.assertTrue(await self.store.put_queue(policy))
        self.assertEqual(await self.store.get_queue("hooks"), policy)
        self.assertEqual(await self.store.list_queues(), [policy])
        self.assertFalse(await self.store.put_queue(policy))
        self.assertTrue(await self.store.put_queue(queue("hooks")))
        self.assertEqual(await self.store.get_queue("hooks"), queue("hooks"))

    async def test_jobOptionsReadByGrabs(self) -> None:
        """Job members of our own are stored with the job in the push: a grab reads them
        back, retries keep them; inspection does not show them, and a job pushed without
        any stores nothing more."""
        await self.prepared("mail")
        options = JobOptions(retry_backoff="exponential", retry_max_delay=60,
                             retry_jitter=False, headers=(("X-A", "1"), ("X-B", "2")))
        pushed = await self.store.push([
            ("mail", attrs.evolve(newJob(), options=options)), ("mail", newJob())])
        self.assertEqual(await self.storedJobOptions("mail"), 1)
        with_options, plain = await self.store.grab("mail", 10)
        self.assertEqual((with_options.id, plain.id), (pushed[0].id, pushed[1].id))
        self.assertEqual(with_options.options, options)
        self.assertIsNone(plain.options)
        await self.store.complete([Completion(
            "mail", with_options, CompletionKind.RETRY, WorkerResult("failure", 500, ""),
            retry_in=0)])
        inspected = await self.getJob("mail", with_options.id)
        self.assertIsNone(inspected.options)
        [again] = await self.store.grab("mail", 10)
        self.assertEqual(again.options, options)

    async def test_jobOptionsGoWithTheJob(self) -> None:
        """A job's members of our own are removed with it: on success, when it is deleted,
        and with its failure-log entry after a final failure; never while another node
        holds the job."""
        await self.prepared("mail")
        options = JobOptions(retry_jitter=True)
        job = attrs.evolve(newJob(), options=options)
        pushed = await self.store.push([("mail", job)] * 4)
        grabbed = await self.store.grab("mail", 10)
        self.assertEqual(await self.storedJobOptions("mail"), 4)
        await self.store.complete([
            Completion("mail", grabbed[0], CompletionKind.SUCCESS, WorkerResult("success", 200, "")),
            Completion("mail", grabbed[1], CompletionKind.FAIL, WorkerResult("failure", 500, "")),
        ])
        # The failed job's stay with its failure-log entry.
        self.assertEqual(await self.storedJobOptions("mail"), 3)
        [entry] = await self.failureLog("mail")
        await self.store.delete_failed("mail", entry.id)
        self.assertEqual(await self.storedJobOptions("mail"), 2)
        await self.store.delete_job("mail", pushed[2].id)
        self.assertEqual(await self.storedJobOptions("mail"), 1)
        # Not ours any more: the outcome is not written, the members stay with the job.
        await self.store.recover("mail")
        other = await self.otherNode()
        [theirs] = await other.grab("mail", 10)
        await self.store.complete([Completion(
            "mail", grabbed[3], CompletionKind.SUCCESS, WorkerResult("success", 200, ""))])
        self.assertEqual(await self.storedJobOptions("mail"), 1)
        self.assertEqual(theirs.options, options)

    async def test_jobOptionsOfADuplicateNotStored(self) -> None:
        """A keyed push answered as a duplicate stores no job members; the first push's
        stay its job's."""
        await self.prepared("mail")
        first = JobOptions(headers=(("X-A", "first"),))
        [pushed] = await self.store.push(
            [("mail", attrs.evolve(keyedJob("k", n=1), options=first))])
        [again] = await self.store.push([("mail", attrs.evolve(
            keyedJob("k", n=2), options=JobOptions(headers=(("X-A", "second"),))))])
        self.assertIsInstance(again, DuplicateJob)
        self.assertEqual(await self.storedJobOptions("mail"), 1)
        [grabbed] = await self.store.grab("mail", 10)
        self.assertEqual((grabbed.id, grabbed.options), (pushed.id, first))

    async def test_jobOptionsFollowARetriedEntry(self) -> None:
        """Retrying a failure-log entry pushes the job with its members of our own again;
        removing entries in bulk (or by retention) removes theirs."""
        await self.prepared("mail")
        options = JobOptions(retry_backoff="exponential", headers=(("X-A", "1"),))
        await self.store.push([("mail", attrs.evolve(newJob(), options=options)),
                               ("mail", attrs.evolve(newJob(), options=options)),
                               ("mail", newJob())])
        grabbed = await self.store.grab("mail", 10)
        await self.store.complete([
            Completion("mail", job, CompletionKind.FAIL, WorkerResult("failure", 500, ""))
            for job in grabbed])
        self.assertEqual(await self.storedJobOptions("mail"), 2)
        first, second, plain = sorted(await self.failureLog("mail"), key=lambda f: f.job_id)
        [retried] = await self.store.retry_failed(
            "mail", FailedFilter(failure_id=first.id), 1, 0)
        self.assertEqual(retried.job.options, options)
        [retried_plain] = await self.store.retry_failed(
            "mail", FailedFilter(failure_id=plain.id), 1, 0)
        self.assertIsNone(retried_plain.job.options)
        self.assertEqual(await self.storedJobOptions("mail"), 2)
        again = {job.id: job for job in await self.store.grab("mail", 10)}
        self.assertEqual(again[retried.pushed.id].options, options)
        self.assertIsNone(again[retried_plain.pushed.id].options)
        self.assertEqual(await self.store.delete_failed_matching("mail", FailedFilter(), 10), 1)
        self.assertEqual(await self.storedJobOptions("mail"), 1)

    async def test_retryWaitGiven(self) -> None:
        """A retry with a wait of its own (the delivery policy's) is due that many ms from
        now, whatever the job's retry_delay; jobs with other waits in the same write each
        get theirs."""
        await self.prepared("mail")
        await self.store.push([("mail", newJob(retry_delay=30))] * 3)
        first, second, third = await self.store.grab("mail", 10)
        self.advanceTo(START + 2.5)
        now = self.storeNow()
        failure = WorkerResult("failure", 503, "")
        await self.store.complete([
            Completion("mail", first, CompletionKind.RETRY, failure, retry_in=120_000),
            Completion("mail", second, CompletionKind.RETRY, failure, retry_in=1_500),
            Completion("mail", third, CompletionKind.RETRY, failure, retry_in=None),
        ])
        self.assertEqual((await self.getJob("mail", first.id)).next_try, now + 120_000)
        self.assertEqual((await self.getJob("mail", second.id)).next_try, now + 1_500)
        self.assertEqual((await self.getJob("mail", third.id)).next_try, now + 30_000)

    async def test_pauseAndResume(self) -> None:
        """
        Pausing and resuming answer the definition as stored now and bump our counter
        when they change something; a put keeps the flag; an unknown queue is L{None}.
        """
        definition = queue("mail", failed_job_limit=5)
        await self.store.put_queue(definition)
        before = await self.store.revisions()
        paused = attrs.evolve(definition, paused=True)
        self.assertEqual(await self.store.set_paused("mail", True), paused)
        self.assertEqual(await self.store.get_queue("mail"), paused)
        after = await self.store.revisions()
        self.assertEqual(after[:2], before[:2])
        self.assertGreater(after[2], before[2])
        self.assertEqual(await self.store.set_paused("mail", True), paused)
        self.assertEqual(await self.store.revisions(), after)

        # A put with the same definition changes nothing; another keeps the flag.
        self.assertFalse(await self.store.put_queue(definition))
        changed = queue("mail", max_workers=4, failed_job_ttl=10)
        self.assertTrue(await self.store.put_queue(changed))
        self.assertEqual(await self.store.get_queue("mail"), attrs.evolve(changed, paused=True))
        self.assertEqual(await self.store.list_queues(), [attrs.evolve(changed, paused=True)])

        self.assertEqual(await self.store.set_paused("mail", False), changed)
        self.assertEqual(await self.store.get_queue("mail"), changed)
        self.assertIsNone(await self.store.set_paused("nothing", True))
        self.assertIsNone(await self.store.get_queue("nothing"))

    async def test_pauseSeenByOtherNode(self) -> None:
        """Another node on the same data reads the flag and the counter."""
        await self.store.put_queue(queue("mail"))
        other = await self.otherNode()
        before = await other.revisions()
        await self.store.set_paused("mail", True)
        self.assertEqual(await other.get_queue("mail"), queue("mail", paused=True))
        self.assertGreater((await other.revisions())[2], before[2])

    async def test_deleteForgetsOwnMembers(self) -> None:
        """A deleted queue defined again starts with none of its old members, unpaused."""
        await self.store.put_queue(queue("mail", failed_job_ttl=7))
        await self.store.set_paused("mail", True)
        self.assertEqual(await self.store.delete_queue("mail"),
                         queue("mail", failed_job_ttl=7, paused=True))
        self.assertTrue(await self.store.put_queue(queue("mail")))
        self.assertEqual(await self.store.get_queue("mail"), queue("mail"))

    # -- Routings ------------------------------------------------------------------------

    async def test_routings(self) -> None:
        """Routings: put, get, no-change put, change, and their own counter."""
        before = await self.store.revisions()
        routing = Routing(queue_name="mail", job_category="send_welcome")
        self.assertTrue(await self.store.put_routing(routing))
        self.assertEqual(await self.store.get_routing("send_welcome"), routing)
        self.assertIsNone(await self.store.get_routing("send"))
        after_put = await self.store.revisions()
        self.assertEqual(after_put[0], before[0])
        self.assertGreater(after_put[1], before[1])

        self.assertFalse(await self.store.put_routing(routing))
        self.assertEqual(await self.store.revisions(), after_put)

        moved = Routing(queue_name="bulk", job_category="send_welcome")
        self.assertTrue(await self.store.put_routing(moved))
        self.assertEqual(await self.store.get_routing("send_welcome"), moved)
        after_move = await self.store.revisions()
        self.assertGreater(after_move[1], after_put[1])
        self.assertEqual(after_move[0], before[0])
        self.assertEqual(await self.store.list_routings(), [moved])

    async def test_listRoutingsOrder(self) -> None:
        """L{list_routings} sorts by queue name, then category, both in UTF-8 byte order."""
        routings = [
            Routing("mail", "\u00e9t\u00e9"),
            Routing("mail", "zebra"),
            Routing("mail", "Zebra"),
            Routing("Mail", "b"),
            Routing("\u65e5\u672c", "\U0001f600"),
            Routing("\uff4dail", "a"),
            Routing("mail", "\u30e1\u30fc\u30eb/\u9001\u4fe1"),
            Routing("a", "z"),
        ]
        for routing in routings:
            self.assertTrue(await self.store.put_routing(routing))
        expected = sorted(routings, key=lambda r: (utf8(r.queue_name), utf8(r.job_category)))
        self.assertEqual(await self.store.list_routings(), expected)

    async def test_deleteRouting(self) -> None:
        """Deleting answers the routing as it was and bumps the routing counter only."""
        routing = Routing("mail", "send_welcome")
        other = Routing("mail", "send_bye")
        await self.store.put_routing(routing)
        await self.store.put_routing(other)
        before = await self.store.revisions()
        self.assertEqual(await self.store.delete_routing("send_welcome"), routing)
        after = await self.store.revisions()
        self.assertGreater(after[1], before[1])
        self.assertEqual(after[0], before[0])
        self.assertIsNone(await self.store.get_routing("send_welcome"))
        self.assertEqual(await self.store.list_routings(), [other])
        self.assertIsNone(await self.store.delete_routing("send_welcome"))
        self.assertEqual(await self.store.revisions(), after)

    # -- Push ----------------------------------------------------------------------------

    async def test_pushSeveralTables(self) -> None:
        """
        One push stores jobs of several tables; ids grow with push order within each table,
        every job is created now and due after its C{run_after}.
        """
        await self.prepared("mail", "bulk")
        self.advanceTo(START + 12.5)
        now = self.storeNow()
        pushed = await self.store.push(
            [
                ("mail", newJob(run_after=0)),
                ("bulk", newJob(run_after=5)),
                ("mail", newJob(run_after=60)),
                ("bulk", newJob(run_after=0)),
                ("mail", newJob(run_after=1)),
            ]
        )
        self.assertEqual(len(pushed), 5)
        for job, run_after in zip(pushed, [0, 5, 60, 0, 1]):
            self.assertEqual(job.created_at, now)
            self.assertEqual(job.next_try, now + run_after * 1000)
        mail = [pushed[0].id, pushed[2].id, pushed[4].id]
        bulk = [pushed[1].id, pushed[3].id]
        for ids in (mail, bulk):
            self.assertEqual(ids, sorted(set(ids)))
            self.assertGreater(ids[0], 0)
        for table, ids in (("mail", mail), ("bulk", bulk)):
            for job_id in ids:
                self.assertIsNotNone(await self.store.get_job(table, job_id))

        later = await self.pushOne("mail")
        self.assertGreater(later.id, mail[-1])

    async def test_pushHandover(self) -> None:
        """
        With a handover, only the jobs it hands over are stored, with the ids they are
        answered; the others (called back) are answered ``NotStored`` and never stored.
        """
        await self.prepared("mail", "bulk")
        jobs = [("mail", newJob(payload=b"%d" % n)) if n % 3 else ("bulk", newJob(
            payload=b"%d" % n)) for n in range(6)]
        answers = await self.store.push(jobs, Taken([1, 2, 4]))
        for n, answer in enumerate(answers):
            if n in (1, 2, 4):
                assert isinstance(answer, PushedJob), answer
                self.assertEqual((await self.getJob(jobs[n][0], answer.id)).payload, b"%d" % n)
            else:
                self.assertIsInstance(answer, NotStored)
        for table in ("mail", "bulk"):
            page = await self.store.list_jobs(table, JobState.WAITING, True, None, 100)
            self.assertEqual(sorted(job.payload for job in page.items),
                             sorted(b"%d" % n for n in (1, 2, 4) if jobs[n][0] == table))

    async def test_pushHandoverNothing(self) -> None:
        """When a handover hands over nothing, nothing is stored."""
        await self.prepared("mail")
        answers = await self.store.push([("mail", newJob()), ("mail", newJob())], Taken([]))
        self.assertEqual([type(answer) for answer in answers], [NotStored, NotStored])
        self.assertEqual((await self.store.counts(["mail"]))["mail"], StateCounts())
        self.assertEqual((await self.pushOne("mail")).id, 1)

    # -- Batch pushes and unique keys (docs/api.md, POST /jobs, Idempotent pushes) ------

    async def allJobs(self, table: str) -> list[Job]:
        page = await self.store.list_jobs(table, JobState.WAITING, True, None, 1000)
        deferred = await self.store.list_jobs(table, JobState.DEFERRED, True, None, 1000)
        return [*page.items, *deferred.items]

    async def test_pushIsAtomic(self) -> None:
        """When one job of a push cannot be inserted (its table is gone), none of the push
        is stored: not the jobs of the other table, not the unique keys."""
        await self.prepared("mail", "bulk")
        await self.breakJobTable("bulk")
        jobs = [("mail", keyedJob("k%d" % n, n=n)) for n in range(5)]
        jobs.insert(3, ("bulk", newJob()))
        with self.assertRaises(Exception):
            await self.store.push(jobs, None, [0] * len(jobs))
        self.assertEqual(await self.allJobs("mail"), [])
        self.assertEqual(await self.store.prune_unique_keys("mail", 0, 100), 0)

    async def test_pushGroupsHandover(self) -> None:
        """With groups, a handover hands over whole requests: their jobs are stored, the
        jobs of the others are answered ``NotStored``."""
        await self.prepared("mail")
        jobs = [("mail", newJob(payload=b"%d" % n)) for n in range(6)]
        answers = await self.store.push(jobs, Taken([0, 3, 4, 5]), [0, 1, 1, 2, 2, 2])
        self.assertEqual([type(answer) for answer in answers],
                         [PushedJob, NotStored, NotStored, PushedJob, PushedJob, PushedJob])
        self.assertEqual(sorted(job.payload for job in await self.allJobs("mail")),
                         [b"0", b"3", b"4", b"5"])

    async def test_uniqueKeyDuplicate(self) -> None:
        """A second push with a key stores nothing and is answered the first push's job
        and answer, even after the first job ran (was deleted); other keys, and the same
        key in another table, are stored."""
        await self.prepared("mail", "bulk")
        self.advanceTo(START + 3)
        first = await self.pushOne("mail", keyedJob("order-1", n=1, run_after=5, timeout=7))
        assert isinstance(first, PushedJob)
        await self.store.delete_job("mail", first.id)
        self.advanceTo(START + 50)
        again = await self.pushOne("mail", keyedJob("order-1", n=2, max_retries=9))
        self.assertEqual(again, DuplicateJob(first, attrs.evolve(
            keyedJob("order-1", n=1, run_after=5, timeout=7), payload=b"",
            unique=UniqueKey("order-1", '{"n":1}'))))
        other = await self.store.push([("mail", keyedJob("order-2", n=3)),
                                       ("bulk", keyedJob("order-1", n=4))])
        self.assertEqual([type(answer) for answer in other], [PushedJob, PushedJob])
        self.assertEqual([job.payload for job in await self.allJobs("mail")], [b'{"n":3}'])

    async def test_uniqueKeyInOnePush(self) -> None:
        """Two jobs with one key in one push: the first is stored, the second is its
        duplicate; jobs without a key or with a window of 0 are always stored."""
        await self.prepared("mail")
        answers = await self.store.push([
            ("mail", keyedJob("k", n=1)), ("mail", newJob()), ("mail", keyedJob("k", n=2)),
            ("mail", keyedJob("z", window=0, n=3)), ("mail", keyedJob("z", window=0, n=4)),
        ])
        first = answers[0]
        assert isinstance(first, PushedJob)
        duplicate = answers[2]
        assert isinstance(duplicate, DuplicateJob), duplicate
        self.assertEqual(duplicate.pushed, first)
        self.assertEqual([type(answer) for answer in answers[3:]], [PushedJob, PushedJob])
        self.assertEqual(len(await self.allJobs("mail")), 4)

    async def test_uniqueKeyWindow(self) -> None:
        """A key stored a window ago or earlier is forgotten: the push is stored, and its
        key answers later pushes."""
        await self.prepared("mail")
        first = await self.pushOne("mail", keyedJob("k", window=10, n=1))
        self.advanceTo(START + 9.999)
        self.assertIsInstance(await self.pushOne("mail", keyedJob("k", window=10)),
                              DuplicateJob)
        self.advanceTo(START + 10)
        second = await self.pushOne("mail", keyedJob("k", window=10, n=2))
        assert isinstance(second, PushedJob)
        self.assertNotEqual(second.id, first.id)
        third = await self.pushOne("mail", keyedJob("k", window=10, n=3))
        assert isinstance(third, DuplicateJob)
        self.assertEqual(third.pushed, second)
        self.assertEqual(third.job.unique, UniqueKey("k", '{"n":2}'))

    async def test_pruneUniqueKeys(self) -> None:
        """Pruning forgets, up to a limit a call, the keys stored a window ago or earlier,
        oldest first; the others still answer duplicates."""
        await self.prepared("mail")
        for n in range(5):
            self.advanceTo(START + n)
            await self.pushOne("mail", keyedJob("k%d" % n, n=n))
        self.advanceTo(START + 63)
        self.assertEqual(await self.store.prune_unique_keys("mail", 60, 2), 2)
        self.assertEqual(await self.store.prune_unique_keys("mail", 60, 2), 2)
        self.assertEqual(await self.store.prune_unique_keys("mail", 60, 2), 0)
        answers = await self.store.push([("mail", keyedJob("k%d" % n)) for n in range(5)])
        self.assertEqual([type(answer) for answer in answers],
                         [PushedJob] * 4 + [DuplicateJob])

    async def test_concurrentUniqueKeys(self) -> None:
        """Pushes of one key from two nodes at once, alone and in batches, store one job
        per key."""
        await self.prepared("mail")
        other = await self.otherNode()
        await other.prepare_queue("mail")
        calls = []
        for n in range(10):
            store = self.store if n % 2 else other
            calls.append(Deferred.fromCoroutine(store.push(
                [("mail", keyedJob("same", n=n))] if n % 3 else
                [("mail", keyedJob("k%d" % m, n=n)) for m in range(5, 0, -1)])))
        results = await DeferredList(calls, fireOnOneErrback=True, consumeErrors=True)
        answers = [answer for _, value in results for answer in value]
        stored = [answer for answer in answers if isinstance(answer, PushedJob)]
        self.assertEqual(len(stored), 6)  # "same" and k1 to k5
        self.assertEqual(sorted(job.id for job in await self.allJobs("mail")),
                         sorted(job.id for job in stored))
        for answer in answers:
            if isinstance(answer, DuplicateJob):
                self.assertIn(answer.pushed, stored)

    async def test_pushEmpty(self) -> None:
        """Pushing nothing stores nothing."""
        self.assertEqual(await self.store.push([]), [])

    async def test_pushedJobReadsBack(self) -> None:
        """Every member of a pushed job reads back; payloads byte for byte."""
        await self.prepared("mail")
        category = "\u30e1\u30fc\u30eb.\u9001\u4fe1/\U0001f389 <&>"
        url = "http://worker.internal:8000/send?to=%E6%97%A5&x=1"
        jobs = [
            newJob(
                category=category, url=url, payload=payload, run_after=index * 7,
                max_retries=index, retry_delay=30 + index, timeout=index * 10,
            )
            for index, payload in enumerate(PAYLOADS)
        ]
        pushed = await self.store.push([("mail", job) for job in jobs])
        for new, done in zip(jobs, pushed):
            expected = Job(
                id=done.id, category=category, url=url, payload=new.payload,
                status=JobStatus.CLAIMED, created_at=done.created_at,
                next_try=done.created_at + new.run_after * 1000, retry_count=new.max_retries,
                retry_delay=new.retry_delay, fail_count=0, timeout=new.timeout,
                grabber_id=None,
            )
            job = await self.getJob("mail", done.id)
            self.assertEqual(job, expected)
            self.assertIsInstance(job.payload, bytes)
            self.assertEqual(job.max_retries, new.max_retries)

    async def test_idsGrowAfterDelete(self) -> None:
        """A job id is never given again, even after the latest job was deleted."""
        await self.prepared("mail")
        first = await self.pushOne("mail")
        await self.store.delete_job("mail", first.id)
        second = await self.pushOne("mail")
        self.assertGreater(second.id, first.id)
        [grabbed] = await self.store.grab("mail", 10)
        self.assertEqual(grabbed.id, second.id)
        await self.store.complete(
            [Completion("mail", grabbed, CompletionKind.SUCCESS, WorkerResult("success", 200, ""))]
        )
        third = await self.pushOne("mail")
        self.assertGreater(third.id, grabbed.id)

    # -- Due tables ----------------------------------------------------------------------

    async def test_dueTables(self) -> None:
        """
        Only tables holding a due C{claimed} job are due; a deferred job becomes due when
        the clock reaches its C{next_try}, a grabbed one never counts.
        """
        await self.prepared("now", "later", "empty", "taken")
        await self.pushOne("now")
        later = await self.pushOne("later", newJob(run_after=10))
        await self.grabbedJob("taken")
        tables = ["now", "later", "empty", "taken"]
        self.assertEqual(await self.store.due_tables(tables), {"now"})
        self.assertEqual(await self.store.due_tables(["later", "empty"]), set())

        self.advanceTo(later.next_try / 1000 - 0.001)
        self.assertEqual(await self.store.due_tables(tables), {"now"})
        self.advanceTo(later.next_try / 1000)
        self.assertEqual(self.storeNow(), later.next_try)
        self.assertEqual(await self.store.due_tables(tables), {"now", "later"})

    async def test_dueTablesEmpty(self) -> None:
        """No tables asked, none due."""
        self.assertEqual(await self.store.due_tables([]), set())

    # -- Grab ----------------------------------------------------------------------------

    async def test_grabOrderAndLimit(self) -> None:
        """
        A grab takes at most C{limit} due jobs in (C{next_try}, id) order, marks them
        grabbed by this node, and never hands them out again.
        """
        await self.prepared("mail")
        a = await self.pushOne("mail", newJob(run_after=2))
        b = await self.pushOne("mail", newJob(run_after=0))
        self.advanceTo(START + 1)
        c = await self.pushOne("mail", newJob(run_after=0))
        d = await self.pushOne("mail", newJob(run_after=1))
        e = await self.pushOne("mail", newJob(run_after=100))
        self.advanceTo(START + 2)
        # next_try: b=0s, c=1s, a=2s, d=2s (a before d by id); e not due.

        first = await self.store.grab("mail", 2)
        self.assertEqual([job.id for job in first], [b.id, c.id])
        for job in first:
            self.assertEqual(job.status, JobStatus.GRABBED)
            self.assertEqual(job.grabber_id, self.ourGrabberId())
            self.assertEqual(await self.getJob("mail", job.id), job)

        rest = await self.store.grab("mail", 10)
        self.assertEqual([job.id for job in rest], [a.id, d.id])
        self.assertEqual(await self.store.grab("mail", 10), [])

        stored = await self.getJob("mail", e.id)
        self.assertEqual(stored.status, JobStatus.CLAIMED)
        self.advanceTo(e.next_try / 1000)
        [last] = await self.store.grab("mail", 10)
        self.assertEqual(last, attrs.evolve(
            stored, status=JobStatus.GRABBED, grabber_id=self.ourGrabberId()
        ))

    async def test_grabOtherTableUntouched(self) -> None:
        """A grab of one table leaves the jobs of another alone."""
        await self.prepared("mail", "bulk")
        await self.pushOne("mail")
        bulk = await self.pushOne("bulk")
        await self.store.grab("mail", 10)
        self.assertEqual((await self.getJob("bulk", bulk.id)).status, JobStatus.CLAIMED)
        self.assertEqual(await self.store.due_tables(["mail", "bulk"]), {"bulk"})

    # -- Complete ------------------------------------------------------------------------

    async def test_completeSuccess(self) -> None:
        """A success removes the job and writes no failure."""
        await self.prepared("mail")
        job = await self.grabbedJob("mail")
        await self.store.complete(
            [Completion("mail", job, CompletionKind.SUCCESS, WorkerResult("success", 200, ""))]
        )
        self.assertIsNone(await self.store.get_job("mail", job.id))
        self.assertEqual(await self.failureLog("mail"), [])

    async def test_completeRetry(self) -> None:
        """
        A retry sets the job back to C{claimed}, due C{retry_delay} from now, with one retry
        less and one failure more; it is grabbed again once due.
        """
        await self.prepared("mail")
        job = await self.grabbedJob("mail", newJob(max_retries=2, retry_delay=30))
        self.advanceTo(START + 3.25)
        now = self.storeNow()
        await self.store.complete(
            [Completion("mail", job, CompletionKind.RETRY, WorkerResult("failure", 500, "x"))]
        )
        retried = await self.getJob("mail", job.id)
        self.assertEqual(retried, attrs.evolve(
            job, status=JobStatus.CLAIMED, grabber_id=None, next_try=now + 30_000,
            retry_count=1, fail_count=1,
        ))
        self.assertEqual(retried.max_retries, 2)
        self.assertEqual(await self.failureLog("mail"), [])
        self.assertEqual(await self.store.due_tables(["mail"]), set())
        self.assertEqual(await self.store.grab("mail", 10), [])

        self.advanceTo(retried.next_try / 1000)
        self.assertEqual(await self.store.due_tables(["mail"]), {"mail"})
        [again] = await self.store.grab("mail", 10)
        self.assertEqual(again, attrs.evolve(
            retried, status=JobStatus.GRABBED, grabber_id=self.ourGrabberId()
        ))

    async def test_completeFail(self) -> None:
        """
        A final failure removes the job and writes one failure-log entry: the job's members,
        the last result, C{fail_count} + 1, failed now, created when the job was pushed.
        """
        await self.prepared("mail")
        category = "\u30e1\u30fc\u30eb \U0001f389"
        url = "http://worker.internal:8000/send?a=1&b=<2>"
        for payload in PAYLOADS:
            self.advanceTo(self.clock.seconds() + 1)
            job = await self.grabbedJob(
                "mail", newJob(category=category, url=url, payload=payload, max_retries=0)
            )
            self.advanceTo(self.clock.seconds() + 2.5)
            result = WorkerResult("failure", 502, FAILURE_MESSAGE)
            await self.store.complete([Completion("mail", job, CompletionKind.FAIL, result)])
            self.assertIsNone(await self.store.get_job("mail", job.id))
            [failed] = [f for f in await self.failureLog("mail") if f.job_id == job.id]
            self.assertGreater(failed.id, 0)
            self.assertEqual(failed, FailedJob(
                id=failed.id, job_id=job.id, category=category, url=url, payload=payload,
                result=result, fail_count=1, failed_at=self.storeNow(),
                created_at=job.created_at,
            ))
            self.assertEqual(await self.store.get_failed("mail", failed.id), failed)
        self.assertEqual(len(await self.failureLog("mail")), len(PAYLOADS))

    async def test_completeFailAfterRetries(self) -> None:
        """The failure log counts every failed attempt and keeps the last result only."""
        await self.prepared("mail")
        job = await self.grabbedJob("mail", newJob(max_retries=2, retry_delay=5))
        for attempt in (1, 2):
            await self.store.complete([Completion(
                "mail", job, CompletionKind.RETRY, WorkerResult("failure", 500, "try %d" % attempt)
            )])
            self.advanceTo(self.clock.seconds() + 5)
            [job] = await self.store.grab("mail", 10)
            self.assertEqual((job.fail_count, job.retry_count), (attempt, 2 - attempt))
        last = WorkerResult("permanent-failure", 410, "gone")
        await self.store.complete([Completion("mail", job, CompletionKind.FAIL, last)])
        [failed] = await self.failureLog("mail")
        self.assertEqual((failed.job_id, failed.fail_count, failed.result), (job.id, 3, last))
        self.assertEqual(failed.created_at, START * 1000)

    async def test_completeDeletedJob(self) -> None:
        """The outcome of a job deleted during its delivery is not written."""
        await self.prepared("mail")
        for kind in CompletionKind:
            job = await self.grabbedJob("mail")
            self.assertEqual(await self.store.delete_job("mail", job.id), job)
            await self.store.complete(
                [Completion("mail", job, kind, WorkerResult("failure", 500, "late"))]
            )
            self.assertIsNone(await self.store.get_job("mail", job.id))
        self.assertEqual(await self.failureLog("mail"), [])
        self.assertEqual(await self.store.counts(["mail"]), {"mail": StateCounts()})

    async def test_completeForeignGrabber(self) -> None:
        """
        A completion carrying another grabber than the job's (the job was recovered and
        grabbed again by another node meanwhile) changes nothing.
        """
        await self.prepared("mail")
        for kind in CompletionKind:
            job = await self.grabbedJob("mail", newJob(max_retries=1))
            assert job.grabber_id is not None
            stale = attrs.evolve(job, grabber_id=job.grabber_id ^ 0x5A5A)
            await self.store.complete(
                [Completion("mail", stale, kind, WorkerResult("failure", 500, "stale"))]
            )
            self.assertEqual(await self.getJob("mail", job.id), job)
            await self.store.delete_job("mail", job.id)
        self.assertEqual(await self.failureLog("mail"), [])

    async def test_completeAfterTakeover(self) -> None:
        """
        When another node recovered a job we grabbed and grabbed it itself, our late
        outcome is not written, and its own outcome is.
        """
        await self.prepared("mail")
        ours = await self.grabbedJob("mail")
        other = await self.otherNode()
        await other.prepare_queue("mail")
        self.assertEqual(await other.recover("mail"), 1)
        [theirs] = await other.grab("mail", 10)
        self.assertEqual(theirs.id, ours.id)
        self.assertNotEqual(theirs.grabber_id, ours.grabber_id)
        for kind in CompletionKind:
            await self.store.complete(
                [Completion("mail", ours, kind, WorkerResult("failure", 500, "late"))]
            )
            self.assertEqual(await self.getJob("mail", ours.id), theirs)
        self.assertEqual(await self.failureLog("mail"), [])

        await other.complete(
            [Completion("mail", theirs, CompletionKind.FAIL, WorkerResult("failure", 500, "x"))]
        )
        self.assertIsNone(await self.store.get_job("mail", ours.id))
        [failed] = await self.failureLog("mail")
        self.assertEqual(failed.job_id, ours.id)

    async def test_completeNotGrabbed(self) -> None:
        """
        A completion for a job that is C{claimed} (never grabbed, retried, or recovered)
        changes nothing, whatever grabber it carries.
        """
        await self.prepared("mail")
        pushed = await self.pushOne("mail", newJob(run_after=100))
        claimed = await self.getJob("mail", pushed.id)
        for grabber_id in (None, self.ourGrabberId()):
            job = attrs.evolve(claimed, grabber_id=grabber_id)
            for kind in CompletionKind:
                await self.store.complete(
                    [Completion("mail", job, kind, WorkerResult("failure", 500, "no"))]
                )
                self.assertEqual(await self.getJob("mail", pushed.id), claimed)
        self.assertEqual(await self.failureLog("mail"), [])

    async def test_completeGrabbedByNobody(self) -> None:
        """
        A job marked grabbed without a grabber is nobody's: a completion without a
        grabber does not write it.
        """
        await self.prepared("mail")
        pushed = await self.pushOne("mail")
        await self.markGrabbedByNobody("mail", pushed.id)
        orphan = await self.getJob("mail", pushed.id)
        self.assertEqual((orphan.status, orphan.grabber_id), (JobStatus.GRABBED, None))
        for kind in CompletionKind:
            await self.store.complete(
                [Completion("mail", orphan, kind, WorkerResult("failure", 500, "no"))]
            )
            self.assertEqual(await self.getJob("mail", pushed.id), orphan)
        self.assertEqual(await self.failureLog("mail"), [])

    async def test_completeSeveral(self) -> None:
        """Several outcomes, of several tables, written by one call, all apply."""
        await self.prepared("mail", "bulk")
        pushed = await self.store.push(
            [("mail", newJob(max_retries=1)) for _ in range(4)]
            + [("bulk", newJob(max_retries=1)) for _ in range(3)]
        )
        mail = await self.store.grab("mail", 10)
        bulk = await self.store.grab("bulk", 10)
        self.assertEqual(len(mail) + len(bulk), len(pushed))
        gone = await self.store.delete_job("mail", mail[3].id)
        assert gone is not None
        self.advanceTo(START + 1)
        now = self.storeNow()
        failure = WorkerResult("failure", 500, "boom")
        await self.store.complete([
            Completion("mail", mail[0], CompletionKind.SUCCESS, WorkerResult("success", 200, "")),
            Completion("bulk", bulk[0], CompletionKind.RETRY, failure),
            Completion("mail", mail[1], CompletionKind.FAIL, failure),
            Completion("bulk", bulk[1], CompletionKind.SUCCESS, WorkerResult("success", 200, "")),
            Completion("mail", mail[2], CompletionKind.RETRY, failure),
            Completion("mail", mail[3], CompletionKind.FAIL, failure),
            Completion("bulk", bulk[2], CompletionKind.FAIL, failure),
        ])
        self.assertIsNone(await self.store.get_job("mail", mail[0].id))
        self.assertIsNone(await self.store.get_job("mail", mail[1].id))
        self.assertIsNone(await self.store.get_job("bulk", bulk[1].id))
        self.assertIsNone(await self.store.get_job("bulk", bulk[2].id))
        for table, job in (("bulk", bulk[0]), ("mail", mail[2])):
            self.assertEqual(await self.getJob(table, job.id), attrs.evolve(
                job, status=JobStatus.CLAIMED, grabber_id=None, next_try=now + 30_000,
                retry_count=0, fail_count=1,
            ))
        self.assertEqual([f.job_id for f in await self.failureLog("mail")], [mail[1].id])
        self.assertEqual([f.job_id for f in await self.failureLog("bulk")], [bulk[2].id])
        self.assertEqual(
            await self.store.counts(["mail", "bulk"]),
            {"mail": StateCounts(deferred=1, failed=1), "bulk": StateCounts(deferred=1, failed=1)},
        )

    # -- Recover -------------------------------------------------------------------------

    async def test_recover(self) -> None:
        """
        Every grabbed job goes back to C{claimed} with its C{next_try} and counters, whoever
        grabbed it (another grabber, or none), except the deliveries in flight named in
        C{keep}: a pair of job id and the grabber id it was grabbed with.
        """
        await self.prepared("mail", "bulk")
        other = await self.otherNode()
        await other.prepare_queue("mail")
        # A job with counters: one retry, then grabbed by the other node.
        retried = await self.grabbedJob("mail", newJob(max_retries=3, retry_delay=2))
        await self.store.complete([
            Completion("mail", retried, CompletionKind.RETRY, WorkerResult("failure", 500, ""))
        ])
        self.advanceTo(START + 2)
        [theirs] = await other.grab("mail", 10)
        self.assertEqual((theirs.id, theirs.fail_count, theirs.retry_count), (retried.id, 1, 2))
        self.advanceTo(START + 3)
        pushed = await self.store.push([("mail", newJob(run_after=r)) for r in (0, 0, 0, 50)])
        [ours] = await self.store.grab("mail", 1)
        self.assertEqual(ours.id, pushed[0].id)
        [theirs_too] = await other.grab("mail", 1)
        self.assertEqual(theirs_too.id, pushed[1].id)
        await self.markGrabbedByNobody("mail", pushed[2].id)
        nobodys = await self.getJob("mail", pushed[2].id)
        deferred = await self.getJob("mail", pushed[3].id)
        bulk = await self.grabbedJob("bulk")

        self.advanceTo(START + 10)
        in_flight = [(ours.id, ours.grabber_id)]
        self.assertEqual(await self.store.recover("mail", in_flight), 3)
        for job in (theirs, theirs_too, nobodys):
            self.assertEqual(
                await self.getJob("mail", job.id),
                attrs.evolve(job, status=JobStatus.CLAIMED, grabber_id=None),
            )
        self.assertEqual(await self.getJob("mail", ours.id), ours)
        self.assertEqual(await self.getJob("mail", deferred.id), deferred)
        self.assertEqual(await self.getJob("bulk", bulk.id), bulk)
        self.assertEqual(await self.store.recover("mail", in_flight), 0)

        regrabbed = await self.store.grab("mail", 10)
        self.assertEqual(
            [job.id for job in regrabbed], [theirs.id, theirs_too.id, nobodys.id]
        )
        # A job is kept only with the grabber it was grabbed with.
        assert ours.grabber_id is not None
        stale = [(ours.id, ours.grabber_id ^ 0x5A5A), *((j.id, j.grabber_id) for j in regrabbed)]
        self.assertEqual(await self.store.recover("mail", stale), 1)
        self.assertEqual(
            await self.getJob("mail", ours.id),
            attrs.evolve(ours, status=JobStatus.CLAIMED, grabber_id=None),
        )
        # Nothing in flight: every grabbed job, from any node's side.
        self.assertEqual(await other.recover("mail"), 3)
        self.assertEqual(
            (await self.store.counts(["mail"]))["mail"], StateCounts(waiting=4, deferred=1)
        )
        self.assertEqual(await self.store.recover("bulk"), 1)

    async def test_recoverManyInFlight(self) -> None:
        """Thousands of deliveries in flight are kept, more than some servers allow
        statement parameters."""
        await self.prepared("mail")
        await self.store.push([("mail", newJob()) for _ in range(1200)])
        grabbed = await self.store.grab("mail", 1200)
        self.assertEqual(len(grabbed), 1200)
        keep = [(job.id, job.grabber_id) for job in grabbed[1:]]
        self.assertEqual(await self.store.recover("mail", keep), 1)
        self.assertEqual((await self.store.counts(["mail"]))["mail"],
                         StateCounts(waiting=1, grabbed=1199))

    async def test_recoverEmpty(self) -> None:
        """Recovering a table with nothing grabbed recovers nothing."""
        await self.prepared("mail")
        self.assertEqual(await self.store.recover("mail"), 0)
        await self.pushOne("mail")
        self.assertEqual(await self.store.recover("mail"), 0)

    # -- Inspection lists ----------------------------------------------------------------

    async def listJobsFixture(self) -> dict[JobState, list[tuple[int, int]]]:
        """
        Jobs of table C{mail} in all three states with ties on C{next_try}: the keys of
        each state in ascending order, at the clock where the lists are to be read.
        """
        await self.prepared("mail")
        t0 = START
        # Pushed at t0: next_try t0 x3, t0+5 x2, t0+10 x2; at t0+1: t0+1, t0+5, t0+21.
        first = await self.store.push(
            [("mail", newJob(run_after=r)) for r in (0, 5, 0, 10, 5, 0, 10)]
        )
        self.advanceTo(t0 + 1)
        second = await self.store.push(
            [("mail", newJob(run_after=r)) for r in (4, 0, 20)]
        )
        grabbed = await self.store.grab("mail", 2)
        self.advanceTo(t0 + 5)
        now = self.storeNow()
        keys = sorted((job.next_try, job.id) for job in [*first, *second])
        grabbed_keys = [jobKey(job) for job in grabbed]
        self.assertEqual(grabbed_keys, keys[:2])
        claimed = keys[2:]
        return {
            JobState.GRABBED: grabbed_keys,
            JobState.WAITING: [key for key in claimed if key[0] <= now],
            JobState.DEFERRED: [key for key in claimed if key[0] > now],
        }

    async def test_listJobsStates(self) -> None:
        """
        Each list holds its state's jobs (C{next_try} equal to now is waiting), ascending
        or descending, ties on C{next_try} by id in the same direction.
        """
        states = await self.listJobsFixture()
        self.assertEqual(
            {state: len(keys) for state, keys in states.items()},
            {JobState.GRABBED: 2, JobState.WAITING: 5, JobState.DEFERRED: 3},
        )
        for state, keys in states.items():
            for ascending in (True, False):
                page = await self.store.list_jobs("mail", state, ascending, None, 100)
                self.assertEqual(
                    [jobKey(job) for job in page.items], keys if ascending else keys[::-1]
                )
                self.assertIsNone(page.next_cursor)
                for job in page.items:
                    self.assertEqual(await self.getJob("mail", job.id), job)
                    expected = JobStatus.GRABBED if state is JobState.GRABBED else JobStatus.CLAIMED
                    self.assertEqual(job.status, expected)

    async def test_listJobsPages(self) -> None:
        """
        A page holds at most C{limit} jobs; C{next_cursor} names the first job of the next
        page, and is L{None} on the last page, also when it is exactly full.
        """
        states = await self.listJobsFixture()
        waiting = states[JobState.WAITING]
        page = await self.store.list_jobs("mail", JobState.WAITING, True, None, 2)
        self.assertEqual([jobKey(job) for job in page.items], waiting[:2])
        self.assertEqual(page.next_cursor, Cursor(*waiting[2]))
        page = await self.store.list_jobs("mail", JobState.WAITING, True, page.next_cursor, 2)
        self.assertEqual([jobKey(job) for job in page.items], waiting[2:4])
        self.assertEqual(page.next_cursor, Cursor(*waiting[4]))

        newest = waiting[::-1]
        page = await self.store.list_jobs("mail", JobState.WAITING, False, None, 3)
        self.assertEqual([jobKey(job) for job in page.items], newest[:3])
        self.assertEqual(page.next_cursor, Cursor(*newest[3]))

        exact = await self.store.list_jobs("mail", JobState.WAITING, False, None, len(waiting))
        self.assertEqual(len(exact.items), len(waiting))
        self.assertIsNone(exact.next_cursor)

    async def test_listJobsEmpty(self) -> None:
        """An empty list is an empty last page."""
        await self.prepared("mail")
        for state in JobState:
            for ascending in (True, False):
                page = await self.store.list_jobs("mail", state, ascending, None, 100)
                self.assertEqual((list(page.items), page.next_cursor), ([], None))

    async def test_listJobsCursor(self) -> None:
        """
        A cursor starts the page at its pair or the first pair after it in the list's order,
        whether or not a job has that pair, including a cursor taken from another list.
        """
        states = await self.listJobsFixture()
        everything = sorted(key for keys in states.values() for key in keys)
        times = sorted({key[0] for key in everything})
        probes = [Cursor(0, 0), Cursor(2**62, 2**62), Cursor(1, 2**63), Cursor(1, BEYOND)]
        for time in times:
            ids = [key[1] for key in everything if key[0] == time]
            probes += [
                Cursor(time - 1, 2**62), Cursor(time, 0), Cursor(time, min(ids)),
                Cursor(time, max(ids)), Cursor(time, max(ids) + 1), Cursor(time + 1, 0),
                Cursor(time, BEYOND), Cursor(time - 1, BEYOND),
            ]
            probes += [Cursor(time, i) for i in range(min(ids), max(ids)) if i not in ids][:2]
        for state, keys in states.items():
            for ascending in (True, False):
                ordered = keys if ascending else keys[::-1]
                for cursor in probes:
                    expected = atOrAfter(ordered, cursor, ascending)
                    page = await self.store.list_jobs("mail", state, ascending, cursor, 2)
                    self.assertEqual(
                        [jobKey(job) for job in page.items], expected[:2],
                        "%s %s %r" % (state, ascending, cursor),
                    )
                    following = Cursor(*expected[2]) if len(expected) > 2 else None
                    self.assertEqual(page.next_cursor, following)

    async def test_listJobsWalk(self) -> None:
        """A walk with any limit visits every job of the list once, in order."""
        states = await self.listJobsFixture()
        for state, keys in states.items():
            for ascending in (True, False):
                for limit in (1, 2, 3, 4, 1000):
                    seen = await self.walk(
                        lambda cursor, size: self.store.list_jobs(
                            "mail", state, ascending, cursor, size
                        ),
                        jobKey, limit,
                    )
                    self.assertEqual(seen, keys if ascending else keys[::-1])

    async def test_listJobsProperty(self) -> None:
        """
        For generated job sets (many ties, all three states), every list, order and limit
        walks exactly the expected jobs, and a page at any cursor starts where it should.
        """
        cases: list[ListCase] = []

        @settings(
            max_examples=25, deadline=None, database=None, derandomize=True,
            phases=[Phase.generate], suppress_health_check=list(HealthCheck),
        )
        @given(_LIST_CASES)
        def collect(case: ListCase) -> None:
            cases.append(case)

        collect()
        self.assertTrue(cases)
        for index, case in enumerate(cases):
            await self.checkListCase("walk%d" % index, case)

    async def checkListCase(self, table: str, case: ListCase) -> None:
        specs, grab_count, extra, (cursor_second, cursor_offset) = case
        await self.prepared(table)
        base = float(int(self.clock.seconds()) + 1)
        keys: list[tuple[int, int]] = []
        for second in range(4):
            self.advanceTo(base + second)
            group = [run_after for pushed_at, run_after in specs if pushed_at == second]
            if group:
                pushed = await self.store.push([(table, newJob(run_after=r)) for r in group])
                keys += [(job.next_try, job.id) for job in pushed]
        now = self.storeNow()
        grabbed = await self.store.grab(table, grab_count) if grab_count else []
        due = sorted(key for key in keys if key[0] <= now)
        self.assertEqual([jobKey(job) for job in grabbed], due[:grab_count], case)
        self.advanceTo(base + 3 + extra)
        now = self.storeNow()
        claimed = sorted(set(keys) - set(due[:grab_count]))
        states = {
            JobState.GRABBED: due[:grab_count],
            JobState.WAITING: [key for key in claimed if key[0] <= now],
            JobState.DEFERRED: [key for key in claimed if key[0] > now],
        }
        first_id = min((key[1] for key in keys), default=1)
        cursor = Cursor(int(base * 1000) + cursor_second * 1000, first_id - 1 + cursor_offset)
        for state, expected in states.items():
            for ascending in (True, False):
                ordered = expected if ascending else expected[::-1]
                for limit in (1, 2, 3):
                    seen = await self.walk(
                        lambda c, size: self.store.list_jobs(table, state, ascending, c, size),
                        jobKey, limit,
                    )
                    self.assertEqual(seen, ordered, (case, state, ascending, limit))
                after = atOrAfter(ordered, cursor, ascending)
                page = await self.store.list_jobs(table, state, ascending, cursor, 2)
                self.assertEqual(
                    [jobKey(job) for job in page.items], after[:2], (case, state, ascending)
                )
                following = Cursor(*after[2]) if len(after) > 2 else None
                self.assertEqual(page.next_cursor, following, (case, state, ascending))
        counts = await self.store.counts([table])
        self.assertEqual(counts[table], StateCounts(
            waiting=len(states[JobState.WAITING]), deferred=len(states[JobState.DEFERRED]),
            grabbed=len(states[JobState.GRABBED]),
        ))

    # -- Single jobs ---------------------------------------------------------------------

    async def test_getJobMissing(self) -> None:
        """An id that was never pushed, or is gone, finds nothing."""
        await self.prepared("mail")
        self.assertIsNone(await self.store.get_job("mail", 1))
        pushed = await self.pushOne("mail")
        self.assertIsNone(await self.store.get_job("mail", pushed.id + 1))
        self.assertIsNone(await self.store.delete_job("mail", pushed.id + 1))
        self.assertIsNotNone(await self.store.delete_job("mail", pushed.id))
        self.assertIsNone(await self.store.get_job("mail", pushed.id))
        self.assertIsNone(await self.store.delete_job("mail", pushed.id))

    async def test_deleteJob(self) -> None:
        """Deleting answers the job as it was, in any state, and removes it from every list."""
        await self.prepared("mail")
        grabbed = await self.grabbedJob("mail", newJob(payload=PAYLOADS[2]))
        waiting = await self.getJob("mail", (await self.pushOne("mail")).id)
        deferred = await self.getJob(
            "mail", (await self.pushOne("mail", newJob(run_after=9))).id
        )
        for job in (grabbed, waiting, deferred):
            self.assertEqual(await self.store.delete_job("mail", job.id), job)
            self.assertIsNone(await self.store.get_job("mail", job.id))
        for state in JobState:
            page = await self.store.list_jobs("mail", state, True, None, 100)
            self.assertEqual(list(page.items), [])
        self.assertEqual(await self.store.due_tables(["mail"]), set())
        self.assertEqual(await self.store.grab("mail", 10), [])
        self.advanceTo(START + 60)
        self.assertEqual(await self.store.grab("mail", 10), [])
        self.assertEqual(await self.store.counts(["mail"]), {"mail": StateCounts()})

    # -- Failure log ---------------------------------------------------------------------

    async def failureFixture(self) -> list[FailedJob]:
        """
        Seven failures of table C{mail} with ties on both C{created_at} and C{failed_at};
        answers them as stored, checked against the times they were written at.
        """
        await self.prepared("mail")
        created: dict[int, int] = {}
        for second, count in ((0, 2), (1, 2), (2, 3)):
            self.advanceTo(START + second)
            for job in await self.store.push([("mail", newJob()) for _ in range(count)]):
                created[job.id] = job.created_at
        jobs = await self.store.grab("mail", 10)
        self.assertEqual(len(jobs), 7)
        failed_at: dict[int, int] = {}
        # job index -> second it fails at; ties in both orders.
        for second, indexes in ((10, (2, 6)), (11, (0, 4, 1)), (12, (3, 5))):
            self.advanceTo(START + second)
            await self.store.complete([
                Completion("mail", jobs[i], CompletionKind.FAIL, WorkerResult("failure", 500, ""))
                for i in indexes
            ])
            for i in indexes:
                failed_at[jobs[i].id] = self.storeNow()
        failures = await self.failureLog("mail")
        self.assertEqual(sorted(f.job_id for f in failures), sorted(created))
        self.assertEqual(len({f.id for f in failures}), 7)
        for failure in failures:
            self.assertEqual(failure.created_at, created[failure.job_id])
            self.assertEqual(failure.failed_at, failed_at[failure.job_id])
        return failures

    async def test_listFailedOrders(self) -> None:
        """
        C{failed} lists by (C{failed_at}, id) descending, C{created} by (C{created_at}, id)
        descending; C{next_cursor} names the first entry of the next page.
        """
        failures = await self.failureFixture()
        for order in FailedOrder:
            key = failedKey(order)
            expected = sorted(failures, key=key, reverse=True)
            page = await self.store.list_failed("mail", order, None, 100)
            self.assertEqual(list(page.items), expected)
            self.assertIsNone(page.next_cursor)
            page = await self.store.list_failed("mail", order, None, 3)
            self.assertEqual(list(page.items), expected[:3])
            self.assertEqual(page.next_cursor, Cursor(*key(expected[3])))
            page = await self.store.list_failed("mail", order, page.next_cursor, 3)
            self.assertEqual(list(page.items), expected[3:6])
            self.assertEqual(page.next_cursor, Cursor(*key(expected[6])))
            page = await self.store.list_failed("mail", order, page.next_cursor, 3)
            self.assertEqual((list(page.items), page.next_cursor), (expected[6:], None))
            exact = await self.store.list_failed("mail", order, None, 7)
            self.assertIsNone(exact.next_cursor)

    async def test_listFailedCursor(self) -> None:
        """A cursor starts the page at its pair or the next one, descending."""
        failures = await self.failureFixture()
        for order in FailedOrder:
            key = failedKey(order)
            keys = sorted((key(failure) for failure in failures), reverse=True)
            probes = [Cursor(0, 0), Cursor(2**62, 2**62), Cursor(1, 2**63), Cursor(1, BEYOND)]
            for time in sorted({k[0] for k in keys}):
                ids = [k[1] for k in keys if k[0] == time]
                probes += [
                    Cursor(time + 1, 0), Cursor(time, 2**62), Cursor(time, max(ids)),
                    Cursor(time, min(ids)), Cursor(time, min(ids) - 1), Cursor(time - 1, 2**62),
                    Cursor(time, BEYOND), Cursor(time - 1, BEYOND),
                ]
            for cursor in probes:
                expected = atOrAfter(keys, cursor, False)
                page = await self.store.list_failed("mail", order, cursor, 2)
                self.assertEqual([key(f) for f in page.items], expected[:2], (order, cursor))
                following = Cursor(*expected[2]) if len(expected) > 2 else None
                self.assertEqual(page.next_cursor, following, (order, cursor))

    async def test_listFailedWalk(self) -> None:
        """A walk with any limit visits every entry once, in order."""
        failures = await self.failureFixture()
        for order in FailedOrder:
            key = failedKey(order)
            keys = sorted((key(failure) for failure in failures), reverse=True)
            for limit in (1, 2, 3, 1000):
                seen = await self.walk(
                    lambda cursor, size: self.store.list_failed("mail", order, cursor, size),
                    key, limit,
                )
                self.assertEqual(seen, keys)

    async def test_failedEntries(self) -> None:
        """Entries read and delete one by one; a deleted entry is gone for good."""
        failures = await self.failureFixture()
        await self.prepared("bulk")
        victim = failures[3]
        self.assertEqual(await self.store.get_failed("mail", victim.id), victim)
        self.assertIsNone(await self.store.get_failed("bulk", victim.id))
        self.assertIsNone(await self.store.delete_failed("bulk", victim.id))
        self.assertEqual(await self.store.delete_failed("mail", victim.id), victim)
        self.assertIsNone(await self.store.get_failed("mail", victim.id))
        self.assertIsNone(await self.store.delete_failed("mail", victim.id))
        rest = await self.failureLog("mail")
        self.assertEqual(rest, [f for f in failures if f != victim])
        missing = max(f.id for f in failures) + 1
        self.assertIsNone(await self.store.get_failed("mail", missing))
        self.assertEqual((await self.store.counts(["mail"]))["mail"], StateCounts(failed=6))

    # -- Retrying and removing failure-log entries ----------------------------------------

    async def failedJob(self, table: str, job: NewJob, retries: int = 0) -> FailedJob:
        """Push C{job}, fail it C{retries} times with a retry, then finally; its entry."""
        await self.prepared(table)
        grabbed = await self.grabbedJob(table, job)
        for _ in range(retries):
            await self.store.complete([Completion(
                table, grabbed, CompletionKind.RETRY, WorkerResult("failure", 500, "again"))])
            self.advanceTo(self.clock.seconds() + job.retry_delay)
            [grabbed] = await self.store.grab(table, 10)
        await self.store.complete([Completion(
            table, grabbed, CompletionKind.FAIL, WorkerResult("failure", 500, "no more"))])
        [entry] = [f for f in await self.failureLog(table) if f.job_id == grabbed.id]
        return entry

    async def test_retryOne(self) -> None:
        """
        A retried entry becomes a new job with the push's settings, due now, and leaves
        the log; retrying it again finds nothing.
        """
        original = newJob(payload=PAYLOADS[2], max_retries=3, retry_delay=30, timeout=10)
        entry = await self.failedJob("mail", original, retries=1)
        self.advanceTo(self.clock.seconds() + 7.25)
        [retried] = await self.store.retry_failed(
            "mail", FailedFilter(failure_id=entry.id), 1, 0)
        now = self.storeNow()
        self.assertEqual(retried.failure_id, entry.id)
        self.assertEqual(retried.job, original)
        self.assertGreater(retried.pushed.id, entry.job_id)
        job = await self.getJob("mail", retried.pushed.id)
        self.assertEqual(job, Job(
            id=retried.pushed.id, category=original.category, url=original.url,
            payload=original.payload, status=JobStatus.CLAIMED, created_at=now,
            next_try=now, retry_count=3, retry_delay=30, fail_count=0, timeout=10,
        ))
        self.assertEqual((retried.pushed.created_at, retried.pushed.next_try), (now, now))
        self.assertIsNone(await self.store.get_failed("mail", entry.id))
        self.assertEqual(
            await self.store.retry_failed("mail", FailedFilter(failure_id=entry.id), 1, 0), [])
        [grabbed] = await self.store.grab("mail", 10)
        self.assertEqual(grabbed.id, retried.pushed.id)

    async def test_retryRunAfter(self) -> None:
        """C{run_after} defers the new job like a push's."""
        entry = await self.failedJob("mail", newJob())
        [retried] = await self.store.retry_failed(
            "mail", FailedFilter(failure_id=entry.id), 1, 60)
        self.assertEqual(retried.job.run_after, 60)
        job = await self.getJob("mail", retried.pushed.id)
        self.assertEqual(job.next_try, self.storeNow() + 60000)
        self.assertEqual(await self.store.due_tables(["mail"]), set())

    async def test_retryForeignEntry(self) -> None:
        """
        An entry written without our settings (by Fireworq) is retried with as many
        retries as it had and push defaults for the rest.
        """
        await self.prepared("mail")
        foreign = FailedJob(
            id=0, job_id=4242, category="legacy", url="http://worker.example/x",
            payload=b'{"n": 1}', result=WorkerResult("failure", 500, "x"), fail_count=4,
            failed_at=self.storeNow() - 1000, created_at=self.storeNow() - 5000,
        )
        failure_id = await self.addForeignFailure("mail", foreign)
        self.assertEqual(await self.store.get_failed("mail", failure_id),
                         attrs.evolve(foreign, id=failure_id))
        [retried] = await self.store.retry_failed(
            "mail", FailedFilter(failure_id=failure_id), 1, 0)
        self.assertEqual(retried.job, NewJob(
            category="legacy", url="http://worker.example/x", payload=b'{"n": 1}',
            run_after=0, max_retries=3, retry_delay=0, timeout=0))
        self.assertEqual((await self.getJob("mail", retried.pushed.id)).retry_count, 3)

    async def test_deletedEntryLeavesNoSettings(self) -> None:
        """
        Settings go with their entry: once it is deleted, a foreign entry of the same job
        is retried with the inferred settings.
        """
        entry = await self.failedJob("mail", newJob(max_retries=0, retry_delay=9, timeout=9))
        await self.store.delete_failed("mail", entry.id)
        foreign = attrs.evolve(entry, fail_count=1)
        failure_id = await self.addForeignFailure("mail", foreign)
        [retried] = await self.store.retry_failed(
            "mail", FailedFilter(failure_id=failure_id), 1, 0)
        self.assertEqual((retried.job.retry_delay, retried.job.timeout), (0, 0))

    async def retryFixture(self) -> list[FailedJob]:
        """Ten entries, two categories, failed at seconds 10-14 (two a second), oldest first."""
        await self.prepared("mail")
        pushed = await self.store.push(
            [("mail", newJob(category="even" if n % 2 == 0 else "odd",
                             payload=b'{"n":%d}' % n)) for n in range(10)])
        jobs = {job.id: job for job in await self.store.grab("mail", 10)}
        for second in range(5):
            self.advanceTo(START + 10 + second)
            await self.store.complete([
                Completion("mail", jobs[pushed[n].id], CompletionKind.FAIL,
                           WorkerResult("failure", 500, ""))
                for n in (2 * second, 2 * second + 1)])
        entries = sorted(await self.failureLog("mail"), key=lambda f: (f.failed_at, f.id))
        self.assertEqual(len(entries), 10)
        return entries

    async def test_retryFilters(self) -> None:
        """
        Bulk retries take the matching entries oldest failure first, at most C{limit} of
        them; every condition given must hold.
        """
        entries = await self.retryFixture()
        at = [entry.failed_at for entry in entries]

        def ids(retried: list[RetriedJob]) -> list[int]:
            return [r.failure_id for r in retried]

        odd = await self.store.retry_failed("mail", FailedFilter(category="odd"), 2, 0)
        self.assertEqual(ids(odd), [entries[1].id, entries[3].id])
        window = FailedFilter(failed_after=at[4], failed_before=at[8])
        self.assertEqual(ids(await self.store.retry_failed("mail", window, 100, 0)),
                         [e.id for e in entries[4:8]])
        both = FailedFilter(category="even", failed_after=at[2], failed_before=at[9])
        self.assertEqual(ids(await self.store.retry_failed("mail", both, 100, 0)),
                         [entries[2].id])
        self.assertEqual(await self.store.retry_failed(
            "mail", FailedFilter(category="none"), 100, 0), [])
        self.assertEqual(ids(await self.store.retry_failed("mail", FailedFilter(), 100, 0)),
                         [entries[n].id for n in (0, 8, 9)])
        self.assertEqual(await self.failureLog("mail"), [])
        # Nothing lost, nothing doubled: one new job per entry, with its payload.
        page = await self.store.list_jobs("mail", JobState.WAITING, True, None, 100)
        self.assertEqual(sorted(job.payload for job in page.items),
                         sorted(entry.payload for entry in entries))

    async def test_deleteMatching(self) -> None:
        """Bulk deletes take the same entries as bulk retries would, and push nothing."""
        entries = await self.retryFixture()
        at = [entry.failed_at for entry in entries]
        self.assertEqual(await self.store.delete_failed_matching(
            "mail", FailedFilter(category="even", failed_before=at[6]), 100), 3)
        self.assertEqual(await self.store.delete_failed_matching(
            "mail", FailedFilter(), 2), 2)
        remaining = [entries[n] for n in (5, 6, 7, 8, 9)]
        self.assertEqual(sorted(await self.failureLog("mail"), key=lambda f: f.id),
                         sorted(remaining, key=lambda f: f.id))
        self.assertEqual(await self.store.delete_failed_matching(
            "mail", FailedFilter(failure_id=entries[0].id), 100), 0)
        self.assertEqual(await self.store.counts(["mail"]), {"mail": StateCounts(failed=5)})

    async def test_filterTimesAtTheEdges(self) -> None:
        """Times from year 1 to year 9999 (what RFC 3339 can say) are valid bounds."""
        entries = await self.retryFixture()
        first, last = -62135596800000, 253402300799999
        wide = FailedFilter(failed_after=first, failed_before=last)
        self.assertEqual(await self.store.delete_failed_matching("mail", wide, 3), 3)
        outside = FailedFilter(failed_before=first)
        self.assertEqual(await self.store.delete_failed_matching("mail", outside, 100), 0)
        self.assertEqual(await self.store.retry_failed(
            "mail", FailedFilter(failed_after=last), 100, 0), [])
        self.assertEqual(len(await self.failureLog("mail")), len(entries) - 3)

    async def test_failedCutoff(self) -> None:
        """
        The cutoff of C{keep} is the newest entry beyond the C{keep} newest; removing up
        to it leaves exactly those.
        """
        entries = await self.retryFixture()
        newest_first = entries[::-1]
        for keep in (10, 11, 1000):
            self.assertIsNone(await self.store.failed_cutoff("mail", keep))
        for keep in (9, 4, 0):
            cutoff = await self.store.failed_cutoff("mail", keep)
            beyond = newest_first[keep]
            self.assertEqual(cutoff, Cursor(beyond.failed_at, beyond.id))
        # With a gap in the ids, their range no longer tells: the count does.
        await self.store.delete_failed("mail", entries[5].id)
        self.assertIsNone(await self.store.failed_cutoff("mail", 9))
        newest_first.remove(entries[5])
        self.assertEqual(await self.store.failed_cutoff("mail", 8),
                         Cursor(newest_first[8].failed_at, newest_first[8].id))
        cutoff = await self.store.failed_cutoff("mail", 3)
        self.assertEqual(await self.store.delete_failed_matching(
            "mail", FailedFilter(up_to=cutoff), 4), 4)
        self.assertEqual(await self.store.delete_failed_matching(
            "mail", FailedFilter(up_to=cutoff), 4), 2)
        self.assertEqual(sorted(f.id for f in await self.failureLog("mail")),
                         sorted(f.id for f in newest_first[:3]))
        self.assertIsNone(await self.store.failed_cutoff("mail", 3))

    async def test_retryIsAtomic(self) -> None:
        """When the new job cannot be stored, the entry stays: never neither."""
        entries = await self.retryFixture()
        await self.breakJobTable("mail")
        with self.assertRaises(Exception):
            await self.store.retry_failed("mail", FailedFilter(), 5, 0)
        self.assertEqual(sorted(await self.failureLog("mail"), key=lambda f: f.id),
                         sorted(entries, key=lambda f: f.id))

    async def test_concurrentRetries(self) -> None:
        """
        Two nodes retrying the same entries at once push each entry once: the same entry
        by id, and overlapping bulk retries.
        """
        entries = await self.retryFixture()
        other = await self.otherNode()
        await other.prepare_queue("mail")
        one = FailedFilter(failure_id=entries[0].id)
        results = await DeferredList([
            Deferred.fromCoroutine(self.store.retry_failed("mail", one, 1, 0)),
            Deferred.fromCoroutine(other.retry_failed("mail", one, 1, 0)),
        ], fireOnOneErrback=True, consumeErrors=True)
        self.assertEqual(sorted(len(value) for _, value in results), [0, 1])
        results = await DeferredList([
            Deferred.fromCoroutine(self.store.retry_failed("mail", FailedFilter(), 6, 0)),
            Deferred.fromCoroutine(other.retry_failed("mail", FailedFilter(), 6, 0)),
        ], fireOnOneErrback=True, consumeErrors=True)
        taken = [r.failure_id for _, value in results for r in value]
        self.assertEqual(sorted(taken), sorted(e.id for e in entries[1:]))
        self.assertEqual(await self.failureLog("mail"), [])
        page = await self.store.list_jobs("mail", JobState.WAITING, True, None, 100)
        self.assertEqual(len(page.items), 10)

    async def test_listFailedEmpty(self) -> None:
        """An empty failure log is an empty last page in both orders."""
        await self.prepared("mail")
        for order in FailedOrder:
            page = await self.store.list_failed("mail", order, None, 100)
            self.assertEqual((list(page.items), page.next_cursor), ([], None))

    # -- Counts --------------------------------------------------------------------------

    async def test_counts(self) -> None:
        """Jobs by state and failure-log size, per table asked."""
        await self.prepared("mail", "bulk", "empty")
        await self.store.push([("mail", newJob(run_after=r)) for r in (0, 0, 0, 0, 10, 20)])
        await self.store.push([("bulk", newJob(run_after=r)) for r in (0, 3)])
        grabbed = await self.store.grab("mail", 2)
        await self.store.complete([
            Completion("mail", grabbed[0], CompletionKind.FAIL, WorkerResult("failure", 500, ""))
        ])
        self.assertEqual(
            await self.store.counts(["mail", "bulk", "empty"]),
            {
                "mail": StateCounts(waiting=2, deferred=2, grabbed=1, failed=1),
                "bulk": StateCounts(waiting=1, deferred=1),
                "empty": StateCounts(),
            },
        )
        self.advanceTo(START + 10)
        self.assertEqual(
            await self.store.counts(["mail", "bulk"]),
            {
                "mail": StateCounts(waiting=3, deferred=1, grabbed=1, failed=1),
                "bulk": StateCounts(waiting=2),
            },
        )
        self.assertEqual(await self.store.counts([]), {})

    async def test_countsStopAtLimit(self) -> None:
        """Each figure stops at the limit given, so that a count never walks more than that
        many entries of a large table; below it, figures are exact."""
        await self.prepared("mail", "bulk")
        await self.store.push([("mail", newJob(run_after=r)) for r in (0,) * 5 + (10,) * 4])
        await self.store.push([("bulk", newJob(run_after=r)) for r in (0, 0, 10)])
        grabbed = await self.store.grab("mail", 4)
        await self.store.complete([
            Completion("mail", job, CompletionKind.FAIL, WorkerResult("failure", 500, ""))
            for job in grabbed[:3]
        ])
        await self.store.grab("mail", 1)
        self.assertEqual(
            await self.store.counts(["mail", "bulk"], limit=2),
            {
                "mail": StateCounts(waiting=0, deferred=2, grabbed=2, failed=2),
                "bulk": StateCounts(waiting=2, deferred=1),
            },
        )
        self.assertEqual(
            (await self.store.counts(["mail"], limit=3))["mail"],
            StateCounts(waiting=0, deferred=3, grabbed=2, failed=3),
        )
        self.advanceTo(START + 10)
        self.assertEqual(
            (await self.store.counts(["mail"], limit=3))["mail"],
            StateCounts(waiting=3, deferred=0, grabbed=2, failed=3),
        )

    # -- Tables are addressed by part ----------------------------------------------------

    async def test_sharedTablePart(self) -> None:
        """
        Two definitions whose names map to the same table part are two definitions, and
        share that table's jobs and failure log.
        """
        upper, lower = queue("Mail-2"), queue("_ail_2", max_workers=3)
        self.assertEqual(upper.table, lower.table)
        await self.store.put_queue(upper)
        await self.store.put_queue(lower)
        self.assertEqual(await self.store.list_queues(), [upper, lower])
        await self.store.prepare_queue(upper.table)
        await self.store.prepare_queue(lower.table)
        pushed = await self.pushOne(upper.table)
        self.assertEqual((await self.getJob(lower.table, pushed.id)).id, pushed.id)
        [job] = await self.store.grab(lower.table, 10)
        await self.store.complete(
            [Completion(upper.table, job, CompletionKind.FAIL, WorkerResult("failure", 1, ""))]
        )
        [failed] = await self.failureLog(lower.table)
        self.assertEqual(failed.job_id, pushed.id)
        self.assertEqual(await self.store.delete_queue("Mail-2"), upper)
        self.assertEqual(await self.store.get_failed(lower.table, failed.id), failed)

    async def test_queueDeletionKeepsJobs(self) -> None:
        """Deleting a definition keeps its table's jobs and failures (docs/api.md, Names and
        ids)."""
        definition = queue("mail")
        await self.store.put_queue(definition)
        await self.prepared(definition.table)
        pushed = await self.pushOne(definition.table)
        await self.store.delete_queue("mail")
        await self.store.put_queue(definition)
        await self.prepared(definition.table)
        self.assertIsNotNone(await self.store.get_job(definition.table, pushed.id))

    async def test_prepareIdempotent(self) -> None:
        """Preparing a table again keeps what it holds."""
        await self.prepared("mail")
        pushed = await self.pushOne("mail")
        await self.prepared("mail", "mail")
        self.assertIsNotNone(await self.store.get_job("mail", pushed.id))

    async def test_ping(self) -> None:
        """An open store answers a ping."""
        await self.store.ping()
