"""The application layer: the EventLog, the ADR 017 facade, the coordinator and the CLI."""

from projections.pruning import PruneReport
from swarm.log import EventLog, default_location, open_store

__all__ = ["EventLog", "PruneReport", "default_location", "open_store"]
