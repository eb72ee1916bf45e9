"""A TCP proxy in front of a Redis that stops chosen calls at a chosen point, for kill-point tests.

Every request is forwarded as it comes, except the next one holding an armed stop's ``marker`` (a slot
child's finish call names its own claim-memo key; a worker's heartbeat names the jobs it holds):

- ``"request"``: the call waits in the proxy, not sent to Redis;
- ``"reply"``: the call runs in Redis and its reply waits in the proxy;
- ``"drop"``: the call runs and its reply is lost, the connection closed (as after a network cut).

A stop's ``reached`` is set once the call is held (for ``"reply"`` and ``"drop"``: once Redis answered);
``release(forward)`` then sends the request or the reply on, or drops it with its connection.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from support.reply_dropper import ReplyDropper


@dataclass
class Stop:
    """One armed stop (see the module's docstring)."""

    marker: bytes
    point: str  # request | reply | drop
    reached: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)
    forward: bool = True

    def release(self, forward: bool = True) -> None:
        """Let the held request or reply go on (``forward``), or drop it with its connection."""
        self.forward = forward
        self.go.set()

    def wait(self, timeout: float = 30) -> None:
        """Block until the call reached this stop (fail the test otherwise)."""
        assert self.reached.wait(timeout), f"no call holding {self.marker!r} reached the {self.point} stop"


class FinishGate(ReplyDropper):
    """``FinishGate(port)`` listens on a free port of 127.0.0.1 (``url``) and forwards to ``port``: the
    reply dropper's proxy, with stops armed per marker and a Redis that may be down (a connection made
    then is closed at once)."""

    def __init__(self, upstream_port: int) -> None:
        self.armed: list[Stop] = []
        super().__init__(upstream_port)

    def arm(self, marker: bytes, point: str) -> Stop:
        """Stop the next request holding ``marker`` at ``point``."""
        stop = Stop(marker, point)
        with self.lock:
            self.armed.append(stop)
        return stop

    def close(self) -> None:
        with self.lock:
            for stop in self.armed:
                stop.go.set()
        super().close()

    def _accept(self) -> None:
        for client in iter(self._next_client, None):
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:  # Redis is down: the client sees its connection closed
                client.close()
                continue
            self.sockets += [client, upstream]
            at_reply: list[Stop] = []  # the stop this connection's next reply meets
            threading.Thread(target=self._forward_requests, args=(client, upstream, at_reply), daemon=True).start()
            threading.Thread(target=self._forward_replies, args=(client, upstream, at_reply), daemon=True).start()

    def _next_client(self) -> socket.socket | None:
        try:
            return self.listener.accept()[0]
        except OSError:  # closed
            return None

    def _take(self, data: bytes) -> Stop | None:
        with self.lock:
            for stop in self.armed:
                if stop.marker in data:
                    self.armed.remove(stop)
                    return stop
        return None

    def _forward_requests(self, client: socket.socket, upstream: socket.socket, at_reply: list[Stop]) -> None:
        try:
            while data := client.recv(1 << 20):
                stop = self._take(data)
                if stop is not None and stop.point == "request":
                    stop.reached.set()
                    stop.go.wait(60)
                    if not stop.forward:
                        break
                elif stop is not None:
                    at_reply.append(stop)
                upstream.sendall(data)
        except OSError:
            pass
        if not at_reply:  # (a held reply closes both sides itself)
            self._close(client, upstream)

    def _forward_replies(self, client: socket.socket, upstream: socket.socket, at_reply: list[Stop]) -> None:
        try:
            while data := upstream.recv(1 << 20):
                if at_reply:
                    stop = at_reply.pop()
                    stop.reached.set()
                    if stop.point == "drop":
                        break
                    stop.go.wait(60)
                    if not stop.forward:
                        break
                client.sendall(data)
        except OSError:
            pass
        self._close(client, upstream)
