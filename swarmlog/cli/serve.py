"""`swarmlog serve`: the read-only web view of a log (see `swarmlog.web`)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from pathlib import Path

import click

from swarmlog.cli.app import _DB, PathText, cli, db_option, fail
from swarmlog.log import EventLog, default_location


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the view on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token: str | None, token_file: str | None) -> str | None:
    if token is not None and token_file is not None:
        fail("give --token or --token-file, not both")
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            fail(f"cannot read the token file {token_file}: {e.strerror}")
        except UnicodeDecodeError:
            fail(f"the token file {token_file} is not UTF-8 text")
    if token is not None and (len(token) < 8 or any(c.isspace() for c in token)):
        fail("a token is at least 8 characters, without spaces")
    return token


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; anything but loopback needs a token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="The port to listen on.")
@click.option("--token", metavar="TOKEN", envvar="SWARMLOG_TOKEN",
              help="Require this token on every request [default: $SWARMLOG_TOKEN].")
@click.option("--token-file", metavar="FILE", type=PathText(dir_okay=False),
              help="Read the token from FILE.")
@db_option
def serve(host: str, port: int, token: str | None, token_file: str | None) -> None:
    """Serve a live, read-only web view of the log: overview, events, tasks (with their
    timelines), agents and integrity, updated as any process appends; a JSON API at /api/.

    The log is opened read-only: the view never writes to it. Binding to anything but
    loopback needs --token (or --token-file); open the view once as /?token=TOKEN, or send
    'Authorization: Bearer TOKEN'.

    \b
    Example:
        swarmlog serve                      # http://127.0.0.1:8000/
        swarmlog serve --host 0.0.0.0 --token-file ~/.swarmlog-token
    """
    from swarmlog.web import create_app
    from swarmlog.web.server import Server

    secret = read_token(token, token_file)
    if not host.strip("[] "):
        fail("--host is empty: give an address to listen on (127.0.0.1, 0.0.0.0, ...)")
    if not is_loopback(host) and secret is None:
        fail(f"serving on {host} exposes the log to the network: give --token or "
             "--token-file (or bind to 127.0.0.1)")
    location = click.get_current_context().meta.get(_DB) or default_location()
    log = EventLog(location, read_only=True)
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    try:
        listening = listen(host, port)
    except (OSError, UnicodeError, ValueError) as e:  # (an unknown name, a port in use, ...)
        log.close()
        fail(f"cannot listen on {shown}:{port}: {getattr(e, 'strerror', None) or e}")
    # (Once the log is open and the port bound: an error before is the only line printed.)
    if not is_loopback(host):
        click.echo(f"warning: serving on {host}, beyond this machine: anyone who can reach it "
                   "and has the token can read the whole log (the token travels in clear "
                   "without TLS in front)", err=True)
    app = create_app(log, token=secret, close_log=True)
    click.echo(f"serving {log.location} read-only on http://{shown}:{listening.getsockname()[1]}/"
               + (" (token required)" if secret else "") + "; Ctrl-C stops", err=True)
    with contextlib.suppress(KeyboardInterrupt), listening:  # (uvicorn raises it again, stopped)
        Server(app, host, port).run(sockets=[listening])
    click.echo("stopped", err=True)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host` and `port`, for the server to listen on (as uvicorn binds)."""
    address = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
