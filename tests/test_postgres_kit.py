"""The PostgreSQL test kit: a throwaway database per test run, a rolled-back session per test."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import ARRAY, Column, Integer, MetaData, Table, Text, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

import infraboot
import infraboot.fastapi as ib
import infraboot.testing
from infraboot.testing._postgres import _create, _run, _server_or_skip, _unavailable

pytestmark = pytest.mark.real

metadata = MetaData(schema="app")
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("body", Text, nullable=False, unique=True),
    Column("tags", ARRAY(Text), nullable=False, server_default="{}"),
)


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE SCHEMA app"))
        await connection.run_sync(metadata.create_all)


@pytest.fixture(scope="session")
def infraboot_postgres_server(real_database: tuple[str, str, int]) -> str:
    """This suite's PostgreSQL (``real_database``: skipped when unreachable, failed under CI=true)."""
    return real_database[0]


@pytest.fixture(scope="session")
def infraboot_schema() -> Any:
    return create_schema


async def count_notes(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(notes))).scalar_one()


def throwaway_databases(server: str) -> set[str]:
    """The names of the server's ``infraboot_test_*`` databases, asked from outside any test loop."""

    async def ask() -> set[str]:
        engine = create_async_engine(make_url(server).set(database="postgres"), poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text("SELECT datname FROM pg_database WHERE datname LIKE 'infraboot\\_test\\_%'")
                )
                return {row[0] for row in rows}
        finally:
            await engine.dispose()

    return _run(ask())


# -- the throwaway database ---------------------------------------------------------------------


async def test_the_database_exists_for_the_session_with_its_schema(infraboot_postgres_url: str) -> None:
    """The URL names a fresh database of this process, and the schema callback has made app.notes in it."""
    engine = create_async_engine(infraboot_postgres_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            name = (await connection.execute(text("SELECT current_database()"))).scalar_one()
            table = (await connection.execute(text("SELECT to_regclass('app.notes')::text"))).scalar_one()
    finally:
        await engine.dispose()
    assert (name, "app.notes") == (make_url(infraboot_postgres_url).database, table)
    assert name.startswith(f"infraboot_test_{os.getpid()}_main_")


def test_the_url_repr_hides_the_password() -> None:
    """pytest prints a fixture value's repr: the password is not in it, but the text keeps it."""
    from infraboot.testing._postgres import _SecretURL

    url = _SecretURL("postgresql+asyncpg://app:s3cret-canary@127.0.0.1:5432/infraboot_test_1_main_ab")
    assert ("s3cret-canary" in url, "s3cret-canary" in repr(url)) == (True, False)


def test_no_server_configured_skips_naming_the_variables() -> None:
    """Without INFRABOOT_TEST_DATABASE_URL or DATABASE_URL the fixtures skip, and say what to set."""
    with pytest.raises(pytest.skip.Exception, match="set INFRABOOT_TEST_DATABASE_URL or DATABASE_URL"):
        _server_or_skip(None)


def test_an_unreachable_server_skips_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that refuses connections skips the tests; under CI=true it fails them instead."""
    server = _server_or_skip("postgresql://postgres:s3cret-canary@127.0.0.1:1/test")
    with pytest.raises(ConnectionRefusedError) as refused:
        _run(_create(server, "never_made"))
    error = refused.value
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no PostgreSQL reachable at .*127\.0\.0\.1:1") as skipped:
        _unavailable(server, error, "create")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="under CI=true"):
        _unavailable(server, error, "create")
    assert "s3cret-canary" not in str(skipped.value)


# -- the transactional session ------------------------------------------------------------------


@pytest.mark.parametrize("run", [1, 2])
async def test_writes_through_get_session_are_seen_in_the_test_and_gone_in_the_next(
    run: int, infraboot_db_session: AsyncSession
) -> None:
    """get_session() hands out the test's session: its write is visible here, and each run starts empty."""
    before = await count_notes(infraboot_db_session)
    async with infraboot.get_session() as session:
        await session.execute(insert(notes).values(body="the same unique body"))
    assert (0, 1, True) == (before, await count_notes(infraboot_db_session), session is infraboot_db_session)


async def test_the_component_runs_on_the_throwaway_database(
    infraboot_db_session: AsyncSession, infraboot_postgres_url: str
) -> None:
    """get_engine() is the database component's engine, on the throwaway database."""
    assert make_url(infraboot_postgres_url).database == infraboot.get_engine().url.database


async def test_a_commit_in_application_code_does_not_escape_the_rollback(infraboot_db_session: AsyncSession) -> None:
    """commit() only releases a savepoint: another connection sees none of the rows."""
    async with infraboot.get_session() as session:
        await session.execute(insert(notes).values(body="first"))
        await session.commit()
        await session.execute(insert(notes).values(body="second"))
    async with infraboot.get_engine().connect() as outsider:
        seen_outside = (await outsider.execute(select(func.count()).select_from(notes))).scalar_one()
    assert (2, 0) == (await count_notes(infraboot_db_session), seen_outside)


async def test_a_failing_block_rolls_back_only_since_the_last_commit(infraboot_db_session: AsyncSession) -> None:
    """A get_session() block that raises undoes its own write; what the test committed before stays."""
    await infraboot_db_session.execute(insert(notes).values(body="arranged"))
    await infraboot_db_session.commit()
    with pytest.raises(RuntimeError):
        async with infraboot.get_session() as session:
            await session.execute(insert(notes).values(body="doomed"))
            raise RuntimeError
    bodies = (await infraboot_db_session.execute(select(notes.c.body))).scalars().all()
    assert ["arranged"] == bodies


# Another dependency than DatabaseSession (its options differ), on the same component: the same session.
# FastAPI < 0.118 has no scope= and ends it before the response already.
BEFORE_RESPONSE: dict[str, Any] = {"scope": "function"} if "scope" in inspect.signature(Depends).parameters else {}
OtherSession = Annotated[AsyncSession, Depends(ib.database_session_for("database", autoflush=False), **BEFORE_RESPONSE)]


def make_app() -> FastAPI:
    app = FastAPI(lifespan=ib.lifespan(["database"]))

    @app.post("/notes")
    async def add(body: str, session: ib.DatabaseSession) -> int:
        result = await session.execute(insert(notes).values(body=body, tags=["api"]).returning(notes.c.id))
        return int(result.scalar_one())

    @app.get("/notes/count")
    async def count(session: OtherSession) -> int:
        return await count_notes(session)

    return app


async def test_a_fastapi_endpoint_writes_through_the_test_session(infraboot_db_session: AsyncSession) -> None:
    """DatabaseSession and database_session_for() hand the endpoint the test's session."""
    app = make_app()
    async with (
        infraboot.testing.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client,
    ):
        created = await client.post("/notes", params={"body": "from the api"})
        counted = await client.get("/notes/count")
    tags = (await infraboot_db_session.execute(select(notes.c.tags))).scalar_one()
    assert (200, 200, 1, ["api"]) == (created.status_code, counted.status_code, counted.json(), tags)


def make_app_with_a_job(runs: list[int]) -> FastAPI:
    """An app whose lifespan runs a job every few milliseconds, writing through get_session() like the requests."""

    @contextlib.asynccontextmanager
    async def with_job(app: FastAPI) -> AsyncIterator[None]:
        async def job() -> None:
            while True:
                async with infraboot.get_session() as session:
                    await session.execute(insert(notes).values(body=f"job {len(runs)}", tags=["job"]))
                runs.append(1)
                await asyncio.sleep(0.002)

        task = asyncio.create_task(job())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(lifespan=ib.lifespan(["database"], inner=with_job))

    @app.post("/notes")
    async def add(body: str, session: ib.DatabaseSession) -> int:
        result = await session.execute(insert(notes).values(body=body, tags=["api"]).returning(notes.c.id))
        await asyncio.sleep(0)  # let the job try to cut in mid-request
        return int(result.scalar_one())

    return app


async def test_a_background_job_and_requests_take_turns_on_the_test_session(
    infraboot_db_session: AsyncSession,
) -> None:
    """A job and 30 concurrent requests writing through get_session(): no "concurrent operations" error."""
    runs: list[int] = []
    app = make_app_with_a_job(runs)
    async with (
        infraboot.testing.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client,
    ):
        answers = await asyncio.gather(*(client.post("/notes", params={"body": f"request {i}"}) for i in range(30)))
        while len(runs) < 5:  # the job got turns too (bounded by the test timeout)
            await asyncio.sleep(0.01)
        async with infraboot.get_session() as session:  # the test reads in its turn as well
            kinds = dict((await session.execute(text("SELECT tags[1], count(*) FROM app.notes GROUP BY 1"))).all())
    assert [200] * 30 == [a.status_code for a in answers]
    assert 30 == kinds["api"]
    assert kinds["job"] >= 5


def create_app(database_url: str) -> FastAPI:
    """An app factory that configures the database itself, as apps do with their Settings."""
    infraboot.configure(database={"url": database_url, "session_options": {"autoflush": False}})
    return make_app()


async def test_an_app_factory_configuring_the_database_after_the_fixture_is_served_by_it(
    infraboot_db_session: AsyncSession, infraboot_postgres_url: str, database_url: str
) -> None:
    """configure(database=...) after infraboot_db_session: accepted, the throwaway database stays, options apply."""
    app = create_app(database_url)  # the app's own URL: the fixture's throwaway database wins
    async with (
        infraboot.testing.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client,
    ):
        created = await client.post("/notes", params={"body": "from a factory"})
        served_from = infraboot.get_engine().url.database
    assert 200 == created.status_code
    assert 1 == await count_notes(infraboot_db_session)
    assert make_url(infraboot_postgres_url).database == served_from
    assert infraboot_db_session.autoflush is False


async def test_a_wrong_setting_after_the_fixture_still_fails_naming_it(infraboot_db_session: AsyncSession) -> None:
    """The settings an app factory gives after the fixture are still checked: the field is named."""
    with pytest.raises(infraboot.ConfigError, match="pool_size"):
        infraboot.configure(database={"url": "postgresql+asyncpg://h/db", "pool_size": -1})


# -- whole test runs, in subprocesses -----------------------------------------------------------

PROJECT_INI = """\
[pytest]
pythonpath = .
infraboot_schema = schema:create
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

SCHEMA = """\
from sqlalchemy import text

async def create(engine):
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE seen (worker text)"))
"""

TEST_FILE = """\
import asyncio, os, pathlib, time
from sqlalchemy import text
import infraboot

async def test_records_its_database_and_sees_the_other_one(infraboot_db_session):
    worker, other = os.environ["PYTEST_XDIST_WORKER"], os.environ["OTHER_WORKER"]
    await infraboot_db_session.execute(text("INSERT INTO seen VALUES (:w)"), {"w": worker})  # the ini's schema
    pathlib.Path(f"{worker}.txt").write_text(infraboot.get_engine().url.database)
    deadline = time.monotonic() + 20
    while not pathlib.Path(f"{other}.txt").exists():
        assert time.monotonic() < deadline, "the other run never started"
        await asyncio.sleep(0.05)
    theirs = pathlib.Path(f"{other}.txt").read_text()
    query = text("SELECT count(*) FROM pg_database WHERE datname = :name")
    assert 1 == (await infraboot_db_session.execute(query, {"name": theirs})).scalar_one()
"""

WORKERS = ("gw0", "gw1")

STRICT_TEST = """\
import pytest
from sqlalchemy import text
import infraboot

async def notes():
    async with infraboot.get_session() as session:
        return (await session.execute(text("SELECT count(*) FROM seen"))).scalar_one()

@pytest.mark.asyncio
async def test_writes_in_strict_mode(infraboot_db_session):
    async with infraboot.get_session() as session:
        await session.execute(text("INSERT INTO seen VALUES ('strict')"))
    assert 1 == await notes()

@pytest.mark.asyncio
async def test_and_they_are_gone(infraboot_db_session):
    assert 0 == await notes()
"""


def start_run(
    project: Path, server: str, worker: str, other: str, *, tests: str = "test_project.py", mode: str = "auto"
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "INFRABOOT_", "PYTEST_"))}
    env.update(INFRABOOT_TEST_DATABASE_URL=server, PYTEST_XDIST_WORKER=worker, OTHER_WORKER=other)
    # Without hypothesis's plugin, which takes a second to import and is no part of this.
    plugins = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest"]
    options = ["-o", f"asyncio_mode={mode}", "-o", "asyncio_default_fixture_loop_scope=function"]
    args = [sys.executable, "-m", "pytest", "-q", *plugins, *options, tests]
    return subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, infraboot_postgres_server: str) -> dict[str, tuple[int, str]]:
    """Three pytest processes at once: a tiny project as xdist workers gw0 and gw1, and the documented example.

    Each gives its exit code and output; a worker's output is its database's name when it passed.
    """
    from .test_docs import ROOT, write_titled_files

    project = tmp_path_factory.mktemp("project")
    (project / "pytest.ini").write_text(PROJECT_INI)
    (project / "schema.py").write_text(SCHEMA)
    (project / "test_project.py").write_text(TEST_FILE)
    (project / "test_strict.py").write_text(STRICT_TEST)
    example = tmp_path_factory.mktemp("example")
    write_titled_files(ROOT / "docs" / "testing-postgres.md", example)
    started = {
        "gw0": start_run(project, infraboot_postgres_server, "gw0", "gw1"),
        "gw1": start_run(project, infraboot_postgres_server, "gw1", "gw0"),
        "docs": start_run(example, infraboot_postgres_server, "main", "", tests="test_notes.py"),
        "strict": start_run(project, infraboot_postgres_server, "strict", "", tests="test_strict.py", mode="strict"),
    }
    finished = {key: (run.communicate(timeout=60)[0], run.returncode) for key, run in started.items()}
    return {
        key: (code, (project / f"{key}.txt").read_text() if key in WORKERS and code == 0 else output)
        for key, (output, code) in finished.items()
    }


def test_concurrent_runs_get_distinct_databases(runs: dict[str, tuple[int, str]]) -> None:
    """Each worker's database is its own, named after the worker, and each saw the other's exist at the same time."""
    (gw0_code, gw0), (gw1_code, gw1) = runs["gw0"], runs["gw1"]
    assert (0, 0) == (gw0_code, gw1_code), f"{gw0}\n{gw1}"
    assert (True, True, True) == (gw0 != gw1, "_gw0_" in gw0, "_gw1_" in gw1)


def test_the_database_is_dropped_at_the_end_of_the_run(
    runs: dict[str, tuple[int, str]], infraboot_postgres_server: str
) -> None:
    """After the runs, pg_database has neither of their databases."""
    names = {runs[w][1] for w in WORKERS}
    assert set() == names & throwaway_databases(infraboot_postgres_server)


def test_the_documented_example_passes_on_postgresql(runs: dict[str, tuple[int, str]]) -> None:
    """docs/testing-postgres.md's example, which tests/test_docs.py can only see skip, passes on the real server."""
    code, output = runs["docs"]
    assert (0, True) == (code, "2 passed" in output), output


def test_the_transactional_session_works_under_strict_mode(runs: dict[str, tuple[int, str]]) -> None:
    """Under pytest-asyncio's strict mode (tests marked one by one) the session is handed out and rolled back."""
    code, output = runs["strict"]
    assert (0, True) == (code, "2 passed" in output), output
