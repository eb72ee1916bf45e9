"""``jobs audit`` of the ``jobs`` command line: the audit log (``GET /audit``) as a table or JSON, in pages."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from jobs_client.client import JobsClient

EXIT_OK = 0
OUTCOMES = ("ok", "denied", "failed", "started", "limited")
_AGO = re.compile(r"^([0-9]{1,6})([smhd])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
#: The filter options, in the order ``(more: ...)`` repeats them.
FILTERS = ("action", "target", "outcome", "via", "tenant", "since", "until")


def parse_when(raw: str | None, now: datetime | None = None) -> str | None:
    """A ``--since``/``--until`` value as RFC 3339: given as such, or ``30m`` / ``2h`` / ``7d`` ago (UTC).
    Anything else is passed on as written, so the API's 400 names the bad option."""
    if raw is None:
        return None
    found = _AGO.match(raw.strip())
    if not found:
        return raw
    at = (now or datetime.now(UTC)) - timedelta(**{_UNIT[found.group(2)]: int(found.group(1))})
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _who(e: dict[str, Any]) -> str:
    if e.get("tenant"):
        return f"{e['tenant']}/{e.get('role') or '-'}"
    return "system" if e.get("via") == "system" else "unknown"


def print_table(entries: list[dict[str, Any]]) -> None:
    """One line per entry: time, who (tenant/role), key id, via, action, target, count, outcome, detail."""
    print(f"{'AT':<24}  {'WHO':<20}  {'KEY':<12}  {'VIA':<7}  {'ACTION':<26}  {'TARGET':<44}  {'COUNT':>5}  "
          f"{'OUTCOME':<7}  DETAIL")
    for e in entries:
        print(f"{e['at']:<24}  {_who(e)[:20]:<20}  {e.get('key') or '-':<12}  {e['via']:<7}  {e['action'][:26]:<26}  "
              f"{e['target'][:44]:<44}  {e['count']:>5}  {e['outcome']:<7}  {e.get('detail') or ''}".rstrip())


def cmd_audit(client: JobsClient, args: argparse.Namespace) -> int:
    """``jobs audit [--action A] [--target T] [--outcome O] [--via V] [--tenant T] [--since S] [--until U]
    [--limit N] [--before CURSOR | --all]``: newest first; the next page's command is printed on stderr."""
    filters = {name: getattr(args, name) for name in FILTERS}
    filters["since"], filters["until"] = parse_when(args.since), parse_when(args.until)
    if args.all:
        entries = list(client.iter_audit(page_size=args.limit or 100, before=args.before, **filters))
        cursor = None
    else:
        page = client.audit(limit=args.limit, before=args.before, **filters)
        entries, cursor = page["entries"], page.get("next")
    if args.json:
        print(json.dumps({"entries": entries, "next": cursor}, indent=2))
    else:
        print_table(entries)
    if cursor:  # the times as sent: relative ones must not move between two pages
        again = " ".join(f"--{name} {value}" for name, value in filters.items() if value)
        limit = f" --limit {args.limit}" if args.limit else ""
        print(f"(more: jobs audit {again}{limit} --before {cursor})".replace("  ", " "), file=sys.stderr)
    return EXIT_OK


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``jobs audit`` on the ``jobs`` sub-parsers."""
    p = sub.add_parser("audit", parents=[common],
                       help="the audit log, newest first: who changed what, when (filters as GET /audit)")
    p.add_argument("--action", help="exact, or a prefix ending in '.': queue. = every queue action")
    p.add_argument("--target", help="exactly this target, e.g. job:<id>, queue:<name>, schedule:<name>")
    p.add_argument("--outcome", choices=OUTCOMES)
    p.add_argument("--via", choices=("api", "console"))
    p.add_argument("--tenant", help="admin key: this tenant only (others always see their own tenant)")
    p.add_argument("--since", metavar="TIME", help="RFC 3339 (2026-01-01T00:00:00Z), or 30m / 2h / 7d ago")
    p.add_argument("--until", metavar="TIME", help="RFC 3339, or 30m / 2h / 7d ago")
    p.add_argument("--limit", type=int, help="entries per page (1-500, default 100)")
    p.add_argument("--before", metavar="CURSOR", help="the older page: the cursor a previous page printed")
    p.add_argument("--all", action="store_true", help="follow the cursors to the end of the log")
    p.set_defaults(func=cmd_audit)
