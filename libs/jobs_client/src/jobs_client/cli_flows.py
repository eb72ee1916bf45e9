"""``jobs schedule ...`` (and the other flow commands) of the ``jobs`` command line."""

from __future__ import annotations

import argparse
import json
from typing import Any

from jobs_client.cli_params import UsageError, parse_params
from jobs_client.client import JobsClient

EXIT_OK = 0


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _schedule_line(s: dict[str, Any]) -> str:
    state = "paused" if s["paused"] else (f"next {s['next_runs'][0]}" if s["next_runs"] else "-")
    return f"{s['name']:<24} {s['cron']:<20} {s['timezone']:<16} {s['task']:<16} {state}"


def cmd_schedule(client: JobsClient, args: argparse.Namespace) -> int:
    """``jobs schedule put|get|list|delete|pause|resume``."""
    action = args.action
    if action == "list":
        items = client.schedules()
        if args.json:
            _print({"schedules": items})
        else:
            for s in items:
                print(_schedule_line(s))
        return EXIT_OK
    if action == "delete":
        client.delete_schedule(args.name)
        print(f"schedule {args.name} deleted")
        return EXIT_OK
    if action == "put":
        sched = client.put_schedule(
            args.name, args.task, args.cron, parse_params(args.params, args.params_json), timezone=args.timezone,
            priority=args.priority, catchup=args.catchup, catchup_window=args.catchup_window, overlap=args.overlap,
            max_attempts=args.max_attempts, timeout=args.timeout, paused=True if args.paused else None,
        )
    elif action == "pause":
        sched = client.pause_schedule(args.name)
    elif action == "resume":
        sched = client.resume_schedule(args.name)
    else:
        sched = client.schedule(args.name)
    if args.json or action == "get":
        _print(sched)
    else:
        print(_schedule_line(sched))
    return EXIT_OK


def cmd_workflow(client: JobsClient, args: argparse.Namespace) -> int:
    """``jobs workflow submit FILE|- [--wait]``, ``jobs workflow status|cancel ID``."""
    import sys
    import time

    if args.action == "submit":
        try:
            text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()  # noqa: SIM115
            doc = json.loads(text)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read a workflow from {args.file}: {e}") from None
        nodes = doc.get("nodes") if isinstance(doc, dict) else doc
        if not isinstance(nodes, list):
            raise UsageError("the file must hold {\"nodes\": [...]} or a list of nodes")
        wf = client.submit_workflow(nodes)
        if args.wait:
            while wf["status"] == "running":
                time.sleep(0.5)
                wf = client.workflow(wf["id"])
    elif args.action == "cancel":
        wf = client.cancel_workflow(args.id)
    else:
        wf = client.workflow(args.id)
    if args.json:
        _print(wf)
    else:
        print(f"workflow {wf['id']} {wf['status']}")
        for node in wf["nodes"]:
            print(f"  {node['name']:<24} {node['status']:<10} {node['job_id']}")
    return {"succeeded": 0, "running": 0, "failed": 1, "cancelled": 3}[wf["status"]] if args.action != "cancel" else 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the flow commands on the ``jobs`` sub-parsers."""
    p = sub.add_parser("schedule", parents=[common], help="cron schedules: put, get, list, delete, pause, resume")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    put = actions.add_parser("put", parents=[common], help="create or replace: jobs schedule put NAME TASK CRON k=v")
    put.add_argument("name")
    put.add_argument("task")
    put.add_argument("cron", help="cron expression, quoted: '*/5 * * * *' (6 fields: seconds last)")
    put.add_argument("params", nargs="*", metavar="key=value", help="params; values are JSON when they parse")
    put.add_argument("--params", dest="params_json", metavar="JSON", help="params as one JSON object")
    put.add_argument("--timezone", help="IANA time zone (default UTC)")
    put.add_argument("--priority", type=int)
    put.add_argument("--catchup", choices=["skip", "one", "all"], help="missed ticks after an outage (default one)")
    put.add_argument("--catchup-window", type=int, help="seconds back that missed ticks count (default 3600)")
    put.add_argument("--overlap", choices=["allow", "skip"], help="skip a tick while the previous run is live")
    put.add_argument("--max-attempts", type=int)
    put.add_argument("--timeout", type=float)
    put.add_argument("--paused", action="store_true", help="create it paused")
    actions.add_parser("list", parents=[common], help="list the schedules")
    for action, text in (("get", "show a schedule"), ("delete", "delete a schedule"), ("pause", "pause a schedule"),
                         ("resume", "resume a schedule from now")):
        actions.add_parser(action, parents=[common], help=text).add_argument("name")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("workflow", parents=[common], help="workflows: submit FILE, status ID, cancel ID")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = actions.add_parser("submit", parents=[common], help="submit a DAG from a JSON file ('-' = stdin)")
    submit.add_argument("file")
    submit.add_argument("--wait", action="store_true", help="wait until every node has ended")
    for action, text in (("status", "show a workflow's nodes"), ("cancel", "cancel every unfinished node")):
        actions.add_parser(action, parents=[common], help=text).add_argument("id")
    p.set_defaults(func=cmd_workflow)
