"""The swarmlog performance suite: `python -m benchmarks [--events N] [--quick] [--json FILE]`.

Every figure is a ratio against baselines measured in the same run: raw SQLite (the same schema
driven by plain sqlite3, the physical limit of the design) and the `eventsourcing` library on its
SQLite persistence (the peer). Never part of the unit tests; `tests/test_benchmarks_smoke.py`
only checks that a tiny run completes and writes valid JSON.
"""
