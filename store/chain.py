"""The integrity chain: every row's hash over its predecessor's and everything that defines it.

`hash(row) = H(hash(previous row) || canonical bytes of the row)`, where the canonical bytes are
the JSON array of every field that defines the event and its place: position, id, type, source,
task, agent, the payload's text, timestamp, stream and version, schema version and whether it
conforms. H is SHA-256, or, with a key (a file outside the database: `$SWARMLOG_KEY_FILE`),
HMAC-SHA-256: a forger without the key cannot recompute the chain. The hash is computed inside
the append's transaction, so a row is never stored without it.

The same chain binds what else the log keeps: each prune record is chained to the one before it
and records the hash of the last row it removed (the first row it leaves links to that hash), and
each snapshot (and each of its items) carries a digest of its content bound to the row hash at its
position. `projections.verify` walks all of it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from domain.codec import StoredEvent
from domain.errors import StoreError

if TYPE_CHECKING:
    from store.base import PruneRecord

#: The hash before the first row of a log (and of a prune chain).
GENESIS = hashlib.sha256(b"swarmlog genesis").digest()
#: Where the key is looked for when none is given.
KEY_FILE_VARIABLE = "SWARMLOG_KEY_FILE"


def canonical(row: StoredEvent) -> bytes:
    """The bytes of every field that defines a row and its place, unambiguously."""
    conforms = None if row.conforms is None else bool(row.conforms)
    return orjson.dumps([row.position, row.id, row.event_type, row.source, row.task_id,
                         row.agent_id, row.data, row.timestamp, row.stream_id, row.stream_version,
                         row.schema_version, conforms], default=_odd)


def _odd(value: object) -> object:
    """A value another client stored where text belongs (a BLOB), unambiguously."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"blob": bytes(value).hex()}
    raise TypeError(f"{type(value).__name__} is not a stored value")


@dataclass(frozen=True)
class Chain:
    """How a log's hashes are made: SHA-256, or HMAC-SHA-256 with a key."""

    key: bytes | None = None

    @property
    def algorithm(self) -> str:
        return "sha256" if self.key is None else "hmac-sha256"

    @property
    def key_id(self) -> str | None:
        """Which key (a fingerprint that does not reveal it), or None when unkeyed."""
        return None if self.key is None else hashlib.sha256(b"swarmlog key id" + self.key
                                                            ).hexdigest()[:16]

    def mac(self, data: bytes) -> bytes:
        if self.key is None:
            return hashlib.sha256(data).digest()
        return hmac.digest(self.key, data, "sha256")

    def link(self, previous: bytes, row: StoredEvent) -> bytes:
        """The hash of `row`, following the row whose hash is `previous`."""
        return self.mac(previous + canonical(row))

    def hashes(self, previous: bytes, rows: Sequence[StoredEvent]) -> list[bytes]:
        """The hashes of consecutive rows following `previous`."""
        out = []
        for row in rows:
            previous = self.mac(previous + canonical(row))
            out.append(previous)
        return out

    def digest(self, bound_to: bytes, *parts: object) -> bytes:
        """A digest of some content (a snapshot, an item, a prune record), bound to a chain
        hash."""
        return self.mac(bound_to + orjson.dumps(list(parts)))


def prune_hash(chain: Chain, previous: bytes, record: PruneRecord) -> bytes:
    """A prune record's link in the chain of prune records (its id aside: that is the store's)."""
    return chain.digest(previous, record.first_position, record.last_position, record.removed,
                        record.cutoff, record.pruned_at, record.archive_path,
                        record.archive_sha256, None if record.cut_hash is None else
                        record.cut_hash.hex())


def key_from(path: str | os.PathLike[str] | None) -> bytes | None:
    """The key in a key file (its bytes, at least 16), or None for no file."""
    if path is None or str(path) == "":
        return None
    try:
        key = Path(path).read_bytes().strip()
    except OSError as e:
        raise StoreError(f"cannot read the key file {path}: {e.strerror}") from e
    if len(key) < 16:
        raise StoreError(f"the key file {path} holds {len(key)} bytes; a key needs 16 or more")
    return key


def configured_chain() -> Chain:
    """The chain `$SWARMLOG_KEY_FILE` configures (unkeyed when it is unset)."""
    return Chain(key_from(os.environ.get(KEY_FILE_VARIABLE)))
