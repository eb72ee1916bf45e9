"""A TCP proxy in front of a Redis that loses the reply of a chosen call after Redis ran it.

Every request is forwarded. When armed (``drop``), the next request that contains ``marker`` (e.g.
``b"EVALSHA"``) is forwarded as usual, but when Redis answers it the proxy closes both sides instead of
passing the reply on: the call ran, the client sees a dropped connection, as after a network cut. With
``hold`` set, the next marked request waits (not forwarded) until the test releases it, so that other
callers can queue up behind it.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class ReplyDropper:
    """``ReplyDropper(port)`` listens on a free port of 127.0.0.1 (``url``) and forwards to ``port``."""

    def __init__(self, upstream_port: int, marker: bytes = b"EVALSHA") -> None:
        self.upstream_port = upstream_port
        self.marker = marker
        self.lock = threading.Lock()
        self.drop = 0  # replies of marked requests still to lose
        self.dropped = 0  # replies lost so far
        self.hold: threading.Event | None = None  # the next marked request waits for this
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            lose = threading.Event()  # set: the next reply on this connection is lost with it
            threading.Thread(target=self._requests, args=(client, upstream, lose), daemon=True).start()
            threading.Thread(target=self._replies, args=(client, upstream, lose), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, lose: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                if self.marker in data:
                    with self.lock:
                        hold, self.hold = self.hold, None
                        if hold is None and self.drop > 0:
                            self.drop -= 1
                            lose.set()
                    if hold is not None:
                        hold.wait(30)
                upstream.sendall(data)
        except OSError:
            pass
        self._close(client, upstream)

    def _replies(self, client: socket.socket, upstream: socket.socket, lose: threading.Event) -> None:
        try:
            while data := upstream.recv(65536):
                if lose.is_set():
                    with self.lock:
                        self.dropped += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        self._close(client, upstream)

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
