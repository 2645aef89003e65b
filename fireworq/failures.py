"""Retrying and removing failure-log entries, one or many.

A retried entry becomes a new job in the same transaction that removes it, so that it is
never both a job and an entry, nor neither. Bulk operations take at most ``BULK_BATCH``
entries per transaction: a request for thousands never holds a long lock, and a crash
midway leaves each entry either retried or still in the log. They only take entries that
were in the log when the request came: a retried job that fails again during the same
request is not retried twice.
"""

from __future__ import annotations

import attrs

from fireworq.errors import NotFound
from fireworq.model import FailedFilter, QueueDefinition, RetriedJob
from fireworq.queues import QueueManager
from fireworq.storage import JobStore

BULK_BATCH = 500


class FailureLog:
    def __init__(self, store: JobStore, manager: QueueManager) -> None:
        self._store = store
        self._manager = manager

    async def retry(self, queue: QueueDefinition, failure_id: int, run_after: int
                    ) -> RetriedJob:
        taken = await self._store.retry_failed(
            queue.table, FailedFilter(failure_id=failure_id), 1, run_after)
        if not taken:
            raise NotFound("No such failed job: %d" % failure_id)
        self._pushed(queue, taken)
        return taken[0]

    async def retry_many(self, queue: QueueDefinition, selection: FailedFilter, limit: int
                         ) -> list[RetriedJob]:
        bounded = await self._present(queue, selection)
        done: list[RetriedJob] = []
        while bounded is not None and len(done) < limit:
            wanted = min(BULK_BATCH, limit - len(done))
            taken = await self._store.retry_failed(queue.table, bounded, wanted, 0)
            self._pushed(queue, taken)
            done += taken
            if len(taken) < wanted:
                break
        return done

    async def delete_many(self, queue: QueueDefinition, selection: FailedFilter, limit: int
                          ) -> int:
        bounded = await self._present(queue, selection)
        deleted = 0
        while bounded is not None and deleted < limit:
            wanted = min(BULK_BATCH, limit - deleted)
            removed = await self._store.delete_failed_matching(queue.table, bounded, wanted)
            deleted += removed
            if removed < wanted:
                break
        return deleted

    async def _present(self, queue: QueueDefinition, selection: FailedFilter
                       ) -> FailedFilter | None:
        """The selection limited to the entries in the log now (up to the newest one);
        ``None`` when the log is empty."""
        newest = await self._store.failed_cutoff(queue.table, 0)
        if newest is None:
            return None
        return attrs.evolve(selection, up_to=newest)

    def _pushed(self, queue: QueueDefinition, taken: list[RetriedJob]) -> None:
        # A retried entry is a new job of the queue: counted, logged and woken up for as
        # a push through this node is.
        for retried in taken:
            self._manager.accepted(retried.pushed, queue.name, retried.job)
