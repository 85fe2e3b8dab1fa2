"""``python -m bench [--quick]``: every figure of issue #5 in one run, then a table and JSON.

What runs where, and why:

- PostgreSQL, NATS and SeaweedFS: started here on 127.0.0.1 (``services.cli.servers``), as the
  tests start them.
- The exports, the download, the api load and the scale-out: the real ``services.api`` and
  ``services.worker`` processes (as ``tests/system.py`` runs them), because the figures are
  the product's: the worker's claim-to-completion time and its own peak RSS.
- The limit (COPY into the object store): in this process, with the worker's transaction and
  upload code; it is the physical yardstick, not a product path.

Repetitions are interleaved (limit, csv, json, md, jsonl, xlsx, parquet, csv+gzip, limit, ...),
so a noisy neighbour slows all of them alike; figures are medians. Each other format is also
exported once gzip-compressed, for its compressed size beside the plain one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from bench import api_load, changes, download, exports, fairness, scale
from bench import cluster as cluster_bench
from bench.env import Services, Stack, add_users, build_catalog, create_database
from shared import naming

TARGETS = {
    "csv": 0.8,
    "json": 0.7,
    "md": 0.5,
    "jsonl": 0.75,
    "xlsx": 0.3,
    "parquet": 0.5,
    "csv+gzip": 0.6,
}
# Every export measured against the limit, in this order within a repetition.
EXPORT_KINDS = tuple(TARGETS)
# Formats whose gzip size is reported beside the plain size (csv+gzip is measured above).
GZIP_SIZES = ("json", "md", "jsonl", "xlsx", "parquet")
MEMORY_FORMATS = ("csv", "json", "md", "jsonl", "xlsx", "parquet", "csv+gzip")
PARTS = (
    "exports",
    "linear",
    "memory",
    "download",
    "changes",
    "api",
    "scale",
    "fairness",
    "cluster",
)


def _sizes(quick: bool) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """(series, books) of the main catalog, and of the catalogs for the linearity check."""
    if quick:
        return (2_000, 100_000), [(600, 30_000), (2_000, 100_000)]
    return (20_000, 1_000_000), [(2_000, 100_000), (6_000, 300_000), (20_000, 1_000_000)]


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000-book version (< 3 min)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per export figure")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated parts to skip: " + ",".join(PARTS),
    )
    parser.add_argument(
        "--only", default="", help="comma-separated parts to run (the others are skipped)"
    )
    parser.add_argument(
        "--fairness-large",
        type=int,
        default=4,
        help="large exports of the main catalog running in the fairness part",
    )
    parser.add_argument(
        "--no-fairness-baseline",
        action="store_true",
        help="skip the fairness part's run without lanes",
    )
    parser.add_argument(
        "--scale-exports", type=int, default=None, help="exports per scale-out configuration"
    )
    parser.add_argument("--api-seconds", type=float, default=None, help="duration of the api load")
    parser.add_argument("--keep", action="store_true", help="keep the servers' data and logs")
    parser.add_argument(
        "--formats",
        default=",".join(TARGETS),
        help="comma-separated exports to measure against the limit and for memory (default all: "
        + ",".join(TARGETS)
        + ")",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="3 clustered NATS (stream replicas 3) and a replicated SeaweedFS (3 volume servers)",
    )
    args = parser.parse_args(argv)
    # SIGTERM (timeout, CI) unwinds like Ctrl-C, so the servers and services are stopped.
    signal.signal(signal.SIGTERM, _terminate)
    skip = {s for s in args.skip.split(",") if s}
    if args.only:
        skip |= set(PARTS) - {s for s in args.only.split(",") if s}
    chosen = {f for f in args.formats.split(",") if f}
    if unknown := chosen - set(TARGETS):
        parser.error(f"unknown formats: {', '.join(sorted(unknown))}")
    export_kinds = tuple(k for k in EXPORT_KINDS if k in chosen)
    gzip_sizes = tuple(f for f in GZIP_SIZES if f in chosen)
    memory_formats = tuple(f for f in MEMORY_FORMATS if f in chosen)
    quick = args.quick
    scale_count = args.scale_exports or (200 if quick else 1000)
    api_seconds = args.api_seconds or (10.0 if quick else 30.0)
    started = time.monotonic()
    results: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "cluster": args.cluster,
        "machine": {
            "cpus": _cpus(),
            "memory_gib": _memory_gib(),
            "python": platform.python_version(),
        },
        # The machine is shared: the 1-minute load average as each part starts and ends.
        "loadavg": {"start": _loadavg()},
    }

    print("starting PostgreSQL, NATS and SeaweedFS ...", flush=True)
    stack = Stack.start(keep=args.keep, cluster=args.cluster)
    services: Services | None = None
    systems: dict[int, Services] = {}  # by catalog size
    try:
        (main_series, main_books), linear = _sizes(quick)
        if {"linear", "memory"} <= skip:
            linear = []  # no other catalog size is needed
        # Each catalog size in its own database, so an export's cost is its own (in one shared
        # database, every export also pays for scans over the other libraries' rows).
        urls: dict[int, str] = {}
        catalogs = {}
        builds = {}
        for series, books in sorted({(main_series, main_books), *linear}):
            urls[books] = asyncio.run(create_database(stack, f"bench_{books}"))
            t = time.monotonic()
            catalogs[books] = asyncio.run(build_catalog(urls[books], series, books))
            builds[books] = round(time.monotonic() - t, 1)
            print(f"built the {books:,}-book catalog in {builds[books]} s", flush=True)
        url = urls[main_books]
        # A small library next to the main one, for the api load and the scale-out.
        small = asyncio.run(build_catalog(url, 200, 2_000, username="bench-small"))
        results["catalog_build_seconds"] = builds
        main = catalogs[main_books]

        services = Services(stack, url, stack.root / "logs")
        services.start("api")
        services.start("worker")
        # Warm-up: imports, pools, bucket, plans.
        exports.measure_export(services, small, "csv")

        runs: list[exports.Run] = []
        if "exports" not in skip:
            for rep in range(args.reps):
                for kind in ("limit", "limit_coalesced", *export_kinds):
                    if kind.startswith("limit"):
                        run = asyncio.run(
                            exports.measure_limit(stack, url, main, kind == "limit_coalesced")
                        )
                    else:
                        run, _ = exports.measure_export(services, main, kind)
                    runs.append(run)
                    print(
                        f"  rep {rep + 1} {kind:16s} {run.rows:>9,} rows {run.seconds:7.2f} s {run.rows_per_second:>9,.0f} rows/s  load {_loadavg()}",
                        flush=True,
                    )
            results["exports"] = _export_figures(runs, main_books)
            results["loadavg"]["exports_end"] = _loadavg()
            for fmt in gzip_sizes:
                run, _ = exports.measure_export(services, main, f"{fmt}+gzip")
                runs.append(run)
                print(
                    f"  gzip size {fmt:8s} {run.bytes:>13,} bytes {run.seconds:7.2f} s  load {_loadavg()}",
                    flush=True,
                )
            results["sizes"] = _sizes_figures(runs, main_books)

        # One system (api + worker) per catalog size. One NATS stream serves them all, so only
        # one worker may consume it at a time: switching sizes stops every other worker.
        systems[main_books] = services

        def system_for(books: int) -> Services:
            if books not in systems:
                systems[books] = Services(stack, urls[books], stack.root / f"logs-{books}")
                systems[books].start("api")
            return systems[books]

        def stop_workers() -> None:
            for system in systems.values():
                for key in [k for k in system.processes if k != "api"]:
                    system.stop(key)

        if "linear" not in skip:
            for _series, books in linear:
                if books == main_books and "exports" not in skip:
                    continue  # measured above
                target = system_for(books)
                if "worker" not in target.processes:
                    stop_workers()
                    target.start("worker")
                    exports.measure_export(target, catalogs[books], "csv")  # warm-up
                for _ in range(args.reps):
                    run, _ = exports.measure_export(target, catalogs[books], "csv")
                    runs.append(run)
                    print(f"  linear {books:>9,} csv {run.seconds:7.2f} s", flush=True)
            results["linearity"] = _linearity(runs, [b for _, b in linear])

        if "memory" not in skip:
            # Peak RSS of a fresh worker process running one export, smallest and largest size,
            # --reps times each, the sizes interleaved (see _memory).
            smallest = linear[0][1]
            memory_runs: list[exports.Run] = []
            stop_workers()
            for rep in range(args.reps):
                for fmt in memory_formats:
                    for books in (smallest, main_books):
                        target = system_for(books)
                        target.start("worker", "memory-worker")
                        run, _ = exports.measure_export(
                            target, catalogs[books], fmt, worker_key="memory-worker"
                        )
                        target.stop("memory-worker")
                        memory_runs.append(run)
                        print(
                            f"  memory rep {rep + 1} {books:>9,} {fmt:8s} fresh worker peak {run.peak_rss_mib:.0f} MiB  load {_loadavg()}",
                            flush=True,
                        )
            results["memory"] = _memory(memory_runs, smallest, main_books)
            results["loadavg"]["memory_end"] = _loadavg()
        for books, system in systems.items():
            if books != main_books:
                system.stop_all()
        if "worker" not in services.processes:
            services.start("worker")

        if "download" not in skip:
            _, done = exports.measure_export(services, main, "csv", keep=True)
            object_key = naming.object_key(main.user_id, UUID(done["id"]), done["fileName"])
            results["download"] = download.measure(
                services, stack, main.user_id, done, object_key, args.reps
            )
            print(f"  download {results['download']}", flush=True)

        if "changes" not in skip:
            # Edits the main library (the api load and the scale-out use the small one).
            results["changes"] = changes.measure(services, url, main)
            print(f"  changes {results['changes']}", flush=True)

        if "api" not in skip:
            idle_user = asyncio.run(add_users(url, 1, "idle"))[0]
            results["create_to_running"] = api_load.create_to_running(
                services, idle_user, small.library_id, 20
            )
            print(f"  create->running {results['create_to_running']}", flush=True)
            users = asyncio.run(add_users(url, 50, "load"))
            results["api_load"] = asyncio.run(
                api_load.load(services, users, small.library_id, api_seconds)
            )
            print(f"  api load {json.dumps(results['api_load'])}", flush=True)

        if "scale" not in skip:
            services.stop_all()
            raised = str(scale_count + 10)
            services.extra_env.update(
                {
                    "EXPORTS_MAX_CONCURRENT_PER_USER": raised,
                    "EXPORTS_MAX_COMPLETED_PER_USER": raised,
                    "EXPORTS_STORAGE_CAP_BYTES": str(1 << 40),
                }
            )
            services.start("api")
            users = asyncio.run(add_users(url, 3, "scale"))
            results["scale_out"] = scale.measure(services, users, small.library_id, scale_count)
            print(f"  scale-out {results['scale_out']}", flush=True)

        if "fairness" not in skip:
            # Small exports of other users: a library of 50 series (50 rows), under 1,000 rows.
            tiny = asyncio.run(build_catalog(url, 50, 500, username="bench-fair"))
            fair_users = asyncio.run(add_users(url, 20, "fair"))
            results["fairness"] = fairness.measure(
                services,
                main.user_id,
                main.library_id,
                fair_users,
                tiny.library_id,
                large_count=args.fairness_large,
                baseline=not args.no_fairness_baseline,
            )
            results["fairness"]["large_books"] = main_books
            results["fairness"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
            print(f"  fairness {json.dumps(results['fairness'])}", flush=True)
    finally:
        for system in systems.values():
            system.stop_all()
        if services is not None:
            services.stop_all()
        stack.stop()
    if "cluster" not in skip:
        # Its own servers (3 NATS, replicated SeaweedFS), started once the stack above is gone.
        sizes = {"claim_count": 10, "kill_reps": 1, "batch": 50, "upload_mib": 32, "upload_reps": 1}
        results["cluster_harness"] = cluster_bench.run(
            **({} if not quick else sizes), keep=args.keep
        )
    results["bench_seconds"] = round(time.monotonic() - started, 1)
    results["loadavg"]["end"] = _loadavg()
    print()
    print(_table(results))
    print("BENCH_JSON " + json.dumps(results, sort_keys=True))
    return 0


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
    raise KeyboardInterrupt(f"signal {signum}")


def _export_figures(runs: list[exports.Run], books: int) -> dict[str, Any]:
    figures = {
        kind: exports.summarize(runs, kind, books)
        for kind in ("limit", "limit_coalesced", *EXPORT_KINDS)
    }
    measured = [fmt for fmt in TARGETS if figures[fmt]]  # --formats may leave some out
    for fmt in TARGETS:
        if not figures[fmt]:
            del figures[fmt]
    limit = figures["limit"]["rows_per_second_median"]
    strict = figures["limit_coalesced"]["rows_per_second_median"]
    figures["ratios"] = {
        fmt: round(figures[fmt]["rows_per_second_median"] / limit, 3) for fmt in measured
    }
    figures["ratios_vs_limit_coalesced"] = {
        fmt: round(figures[fmt]["rows_per_second_median"] / strict, 3) for fmt in measured
    }
    # Paired: each repetition's product against the limit measured just before it.
    paired: dict[str, list[float]] = {fmt: [] for fmt in TARGETS}
    current: float | None = None
    for run in runs:
        if run.books != books:
            continue
        if run.kind == "limit":
            current = run.rows_per_second
        elif run.kind in TARGETS and current:
            paired[run.kind].append(run.rows_per_second / current)
    figures["ratios_paired_median"] = {
        fmt: round(statistics.median(v), 3) for fmt, v in paired.items() if v
    }
    figures["books"] = books
    return figures


def _sizes_figures(runs: list[exports.Run], books: int) -> dict[str, Any]:
    """Each format's file, plain and gzip-compressed, in bytes (the same rows and fields)."""
    out: dict[str, Any] = {}
    for fmt in ("csv", *GZIP_SIZES):
        plain = next((r.bytes for r in runs if r.kind == fmt and r.books == books), None)
        packed = next((r.bytes for r in runs if r.kind == f"{fmt}+gzip" and r.books == books), None)
        if plain and packed:
            out[fmt] = {
                "bytes": plain,
                "gzip_bytes": packed,
                "gzip_ratio": round(packed / plain, 3),
            }
    return out


def _linearity(runs: list[exports.Run], sizes: list[int]) -> dict[str, Any]:
    per_row = {}
    for books in sizes:
        chosen = [r.seconds / r.rows * 1e6 for r in runs if r.kind == "csv" and r.books == books]
        if chosen:
            per_row[books] = round(statistics.median(chosen), 3)
    mean = sum(per_row.values()) / len(per_row)
    spread = max(abs(v / mean - 1) for v in per_row.values())
    return {"csv_microseconds_per_row": per_row, "max_deviation_from_mean": round(spread, 3)}


def _memory(runs: list[exports.Run], small: int, large: int) -> dict[str, Any]:
    """Per format: the median of the fresh workers' peaks at each size, and their ratio.

    A peak is the highest moment of one run, and what the moment holds depends on timing (the
    parts being uploaded, the one being assembled and its copies, the allocator's arenas): the
    same code gave a CSV ratio anywhere from 1.02 to 1.24 in one sample per size. The median of
    several runs per size, interleaved, is the figure; every peak and the ratio of the maxima
    are reported beside it.
    """
    out: dict[str, Any] = {}

    def peaks(fmt: str, books: int) -> list[float]:
        return [
            r.peak_rss_mib for r in runs if r.kind == fmt and r.books == books and r.peak_rss_mib
        ]

    for fmt in MEMORY_FORMATS:
        small_peaks, large_peaks = peaks(fmt, small), peaks(fmt, large)
        if small_peaks and large_peaks:
            small_peak, large_peak = statistics.median(small_peaks), statistics.median(large_peaks)
            out[fmt] = {
                f"peak_mib_{small}": round(small_peak, 1),
                f"peak_mib_{large}": round(large_peak, 1),
                "ratio": round(large_peak / small_peak, 3),
                f"peaks_mib_{small}": [round(p, 1) for p in small_peaks],
                f"peaks_mib_{large}": [round(p, 1) for p in large_peaks],
                "ratio_of_maxima": round(max(large_peaks) / max(small_peaks), 3),
            }
    return out


def _loadavg() -> float:
    """The 1-minute load average (the machine's other work shows in every figure)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _table(results: dict[str, Any]) -> str:
    lines = [
        f"codex-exports benchmark ({results['mode']}; {results['machine']['cpus']} CPUs, {results['machine']['memory_gib']} GiB)"
    ]
    ex = results.get("exports")
    if ex:
        lines.append(
            f"\nBooks export, every field, {ex['books']:,} books (medians of {ex['limit']['runs']})"
        )
        lines.append(
            f"{'path':<18}{'rows/s':>10}{'MB/s':>8}{'seconds':>9}{'ratio':>8}{'target':>8}"
        )
        for kind in ("limit", "limit_coalesced", *EXPORT_KINDS):
            if kind not in ex:
                continue  # left out by --formats
            f = ex[kind]
            ratio = ex["ratios"].get(kind)
            target = TARGETS.get(kind)
            verdict = _mark(ratio >= target) if ratio is not None and target else ""
            lines.append(
                f"{kind:<18}{f['rows_per_second_median']:>10,}{f['mb_per_second_median']:>8}"
                f"{f['seconds_median']:>9}{(f'{ratio:.2f}' if ratio is not None else ''):>8}"
                f"{(f'{target:g}' if target else ''):>8}  {verdict}"
            )
        lines.append(
            f"ratios, paired per repetition: {ex['ratios_paired_median']}; against limit_coalesced: {ex['ratios_vs_limit_coalesced']}"
        )
    sizes = results.get("sizes")
    if sizes:
        lines.append("\nFile sizes, plain and gzip (the same books, every field)")
        for fmt, sz in sizes.items():
            lines.append(
                f"  {fmt:<8}{sz['bytes'] / 1e6:>10.1f} MB  gzip {sz['gzip_bytes'] / 1e6:>8.1f} MB  ({sz['gzip_ratio']:.0%})"
            )
    lin = results.get("linearity")
    if lin:
        ok = lin["max_deviation_from_mean"] <= 0.25
        lines.append(
            f"\nLinear cost (CSV, µs per row): {lin['csv_microseconds_per_row']}  max deviation {lin['max_deviation_from_mean']:.0%} (±25%: {_mark(ok)})"
        )
    mem = results.get("memory")
    if mem:
        for fmt, m in mem.items():
            every = [p for k, v in m.items() if k.startswith("peaks") for p in v]
            ok = m["ratio"] <= 1.2 and max(every) < 250
            # The target compares 1M books with 100k; quick mode's 30k file is only a few
            # parts long, before the upload's buffers reach their steady size.
            verdict = _mark(ok) if results["mode"] == "full" else "judged on 1M vs 100k only"
            median = {k: v for k, v in m.items() if k.startswith("peak_mib") or k == "ratio"}
            runs = {k: v for k, v in m.items() if k.startswith("peaks")}
            lines.append(
                f"Worker peak RSS {fmt}, medians: {median}  (≤1.2x and <250 MiB: {verdict})"
            )
            lines.append(f"  every peak: {runs}, ratio of maxima {m['ratio_of_maxima']}")
    dl = results.get("download")
    if dl:
        lines.append(
            f"\nDownload {dl['bytes'] / 1e6:.0f} MB: api {dl['api_mb_per_second_median']} MB/s, direct {dl['direct_mb_per_second_median']} MB/s, ratio {dl['ratio']:.2f} (target 0.8: {_mark(dl['ratio'] >= 0.8)})"
        )
    ch = results.get("changes")
    if ch:
        lines.append(
            f"\nChanges between two {ch['books_catalog']:,}-book JSON backups "
            f"({ch['file_bytes'][0] / 1e6:.0f} MB each): {ch['seconds']} s, {ch['mb_per_second']} MB/s; "
            f"api RSS {ch['api_rss_before_mib']} MiB before, peak {ch['api_peak_rss_mib']} MiB; "
            f"series {ch['series']}, books {ch['books']}"
        )
    ctr = results.get("create_to_running")
    if ctr:
        lines.append(
            f"\nCreate -> running (idle): p50 {ctr['p50_ms']} ms, p90 {ctr['p90_ms']} ms (p50 < 100 ms: {_mark(ctr['p50_ms'] < 100)})"
        )
    load = results.get("api_load")
    if load:
        lines.append(
            f"API load: {load['clients']} clients, {load['seconds']} s, {load['total_rps']} req/s, errors {load['errors'] or 0}, creates refused (409, expected) {load['creates_refused_409']}"
        )
        for op in ("create", "list", "get", "fields", "healthz"):
            if op in load:
                o = load[op]
                lines.append(
                    f"  {op:<8}{o['rps']:>8} req/s  p50 {o['p50_ms']:>7} ms  p99 {o['p99_ms']:>7} ms"
                )
        rel = load.get("p99_over_healthz_p99", {})
        if rel:
            ok = all(v <= 5 for v in rel.values()) and not load["errors"]
            lines.append(f"  p99 / healthz p99: {rel} (≤5x, no errors: {_mark(ok)})")
    sc = results.get("scale_out")
    if sc:
        lines.append(
            f"\nScale-out, {sc['exports']} series exports: "
            + ", ".join(
                f"{k.split('_')[1]} worker(s) {v['exports_per_second']} exports/s"
                for k, v in sc.items()
                if k.startswith("workers_")
            )
        )
    fair = results.get("fairness")
    if fair:
        for name in ("lanes", "no_lanes"):
            run = fair.get(name)
            if not run:
                continue
            wait, finish = run.get("wait_seconds", {}), run.get("finish_seconds", {})
            target = f" (wait p95 < 2 s, finish p95 < 5 s: {_mark(fairness.verdict(run))})"
            lines.append(
                f"\nFairness, {name.replace('_', ' ')}: {run['large_exports']} exports of"
                f" {fair['large_books']:,} books on {fair['workers']} workers x"
                f" {fair['worker_concurrency']}; {run['small_completed']} of"
                f" {run['small_submitted']} small exports of other users completed, wait p50"
                f" {wait.get('p50')} p95 {wait.get('p95')} s, finish p50 {finish.get('p50')}"
                f" p95 {finish.get('p95')} s" + (target if name == "lanes" else "")
            )
    if isinstance(results.get("cluster_harness"), dict):
        lines.append("\n" + cluster_bench.table(results["cluster_harness"]))
    lines.append(f"\nbench took {results['bench_seconds']} s; load average {results['loadavg']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
