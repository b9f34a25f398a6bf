"""Fixtures for the framework tests: real server processes on free loopback ports."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import AppProcess, free_port

Serve = Callable[..., AppProcess]


def app_env(**settings: str) -> dict[str, str]:
    """The test's environment without any REDIS_/DATABASE_/INFRABOOT_ variable, plus *settings*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start a process; every one is killed at the end of the test if still running."""
    started: list[AppProcess] = []

    def start(args: list[str], *, port: int | None = None, **settings: str) -> AppProcess:
        process = AppProcess(args, env=app_env(**settings), workdir=tmp_path, port=port)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


APPS = "tests/integrations/apps"  # the suite's own apps; uvicorn_args() serves examples/ by default


def uvicorn_args(app: str, port: int, *extra: str, app_dir: str = "examples", host: str = "127.0.0.1") -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        app_dir,
        app,
        "--host",
        host,
        "--port",
        str(port),
        *extra,
    ]


def gunicorn_args(app: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--chdir",
        "examples",
        "-k",
        "uvicorn.workers.UvicornWorker",
        "-b",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "10",
        *extra,
        app,
    ]


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def app_name() -> str:
    """A unique PostgreSQL application_name, to count this test's connections in pg_stat_activity."""
    return f"infraboot-test-{uuid.uuid4().hex[:10]}"


async def pg_connections(database_url: str, application_name: str) -> int:
    import asyncpg

    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
        )
        return count
    finally:
        await conn.close()


async def redis_clients(port: int) -> int:
    import redis.asyncio as aioredis

    probe = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        info = await probe.info("clients")
        return int(info["connected_clients"]) - 1
    finally:
        await probe.aclose()
