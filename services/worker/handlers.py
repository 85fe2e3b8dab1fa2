"""The ``export.requested`` handler: decides ack, nak or term; the work is in ``service.py``."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
from faststream.nats.message import NatsMessage
from pydantic import ValidationError

from services.worker import service
from services.worker.errors import (
    ExportCancelled,
    ExportInterrupted,
    ExportLost,
    describe,
    is_retryable,
)
from shared import metrics
from shared import repository as exports_repo
from shared.events import ExportRequested
from shared.lanes import DEFAULT_LANE, Lane

log = logging.getLogger(__name__)


class Runner:
    """Runs exports for one worker process and tracks those in flight."""

    def __init__(self, ctx: service.WorkerContext) -> None:
        self.ctx = ctx
        self.running: dict[UUID, service.Progress] = {}
        self.stopping = False

    def backoff(self, attempt: int) -> float:
        return float(min(60, 2 ** max(0, attempt - 1)))

    async def cancel(self, export_id: UUID) -> None:
        """The owner cancelled: stop at the next batch.

        The signal only hastens what the row says: one whose row is neither cancelled nor
        deleted (stray or forged) is ignored, so it cannot throw a run away.
        """
        progress = self.running.get(export_id)
        if progress is None:
            return
        try:
            row = await exports_repo.get_any(self.ctx.pool, export_id)
        except Exception as err:
            log.warning("cancel signal not checked (the heartbeat will notice): %s", err)
            return
        if row is None or row.status == "cancelled":
            progress.halt(ExportCancelled)
        else:
            log.warning("ignored a cancel signal: the export is %s", row.status)

    def interrupt_all(self) -> None:
        """Shutting down: hand every running export back."""
        self.stopping = True
        for progress in self.running.values():
            progress.halt(ExportInterrupted)

    async def handle(self, body: bytes, msg: NatsMessage, lane: Lane = DEFAULT_LANE) -> None:
        """Run the export of one ``export.requested`` that arrived in ``lane``'s consumer."""
        try:
            event = ExportRequested.model_validate_json(body)
        except ValidationError as err:
            log.warning("rejected malformed export.requested (%d errors)", err.error_count())
            await msg.reject()
            return
        extra = {
            "export_id": event.export_id,
            "user_id": event.user_id,
            "request_id": event.request_id,
            "lane": lane.value,
        }
        if self.stopping:
            await msg.nack(delay=0)
            return
        try:
            await self._handle(event, msg, extra, lane)
        except Exception as err:
            # The database was unreachable before the export started: try again later.
            log.warning("could not start export: %s", err, extra=extra)
            await msg.nack(delay=self.backoff(1))

    async def _handle(
        self, event: ExportRequested, msg: NatsMessage, extra: Mapping[str, object], lane: Lane
    ) -> None:
        settings = self.ctx.settings
        pool = self.ctx.pool
        row = await exports_repo.get_any(pool, event.export_id)
        if row is None or row.status in exports_repo.ENDED:
            await msg.ack()  # deleted, or already done by someone: nothing to do
            return
        if row.status == "running" and row.heartbeat_at is not None:
            stale_at = row.heartbeat_at + timedelta(seconds=settings.stale_after_seconds)
            wait = (stale_at - datetime.now(UTC)).total_seconds()
            if wait > 0:
                # Another worker holds it; look again once its heartbeat could be stale.
                await msg.nack(delay=wait + 0.5)
                return
        claimed = await exports_repo.claim(
            pool,
            event.export_id,
            self.ctx.worker_id,
            stale_after_seconds=settings.stale_after_seconds,
        )
        if claimed is None:
            await msg.nack(delay=1.0)
            return
        if claimed.attempt > settings.max_deliver:
            # No recorded error: the workers running it died (crash, out of memory, node loss).
            reason = row.error or "the worker running it stopped unexpectedly"
            metrics.record_finished(claimed.export_type, claimed.format, "failed", seconds=0.0)
            await self._fail(claimed, _gave_up(settings.max_deliver, reason), msg, extra)
            return
        if claimed.attempt == 1:
            queued = (datetime.now(UTC) - claimed.created_at).total_seconds()
            metrics.record_claimed(claimed.format, queued, lane)
        log.info("export started (attempt %d)", claimed.attempt, extra=extra)
        progress = service.Progress()
        self.running[claimed.id] = progress
        metrics.EXPORTS_IN_FLIGHT.inc()
        metrics.EXPORTS_IN_FLIGHT_BY_LANE.labels(lane.value).inc()
        started = time.monotonic()
        outcome: str | None = None  # the end status this attempt reached, if any
        size_bytes = 0
        try:
            done = await service.run(self.ctx, claimed, progress, msg.in_progress)
        except ExportCancelled:
            outcome = "cancelled"
            log.info("export cancelled", extra=extra)
            await msg.ack()
        except ExportLost:
            log.warning("export taken over by another worker", extra=extra)
            await msg.ack()
        except ExportInterrupted:
            await exports_repo.release(pool, claimed.id, self.ctx.worker_id)
            log.info("export handed back on shutdown", extra=extra)
            await msg.nack(delay=0)
        except Exception as err:
            reason = describe(err)
            if is_retryable(err) and claimed.attempt < settings.max_deliver:
                metrics.record_retry(claimed.format)
                log.warning(
                    "export attempt %d failed, will retry: %s", claimed.attempt, err, extra=extra
                )
                await _release_with_error(pool, claimed.id, self.ctx.worker_id, reason)
                await msg.nack(delay=self.backoff(claimed.attempt))
            else:
                outcome = "failed"
                log.exception("export failed", extra=extra)
                message = (
                    _gave_up(settings.max_deliver, reason)
                    if is_retryable(err)
                    else f"The export failed: {reason}."
                )
                await self._fail(claimed, message, msg, extra)
        else:
            outcome, size_bytes = "completed", done.file_size_bytes or 0
            await msg.ack()
            log.info(
                "export completed: %s rows, %s bytes",
                done.row_count,
                done.file_size_bytes,
                extra=extra,
            )
            await service.announce_completed(self.ctx, done)
            await service.enforce_caps(self.ctx)
        finally:
            self.running.pop(claimed.id, None)
            metrics.EXPORTS_IN_FLIGHT.dec()
            metrics.EXPORTS_IN_FLIGHT_BY_LANE.labels(lane.value).dec()
            if outcome is not None:
                metrics.record_finished(
                    claimed.export_type,
                    claimed.format,
                    outcome,
                    seconds=time.monotonic() - started,
                    rows=progress.rows,
                    size_bytes=size_bytes,
                )

    async def _fail(
        self,
        row: exports_repo.ExportRow,
        message: str,
        msg: NatsMessage,
        extra: Mapping[str, object],
    ) -> None:
        failed = await exports_repo.fail(self.ctx.pool, row.id, message)
        await msg.ack()
        if failed is not None:
            log.error("export failed: %s", message, extra=extra)
            await service.announce_failed(self.ctx, failed, message)


def _gave_up(attempts: int, reason: str | None) -> str:
    why = f": {reason.rstrip('.')}" if reason else ""
    return f"The export could not be completed after {attempts} attempts{why}."


async def _release_with_error(
    pool: asyncpg.Pool, export_id: UUID, worker_id: str, reason: str
) -> None:
    try:
        await exports_repo.release(pool, export_id, worker_id, error=reason)
    except Exception as err:
        # Left running: its heartbeat goes stale and the next delivery takes it over.
        log.warning("could not release export %s: %s", export_id, err)
