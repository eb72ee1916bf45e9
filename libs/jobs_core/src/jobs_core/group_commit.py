"""Group commit: concurrent submissions of one process share one script call and one round trip.

An API process answers many submissions at once (gunicorn threads); each used to pay its own Redis round
trip (a send, a wake-up of Redis, a receive) and its own ``ENQUEUE`` script run. :class:`GroupCommit`
sends the submissions that are waiting together, as ONE call of a script that takes many of them: the
first caller to arrive while nothing is in flight becomes the *leader* and sends its part at once (a lone
call never waits for a timer or another thread); callers arriving while that round trip is in flight queue
up, and when it returns the oldest of them leads the next round trip with everything queued by then (up to
``max_group`` parts and ``max_weight`` jobs; a part heavier than that goes alone). Followers sleep on a
lock of their own until the leader hands them their reply.

The script shares per call what the submissions have in common (the queue's control hash, one variadic
push per waiting list, one index write, one counter increment per tenant) and answers each part on its
own. Nothing is weaker than one call per submission:

- each part is admitted or refused on its own inside the script (``lua/enqueue.lua``: a cap, an
  idempotency conflict or replay, an invalid item are that part's reply, never a script error), every
  part checked before anything is written, so one part's refusal leaves the others as if it were alone;
- a caller gets its reply only after the script's reply has been read, i.e. after Redis ran it; with
  ``JOBS_ACK_REPLICAS`` the call is followed by the fence write, ``WAIT`` and ``WAITAOF`` of
  :class:`~jobs_core.connection.ReplicatedScript` in the same pipeline, and no part is answered before
  that confirmation (or answered with :class:`~jobs_core.errors.NotReplicated`);
- a connection error or timeout while the call is in flight makes it be sent again, numbered
  (:func:`jobs_core.resend.resent`; never redis-py's silent ``Retry``): the script answers a re-sent part
  as its first run did (its job ids are new per call: a record under the first one means it ran), so a
  job is never stored twice, and skips that check on the first send; when the re-sends give up, every
  part of the group gets the error, and none of them is answered as stored;
- ``NOSCRIPT`` (a restarted Redis, a promoted replica) is answered by loading the script and sending the
  call again (it did not run; same send number).

A group of ONE part that has nothing to share (a lone ``POST /jobs``: one submission of one job) may go to
a leaner script instead (``lone``: ``lua/enqueue_one.lua``, the same writes, refusals and re-send answer
with only that job's keys and no per-call tables; ~40% fewer Redis instructions, profile 19).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import redis

from jobs_core.config import Settings
from jobs_core.resend import HeldConnection, resent, script_once

#: Most parts in one round trip: bounds the script call's size and the last caller's wait.
MAX_GROUP = 64
#: Most jobs in one script call (a part heavier than this, a big batch, goes alone): bounds how long
#: one script run holds Redis.
MAX_WEIGHT = 1000

#: Builds the script's (keys, args) from the parts of a group, in order.
Build = Callable[[list[Any]], tuple[list[Any], list[Any]]]
#: Builds the lone script's (keys, args) for a group of one part, or None when that part needs the script.
BuildLone = Callable[[Any], tuple[list[Any], list[Any]] | None]


class _Call:
    """One caller's part of a script call, its outcome, and the lock it sleeps on until it is answered or
    leads."""

    __slots__ = ("answered", "error", "part", "reply", "span", "wake", "weight")

    def __init__(self, part: Any, weight: int, span: Any) -> None:
        self.part, self.weight, self.span = part, weight, span
        self.reply: Any = None
        self.error: BaseException | None = None
        self.answered = False
        self.wake = threading.Lock()
        self.wake.acquire()  # released by whoever answers this call or hands it the lead


class GroupCommit:
    """``group(part)``: the concurrent parts of this process sent as one call of ``script``.

    ``build(parts)`` makes the call's keys and arguments (the send number is appended: see
    :mod:`jobs_core.resend`); the script answers a list with one reply per
    part, in order; a caller gets its part's reply (or the error of the whole call: a connection error, a
    refused confirmation). ``settings.ack_replicas`` > 0 adds the replicated acknowledgement of
    :mod:`jobs_core.connection` to every round trip.
    """

    def __init__(self, client: redis.Redis, script: str, settings: Settings, fence_key: str, build: Build,
                 max_group: int = MAX_GROUP, max_weight: int = MAX_WEIGHT,
                 lone: tuple[str, BuildLone] | None = None) -> None:
        self.client = client
        self.script = client.register_script(script)
        self.build = build
        #: ``(script, build_lone)``: a group of one part that ``build_lone`` accepts is sent to that leaner
        #: script instead (same reply: a list of one); None = every group goes to ``script``.
        self.lone = (client.register_script(lone[0]), lone[1]) if lone is not None else None
        self.max_weight = max_weight
        self.settings = settings
        self.fence_key = fence_key
        self.max_group = max_group
        self._lock = threading.Lock()
        self._queue: deque[_Call] = deque()
        self._leading = False  # invariant: False only while the queue is empty
        #: One round trip is in flight at a time (the leader's): it keeps one connection (see HeldConnection).
        self._held = HeldConnection(client)
        #: Round trips (script calls) sent and parts answered by them (for the bench and tests).
        self.round_trips = 0
        self.calls = 0

    def __call__(self, part: Any, weight: int = 1, span: Any = None) -> Any:
        """The script's reply to this part (or the call's error), once Redis ran it (and replicas confirmed).

        ``weight``: the part's jobs (bounds a call's size). ``span`` (tracing on): the caller's span; it is
        told how many parts its round trip carried and, when another request's thread sent it, whose span
        holds the Redis call (``sent_by``, a traceparent).
        """
        call = _Call(part, weight, span)
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
            group: list[_Call] = []
            weight = 0
            for c in self._queue:
                if group and (len(group) >= self.max_group or weight + c.weight > self.max_weight):
                    break
                group.append(c)
                weight += c.weight
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
        script, call = self.script, None
        if self.lone is not None and len(group) == 1:
            call = self.lone[1](group[0].part)
            if call is not None:
                script = self.lone[0]
        keys, args = call if call is not None else self.build([c.part for c in group])
        # the send number goes last in ARGV: 1 lets the script skip its re-send check (lua/enqueue.lua)
        replies = resent(lambda n: script_once(self.client, script, keys, [*args, n], self.settings,
                                               self.fence_key, held=self._held))
        if not isinstance(replies, list) or len(replies) != len(group):
            raise redis.ResponseError(f"enqueue answered {replies!r} for {len(group)} parts")
        for c, reply in zip(group, replies, strict=True):
            c.reply, c.answered = reply, True


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
