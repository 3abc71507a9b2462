"""The host's own swarm package: its coordinator and task queue (not swarmlog's)."""

HOST = "fake-dashboard"
