"""A TCP proxy in front of the test PostgreSQL server that loses what it is told to lose, as a
network does: the answer to the next COMMIT (the server has committed; the client never hears
it), every open connection, or every new one while `refusing`."""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit


class Proxy:
    """Clients connect to `url`; the proxy relays to the server `target` names."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        params = parse_qs(parts.query)
        host = params.pop("host", [parts.hostname or "localhost"])[0]
        server_port = parts.port or 5432
        # The server's address: a Unix socket in a directory (the embedded server's), or TCP.
        self._server: str | tuple[str, int] = (
            f"{host}/.s.PGSQL.{server_port}" if host.startswith("/") else (host, server_port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        user = f"{parts.username}@" if parts.username else ""
        params["sslmode"] = ["disable"]  # plain bytes, to read the COMMIT in
        self.url = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}",
                                             query=urlencode(params, doseq=True)))
        #: While set, new connections are closed at once: the server is out of reach.
        self.refusing = threading.Event()
        self._lose_commit = threading.Event()
        self._refuse_after = False
        self._losing: set[socket.socket] = set()  # clients whose COMMIT's answer is lost
        self._open: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_next_commit_answer(self, *, then_refuse: bool = False) -> None:
        """The next COMMIT reaches the server; its answer does not reach the client, whose
        connection is then cut (and, `then_refuse`, every other one, and new ones refused)."""
        self._refuse_after = then_refuse
        self._lose_commit.set()

    def drop_all(self) -> None:
        """Cut every open connection."""
        with self._lock:
            pairs, self._open = self._open, []
        for pair in pairs:
            _cut(*pair)

    def close(self) -> None:
        self.refusing.set()
        self._listener.close()
        self.drop_all()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            if self.refusing.is_set():
                client.close()
                continue
            if isinstance(self._server, str):
                server = socket.socket(socket.AF_UNIX)
                server.connect(self._server)
            else:
                server = socket.create_connection(self._server)
            with self._lock:
                self._open.append((client, server))
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        while data := _receive(client):
            # A simple-query message ('Q', its length, the text): psycopg commits so.
            if self._lose_commit.is_set() and b"COMMIT\x00" in data:
                self._lose_commit.clear()
                self._losing.add(client)
            if not _send(server, data):
                break
        _cut(client, server)

    def _downstream(self, server: socket.socket, client: socket.socket) -> None:
        while data := _receive(server):
            if client in self._losing:  # the server's answer to that COMMIT: lost
                if self._refuse_after:
                    self.refusing.set()
                    self.drop_all()
                break
            if not _send(client, data):
                break
        _cut(client, server)


def _receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _cut(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
