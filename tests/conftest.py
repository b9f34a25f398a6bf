from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import infraboot

from .servers import PgBouncer, RedisServer, TcpProxy


class Journal:
    """Records what simulated components did, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.running: set[str] = set()
        self.max_parallel = 0

    def add(self, what: str, name: str) -> None:
        self.events.append((what, name))

    def index(self, what: str, name: str) -> int:
        return self.events.index((what, name))

    def names(self, what: str) -> list[str]:
        return [n for w, n in self.events if w == what]


@pytest.fixture
def journal() -> Journal:
    return Journal()


def sim(
    journal: Journal,
    name: str,
    *,
    requires: tuple[str, ...] = (),
    required: bool = True,
    delay: float = 0.0,
    fail: BaseException | None = None,
    fail_times: int = 0,
    stop_error: BaseException | None = None,
    gate: asyncio.Event | None = None,
    **settings: Any,
) -> infraboot.Component[str]:
    """A simulated component that records start and stop in *journal*."""
    calls = {"n": 0}

    @infraboot.component(name, requires=requires, required=required, **settings)
    async def comp(ctx: infraboot.Context) -> AsyncIterator[str]:
        calls["n"] += 1
        journal.add("start", name)
        journal.running.add(name)
        journal.max_parallel = max(journal.max_parallel, len(journal.running))
        try:
            if gate is not None:
                await gate.wait()
            if delay:
                await asyncio.sleep(delay)
            if fail is not None and (fail_times == 0 or calls["n"] <= fail_times):
                raise fail
        finally:
            journal.running.discard(name)
        for dep in requires:
            assert ctx.get(dep) == f"<{dep}>"
        journal.add("ready", name)
        yield f"<{name}>"
        journal.add("stop", name)
        if stop_error is not None:
            raise stop_error

    comp.calls = calls  # type: ignore[attr-defined]
    return comp


@pytest.fixture
def no_backoff() -> Iterator[None]:
    with infraboot.set_testing(attempts=3):
        yield


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait the one backoff function hands out during the test, whichever loop asked."""
    from infraboot._cache import _core
    from infraboot._components import _once, _redis_topology
    from infraboot._engine import _backoff, _retry

    seen: list[float] = []
    real = _backoff.backoff

    def recording(failures: int, *, initial: float, maximum: float, forever: bool = False) -> float:
        seen.append(real(failures, initial=initial, maximum=maximum, forever=forever))
        return seen[-1]

    for module in (_backoff, _retry, _core, _once, _redis_topology):
        monkeypatch.setattr(module, "backoff", recording)
    return seen


# -- real servers -----------------------------------------------------------------------------

DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
DEFAULT_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _reachable(url: str, default_port: int) -> tuple[str, int] | None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return host, port
    except OSError:
        return None


def _server_or_skip(env: str, default: str, port: int, what: str) -> tuple[str, str, int]:
    url = os.environ.get(env, default)
    where = _reachable(url, port)
    if where is None:
        reason = f"no {what} reachable at {url} (set {env})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; under CI=true the real servers are required")
        pytest.skip(reason)
    return url, where[0], where[1]


@pytest.fixture(scope="session")
def real_redis() -> tuple[str, str, int]:
    """(url, host, port) of the real Redis; skipped when unreachable, failed under CI=true."""
    return _server_or_skip("INFRABOOT_TEST_REDIS_URL", DEFAULT_REDIS, 6379, "Redis")


@pytest.fixture(scope="session")
def real_database() -> tuple[str, str, int]:
    """(url, host, port) of the real PostgreSQL; skipped when unreachable, failed under CI=true."""
    return _server_or_skip("INFRABOOT_TEST_DATABASE_URL", DEFAULT_DATABASE, 5432, "PostgreSQL")


@pytest.fixture
def redis_url(real_redis: tuple[str, str, int]) -> str:
    return real_redis[0]


@pytest.fixture
def database_url(real_database: tuple[str, str, int]) -> str:
    return real_database[0]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server process this test owns (kill it, restart it)."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_proxy(real_redis: tuple[str, str, int]) -> Iterator[TcpProxy]:
    proxy = TcpProxy(real_redis[2], target_host=real_redis[1])
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def database_proxy(real_database: tuple[str, str, int]) -> Iterator[TcpProxy]:
    proxy = TcpProxy(real_database[2], target_host=real_database[1])
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture(scope="session")
def pgbouncer(real_database: tuple[str, str, int]) -> Iterator[PgBouncer]:
    # Not under pytest's tmp dir: pgbouncer drops root to the postgres user, who cannot enter it.
    workdir = Path(tempfile.mkdtemp(prefix="infraboot-pgbouncer-"))
    bouncer = PgBouncer(workdir, real_database[1], real_database[2])
    try:
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No REDIS_* / DATABASE_* variables from the outside leak into the test."""
    for key in list(os.environ):
        if key.startswith(("REDIS_", "DATABASE_")):
            monkeypatch.delenv(key)
    return monkeypatch
