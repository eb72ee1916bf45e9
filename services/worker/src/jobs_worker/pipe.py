"""The messages on the pipe between a worker process and a slot's child: a binary header, JSON, raw bytes.

Never pickle (the developers' guide: JSON only): reading a message cannot run code, whatever wrote it.
One message is one ``Connection.send_bytes`` (whose own 4-byte length prefix delimits it) holding a frame::

    kind: 1 byte | head length: uint32, little-endian | head: a JSON array | payload: raw bytes (the rest)

The head holds the kind's fields; a job's params (JSON text) and a result (any bytes) travel as payload,
as they are: never escaped into a JSON string or base64, binary-safe. Kinds and their head's fields:

    parent -> child  J job       [job_id, task, attempt, max_attempts, queue, deadline, tenant, trace,
                                  finish] + params
                     S stop      []
    child -> parent  R ready     [pid]
                     P progress  [fraction | null, message | null]
                     D done      [media type] + the result's bytes as payload
                     E error     [type, message, traceback | null, cancelled, retryable, retry delay | null]
                     F finished  [status]  (the child stored the job's success itself: see ``finish``)
                     L lost      [status]  (... and the script refused it: the attempt was no longer ours)

``finish`` (a bool) lets the child store a success itself (:mod:`jobs_worker.child_finish`); the worker and
its children are always the same version, so the pipe's frames need no compatibility between versions.

A reader checks the kind, the head's length, that the head is a JSON array and each field's type, and
raises :class:`~jobs_core.errors.SlotMessageInvalid` for anything else (the worker then handles the job as
if its child had crashed); a frame over the reader's size limit is refused before it is read.

Why this shape (issue 16: the pipe is on every job's round trip; ``bench/analysis.md`` profile 25): one
orjson call per field group costs about what pickle did for the same tuple of builtins; a fixed header
finds the payload without scanning. The params are a payload of their own, not a field of the head: params
nested as deep as Redis may hold them (orjson's 254 levels) would not fit one level deeper in the head.
"""

from __future__ import annotations

import struct
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from jobs_core.errors import SlotMessageInvalid

if TYPE_CHECKING:  # the slot child imports this module: jobs_core.delivery would pull redis-py and
    # OpenTelemetry into every forked child (~28 MB RSS each, measured), for a type annotation only
    from jobs_core.delivery import ClaimedJob

_HEADER = struct.Struct("<BI")
_HEADER_SIZE = _HEADER.size
_NUMBER = (int, float, type(None))
_TEXT = (str, type(None))

JOB, STOP, READY, PROGRESS, DONE, ERROR, FINISHED, LOST = b"JSRPDEFL"
#: each kind's head: one tuple of accepted types per field (a bool is an int: fine for a pid or a count)
FIELDS: dict[int, tuple[tuple[type, ...], ...]] = {
    JOB: ((str,), (str,), (int,), (int,), (str,), _NUMBER, _TEXT, _TEXT, (bool,)),
    STOP: (),
    READY: ((int,),),
    PROGRESS: (_NUMBER, _TEXT),
    DONE: ((str,),),
    ERROR: ((str,), (str,), _TEXT, (bool,), (bool,), _NUMBER),
    FINISHED: ((str,),),
    LOST: ((str,),),
}
#: the messages a child sends, as :func:`receive_reply` names them
REPLIES = {READY: "ready", PROGRESS: "progress", DONE: "done", ERROR: "error", FINISHED: "finished", LOST: "lost"}
_KINDS = {name: kind for kind, name in REPLIES.items()}
_WITH_PAYLOAD = (JOB, DONE)

#: the largest job frame a child reads: Redis's own limit on one value (proto-max-bulk-len), so any params
#: Redis could hold get through
MAX_JOB_FRAME = 512 * 1024 * 1024
#: what a reply frame may hold besides a result of the size limit (JOBS_MAX_RESULT_BYTES, which the child
#: enforces before sending): an error's message and traceback are cut to 10,000 and 20,000 characters
REPLY_HEADROOM = 1024 * 1024


class JobMessage(NamedTuple):
    """One job attempt for the child to run (``deadline`` is the ``time.time()`` of its hard timeout)."""

    job_id: str
    task: str
    attempt: int
    max_attempts: int
    queue: str
    deadline: float | None
    tenant: str | None
    trace: str | None  # the submission's traceparent (tracing on): its trace id goes on every log line
    finish: bool  # the child stores a success itself (jobs_worker.child_finish): the claim was short
    params: Any  # the job's JSON params (an object, unless stored by an older producer)


def frame(kind: int, head: tuple[Any, ...], payload: bytes = b"") -> bytes:
    """One message's bytes (``head`` becomes the JSON array; ``payload`` follows as it is)."""
    try:
        data = orjson.dumps(head)
    except TypeError:  # a str with lone surrogates (say, an exception message made from undecodable bytes)
        data = orjson.dumps([_clean(x) for x in head])
    return _HEADER.pack(kind, len(data)) + data + payload


def _clean(value: Any) -> Any:
    """``value`` with lone surrogates in a str spelled out (``\\udc80``): JSON text must be UTF-8."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


def parse(data: bytes) -> tuple[int, list[Any], bytes]:
    """Kind, head fields and payload of a frame; :class:`SlotMessageInvalid` saying what is wrong."""
    try:
        kind, size = _HEADER.unpack_from(data)
    except struct.error:
        raise SlotMessageInvalid(f"a frame of {len(data)} bytes, shorter than its {_HEADER_SIZE}-byte header") from None
    end = _HEADER_SIZE + size
    types = FIELDS.get(kind)
    if types is None:
        raise SlotMessageInvalid(f"unknown message kind {kind:#04x}")
    if end > len(data):
        raise SlotMessageInvalid(f"{chr(kind)} frame cut short: a head of {size} bytes, {len(data) - end + size} sent")
    try:
        head = orjson.loads(data[_HEADER_SIZE:end])
    except orjson.JSONDecodeError as e:
        raise SlotMessageInvalid(f"{chr(kind)} frame: the head is not JSON ({e})") from None
    if type(head) is not list or len(head) != len(types) or not all(map(isinstance, head, types)):
        raise SlotMessageInvalid(f"{chr(kind)} frame: the head {str(head)[:200]} does not hold the kind's fields")
    if end == len(data):
        return kind, head, b""
    if kind not in _WITH_PAYLOAD:
        raise SlotMessageInvalid(f"{chr(kind)} frame: {len(data) - end} bytes after the head of a kind without payload")
    return kind, head, data[end:]


def read(conn: Connection, limit: int) -> bytes:
    """One frame's bytes from ``conn``, refused unread (:class:`SlotMessageInvalid`) when over ``limit``.

    EOFError (the other end closed) and OSError (the pipe broke, or a frame cut short by a dying writer)
    pass through: the process at the other end is gone, and the caller handles that as such."""
    try:
        return conn.recv_bytes(limit)
    except OSError as e:
        if e.args == ("bad message length",):  # multiprocessing's word for over ``limit``: conn reads no more
            raise SlotMessageInvalid(f"a frame over the limit of {limit} bytes was refused") from None
        raise


# ------------------------------------------------------------------ parent side
def send_job(conn: Connection, job: ClaimedJob, deadline: float, finish: bool = False) -> None:
    """Give ``job`` to the child, to be killed at ``deadline`` (``time.time()``): a :class:`JobMessage`
    (``finish``: the child may store the job's success itself)."""
    conn.send_bytes(frame(JOB, (job.id, job.task, job.attempt, job.max_attempts, job.queue, deadline, job.owner,
                                job.trace, finish), orjson.dumps(job.params)))


def send_stop(conn: Connection) -> None:
    """Ask the child to exit."""
    conn.send_bytes(frame(STOP, ()))


def receive_reply(conn: Connection, limit: int) -> tuple[Any, ...]:
    """The child's next message: ``("ready", pid)``, ``("progress", fraction, message)``, ``("done",
    result bytes, media type)``, ``("error", type, message, traceback, cancelled, retryable, delay)``,
    ``("finished", status)`` or ``("lost", status)``."""
    kind, head, payload = parse(read(conn, limit))
    if kind == DONE:
        return ("done", payload, head[0])
    name = REPLIES.get(kind)
    if name is None:
        raise SlotMessageInvalid(f"{chr(kind)} frame: not a message a child sends")
    return (name, *head)


# ------------------------------------------------------------------ child side
def receive_job(conn: Connection) -> JobMessage | None:
    """The next job from the parent, or None when asked to stop."""
    kind, head, payload = parse(read(conn, MAX_JOB_FRAME))
    if kind == JOB:
        try:
            return JobMessage(*head, orjson.loads(payload))
        except orjson.JSONDecodeError as e:
            raise SlotMessageInvalid(f"J frame: the params are not JSON ({e})") from None
    if kind == STOP:
        return None
    raise SlotMessageInvalid(f"{chr(kind)} frame: not a message the parent sends")


def send_reply(conn: Connection, message: tuple[Any, ...]) -> None:
    """Send a message shaped as :func:`receive_reply` returns it."""
    if message[0] == "done":
        conn.send_bytes(frame(DONE, (message[2],), message[1]))
    else:
        conn.send_bytes(frame(_KINDS[message[0]], message[1:]))
