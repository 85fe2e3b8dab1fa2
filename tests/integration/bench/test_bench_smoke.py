"""``python -m bench`` runs end to end and reports every figure (never judged on speed here).

The benchmark is only worth its numbers if it still runs: this runs the quick version with one
repetition and a short load, and checks what it measured is whole and consistent — rows,
bytes, no api errors, every scale-out export completed — not how fast anything was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# It starts its own servers and services and takes about a minute: run on purpose, like the bench.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
SHORT = [
    "--api-seconds",
    "3",
    "--scale-exports",
    "20",
    "--no-fairness-baseline",
    "--skip",
    "cluster",
]


def run_bench(module: str, argv: list[str], marker: str) -> tuple[Any, str]:
    """Run ``python -m module`` with no EXPORTS_ settings of ours: the one JSON line it printed
    after ``marker``, and its whole output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTS_")}
    done = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith(marker)]
    assert len(lines) == 1, done.stdout[-3000:]
    return json.loads(lines[0].removeprefix(marker)), done.stdout


def test_quick_bench_reports_every_figure() -> None:
    results, stdout = run_bench("bench", ["--quick", "--reps", "1", *SHORT], "BENCH_JSON ")

    exports = results["exports"]
    kinds = ("csv", "json", "md", "jsonl", "xlsx", "parquet", "csv+gzip")
    for kind in ("limit", "limit_coalesced", *kinds):
        assert exports[kind]["rows"] == 100_000, kind
        assert exports[kind]["rows_per_second_median"] > 0, kind
    # Same rows, formats of different sizes: CSV smallest, Markdown's bullets largest.
    assert 0 < exports["csv"]["bytes"] < exports["json"]["bytes"] < exports["md"]["bytes"]
    assert set(exports["ratios"]) == set(kinds)
    # Compressed sizes beside the plain ones, for every format.
    sizes = results["sizes"]
    assert set(sizes) == {"csv", "json", "md", "jsonl", "xlsx", "parquet"}
    assert all(0 < s["gzip_bytes"] < s["bytes"] for f, s in sizes.items() if f != "xlsx")

    assert set(results["linearity"]["csv_microseconds_per_row"]) == {"30000", "100000"}
    for fmt in kinds:
        memory = results["memory"][fmt]
        assert 0 < memory["peak_mib_30000"] and 0 < memory["peak_mib_100000"], fmt

    download = results["download"]
    assert download["bytes"] == exports["csv"]["bytes"]
    assert download["api_mb_per_second_median"] > 0

    # Two backups with known edits between them (bench/changes.py): the deleted books are the
    # removed ones, the retitled series changed, the items capped.
    changes = results["changes"]
    assert changes["books"]["removed"] == 1000 and changes["books"]["added"] == 0
    assert changes["books"]["changed"] > 0 and changes["series"]["changed"] > 0
    assert changes["items"] == 1000 and changes["api_peak_rss_mib"] > 0

    assert results["create_to_running"]["count"] == 20
    load = results["api_load"]
    assert load["errors"] == {}, load["errors"]
    for op in ("create", "list", "get", "fields", "healthz"):
        assert load[op]["count"] > 0, op

    scale = results["scale_out"]
    for workers in ("workers_1", "workers_2", "workers_3"):
        assert scale[workers]["completed"] == 20 and scale[workers]["failed"] == 0, workers

    fair = results["fairness"]["lanes"]
    assert fair["large_lanes"] == ["large"] and fair["small_lanes"] == ["small"]
    assert fair["small_submitted"] > 0 and fair["small_not_completed"] == 0
    assert fair["wait_seconds"]["p95"] >= 0 and fair["finish_seconds"]["p95"] > 0

    assert "codex-exports benchmark (quick" in stdout


def test_cluster_bench_reports_every_figure() -> None:
    """``python -m bench.cluster`` at its smallest (about a minute): every part measured, every
    export completed, the stream really at 1 and then 3 replicas, a new leader after the kill."""
    argv = ["--claim-count", "3", "--kill-reps", "1", "--batch", "20", "--upload-mib", "8"]
    results, _ = run_bench("bench.cluster", [*argv, "--upload-reps", "1"], "CLUSTER_BENCH_JSON ")

    assert [(c["replicas"], c["stream_peers"]) for c in results["claim"]] == [(1, 1), (3, 3)]
    assert all(c["create_to_claim"]["median_ms"] > 0 for c in results["claim"])
    (kill,) = results["leader_kill"]["runs"]
    assert kill["status"] == "completed" and kill["new_leader"] not in (None, kill["killed"])
    assert 0 < kill["probe_publish_acked_s"] and 0 < kill["export_completed_s"]
    for workers in ("workers_1", "workers_2", "workers_3"):
        figure = results["workers"][workers]
        assert (figure["completed"], figure["failed"]) == (20, 0), workers
    assert results["upload"]["replicated_median"] > 0 and results["upload"]["single_median"] > 0
