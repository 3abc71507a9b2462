"""`python -m swarmlog.cli`: the same as the `swarmlog` command."""

from swarmlog.cli import main

main()
