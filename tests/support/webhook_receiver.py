"""A real loopback HTTP receiver for webhook tests: records every POST (headers, body) and answers with
the status the test sets (``answer``), on its own thread; ``stop()`` closes the port (receiver down),
``start()`` again opens the same port (receiver back)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """``Receiver().start()``; ``.url``; ``.received`` = [(headers dict, body bytes)]; ``.answer`` = status."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        #: (monotonic time, status answered) of each request, in the order of ``received``
        self.answers: list[tuple[float, int]] = []
        self.answer = 200
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.answer
                    receiver.answers.append((time.monotonic(), status))
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> list[str]:
        """The webhook-id of every request received, in order."""
        with self._lock:
            return [h.get("webhook-id", "") for h, _ in self.received]
