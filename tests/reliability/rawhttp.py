"""Raw-socket HTTP for requests no well-behaved client library will send (CR/LF in headers, bodies far
over the limit, a client that trickles its request)."""

from __future__ import annotations

import socket
import time


def exchange(port: int, head: bytes, body: bytes = b"", *, chunk: int = 65536,
             timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``head`` then ``body`` (stopping early if the server answers or closes); (status, response bytes).

    Status 0 means the connection ended without any response.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        s.setblocking(False)
        received = b""
        sent = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = s.recv(65536)
                if not data:
                    break
                received += data
                if b"\r\n\r\n" in received and _complete(received):
                    break
                continue
            except BlockingIOError:
                pass
            except (ConnectionResetError, BrokenPipeError):
                break
            if sent < len(body):
                try:
                    sent += s.send(body[sent : sent + chunk])
                except BlockingIOError:
                    time.sleep(0.005)
                except (ConnectionResetError, BrokenPipeError):
                    # the server answered and closed while we were still sending: read what it said
                    try:
                        s.setblocking(True)
                        received += s.recv(65536)
                    except OSError:
                        pass
                    break
            else:
                time.sleep(0.005)
    return _status(received), received


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or 0)
    return True


def _status(data: bytes) -> int:
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def slow_request(port: int, request: bytes, seconds: float) -> socket.socket:
    """Open a connection and start trickling ``request`` over ``seconds`` (the caller closes the socket)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=seconds + 10)
    s.sendall(request[:1])
    return s


def trickle(sockets: list[socket.socket], request: bytes, seconds: float) -> list[int]:
    """Send the rest of ``request`` one byte at a time over ``seconds`` on each socket; their statuses."""
    step = seconds / max(1, len(request) - 1)
    for i in range(1, len(request)):
        for s in sockets:
            try:
                s.sendall(request[i : i + 1])
            except OSError:
                pass
        time.sleep(step)
    statuses = []
    for s in sockets:
        try:
            s.settimeout(10)
            statuses.append(_status(s.recv(65536)))
        except OSError:
            statuses.append(0)
        finally:
            s.close()
    return statuses
