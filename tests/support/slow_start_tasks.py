"""A task module that a worker's slot children import slowly (``SLOW_START_SECONDS``, default 0), as a busy
machine or a heavy import (an ML library) makes them: what a worker's health file must outlast."""

from __future__ import annotations

import multiprocessing
import os
import time

if multiprocessing.current_process().name.startswith("jobs-worker-slot-"):  # a child, not the worker itself
    time.sleep(float(os.environ.get("SLOW_START_SECONDS", "0")))
