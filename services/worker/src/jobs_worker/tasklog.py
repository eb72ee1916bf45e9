"""Logging inside a slot's child process: every line a task writes becomes a JSON log line with its job.

``logging`` calls (``ctx.log`` or any logger), ``print()`` and other writes to ``sys.stdout`` /
``sys.stderr``, and ``warnings`` all come out on the worker's stdout as JSON lines carrying the job id,
task, attempt, queue and tenant, at the worker's ``JOBS_LOG_LEVEL``.
"""

from __future__ import annotations

import io
import logging
import sys
from typing import Any, TextIO

from jobs_core.logs import JsonFormatter

PRINT_LOGGER = "task.print"


class JobFields(logging.Filter):
    """Adds the running job's context to every record (fields a record already has win)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, Any] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


class LineLogger(io.TextIOBase):
    """A text stream that logs each complete line it is given (``print()`` inside a task)."""

    def __init__(self, name: str, level: int, original: TextIO) -> None:
        super().__init__()
        self.stream_name = name
        self.level = level
        self.original = original
        self._partial = ""
        self._busy = False

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def fileno(self) -> int:
        """The real descriptor: output of subprocesses given ``sys.stdout`` goes there as is."""
        return self.original.fileno()

    def write(self, text: str) -> int:
        if self._busy:  # logging itself failed and reports to stderr: do not loop
            return self.original.write(text)
        self._partial += text
        if "\n" in self._partial:
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                self._emit(line)
        return len(text)

    def end_job(self) -> None:
        """Log a last line left without a newline, so it is attributed to the job that wrote it."""
        if self._partial:
            line, self._partial = self._partial, ""
            self._emit(line)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        self._busy = True
        try:
            logging.getLogger(PRINT_LOGGER).log(self.level, line, extra={"stream": self.stream_name})
        finally:
            self._busy = False


class TaskLogging:
    """Set up once per child: JSON lines on the real stdout, job fields, captured stdout/stderr."""

    def __init__(self, level: str) -> None:
        self.fields = JobFields()
        real_out = sys.__stdout__ or sys.stdout
        handler = logging.StreamHandler(real_out)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(self.fields)
        root = logging.getLogger()
        root.handlers = [handler]
        root.setLevel(level)
        logging.captureWarnings(True)
        self.stdout = LineLogger("stdout", logging.INFO, real_out)
        self.stderr = LineLogger("stderr", logging.WARNING, sys.__stderr__ or sys.stderr)
        sys.stdout = self.stdout
        sys.stderr = self.stderr

    def start_job(self, fields: dict[str, Any]) -> None:
        """From now on, lines carry ``fields``."""
        self.fields.fields = fields

    def end_job(self) -> None:
        """Flush what the job left unterminated; later lines carry no job."""
        self.stdout.end_job()
        self.stderr.end_job()
        self.fields.fields = {}
