"""swarmlog, the application: `EventLog`, the coordinator, the ADR 017 facade
(`swarmlog.event_log`), the demo and the CLI, over `domain/`, `store/` and `projections/`."""

from projections.pruning import PruneReport
from store import open_store
from swarmlog.log import EventLog, default_location

__all__ = ["EventLog", "PruneReport", "default_location", "open_store"]
