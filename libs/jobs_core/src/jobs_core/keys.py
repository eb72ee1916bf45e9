"""The one home of every Redis key name used by Jobs API.

Every key is built here from a namespace (``JOBS_KEY_PREFIX``, default ``jobs``) and the queue name
(``JOBS_QUEUE``, default ``jobs``). Nothing else in the code base spells a key.

The waiting lists are deliberately *not* namespaced: the default priority's list is ``hotqueue:<queue>``,
the key the ``hotqueue`` library uses for a queue of that name, so a ``HotQueue(name, serializer=json)``
client can ``put`` into it, take its ``len`` and inspect it; the other priorities' lists are
``hotqueue:<queue>:p<priority>`` (KEDA counts every waiting list, see :attr:`Keys.waiting_lists`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

HOTQUEUE_PREFIX = "hotqueue"
MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 0, 9, 5  # re-exported by jobs_core.model
#: Priorities from the highest (taken first) down.
PRIORITIES_HIGH_FIRST: tuple[int, ...] = tuple(range(MAX_PRIORITY, MIN_PRIORITY - 1, -1))
#: Job events the job event stream keeps (about: trimmed with ``MAXLEN ~``, an entry of n events with
#: ``MAXLEN ~ 10000 / n``); see ``lua/includes/emit.lua``.
EVENT_STREAM_MAXLEN = 10_000
#: Entries the audit log keeps (about: ``MAXLEN ~``); see ``lua/includes/audit.lua`` and ``jobs_core.audit``.
AUDIT_STREAM_MAXLEN = 100_000
#: Consumer group of the webhook dispatchers on :attr:`Keys.webhook_outbox`.
WEBHOOK_GROUP = "dispatchers"


def namespace(prefix: str, *parts: str) -> str:
    """Join ``prefix`` and ``parts`` with ``:`` into one key name."""
    return ":".join((prefix, *parts))


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names for one namespace and queue."""

    prefix: str = "jobs"
    queue_name: str = "jobs"

    def for_queue(self, queue_name: str) -> Keys:
        """The keys of another queue in the same namespace."""
        return self if queue_name == self.queue_name else replace(self, queue_name=queue_name)

    # --- queue and delivery (no TTL: they live as long as the deployment) ---
    def waiting(self, priority: int = DEFAULT_PRIORITY) -> str:
        """List of JSON-encoded ids of jobs of one priority waiting to run; the default priority's is
        hotqueue's key for the queue name."""
        base = f"{HOTQUEUE_PREFIX}:{self.queue_name}"
        return base if priority == DEFAULT_PRIORITY else f"{base}:p{priority}"

    @property
    def waiting_lists(self) -> tuple[str, ...]:
        """Every waiting list of the queue, highest priority first (what KEDA sums as waiting work)."""
        return tuple(self.waiting(p) for p in PRIORITIES_HIGH_FIRST)

    @property
    def queue(self) -> str:
        """The default priority's waiting list (``hotqueue:<queue>``)."""
        return self.waiting(DEFAULT_PRIORITY)

    def paused(self, priority: int = DEFAULT_PRIORITY) -> str:
        """Where a paused queue's waiting list of ``priority`` is kept (renamed), out of KEDA's sight."""
        return namespace(self.prefix, self.queue_name, "paused", f"p{priority}")

    @property
    def paused_lists(self) -> tuple[str, ...]:
        """Every paused list, highest priority first."""
        return tuple(self.paused(p) for p in PRIORITIES_HIGH_FIRST)

    @property
    def control(self) -> str:
        """Hash of the queue's controls: ``paused`` ('1' while paused), ``cap`` (max running jobs), ``known``
        ('1' once the queue is in :attr:`queues`: a submission adds it there only when this is missing), and
        hints the claim reads instead of a command each: ``parked``, ``orphans`` ('1' while that set is not
        empty) and ``delayed`` (a time in ms no later than the delayed zset's earliest due time; missing when
        it is empty)."""
        return namespace(self.prefix, self.queue_name, "control")

    @property
    def wake(self) -> str:
        """List holding at most one token: pushed when work is queued, popped (BLPOP) by an idle worker."""
        return namespace(self.prefix, self.queue_name, "wake")

    @property
    def parked(self) -> str:
        """Set of task names with parked jobs (met by a worker that lacks the task; see ``parked_list``)."""
        return namespace(self.prefix, self.queue_name, "parked")

    def parked_list(self, task: str) -> str:
        """List of ids of a task's jobs that a worker lacking the task set aside; workers that offer the
        task take these first. Not counted by KEDA: jobs no live worker can run."""
        return self.parked_prefix + task

    @property
    def parked_prefix(self) -> str:
        """Prefix of parked lists, for Lua scripts."""
        return namespace(self.prefix, self.queue_name, "parked", "")

    def history(self, minute: int) -> str:
        """Hash of per-minute counters (``finished``, ``failed``, ``finished:<task>``, ``failed:<task>``, and
        the run-time histogram ``rt:<task>:<bucket>``, see ``jobs_core.histogram``) for minute ``minute``
        (ms since epoch // 60000); TTL: JOBS_HISTORY_SECONDS."""
        return self.history_prefix + str(minute)

    @property
    def history_prefix(self) -> str:
        """Prefix of history keys, for Lua scripts."""
        return namespace(self.prefix, self.queue_name, "history", "")

    @property
    def block(self) -> list[str]:
        """The queue's keys in the order Lua scripts take them (``lua/includes/queues.lua``)."""
        return [*self.waiting_lists, *self.paused_lists, self.inflight, self.leases, self.delayed, self.orphans,
                self.dead_letter, self.control, self.wake, self.parked]

    @property
    def block_args(self) -> list[str]:
        """The queue's names in the order Lua scripts take them as ARGV."""
        return [self.queue_name, self.parked_prefix, self.history_prefix]

    @property
    def claim_block(self) -> list[str]:
        """The queue's keys as FINISH_CLAIM takes them (``lua/includes/queues.lua``, ``claim_block``): the
        block without the paused lists and the in-flight list, which a worker's calls touch only when a job
        goes back to a paused queue (named from :attr:`paused_prefix` then) or never: each key of a call
        costs Redis ~1 k instructions (issue 16, profile 29)."""
        return [*self.waiting_lists, self.leases, self.delayed, self.orphans, self.dead_letter, self.control,
                self.wake, self.parked]

    @property
    def claim_block_args(self) -> list[str]:
        """The queue's names as FINISH_CLAIM takes them as ARGV: :attr:`block_args` and :attr:`paused_prefix`."""
        return [*self.block_args, self.paused_prefix]

    @property
    def paused_prefix(self) -> str:
        """Prefix of the paused lists (``paused_prefix + str(priority)`` is :meth:`paused`), for Lua scripts."""
        return namespace(self.prefix, self.queue_name, "paused", "p")

    @property
    def inflight(self) -> str:
        """List of ids taken by workers of before the leases zset recorded running jobs (BLMOVE era).

        Nothing writes it any more; the reaper still recovers entries an old worker left there during a
        rolling upgrade. Running jobs are :attr:`leases` (KEDA counts that zset).
        """
        return namespace(self.prefix, self.queue_name, "inflight")

    @property
    def leases(self) -> str:
        """Zset id -> lease deadline (ms since epoch, Redis clock) of every running job: the record of running
        work (GET /queues' ``running``, KEDA's running trigger); the reaper hands back expired ones."""
        return namespace(self.prefix, self.queue_name, "leases")

    @property
    def orphans(self) -> str:
        """Zset id -> ms first seen in ``inflight`` without a lease (a worker died between move and claim)."""
        return namespace(self.prefix, self.queue_name, "orphans")

    @property
    def delayed(self) -> str:
        """Zset id -> ms when due; due ids are moved to ``queue`` (``delay`` and retry backoff)."""
        return namespace(self.prefix, self.queue_name, "delayed")

    @property
    def dead_letter(self) -> str:
        """List of queue entries that name no job (malformed, or the record expired); kept for inspection."""
        return namespace(self.prefix, self.queue_name, "dead-letter")

    def claim_memo(self, worker_id: str) -> str:
        """String with the token and outcome of a worker's last claim, so a re-sent claim (lost reply) gets
        the same jobs instead of claiming again; TTL: the lease."""
        return namespace(self.prefix, self.queue_name, "claim", worker_id)

    @property
    def reaper_lock(self) -> str:
        """Lock so one reaper pass runs per interval across the cluster; TTL = reaper interval."""
        return namespace(self.prefix, self.queue_name, "reaper-lock")

    # --- job records (TTL: JOBS_RECORD_TTL_SECONDS once terminal, none while live) ---
    def job(self, job_id: str) -> str:
        """Hash holding one job's record."""
        return namespace(self.prefix, "job", job_id)

    @property
    def job_prefix(self) -> str:
        """Prefix of job hashes, for Lua scripts that build job keys from ids."""
        return namespace(self.prefix, "job", "")

    def result(self, job_id: str) -> str:
        """String holding a job's result; TTL: JOBS_RESULT_TTL_SECONDS."""
        return namespace(self.prefix, "result", job_id)

    @property
    def result_prefix(self) -> str:
        """Prefix of result keys, for Lua scripts."""
        return namespace(self.prefix, "result", "")

    def events(self, job_id: str) -> str:
        """Pub/sub channel told when a job changes state (long-poll waiters listen on it)."""
        return namespace(self.prefix, "events", job_id)

    def reply_channel(self, token: str) -> str:
        """A waiting thread's reply channel (``JobStore.reply_channel``): finishes of the jobs it submitted with
        ``reply_to`` publish there. Under the events prefix (the finish checks it), and ``reply:<token>`` is
        never a job id."""
        return namespace(self.prefix, "events", "reply:" + token)

    @property
    def events_prefix(self) -> str:
        """Prefix of event channels, for Lua scripts."""
        return namespace(self.prefix, "events", "")

    @property
    def event_stream(self) -> str:
        """Stream of job changes for ``GET /events`` (one entry per script call: format in
        :mod:`jobs_core.event_stream`), capped at about :data:`EVENT_STREAM_MAXLEN` events. Scripts build it
        as the events channel prefix + ``stream``
        (a channel name is never a key, and no job id is ``stream``)."""
        return self.events_prefix + "stream"

    @property
    def webhook_outbox(self) -> str:
        """Uncapped stream of webhook events (fields event, job, status, tenant, url, at), written by the
        terminal scripts in the same step as the transition, read by the dispatchers' consumer group
        (:data:`WEBHOOK_GROUP`); acknowledged entries are deleted. Scripts build it as the events channel
        prefix + ``webhooks`` (no job id is ``webhooks``)."""
        return self.events_prefix + "webhooks"

    @property
    def webhook_due(self) -> str:
        """Zset outbox entry id -> ms of its next delivery attempt, for every event being worked on (a lease
        while one is attempted, the backoff after a failure): the one retry schedule all dispatchers share."""
        return namespace(self.prefix, "webhook_due")

    @property
    def webhook_attempts(self) -> str:
        """Hash outbox entry id -> failed delivery attempts so far (the backoff's exponent)."""
        return namespace(self.prefix, "webhook_attempts")

    @property
    def webhook_secrets(self) -> str:
        """Hash tenant -> JSON ``{current, previous, previous_until}`` of webhook signing secrets."""
        return namespace(self.prefix, "webhook_secrets")

    @property
    def webhook_subscriptions(self) -> str:
        """Hash tenant -> JSON ``{url, statuses, tasks, created_at, updated_at}``: the tenant-level webhook
        subscription (at most one per tenant). Read by the terminal scripts (``lua/includes/release.lua``)
        at each terminal transition, so a change applies to the transitions after it. Scripts build it as
        the events channel prefix + ``subscriptions`` (no job id is ``subscriptions``)."""
        return self.events_prefix + "subscriptions"

    # --- indexes (no TTL; entries of expired records are pruned by the reaper and by listing) ---
    @property
    def index(self) -> str:
        """Zset of every job id by creation sequence number (newest = highest)."""
        return namespace(self.prefix, "index")

    def owner_index(self, owner: str) -> str:
        """Zset of one tenant's job ids by creation sequence number."""
        return namespace(self.prefix, "index", "owner", owner)

    @property
    def owner_index_prefix(self) -> str:
        """Prefix of tenant indexes, for Lua scripts."""
        return namespace(self.prefix, "index", "owner", "")

    @property
    def failed(self) -> str:
        """Zset of failed job ids by finish time (ms); inspection and explicit retry."""
        return namespace(self.prefix, "failed")

    @property
    def ack_fence(self) -> str:
        """String written before every ``WAITAOF`` (replicated acknowledgement): its value means nothing."""
        return namespace(self.prefix, "ack-fence")

    @property
    def seq(self) -> str:
        """Counter giving each job a creation sequence number (index score, cursor)."""
        return namespace(self.prefix, "seq")

    @property
    def pending(self) -> str:
        """Hash tenant -> number of its jobs queued or delayed (per-tenant backpressure)."""
        return namespace(self.prefix, "pending")

    def idempotency(self, owner: str, key: str) -> str:
        """String ``<job id> <body digest>`` for an Idempotency-Key; TTL: JOBS_IDEMPOTENCY_TTL_SECONDS."""
        return namespace(self.prefix, "idem", owner, key)

    # --- tasks, queues and workers ---
    @property
    def tasks(self) -> str:
        """Hash task name -> JSON task description, published by workers (no TTL; stale ones retired)."""
        return namespace(self.prefix, "tasks")

    @property
    def tasks_seen(self) -> str:
        """Hash task name -> ms a live worker last offered it (task retirement)."""
        return namespace(self.prefix, "tasks-seen")

    @property
    def queues(self) -> str:
        """Set of queue names known from workers, tasks and controls."""
        return namespace(self.prefix, "queues")

    @property
    def workers(self) -> str:
        """Zset worker id -> last heartbeat (ms); entries older than the worker TTL are dead."""
        return namespace(self.prefix, "workers")

    def worker(self, worker_id: str) -> str:
        """String with a worker's JSON status; TTL: 3 x heartbeat interval (gone = worker dead)."""
        return namespace(self.prefix, "worker", worker_id)

    # --- schedules (no TTL: they live until deleted; tick markers expire) ---
    def schedule(self, owner: str, name: str) -> str:
        """Hash of one tenant's schedule: ``spec`` JSON, ``version``, ``paused``, ``cursor`` (ms of the
        last tick accounted for, fired or not), ``last_fired`` (ms), ``last_job``, ``next_due``, ``fired``,
        ``skipped``, times."""
        return namespace(self.prefix, "schedule", owner, name)

    def schedule_names(self, owner: str) -> str:
        """Zset (all scores 0, read in lexical order) of one tenant's schedule names."""
        return namespace(self.prefix, "schedules", "owner", owner)

    @property
    def schedules_due(self) -> str:
        """Zset ``<tenant>/<name>`` -> ms when the schedule is next due; tickers read the due ones.
        Paused schedules are not in it."""
        return namespace(self.prefix, "schedules", "due")

    def tick_marker_prefix(self, owner: str, name: str) -> str:
        """Prefix of the per-tick markers of one schedule (``<prefix><tick ms>``: the job id, or
        ``skipped``), set in the same script step as the tick's job; TTL: catch-up window + 1 day."""
        return namespace(self.prefix, "tick", owner, name, "")

    # --- workflows (a job's dependency edges live in its own hash: fields deps, deps_left, dependents) ---
    def workflow(self, workflow_id: str) -> str:
        """Hash of one workflow: owner, nodes (JSON list of {name, id, depends_on}), created_at; TTL: 2 x
        JOBS_RECORD_TTL_SECONDS from submission."""
        return namespace(self.prefix, "workflow", workflow_id)

    def auth_failures(self, kind: str, who: str) -> str:
        """Counter of failed API-key authentications of one client address (``kind`` ``ip``) or key prefix
        (``key``, ``who`` a hash of it); TTL: JOBS_AUTH_FAILURE_WINDOW_SECONDS from the first failure."""
        return namespace(self.prefix, "authfail", kind, who)

    # --- web console (/ui) ---
    @property
    def ui_secret(self) -> str:
        """String: random key signing console sessions when JOBS_UI_SECRET is unset (shared by every pod;
        SET NX once, no TTL)."""
        return namespace(self.prefix, "ui", "secret")

    @property
    def audit(self) -> str:
        """Stream of audit entries, one per state-changing action (fields action, target, count, outcome,
        tenant, key id, role, via, detail; the entry id is the time), capped at about
        :data:`AUDIT_STREAM_MAXLEN` entries (no TTL). Written by Lua scripts (queue control) or by the API
        right after the action (``jobs_core.audit``)."""
        return namespace(self.prefix, "audit")

    def bulk(self, op_id: str) -> str:
        """Hash describing one console bulk action: action, filter, owner ('' = any tenant), who, planned,
        state (planned, running, done, failed), cursor (position in :meth:`bulk_ids`), done / changed /
        skipped, holder (lease token of the API process running it), claims (takeovers), the audit entry
        template; TTL 1 day."""
        return self.bulk_prefix + op_id

    @property
    def bulk_prefix(self) -> str:
        """Prefix of bulk action hashes, for Lua scripts."""
        return namespace(self.prefix, "ui", "bulk", "")

    @property
    def bulk_running(self) -> str:
        """Zset of running bulk actions: op id -> lease deadline (ms, Redis clock), renewed by every chunk;
        an expired one is taken over by another API process (no TTL; ended ones are removed)."""
        return namespace(self.prefix, "ui", "bulk-running")

    def bulk_ids(self, op_id: str) -> str:
        """List of the job ids a bulk action's preview selected (exactly those are changed); TTL 1 day."""
        return namespace(self.prefix, "ui", "bulk", op_id, "ids")
