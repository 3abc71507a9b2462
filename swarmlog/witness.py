"""Checkpoints kept outside the database: a witness file of signed statements of the chain.

A checkpoint says "at this time the log's chain reached position P with hash H, holding N events",
signed with Ed25519 by a key kept outside the database. The witness file (JSON lines; its first
line names the public key) can live on another disk or host. `verify --witness` then proves the
log still extends every checkpoint: a history truncated below a checkpoint, or rewritten before
it, fails even if whoever did it recomputed every unkeyed hash in the file.

`$SWARMLOG_WITNESS` names the witness file and `$SWARMLOG_SIGNING_KEY` the key file (created,
private to its owner, on first use); with both set, every prune and snapshot adds a checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.codec import timestamp_text
from domain.errors import StoreError
from domain.ids import utc_now
from projections.verify import VerifyReport
from store import Store, stored_count

WITNESS_VARIABLE = "SWARMLOG_WITNESS"
SIGNING_KEY_VARIABLE = "SWARMLOG_SIGNING_KEY"


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of where the chain stood."""

    position: int
    hash: str  # hexadecimal
    count: int
    time: str
    log: str

    def statement(self) -> bytes:
        return orjson.dumps([self.position, self.hash, self.count, self.time, self.log])


def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The Ed25519 key in `path`, made there (readable by its owner only) if there is none."""
    file = Path(path)
    try:
        if not file.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
            return key
        loaded = serialization.load_pem_private_key(file.read_bytes(), password=None)
    except (OSError, ValueError) as e:
        raise StoreError(f"cannot use the signing key {path}: {e}") from e
    if not isinstance(loaded, Ed25519PrivateKey):
        raise StoreError(f"the signing key {path} is not an Ed25519 key")
    return loaded


def _public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def checkpoint(store: Store, witness: str | os.PathLike[str],
               signing_key: str | os.PathLike[str]) -> Checkpoint:
    """Append a signed checkpoint of the log's chain as it stands to the witness file."""
    key = load_signing_key(signing_key)
    public = _public_hex(key.public_key())
    head = store.head()
    at = store.hash_at(head)
    if at is None:
        raise StoreError(f"the chain hash at the head ({head}) of {store.location} is missing: "
                         "see `swarmlog verify`")
    point = Checkpoint(head, at.hex(), stored_count(store), timestamp_text(utc_now()),
                       store.location)
    file = Path(witness)
    try:
        lines = file.read_bytes().splitlines() if file.exists() else []
        if lines and _public_key_of(lines[0], witness) != public:
            raise StoreError(f"the witness {witness} holds checkpoints of another signing key")
        with open(file, "ab") as out:
            if not lines:
                out.write(orjson.dumps({"witness": "swarmlog", "algorithm": "ed25519",
                                        "public_key": public}) + b"\n")
            out.write(orjson.dumps({**point.__dict__,
                                    "signature": key.sign(point.statement()).hex()}) + b"\n")
            out.flush()
            os.fsync(out.fileno())
    except OSError as e:
        raise StoreError(f"cannot write the witness {witness}: {e.strerror}") from e
    return point


def _public_key_of(header: bytes, witness: str | os.PathLike[str]) -> str:
    """The public key (hexadecimal) a witness file's first line names, or StoreError."""
    try:
        named: Any = orjson.loads(header)["public_key"]
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(named))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as e:
        raise StoreError(f"{witness} is not a swarmlog witness file (its first line names no "
                         f"Ed25519 public key: {type(e).__name__})") from e
    return str(named)


def read_witness(witness: str | os.PathLike[str], public_key: str | None = None
                 ) -> tuple[list[Checkpoint], list[str]]:
    """The checkpoints of a witness file whose signatures hold (with its own public key, or
    `public_key` when given), and what is wrong with the others."""
    try:
        lines = Path(witness).read_bytes().splitlines()
    except OSError as e:
        raise StoreError(f"cannot read the witness {witness}: {e.strerror}") from e
    if not lines:
        raise StoreError(f"the witness {witness} is empty")
    named = _public_key_of(lines[0], witness)
    if public_key is not None and public_key != named:
        raise StoreError(f"the witness {witness} was signed with key {named}, not {public_key}")
    verifier = Ed25519PublicKey.from_public_bytes(bytes.fromhex(named))
    good: list[Checkpoint] = []
    bad: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            fields: Any = orjson.loads(line)
            signature = bytes.fromhex(fields.pop("signature"))
            point = Checkpoint(**fields)
            verifier.verify(signature, point.statement())
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidSignature):
            bad.append(f"line {number} of {witness} is not a checkpoint signed by its key")
            continue
        good.append(point)
    return good, bad


def check_witness(store: Store, checkpoints: list[Checkpoint], report: VerifyReport) -> None:
    """Does the log still extend every checkpoint? `report` must hold the chain hashes at the
    checkpoints' positions (`verify(..., remember=...)`)."""
    head = store.head()
    for point in checkpoints:
        if point.position > head:
            report.find("truncated", "event_log", point.position,
                        f"a checkpoint of {point.time} saw the log reach position "
                        f"{point.position}; it now ends at {head}")
            continue
        found = report.hashes.get(point.position) or store.hash_at(point.position)
        if found is None:
            report.note(f"the checkpoint of {point.time} at position {point.position} cannot be "
                        "checked: that position was pruned without an archive")
        elif found.hex() != point.hash:
            report.find("changed", "event_log", point.position,
                        f"the chain at position {point.position} is not what the checkpoint of "
                        f"{point.time} signed: the history up to it was rewritten")


def configured() -> tuple[str, str] | None:
    """(witness file, signing key file) when both are configured in the environment."""
    witness, key = os.environ.get(WITNESS_VARIABLE), os.environ.get(SIGNING_KEY_VARIABLE)
    return (witness, key) if witness and key else None
