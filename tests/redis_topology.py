"""Redis Sentinel and Redis Cluster processes that one test owns, on free loopback ports.

:class:`SentinelGroup`: a master, a replica and three ``redis-sentinel`` processes
(``down-after-milliseconds`` 1000, so a dead master is replaced in a few seconds).
:class:`RedisClusterNodes`: six ``redis-server --cluster-enabled yes`` joined by
``redis-cli --cluster create --cluster-replicas 1``. Both are skipped with the reason when
a binary is missing, and fail instead under ``CI=true``. Every process is killed on close.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from .servers import free_port, wait_for_port

__all__ = ["RedisClusterNodes", "SentinelGroup", "poll", "redis_binaries"]

T = TypeVar("T")
SERVICE = "mymaster"


def redis_binaries(*names: str) -> dict[str, str]:
    """The paths of *names* (``redis-server``, ...); skip the test when one is missing, fail under CI=true."""
    found = {name: shutil.which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        reason = f"{', '.join(missing)} not installed (apt-get install redis-server redis-sentinel redis-tools)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; under CI=true the topology tests must run")
        pytest.skip(reason)
    return {name: str(path) for name, path in found.items()}


def poll(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T:
    """The first truthy result of *probe* within *timeout* seconds (exceptions count as "not yet")."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except Exception as exc:
            last = exc
        else:
            if result:
                return result
        time.sleep(interval)
    msg = f"{what}: not within {timeout}s (last error: {last!r})"
    raise AssertionError(msg)


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    msg = "no free port pair for a cluster node"
    raise RuntimeError(msg)


class _Process:
    def __init__(self, args: list[str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self._out = log.open("wb")
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port)
        except TimeoutError:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        self._out.close()


class SentinelGroup:
    """A master, a replica and three sentinels monitoring them as ``mymaster``.

    *password* protects the data nodes (the sentinels know it: ``auth-pass``);
    *sentinel_password* protects the sentinels themselves (``requirepass`` + ``sentinel-pass``).
    """

    def __init__(self, workdir: Path, *, password: str | None = None, sentinel_password: str | None = None) -> None:
        bins = redis_binaries("redis-server", "redis-sentinel")
        self.workdir = workdir
        self.password = password
        self.sentinel_password = sentinel_password
        self.nodes: dict[int, _Process] = {}
        self.sentinels: list[_Process] = []
        try:
            master = self._data_node(bins["redis-server"], None)
            self._data_node(bins["redis-server"], master)
            for _ in range(3):
                self._sentinel(bins["redis-sentinel"], master)
            self.wait_ready()
        except BaseException:
            self.close()
            raise

    def _data_node(self, binary: str, master: int | None) -> int:
        port = free_port()
        data = self.workdir / f"node-{port}"
        data.mkdir()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(data)]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if master is not None:
            args += ["--replicaof", "127.0.0.1", str(master)]
        self.nodes[port] = _Process(args, port, self.workdir / f"node-{port}.log")
        return port

    def _sentinel(self, binary: str, master: int) -> None:
        port = free_port()
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {self.workdir}",
            f"sentinel monitor {SERVICE} 127.0.0.1 {master} 2",
            f"sentinel down-after-milliseconds {SERVICE} 1000",
            f"sentinel failover-timeout {SERVICE} 5000",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {SERVICE} {self.password}")
        if self.sentinel_password:
            lines += [f"requirepass {self.sentinel_password}", f"sentinel sentinel-pass {self.sentinel_password}"]
        conf = self.workdir / f"sentinel-{port}.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.sentinels.append(_Process([binary, str(conf)], port, self.workdir / f"sentinel-{port}.log"))

    # -- control ------------------------------------------------------------------------------

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=self.password, socket_timeout=2)

    def sentinel(self, index: int = 0) -> redis.Redis:
        port = self.sentinels[index].port
        return redis.Redis(host="127.0.0.1", port=port, password=self.sentinel_password, socket_timeout=2)

    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{auth}{hosts}/{SERVICE}/0"

    def master_port(self, index: int = 0) -> int | None:
        with self.sentinel(index) as s:
            found = s.sentinel_get_master_addr_by_name(SERVICE)
        return int(found[1]) if found else None

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Every sentinel sees the master, the replica (in sync) and the two other sentinels."""

        def ready() -> bool:
            for index in range(len(self.sentinels)):
                with self.sentinel(index) as s:
                    state: dict[str, Any] = s.sentinel_master(SERVICE)
                if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                    return False
            master = self.master_port()
            replicas = [p for p in self.nodes if p != master]
            with self.node(replicas[0]) as r:
                return r.info("replication").get("master_link_status") == "up"

        poll("sentinels see the master, the replica and each other", ready, timeout, interval=0.1)

    def failover(self) -> None:
        """``SENTINEL FAILOVER mymaster``: promote the replica, no agreement needed."""
        with self.sentinel() as s:
            s.sentinel_failover(SERVICE)

    def converged(self, old: int, timeout: float = 30.0) -> int:
        """The new master once every sentinel names it and *old* answers as its replica.

        Until then a failover is still under way: sentinels may name different masters for a
        moment, and *old* takes writes until it is converted (Redis replicates asynchronously, so
        what it took then is lost when it resyncs). Where a write lands is only defined after this.
        """

        def done() -> int | None:
            masters = {self.master_port(i) for i in range(len(self.sentinels))}
            if len(masters) != 1:
                return None
            (master,) = masters
            if master is None or master == old:
                return None
            with self.node(old) as n:
                info = n.info("replication")
            ok = info.get("role") == "slave" and int(info.get("master_port", 0)) == master
            return master if ok and info.get("master_link_status") == "up" else None

        return poll("the failover is complete", done, timeout, interval=0.1)

    def kill(self, port: int) -> None:
        self.nodes.pop(port).kill()

    def close(self) -> None:
        for proc in [*self.sentinels, *self.nodes.values()]:
            with contextlib.suppress(Exception):
                proc.kill()
        self.sentinels.clear()
        self.nodes.clear()


class RedisClusterNodes:
    """Six cluster-enabled redis-server processes: three masters, each with a replica."""

    def __init__(self, workdir: Path, *, password: str | None = None, node_timeout_ms: int = 1000) -> None:
        bins = redis_binaries("redis-server", "redis-cli")
        self.workdir = workdir
        self.password = password
        self.nodes: dict[int, _Process] = {}
        try:
            for _ in range(6):
                self._start(bins["redis-server"], node_timeout_ms)
            args = [bins["redis-cli"], "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.nodes]]
            args += ["--cluster-replicas", "1", "--cluster-yes"]
            if password:
                args += ["-a", password, "--no-auth-warning"]
            done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
            if done.returncode != 0:
                msg = f"redis-cli --cluster create failed: {done.stdout[-2000:]} {done.stderr[-2000:]}"
                raise RuntimeError(msg)
            self.wait_ok()
        except BaseException:
            self.close()
            raise

    def _start(self, binary: str, node_timeout_ms: int) -> None:
        port = _cluster_port()
        data = self.workdir / f"cluster-{port}"
        data.mkdir()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(data), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(node_timeout_ms)]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        self.nodes[port] = _Process(args, port, self.workdir / f"cluster-{port}.log")

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=self.password, socket_timeout=2)

    def url(self, count: int = 3) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis+cluster://{auth}{','.join(f'127.0.0.1:{p}' for p in list(self.nodes)[:count])}"

    def role(self, port: int) -> str:
        with self.node(port) as n:
            role = n.execute_command("ROLE")
        first = role[0]
        return first.decode() if isinstance(first, bytes) else str(first)

    def masters(self) -> list[int]:
        return [p for p in self.nodes if self.role(p) == "master"]

    def replica_of(self, master: int) -> int:
        for port in self.nodes:
            with self.node(port) as n:
                info = n.info("replication")
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == master:
                return port
        msg = f"no replica of {master}"
        raise LookupError(msg)

    def promote(self, replica: int, timeout: float = 30.0) -> None:
        """``CLUSTER FAILOVER`` on *replica* until it is a master.

        A manual failover needs the replica's link to its master up and in sync; one asked before that (or
        whose master was slow to pause its clients) times out inside Redis after 5 s without a word, so the
        replica is asked again until *timeout*."""

        def link_up() -> bool:
            with self.node(replica) as n:
                return n.info("replication").get("master_link_status") == "up"

        poll("the replica's link to its master is up", link_up, timeout, interval=0.1)
        deadline = time.monotonic() + timeout
        while True:
            with self.node(replica) as n:
                n.execute_command("CLUSTER FAILOVER")
            try:
                poll("the replica takes over", lambda: self.role(replica) == "master", 6.0)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
            else:
                return

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Every live node says ``cluster_state:ok`` and knows every slot."""

        def ok() -> bool:
            for port in self.nodes:
                with self.node(port) as n:
                    info = n.cluster("INFO")
                if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != 16384:
                    return False
            return True

        poll("the cluster reports cluster_state:ok", ok, timeout, interval=0.1)

    def kill(self, port: int) -> None:
        self.nodes.pop(port).kill()

    def close(self) -> None:
        for proc in self.nodes.values():
            with contextlib.suppress(Exception):
                proc.kill()
        self.nodes.clear()
