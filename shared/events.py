"""Events on the bus: pydantic models with a ``type`` literal, versioned additively.

Consumers ignore unknown fields, so new optional fields never break an older service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ExportRequested(Event):
    """An export to run: the row is already in ``exports.exports``."""

    type: Literal["export.requested"] = "export.requested"
    export_id: UUID
    user_id: UUID
    request_id: str | None = None
    # The fairness lane it was queued in ("small" or "large", shared/lanes.py), also its
    # subject's; absent from publishers that predate lanes (then it runs as large).
    lane: str | None = None


class ExportCompleted(Event):
    """Fact: an export's file is complete in the object store."""

    type: Literal["export.completed"] = "export.completed"
    export_id: UUID
    user_id: UUID
    file_name: str
    object_key: str
    row_count: int
    file_size_bytes: int
    sha256: str
    completed_at: datetime


class ExportFailed(Event):
    """Fact: an export ended without a file; ``error`` is meant for people."""

    type: Literal["export.failed"] = "export.failed"
    export_id: UUID
    user_id: UUID
    error: str


class ExportCancelled(Event):
    """Fact: an export was cancelled by its owner."""

    type: Literal["export.cancelled"] = "export.cancelled"
    export_id: UUID
    user_id: UUID


class ExportExpired(Event):
    """Fact: an export's file and record were deleted (expiry, cap or eviction)."""

    type: Literal["export.expired"] = "export.expired"
    export_id: UUID
    user_id: UUID
    reason: str


class ExpireTimerFired(Event):
    """Payload of the one-shot schedule ``export.timer.expire.<id>``."""

    type: Literal["export.timer.expire"] = "export.timer.expire"
    export_id: UUID
    request_id: str | None = None


class SweepTimerFired(Event):
    """Payload of the periodic ``export.timer.sweep`` schedule."""

    type: Literal["export.timer.sweep"] = "export.timer.sweep"


class ScheduleTimerFired(Event):
    """Payload of a user schedule's ``@at`` timer ``export.timer.schedule.<id>`` (SPEC §12):
    the logical due time (the timer fires up to a minute after it, see shared/schedules.py)."""

    type: Literal["export.timer.schedule"] = "export.timer.schedule"
    schedule_id: UUID
    due_at: datetime


class ScheduleRan(Event):
    """Fact: a schedule's run was submitted as an export (``export.schedule.ran``)."""

    type: Literal["export.schedule.ran"] = "export.schedule.ran"
    schedule_id: UUID
    export_id: UUID
    user_id: UUID
    due_at: datetime


AnyTimer = ExpireTimerFired | SweepTimerFired | ScheduleTimerFired
TimerEvent = Annotated[AnyTimer, Field(discriminator="type")]
TIMER_EVENT: TypeAdapter[AnyTimer] = TypeAdapter(TimerEvent)
