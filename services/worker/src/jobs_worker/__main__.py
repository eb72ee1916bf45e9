"""``python -m jobs_worker``."""

import sys

from jobs_worker.cli import main

sys.exit(main())
