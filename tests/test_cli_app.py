"""The command line sees the application: ``--app module:attr`` / ``INFRABOOT_APP``, and ``check --timeout`` holds.

The commands run as a user runs them: the ``infraboot`` console script, from the project's directory
(which is not on ``sys.path`` for a console script: ``--app`` puts it there, as uvicorn does).
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import infraboot
from infraboot._web._app import system_of
from infraboot.testing import TcpProxy

from .test_cli import clean_env

CONSOLE_SCRIPT = str(Path(sys.executable).with_name("infraboot"))

MODULES = {
    # A module whose import registers a component on the default system.
    "components.py": """
        import infraboot

        @infraboot.component("audit", requires=["redis"])
        async def audit(ctx):
            await ctx.get("redis").ping()
            yield "audit"

        infraboot.register(audit)
    """,
    # A FastAPI app with a system of its own, and a lifespan of its own that must never run.
    "fastapp.py": """
        import contextlib
        import os
        from pathlib import Path

        from fastapi import FastAPI

        import infraboot
        import infraboot.fastapi as ib

        @infraboot.component("audit", requires=["cache"])
        async def audit(ctx):
            await ctx.get("cache").ping()
            yield "audit"

        system = infraboot.SystemInitializer(
            [infraboot.RedisComponent("cache", settings={"url": os.environ["APP_CACHE_URL"]}), audit]
        )

        @contextlib.asynccontextmanager
        async def own(app):
            Path("lifespan-ran").write_text("the app started")
            yield

        def create_app():
            app = FastAPI(lifespan=ib.lifespan(["audit"], system=system, inner=own))
            app.include_router(ib.health_router(system))
            return app

        app = create_app()
        settings = {"debug": True}
    """,
    # A Starlette app on the default system behind a middleware; its lifespan starts redis only.
    "starapp.py": """
        from starlette.applications import Starlette

        import infraboot.starlette

        class Timing:
            def __init__(self, app):
                self.app = app

            async def __call__(self, scope, receive, send):
                await self.app(scope, receive, send)

        app = Timing(Starlette(lifespan=infraboot.starlette.lifespan(["redis"])))
    """,
    # A SystemInitializer one attribute down.
    "infra.py": """
        import os

        import infraboot

        class Holder:
            system = infraboot.SystemInitializer(
                [infraboot.RedisComponent("cache", settings={"url": os.environ["APP_CACHE_URL"]})]
            )
    """,
    # A server that refuses once, then accepts and never answers: every later round is cut by wait's budget.
    "flaky.py": """
        import asyncio

        import infraboot

        tries = []

        @infraboot.component("flaky", retries=0, timeout=30.0)
        async def flaky(ctx):
            tries.append(1)
            if len(tries) == 1:
                raise ConnectionRefusedError(111, "Connection refused")
            await asyncio.Event().wait()
            yield "never"

        system = infraboot.SystemInitializer([flaky])
    """,
    "broken.py": """
        raise RuntimeError("the settings file is missing")
    """,
    "needsdep.py": """
        import not_installed_anywhere
    """,
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name, source in MODULES.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    return tmp_path


def cli(project: Path, *args: str, **env: str) -> tuple[int, str, str, float]:
    """Run the console script in *project*: (status, stdout, stderr, seconds)."""
    import subprocess

    started = time.monotonic()
    out = subprocess.run(
        [CONSOLE_SCRIPT, *args],
        check=False,
        capture_output=True,
        text=True,
        env=clean_env(**env),
        cwd=project,
        timeout=60,
    )
    return out.returncode, out.stdout, out.stderr, time.monotonic() - started


def import_floor() -> float:
    """Seconds a process takes to import what ``check`` imports, and exit: the floor on a loaded machine.

    ``check --timeout S`` counts its imports inside ``S``; when the machine is so busy that they
    alone take longer, no budget can be kept, and the bound grows with this floor.
    """
    import subprocess

    modules = (
        "infraboot.__main__, infraboot._web._app, pydantic_settings, sqlalchemy.ext.asyncio, asyncpg, redis.asyncio"
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", f"import {modules}"], check=True, timeout=60)
    return time.monotonic() - started


def rows(stdout: str) -> dict[str, str]:
    """The check table: component -> state."""
    table = stdout.split("\n\n", maxsplit=1)[0].splitlines()[1:]
    return {line.split()[0]: line.split()[1] for line in table}


def test_an_app_component_is_unknown_without_app(project: Path, redis_url: str) -> None:
    """Without --app the command line knows the built-ins only: the issue's starting point."""
    status, _, err, _ = cli(project, "check", "audit", REDIS_URL=redis_url)
    assert 2 == status
    assert "audit" in err


def test_a_module_registering_components_is_checked(project: Path, redis_url: str) -> None:
    """--app module: its import registers components on the default system, and check starts them."""
    status, out, err, _ = cli(project, "check", "audit", "--app", "components", REDIS_URL=redis_url)
    assert 0 == status, err
    assert {"redis": "ready", "audit": "ready"} == rows(out)


def test_a_fastapi_app_brings_its_own_system_without_starting(project: Path, redis_url: str) -> None:
    """--app module:app finds the system the app's lifespan serves, and what it starts; the app never starts."""
    status, out, err, _ = cli(project, "check", "--app", "fastapp:app", APP_CACHE_URL=redis_url)
    assert 0 == status, err
    assert {"cache": "ready", "audit": "ready"} == rows(out)
    assert not (project / "lifespan-ran").exists()


def test_graph_and_wait_read_the_app_too(project: Path, redis_url: str) -> None:
    """graph draws the app's system; wait waits for it (INFRABOOT_APP when --app is not given)."""
    status, out, err, _ = cli(project, "graph", "--app", "fastapp:app", APP_CACHE_URL=redis_url)
    assert (0, "") == (status, err)
    assert "audit  <- cache" in out
    status, out, err, _ = cli(
        project, "wait", "--timeout", "20", INFRABOOT_APP="infra:Holder.system", APP_CACHE_URL=redis_url
    )
    assert 0 == status, err
    assert "(1 round): cache" in out


def test_a_starlette_app_behind_middleware_starts_what_its_lifespan_starts(project: Path, redis_url: str) -> None:
    """The lifespan is found through a middleware; its list (redis, not database) is what check starts."""
    status, out, err, _ = cli(project, "check", INFRABOOT_APP="starapp:app", REDIS_URL=redis_url)
    assert 0 == status, err
    assert {"redis": "ready"} == rows(out)
    status, out, err, _ = cli(project, "graph", INFRABOOT_APP="starapp:app")  # graph draws the same: no database
    assert (0, "") == (status, err)
    assert "level 0 (start together):\n  redis\n" == out
    _, out, _, _ = cli(project, "graph", "--format", "mermaid", INFRABOOT_APP="starapp:app")
    assert "database" not in out


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nosuch.main:app", "--app nosuch.main:app: no module named 'nosuch' (looked in "),
        ("components:app", "--app components:app: components has no attribute 'app'"),
        ("fastapp:application", "has no attribute 'application'; candidates: fastapp:app (FastAPI), fastapp:system"),
        ("fastapp:settings", "--app fastapp:settings: settings is a dict, not a SystemInitializer nor an ASGI app"),
        ("fastapp:create_app", "create_app is a function, not a SystemInitializer nor an ASGI app"),
        ("fastapp:app:app", "--app fastapp:app:app: expected module:attribute, e.g. myapp.main:app"),
        ("broken:app", "importing broken raised RuntimeError: the settings file is missing; python -c 'import broken'"),
        ("needsdep:app", "importing needsdep failed: no module named 'not_installed_anywhere'; install the"),
    ],
)
def test_a_bad_app_is_one_line_naming_the_fix(project: Path, spec: str, expected: str) -> None:
    """A wrong --app is exit 2 and one ``infraboot:`` line saying what is wrong and what to do, no traceback."""
    status, _, err, _ = cli(project, "check", "--app", spec, APP_CACHE_URL="memory://")
    assert 2 == status
    assert 1 == len(err.strip().splitlines()), err
    assert err.startswith("infraboot: ")
    assert expected in err


def test_a_factory_is_named_with_the_fix(project: Path) -> None:
    """A factory function gets the fix spelt out: name the app it builds."""
    _, _, err, _ = cli(project, "graph", "--app", "fastapp:create_app", APP_CACHE_URL="memory://")
    assert "name the object it builds (app = create_app() in fastapp)" in err


def test_the_variable_is_named_when_it_is_wrong(project: Path) -> None:
    """INFRABOOT_APP is named as the source of a bad spec."""
    status, _, err, _ = cli(project, "graph", INFRABOOT_APP="nosuch:app")
    assert 2 == status
    assert err.startswith("infraboot: INFRABOOT_APP=nosuch:app: no module named 'nosuch'")


def test_check_timeout_bounds_the_wall_time_and_names_every_failure(
    project: Path, redis_url: str, database_url: str
) -> None:
    """With Redis and PostgreSQL blackholed, check --timeout 1 ends within the bound, one line per component."""
    with TcpProxy(redis_url) as redis, TcpProxy(database_url) as database:
        redis.blackhole()
        database.blackhole()
        bound = max(2.5, 1.0 + import_floor())
        status, out, err, took = cli(
            project,
            "check",
            "--timeout",
            "1",
            REDIS_URL=redis.url_for(redis_url),
            DATABASE_URL=database.url_for(database_url),
        )
    assert 2 == status
    assert took < bound, f"check --timeout 1 took {took:.2f}s"
    lines = err.strip().splitlines()
    assert 2 == len(lines), err
    assert {"redis", "database"} == {n for n in ("redis", "database") for line in lines if f"component '{n}'" in line}
    states = rows(out)
    assert {"redis", "database"} == set(states)
    assert "failed" in states.values()  # the first to time out; the other, cut short at the deadline, is cancelled
    assert set(states.values()) <= {"failed", "cancelled"}


def test_check_names_a_failed_optional_component(project: Path, redis_url: str, database_url: str) -> None:
    """An optional component that times out is degraded (exit 1) and still named on stderr."""
    with TcpProxy(redis_url) as redis:
        redis.blackhole()
        status, out, err, took = cli(
            project,
            "check",
            "--timeout",
            "20",  # the drivers' imports on a loaded machine; redis gives up after its one attempt
            REDIS_URL=redis.url_for(redis_url),
            REDIS_REQUIRED="false",
            REDIS_CONNECT_TIMEOUT="0.5",
            REDIS_MAX_RETRIES="0",
            DATABASE_URL=database_url,
        )
    assert 1 == status, err
    assert took < 20, f"check --timeout 20 took {took:.2f}s"
    assert err.startswith("infraboot: optional component 'redis' at redis://127.0.0.1:")
    assert 1 == len(err.strip().splitlines()), err
    assert "ready" == rows(out)["database"]


def test_system_of_finds_the_lifespan_through_fastapi_merges() -> None:
    """Every include_router wraps the app's lifespan; the search follows the wrappers to ours."""
    from fastapi import APIRouter, FastAPI

    import infraboot.fastapi as ib

    system = infraboot.SystemInitializer()
    app = FastAPI(lifespan=ib.lifespan(["a", "b"], system=system))
    for _ in range(3):
        app.include_router(APIRouter())
    found = system_of(app)
    assert found is not None
    assert (system, ["a", "b"]) == (found.system, found.components)


def test_system_of_an_app_without_an_infraboot_lifespan_is_the_default() -> None:
    """An app whose lifespan is its own (or none) is served by the default system: no system named, every component."""
    from starlette.applications import Starlette

    @contextlib.asynccontextmanager
    async def mine(app: Any) -> AsyncIterator[None]:
        yield

    assert (None, None) == tuple(system_of(Starlette(lifespan=mine)) or ())
    assert system_of(len) is None
    assert system_of({"not": "an app"}) is None


def test_wait_starts_the_apps_system_again_after_a_failed_round(project: Path, redis_url: str) -> None:
    """Rounds reuse the app's system, shut down in between: the round after the server comes back is ready."""
    import subprocess

    with TcpProxy(redis_url) as proxy:
        proxy.refuse()
        waiting = subprocess.Popen(
            [CONSOLE_SCRIPT, "wait", "--app", "infra:Holder.system", "--timeout", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(APP_CACHE_URL=proxy.url_for(redis_url), REDIS_CONNECT_TIMEOUT="0.5"),
            cwd=project,
        )
        try:
            assert waiting.stdout is not None
            first = waiting.stdout.readline()  # a round failed: the server refuses
            proxy.restore()
            out, err = waiting.communicate(timeout=60)
        finally:
            waiting.kill()
    assert first.startswith("waiting (") and "cache: refused" in first, first
    assert 0 == waiting.returncode, err
    assert "ready after" in out
    assert "cache" in out.split(":")[-1]


def test_wait_names_the_last_answer_when_its_own_budget_cuts_the_last_round(project: Path) -> None:
    """A round cut by wait's own deadline says nothing about the server: the error it gave last is kept."""
    status, out, err, _ = cli(project, "wait", "--app", "flaky:system", "--timeout", "1.5")
    assert 2 == status, err
    assert "waiting (" in out and "flaky: refused" in out.splitlines()[0], out
    assert "gave up after 1.5s: flaky: refused" in err, err


def test_an_installed_package_contributes_components_through_its_entry_point(tmp_path: Path, redis_url: str) -> None:
    """The docs' entry point example: a package's ``infraboot.components`` entry point is checked with no --app."""
    package = tmp_path / "audit_client"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "infra.py").write_text(
        textwrap.dedent(
            """
            import infraboot

            @infraboot.component("audit", requires=["redis"], required=False, timeout=5.0)
            async def audit(ctx):
                await ctx.get("redis").ping()
                yield "audit"
            """
        )
    )
    dist = tmp_path / "audit_client-1.0.dist-info"  # what pip install writes for the pyproject snippet
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: audit-client\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[infraboot.components]\naudit = audit_client.infra:audit\n")
    status, out, err, _ = cli(tmp_path, "check", "audit", REDIS_URL=redis_url, PYTHONPATH=str(tmp_path))
    assert 0 == status, err
    assert {"redis": "ready", "audit": "ready"} == rows(out)
    status, out, _, _ = cli(tmp_path, "graph", REDIS_URL=redis_url, PYTHONPATH=str(tmp_path))
    assert "audit (optional)  <- redis" in out


CANARY = "Ca@n:a/r%y#42"


def test_no_path_of_check_app_shows_the_password(project: Path, redis_url: str) -> None:
    """A canary password stays out of the table, the JSON, the failure lines and an app's import error."""
    from urllib.parse import quote

    encoded = quote(CANARY, safe="")
    (project / "leaky.py").write_text(f"raise RuntimeError('cannot reach postgresql://app:{CANARY}@db:5432/app')\n")
    outputs = []
    with TcpProxy(redis_url) as proxy:
        proxy.blackhole()
        url = proxy.url_for(redis_url).replace("redis://", f"redis://:{encoded}@", 1)
        for extra in ([], ["--json"]):
            status, out, err, _ = cli(
                project, "check", "--app", "fastapp:app", "--timeout", "1", *extra, APP_CACHE_URL=url
            )
            assert 2 == status
            outputs += [out, err]
    status, out, err, _ = cli(project, "check", "--app", "leaky:app")
    assert 2 == status
    assert "cannot reach postgresql://app:***@db:5432/app" in err
    outputs += [out, err]
    for text in outputs:
        assert CANARY not in text
        assert encoded not in text
        assert "Ca@n" not in text
