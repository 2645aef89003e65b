"""The HTTP API of docs/api.md, as a Klein app.

Handlers parse and check the request, call the queue manager or the store, and render.
Errors are domain exceptions mapped to JSON in one place (``_failed``).
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import unquote_to_bytes

import attrs
from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound as NoRoute

from fireworq import __version__, jsontext
from fireworq.access import AccessCheck
from fireworq.api import openapi, render, validate
from fireworq.api.console import Console, load_files
from fireworq.cluster.ownership import QueueOwnership
from fireworq.cursor import decode_cursor
from fireworq.destinations import DestinationDenied, DestinationPolicy
from fireworq.errors import InvalidInput, JobTooLarge, NotFound, StoreUnavailable
from fireworq.failures import FailureLog
from fireworq.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from fireworq.metrics import render_metrics
from fireworq.nodewide import NodeFigures
from fireworq.delivery.policy import REDACTED_SECRET, check_secrets
from fireworq.model import (
    BACKOFF_FIXED,
    BACKOFFS,
    DEFAULT_UNIQUE_WINDOW,
    MAX_RETRY_DELAY,
    RESULT_MODE_FIREWORQ,
    RESULT_MODES,
    FailedOrder,
    JobState,
    NewJob,
    QueueDefinition,
    Routing,
    UniqueKey,
    is_valid_unique_key,
)
from fireworq.procstats import process_stats
from fireworq.queues import Accepted, QueueManager
from fireworq.storage import Store
from fireworq.storecounts import StoreCounts

log = Logger()

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
METHOD_ORDER = ("GET", "HEAD", "PUT", "DELETE", "POST")
READINESS_TIMEOUT = 2.0
# The push answer, members in the order of docs/api.md, POST /job (a template: it is the hottest
# path).
_PUSHED = (
    '{"id":%d,"queue_name":%s,"category":%s,"url":%s,"payload":%s,"run_after":%d,'
    '"timeout":%d,"retry_delay":%d,"max_retries":%d}'
)
_STATE_LISTS = {"grabbed": JobState.GRABBED, "waiting": JobState.WAITING,
                "deferred": JobState.DEFERRED}
_WHITESPACE = b" \t\r\n"
IDEMPOTENCY_KEY = b"idempotency-key"
DUPLICATE_HEADER = b"fireworq-duplicate"
DUPLICATE_JOBS_HEADER = b"fireworq-duplicate-jobs"
#: The console's files (docs/console.md), read once: they do not change while the daemon runs.
CONSOLE_FILES = load_files()


def push_answer(job_id: int, queue_name: str, job: NewJob, payload_text: str) -> bytes:
    """The answer of a push (docs/api.md, POST /job); ``payload_text`` is JSON text, already
    compact."""
    return (_PUSHED % (
        job_id, jsontext.encode_str(queue_name), jsontext.encode_str(job.category),
        jsontext.encode_str(job.url), payload_text, job.run_after, job.timeout,
        job.retry_delay, job.max_retries,
    )).encode("utf-8")


def respond(request: IRequest, code: int, body: bytes, content_type: bytes = JSON) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def respond_json(request: IRequest, value: Any, code: int = 200) -> bytes:
    return respond(request, code, jsontext.encode(value))


def respond_error(request: IRequest, code: int, message: str) -> bytes:
    if code == 503:
        request.setHeader(b"retry-after", b"1")
    return respond_json(request, render.error(code, message), code)


async def with_timeout(d: Deferred[Any], seconds: float, clock: IReactorTime) -> Any:
    try:
        return await d.addTimeout(seconds, clock)
    except DeferredTimeoutError:
        # addTimeout turns the cancellation it causes into its own TimeoutError.
        raise StoreUnavailable("no answer within %g seconds" % seconds) from None


class PathCheck(Resource):
    """Checks made before routing: the API token (401, 403: docs/api.md, Authentication), a
    UTF-8 path (400) in canonical form (404).

    Pushes, by far the most frequent request, skip Klein's routing: ``POST /job/<c>`` goes
    straight to ``push``, which saves about a third of a push's CPU time.
    """

    isLeaf = True

    def __init__(self, routed: IResource, push: Callable[[IRequest, str], Any],
                 access: AccessCheck, console: Console) -> None:
        Resource.__init__(self)
        self._routed = routed
        self._push = push
        self._access = access
        self._console = console

    def render(self, request: IRequest) -> Any:
        raw_path = unquote_to_bytes(request.path)
        if self._access.enabled:
            # Before the path's own checks: without a token, every path gets the same 401.
            refused = self._check_token(request, raw_path.decode("utf-8", "replace"))
            if refused is not None:
                return refused
        try:
            path = raw_path.decode("utf-8")
        except UnicodeDecodeError:
            return respond_error(request, 400, "Path is not valid UTF-8")
        segments = path.split("/")[1:]
        if (
            not path.startswith("/")
            or "" in segments[:-1]
            or "." in segments
            or ".." in segments
        ):
            return respond_error(request, 404, "No such endpoint: %s" % path)
        if request.method == b"POST" and path.startswith("/job/") and len(path) > 5:
            return self._push(request, path[5:])
        if Console.claims(path):
            return self._console.render(request, path)
        # Klein binds its URL map to the Host header's name, and werkzeug refuses a name that
        # is not UTF-8 or not IDNA (a text/html 400, or a 500 for "a..b"). No route depends
        # on the host, so routing is given one that always binds.
        request.requestHeaders.setRawHeaders(b"host", [b"localhost"])
        return self._routed.render(request)

    def _check_token(self, request: IRequest, path: str) -> bytes | None:
        """None when the request may go on (its token's scope noted for the access log), else
        the 401 or 403 answer."""
        values = request.requestHeaders.getRawHeaders(b"authorization")
        decision = self._access.check(request.method, path, values[0] if values else None)
        request.token_scope = decision.scope  # type: ignore[attr-defined]
        if not decision.status:
            return None
        if decision.status == 401:
            request.setHeader(b"www-authenticate", b"Bearer")
        return respond_error(request, decision.status, decision.message)


class FireworqAPI:
    app = Klein()
    app.url_map.merge_slashes = False
    app.url_map.redirect_defaults = False

    def __init__(
        self,
        *,
        clock: IReactorTime,
        store: Store,
        manager: QueueManager,
        ownership: QueueOwnership,
        settings: dict[str, str],
        started_at: float,
        access: AccessCheck | None = None,
        destinations: DestinationPolicy | None = None,
        figures: NodeFigures | None = None,
    ) -> None:
        self._clock = clock
        #: Each queue's figures for the node (all its processes).
        self._figures = figures or NodeFigures(None, manager.snapshots)
        self._access = access or AccessCheck(())
        self._destinations = destinations or DestinationPolicy()
        self._store = store
        self._manager = manager
        self._ownership = ownership
        self._settings = settings
        self._started_at = started_at
        self._store_counts = StoreCounts(store, clock, timeout=READINESS_TIMEOUT)
        self._failures = FailureLog(store, manager)
        self._console = Console(CONSOLE_FILES)
        self._openapi_text: bytes | None = None

    def resource(self) -> IResource:
        return PathCheck(self.app.resource(), self.push_now, self._access, self._console)

    # Errors

    @app.handle_errors(Exception)
    def _failed(self, request: IRequest, failure: Failure) -> bytes | None:
        path = unquote_to_bytes(request.path).decode("utf-8", "replace")
        if failure.check(InvalidInput):
            return respond_error(request, 400, str(failure.value))
        if failure.check(NotFound):
            return respond_error(request, 404, str(failure.value))
        if failure.check(JobTooLarge):
            return respond_error(request, 413, str(failure.value))
        if failure.check(StoreUnavailable):
            return respond_error(request, 503, "Store unavailable: %s" % failure.value)
        if failure.check(NoRoute):
            return respond_error(request, 404, "No such endpoint: %s" % path)
        if failure.check(MethodNotAllowed):
            error: MethodNotAllowed = failure.value  # type: ignore[assignment]
            allowed = set(error.valid_methods or ())
            if "GET" in allowed:
                allowed.add("HEAD")
            listed = ", ".join(m for m in METHOD_ORDER if m in allowed)
            request.setHeader(b"allow", listed.encode("ascii"))
            method = request.method.decode("latin-1")
            return respond_error(
                request, 405,
                "Method %s is not allowed on %s; allowed: %s" % (method, path, listed),
            )
        if failure.check(CancelledError):
            return None  # the client went away; nobody to answer
        log.failure("Unexpected error answering {method} {uri}", failure,
                    method=request.method, uri=request.uri)
        return respond_error(
            request, 500, "Unexpected server error; details are in the error log"
        )

    # Identity and process

    @app.route("/", methods=["GET"])
    @app.route("/version", methods=["GET"])
    def version(self, request: IRequest) -> bytes:
        text = "fireworq-py %s (Fireworq 1.5 compatible)\n" % __version__
        return respond(request, 200, text.encode("utf-8"), TEXT)

    @app.route("/settings", methods=["GET"])
    def settings(self, request: IRequest) -> bytes:
        return respond_json(request, self._settings)

    @app.route("/stats", methods=["GET"])
    def stats(self, request: IRequest) -> bytes:
        figures = process_stats(self._clock.seconds(), self._started_at)
        if validate.query_param(request, b"pp") in ("1", "true"):
            return respond(request, 200, jsontext.encode_indented(figures))
        return respond_json(request, figures)

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request: IRequest) -> bytes:
        return respond_json(request, {"status": "ok"})

    @app.route("/readyz", methods=["GET"])
    async def readyz(self, request: IRequest) -> bytes:
        await with_timeout(
            Deferred.fromCoroutine(self._store.ping()), READINESS_TIMEOUT, self._clock
        )
        return respond_json(request, {"status": "ok"})

    @app.route("/metrics", methods=["GET"])
    async def metrics(self, request: IRequest) -> bytes:
        tables = {name: d.table for name, d in self._manager.dispatchers.items()}
        snapshots, process = await self._figures.with_process()
        counts = await self._store_counts.read(list(tables.values()))
        return respond(request, 200, render_metrics(snapshots, tables, counts, process),
                       METRICS_CONTENT_TYPE)

    @app.route("/openapi.json", methods=["GET"])
    def openapi_document(self, request: IRequest) -> bytes:
        """The OpenAPI document (docs/api.md, OpenAPI document), encoded when first asked."""
        if self._openapi_text is None:
            self._openapi_text = jsontext.encode(openapi.document())
        return respond(request, 200, self._openapi_text)

    # Queues

    @app.route("/queues", methods=["GET"])
    async def queues(self, request: IRequest) -> bytes:
        definitions = await self._store.list_queues()
        return respond_json(request, [render.queue_definition(d) for d in definitions])

    @app.route("/queues/stats", methods=["GET"])
    async def queues_stats(self, request: IRequest) -> bytes:
        snapshots = await self._figures.snapshots()
        names = sorted(snapshots, key=lambda name: name.encode("utf-8", "surrogatepass"))
        return respond_json(
            request, {name: render.queue_stats(snapshots[name]) for name in names})

    @app.route("/queue/<queue_name>", methods=["GET"])
    async def get_queue(self, request: IRequest, queue_name: str) -> bytes:
        definition = await self._store.get_queue(queue_name)
        if definition is None:
            raise NotFound("No such queue: %s" % queue_name)
        return respond_json(request, render.queue_definition(definition))

    @app.route("/queue/<queue_name>", methods=["PUT"])
    async def put_queue(self, request: IRequest, queue_name: str) -> bytes:
        validate.queue_name(queue_name)
        members = self._body(request)
        jsontext.get_string(members, "name")  # checked, then ignored: the path names it
        ranges = validate.QUEUE_RANGES
        polling_interval = jsontext.get_int(
            members, "polling_interval", *ranges["polling_interval"]) or 0
        max_workers = jsontext.get_int(members, "max_workers", *ranges["max_workers"]) or 0
        rate = jsontext.get_number(
            members, "max_dispatches_per_second", *ranges["max_dispatches_per_second"]) or 0.0
        burst = jsontext.get_int(members, "max_burst_size", *ranges["max_burst_size"]) or 0
        # Ours replace what was stored, as Fireworq's members do: absent means 0.
        failed_job_ttl = jsontext.get_int(members, "failed_job_ttl", *ranges["failed_job_ttl"])
        failed_job_limit = jsontext.get_int(
            members, "failed_job_limit", *ranges["failed_job_limit"])
        unique_window = jsontext.get_int(members, "unique_window", *ranges["unique_window"])
        policy = await self._delivery_policy(queue_name, members)
        definition = attrs.evolve(
            self._manager.resolve(queue_name, polling_interval=polling_interval,
                                  max_workers=max_workers, rate=rate, burst=burst),
            failed_job_ttl=failed_job_ttl or 0, failed_job_limit=failed_job_limit or 0,
            unique_window=DEFAULT_UNIQUE_WINDOW if unique_window is None else unique_window,
            **policy,
        )
        stored = await self._manager.put_queue(definition)
        return respond_json(request, render.queue_definition(stored))

    async def _delivery_policy(
        self, queue_name: str, members: dict[str, jsontext.Member]
    ) -> dict[str, Any]:
        """The delivery members of a queue PUT (docs/api.md, Delivery policy), absent ones at
        their defaults; redacted secrets stand for those stored now."""
        policy: dict[str, Any] = {
            "retry_backoff": validate.choice_field(members, "retry_backoff", BACKOFFS)
            or BACKOFF_FIXED,
            "retry_max_delay": jsontext.get_int(
                members, "retry_max_delay", 0, MAX_RETRY_DELAY) or 0,
            "retry_jitter": bool(validate.boolean_field(members, "retry_jitter")),
            "result_mode": validate.choice_field(members, "result_mode", RESULT_MODES)
            or RESULT_MODE_FIREWORQ,
            "headers": validate.headers_field(members, "headers") or (),
        }
        secrets = members.get("signing_secrets")
        if secrets is not None and secrets.value is not None:
            stored: tuple[str, ...] = ()
            if isinstance(secrets.value, list) and REDACTED_SECRET in secrets.value:
                existing = await self._store.get_queue(queue_name)
                stored = existing.signing_secrets if existing is not None else ()
            policy["signing_secrets"] = check_secrets(secrets.value, stored)
        return policy

    @app.route("/queue/<queue_name>", methods=["DELETE"])
    async def delete_queue(self, request: IRequest, queue_name: str) -> bytes:
        deleted = await self._manager.delete_queue(queue_name)
        return respond_json(request, render.queue_definition(deleted))

    @app.route("/queue/<queue_name>/pause", methods=["POST"])
    async def pause(self, request: IRequest, queue_name: str) -> bytes:
        paused = await self._manager.set_paused(queue_name, True)
        return respond_json(request, render.queue_definition(paused))

    @app.route("/queue/<queue_name>/resume", methods=["POST"])
    async def resume(self, request: IRequest, queue_name: str) -> bytes:
        resumed = await self._manager.set_paused(queue_name, False)
        return respond_json(request, render.queue_definition(resumed))

    async def _stored(self, queue_name: str) -> QueueDefinition:
        """The queue as this process knows it, or as stored when it was defined elsewhere
        since the last refresh."""
        definition = await self._manager.known(queue_name)
        if definition is None:
            raise NotFound("No such queue: %s" % queue_name)
        return definition

    @app.route("/queue/<queue_name>/node", methods=["GET"])
    async def node(self, request: IRequest, queue_name: str) -> bytes:
        await self._stored(queue_name)
        node = await self._ownership.node(queue_name)
        if node is None:
            raise NotFound("No node is active for this queue")
        answer: dict[str, Any] = {"id": node.id, "host": node.host}
        status = self._ownership.status(queue_name)
        if status is not None and status.error is not None:
            # This node holds the lock but cannot take the queue over (yet): say why.
            answer["state"] = status.state.value
            answer["error"] = status.error
        return respond_json(request, answer)

    @app.route("/queue/<queue_name>/stats", methods=["GET"])
    async def queue_stats(self, request: IRequest, queue_name: str) -> bytes:
        await self._stored(queue_name)
        snapshots = await self._figures.snapshots()
        snapshot = snapshots.get(queue_name)
        if snapshot is None:  # deleted meanwhile
            raise NotFound("No such queue: %s" % queue_name)
        return respond_json(request, render.queue_stats(snapshot))

    @app.route("/queue/<queue_name>/<any(grabbed,waiting,deferred):state>", methods=["GET"])
    async def jobs(self, request: IRequest, queue_name: str, state: str) -> bytes:
        order = validate.query_param(request, b"order") or "desc"
        if order not in ("asc", "desc"):
            raise InvalidInput("Invalid order: must be asc or desc")
        limit = validate.limit_param(request)
        cursor = decode_cursor(validate.query_param(request, b"cursor"))
        definition = await self._stored(queue_name)
        page = await self._store.list_jobs(
            definition.table, _STATE_LISTS[state], order == "asc", cursor, limit
        )
        return respond_json(request, render.job_page(page))

    @app.route("/queue/<queue_name>/job/<job_id>", methods=["GET"])
    async def get_job(self, request: IRequest, queue_name: str, job_id: str) -> bytes:
        return await self._job_action(request, queue_name, job_id, self._store.get_job)

    @app.route("/queue/<queue_name>/job/<job_id>", methods=["DELETE"])
    async def delete_job(self, request: IRequest, queue_name: str, job_id: str) -> bytes:
        return await self._job_action(request, queue_name, job_id, self._store.delete_job)

    async def _job_action(
        self, request: IRequest, queue_name: str, job_id: str, action: Callable[..., Any]
    ) -> bytes:
        number = validate.identifier(job_id, "job id")
        definition = await self._stored(queue_name)
        job = await action(definition.table, number)
        if job is None:
            raise NotFound("No such job: %d" % number)
        return respond_json(request, render.job(job))

    @app.route("/queue/<queue_name>/failed", methods=["GET"])
    async def failed(self, request: IRequest, queue_name: str) -> bytes:
        order = validate.query_param(request, b"order") or "failed"
        if order not in ("failed", "created"):
            raise InvalidInput("Invalid order: must be failed or created")
        limit = validate.limit_param(request)
        cursor = decode_cursor(validate.query_param(request, b"cursor"))
        definition = await self._stored(queue_name)
        page = await self._store.list_failed(definition.table, FailedOrder(order), cursor, limit)
        return respond_json(request, render.failed_page(page))

    @app.route("/queue/<queue_name>/failed", methods=["DELETE"])
    async def delete_failed_many(self, request: IRequest, queue_name: str) -> bytes:
        selection, limit = validate.failed_filter(self._optional_body(request))
        definition = await self._stored(queue_name)
        deleted = await self._failures.delete_many(definition, selection, limit)
        return respond_json(request, {"deleted": deleted})

    @app.route("/queue/<queue_name>/failed/retry", methods=["POST"])
    async def retry_failed_many(self, request: IRequest, queue_name: str) -> bytes:
        selection, limit = validate.failed_filter(self._optional_body(request))
        definition = await self._stored(queue_name)
        retried = await self._failures.retry_many(definition, selection, limit)
        return respond_json(
            request, {"retried": len(retried), "jobs": [r.pushed.id for r in retried]})

    @app.route("/queue/<queue_name>/failed/<failure_id>/retry", methods=["POST"])
    async def retry_failed(self, request: IRequest, queue_name: str, failure_id: str) -> bytes:
        number = validate.identifier(failure_id, "failure id")
        run_after = jsontext.get_int(
            self._optional_body(request), "run_after", *validate.PUSH_RANGES["run_after"]) or 0
        definition = await self._stored(queue_name)
        retried = await self._failures.retry(definition, number, run_after)
        # The payload as the failure log shows it: the push's own text is not kept.
        payload = jsontext.reread_payload(retried.job.payload).text
        return respond(request, 200, push_answer(
            retried.pushed.id, definition.name, retried.job, payload))

    @app.route("/queue/<queue_name>/failed/<failure_id>", methods=["GET"])
    async def get_failed(self, request: IRequest, queue_name: str, failure_id: str) -> bytes:
        return await self._failed_action(request, queue_name, failure_id, self._store.get_failed)

    @app.route("/queue/<queue_name>/failed/<failure_id>", methods=["DELETE"])
    async def delete_failed(self, request: IRequest, queue_name: str, failure_id: str) -> bytes:
        return await self._failed_action(
            request, queue_name, failure_id, self._store.delete_failed
        )

    async def _failed_action(
        self, request: IRequest, queue_name: str, failure_id: str, action: Callable[..., Any]
    ) -> bytes:
        number = validate.identifier(failure_id, "failure id")
        definition = await self._stored(queue_name)
        failed = await action(definition.table, number)
        if failed is None:
            raise NotFound("No such failed job: %d" % number)
        return respond_json(request, render.failed_job(failed))

    # Routings

    @app.route("/routings", methods=["GET"])
    async def routings(self, request: IRequest) -> bytes:
        return respond_json(request, [render.routing(r) for r in await self._store.list_routings()])

    @app.route("/routing/<path:job_category>", methods=["GET"])
    async def get_routing(self, request: IRequest, job_category: str) -> bytes:
        routing = await self._store.get_routing(job_category)
        if routing is None:
            raise NotFound("No such routing: %s" % job_category)
        return respond_json(request, render.routing(routing))

    @app.route("/routing/<path:job_category>", methods=["PUT"])
    async def put_routing(self, request: IRequest, job_category: str) -> bytes:
        validate.category(job_category)
        members = self._body(request)
        jsontext.get_string(members, "job_category")
        queue_name = jsontext.get_string(members, "queue_name")
        if not queue_name:
            raise InvalidInput("Missing field: queue_name")
        routing = await self._manager.put_routing(Routing(queue_name, job_category))
        return respond_json(request, render.routing(routing))

    @app.route("/routing/<path:job_category>", methods=["DELETE"])
    async def delete_routing(self, request: IRequest, job_category: str) -> bytes:
        return respond_json(request, render.routing(
            await self._manager.delete_routing(job_category)))

    # Jobs

    @app.route("/job/<path:job_category>", methods=["POST"])
    def push(self, request: IRequest, job_category: str) -> Any:
        """Only reached for the 405 of other methods: ``PathCheck`` sends POSTs here."""
        return self.push_now(request, job_category)

    def push_now(self, request: IRequest, job_category: str) -> Any:
        """Check the push, then answer once the job is stored (no Deferred on bad input)."""
        try:
            validate.category(job_category)
            job, echo = _new_job(self._body(request), job_category, _idempotency_key(request))
            self.check_destination(job.url)
        except InvalidInput as e:
            return respond_error(request, 400, str(e))
        pushed = self._manager.push_nowait(job_category, job)
        pushed.addCallbacks(
            self._pushed, self._push_failed, callbackArgs=(request, job, echo),
            errbackArgs=(request,),
        )
        pushed.addErrback(lambda f: log.failure("Answering a push failed", f))
        return NOT_DONE_YET

    def _pushed(
        self, accepted: Accepted, request: IRequest, job: NewJob, echo: jsontext.RawJSON | None,
    ) -> None:
        if request.channel is None:  # type: ignore[attr-defined]
            return  # the client went away; nobody to answer
        if accepted.duplicate is not None:
            request.setHeader(DUPLICATE_HEADER, b"true")
        request.write(respond(request, 200, _answer(accepted, job, echo)))
        request.finish()

    @app.route("/jobs/<path:job_category>", methods=["POST"])
    async def push_batch(self, request: IRequest, job_category: str) -> bytes:
        """docs/api.md, POST /jobs: every job or none."""
        validate.category(job_category)
        if request.getHeader(IDEMPOTENCY_KEY) is not None:
            raise InvalidInput("The Idempotency-Key header is for POST /job only; give each"
                               " job of a batch its unique_key")
        jobs_member = self._body(request).get("jobs")
        if jobs_member is None or jobs_member.value is None:
            raise InvalidInput("Missing field: jobs")
        if not isinstance(jobs_member.value, list):
            raise InvalidInput("Field 'jobs' must be an array of job objects")
        count = len(jobs_member.value)
        if not 1 <= count <= validate.MAX_BATCH_JOBS:
            raise InvalidInput("Field 'jobs' must hold 1 to %d jobs" % validate.MAX_BATCH_JOBS)
        parsed = []
        for index, element in enumerate(jsontext.array_members(jobs_member.raw)):
            try:
                if element is None:
                    raise InvalidInput("must be a JSON object")
                parsed.append(_new_job(element, job_category, None))
                self.check_destination(parsed[-1][0].url)
            except InvalidInput as e:
                raise InvalidInput("Job %d: %s" % (index, e)) from None
        accepted = await self._manager.push_batch(job_category, [job for job, _ in parsed])
        duplicates = [index for index, one in enumerate(accepted) if one.duplicate is not None]
        if duplicates:
            request.setHeader(DUPLICATE_JOBS_HEADER,
                              ", ".join(str(index) for index in duplicates).encode("ascii"))
            if len(duplicates) == count:
                request.setHeader(DUPLICATE_HEADER, b"true")
        answers = b",".join(_answer(one, job, echo)
                            for one, (job, echo) in zip(accepted, parsed))
        return respond(request, 200, b'{"jobs":[' + answers + b"]}")

    def _push_failed(self, failure: Failure, request: IRequest) -> None:
        if request.channel is None:  # type: ignore[attr-defined]
            return
        request.write(self._failed(request, failure) or b"")
        request.finish()

    def check_destination(self, url: str) -> None:
        """400 for a push (or a job of a batch) whose URL names a denied address or host name
        (docs/api.md, POST /job); names that resolve to a denied address are caught when
        delivering."""
        if not self._destinations.active:
            return
        try:
            self._destinations.check_literal(validate.url_host(url))
        except DestinationDenied as e:
            raise InvalidInput(str(e)) from None

    def _body(self, request: IRequest) -> dict[str, jsontext.Member]:
        return jsontext.parse_object(_read(request))

    def _optional_body(self, request: IRequest) -> dict[str, jsontext.Member]:
        """A body that may be left out: none (or only whitespace) means no members."""
        body = _read(request)
        return jsontext.parse_object(body) if body.strip(_WHITESPACE) else {}


def _read(request: IRequest) -> bytes:
    content = request.content
    body: bytes = content.read() if content is not None else b""
    return body


def _answer(accepted: Accepted, job: NewJob, echo: jsontext.RawJSON | None) -> bytes:
    """A push's answer; the first push's for a duplicate (docs/api.md, Idempotent pushes)."""
    first = accepted.duplicate
    if first is not None and first.unique is not None:
        return push_answer(accepted.job.id, accepted.queue_name, first,
                           first.unique.answer_payload)
    return push_answer(accepted.job.id, accepted.queue_name, job,
                       "null" if echo is None else echo.text)


def _idempotency_key(request: IRequest) -> str | None:
    """The ``Idempotency-Key`` header's value, checked as a ``unique_key``."""
    values = request.requestHeaders.getRawHeaders(IDEMPOTENCY_KEY)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidInput("Invalid Idempotency-Key header: given more than once")
    try:
        key: str = values[0].decode("utf-8")
    except UnicodeDecodeError:
        key = ""
    if not is_valid_unique_key(key):
        raise InvalidInput("Invalid Idempotency-Key header: must be 1 to 255 bytes of UTF-8")
    return key


def _new_job(
    members: dict[str, jsontext.Member], job_category: str, header_key: str | None
) -> tuple[NewJob, jsontext.RawJSON | None]:
    """A job of a push (docs/api.md, POST /job), and its payload as the answer shows it."""
    url = jsontext.get_string(members, "url")
    payload = members.get("payload")
    if payload is not None and payload.value is None:
        payload = None
    ranges = validate.PUSH_RANGES
    run_after = jsontext.get_int(members, "run_after", *ranges["run_after"]) or 0
    max_retries = jsontext.get_int(members, "max_retries", *ranges["max_retries"]) or 0
    retry_delay = jsontext.get_int(members, "retry_delay", *ranges["retry_delay"]) or 0
    timeout = jsontext.get_int(members, "timeout", *ranges["timeout"]) or 0
    jsontext.get_string(members, "category")
    key = jsontext.get_string(members, "unique_key")
    if not url:
        raise InvalidInput("Missing field: url")
    if not validate.is_valid_url(url):
        raise InvalidInput("Invalid url: must be an absolute http or https URL")
    if key is not None and not is_valid_unique_key(key):
        raise InvalidInput("Field 'unique_key' must be a string of 1 to 255 bytes of UTF-8")
    if header_key is not None:
        if key is not None and key != header_key:
            raise InvalidInput("Field 'unique_key' and the Idempotency-Key header differ")
        key = header_key
    echo = jsontext.payload_echo(payload)
    job = NewJob(
        category=job_category, url=url, payload=jsontext.stored_payload(payload),
        run_after=run_after, max_retries=max_retries, retry_delay=retry_delay,
        timeout=timeout,
        unique=None if key is None else UniqueKey(key, "null" if echo is None else echo.text),
        options=validate.job_options(members),
    )
    return job, echo
