"""Process shutdown awareness, so long-polls end promptly when gunicorn stops a worker.

gunicorn lets requests in flight finish for the graceful timeout after SIGTERM. A long-poll may be asked
to wait 60 s; instead of holding shutdown up (or being cut off), it waits in slices and, once the process
is shutting down, answers with the job as it is now; the client simply asks again (another pod).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

#: Set when the process received a stop signal.
SHUTTING_DOWN = threading.Event()

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def install_shutdown_hook() -> None:
    """Chain a handler that sets :data:`SHUTTING_DOWN` in front of the current stop-signal handlers.

    Called from gunicorn's ``post_worker_init`` (after the worker installed its own handlers).
    """
    for sig in _SIGNALS:
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: FrameType | None, _previous: Any = previous) -> None:
            SHUTTING_DOWN.set()
            if callable(_previous):
                _previous(signum, frame)

        signal.signal(sig, handler)
