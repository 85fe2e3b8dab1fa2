"""NATS subjects, the JetStream stream and its consumers (ARCHITECTURE.md "Messaging")."""

from __future__ import annotations

from uuid import UUID

STREAM = "EXPORTS"
# The large lane keeps the original subject (and its durable "workers"), so messages in flight
# and any publisher that does not know the lanes keep working; lanes: shared/lanes.py.
REQUESTED = "export.requested"
REQUESTED_SMALL = "export.requested.small"
COMPLETED = "export.completed"
FAILED = "export.failed"
CANCELLED = "export.cancelled"
EXPIRED = "export.expired"
TIMER_PREFIX = "export.timer"
TIMER_EXPIRE_FIRED = "export.timer.fired.expire"
TIMER_SWEEP_FIRED = "export.timer.fired.sweep"
TIMER_FIRED_ALL = "export.timer.fired.>"
TIMER_SWEEP_SCHEDULE = "export.timer.sweep"
# Scheduled exports (SPEC §12): one @at timer per schedule, fired to the janitor.
SCHEDULE_TIMER_FIRED = "export.timer.fired.schedule"
# Fact: a schedule's run was submitted (schedule id, export id, due time).
SCHEDULE_RAN = "export.schedule.ran"
# Core NATS subjects: deliberately outside the stream, so requests are answered by us, not by
# JetStream with a PubAck.
SUBMIT = "export.submit"
CANCEL_PREFIX = "export.cancel"

# Explicit subject list, never "export.>" (see the note on core subjects above).
STREAM_SUBJECTS: tuple[str, ...] = (
    REQUESTED,
    REQUESTED_SMALL,
    COMPLETED,
    FAILED,
    CANCELLED,
    EXPIRED,
    SCHEDULE_RAN,
    f"{TIMER_PREFIX}.>",
)
DUPLICATE_WINDOW_SECONDS = 120.0
WORKERS_DURABLE = "workers"
SMALL_WORKERS_DURABLE = "workers-small"
JANITOR_DURABLE = "janitor"

REQUEST_ID_HEADER = "X-Request-Id"


def expire_schedule_subject(export_id: UUID) -> str:
    """The one schedule subject of an export's expiry timer."""
    return f"{TIMER_PREFIX}.expire.{export_id}"


def schedule_timer_subject(schedule_id: UUID) -> str:
    """The one schedule subject of a user schedule's next-run timer."""
    return f"{TIMER_PREFIX}.schedule.{schedule_id}"


def cancel_subject(export_id: UUID) -> str:
    """Core subject that tells the worker running ``export_id`` to stop."""
    return f"{CANCEL_PREFIX}.{export_id}"
