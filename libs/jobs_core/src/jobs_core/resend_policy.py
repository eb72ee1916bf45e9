"""How often and how soon a call whose reply was lost is sent again (numbered re-sends, answered from the
caller's memo). A module of plain numbers, so that a slot child, which must not import redis-py, follows
the same policy as :mod:`jobs_core.resend`."""

from __future__ import annotations

#: re-sends after the first send
RESENDS = 3
#: exponential backoff before re-send ``n``: ``min(BACKOFF_CAP, BACKOFF_BASE * 2 ** n)`` seconds
BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0
