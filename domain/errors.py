"""The project's exceptions: one hierarchy, each message naming the offending value."""

from __future__ import annotations


class SwarmlogError(Exception):
    """Base class of every error swarmlog raises on purpose."""


class InvalidEvent(SwarmlogError, ValueError):
    """An event (or an argument describing one) was refused; nothing was stored."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"invalid event: {field}: {message}")


class InvalidArgument(InvalidEvent, TypeError):
    """An argument of a call was refused (of the wrong type, or out of range): nothing was done.
    Also a ValueError and a TypeError, as Python's own checks of such an argument are."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        SwarmlogError.__init__(self, f"invalid argument: {field}: {message}")


class InvalidTransition(SwarmlogError):
    """A command does not fit the current state of its task or agent; nothing was appended."""

    def __init__(self, subject_id: str, current: str, attempted: str) -> None:
        self.subject_id = subject_id
        self.current = current
        self.attempted = attempted
        super().__init__(f"cannot {attempted} {subject_id!r}: it is {current}")


class ConcurrencyError(SwarmlogError):
    """A stream's version was not the expected one: someone else appended first."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, expected {expected}: "
            "another writer appended first; reload and retry"
        )


class StoreError(SwarmlogError):
    """The database refused or failed an operation (locked, full, unreadable, wrong schema)."""


class CommitInDoubt(StoreError):
    """The connection was lost while a write was being committed: it may or may not be stored.
    Appending the same events again (same ids) stores each once, whichever it was."""

    def __init__(self, message: str, event_ids: tuple[str, ...] = ()) -> None:
        self.event_ids = event_ids
        super().__init__(message)


class CorruptEvent(StoreError):
    """A stored row cannot be read back as an event."""

    def __init__(self, seq: int, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        super().__init__(f"corrupt event at seq {seq}: {reason}")


class ProjectionError(SwarmlogError):
    """A read model cannot be built correctly from what is stored (and will not be guessed)."""
