"""The fairness lane rule (shared/lanes.py): which lane an export runs in, and what a lane is."""

from __future__ import annotations

import pytest

from shared import lanes
from shared.lanes import LANE_INFO, LANES, Lane, choose_lane, lane_of
from shared.settings import Settings
from shared.subjects import REQUESTED, STREAM_SUBJECTS, WORKERS_DURABLE


@pytest.mark.parametrize(
    ("rows", "lane"),
    [(0, Lane.SMALL), (1, Lane.SMALL), (999, Lane.SMALL), (1000, Lane.LARGE), (10**6, Lane.LARGE)],
)
def test_fewer_rows_than_the_bound_is_small(rows: int, lane: Lane) -> None:
    assert choose_lane(rows, small_rows=1000) is lane


def test_an_export_not_counted_is_large() -> None:
    # A count that timed out must never put a big export into the reserved lane.
    assert choose_lane(None, small_rows=1000) is Lane.LARGE


def test_a_bound_of_zero_turns_the_small_lane_off() -> None:
    assert choose_lane(0, small_rows=0) is Lane.LARGE


def test_unknown_lane_values_are_the_lane_before_lanes() -> None:
    assert lane_of("small") is Lane.SMALL
    assert lane_of("large") is Lane.LARGE
    for value in (None, "", "SMALL", "scheduled", 3):
        assert lane_of(value) is Lane.LARGE is lanes.DEFAULT_LANE


def test_the_large_lane_keeps_the_original_subject_and_consumer() -> None:
    assert LANE_INFO[Lane.LARGE].subject == REQUESTED == "export.requested"
    assert LANE_INFO[Lane.LARGE].durable == WORKERS_DURABLE == "workers"


def test_every_lane_has_its_own_subject_and_consumer_in_the_stream() -> None:
    assert set(LANE_INFO) == set(LANES)
    subjects = [info.subject for info in LANE_INFO.values()]
    durables = [info.durable for info in LANE_INFO.values()]
    assert len(set(subjects)) == len(subjects) and len(set(durables)) == len(durables)
    for subject in subjects:
        assert subject in STREAM_SUBJECTS


def test_slots_come_from_the_settings() -> None:
    settings = Settings(worker_concurrency=3, worker_small_slots=1)
    assert LANE_INFO[Lane.LARGE].slots(settings) == 3
    assert LANE_INFO[Lane.SMALL].slots(settings) == 1
    defaults = Settings()
    assert defaults.small_export_rows == 1000
    assert LANE_INFO[Lane.SMALL].slots(defaults) == defaults.worker_small_slots >= 1
