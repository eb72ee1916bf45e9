"""Python client for the Jobs API (standard library only) and the ``jobs`` command."""

from jobs_client.client import (
    MAX_BATCH_JOBS,
    TERMINAL_STATUSES,
    JobFailed,
    JobsAPIError,
    JobsClient,
    JobsClientError,
    JobsConfigError,
    JobsConnectionError,
    WaitTimeout,
)

__all__ = [
    "MAX_BATCH_JOBS",
    "TERMINAL_STATUSES",
    "JobFailed",
    "JobsAPIError",
    "JobsClient",
    "JobsClientError",
    "JobsConfigError",
    "JobsConnectionError",
    "WaitTimeout",
]
