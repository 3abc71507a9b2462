"""`python -m swarm.cli`: the same as the `swarmlog` command."""

from swarm.cli import main

main()
