"""The API's gunicorn worker class: gunicorn's ``gthread`` worker whose thread stays a moment on a kept-alive
connection for its next request (``worker_class`` in ``jobs_api.gunicorn_conf``).

Why: with plain ``gthread`` every request on a kept-alive connection costs two hand-overs between threads.
The poller thread sees the socket readable and submits it to the thread pool (a future, a queue, a
semaphore), and when the answer is sent the connection goes back to the poller through a pipe
(``finish_request``, an epoll registration) — each a wake-up of a thread that then waits for the GIL held by
the request's thread. A client sending its requests one after another (a ``Prefer: wait`` submitter, a
client of the library, a proxy's pooled upstream connection) pays that on every request: about 0.2 ms per
request, a fifth of a bare Flask round trip (bench/analysis.md, profiles 23 and 27).

What changes: after answering a request on a connection that stays open, the thread waits up to
:data:`LINGER_SECONDS` for the next request on it and serves it itself; if none comes (or the worker is
stopping) the connection goes back to the poller exactly as with ``gthread``. It lingers only while
another of the process's threads is idle (counted over the pool: connections handed to it and not yet
handed back), and a connection handed to the pool while no thread is free wakes one lingering thread at
once (a byte on that thread's pipe), which gives its connection back to the poller and takes the waiting
one: a lingering thread never keeps a request waiting, so under load (every thread busy) the worker
behaves as ``gthread``. A connection whose client let a linger pass without a request (a client pausing
between requests, e.g. a loaded load generator at 8-32 connections) is not lingered on again until a
request of it comes back to back through the poller: a linger that waits in vain is an extra wake-up per
request, which a throughput run would pay on every request. The wait is one ``poll()`` of the socket and
that pipe with a timeout (no busy polling: an idle API costs what it did). Everything else — accepting,
keep-alive timeouts, ``worker_connections``, graceful shutdown (SIGTERM: in-flight requests finish, no new
connection is accepted, kept-alive ones are closed), HTTP/2, TLS — is ``gthread``'s own code, unchanged.

``GUNICORN_CMD_ARGS="--worker-class gthread"`` runs the API on plain ``gthread`` again.
``tests/api/test_gunicorn_worker.py`` runs real gunicorn with this class.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

#: How long a thread waits on a kept-alive connection for its next request before handing it back to the
#: poller. A sequential client's next request follows its answer within a fraction of a millisecond; a
#: longer gap is a client that is not sending back to back, which the poller serves as before.
LINGER_SECONDS = 0.002


class LingeringThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """``gthread``, with a thread lingering on a kept-alive connection for its next request (see the module)."""

    linger_seconds = LINGER_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._count_lock = threading.Lock()
        #: connections handed to the thread pool and not yet back (queued, being served or lingered on)
        self._in_pool = 0
        #: the wake-up pipes (write ends) of the threads lingering now
        self._lingering: set[int] = set()
        self._pipes = threading.local()

    def enqueue_req(self, conn: Any) -> None:
        """Hand ``conn`` to the thread pool (gthread's), counted; when it would have to wait for a thread,
        wake one that lingers (it hands its connection to the poller and takes this one)."""
        with self._count_lock:
            self._in_pool += 1
            if self._in_pool > self.cfg.threads and self._lingering:
                try:
                    os.write(self._lingering.pop(), b"\0")
                except OSError:  # cannot happen (one byte in an empty pipe); the linger then just times out
                    pass
        try:
            super().enqueue_req(conn)
        except BaseException:
            with self._count_lock:
                self._in_pool -= 1
            raise

    def handle(self, conn: Any) -> Any:
        """Serve a request on ``conn`` (gthread's code), then the ones that follow it while it lingers."""
        try:
            answered = getattr(conn, "jobs_answered_at", None)
            if answered is not None and time.monotonic() - answered < self.linger_seconds:
                conn.jobs_lingers = True  # its client sends back to back (again): worth a linger
            keep = super().handle(conn)
            while keep is True:
                conn.jobs_answered_at = time.monotonic()
                if not self._next_request_soon(conn):
                    break
                keep = super().handle(conn)
            return keep
        finally:
            with self._count_lock:
                self._in_pool -= 1

    def _next_request_soon(self, conn: Any) -> bool:
        """Whether the next request on ``conn`` is there within a linger, when lingering is allowed."""
        if not self.alive:  # stopping: the connection goes back to the poller, which closes it
            return False
        if not getattr(conn, "jobs_lingers", True):  # its last linger waited in vain (see below)
            return False
        if conn.parser.unreader.buf.getvalue():  # already read ahead (a pipelined request)
            return True
        pending = getattr(conn.sock, "pending", None)  # TLS: bytes decrypted already are not seen by poll()
        if pending is not None and pending():
            return True
        wake_r, wake_w = self._wake_pipe()
        with self._count_lock:
            if self._in_pool >= self.cfg.threads:  # no other thread is idle: a request may need this one
                return False
            self._lingering.add(wake_w)
        ready: set[int] = set()
        try:
            poller = select.poll()
            poller.register(conn.sock, select.POLLIN)
            poller.register(wake_r, select.POLLIN)
            ready = {fd for fd, _ in poller.poll(self.linger_seconds * 1000)}
        finally:
            with self._count_lock:
                woken = wake_w not in self._lingering  # enqueue_req took it and wrote its byte
                self._lingering.discard(wake_w)
        if woken or wake_r in ready:  # a connection waits for a thread, or the worker is stopping
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 64)
            return False
        if conn.sock.fileno() in ready:
            return True
        # The client did not send within the linger: a client with pauses between its requests (a loaded
        # load generator, a person) would make every linger an extra wake-up for nothing. No more lingers on
        # this connection until a request comes back to back again through the poller (handle above).
        conn.jobs_lingers = False
        return False

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM (gthread's graceful stop), and lingering threads let go of their connections at once."""
        super().handle_exit(sig, frame)
        # a signal handler: no lock (the main thread may hold it); list() of the set runs under the GIL
        for wake_w in list(self._lingering):
            with contextlib.suppress(OSError):
                os.write(wake_w, b"\0")

    def _wake_pipe(self) -> tuple[int, int]:
        """This thread's wake-up pipe (made on its first linger; pool threads live as long as the process)."""
        pipe: tuple[int, int] | None = getattr(self._pipes, "fds", None)
        if pipe is None:
            pipe = os.pipe()
            os.set_blocking(pipe[0], False)
            os.set_blocking(pipe[1], False)
            self._pipes.fds = pipe
        return pipe
