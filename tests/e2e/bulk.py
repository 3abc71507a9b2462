"""Big logs for the streaming tests, made quickly: a base of real events appended through
`EventLog`, then copied over and over in SQL (new ids, tasks, agents and streams per copy),
as another client of the file could. The copies carry no hash: they are outside the integrity
chain (`verify` would name each one), which the tests that use them do not look at."""

from __future__ import annotations

import sqlite3
from itertools import islice
from pathlib import Path

from benchmarks.workload import swarm_specs, to_event
from swarmlog.log import EventLog

_COPY = """
WITH RECURSIVE copies(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM copies WHERE k < ?)
INSERT INTO event_log (id, event_type, source, task_id, agent_id, data, timestamp, stream_id,
                       stream_version, schema_version, conforms, hash)
SELECT id || '-' || k, event_type, source, task_id || '-' || k, agent_id || '-' || k, data,
       timestamp, stream_id || '-' || k, stream_version, schema_version, conforms, NULL
FROM copies, (SELECT * FROM event_log WHERE seq <= ?) ORDER BY k, seq
"""


def big_log(path: Path, events: int, base: int = 10_000) -> Path:
    """An SQLite log of `events` events (a multiple of `base`)."""
    with EventLog(path) as log:
        specs = swarm_specs(base)
        while batch := [to_event(s) for s in islice(specs, 5000)]:
            log.append(batch)
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-200000")
        conn.execute("BEGIN")
        # The indexes are made again after the copy: a third of the time of keeping them.
        indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                               "AND tbl_name = 'event_log' AND sql IS NOT NULL").fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        conn.execute(_COPY, (events // base - 1, base))
        for _, sql in indexes:
            conn.execute(sql)
        conn.execute("INSERT INTO swarmlog_streams SELECT stream_id, max(stream_version) "
                     "FROM event_log GROUP BY stream_id ON CONFLICT DO NOTHING")
        conn.execute("COMMIT")
    conn.close()
    return path
