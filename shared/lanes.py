"""Fairness lanes (SPEC §14): a user's large exports never starve everyone else's small ones.

The one rule of which lane an export runs in, and everything a lane is made of. The mechanism:

- **Size class at create.** The api counts the rows the export will have, stopped at
  ``EXPORTS_SMALL_EXPORT_ROWS`` (``catalog_query.count_rows_at_most``: the worker's own
  visibility CTEs, bounded, under a short ``statement_timeout``), and :func:`choose_lane` picks
  the lane. The lane is stored on the row (``exports.lane``, migration ``exports/0008``) and
  carried by the ``export.requested`` event; it never changes afterwards (a retry, a re-queue
  of a stale run or an outbox relay publishes to the row's lane).
- **One subject and one durable pull consumer per lane.** ``small``: ``export.requested.small``,
  durable ``workers-small``; ``large``: the original ``export.requested``, durable ``workers``
  (unchanged, so messages already in flight and publishers that know nothing of lanes keep
  working: what arrives there unclassified is run as large).
- **Slots per lane in every worker.** A worker runs at most ``EXPORTS_WORKER_CONCURRENCY``
  large exports and, on their side, at most ``EXPORTS_WORKER_SMALL_SLOTS`` small ones (each
  lane's subscriber has its own ``max_workers``). Large exports can therefore never take the
  small lane's slots: with every large slot of the fleet busy, a small export waits only for
  other small exports. The small lane's slots are extra capacity, not taken from the large
  lane, so a catalog of small exports is not slowed by the large ones either.

What stays the same in both lanes: the conditional UPDATE claim on the row, the heartbeat and
``in_progress()`` on the message, ``ack_wait``, the attempts counted on the row.

A new lane (for example scheduled runs at a lower priority) is one more :class:`Lane`, its
entry in :data:`LANE_INFO` (subject, durable, slots) and its rule in :func:`choose_lane`; the
subject goes into ``subjects.STREAM_SUBJECTS``. Nothing else picks or names a lane.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from shared.catalog_query import Scope, count_rows_at_most
from shared.settings import Settings
from shared.subjects import (
    REQUESTED,
    REQUESTED_SMALL,
    SMALL_WORKERS_DURABLE,
    WORKERS_DURABLE,
)

log = logging.getLogger(__name__)

COUNT_TIMEOUT_MS = 1000
"""The create's row count gives up after this; the export then goes to the large lane."""


class Lane(StrEnum):
    SMALL = "small"
    LARGE = "large"


@dataclass(frozen=True, slots=True)
class LaneInfo:
    subject: str  # where export.requested of this lane is published
    durable: str  # the workers' durable pull consumer on it
    slots: Callable[[Settings], int]  # how many of its exports one worker runs at once
    description: str


LANE_INFO: Mapping[Lane, LaneInfo] = {
    Lane.SMALL: LaneInfo(
        REQUESTED_SMALL,
        SMALL_WORKERS_DURABLE,
        lambda s: s.worker_small_slots,
        "Run one small export (fewer rows than EXPORTS_SMALL_EXPORT_ROWS) in its reserved slots",
    ),
    Lane.LARGE: LaneInfo(
        REQUESTED,
        WORKERS_DURABLE,
        lambda s: s.worker_concurrency,
        "Run one export end to end (the large lane, and any unclassified request)",
    ),
}
LANES: tuple[Lane, ...] = tuple(Lane)
DEFAULT_LANE = Lane.LARGE
"""A row or message with no known lane: the lane that existed before lanes did."""


def choose_lane(rows: int | None, *, small_rows: int) -> Lane:
    """The lane of an export of ``rows`` rows (``None``: not counted, e.g. the count timed out).

    Small when it is known to have fewer than ``small_rows`` rows; anything unknown is large,
    so a big export can never get into the reserved lane by a count that failed.
    """
    if rows is not None and rows < small_rows:
        return Lane.SMALL
    return Lane.LARGE


def lane_of(value: object) -> Lane:
    """The lane a stored or received value names; anything else is :data:`DEFAULT_LANE`."""
    try:
        return Lane(str(value))
    except ValueError:
        return DEFAULT_LANE


def subject(lane: Lane) -> str:
    return LANE_INFO[lane].subject


async def classify(
    pool: asyncpg.Pool, settings: Settings, scope: Scope, export_type: str
) -> tuple[Lane, int | None]:
    """Count the export's rows (bounded) and choose its lane: (lane, rows counted or None)."""
    bound = settings.small_export_rows
    if bound <= 0:
        return Lane.LARGE, None
    try:
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(f"SET LOCAL statement_timeout = {int(COUNT_TIMEOUT_MS)}")
            rows: int | None = await count_rows_at_most(conn, scope, export_type, bound)
    except asyncpg.QueryCanceledError:
        log.warning("row count for the lane timed out: the export goes to the large lane")
        rows = None
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
        # The catalog (a read replica, say) could not be read: the export still goes ahead,
        # in the large lane, and the worker's own read reports the catalog's state.
        log.warning("row count for the lane failed (%s): the export goes to the large lane", err)
        rows = None
    return choose_lane(rows, small_rows=bound), rows
