"""``jobs``: the command-line client of the Jobs API.

Exit codes: 0 ok / job succeeded; 1 job failed; 2 usage error; 3 job cancelled; 4 the API refused the
request (4xx/5xx, e.g. unknown job); 5 the API cannot be reached; 6 gave up waiting (job not finished).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any, TextIO

from jobs_client import cli_audit, cli_flows, cli_webhooks
from jobs_client.cli_params import UsageError as UsageError
from jobs_client.cli_params import parse_params as parse_params
from jobs_client.client import (
    MAX_BATCH_JOBS,
    TERMINAL_STATUSES,
    JobsAPIError,
    JobsClient,
    JobsConfigError,
    JobsConnectionError,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_API_ERROR = 4
EXIT_UNREACHABLE = 5
EXIT_TIMEOUT = 6

_STATUS_EXIT = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


class ProgressBar:
    """A one-line live progress bar on a terminal; plain status lines when not a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last: tuple[Any, ...] | None = None
        self._started = time.monotonic()

    def update(self, job: dict[str, Any]) -> None:
        """Show the job's status, progress and message."""
        progress = job.get("progress")
        status = job["status"]
        message = job.get("message") or ""
        key = (status, progress, message)
        if self.tty:
            width = max(10, min(40, shutil.get_terminal_size((80, 20)).columns - 50))
            frac = min(max(float(progress or 0.0), 0.0), 1.0)
            filled = round(frac * width)
            bar = "#" * filled + "-" * (width - filled)
            pct = f"{frac * 100:5.1f}%" if progress is not None else "   -- "
            elapsed = time.monotonic() - self._started
            line = f"\r[{bar}] {pct} {status:<9} {elapsed:6.1f}s {message}"[: width + 80]
            self.stream.write(line + "\x1b[K")
            self.stream.flush()
        elif key != self._last:
            pct = f"{float(progress) * 100:.0f}%" if progress is not None else "-"
            self.stream.write(f"{job['id']} {status} {pct} {message}".rstrip() + "\n")
            self.stream.flush()
        self._last = key

    def close(self) -> None:
        """End the bar's line."""
        if self.tty and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def _summary(job: dict[str, Any]) -> str:
    text = f"{job['id']} {job['status']}"
    err = job.get("error")
    if job["status"] == "failed" and err:
        text += f": {err.get('type')}: {err.get('message')}"
    return text


#: How long ``jobs submit --wait`` lets the server hold the submission (Prefer: wait) before it shows the
#: progress bar: most short jobs then take one request.
SUBMIT_HOLD_SECONDS = 2.0


def _wait(client: JobsClient, job_id: str, timeout: float | None, quiet: bool) -> dict[str, Any]:
    bar = None if quiet else ProgressBar(sys.stderr)
    try:
        return client.wait(job_id, timeout=timeout, on_update=bar.update if bar else None)
    finally:
        if bar:
            bar.close()


def _write_result(client: JobsClient, job_id: str, output: str | None) -> None:
    data, media_type = client.result(job_id)
    if output and output != "-":
        with open(output, "wb") as fh:
            fh.write(data)
        print(f"wrote {len(data)} bytes to {output}", file=sys.stderr)
        return
    sys.stdout.buffer.write(data)
    # A JSON result is the same value with a final newline, so the shell prompt does not end up on its last
    # line; other media types (images, ...) are written byte for byte unless stdout is a terminal.
    if not data.endswith(b"\n") and (_is_json(media_type) or sys.stdout.isatty()):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


def _is_json(media_type: str) -> bool:
    essence = media_type.split(";", 1)[0].strip().lower()
    return essence == "application/json" or essence.endswith("+json")


def _finish(client: JobsClient, job: dict[str, Any], args: argparse.Namespace, show_result: bool) -> int:
    status = job["status"]
    if status not in TERMINAL_STATUSES:
        print(f"{job['id']} still {status} after waiting", file=sys.stderr)
        return EXIT_TIMEOUT
    if args.json:
        _print_json(job)
    elif status == "succeeded" and show_result:
        _write_result(client, job["id"], getattr(args, "output", None))
    else:
        print(_summary(job), file=sys.stderr if status != "succeeded" else sys.stdout)
    return _STATUS_EXIT[status]


# ---------------------------------------------------------------------- commands
def read_jobs_file(path: str) -> list[tuple[int, dict[str, Any]]]:
    """The jobs of a JSON Lines file (``-``: stdin), one ``{"task", "params"?, ...}`` object per line, with
    their line numbers; blank lines are skipped."""
    try:
        if path == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from e
    out: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except ValueError as e:
            raise UsageError(f"{path}:{number}: not valid JSON: {e}") from e
        if not isinstance(job, dict):
            raise UsageError(f"{path}:{number}: each line must be a JSON object like {{\"task\": \"echo\"}}")
        out.append((number, job))
    if not out:
        raise UsageError(f"{path}: no jobs in it")
    return out


_ITEM_PATH = re.compile(r"^/jobs/(\d+)(/.*)?$")


def _submit_file(client: JobsClient, args: argparse.Namespace) -> int:
    """``jobs submit --file``: batches of up to MAX_BATCH_JOBS jobs, each queued all or none; --priority,
    --max-attempts, --timeout, --delay and --callback-url apply to the jobs that do not say."""
    if args.task or args.params or args.params_json or args.wait:
        raise UsageError("--file takes the jobs from the file: give no TASK, params or --wait with it")
    defaults = {name: value for name, value in (("priority", args.priority), ("max_attempts", args.max_attempts),
                                                 ("timeout", args.timeout), ("delay", args.delay),
                                                 ("callback_url", args.callback_url)) if value is not None}
    numbered = [(line, {**defaults, **job}) for line, job in read_jobs_file(args.file)]
    key = args.idempotency_key or f"jobs-cli-{uuid.uuid4()}"  # retries stay the same jobs
    batches = [numbered[i : i + MAX_BATCH_JOBS] for i in range(0, len(numbered), MAX_BATCH_JOBS)]
    queued: list[dict[str, Any]] = []
    for n, batch in enumerate(batches):
        try:
            queued += client.submit_many([job for _, job in batch],
                                         idempotency_key=key if len(batches) == 1 else f"{key}/{n}")
        except JobsAPIError as e:
            if e.status != 422 or not e.errors:
                raise
            for err in e.errors:  # /jobs/<i>/rest -> the file's line
                path = str(err.get("path"))
                match = _ITEM_PATH.match(path)
                if match and int(match[1]) < len(batch):
                    where, path = f"{args.file}:{batch[int(match[1])][0]}", match[2] or "/"
                else:
                    where = args.file
                print(f"{where}: {path}: {err.get('message')}", file=sys.stderr)
            done = f"; the {len(queued)} jobs before line {batch[0][0]} were queued" if queued else ""
            print(f"jobs: nothing of lines {batch[0][0]}-{batch[-1][0]} was queued{done}", file=sys.stderr)
            return EXIT_API_ERROR
    if args.json:
        _print_json({"jobs": queued})
    else:
        print("\n".join(job["id"] for job in queued))
    print(f"queued {len(queued)} jobs", file=sys.stderr)
    return EXIT_OK


def cmd_submit(client: JobsClient, args: argparse.Namespace) -> int:
    if args.file:
        return _submit_file(client, args)
    if not args.task:
        raise UsageError("give a TASK (jobs submit TASK key=value ...) or --file jobs.jsonl")
    params = parse_params(args.params, args.params_json)
    started = time.monotonic()
    job = client.submit(
        args.task,
        params,
        max_attempts=args.max_attempts,
        timeout=args.timeout,
        delay=args.delay,
        priority=args.priority,
        idempotency_key=args.idempotency_key or f"jobs-cli-{uuid.uuid4()}",  # retries stay one job
        callback_url=args.callback_url,
        # --wait: a short job comes back finished from the submission itself (Prefer: wait); a longer one is
        # followed with the progress bar after these first seconds
        wait=min(SUBMIT_HOLD_SECONDS, args.wait_timeout or SUBMIT_HOLD_SECONDS) if args.wait else None,
    )
    job.pop("result", None)  # the inline result of a held submission: the result is written from its bytes
    if not args.wait:
        if args.json:
            _print_json(job)
        else:
            print(job["id"])
        return EXIT_OK
    print(f"submitted {job['id']}", file=sys.stderr)
    if job["status"] not in TERMINAL_STATUSES:
        left = None if args.wait_timeout is None else max(0.0, args.wait_timeout - (time.monotonic() - started))
        job = _wait(client, job["id"], left, args.quiet)
    return _finish(client, job, args, show_result=True)


def cmd_status(client: JobsClient, args: argparse.Namespace) -> int:
    _print_json(client.get(args.job_id))
    return EXIT_OK


def cmd_wait(client: JobsClient, args: argparse.Namespace) -> int:
    job = _wait(client, args.job_id, args.timeout, args.quiet)
    return _finish(client, job, args, show_result=False)


def cmd_result(client: JobsClient, args: argparse.Namespace) -> int:
    try:
        _write_result(client, args.job_id, args.output)
    except JobsAPIError as e:
        if e.status == 409 and e.job_status in _STATUS_EXIT:
            print(f"error: {e.detail}", file=sys.stderr)
            return _STATUS_EXIT[e.job_status]
        raise
    return EXIT_OK


def cmd_cancel(client: JobsClient, args: argparse.Namespace) -> int:
    job = client.cancel(args.job_id)
    if args.json:
        _print_json(job)
    else:
        word = "cancelled" if job["status"] == "cancelled" else "cancel requested (running)"
        print(f"{job['id']} {word}")
    return EXIT_OK


def cmd_retry(client: JobsClient, args: argparse.Namespace) -> int:
    job = client.retry(args.job_id)
    if args.json:
        _print_json(job)
    else:
        print(f"{job['id']} {job['status']}")
    return EXIT_OK


def cmd_list(client: JobsClient, args: argparse.Namespace) -> int:
    if args.all:
        jobs = list(client.iter_jobs(status=args.status, task=args.task, page_size=args.limit or 100))
        next_cursor = None
    else:
        page = client.list(status=args.status, task=args.task, limit=args.limit, cursor=args.cursor)
        jobs, next_cursor = page["jobs"], page.get("next_cursor")
    if args.json:
        _print_json({"jobs": jobs, "next_cursor": next_cursor})
        return EXIT_OK
    print(f"{'ID':<36}  {'STATUS':<9}  {'TASK':<16}  {'PROGRESS':>8}  CREATED")
    for job in jobs:
        progress = job.get("progress")
        pct = f"{progress * 100:.0f}%" if progress is not None else "-"
        print(f"{job['id']:<36}  {job['status']:<9}  {job['task'][:16]:<16}  {pct:>8}  {job['created_at']}")
    if next_cursor:
        print(f"(more: jobs list --cursor {next_cursor})", file=sys.stderr)
    return EXIT_OK


def cmd_tasks(client: JobsClient, args: argparse.Namespace) -> int:
    tasks = client.tasks()
    if args.json:
        _print_json({"tasks": tasks})
        return EXIT_OK
    for info in tasks:
        props = sorted((info.get("params_schema") or {}).get("properties", {}))
        print(f"{info['name']:<16} {info.get('description', '')}")
        if info.get("queue"):
            offered = "" if info.get("live", True) else " (no live worker offers it: its jobs wait)"
            print(f"{'':<16} queue: {info['queue']}{offered}")
        if props:
            print(f"{'':<16} params: {', '.join(props)}")
    return EXIT_OK


def _queue_row(q: dict[str, Any]) -> str:
    oldest = q.get("oldest_waiting_age_seconds")
    age = f"{oldest:.0f}s" if oldest is not None else "-"
    cap = q["cap"] if q.get("cap") is not None else "-"
    return (f"{q['name']:<20}  {q['waiting']:>7}  {q['running']:>7}  {q['delayed']:>7}  "
            f"{'yes' if q['paused'] else 'no':<6}  {cap!s:>5}  {len(q['workers']):>7}  {age:>6}")


_QUEUE_HEADER = f"{'QUEUE':<20}  {'WAITING':>7}  {'RUNNING':>7}  {'DELAYED':>7}  {'PAUSED':<6}  {'CAP':>5}  " \
                f"{'WORKERS':>7}  {'OLDEST':>6}"


def cmd_queues(client: JobsClient, args: argparse.Namespace) -> int:
    queues = client.queues()
    if args.json:
        _print_json({"queues": queues})
        return EXIT_OK
    print(_QUEUE_HEADER)
    for q in queues:
        print(_queue_row(q))
    return EXIT_OK


def parse_cap(raw: str | None) -> int | None:
    """The ``jobs queue cap`` value: a positive integer, or ``none`` to remove the cap."""
    if raw is None:
        raise UsageError("give the cap: jobs queue cap NAME N (or none)")
    if raw.lower() == "none":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"the cap must be a positive integer or 'none', got {raw!r}")
    return int(raw)


def cmd_queue(client: JobsClient, args: argparse.Namespace) -> int:
    if args.action != "cap" and args.value is not None:
        raise UsageError(f"jobs queue {args.action} takes only the queue name")
    if args.action == "pause":
        queue = client.pause_queue(args.name)
    elif args.action == "resume":
        queue = client.resume_queue(args.name)
    elif args.action == "cap":
        queue = client.set_queue_cap(args.name, parse_cap(args.value))
    else:
        queue = client.queue(args.name)
    if args.json or args.action == "show":
        _print_json(queue)
    else:
        print(_QUEUE_HEADER)
        print(_queue_row(queue))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jobs``."""
    def common_options(suppress: bool) -> argparse.ArgumentParser:
        # The options work before and after the command; after it they must not reset what was given
        # before it to the default (argparse's sub-parser defaults would), hence SUPPRESS there.
        def default(value: object) -> object:
            return argparse.SUPPRESS if suppress else value

        p = argparse.ArgumentParser(add_help=False)
        p.add_argument("--url", default=default(None),
                       help="API base URL (default $JOBS_URL or http://127.0.0.1:8000)")
        p.add_argument("--api-key", default=default(None), help="API key (default $JOBS_API_KEY)")
        p.add_argument("--json", action="store_true", default=default(False), help="print JSON instead of text")
        return p

    common = common_options(suppress=True)
    parser = argparse.ArgumentParser(
        prog="jobs",
        description="Submit and follow Jobs API jobs.",
        parents=[common_options(suppress=False)],
        epilog="exit codes: 0 ok/succeeded, 1 failed, 2 usage, 3 cancelled, 4 API error, 5 unreachable, "
        "6 still running after --timeout",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", parents=[common],
                       help="submit a job: jobs submit TASK key=value ...; or many: jobs submit --file jobs.jsonl")
    p.add_argument("task", nargs="?")
    p.add_argument("params", nargs="*", metavar="key=value", help="params; values are JSON when they parse")
    p.add_argument("--params", dest="params_json", metavar="JSON", help="params as one JSON object")
    p.add_argument("--max-attempts", type=int)
    p.add_argument("--timeout", type=float, help="seconds per attempt")
    p.add_argument("--delay", type=float, help="seconds before the job may start")
    p.add_argument("--priority", type=int, metavar="0-9", help="higher runs first (default 5)")
    p.add_argument("--callback-url", metavar="URL", help="POST a signed webhook there each time the job ends")
    p.add_argument("--file", metavar="JOBS.jsonl",
                   help="submit every job of this JSON Lines file ('-': stdin), 1000 per request, each request "
                   "all or none; prints the ids")
    p.add_argument("--idempotency-key")
    p.add_argument("--wait", action="store_true", help="wait with a progress bar, then print the result")
    p.add_argument("--wait-timeout", type=float, default=None, help="give up waiting after this many seconds")
    p.add_argument("-o", "--output", help="with --wait: write the result to this file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", parents=[common], help="show a job")
    p.add_argument("job_id")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("wait", parents=[common], help="wait for a job with a live progress bar")
    p.add_argument("job_id")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 6)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("result", parents=[common], help="print (or save) a succeeded job's result")
    p.add_argument("job_id")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_result)

    p = sub.add_parser("cancel", parents=[common], help="cancel a job")
    p.add_argument("job_id")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("retry", parents=[common], help="queue a failed or cancelled job again")
    p.add_argument("job_id")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("list", parents=[common], help="list jobs, newest first")
    p.add_argument("--status", choices=sorted(["waiting", "queued", "running", *TERMINAL_STATUSES]))
    p.add_argument("--task")
    p.add_argument("--limit", type=int)
    p.add_argument("--cursor")
    p.add_argument("--all", action="store_true", help="follow next_cursor to the end")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("tasks", parents=[common], help="list the tasks workers offer")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("queues", parents=[common], help="list the queues: waiting, running, paused, cap, workers")
    p.set_defaults(func=cmd_queues)

    p = sub.add_parser("queue", parents=[common],
                       help="show, pause or resume a queue, or set its cap: jobs queue pause NAME, "
                       "jobs queue cap NAME 4|none (changes need an admin key)")
    p.add_argument("action", choices=["show", "pause", "resume", "cap"])
    p.add_argument("name")
    p.add_argument("value", nargs="?", help="for cap: the most jobs running at once, or none")
    p.set_defaults(func=cmd_queue)
    cli_flows.add_commands(sub, common)
    cli_webhooks.add_commands(sub, common)
    cli_audit.add_commands(sub, common)
    return parser


def _auth_hint(error: JobsAPIError, client: JobsClient) -> str:
    """What to do about a 401: which key to set, or that the one given was refused."""
    if error.status != 401:
        return ""
    if client.api_key:
        return " (the key from --api-key or JOBS_API_KEY was refused: check it against the server's JOBS_API_KEYS)"
    return " (set JOBS_API_KEY=<key> or pass --api-key <key>)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jobs``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        client = JobsClient(args.url or os.environ.get("JOBS_URL"), args.api_key)
    except JobsConfigError as e:
        print(f"jobs: configuration error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.func(client, args)
        return code
    except UsageError as e:
        print(f"jobs: {e}", file=sys.stderr)
        return EXIT_USAGE
    except JobsAPIError as e:
        print(f"jobs: {e}{_auth_hint(e, client)}", file=sys.stderr)
        for err in e.errors:
            print(f"  {err.get('path')}: {err.get('message')}", file=sys.stderr)
        return EXIT_API_ERROR
    except JobsConnectionError as e:
        print(f"jobs: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
