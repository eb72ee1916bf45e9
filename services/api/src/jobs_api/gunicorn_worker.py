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
handed back), so a lingering thread never holds back a request waiting for a thread by more than one
linger; under load (every thread busy) the worker behaves as ``gthread``. The wait is one ``poll()`` of the
one socket with a timeout (no busy polling: an idle API costs what it did). Everything else — accepting,
keep-alive timeouts, ``worker_connections``, graceful shutdown (SIGTERM: in-flight requests finish, no new
connection is accepted), HTTP/2, TLS — is ``gthread``'s own code, unchanged.

``GUNICORN_CMD_ARGS="--worker-class gthread"`` runs the API on plain ``gthread`` again.
``tests/api/test_gunicorn_worker.py`` runs real gunicorn with this class.
"""

from __future__ import annotations

import select
import threading
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

#: How long a thread waits on a kept-alive connection for its next request before handing it back to the
#: poller. A sequential client's next request follows its answer within a fraction of a millisecond; a
#: longer gap is a client that is not sending back to back, which the poller serves as before.
LINGER_SECONDS = 0.002
_LINGER_MS = LINGER_SECONDS * 1000


class LingeringThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """``gthread``, with a thread lingering on a kept-alive connection for its next request (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._count_lock = threading.Lock()
        #: connections handed to the thread pool and not yet back (queued or being served)
        self._in_pool = 0

    def enqueue_req(self, conn: Any) -> None:
        """Hand ``conn`` to the thread pool (gthread's), counted."""
        with self._count_lock:
            self._in_pool += 1
        try:
            super().enqueue_req(conn)
        except BaseException:
            with self._count_lock:
                self._in_pool -= 1
            raise

    def handle(self, conn: Any) -> Any:
        """Serve a request on ``conn`` (gthread's code), then the ones that follow it while it lingers."""
        try:
            keep = super().handle(conn)
            while keep is True and self._next_request_soon(conn):
                keep = super().handle(conn)
            return keep
        finally:
            with self._count_lock:
                self._in_pool -= 1

    def _next_request_soon(self, conn: Any) -> bool:
        """Whether the next request on ``conn`` is there within a linger, when lingering is allowed."""
        if not self.alive or self._in_pool >= self.cfg.threads:  # stopping, or no other thread is idle
            return False
        if conn.parser.unreader.buf.getvalue():  # already read ahead (a pipelined request)
            return True
        pending = getattr(conn.sock, "pending", None)  # TLS: bytes decrypted already are not seen by poll()
        if pending is not None and pending():
            return True
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(_LINGER_MS))
