"""Servers the tests own: a fault-injecting TCP proxy, redis-server and pgbouncer processes.

Everything listens on 127.0.0.1 and free ports; every process is stopped by its fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest

from infraboot.testing import TcpProxy as ProductProxy

Mode = Literal["forward", "refuse", "blackhole", "reset", "delay"]


async def eventually(read: Callable[[], Awaitable[int]], expected: int, timeout: float = 10.0) -> int:
    """Poll *read* until it returns *expected* or *timeout* passes; the last value read."""
    end = time.monotonic() + timeout
    value = await read()
    while value != expected and time.monotonic() < end:
        await asyncio.sleep(0.05)
        value = await read()
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    msg = f"nothing listens on 127.0.0.1:{port} after {timeout}s"
    raise TimeoutError(msg)


class TcpProxy(ProductProxy):
    """The product's :class:`infraboot.testing.TcpProxy`, started at once, with the suite's older spelling."""

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        super().__init__((target_host, target_port))
        self.start()

    @property
    def url_host(self) -> str:
        return f"{self.host}:{self.port}"

    def set_mode(self, mode: Mode, *, delay: float = 0.0, drop_existing: bool = True) -> None:
        if mode == "delay":
            self.delay(delay, drop_existing=drop_existing)
        elif mode == "refuse":
            self.refuse(drop_existing=drop_existing)
        elif mode == "blackhole":
            self.blackhole(drop_existing=drop_existing)
        elif mode == "reset":
            self.reset(drop_existing=drop_existing)
        else:
            self.restore(drop_existing=drop_existing)


class RedisServer:
    """A redis-server process owned by one test: start, kill, restart on the same port."""

    def __init__(self, workdir: Path, *, password: str | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; run bash scripts/services.sh")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def url(self, password: str | None = None) -> str:
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"


class PgBouncer:
    """A pgbouncer in transaction pooling in front of the local PostgreSQL."""

    def __init__(self, workdir: Path, pg_host: str, pg_port: int) -> None:
        self.port = free_port()
        self.workdir = workdir
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not os.path.exists(binary):
            pytest.fail("pgbouncer is not installed; run bash scripts/services.sh")
        workdir.chmod(0o777)
        (workdir / "users.txt").write_text('"postgres" ""\n')
        (workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"test = host={pg_host} port={pg_port} dbname=test\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir =\nauth_type = trust\nauth_file = {workdir / 'users.txt'}\n"
            "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 200\n"
            f"logfile = {workdir / 'pgbouncer.log'}\npidfile = {workdir / 'pgbouncer.pid'}\n"
            "ignore_startup_parameters = extra_float_digits,application_name\n"
        )
        for f in workdir.iterdir():
            f.chmod(0o666)
        args = [binary, str(workdir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            args.insert(1, "-u")
            args.insert(2, "postgres")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.proc.kill()
            log = (workdir / "pgbouncer.log").read_text() if (workdir / "pgbouncer.log").exists() else ""
            pytest.fail(f"pgbouncer did not start: {log[-2000:]}")

    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/test"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@contextlib.contextmanager
def proxy_to(port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(port)
    try:
        yield proxy
    finally:
        proxy.close()


class AppProcess:
    """A server or worker process (uvicorn, gunicorn, a script) that a test starts, signals and reads.

    Output (stdout and stderr together) goes to a file the test can read at any time.
    """

    def __init__(self, args: list[str], *, env: dict[str, str], workdir: Path, port: int | None = None) -> None:
        self.port = port
        self.log_path = workdir / f"app-{free_port()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).parent.parent
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30.0, *, count: int = 1) -> None:
        """Block until *text* was printed *count* times (once per worker process, say)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.output.count(text) >= count:
                return
            if self.proc.poll() is not None:
                msg = f"process exited ({self.proc.returncode}) before printing {text!r}:\n{self.output[-3000:]}"
                raise AssertionError(msg)
            time.sleep(0.02)
        msg = f"no {text!r} after {timeout}s:\n{self.output[-3000:]}"
        raise TimeoutError(msg)

    def wait_listening(self, timeout: float = 30.0) -> None:
        assert self.port is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"process exited ({self.proc.returncode}) before listening:\n{self.output[-3000:]}"
                raise AssertionError(msg)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.02)
        msg = f"nothing listens on {self.port} after {timeout}s:\n{self.output[-3000:]}"
        raise TimeoutError(msg)

    def wait(self, timeout: float) -> int:
        """The exit status, waiting at most *timeout* seconds (then the process is killed and the test fails)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            msg = f"did not exit within {timeout}s:\n{self.output[-3000:]}"
            raise AssertionError(msg) from None

    def terminate(self) -> None:
        self.proc.terminate()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
