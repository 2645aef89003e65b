"""The JSON shapes of docs/api.md, members in the documented order."""

from __future__ import annotations

from typing import Any

from fireworq.cursor import encode_cursor
from fireworq.dispatch.stats import QueueSnapshot
from fireworq.jsontext import reread_payload
from fireworq.delivery.policy import redact_secrets
from fireworq.model import (
    BACKOFF_FIXED,
    DEFAULT_UNIQUE_WINDOW,
    RESULT_MODE_FIREWORQ,
    FailedJob,
    Job,
    Page,
    QueueDefinition,
    Routing,
)
from fireworq.times import format_ms


def queue_definition(definition: QueueDefinition) -> dict[str, Any]:
    rendered: dict[str, Any] = {"name": definition.name}
    if definition.polling_interval:
        rendered["polling_interval"] = definition.polling_interval
    rendered["max_workers"] = definition.max_workers
    if definition.max_dispatches_per_second:
        rendered["max_dispatches_per_second"] = definition.max_dispatches_per_second
    if definition.max_burst_size:
        rendered["max_burst_size"] = definition.max_burst_size
    # Ours after Fireworq's, each only when set: a queue without them reads as in Fireworq.
    if definition.failed_job_ttl:
        rendered["failed_job_ttl"] = definition.failed_job_ttl
    if definition.failed_job_limit:
        rendered["failed_job_limit"] = definition.failed_job_limit
    if definition.unique_window != DEFAULT_UNIQUE_WINDOW:
        rendered["unique_window"] = definition.unique_window
    if definition.retry_backoff != BACKOFF_FIXED:
        rendered["retry_backoff"] = definition.retry_backoff
    if definition.retry_max_delay:
        rendered["retry_max_delay"] = definition.retry_max_delay
    if definition.retry_jitter:
        rendered["retry_jitter"] = True
    if definition.result_mode != RESULT_MODE_FIREWORQ:
        rendered["result_mode"] = definition.result_mode
    if definition.headers:
        rendered["headers"] = dict(definition.headers)
    if definition.signing_secrets:
        # Never shown: sent back in a PUT, each stands for the secret stored (docs/api.md).
        rendered["signing_secrets"] = redact_secrets(definition.signing_secrets)
    if definition.paused:
        rendered["paused"] = True
    return rendered


def routing(value: Routing) -> dict[str, Any]:
    return {"queue_name": value.queue_name, "job_category": value.job_category}


def job(value: Job) -> dict[str, Any]:
    return {
        "id": value.id,
        "category": value.category,
        "url": value.url,
        "payload": reread_payload(value.payload),
        "status": value.status.value,
        "created_at": format_ms(value.created_at),
        "next_try": format_ms(value.next_try),
        "timeout": value.timeout,
        "fail_count": value.fail_count,
        "max_retries": value.max_retries,
        "retry_delay": value.retry_delay,
    }


def failed_job(value: FailedJob) -> dict[str, Any]:
    return {
        "id": value.id,
        "job_id": value.job_id,
        "category": value.category,
        "url": value.url,
        "payload": reread_payload(value.payload),
        "result": {
            "status": value.result.status,
            "code": value.result.code,
            "message": value.result.message,
        },
        "fail_count": value.fail_count,
        "failed_at": format_ms(value.failed_at),
        "created_at": format_ms(value.created_at),
    }


def job_page(page: Page[Job]) -> dict[str, Any]:
    return {"jobs": [job(item) for item in page.items],
            "next_cursor": encode_cursor(page.next_cursor)}


def failed_page(page: Page[FailedJob]) -> dict[str, Any]:
    return {"failed_jobs": [failed_job(item) for item in page.items],
            "next_cursor": encode_cursor(page.next_cursor)}


def queue_stats(stats: QueueSnapshot) -> dict[str, Any]:
    rendered = {
        "total_pushes": stats.total_pushes,
        "total_pops": stats.total_pops,
        "total_successes": stats.total_successes,
        "total_failures": stats.total_failures,
        "total_permanent_failures": stats.total_permanent_failures,
        "total_completes": stats.total_completes,
        "total_elapsed": stats.total_elapsed,
        "pushes_per_second": stats.pushes_per_second,
        "pops_per_second": stats.pops_per_second,
        "outstanding_jobs": stats.outstanding_jobs,
        "total_workers": stats.total_workers,
        "idle_workers": stats.idle_workers,
        "active_nodes": 1 if stats.active else 0,
    }
    if stats.paused:
        rendered["paused"] = True
    return rendered


def error(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "error": REASONS[code], "message": message}


REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
