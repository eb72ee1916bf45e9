"""The messages on the pipe between a worker process and a slot's child: a binary header, JSON, raw bytes.

Never pickle (the developers' guide: JSON only): reading a message cannot run code, whatever wrote it.
One message is one ``Connection.send_bytes`` (whose 4-byte length prefix delimits it) holding a frame::

    kind: 1 byte | head length: uint32, little-endian | head: a JSON array | payload: raw bytes (the rest)

The head holds the kind's fields; the payload is what is already JSON text or may be binary (a job's params,
a result), carried as it is: never re-encoded, never base64, binary-safe. Kinds and their fields:

    parent -> child   J job       [job_id, task, attempt, max_attempts, queue, deadline, tenant, trace] + params JSON
                      S stop      []
    child -> parent   R ready     [pid]
                      P progress  [fraction | null, message | null]
                      D done      [media type] + result bytes
                      E error     [type, message, traceback | null, cancelled, retryable, retry delay | null]

A reader checks the kind, the head's length, that it is a JSON array, and each field's type, and raises
:class:`~jobs_core.errors.SlotMessageInvalid` for anything else (the worker then handles the job as if its
child had crashed); a frame over the reader's size limit is refused before it is read.

Why this shape (issue 16: the pipe is on every job's round trip): orjson encodes and decodes the few
fields as fast as pickle did the tuple of builtins (``bench/analysis.md``, profile 25), a fixed header
locates the payload without scanning it, and a result or params of megabytes is copied once into the frame
instead of being escaped into a JSON string.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson
from jobs_core.errors import SlotMessageInvalid

_HEADER = struct.Struct("<BI")
_NUMBER = (int, float)
_OPT_NUMBER = (int, float, type(None))
_OPT_STR = (str, type(None))

JOB, STOP, READY, PROGRESS, DONE, ERROR = b"JSRPDE"
#: what each kind is called in the tuples :func:`receive_reply` returns
NAMES = {READY: "ready", PROGRESS: "progress", DONE: "done", ERROR: "error"}
KINDS = {name: kind for kind, name in NAMES.items()}
#: each kind's head: one tuple of accepted types per field (bool is an int: fine for flags and counts)
FIELDS: dict[int, tuple[tuple[type, ...], ...]] = {
    JOB: ((str,), (str,), (int,), (int,), (str,), _OPT_NUMBER, _OPT_STR, _OPT_STR),
    STOP: (),
    READY: ((int,),),
    PROGRESS: (_OPT_NUMBER, _OPT_STR),
    DONE: ((str,),),
    ERROR: ((str,), (str,), _OPT_STR, (bool,), (bool,), _OPT_NUMBER),
}
WITH_PAYLOAD = frozenset({JOB, DONE})

#: the largest job frame a child reads: Redis's own limit on one value (proto-max-bulk-len), so any params
#: Redis could hold get through
MAX_JOB_FRAME = 512 * 1024 * 1024
#: what a reply frame may hold besides a result of the size limit (JOBS_MAX_RESULT_BYTES, which the child
#: enforces before sending): an error's message and traceback are cut to 10,000 and 20,000 characters
REPLY_HEADROOM = 1024 * 1024


@dataclass(frozen=True, slots=True)
class JobMessage:
    """One job attempt for the child to run (``deadline`` is the ``time.time()`` of its hard timeout)."""

    job_id: str
    task: str
    params: Any
    attempt: int
    max_attempts: int
    queue: str
    deadline: float | None
    tenant: str | None = None
    trace: str | None = None  # the submission's traceparent (tracing on): its trace id goes on every log line


def frame(kind: int, head: tuple[Any, ...] | list[Any], payload: bytes = b"") -> bytes:
    """One message's bytes (``head`` becomes the JSON array; ``payload`` follows as it is)."""
    try:
        data = orjson.dumps(head)
    except TypeError:  # a str with lone surrogates (an exception message made from undecodable bytes)
        data = orjson.dumps([_clean(x) for x in head])
    return _HEADER.pack(kind, len(data)) + data + payload


def _clean(value: Any) -> Any:
    """``value`` with lone surrogates in a str spelled out (``\\udc80``), as JSON text must be UTF-8."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


def parse(data: bytes) -> tuple[int, list[Any], bytes]:
    """Kind, head fields and payload of a frame; :class:`SlotMessageInvalid` saying what is wrong."""
    if len(data) < _HEADER.size:
        raise SlotMessageInvalid(f"a frame of {len(data)} bytes is shorter than its {_HEADER.size}-byte header")
    kind, size = _HEADER.unpack_from(data)
    types = FIELDS.get(kind)
    if types is None:
        raise SlotMessageInvalid(f"unknown message kind {kind:#04x}")
    end = _HEADER.size + size
    if end > len(data):
        raise SlotMessageInvalid(f"{chr(kind)} frame truncated: head of {size} bytes, {len(data) - _HEADER.size} sent")
    try:
        head = orjson.loads(data[_HEADER.size:end])
    except orjson.JSONDecodeError as e:
        raise SlotMessageInvalid(f"{chr(kind)} frame: head is not JSON ({e})") from None
    if type(head) is not list or len(head) != len(types) or not all(map(isinstance, head, types)):
        raise SlotMessageInvalid(f"{chr(kind)} frame: head {str(head)[:200]} does not have the kind's fields")
    if end == len(data):
        return kind, head, b""
    if kind not in WITH_PAYLOAD:
        raise SlotMessageInvalid(f"{chr(kind)} frame: {len(data) - end} bytes after the head of a kind without payload")
    return kind, head, data[end:]


def read(conn: Connection, limit: int) -> bytes:
    """One frame's bytes from ``conn``, refused unread when over ``limit`` bytes.

    EOFError (the other end closed) and OSError (the pipe broke, or a frame cut short by a dying writer)
    pass through: the process at the other end is gone, which the caller handles as such."""
    try:
        return conn.recv_bytes(limit)
    except OSError as e:
        if e.args == ("bad message length",):  # multiprocessing's word for over ``limit``; it closed conn
            raise SlotMessageInvalid(f"a frame over the limit of {limit} bytes was refused") from None
        raise


# ------------------------------------------------------------------ parent side
def send_job(conn: Connection, job: JobMessage) -> None:
    """Give a job to the child."""
    conn.send_bytes(frame(JOB, (job.job_id, job.task, job.attempt, job.max_attempts, job.queue, job.deadline,
                                job.tenant, job.trace), orjson.dumps(job.params)))


def send_stop(conn: Connection) -> None:
    """Ask the child to exit."""
    conn.send_bytes(frame(STOP, ()))


def receive_reply(conn: Connection, limit: int) -> tuple[Any, ...]:
    """The child's next message: ``("ready", pid)``, ``("progress", fraction, message)``, ``("done",
    result bytes, media type)`` or ``("error", type, message, traceback, cancelled, retryable, delay)``."""
    kind, head, payload = parse(read(conn, limit))
    if kind == DONE:
        return ("done", payload, head[0])
    name = NAMES.get(kind)
    if name is None:
        raise SlotMessageInvalid(f"{chr(kind)} frame: not a message a child sends")
    return (name, *head)


# ------------------------------------------------------------------ child side
def receive_job(conn: Connection) -> JobMessage | None:
    """The next job from the parent, or None when asked to stop."""
    kind, head, payload = parse(read(conn, MAX_JOB_FRAME))
    if kind == STOP:
        return None
    if kind != JOB:
        raise SlotMessageInvalid(f"{chr(kind)} frame: not a message the parent sends")
    try:
        params = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise SlotMessageInvalid(f"J frame: params are not JSON ({e})") from None
    job_id, task, attempt, max_attempts, queue, deadline, tenant, trace = head
    return JobMessage(job_id, task, params, attempt, max_attempts, queue, deadline, tenant, trace)


def send_reply(conn: Connection, message: tuple[Any, ...]) -> None:
    """Send a message shaped as :func:`receive_reply` returns it."""
    name = message[0]
    if name == "done":
        conn.send_bytes(frame(DONE, (message[2],), message[1]))
    else:
        conn.send_bytes(frame(KINDS[name], message[1:]))

