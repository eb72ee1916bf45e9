"""Group commit: concurrent calls of one script in one process share one pipelined round trip.

An API process answers many submissions at once (gunicorn threads); each used to pay its own Redis round
trip (a send, a wake-up of Redis, a receive) for one ``ENQUEUE`` script call. :class:`GroupCommit` sends
the calls that are waiting together: the first caller to arrive while nothing is in flight becomes the
*leader* and sends its call at once (a lone call never waits for a timer or another thread); callers
arriving while that round trip is in flight queue up, and when it returns the oldest of them leads the
next round trip with everything queued by then (up to ``max_group`` calls). Followers sleep on a lock of
their own until the leader hands them their reply.

Nothing is weaker than one call per round trip:

- every call is its own ``EVALSHA`` (its own atomic script run, its own reply), so an error of one call
  (a cap, an idempotency conflict, a script error) is that call's alone;
- a caller gets its reply only after the pipeline's reply has been read, i.e. after Redis ran its script;
  with ``JOBS_ACK_REPLICAS`` the pipeline ends with the fence write, ``WAIT`` and ``WAITAOF`` of
  :class:`~jobs_core.connection.ReplicatedScript`, once for the whole group, and no call of the group is
  answered before that confirmation (or answered with :class:`~jobs_core.errors.NotReplicated`);
- a connection error while the pipeline is in flight makes redis-py re-send the whole pipeline (the
  client's retry policy); the scripts sent are safe to re-send with the same arguments (they answer as
  the first run did), so a job is never stored twice; when the retries give up, every call of the group
  gets the error, and none of them is answered as stored;
- ``NOSCRIPT`` (a restarted Redis, a promoted replica) is answered by loading the script and re-sending
  only the calls that met it (they did not run).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import redis
from redis.exceptions import NoScriptError

from jobs_core.config import Settings
from jobs_core.connection import NOSCRIPT_RERUNS, check_confirmation

#: Most calls in one round trip: bounds the pipeline's size and the last call's wait.
MAX_GROUP = 64


class _Call:
    """One caller's script call, its outcome, and the lock it sleeps on until it is answered or leads."""

    __slots__ = ("answered", "args", "error", "keys", "reply", "span", "wake")

    def __init__(self, keys: list[Any], args: list[Any], span: Any) -> None:
        self.keys, self.args, self.span = keys, args, span
        self.reply: Any = None
        self.error: BaseException | None = None
        self.answered = False
        self.wake = threading.Lock()
        self.wake.acquire()  # released by whoever answers this call or hands it the lead


class GroupCommit:
    """``script(keys=..., args=...)`` with the concurrent calls of this process sent in one pipeline.

    Called like a registered :class:`redis.commands.core.Script`; returns that call's reply or raises its
    error. ``settings.ack_replicas`` > 0 adds the replicated acknowledgement of
    :mod:`jobs_core.connection` to every round trip.
    """

    def __init__(self, client: redis.Redis, script: str, settings: Settings, fence_key: str,
                 max_group: int = MAX_GROUP) -> None:
        self.client = client
        self.script = client.register_script(script)
        self.replicas = settings.ack_replicas
        self.timeout_ms = max(1, round(settings.ack_timeout_seconds * 1000))
        self.fence_key = fence_key
        self.max_group = max_group
        self._lock = threading.Lock()
        self._queue: deque[_Call] = deque()
        self._leading = False  # invariant: False only while the queue is empty
        #: Round trips sent and calls answered by them (for the bench and tests: calls / round trips).
        self.round_trips = 0
        self.calls = 0

    def __call__(self, keys: list[Any], args: list[Any], span: Any = None) -> Any:
        """The script's reply to this call (or its error), once Redis ran it (and replicas confirmed it).

        ``span`` (tracing on): the caller's span; it is told how many calls its round trip carried and, when
        another request's thread sent it, whose span holds the Redis call (``sent_by``, a traceparent).
        """
        call = _Call(keys, args, span)
        with self._lock:
            self._queue.append(call)
            lead = not self._leading
            self._leading = True
        if not lead:
            call.wake.acquire()  # a leader answered us, or handed us the lead for the next round trip
        if not call.answered:
            self._lead()
        if call.error is not None:
            raise call.error
        return call.reply

    def _lead(self) -> None:
        """Send the queued calls (this caller's is the oldest) in one round trip, answer them, pass the lead."""
        with self._lock:
            group = [self._queue[i] for i in range(min(len(self._queue), self.max_group))]
        if any(c.span is not None for c in group):
            _annotate(group)
        try:
            self._commit(group)
        except BaseException as e:  # every caller of the group gets it: none is left asleep
            for c in group:
                if not c.answered:
                    c.error, c.answered = e, True
        finally:
            with self._lock:
                for _ in group:
                    self._queue.popleft()
                self.round_trips += 1
                self.calls += len(group)
                nxt = self._queue[0] if self._queue else None
                self._leading = nxt is not None
            for c in group[1:]:
                c.wake.release()
            if nxt is not None:
                nxt.wake.release()  # not answered: it leads the next round trip

    def _commit(self, group: list[_Call]) -> None:
        if len(group) == 1 and not self.replicas:  # alone: a plain call costs less CPU than a pipeline
            c = group[0]
            try:
                c.reply = self.script(keys=c.keys, args=c.args)  # loads the script itself on NOSCRIPT
            except redis.ResponseError as e:
                c.error = e  # the script's own error; a connection error is the whole group's (raised)
            c.answered = True
            return
        pending = group
        for rerun in range(NOSCRIPT_RERUNS + 1):
            pipe = self.client.pipeline(transaction=False)
            for c in pending:
                pipe.evalsha(self.script.sha, len(c.keys), *c.keys, *c.args)
            if self.replicas:
                pipe.set(self.fence_key, b"1")
                pipe.execute_command("WAIT", self.replicas, self.timeout_ms)  # type: ignore[no-untyped-call]
                pipe.execute_command("WAITAOF", 1, self.replicas, self.timeout_ms)  # type: ignore[no-untyped-call]
            replies = pipe.execute(raise_on_error=False)
            confirm_error: Exception | None = None
            if self.replicas:
                try:
                    check_confirmation(replies[-1], self.replicas)
                except Exception as e:  # answered to each call that ran
                    confirm_error = e
            missing = []
            for c, reply in zip(pending, replies, strict=False):
                if isinstance(reply, NoScriptError) and rerun < NOSCRIPT_RERUNS:
                    missing.append(c)  # did not run: sent again once the script is loaded
                    continue
                if isinstance(reply, Exception):
                    c.error = reply
                elif confirm_error is not None:
                    c.error = confirm_error
                else:
                    c.reply = reply
                c.answered = True
            if not missing:
                return
            self.client.script_load(self.script.script)
            pending = missing


def _annotate(group: list[_Call]) -> None:
    """Tracing on: each caller's span learns the size of its round trip and which span sent it."""
    from jobs_core import tracing

    leader = group[0].span
    sent_by = tracing.span_traceparent(leader) if leader is not None else ""
    for n, c in enumerate(group):
        if c.span is None:
            continue
        c.span.set_attribute("jobs.group_commit.calls", len(group))
        if n:  # the Redis span of this round trip is in the leader's trace, not in this one
            c.span.add_event("group commit", {"jobs.group_commit.sent_by": sent_by})
