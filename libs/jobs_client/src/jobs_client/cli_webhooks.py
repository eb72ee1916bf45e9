"""``jobs webhook ...`` of the ``jobs`` command line: the tenant subscription, the signing secret, and a
job's delivery attempts."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from jobs_client.client import JobsClient

EXIT_OK = 0
STATUSES = ("succeeded", "failed", "cancelled")


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2))


def cmd_subscription(client: JobsClient, args: argparse.Namespace) -> int:
    """``jobs webhook subscription set URL [--status S]... [--task T]... | get | delete``."""
    if args.sub_action == "set":
        _print(client.put_webhook_subscription(args.hook_url, statuses=args.statuses, tasks=args.tasks))
    elif args.sub_action == "delete":
        client.delete_webhook_subscription()
        print("webhook subscription deleted")
    else:
        sub = client.webhook_subscription()
        if sub is None:
            print("no webhook subscription", file=sys.stderr)
            return 4  # as the API's 404 would (EXIT_API_ERROR)
        _print(sub)
    return EXIT_OK


def cmd_rotate_secret(client: JobsClient, args: argparse.Namespace) -> int:
    """``jobs webhook rotate-secret``: prints the new secret alone (for ``SECRET=$(...)``)."""
    out = client.rotate_webhook_secret()
    if args.json:
        _print(out)
    else:
        print(out["secret"])
        print(f"the previous secret keeps signing for {out['previous_valid_for_seconds']:g} s", file=sys.stderr)
    return EXIT_OK


def cmd_deliveries(client: JobsClient, args: argparse.Namespace) -> int:
    """``jobs webhook deliveries JOB_ID``: the job's delivery attempts, oldest first."""
    hook = client.webhook_deliveries(args.job_id)
    if args.json:
        _print(hook)
        return EXIT_OK
    if not hook["attempts"]:
        where = f"callback {hook['callback_url']}" if hook.get("callback_url") else "no callback_url"
        print(f"no delivery attempt yet ({where})")
        return EXIT_OK
    for a in hook["attempts"]:
        code = a["status_code"] if a["status_code"] is not None else "-"
        print(f"{a['at']}  {a['destination']:<12} {code!s:<4} {a['event']}  {a['error'] or ''}".rstrip())
    print(f"delivered to: {', '.join(hook['delivered_to']) or 'none yet'}")
    return EXIT_OK


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``jobs webhook`` on the ``jobs`` sub-parsers."""
    p = sub.add_parser("webhook", parents=[common],
                       help="webhooks: subscription set|get|delete, rotate-secret, deliveries JOB_ID")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = actions.add_parser("subscription", parents=[common],
                           help="the tenant's subscription: every job end it takes is POSTed to its URL")
    subs = s.add_subparsers(dest="sub_action", required=True, metavar="ACTION")
    put = subs.add_parser("set", parents=[common], help="create or replace (operator key)")
    put.add_argument("hook_url", metavar="URL")  # not "url": the common --url names the API
    put.add_argument("--status", dest="statuses", action="append", choices=STATUSES,
                     help="only jobs ending so (repeat for several; default every terminal status)")
    put.add_argument("--task", dest="tasks", action="append", help="only jobs of this task (repeat; default all)")
    subs.add_parser("get", parents=[common], help="show it (exit 4 when there is none)")
    subs.add_parser("delete", parents=[common], help="remove it (operator key)")
    s.set_defaults(func=cmd_subscription)
    r = actions.add_parser("rotate-secret", parents=[common],
                           help="make a new signing secret and print it (admin key); the old one signs for a while")
    r.set_defaults(func=cmd_rotate_secret)
    d = actions.add_parser("deliveries", parents=[common], help="a job's webhook delivery attempts")
    d.add_argument("job_id")
    d.set_defaults(func=cmd_deliveries)
