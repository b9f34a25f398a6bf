"""The test kit on MySQL / MariaDB: a throwaway database per run, a rolled-back session per test (real MariaDB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from infraboot.testing._postgres import _run

from .conftest import _server_or_skip
from .test_docs import ROOT, write_titled_files

pytestmark = pytest.mark.real

PROJECT_INI = """\
[pytest]
pythonpath = .
infraboot_schema = schema:create
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

SCHEMA = """\
from sqlalchemy import text

async def create(engine):
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE seen (worker varchar(40) NOT NULL) ENGINE=InnoDB"))
"""

TEST_FILE = """\
import asyncio, os, pathlib, time
import pytest
from sqlalchemy import text
import infraboot

async def count():
    async with infraboot.get_session() as session:
        return (await session.execute(text("SELECT count(*) FROM seen"))).scalar_one()

async def test_records_its_database_and_sees_the_other_one(infraboot_db_session):
    worker, other = os.environ["PYTEST_XDIST_WORKER"], os.environ["OTHER_WORKER"]
    await infraboot_db_session.execute(text("INSERT INTO seen VALUES (:w)"), {"w": worker})  # the ini's schema
    assert infraboot.get_engine().dialect.name in ("mysql", "mariadb")
    pathlib.Path(f"{worker}.txt").write_text(infraboot.get_engine().url.database)
    deadline = time.monotonic() + 20
    while not pathlib.Path(f"{other}.txt").exists():
        assert time.monotonic() < deadline, "the other run never started"
        await asyncio.sleep(0.05)
    theirs = pathlib.Path(f"{other}.txt").read_text()
    query = text("SELECT count(*) FROM information_schema.schemata WHERE schema_name = :name")
    assert 1 == (await infraboot_db_session.execute(query, {"name": theirs})).scalar_one()
    pathlib.Path(f"{worker}.seen").write_text("")  # the other run keeps its database until then
    while not pathlib.Path(f"{other}.seen").exists():
        assert time.monotonic() < deadline, "the other run never saw this one"
        await asyncio.sleep(0.05)

async def test_a_commit_is_a_savepoint_and_a_failure_goes_back_to_it(infraboot_db_session):
    async with infraboot.get_session() as session:
        await session.execute(text("INSERT INTO seen VALUES ('kept')"))
    with pytest.raises(RuntimeError):
        async with infraboot.get_session() as session:
            await session.execute(text("INSERT INTO seen VALUES ('undone')"))
            raise RuntimeError("the application fails")
    rows = (await infraboot_db_session.execute(text("SELECT worker FROM seen"))).scalars().all()
    assert ["kept"] == list(rows)

async def test_and_nothing_is_left_for_the_next_test(infraboot_db_session):
    assert 0 == await count()
"""

WORKERS = ("gw0", "gw1")


@pytest.fixture(scope="session")
def real_mysql_server() -> str:
    return _server_or_skip("INFRABOOT_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306/test", 3306, "MySQL")[0]


def throwaway_databases(server: str) -> set[str]:
    """The server's ``infraboot_test_*`` databases, asked from outside any test loop."""

    async def ask() -> set[str]:
        engine = create_async_engine(make_url(server), poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                query = "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :pattern"
                rows = await connection.execute(text(query), {"pattern": "infraboot\\_test\\_%"})
                return {row[0] for row in rows}
        finally:
            await engine.dispose()

    return _run(ask())


def start_run(
    project: Path, server: str, worker: str, other: str, *, mode: str, tests: str = "test_project.py"
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "INFRABOOT_", "PYTEST_"))}
    env.update(INFRABOOT_TEST_DATABASE_URL=server, PYTEST_XDIST_WORKER=worker, OTHER_WORKER=other)
    plugins = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest"]
    args = [sys.executable, "-m", "pytest", "-q", *plugins, "-o", f"asyncio_mode={mode}", tests]
    return subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, real_mysql_server: str) -> dict[str, tuple[int, str, str]]:
    """Three pytest processes at once on MariaDB: xdist workers gw0 and gw1, and the documented example.

    Each gives its exit code, output and (the workers) its database's name.
    """
    project = tmp_path_factory.mktemp("project")
    (project / "pytest.ini").write_text(PROJECT_INI)
    (project / "schema.py").write_text(SCHEMA)
    (project / "test_project.py").write_text(TEST_FILE)
    example = tmp_path_factory.mktemp("example")
    write_titled_files(ROOT / "docs" / "testing-postgres.md", example)
    before = throwaway_databases(real_mysql_server)
    started = {
        "docs": start_run(example, real_mysql_server, "main", "", mode="auto", tests="test_notes.py"),
        "gw0": start_run(project, real_mysql_server, "gw0", "gw1", mode="auto"),
        "gw1": start_run(project, real_mysql_server, "gw1", "gw0", mode="auto"),
    }
    finished = {key: (run.communicate(timeout=90)[0], run.returncode) for key, run in started.items()}
    out = {}
    for key, (output, code) in finished.items():
        name = (project / f"{key}.txt").read_text() if (project / f"{key}.txt").exists() else ""
        out[key] = (code, output, name)
    assert not (before & {name for _, _, name in out.values()})
    return out


def test_each_run_passes_on_its_own_database(runs: dict[str, tuple[int, str, str]]) -> None:
    """Both runs pass (savepoint commit, rollback, an empty table per test), each on a database named after it."""
    (gw0_code, gw0_out, gw0), (gw1_code, gw1_out, gw1) = runs["gw0"], runs["gw1"]
    assert (0, 0) == (gw0_code, gw1_code), f"{gw0_out}\n{gw1_out}"
    assert ("3 passed" in gw0_out, "3 passed" in gw1_out) == (True, True)
    assert (True, True, True) == (gw0 != gw1, "_gw0_" in gw0, "_gw1_" in gw1)


def test_the_databases_are_dropped_at_the_end_of_the_run(
    runs: dict[str, tuple[int, str, str]], real_mysql_server: str
) -> None:
    """After the runs, information_schema has neither of their databases."""
    names = {runs[w][2] for w in WORKERS}
    assert "" not in names
    assert set() == names & throwaway_databases(real_mysql_server)


def test_without_a_driver_it_names_the_fix(tmp_path: Path) -> None:
    """A ``mysql+pymysql://`` server (no async driver) skips with the URL forms that work."""
    (tmp_path / "test_x.py").write_text("def test_x(infraboot_db_session):\n    pass\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "INFRABOOT_", "PYTEST_"))}
    env["INFRABOOT_TEST_DATABASE_URL"] = "mysql+pymysql://root@127.0.0.1:3306/test"
    args = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]
    done = subprocess.run(
        [*args, "test_x.py"], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert (0, True) == (done.returncode, "use mysql+asyncmy:// or mysql+aiomysql://" in done.stdout), done.stdout


def test_the_documented_example_passes_on_mariadb(runs: dict[str, tuple[int, str, str]]) -> None:
    """docs/testing-postgres.md's example (an endpoint writing through DatabaseSession) passes on MariaDB too."""
    code, output, _ = runs["docs"]
    assert (0, True) == (code, "2 passed" in output), output
