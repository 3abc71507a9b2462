"""The SQLite schema of swarmlog, as named migrations applied on open.

The first migration is ADR 017's own `event_log` table, so a database written by the seed system
opens here and is upgraded in place: its rows get positions (in timestamp order), streams and
versions, and from then on the log is append-only.
"""

from __future__ import annotations

import zlib
from datetime import datetime

from sqlite_utils import Database, Migrations

from domain.codec import StoredEvent, decode, timestamp_text
from domain.errors import CorruptEvent

migrations = Migrations("swarmlog")



@migrations(name="0001_adr017_event_log")
def _adr017_event_log(db: Database) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS event_log (
            id TEXT PRIMARY KEY,
            event_type TEXT NOT NULL,
            source TEXT NOT NULL,
            task_id TEXT,
            agent_id TEXT,
            data TEXT,
            timestamp TEXT NOT NULL
        )"""
    )


_STREAM_OF = (
    "CASE WHEN task_id IS NOT NULL THEN 'task-' || task_id "
    "WHEN agent_id IS NOT NULL THEN 'agent-' || agent_id ELSE 'system' END"
)


def _utc_text(stamp: str) -> str:
    try:
        moment = datetime.fromisoformat(stamp)
        return stamp if moment.tzinfo is None else timestamp_text(moment)
    except (ValueError, OverflowError, TypeError):
        return stamp


@migrations(name="0002_positions_streams_append_only")
def _positions_streams_append_only(db: Database) -> None:
    db.execute(
        """CREATE TABLE event_log_v2 (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            event_type TEXT NOT NULL,
            source TEXT NOT NULL,
            task_id TEXT,
            agent_id TEXT,
            data TEXT,
            timestamp TEXT NOT NULL,
            stream_id TEXT NOT NULL,
            stream_version INTEGER NOT NULL,
            schema_version INTEGER NOT NULL DEFAULT 1,
            UNIQUE (stream_id, stream_version)
        )"""
    )
    # Rows of an ADR 017 database get positions in time order and per-stream versions, and
    # their timestamps swarmlog's one spelling (UTC, microseconds), so that text order is time
    # order (the seed's module left out a zero fraction); a timestamp that is no time stays as
    # it is (its row will not conform).
    db.conn.create_function("swarmlog_utc", 1, _utc_text, deterministic=True)
    db.execute(
        f"""INSERT INTO event_log_v2 (id, event_type, source, task_id, agent_id, data, timestamp,
                                      stream_id, stream_version)
            SELECT id, event_type, source, task_id, agent_id, data, stamp, stream,
                   ROW_NUMBER() OVER (PARTITION BY stream ORDER BY stamp, rowid)
            FROM (SELECT *, rowid, {_STREAM_OF} AS stream, swarmlog_utc(timestamp) AS stamp
                  FROM event_log)
            ORDER BY stamp, rowid"""
    )
    db.execute("DROP TABLE event_log")
    db.execute("ALTER TABLE event_log_v2 RENAME TO event_log")
    for column in ("task_id", "agent_id", "timestamp", "event_type"):
        db.execute(f"CREATE INDEX idx_event_log_{column} ON event_log ({column})")
    db.execute(
        "CREATE TABLE swarmlog_streams (stream_id TEXT PRIMARY KEY, version INTEGER NOT NULL) "
        "WITHOUT ROWID"
    )
    db.execute(
        "INSERT INTO swarmlog_streams SELECT stream_id, max(stream_version) FROM event_log "
        "GROUP BY stream_id"
    )
    db.execute(
        """CREATE TABLE swarmlog_snapshots (
            id INTEGER PRIMARY KEY,
            projection TEXT NOT NULL,
            version INTEGER NOT NULL,
            position INTEGER NOT NULL,
            state TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX idx_swarmlog_snapshots_lookup ON swarmlog_snapshots "
               "(projection, version, position)")
    db.execute(
        """CREATE TABLE swarmlog_prunes (
            id INTEGER PRIMARY KEY,
            first_position INTEGER NOT NULL,
            last_position INTEGER NOT NULL,
            count INTEGER NOT NULL,
            cutoff TEXT NOT NULL,
            pruned_at TEXT NOT NULL,
            archive_path TEXT,
            archive_sha256 TEXT
        )"""
    )
    # Append-only, enforced for every SQL client: no UPDATE ever, and DELETE only while the
    # prune primitive holds the gate open inside its own write transaction.
    db.execute("CREATE TABLE swarmlog_prune_gate (open INTEGER NOT NULL)")
    db.execute("INSERT INTO swarmlog_prune_gate VALUES (0)")
    db.execute(
        """CREATE TRIGGER event_log_no_update BEFORE UPDATE ON event_log
           BEGIN SELECT RAISE(ABORT, 'event_log is append-only: UPDATE is not allowed'); END"""
    )
    db.execute(
        """CREATE TRIGGER event_log_no_delete BEFORE DELETE ON event_log
           WHEN (SELECT open FROM swarmlog_prune_gate) IS NOT 1
           BEGIN SELECT RAISE(ABORT, 'event_log is append-only: DELETE only through prune'); END"""
    )


@migrations(name="0003_snapshot_items")
def _snapshot_items(db: Database) -> None:
    # The entries a read model keeps out of memory (closed tasks), written with the snapshots:
    # the entry `key` as of a snapshot at P is its newest item at a position <= P.
    db.execute(
        """CREATE TABLE swarmlog_snapshot_items (
            projection TEXT NOT NULL,
            version INTEGER NOT NULL,
            key TEXT NOT NULL,
            position INTEGER NOT NULL,
            state TEXT NOT NULL,
            PRIMARY KEY (projection, version, key, position)
        ) WITHOUT ROWID"""
    )


@migrations(name="0004_event_checksums")
def _event_checksums(db: Database) -> None:
    # The CRC-32 of each row's fields as swarmlog encoded them (`domain.codec.checksum`): a bulk
    # fold does not validate again a row whose checksum matches. Older rows, and rows another
    # client inserts, have none and are validated in full.
    db.execute("ALTER TABLE event_log ADD COLUMN checksum INTEGER")


NO_UPDATE = """CREATE TRIGGER event_log_no_update BEFORE UPDATE ON event_log
   BEGIN SELECT RAISE(ABORT, 'event_log is append-only: UPDATE is not allowed'); END"""


@migrations(name="0005_conformance")
def _conformance(db: Database) -> None:
    # Whether each row was validated as its type when appended: a fold reads such a row without
    # validating it again. Rows swarmlog wrote say so by their checksum; any other row (from the
    # seed's module, or another client) is validated here, once, instead of at every fold.
    # Rows inserted later by other clients carry NULL: not checked, validated when folded.
    db.execute("ALTER TABLE event_log ADD COLUMN conforms INTEGER")
    db.execute("DROP TRIGGER event_log_no_update")
    after = 0
    while rows := db.execute(f"SELECT {_ROW_COLUMNS} FROM event_log WHERE seq > ? ORDER BY seq "
                             "LIMIT 5000", (after,)).fetchall():
        stored = [StoredEvent(*row) for row in rows]
        db.conn.executemany("UPDATE event_log SET conforms = ? WHERE seq = ?",
                            [(int(_conforms(r)), r.position) for r in stored])
        after = stored[-1].position
    db.execute(NO_UPDATE)


_ROW_COLUMNS = ("seq, id, event_type, source, task_id, agent_id, data, timestamp, stream_id, "
                "stream_version, schema_version, NULL, checksum")


def _crc(row: StoredEvent) -> int:
    """The CRC-32 swarmlog stored with each row before the integrity chain (0007) replaced it."""
    return zlib.crc32(f"{row.id}\x1f{row.event_type}\x1f{row.source}\x1f{row.task_id}\x1f"
                      f"{row.agent_id}\x1f{row.data}\x1f{row.timestamp}\x1f{row.schema_version}"
                      .encode())


def _conforms(row: StoredEvent) -> bool:
    old_checksum: object = row.hash  # (`hash` holds the CRC-32 of 0004 here)
    if old_checksum is not None and old_checksum == _crc(row):
        return True
    try:
        decode(row)
    except CorruptEvent:
        return False
    return True


@migrations(name="0006_own_table_names")
def _own_table_names(db: Database) -> None:
    # The log lives beside a host's own tables (the seed's data/swarm.db holds its tasks, bids
    # and registry): every table but ADR 017's event_log carries swarmlog's name, so none can
    # collide with a host's. Logs created before this migration used plain names; newer ones
    # are created with swarmlog's (0002, 0003). The DELETE guard's reference to the gate is
    # renamed with the gate.
    if db["swarmlog_streams"].exists():
        return
    for table in ("streams", "snapshots", "snapshot_items", "prunes", "prune_gate"):
        db.execute(f"ALTER TABLE {table} RENAME TO swarmlog_{table}")
    db.execute("DROP INDEX idx_snapshots_lookup")
    db.execute("CREATE INDEX idx_swarmlog_snapshots_lookup ON swarmlog_snapshots "
               "(projection, version, position)")


@migrations(name="0007_integrity_chain")
def _integrity_chain(db: Database) -> None:
    # Every row's link in the integrity chain (store/chain.py) replaces its CRC-32; the chain's
    # epochs (from which position, with which algorithm and key); prune records chained, with the
    # hash at their cut; snapshots and items bound to the chain. The rows already stored are
    # chained by the store right after this migration, with the key it is opened with.
    db.execute("ALTER TABLE event_log ADD COLUMN hash BLOB")
    db.execute("ALTER TABLE event_log DROP COLUMN checksum")
    db.execute("""CREATE TABLE swarmlog_chain (
        start INTEGER PRIMARY KEY,
        algorithm TEXT NOT NULL,
        key_id TEXT,
        previous BLOB NOT NULL
    )""")
    db.execute("ALTER TABLE swarmlog_prunes ADD COLUMN cut_hash BLOB")
    db.execute("ALTER TABLE swarmlog_prunes ADD COLUMN record_hash BLOB")
    db.execute("ALTER TABLE swarmlog_snapshots ADD COLUMN chain_hash BLOB")
    db.execute("ALTER TABLE swarmlog_snapshots ADD COLUMN digest BLOB")
    db.execute("ALTER TABLE swarmlog_snapshot_items ADD COLUMN digest BLOB")
    # Deletion only through swarmlog: the guard calls a function that only swarmlog's own
    # connection defines (`swarmlog_pruning`, 1 while its prune runs); any other client's DELETE
    # fails on it, unless that client drops the trigger or defines the function itself (which
    # the chain and a witness then show).
    db.execute("DROP TRIGGER event_log_no_delete")
    db.execute(DELETE_GUARD)
    db.execute("DROP TABLE swarmlog_prune_gate")


DELETE_GUARD = """CREATE TRIGGER event_log_no_delete BEFORE DELETE ON event_log
   WHEN swarmlog_pruning() IS NOT 1
   BEGIN SELECT RAISE(ABORT, 'event_log is append-only: DELETE only through prune'); END"""


#: The names of swarmlog's migrations, in order: a database that has applied one not listed
#: here was written by a newer swarmlog.
NAMES = [m.name for m in migrations._migrations]
