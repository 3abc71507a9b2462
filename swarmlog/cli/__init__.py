"""The `swarmlog` command: a thin click layer over `EventLog`, rendered with rich.

Each command parses, calls the library, renders. Every listing takes `--json` (the same rows the
table shows). Errors are one line on stderr and exit code 2; the database is opened in one place,
`_open`, from `--db`, `$SWARMLOG_DB` or data/swarm.db (a `postgresql://` URL works too).
"""

from swarmlog.cli import maintenance, reading, serve, tools  # each registers its commands
from swarmlog.cli.app import cli, main

__all__ = ["cli", "main", "maintenance", "reading", "serve", "tools"]
