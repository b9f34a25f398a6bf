"""The per-request session commits before the response, whatever spelling the app uses: a lost write is never a 200."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("asyncpg")
httpx = pytest.importorskip("httpx")

from tests.integrations.conftest import app_env
from tests.servers import AppProcess, free_port

pytestmark = pytest.mark.real

SPELLINGS = [
    "alias",
    "plain",
    "get-db-yield",
    "get-db-yield-plain",
    "get-db-return",
    "named",
    "named-options",
    "get-session",
]


def dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture(scope="module")
def table(real_database: tuple[str, str, int]) -> Iterator[str]:
    """A users table of this module's own, names unique with a constraint checked at COMMIT."""
    import asyncpg

    name = f"ib_sessions_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(dsn(real_database[0]))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(
        run(f"CREATE TABLE {name} (id int PRIMARY KEY, name text, UNIQUE (name) DEFERRABLE INITIALLY DEFERRED)")
    )
    yield name
    asyncio.run(run(f"DROP TABLE IF EXISTS {name}"))


@pytest.fixture(scope="module")
def server(real_database: tuple[str, str, int], table: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One real uvicorn serving every spelling; its port."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        "tests/integrations/apps",
        "sessions_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = app_env(DATABASE_URL=real_database[0], TABLE=table)
    process = AppProcess(args, env=env, workdir=Path(tmp_path_factory.mktemp("sessions")), port=port)
    try:
        process.wait_listening()
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.close()


@pytest.fixture
async def users(database_url: str, table: str) -> AsyncIterator[dict[int, str]]:
    """alice (1) and bob (2), freshly written before each test."""
    import asyncpg

    conn = await asyncpg.connect(dsn(database_url))
    try:
        await conn.execute(f"DELETE FROM {table}")
        await conn.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'alice'), (2, 'bob')")
        yield {1: "alice", 2: "bob"}
    finally:
        await conn.close()


async def name_of(database_url: str, table: str, user: int) -> str:
    import asyncpg

    conn = await asyncpg.connect(dsn(database_url))
    try:
        found: str = await conn.fetchval(f"SELECT name FROM {table} WHERE id = $1", user)
        return found
    finally:
        await conn.close()


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_a_unique_violation_at_commit_is_the_response_not_a_200(
    server: int, database_url: str, table: str, users: dict[int, str], spelling: str
) -> None:
    """Renaming alice to bob fails at COMMIT: the client gets the app's 409 and alice keeps her name."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server}", timeout=10) as client:
        answer = await client.patch(f"/{spelling}/users/1", params={"name": "bob"})

    assert 409 == answer.status_code, answer.text
    assert "alice" == await name_of(database_url, table, 1)


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_a_write_that_commits_answers_200_and_is_there_when_the_client_reads_it(
    server: int, database_url: str, table: str, users: dict[int, str], spelling: str
) -> None:
    """Renaming alice to carol answers 200 and, by the time the client has it, the row says carol."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server}", timeout=10) as client:
        answer = await client.patch(f"/{spelling}/users/1", params={"name": "carol"})
        seen = await name_of(database_url, table, 1)

    assert 200 == answer.status_code, answer.text
    assert "carol" == seen
