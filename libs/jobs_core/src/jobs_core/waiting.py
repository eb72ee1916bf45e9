"""Waiting for a job to end: :meth:`JobStore.wait` and :meth:`JobStore.wait_result` (mixed into the store).

Two ways a waiter learns of the end, both over one pub/sub connection per thread (reused by every wait):

- **the reply channel** (issue 16's round trip): a thread that says it will wait (``enqueue(reply=True)``,
  ``POST /jobs`` with ``Prefer: wait``) subscribes its own channel ONCE, and its jobs are stored with
  ``reply_to`` naming it; every end publishes the ended job there (``lua/includes/emit.lua``:
  ``<id>\\n<status>\\n<record>\\n<result>``, the result only from a worker's success): a worker's finish, a
  cancel, the reaper's failure, a workflow cascade's cancel. Subscribed before the job exists, so there is
  no race and no read: submit (one round trip) -> message.
- **the job's channel** (every other wait: a job submitted elsewhere or before, ``GET /jobs/<id>?wait``):
  count itself in the record's ``waiters`` field (``lua/waiters.lua``), subscribe, then read the record once
  Redis confirmed the subscription (closing the race with an end in between); the finish delivers the job
  there when the count is above 0 (it reads the field with the rest of the record: no PUBSUB NUMSUB per
  finished job) and drops the field. A wait that stops without the end counts itself out; one that crashed
  leaves its count, which costs that job's end one PUBLISH no one reads.

Either way the record is read again whenever a second passes without the end (the safety net: a message
is lost when the connection drops, and a version of before reply channels, during a rolling upgrade,
publishes a bare status on the job's channel only, or nothing at all on the reply channel), so a wait never
misses an end; it is at most ~1 s late when the message does not come.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from typing import cast

import redis
from redis.commands.core import Script

from jobs_core.config import Settings
from jobs_core.errors import JobNotFound
from jobs_core.keys import Keys
from jobs_core.model import TERMINAL_STATUSES, Job, JobStatus, Result, is_job_id
from jobs_core.pubsub_read import MessageReader
from jobs_core.serialization import loads

JSON_MEDIA_TYPE = "application/json"

#: What a job's event channel carries: its new status. Only these can end a wait.
_TERMINAL_EVENTS = frozenset(s.value.encode() for s in TERMINAL_STATUSES)
#: How often a waiter reads the record while no end arrives (the lost-message safety net), seconds.
REREAD_SECONDS = 1.0
#: Jobs a thread submitted with its reply channel and has not waited for yet (oldest forgotten first: a
#: forgotten one is waited for on its job's channel, which is always correct).
MAX_EXPECTED = 1024


def _may_be_terminal(data: object) -> bool:
    """Whether a message on a job's channel may announce its end (a waiter re-reads the record only
    then: a 'running' or 'queued' event would cost a round trip for nothing)."""
    return not isinstance(data, bytes) or data in _TERMINAL_EVENTS or data.split(b"\n", 1)[0] in _TERMINAL_EVENTS


def _delivered(data: object) -> tuple[Job, Result | None] | None:
    """The job (and result, when it succeeded) an end delivered with the notification:
    ``<status>\\n<record as a JSON array of field, value>\\n<result bytes>`` (lua/includes/emit.lua); None for
    a bare status (a cancel's, the reaper's or a cascade's on the job's channel, versions of before issue
    16) or what cannot be read (then the waiter reads the record itself)."""
    if not isinstance(data, bytes):
        return None
    parts = data.split(b"\n", 2)
    if len(parts) != 3 or parts[0] not in _TERMINAL_EVENTS:
        return None
    try:
        flat = loads(parts[1])
        job = Job.from_fields({str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)})
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    if not job.is_terminal:
        return None
    if job.status is not JobStatus.SUCCEEDED:
        return job, None
    return job, Result(data=parts[2], media_type=job.result_type or JSON_MEDIA_TYPE)


def _as_delivered(response: object) -> object:
    """The pub/sub connection's handler of RESP3 push messages (redis-py's default protocol): the message as
    it came. redis-py's own handler builds ``"Push response: " + str(response)`` for a debug line on every
    message, whatever the log level: the repr of the whole delivered record and result (~33 k instructions
    for a small result, more per byte of a large one), after the waiter's last wake-up (issue 16)."""
    return response


class _Listener:
    """One thread's pub/sub connection, its reply channel (once subscribed) and the jobs it expects there."""

    __slots__ = ("expected", "pubsub", "read", "reply", "reply_name", "stash")

    def __init__(self, pubsub: redis.client.PubSub) -> None:
        self.pubsub = pubsub
        self.reply_name: str | None = None  # ``reply`` as the str a submission stores (decoded once)
        #: ``pubsub.get_message(timeout=...)``, with one ``poll`` + one read per message (pubsub_read.py)
        self.read = MessageReader(pubsub).read
        self.reply: bytes | None = None
        #: job id -> None: submitted with this reply channel, not yet seen to end
        self.expected: OrderedDict[str, None] = OrderedDict()
        #: job id -> the delivered form of an expected job whose message came while another wait ran
        self.stash: dict[str, bytes] = {}

    def expect(self, job_id: str) -> None:
        self.expected[job_id] = None
        while len(self.expected) > MAX_EXPECTED:
            old, _ = self.expected.popitem(last=False)
            self.stash.pop(old, None)

    def forget(self, job_id: str) -> None:
        self.expected.pop(job_id, None)
        self.stash.pop(job_id, None)

    def take_reply(self, message: dict[str, object]) -> tuple[str, bytes] | None:
        """``(job id, delivered form)`` when ``message`` came on the reply channel (None otherwise); the form
        of an expected job is also kept in the stash, so a wait for another job never loses it."""
        if self.reply is None or message.get("type") != "message" or message.get("channel") != self.reply:
            return None
        data = message.get("data")
        if not isinstance(data, bytes) or b"\n" not in data:
            return None
        raw_id, body = data.split(b"\n", 1)
        job_id = raw_id.decode(errors="replace")
        if job_id in self.expected:
            self.stash[job_id] = body
        return job_id, body


class Waiting:
    """The waiter's side of :class:`jobs_core.store.JobStore` (mixed in; the store sets these up)."""

    redis: redis.Redis
    settings: Settings
    keys: Keys
    _local: threading.local
    _waiters: Script

    def get(self, job_id: str, owner: str | None = None) -> Job:  # pragma: no cover - JobStore's
        raise NotImplementedError

    def get_result(self, job_id: str, owner: str | None = None) -> Result:  # pragma: no cover - JobStore's
        raise NotImplementedError

    # ------------------------------------------------------------------ reply channel
    def reply_channel(self, timeout: float = 5.0) -> str | None:
        """This thread's reply channel, subscribed (and confirmed by Redis) before it is returned: the name
        to store as a job's ``reply_to``. The first call of a thread costs one round trip, later ones none.
        None when Redis did not confirm within ``timeout`` (then submit without: the wait still works)."""
        listener = getattr(self._local, "listener", None) or self._listener()
        if listener.reply_name is not None:
            return listener.reply_name
        channel = self.keys.reply_channel(secrets.token_hex(12))
        wanted = channel.encode()
        ok = False
        try:
            listener.pubsub.subscribe(channel)
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                message = listener.read(remaining)
                if message is not None and message["type"] == "subscribe" and message["channel"] == wanted:
                    listener.reply, listener.reply_name = wanted, channel
                    break
            ok = True
        finally:
            if not ok:
                self._drop_listener(listener)
        return channel if listener.reply is not None else None

    def expect_reply(self, job_id: str) -> None:
        """Note that ``job_id`` was submitted with this thread's reply channel (its wait then reads nothing)."""
        listener = getattr(self._local, "listener", None)
        if listener is not None and listener.reply is not None:
            listener.expect(job_id)

    def forget_reply(self, job_id: str) -> None:
        """Stop expecting ``job_id``'s end on this thread's reply channel (its message, should it come, is
        dropped): for a server thread that stopped waiting, so nothing of a job no one waits for is kept."""
        listener = getattr(self._local, "listener", None)
        if listener is not None:
            listener.forget(job_id)

    # ------------------------------------------------------------------ waits
    def wait(self, job_id: str, timeout: float, owner: str | None = None) -> Job:
        """Block until the job is terminal or ``timeout`` seconds pass; return it as it then is.

        Listens on pub/sub, never a polling loop on Redis: the thread's reply channel for a job this thread
        submitted with ``reply=True`` (no round trip at all until the end arrives), else the job's channel
        (the record is read once Redis has confirmed the subscription, so an end between the read and the
        wait cannot be missed: a SUBSCRIBE merely sent may be processed after the read). A worker's finish
        delivers the record (and result) with the notification, so the end costs no read. While nothing
        arrives the record is read again every second anyway (a message is lost when the connection drops;
        a version of before reply channels announces no end there). The pub/sub connection is kept per
        thread and reused, so a wait costs no new connection.
        """
        return self._wait(job_id, timeout, owner)[0]

    def wait_result(self, job_id: str, timeout: float, owner: str | None = None) -> tuple[Job, Result | None]:
        """:meth:`wait`, and the job's result once it succeeded (None for any other status).

        The library's submit -> result call (with ``enqueue(..., reply=True)`` on the same thread): a
        result delivered with the end notification is used as it came (no read at all); otherwise record
        and result are read in one round trip. Raises :class:`ResultExpired` for a succeeded job whose
        result is gone, like :meth:`get_result`.
        """
        job, delivered = self._wait(job_id, timeout, owner)
        if job.status is not JobStatus.SUCCEEDED:
            return job, None
        if delivered is not None:
            return job, delivered
        return job, self.get_result(job_id, owner)

    def _wait(self, job_id: str, timeout: float, owner: str | None) -> tuple[Job, Result | None]:
        """:meth:`wait`, with the result when it came with the notification (else None: not read)."""
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        listener = getattr(self._local, "listener", None)
        if listener is not None and job_id in listener.expected:
            return self._wait_reply(listener, job_id, timeout, owner)
        if timeout <= 0:
            return self.get(job_id, owner), None
        return self._wait_channel(job_id, timeout, owner)

    def _wait_reply(self, listener: _Listener, job_id: str, timeout: float,
                    owner: str | None) -> tuple[Job, Result | None]:
        """Wait on the thread's reply channel, subscribed before the job existed: nothing to read first."""
        deadline = time.monotonic() + timeout
        reread = time.monotonic() + REREAD_SECONDS
        try:
            while True:
                body = listener.stash.get(job_id)
                if body is not None:
                    delivered = _delivered(body)
                    if delivered is not None:
                        listener.forget(job_id)
                        if owner is not None and delivered[0].owner != owner:
                            raise JobNotFound(job_id)
                        return delivered
                    listener.stash.pop(job_id, None)
                    reread = 0.0  # a bare status: read the record now
                now = time.monotonic()
                if now >= reread or now >= deadline:  # the safety net, and the answer at the deadline
                    job = self.get(job_id, owner)
                    if job.is_terminal:
                        listener.forget(job_id)
                    if job.is_terminal or now >= deadline:
                        return job, None
                    reread = time.monotonic() + REREAD_SECONDS
                message = listener.read(max(0.0, min(deadline, reread) - time.monotonic()))
                if message is not None:
                    listener.take_reply(message)  # stashes it when expected (this job's or a later wait's)
        except redis.RedisError:  # the connection is in an unknown state: start afresh next time
            self._drop_listener(listener)
            raise

    def _wait_channel(self, job_id: str, timeout: float, owner: str | None) -> tuple[Job, Result | None]:
        """Wait on the job's own channel: subscribe, read once confirmed, then messages or the re-read."""
        deadline = time.monotonic() + timeout
        channel = self.keys.events(job_id)
        wanted = channel.encode()
        listener = self._listener()
        pubsub = listener.pubsub
        clean = False
        job_key = self.keys.job(job_id)
        # counted in before the subscription: an end after it is published to this channel; an end before
        # the subscription is in place is seen by the read that follows its confirmation
        counted = int(self._waiters(keys=[job_key], args=[1])) > 0
        delivered_here = False  # the finish's message came: that finish dropped the count
        try:
            pubsub.subscribe(channel)
            while True:  # messages of channels an earlier wait on this connection left are skipped
                remaining = deadline - time.monotonic()
                message = listener.read(max(0.0, min(remaining, 1.0)))
                if message is not None:
                    listener.take_reply(message)
                if message is not None and message["type"] == "subscribe" and message["channel"] == wanted:
                    break
                if remaining <= 0:
                    break
            job, result = self.get(job_id, owner), None
            reread = time.monotonic() + REREAD_SECONDS
            while not job.is_terminal:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                message = listener.read(max(0.0, min(remaining, reread - time.monotonic())))
                if message is not None and message["type"] == "message" and message["channel"] == wanted:
                    delivered = _delivered(message["data"])
                    if delivered is not None:
                        job, result = delivered
                        delivered_here = True
                        if owner is not None and job.owner != owner:
                            raise JobNotFound(job_id)
                        continue
                    if _may_be_terminal(message["data"]):
                        reread = 0.0
                elif message is not None:
                    listener.take_reply(message)
                if time.monotonic() >= reread:
                    job = self.get(job_id, owner)
                    reread = time.monotonic() + REREAD_SECONDS
            clean = True
            return job, result
        finally:
            # the finish that delivered the end dropped the count; any other way out counts this wait out
            if counted and not delivered_here:
                try:
                    self._waiters(keys=[job_key], args=[-1])
                except redis.RedisError:  # left counted: one PUBLISH no one reads when the job ends
                    pass
            if clean:
                try:
                    pubsub.unsubscribe(channel)  # type: ignore[no-untyped-call]  # confirmation skipped later
                except redis.RedisError:
                    clean = False
            if not clean:  # an error left the connection in an unknown state: start afresh next time
                self._drop_listener(listener)

    def _listener(self) -> _Listener:
        listener = getattr(self._local, "listener", None)
        if listener is None:
            pubsub = self.redis.pubsub(push_handler_func=_as_delivered)  # type: ignore[no-untyped-call]
            listener = _Listener(cast(redis.client.PubSub, pubsub))
            self._local.listener = listener
        return cast(_Listener, listener)

    def _drop_listener(self, listener: _Listener) -> None:
        """Forget the thread's connection (and so its reply channel: its expected jobs are then waited for
        on their own channels, which is always correct)."""
        if getattr(self._local, "listener", None) is listener:
            self._local.listener = None
        listener.pubsub.close()
