"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /openapi.json``.

This module is the document's one source: ``document()`` builds it as a dict from the same
limits the handlers check (``validate``, ``fireworq.model``). docs/api.md is the prose
reference; the document states the same routes, parameters, bodies, answers and errors in a
form that tools read. tests/test_openapi.py holds it to the app's route table (every route
and method is in it, and nothing else), validates it, and runs schemathesis against a live
daemon on each driver.
"""

from __future__ import annotations

from typing import Any

from fireworq import __version__
from fireworq.api import validate
from fireworq.api.render import REASONS
from fireworq.delivery import policy
from fireworq.model import (
    BACKOFFS,
    DEFAULT_UNIQUE_WINDOW,
    MAX_QUEUE_NAME_LENGTH,
    MAX_RETRY_DELAY,
    RESULT_MODES,
)

Schema = dict[str, Any]

_ERROR_TEXT = {
    400: "The request is malformed, or a value is invalid or out of range.",
    401: "API tokens are set and the request has no known token (docs/api.md, "
         "Authentication).",
    403: "API tokens are set and the token's scope does not allow the request.",
    404: "No route matches the path, or what the path names does not exist.",
    413: "The request body is larger than FIREWORQ_MAX_REQUEST_BODY (the connection is then "
         "closed); or, with the mysql driver, a pushed job is larger than the MySQL server "
         "takes in one statement.",
    500: "An unexpected fault of the daemon; details are in its error log.",
    503: "The store cannot be reached or does not answer. Retry the request.",
}
_RESPONSE_NAMES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                   405: "MethodNotAllowed", 413: "TooLarge", 500: "ServerError",
                   503: "StoreUnavailable"}

_INFO = """\
The HTTP API of fireworq-py, a job queue daemon compatible with Fireworq 1.5. The prose
reference, with examples, is docs/api.md.

Every route takes only the methods listed here; HEAD works wherever GET does (same status and
headers, no body). Any other method is answered 405 with an `Allow` header listing the methods
the route takes (the `MethodNotAllowed` response). A body larger than
FIREWORQ_MAX_REQUEST_BODY is refused with 413 on every route. Every error answer is the JSON
object `{"code", "error", "message"}`.

With API tokens configured (none by default: the API is then open), every request but those
to the public paths (/healthz, /readyz, /openapi.json) must carry `Authorization: Bearer
<token>`, whose scope (read, push, admin) allows it; else 401 or 403.
"""


def _schema(name: str) -> Schema:
    return {"$ref": "#/components/schemas/" + name}


def _integer(least: int, greatest: int, description: str) -> Schema:
    return {"type": "integer", "minimum": least, "maximum": greatest,
            "description": description}


def _nullable(schema: Schema) -> Schema:
    """A request member: ``null`` counts as absent (docs/api.md, Requests)."""
    kinds = schema["type"]
    nullable = {**schema, "type": [*(kinds if isinstance(kinds, list) else [kinds]), "null"]}
    if "enum" in schema:
        nullable["enum"] = [*schema["enum"], None]
    return nullable


def _object(properties: dict[str, Schema], required: tuple[str, ...] = (),
            description: str | None = None) -> Schema:
    """An answer's object: exactly these members (the answers are documented whole)."""
    schema: Schema = {"type": "object", "properties": properties,
                      "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


def _request_object(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    """A request body: one JSON object; unknown members are ignored, ``null`` is absent."""
    schema: Schema = {"type": "object", "properties": {
        k: v if k in required else _nullable(v) for k, v in properties.items()}}
    if required:
        schema["required"] = list(required)
    return schema


def _ranged(ranges: dict[str, tuple[int, int]], texts: dict[str, str]) -> dict[str, Schema]:
    return {name: _integer(*ranges[name], texts[name]) for name in texts}


def _schemas() -> dict[str, Schema]:
    string = {"type": "string"}
    count = {"type": "integer", "minimum": 0}
    time = {"type": "string", "format": "date-time",
            "description": "RFC 3339, milliseconds, in the daemon's time zone"}
    queue_ranges = validate.QUEUE_RANGES
    rate_least, rate_greatest = queue_ranges["max_dispatches_per_second"]
    queue_members = _ranged(queue_ranges, {
        "polling_interval": "ms between looks for due jobs; 0: the default",
        "max_workers": "most deliveries at once; 0: the default",
        "max_burst_size": "throttle bucket size; needs max_dispatches_per_second",
        "failed_job_ttl": "s a failure-log entry is kept; 0: for ever",
        "failed_job_limit": "most failure-log entries kept; 0: no limit",
        "unique_window": "s a push's unique key is remembered (default %d); 0: not at all"
                         % DEFAULT_UNIQUE_WINDOW,
    })
    push_members = _ranged(validate.PUSH_RANGES, {
        "run_after": "s before the first attempt",
        "max_retries": "retries after a failed attempt",
        "retry_delay": "s between a failed attempt and its retry",
        "timeout": "s for one worker exchange; 0: no limit",
    })
    # The delivery policy (docs/api.md, Delivery policy): queue members, and job members that
    # win over the queue's. Header names and values, and secrets, have rules of their own
    # beyond these schemas (tests/test_openapi.py, UNSTATED_RULES).
    header_values = {"type": "object", "maxProperties": policy.MAX_HEADERS,
                     "propertyNames": {"pattern": r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"},
                     "additionalProperties": {"type": "string"},
                     "description": "headers added to each delivery, at most %d and %d bytes; "
                                    "not hop-by-hop, framing, Fireworq-* or webhook-* names"
                                    % (policy.MAX_HEADERS, policy.MAX_HEADER_BYTES)}
    policy_members: dict[str, Schema] = {
        "retry_backoff": {"type": "string", "enum": list(BACKOFFS),
                          "description": "how the wait before a retry grows"},
        "retry_max_delay": _integer(0, MAX_RETRY_DELAY, "longest wait before a retry, s; "
                                                        "0: no cap"),
        "retry_jitter": {"type": "boolean", "description": "a random wait up to the computed "
                                                           "one (full jitter)"},
        "headers": header_values,
    }
    queue_policy_members: dict[str, Schema] = {
        **policy_members,
        "result_mode": {"type": "string", "enum": list(RESULT_MODES),
                        "description": "how a worker's answer is read"},
        "signing_secrets": {"type": "array", "minItems": policy.MIN_SECRETS,
                            "maxItems": policy.MAX_SECRETS,
                            "items": {"type": "string", "pattern": "^whsec_"},
                            "description": "Standard Webhooks secrets: 'whsec_' and the base64 "
                                           "of %d to %d bytes; %r keeps a stored one"
                                           % (policy.MIN_SECRET_BYTES, policy.MAX_SECRET_BYTES,
                                              policy.REDACTED_SECRET)},
    }
    job_id = {"type": "integer", "minimum": 1}
    stats_members = ("total_pushes total_pops total_successes total_failures "
                     "total_permanent_failures total_completes total_elapsed "
                     "pushes_per_second pops_per_second outstanding_jobs total_workers "
                     "idle_workers active_nodes").split()
    bulk_filter = {
        "category": {"type": "string", "description": "only entries of this job category"},
        "failed_after": {"type": "string", "format": "date-time",
                         "description": "RFC 3339: only entries failed at or after it"},
        "failed_before": {"type": "string", "format": "date-time",
                          "description": "RFC 3339: only entries failed before it"},
        "limit": _integer(1, validate.MAX_BULK_LIMIT,
                          "at most this many entries (default %d)" % validate.DEFAULT_BULK_LIMIT),
    }
    return {
        "Error": _object({
            "code": {"type": "integer", "enum": sorted(REASONS)},
            "error": {"type": "string", "enum": [REASONS[c] for c in sorted(REASONS)]},
            "message": {"type": "string", "description": "for humans; never a traceback"},
        }, ("code", "error", "message"), "Every error answer (docs/api.md, Errors)."),
        "Status": _object({"status": {"const": "ok"}}, ("status",)),
        "Settings": {"type": "object", "additionalProperties": string,
                     "description": "Every configuration key, each value as a string."},
        "ProcessStats": _object({
            "time": {**count, "description": "now, in ns since the Unix epoch"},
            "version": string,
            "python_version": string,
            "pid": count,
            "uptime_seconds": {"type": "number", "minimum": 0},
            "rss_bytes": count,
            "cpu_user_seconds": {"type": "number", "minimum": 0},
            "cpu_system_seconds": {"type": "number", "minimum": 0},
            "threads": count,
            "gc_counts": {"type": "array", "items": count, "minItems": 3, "maxItems": 3},
            "open_fds": {"type": ["integer", "null"], "minimum": 0},
        }, ("time", "version", "python_version", "pid", "uptime_seconds", "rss_bytes",
            "cpu_user_seconds", "cpu_system_seconds", "threads", "gc_counts", "open_fds")),
        "QueueDefinition": _object({
            "name": string,
            "polling_interval": {**queue_members["polling_interval"], "minimum": 1},
            "max_workers": queue_members["max_workers"],
            "max_dispatches_per_second": {"type": "number", "exclusiveMinimum": rate_least,
                                          "maximum": rate_greatest},
            **{name: {**queue_members[name], "minimum": 1}
               for name in ("max_burst_size", "failed_job_ttl", "failed_job_limit")},
            "unique_window": {**queue_members["unique_window"],
                              "description": "only when not the default"},
            "retry_backoff": {"const": "exponential", "description": "only when set"},
            "retry_max_delay": {**queue_policy_members["retry_max_delay"], "minimum": 1},
            "retry_jitter": {"const": True, "description": "only when set"},
            "headers": {**header_values, "minProperties": 1},
            "result_mode": {"const": "webhook", "description": "only when set"},
            "signing_secrets": {"type": "array", "minItems": policy.MIN_SECRETS,
                                "maxItems": policy.MAX_SECRETS,
                                "items": {"const": policy.REDACTED_SECRET},
                                "description": "never shown: one redacted entry a secret"},
            "paused": {"const": True, "description": "only while paused"},
        }, ("name", "max_workers"), "A queue as stored; members left out are not set."),
        "QueueDefinitionInput": _request_object({
            "name": {"type": "string", "description": "ignored: the path names the queue"},
            "max_dispatches_per_second": {
                "type": "number", "minimum": rate_least, "maximum": rate_greatest,
                "description": "throttle rate; needs max_burst_size; 0: no throttle"},
            **queue_members,
            **queue_policy_members,
        }),
        "QueueStats": _object(
            {**{name: count for name in stats_members},
             "paused": {"const": True, "description": "only while paused"}},
            tuple(stats_members), "This node's counters for one queue."),
        "Node": _object({
            "id": string,
            "host": string,
            "state": {"type": "string", "enum": ["retrying", "recovering"]},
            "error": string,
        }, ("id", "host"), "The queue's active node; state and error only while this node "
                           "fails to take the queue over."),
        "Routing": _object({"queue_name": string, "job_category": string},
                           ("queue_name", "job_category")),
        "RoutingInput": _request_object({
            "queue_name": {"type": "string", "minLength": 1},
            "job_category": {"type": "string", "description": "ignored: the path names it"},
        }, ("queue_name",)),
        "JobInput": _request_object({
            "url": {"type": "string", "minLength": 1, "format": "uri",
                    "description": "absolute http or https URL, printable ASCII"},
            "payload": {"type": ["object", "array", "string", "number", "boolean"],
                        "description": "any JSON value: the body sent to the worker"},
            **push_members,
            "unique_key": {"type": "string", "minLength": 1, "maxLength": 255,
                           "description": "1 to 255 bytes of UTF-8: makes the push "
                                          "idempotent"},
            **policy_members,
            "category": {"type": "string", "description": "ignored: the path names it"},
        }, ("url",)),
        "JobBatchInput": _request_object({
            "jobs": {"type": "array", "items": _schema("JobInput"), "minItems": 1,
                     "maxItems": validate.MAX_BATCH_JOBS},
        }, ("jobs",)),
        "PushedJobs": _object({"jobs": {"type": "array", "items": _schema("PushedJob")}},
                              ("jobs",), "Each job's answer, in the order of the request."),
        "PushedJob": _object({
            "id": job_id,
            "queue_name": string,
            "category": string,
            "url": string,
            "payload": {"description": "the payload as pushed; null when none"},
            **{name: {k: v for k, v in schema.items() if k != "description"}
               for name, schema in push_members.items()},
        }, ("id", "queue_name", "category", "url", "payload", "run_after", "timeout",
            "retry_delay", "max_retries")),
        "Job": _object({
            "id": job_id,
            "category": string,
            "url": string,
            "payload": {"description": "the stored payload read back"},
            "status": {"type": "string", "enum": ["claimed", "grabbed"]},
            "created_at": time,
            "next_try": time,
            "timeout": count,
            "fail_count": count,
            "max_retries": count,
            "retry_delay": count,
        }, ("id", "category", "url", "payload", "status", "created_at", "next_try",
            "timeout", "fail_count", "max_retries", "retry_delay")),
        "FailedJob": _object({
            "id": job_id,
            "job_id": job_id,
            "category": string,
            "url": string,
            "payload": {"description": "the stored payload read back"},
            "result": _object({"status": string, "code": count, "message": string},
                              ("status", "code", "message")),
            "fail_count": count,
            "failed_at": time,
            "created_at": time,
        }, ("id", "job_id", "category", "url", "payload", "result", "fail_count",
            "failed_at", "created_at")),
        "JobPage": _object({"jobs": {"type": "array", "items": _schema("Job")},
                            "next_cursor": string}, ("jobs", "next_cursor")),
        "FailedPage": _object({"failed_jobs": {"type": "array", "items": _schema("FailedJob")},
                               "next_cursor": string}, ("failed_jobs", "next_cursor")),
        "FailedFilter": _request_object(bulk_filter),
        "RetryInput": _request_object({"run_after": push_members["run_after"]}),
        "Deleted": _object({"deleted": count}, ("deleted",)),
        "Retried": _object({"retried": count,
                            "jobs": {"type": "array", "items": job_id}}, ("retried", "jobs")),
    }


def _parameters() -> dict[str, Schema]:
    def path(name: str, schema: Schema, description: str, example: str) -> Schema:
        return {"name": name, "in": "path", "required": True, "schema": schema,
                "description": description, "example": example}

    def query(name: str, schema: Schema, description: str) -> Schema:
        return {"name": name, "in": "query", "schema": schema, "description": description}

    segment = {"type": "string", "minLength": 1}
    identifier = {"type": "string", "pattern": "^[0-9]+$"}
    # An empty value counts as absent (docs/api.md, Requests).
    absent = {"const": ""}
    return {
        "QueueName": path("queue_name", segment, "one path segment", "mail"),
        "NewQueueName": path("queue_name", {**segment, "maxLength": MAX_QUEUE_NAME_LENGTH},
                             "one path segment", "mail"),
        "JobCategory": path("job_category", segment,
                            "everything after the prefix, / included (1 to 255 bytes)",
                            "send_welcome"),
        "JobId": path("id", identifier, "decimal digits, at most 9223372036854775807", "4"),
        "FailureId": path("id", identifier, "decimal digits, at most 9223372036854775807",
                          "1"),
        "Limit": query("limit", {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 1000},
                                           absent]}, "page size (default 100)"),
        "Cursor": query("cursor", {"type": "string"}, "next_cursor of the previous page"),
        "JobOrder": query("order", {"type": "string", "enum": ["desc", "asc", ""]},
                          "by next_try, then id (default desc)"),
        "FailedOrder": query("order", {"type": "string", "enum": ["failed", "created", ""]},
                             "most recent failure, or most recently pushed, first "
                             "(default failed)"),
        "PrettyPrint": query("pp", {"type": "string"}, "1 or true: indent the answer"),
        "IdempotencyKey": {
            "name": "Idempotency-Key", "in": "header",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": "1 to 255 bytes of UTF-8: what the unique_key member does",
        },
    }


def _responses() -> dict[str, Schema]:
    error = {"application/json": {"schema": _schema("Error")}}
    responses: dict[str, Schema] = {
        _RESPONSE_NAMES[code]: {"description": text, "content": error}
        for code, text in _ERROR_TEXT.items()
    }
    responses["MethodNotAllowed"] = {
        "description": "The route does not take this method.",
        "headers": {"Allow": {"description": "the methods the route takes",
                              "schema": {"type": "string"}}},
        "content": error,
    }
    responses["Unauthorized"]["headers"] = {
        "WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
    responses["StoreUnavailable"]["headers"] = {
        "Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
    return responses


def _parameter(name: str) -> Schema:
    return {"$ref": "#/components/parameters/" + name}


def _operation(
    operation_id: str,
    summary: str,
    answer: Schema,
    *,
    parameters: tuple[str, ...] = (),
    body: tuple[str, bool] | None = None,
    store: bool = True,
    media_type: str = "application/json",
    headers: dict[str, Schema] | None = None,
    public: bool = False,
) -> Schema:
    """One operation: its 200 ``answer`` (a schema) with ``headers``, and the errors it can
    answer."""
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "responses": {"200": {"description": "OK",
                              "content": {media_type: {"schema": answer}}}},
    }
    if headers:
        operation["responses"]["200"]["headers"] = headers
    if parameters:
        operation["parameters"] = [_parameter(p) for p in parameters]
    if body is not None:
        name, required = body
        operation["requestBody"] = {
            "required": required,
            "description": "one JSON object" + ("" if required else
                                                "; none, or only whitespace, is {}"),
            "content": {"application/json": {"schema": _schema(name)}},
        }
    if public:
        operation["security"] = []  # answered without a token (docs/api.md, Authentication)
    codes = (400,) + ((401, 403) if not public else ()) + (404, 413, 500)
    for code in codes + ((503,) if store else ()):
        operation["responses"][str(code)] = {
            "$ref": "#/components/responses/" + _RESPONSE_NAMES[code]}
    return operation


def _head(get: Schema) -> Schema:
    """HEAD of a GET route: the same statuses and headers, no body."""
    head: Schema = {**get, "operationId": get["operationId"] + "Head",
                    "summary": get["summary"] + " (headers only)"}
    head["responses"] = {"200": {"description": "OK, without the body"}}
    head["responses"].update({k: v for k, v in get["responses"].items() if k != "200"})
    return head


def _paths() -> dict[str, dict[str, Schema]]:
    text = {"type": "string"}
    queue, job, failed = ("QueueName",), ("QueueName", "JobId"), ("QueueName", "FailureId")
    definition = _schema("QueueDefinition")
    duplicate = {"description": "true when the push's unique key was seen: it stored nothing "
                                "and answers the first push's answer",
                 "schema": {"const": "true"}}
    paths: dict[str, dict[str, Schema]] = {
        "/": {"get": _operation("getRoot", "Daemon name and version", text, store=False,
                                media_type="text/plain")},
        "/version": {"get": _operation("getVersion", "Daemon name and version", text,
                                       store=False, media_type="text/plain")},
        "/settings": {"get": _operation("getSettings", "Effective configuration",
                                        _schema("Settings"), store=False)},
        "/stats": {"get": _operation("getStats", "Process statistics", _schema("ProcessStats"),
                                     parameters=("PrettyPrint",), store=False)},
        "/healthz": {"get": _operation("getHealth", "Liveness", _schema("Status"),
                                       store=False, public=True)},
        "/readyz": {"get": _operation("getReadiness", "Readiness: the store answers",
                                      _schema("Status"), public=True)},
        "/metrics": {"get": _operation("getMetrics", "Prometheus metrics (text format 0.0.4)",
                                       text, store=False, media_type="text/plain")},
        "/openapi.json": {"get": _operation("getOpenAPI", "This document",
                                            {"type": "object"}, store=False, public=True)},
        "/queues": {"get": _operation("listQueues", "All queue definitions",
                                      {"type": "array", "items": definition})},
        "/queues/stats": {"get": _operation(
            "listQueueStats", "Stats of every queue known to this node",
            {"type": "object", "additionalProperties": _schema("QueueStats")}, store=False)},
        "/queue/{queue_name}": {
            "get": _operation("getQueue", "One queue definition", definition,
                              parameters=queue),
            "put": _operation("putQueue", "Create or replace a queue", definition,
                              parameters=("NewQueueName",),
                              body=("QueueDefinitionInput", True)),
            "delete": _operation("deleteQueue", "Delete a queue definition (its jobs stay)",
                                 definition, parameters=queue),
        },
        "/queue/{queue_name}/pause": {"post": _operation(
            "pauseQueue", "Stop the queue's deliveries", definition, parameters=queue)},
        "/queue/{queue_name}/resume": {"post": _operation(
            "resumeQueue", "Restart the queue's deliveries", definition, parameters=queue)},
        "/queue/{queue_name}/node": {"get": _operation(
            "getQueueNode", "The queue's active node", _schema("Node"), parameters=queue)},
        "/queue/{queue_name}/stats": {"get": _operation(
            "getQueueStats", "This node's stats of one queue", _schema("QueueStats"),
            parameters=queue, store=False)},
        **{
            "/queue/{queue_name}/%s" % state: {"get": _operation(
                "list%sJobs" % state.capitalize(), "The queue's %s jobs, a page" % state,
                _schema("JobPage"), parameters=(*queue, "JobOrder", "Limit", "Cursor"))}
            for state in ("grabbed", "waiting", "deferred")
        },
        "/queue/{queue_name}/job/{id}": {
            "get": _operation("getJob", "One job", _schema("Job"), parameters=job),
            "delete": _operation("deleteJob", "Cancel a job", _schema("Job"), parameters=job),
        },
        "/queue/{queue_name}/failed": {
            "get": _operation("listFailedJobs", "The failure log, a page",
                              _schema("FailedPage"),
                              parameters=(*queue, "FailedOrder", "Limit", "Cursor")),
            "delete": _operation("deleteFailedJobs",
                                 "Delete the matching failure-log entries, oldest first",
                                 _schema("Deleted"), parameters=queue,
                                 body=("FailedFilter", False)),
        },
        "/queue/{queue_name}/failed/retry": {"post": _operation(
            "retryFailedJobs", "Push the matching failure-log entries again, oldest first",
            _schema("Retried"), parameters=queue, body=("FailedFilter", False))},
        "/queue/{queue_name}/failed/{id}": {
            "get": _operation("getFailedJob", "One failure-log entry", _schema("FailedJob"),
                              parameters=failed),
            "delete": _operation("deleteFailedJob", "Delete one failure-log entry",
                                 _schema("FailedJob"), parameters=failed),
        },
        "/queue/{queue_name}/failed/{id}/retry": {"post": _operation(
            "retryFailedJob", "Push one failure-log entry again", _schema("PushedJob"),
            parameters=failed, body=("RetryInput", False))},
        "/routings": {"get": _operation("listRoutings", "All routings",
                                        {"type": "array", "items": _schema("Routing")})},
        "/routing/{job_category}": {
            "get": _operation("getRouting", "One routing", _schema("Routing"),
                              parameters=("JobCategory",)),
            "put": _operation("putRouting", "Route a job category to a queue",
                              _schema("Routing"), parameters=("JobCategory",),
                              body=("RoutingInput", True)),
            "delete": _operation("deleteRouting", "Delete a routing", _schema("Routing"),
                                 parameters=("JobCategory",)),
        },
        "/job/{job_category}": {"post": _operation(
            "pushJob", "Push a job; answered once it is stored", _schema("PushedJob"),
            parameters=("JobCategory", "IdempotencyKey"), body=("JobInput", True),
            headers={"Fireworq-Duplicate": duplicate})},
        "/jobs/{job_category}": {"post": _operation(
            "pushJobs", "Push up to %d jobs, all or none; answered once they are stored"
            % validate.MAX_BATCH_JOBS, _schema("PushedJobs"), parameters=("JobCategory",),
            body=("JobBatchInput", True), headers={
                "Fireworq-Duplicate": duplicate,
                "Fireworq-Duplicate-Jobs": {
                    "description": "the indexes of the jobs whose unique key was seen: "
                                   "they stored nothing (\"0, 3\")",
                    "schema": {"type": "string"}},
            })},
    }
    _link(paths, _LINKS)
    for item in paths.values():
        if "get" in item:
            item["head"] = _head(item["get"])
    return paths


#: What an answer names, and the operations it can be given to: (path, method) → link name
#: → (operationId, parameters as runtime expressions). Tools follow them from one request
#: to the next (OpenAPI links); schemathesis does, in its stateful phase.
_QUEUE_OF_DEFINITION = {"queue_name": "$response.body#/name"}
_QUEUE_OF_JOB = {"queue_name": "$request.path.queue_name"}
_LINKS: dict[tuple[str, str], dict[str, tuple[str, dict[str, str]]]] = {
    ("/queue/{queue_name}", "put"): {
        name: (operation_id, _QUEUE_OF_DEFINITION) for name, operation_id in (
            ("Queue", "getQueue"), ("Delete", "deleteQueue"), ("Pause", "pauseQueue"),
            ("Resume", "resumeQueue"), ("Stats", "getQueueStats"), ("Node", "getQueueNode"),
            ("Waiting", "listWaitingJobs"), ("Deferred", "listDeferredJobs"),
            ("FailureLog", "listFailedJobs"), ("RetryFailures", "retryFailedJobs"),
            ("DeleteFailures", "deleteFailedJobs"))
    },
    ("/routing/{job_category}", "put"): {
        "Routing": ("getRouting", {"job_category": "$response.body#/job_category"}),
        "Delete": ("deleteRouting", {"job_category": "$response.body#/job_category"}),
        "Push": ("pushJob", {"job_category": "$response.body#/job_category"}),
        "Queue": ("getQueue", {"queue_name": "$response.body#/queue_name"}),
    },
    ("/job/{job_category}", "post"): {
        "Job": ("getJob", {"queue_name": "$response.body#/queue_name",
                           "id": "$response.body#/id"}),
        "Cancel": ("deleteJob", {"queue_name": "$response.body#/queue_name",
                                 "id": "$response.body#/id"}),
    },
    ("/queue/{queue_name}/failed/{id}/retry", "post"): {
        "Job": ("getJob", {"queue_name": "$response.body#/queue_name",
                           "id": "$response.body#/id"}),
    },
    ("/queue/{queue_name}/failed", "get"): {
        "Entry": ("getFailedJob", {**_QUEUE_OF_JOB,
                                   "id": "$response.body#/failed_jobs/0/id"}),
        "Retry": ("retryFailedJob", {**_QUEUE_OF_JOB,
                                     "id": "$response.body#/failed_jobs/0/id"}),
        "Delete": ("deleteFailedJob", {**_QUEUE_OF_JOB,
                                       "id": "$response.body#/failed_jobs/0/id"}),
    },
    ("/queue/{queue_name}/failed/{id}", "get"): {
        "Retry": ("retryFailedJob", {**_QUEUE_OF_JOB, "id": "$response.body#/id"}),
        "Delete": ("deleteFailedJob", {**_QUEUE_OF_JOB, "id": "$response.body#/id"}),
    },
    ("/queue/{queue_name}/waiting", "get"): {
        "Job": ("getJob", {**_QUEUE_OF_JOB, "id": "$response.body#/jobs/0/id"}),
    },
    ("/queue/{queue_name}/deferred", "get"): {
        "Job": ("getJob", {**_QUEUE_OF_JOB, "id": "$response.body#/jobs/0/id"}),
        "Cancel": ("deleteJob", {**_QUEUE_OF_JOB, "id": "$response.body#/jobs/0/id"}),
    },
}


def _link(paths: dict[str, dict[str, Schema]],
          links: dict[tuple[str, str], dict[str, tuple[str, dict[str, str]]]]) -> None:
    for (path, method), named in links.items():
        paths[path][method]["responses"]["200"]["links"] = {
            name: {"operationId": operation_id, "parameters": parameters}
            for name, (operation_id, parameters) in named.items()
        }


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fireworq-py",
            "version": __version__,
            "description": _INFO,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": _paths(),
        # A token is needed only when tokens are configured: none, or a bearer token.
        "security": [{}, {"apiToken": []}],
        "components": {
            "securitySchemes": {"apiToken": {
                "type": "http", "scheme": "bearer",
                "description": "An API token (FIREWORQ_API_TOKENS); its scope is read, push "
                               "or admin"}},
            "schemas": _schemas(),
            "parameters": _parameters(),
            "responses": _responses(),
        },
    }
