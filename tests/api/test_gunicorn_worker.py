"""The API's gunicorn worker class (``jobs_api.gunicorn_worker``: gthread whose thread lingers on a kept-alive
connection for its next request), run for real: ``jobs-api`` with the shipped settings serving a small Flask
app, real sockets, real signals. No timings are asserted: a request that is never answered fails the test by
its socket timeout."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.procs import wait_for

from api.stack import BIN, free_port

#: Long enough for a loaded machine; a request not answered within it is a failure, not a slow pass.
TIMEOUT = 30.0

APP = textwrap.dedent('''
    import os, threading, time
    from pathlib import Path
    from flask import Flask, request
    from jobs_api.gunicorn_worker import LingeringThreadWorker

    app = Flask(__name__)
    MARKS = Path(os.environ["TEST_MARKS"])

    @app.route("/who", methods=["GET", "POST"])
    def who():
        request.get_data()
        return {"port": request.environ.get("REMOTE_PORT"), "thread": threading.get_ident(), "pid": os.getpid()}

    class LongLinger(LingeringThreadWorker):
        """Lingers a minute: longer than any test waits, so a test passes only if something ends the linger."""

        linger_seconds = 60.0

    @app.get("/hold/<name>")
    def hold(name):
        # held until the test removes the "go" file: a request in flight for as long as the test wants
        (MARKS / name).touch()
        while (MARKS / "go").exists() is False:
            time.sleep(0.01)
        return {"held": name}

    class Collected:
        """Kept alive by a reference cycle: only a garbage collection at exit would run this."""

        def __del__(self, _open=os.open, _close=os.close, _flags=os.O_CREAT | os.O_WRONLY,
                    _path=str(MARKS / f"collected-{os.getpid()}")):
            _close(_open(_path, _flags))

    CYCLE = [Collected()]
    CYCLE.append(CYCLE)
''')


class Server:
    """``jobs-api`` (the shipped gunicorn settings and worker class) serving the test app."""

    def __init__(self, tmp: Path, threads: int, processes: int = 1, keepalive: int | None = None,
                 worker_class: str | None = None) -> None:
        (tmp / "worker_test_app.py").write_text(APP)
        self.marks = tmp / "marks"
        self.marks.mkdir()
        self.port = free_port()
        self.err = tmp / "api.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "REDIS_", "PROMETHEUS_", "GUNICORN_"))}
        env.update({"JOBS_BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(processes),
                    "JOBS_API_THREADS": str(threads), "JOBS_API_GRACEFUL_TIMEOUT": "120", "TEST_MARKS": str(self.marks),
                    "REDIS_URL": "redis://127.0.0.1:9/0", "TMPDIR": str(tmp)})  # the app never calls Redis
        args = ["--pythonpath", str(tmp), "worker_test_app:app"]
        if keepalive is not None:
            args[:0] = ["--keep-alive", str(keepalive)]
        if worker_class is not None:
            args[:0] = ["--worker-class", worker_class]
        with open(tmp / "api.out", "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([str(BIN / "jobs-api"), *args], env=env, stdout=out, stderr=err,
                                         start_new_session=True)
        wait_for(self._up, timeout=TIMEOUT, what="jobs-api serving")

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.err.read_text()[-2000:]
        conn = self.connect()
        try:
            self.request(conn, "GET", "/who")
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)

    @staticmethod
    def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> Any:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status == 200, (resp.status, data)
        return json.loads(data)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(TIMEOUT)


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    s = Server(tmp_path, **getattr(request, "param", {"threads": 2}))
    try:
        yield s
    finally:
        s.stop()


def test_the_shipped_settings_run_the_lingering_worker(server: Server) -> None:
    assert '"Using worker: jobs_api.gunicorn_worker.LingeringThreadWorker"' in server.err.read_text()


def test_a_kept_alive_connection_serves_requests_back_to_back(server: Server) -> None:
    conn = server.connect()
    first = server.request(conn, "GET", "/who")
    sock = conn.sock
    for i in range(200):
        answer = server.request(conn, "POST" if i % 2 else "GET", "/who", b'{"i": %d}' % i if i % 2 else None)
        assert answer["port"] == first["port"] and answer["pid"] == first["pid"]  # the same connection throughout
    assert conn.sock is sock  # the client never had to reconnect


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    """Requests sent together in one write: the second is read ahead with the first, and still served."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
        one = b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(one * 3 + b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 4


def test_idle_kept_alive_connections_do_not_keep_others_waiting(server: Server) -> None:
    """64 connections left open after a request, on a process of 2 threads: a new client is served, so is
    each idle connection when it sends again, and so are clients whose requests alternate."""
    idle = [server.connect() for _ in range(64)]
    for conn in idle:
        server.request(conn, "GET", "/who")
    active = server.connect()
    for _ in range(50):
        server.request(active, "GET", "/who")
    for conn in idle:
        server.request(conn, "GET", "/who")
    others = [server.connect() for _ in range(3)]
    for _ in range(30):
        for conn in others:
            server.request(conn, "GET", "/who")
    for conn in (*idle, active, *others):
        conn.close()


def test_a_request_holding_a_thread_leaves_the_other_to_the_rest(server: Server) -> None:
    """With one of the 2 threads held by a long request, every other client is still served: the thread left
    never stays on one connection while another waits for it (it does not linger when no other is idle)."""
    held = server.connect()
    held.request("GET", "/hold/a")
    wait_for(lambda: (server.marks / "a").exists(), timeout=TIMEOUT, what="the held request running")
    clients = [server.connect() for _ in range(4)]
    for _ in range(25):
        for conn in clients:
            server.request(conn, "GET", "/who")
    (server.marks / "go").touch()
    resp = held.getresponse()
    assert resp.status == 200 and json.loads(resp.read()) == {"held": "a"}


def test_sigterm_lets_requests_in_flight_finish_and_closes_kept_alive_connections(server: Server) -> None:
    kept = server.connect()
    server.request(kept, "GET", "/who")  # then left open, idle
    flying = server.connect()
    flying.request("GET", "/hold/b")
    wait_for(lambda: (server.marks / "b").exists(), timeout=TIMEOUT, what="the request in flight")
    server.proc.send_signal(signal.SIGTERM)
    # the stopping worker closes the idle kept-alive connection (EOF), while the held request still runs
    assert kept.sock is not None
    assert kept.sock.recv(1) == b""
    assert server.proc.poll() is None
    (server.marks / "go").touch()
    resp = flying.getresponse()
    assert resp.status == 200 and json.loads(resp.read()) == {"held": "b"}
    assert flying.sock is not None
    assert flying.sock.recv(1) == b""  # and then closed, the process stopping
    assert server.proc.wait(TIMEOUT) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT).close()


@pytest.mark.parametrize("server", [{"threads": 2, "keepalive": 1}], indirect=True)
def test_a_kept_alive_connection_is_closed_after_the_keep_alive_timeout(server: Server) -> None:
    conn = server.connect()
    server.request(conn, "GET", "/who")
    assert conn.sock is not None
    assert conn.sock.recv(1) == b""  # closed by the server (the socket timeout would fail the test instead)


LONG_LINGER = {"threads": 2, "worker_class": "worker_test_app.LongLinger"}


@pytest.mark.parametrize("server", [LONG_LINGER], indirect=True)
def test_a_lingering_thread_gives_way_to_a_connection_waiting_for_a_thread(server: Server) -> None:
    """Thread 1 lingers on A (for a minute), thread 2 holds B's request: C's request has no thread but the
    lingering one, which must leave A to the poller and serve C (else C waits out the linger: a timeout)."""
    a = server.connect()
    server.request(a, "GET", "/who")
    b = server.connect()
    b.request("GET", "/hold/k")
    wait_for(lambda: (server.marks / "k").exists(), timeout=TIMEOUT, what="the held request running")
    c = server.connect()
    server.request(c, "GET", "/who")
    (server.marks / "go").touch()
    resp = b.getresponse()
    assert resp.status == 200 and json.loads(resp.read()) == {"held": "k"}
    server.request(a, "GET", "/who")  # A is served again, by whichever thread


@pytest.mark.parametrize("server", [LONG_LINGER], indirect=True)
def test_sigterm_ends_a_linger_at_once(server: Server) -> None:
    """A thread lingering on a kept-alive connection lets go of it on SIGTERM: the connection is closed and
    the process exits without waiting out the linger (a minute, past the test's timeout)."""
    conn = server.connect()
    server.request(conn, "GET", "/who")
    server.proc.send_signal(signal.SIGTERM)
    assert conn.sock is not None
    assert conn.sock.recv(1) == b""
    assert server.proc.wait(TIMEOUT) == 0


def test_an_idle_stop_skips_the_final_walk_over_the_apps_objects(server: Server) -> None:
    """A stopping worker freezes its heap before the interpreter exits (``worker_exit``): the final garbage
    collection walks none of the app's objects (about a second per process on a loaded host, profile 34),
    so a garbage cycle made at start is never collected — fails without the freeze (``collected-<pid>``)."""
    pid = server.request(server.connect(), "GET", "/who")["pid"]
    assert server.stop() == 0
    assert f'"Worker exiting (pid: {pid})"' in server.err.read_text()
    assert not (server.marks / f"collected-{pid}").exists()
