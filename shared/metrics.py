"""Prometheus metrics for every service: the metrics, their label rules and their exposition.

Names follow ``exports_<noun>_<unit|total>``. Every label takes values from a short, fixed list:
anything else is recorded as ``other``, so no request, user or export id can grow a series.
The meaning of each metric is documented in ``docs/operations.md``. The worker's and the
janitor's ``/metrics`` server is ``shared.health``'s; the janitor refreshes the state gauges.

Everything registers in prometheus_client's default registry, so the process collectors
(``process_resident_memory_bytes``, CPU, open files) come along on every ``/metrics``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from faststream.nats.prometheus.provider import (
    BatchNatsMetricsSettingsProvider,
    NatsMetricsSettingsProvider,
)
from faststream.prometheus import ConsumeAttrs, PrometheusMiddleware
from nats.aio.msg import Msg
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from shared.formats import ENDED_STATUSES, ExportStatus, ExportType
from shared.formats import FORMATS as FORMATS_INFO
from shared.lanes import LANE_INFO, LANES

log = logging.getLogger(__name__)

#: Where the worker's and the janitor's ``/metrics``, ``/healthz`` and ``/readyz`` listen.

# Label values: every format, type and status the product knows (shared.formats).
TYPES = tuple(t.value for t in ExportType)
FORMATS = tuple(f.value for f in FORMATS_INFO)
STATUSES = tuple(s.value for s in ExportStatus)
FINISHED = tuple(s.value for s in ENDED_STATUSES)
CREATE_RESULTS = ("accepted", "replayed", "invalid", "limited")
DELETE_REASONS = (
    "expired",
    "completed_cap",
    "storage_cap",
    "deleted",
    "orphan_object",
    "orphan_upload",
)
LANE_NAMES = tuple(lane.value for lane in LANES)
CONSUMERS = (*(info.durable for info in LANE_INFO.values()), "janitor")
OTHER = "other"
UNMATCHED_ROUTE = "<unmatched>"

# Exports take from well under a second to many minutes.
_DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
_WAIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SWEEP_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

# --- api -------------------------------------------------------------------------------------

EXPORTS_BY_LANE = Counter(
    "exports_lane_total",
    "Exports created (accepted), by the fairness lane their row count put them in.",
    ["lane"],
)
EXPORTS_CREATED = Counter(
    "exports_created_total",
    "Export requests by type, format and result: accepted (a new export), replayed (an "
    "Idempotency-Key answered with the existing export), invalid (refused by validation), "
    "limited (per-user concurrency limit).",
    ["type", "format", "result"],
)
HTTP_REQUEST_DURATION = Histogram(
    "exports_http_request_duration_seconds",
    "HTTP requests served by the api, by route template, method and status code. A download's "
    "duration includes streaming its whole body.",
    ["route", "method", "status"],
    buckets=_HTTP_BUCKETS,
)

RATE_LIMITED = Counter(
    "exports_rate_limited_total",
    "HTTP requests refused with 429 by the request rate limits, by bucket: user (a signed-in "
    "user's) or anonymous (a client IP's).",
    ["bucket"],
)
RATE_LIMIT_ERRORS = Counter(
    "exports_rate_limit_errors_total",
    "HTTP requests let through without a rate limit because the NATS key-value store did not "
    "answer in time (fail open).",
)

# --- worker ----------------------------------------------------------------------------------

EXPORTS_IN_FLIGHT = Gauge(
    "exports_in_flight",
    "Exports this worker process is running now.",
)
WORKER_CONCURRENCY = Gauge(
    "exports_worker_concurrency",
    "Large-lane exports one worker process runs at once (EXPORTS_WORKER_CONCURRENCY).",
)
WORKER_SLOTS = Gauge(
    "exports_worker_slots",
    "Exports one worker process runs at once, per fairness lane: large is "
    "EXPORTS_WORKER_CONCURRENCY, small EXPORTS_WORKER_SMALL_SLOTS (shared/lanes.py).",
    ["lane"],
)
EXPORTS_IN_FLIGHT_BY_LANE = Gauge(
    "exports_in_flight_by_lane",
    "Exports this worker process is running now, per fairness lane.",
    ["lane"],
)
EXPORTS_FINISHED = Counter(
    "exports_finished_total",
    "Exports that reached an end status in a worker, by type, format and status.",
    ["type", "format", "status"],
)
EXPORT_DURATION = Histogram(
    "exports_duration_seconds",
    "Time of the final attempt of an export, from claim to its end status, by format and status.",
    ["format", "status"],
    buckets=_DURATION_BUCKETS,
)
EXPORT_QUEUE_WAIT = Histogram(
    "exports_queue_wait_seconds",
    "Time from an export's creation to a worker claiming it for its first attempt, by format "
    "and fairness lane.",
    ["format", "lane"],
    buckets=_WAIT_BUCKETS,
)
EXPORT_ROWS = Counter(
    "exports_rows_total",
    "Catalog rows written into export files, by format and the export's end status.",
    ["format", "status"],
)
EXPORT_BYTES = Counter(
    "exports_bytes_total",
    "Bytes written into export files (uploaded), by format and the export's end status.",
    ["format", "status"],
)
EXPORT_RETRIES = Counter(
    "exports_retries_total",
    "Export attempts that ended with a transient error and were handed back for a retry.",
    ["format"],
)
BATCH_DURATION = Histogram(
    "exports_worker_batch_duration_seconds",
    "Time to read, render and buffer one batch of EXPORTS_BATCH_ROWS rows, by format.",
    ["format"],
    buckets=_BATCH_BUCKETS,
)

# --- janitor (and the worker's cap check after a completion) ---------------------------------

DELETIONS = Counter(
    "exports_deletions_total",
    "Exports and objects removed, by reason: expired, completed_cap, storage_cap, deleted "
    "(by the owner), orphan_object, orphan_upload.",
    ["reason"],
)
STALE_REQUEUED = Counter(
    "exports_stale_requeued_total",
    "Running exports whose heartbeat went stale and that the sweep put back in the queue.",
)
SWEEP_DURATION = Histogram(
    "exports_sweep_duration_seconds",
    "Time of one janitor sweep.",
    buckets=_SWEEP_BUCKETS,
)
SWEEP_LAST_SUCCESS = Gauge(
    "exports_sweep_last_success_timestamp_seconds",
    "Unix time of the last sweep that finished without an error.",
)

# --- state read from PostgreSQL and JetStream (the janitor refreshes these) ------------------

RECORDS = Gauge(
    "exports_records",
    "Export records (rows of exports.exports) by status.",
    ["status"],
)
OLDEST_PENDING = Gauge(
    "exports_oldest_pending_seconds",
    "Age of the oldest pending export (0 when none).",
)
OLDEST_RUNNING = Gauge(
    "exports_oldest_running_seconds",
    "How long the longest-running attempt has been running (0 when none).",
)
HEARTBEAT_AGE = Gauge(
    "exports_heartbeat_age_seconds",
    "Age of the stalest heartbeat among running exports (0 when none).",
)
OUTBOX_BACKLOG = Gauge(
    "exports_outbox_backlog",
    "Pending exports whose export.requested was never published (the outbox).",
)
OUTBOX_OLDEST = Gauge(
    "exports_outbox_oldest_seconds",
    "Age of the oldest unpublished pending export (0 when none).",
)
STORAGE_BYTES = Gauge(
    "exports_storage_bytes",
    "Bytes of all completed exports together (what EXPORTS_STORAGE_CAP_BYTES limits).",
)
STORAGE_CAP_BYTES = Gauge(
    "exports_storage_cap_bytes",
    "The configured global storage cap (EXPORTS_STORAGE_CAP_BYTES).",
)
CONSUMER_PENDING = Gauge(
    "exports_consumer_pending_messages",
    "Messages on the EXPORTS stream not yet delivered to the durable consumer.",
    ["consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "exports_consumer_ack_pending_messages",
    "Messages delivered to the durable consumer and not yet acknowledged (being worked on).",
    ["consumer"],
)
STATE_REFRESHED = Gauge(
    "exports_state_refreshed_timestamp_seconds",
    "Unix time the state gauges above were last read from PostgreSQL.",
)

BUILD_INFO = Gauge(
    "exports_build_info", "Always 1; the label carries the package version.", ["version"]
)


def _version() -> str:
    try:
        return metadata.version("codex-exports")
    except metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO.labels(_version()).set(1)


def _one_of(value: object, allowed: Iterable[str]) -> str:
    text = str(value)
    return text if text in allowed else OTHER


# --- recording helpers: one call per event, so related series never disagree -----------------


def record_created(export_type: object, fmt: object, result: str) -> None:
    """Count one export request (``result`` is one of :data:`CREATE_RESULTS`)."""
    EXPORTS_CREATED.labels(
        _one_of(export_type, TYPES), _one_of(fmt, FORMATS), _one_of(result, CREATE_RESULTS)
    ).inc()


RATE_LIMIT_BUCKETS = ("user", "anonymous")


def record_rate_limited(bucket: str) -> None:
    """One request refused by the rate limits (``bucket`` is one of :data:`RATE_LIMIT_BUCKETS`)."""
    RATE_LIMITED.labels(_one_of(bucket, RATE_LIMIT_BUCKETS)).inc()


def record_rate_limit_error() -> None:
    """One request passed unlimited: the rate-limit store did not answer."""
    RATE_LIMIT_ERRORS.inc()


def record_lane(lane: object) -> None:
    """An export was created in ``lane``."""
    EXPORTS_BY_LANE.labels(_one_of(lane, LANE_NAMES)).inc()


def record_claimed(fmt: str, queued_seconds: float, lane: object = "large") -> None:
    """A worker claimed an export for its first attempt ``queued_seconds`` after its creation."""
    EXPORT_QUEUE_WAIT.labels(_one_of(fmt, FORMATS), _one_of(lane, LANE_NAMES)).observe(
        max(0.0, queued_seconds)
    )


def record_finished(
    export_type: str, fmt: str, status: str, *, seconds: float, rows: int = 0, size_bytes: int = 0
) -> None:
    """An export reached ``completed``, ``failed`` or ``cancelled`` in this worker."""
    export_format = _one_of(fmt, FORMATS)
    end = _one_of(status, FINISHED)
    EXPORTS_FINISHED.labels(_one_of(export_type, TYPES), export_format, end).inc()
    EXPORT_DURATION.labels(export_format, end).observe(max(0.0, seconds))
    EXPORT_ROWS.labels(export_format, end).inc(max(0, rows))
    EXPORT_BYTES.labels(export_format, end).inc(max(0, size_bytes))


def record_retry(fmt: str) -> None:
    """An attempt failed with a transient error and goes back to the queue."""
    EXPORT_RETRIES.labels(_one_of(fmt, FORMATS)).inc()


def observe_batch(fmt: str, seconds: float) -> None:
    BATCH_DURATION.labels(_one_of(fmt, FORMATS)).observe(max(0.0, seconds))


def record_deletion(reason: str, count: int = 1) -> None:
    if count > 0:
        DELETIONS.labels(_one_of(reason, DELETE_REASONS)).inc(count)


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """What the janitor reads of ``exports.exports`` for the state gauges, in one pass."""

    records: Mapping[str, int]
    oldest_pending_seconds: float
    oldest_running_seconds: float
    heartbeat_age_seconds: float
    outbox_backlog: int
    outbox_oldest_seconds: float
    storage_bytes: int


def set_state(snapshot: StateSnapshot) -> None:
    for status in STATUSES:
        RECORDS.labels(status).set(snapshot.records.get(status, 0))
    OLDEST_PENDING.set(snapshot.oldest_pending_seconds)
    OLDEST_RUNNING.set(snapshot.oldest_running_seconds)
    HEARTBEAT_AGE.set(snapshot.heartbeat_age_seconds)
    OUTBOX_BACKLOG.set(snapshot.outbox_backlog)
    OUTBOX_OLDEST.set(snapshot.outbox_oldest_seconds)
    STORAGE_BYTES.set(snapshot.storage_bytes)
    STATE_REFRESHED.set(time.time())


def set_consumer(consumer: str, *, pending: int, ack_pending: int) -> None:
    name = _one_of(consumer, CONSUMERS)
    CONSUMER_PENDING.labels(name).set(pending)
    CONSUMER_ACK_PENDING.labels(name).set(ack_pending)


# --- exposition -------------------------------------------------------------------------------


def metrics_response(accept: str | None = None) -> tuple[bytes, str]:
    """The body and content type for ``/metrics`` (OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(REGISTRY), content_type


# --- the api's HTTP latency, as pure ASGI middleware (no framework import) --------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/exports/{export_id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Observe ``exports_http_request_duration_seconds`` for every HTTP request.

    Add it with ``app.add_middleware(HttpMetricsMiddleware)``. The route label is read after the
    router has matched, so it is the template; unmatched paths share one label value.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            HTTP_REQUEST_DURATION.labels(
                route_template(scope), _one_of(scope.get("method", ""), _METHODS), str(status)
            ).observe(time.perf_counter() - started)


# --- NATS message metrics with bounded subject labels ----------------------------------------

_UUID_TOKEN = re.compile(
    r"(?<=\.)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?=\.|$)"
)


def subject_template(subject: str) -> str:
    """``export.cancel.<uuid>`` → ``export.cancel.*``: one label value per kind of subject."""
    return _UUID_TOKEN.sub("*", subject)


class _FoldedSubjects:
    """FastStream's NATS labels with export ids folded out of the subjects (a mixin for the
    single-message and the batch provider)."""

    def get_consume_attrs_from_message(self, msg: Any) -> ConsumeAttrs:
        # The mixin precedes a provider class, which defines both methods (mypy cannot know).
        attrs: ConsumeAttrs = super().get_consume_attrs_from_message(msg)  # type: ignore[misc]
        attrs["destination_name"] = subject_template(attrs["destination_name"])
        return attrs

    def get_publish_destination_name_from_cmd(self, cmd: Any) -> str:
        name: str = super().get_publish_destination_name_from_cmd(cmd)  # type: ignore[misc]
        return subject_template(name)


class _NatsSubjects(_FoldedSubjects, NatsMetricsSettingsProvider):
    pass


class _NatsBatchSubjects(_FoldedSubjects, BatchNatsMetricsSettingsProvider):
    pass


def _nats_provider(msg: Any) -> Any:
    # The same dispatch as FastStream's own factory for NATS.
    if isinstance(msg, Msg) or msg is None:
        return _NatsSubjects()
    if isinstance(msg, Sequence):
        return _NatsBatchSubjects()
    return None  # key-value and object-store watches: not measured


def nats_metrics_middleware(app_name: str) -> PrometheusMiddleware[Any, Any]:
    """FastStream's Prometheus middleware for NATS, with bounded subject labels.

    FastStream's ``NatsPrometheusMiddleware`` labels by the raw subject, so ``export.cancel.<id>``
    and ``export.timer.expire.<id>`` would make one series per export. This one folds the id
    into ``*``. Its metrics are ``exports_nats_*`` (received, processed, published: counts and
    durations, by ``app_name``, ``handler``/``destination`` and status). Pass it to the broker:
    ``NatsBroker(..., middlewares=[nats_metrics_middleware("worker")])``.
    """
    return PrometheusMiddleware(
        settings_provider_factory=_nats_provider,
        registry=REGISTRY,
        app_name=app_name,
        metrics_prefix="exports_nats",
    )
