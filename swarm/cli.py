"""The `swarmlog` command: a thin click layer over `EventLog`, rendered with rich."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import click


def _version() -> str:
    try:
        return version("swarmlog")
    except PackageNotFoundError:
        return "0+unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="swarmlog")
def cli() -> None:
    """swarmlog: an event-sourced audit log for agent swarms.

    Example: swarmlog --version
    """


def main() -> None:
    cli()
