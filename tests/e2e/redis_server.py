"""The e2e stacks' Redis: the shared test ``RedisServer`` with AOF ``appendfsync always``.

Every write acknowledged to the API is on disk, so a SIGKILL loses nothing (see README "Guarantees").
"""

from __future__ import annotations

from pathlib import Path

from support.redis_server import RedisServer as _RedisServer
from support.redis_server import free_port

__all__ = ["RedisServer", "free_port"]


class RedisServer(_RedisServer):
    """``redis-server`` on a free loopback port with its data in ``data_dir``, AOF fsync always."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(data_dir, appendfsync="always", port=port)
