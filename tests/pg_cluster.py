"""A PostgreSQL primary and a streaming replica that one test owns: initdb, pg_basebackup -R, promote, stop.

Both servers listen on 127.0.0.1, on free ports, with their data under a directory of
their own and trust authentication. PostgreSQL refuses to run as root: under root every
command runs as the ``postgres`` user (``runuser``), as tests/servers.py does for pgbouncer.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import free_port

__all__ = ["PgCluster", "PgServer", "pg_binaries", "pg_cluster_or_skip"]

_TOOLS = ("initdb", "pg_ctl", "pg_basebackup")


def pg_binaries() -> Path | None:
    """The directory holding initdb, pg_ctl and pg_basebackup (the newest PostgreSQL found), or ``None``."""
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if all(os.access(os.path.join(directory, t), os.X_OK) for t in _TOOLS):
            return Path(directory)
    found = [shutil.which(t) for t in _TOOLS]
    if all(found):
        return Path(str(found[0])).resolve().parent
    return None


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


class PgServer:
    """One PostgreSQL server (primary or standby) in its own data directory."""

    def __init__(self, bin_dir: Path, data: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.data = data
        self.port = port
        self.running = False

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> str:
        cmd = _as_postgres([str(self.bin_dir / tool), *args])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.data.parent / f"{self.data.name}.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            msg = f"{tool} {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}\n{tail}"
            raise RuntimeError(msg)
        return done.stdout

    def start(self) -> None:
        log = self.data.parent / f"{self.data.name}.log"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(log), "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
            self.running = False

    def promote(self) -> None:
        """Make this standby a primary; returns once it accepts writes (``pg_ctl promote -w``)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


class PgCluster:
    """A primary started from ``initdb`` and a replica made from it with ``pg_basebackup -R``."""

    def __init__(self, bin_dir: Path) -> None:
        # Not under pytest's tmp dir: the postgres user cannot enter root's 0700 directories.
        self.workdir = Path(tempfile.mkdtemp(prefix="infraboot-pgcluster-"))
        self.workdir.chmod(0o777)
        self.bin_dir = bin_dir
        self.primary = PgServer(bin_dir, self.workdir / "primary", free_port())
        self.replica = PgServer(bin_dir, self.workdir / "replica", free_port())

    def start(self) -> None:
        p = self.primary
        p._run("initdb", "-D", str(p.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        conf = (
            f"port = {p.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.workdir}'\n"
            "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n"
            "synchronous_commit = off\nfull_page_writes = off\nshared_buffers = 16MB\nmax_connections = 40\n"
        )
        _append(p.data / "postgresql.conf", conf)
        _append(p.data / "pg_hba.conf", "host replication all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 trust\n")
        p.start()
        r = self.replica
        r._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(p.port), "-U", "postgres",
            "-D", str(r.data), "-R", "-X", "stream", "-c", "fast", "--no-sync",
        )  # fmt: skip
        _append(r.data / "postgresql.conf", f"port = {r.port}\n")
        r.start()

    def url(self, *hosts: PgServer, database: str = "postgres", query: str = "", password: str | None = None) -> str:
        """A ``postgresql+asyncpg://`` URL listing *hosts* (both servers, primary first, by default)."""
        listed = ",".join(h.host for h in (hosts or (self.primary, self.replica)))
        auth = "postgres" if password is None else f"postgres:{password}"
        return f"postgresql+asyncpg://{auth}@{listed}/{database}" + (f"?{query}" if query else "")

    def close(self) -> None:
        for server in (self.replica, self.primary):
            with contextlib.suppress(Exception):
                server.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)


def _append(path: Path, text: str) -> None:
    # Written as root, read by postgres: keep the file readable (and owned) as initdb left it.
    with path.open("a") as f:
        f.write(text)


@contextlib.contextmanager
def pg_cluster_or_skip() -> Iterator[PgCluster]:
    """A started primary + replica, stopped and removed after; skipped (failed under ``CI=true``) without the tools."""
    bin_dir = pg_binaries()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        reason = "PostgreSQL server tools (initdb, pg_ctl, pg_basebackup) are not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; under CI=true the replica topology is required")
        pytest.skip(reason)
    cluster = PgCluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
