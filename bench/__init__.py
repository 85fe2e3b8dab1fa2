"""Benchmarks for issue #5 (exports at the speed of PostgreSQL's own COPY, flat memory).

``python -m bench`` (or ``make bench``) starts its own PostgreSQL, NATS and SeaweedFS on
127.0.0.1 (``services.cli.servers``), builds synthetic catalogs in SQL, runs the api and the
worker as real processes, and prints a table of figures and ratios followed by one
``BENCH_JSON {...}`` line with all of them. ``--quick`` is the 100,000-book version (under
three minutes). Benchmarks are not tests: they measure and report, they assert nothing.
"""
