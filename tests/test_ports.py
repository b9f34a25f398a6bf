"""The two ports of #23 (examples/svc_port, examples/cache_port): each app, before and after infraboot, passes
its own suite, run from its own folder as its maintainers would; and the port stays within its line budget."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
import uuid
from contextlib import closing
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
SUITES = [("svc_port", "before"), ("svc_port", "after"), ("cache_port", "before"), ("cache_port", "after")]


@pytest.mark.real
@pytest.mark.parametrize(("port", "side"), SUITES, ids=[f"{port}-{side}" for port, side in SUITES])
def test_the_apps_own_suite_passes(
    port: str, side: str, real_database: tuple[str, str, int], real_redis: tuple[str, str, int]
) -> None:
    """The suite passes on the local servers, nothing skipped (TEST_DATABASE_URL / TEST_REDIS_URL point it there)."""
    missing = unmet_requirements(EXAMPLES / port / side / "pyproject.toml")
    if missing:  # the lowest-versions run: the app's own floor (FastAPI's Depends(scope=) is 0.121) is above ours
        pytest.skip(f"this environment does not meet {port}/{side}'s own requirements: {', '.join(missing)}")
    database = re.sub(r"^postgresql(\+\w+)?://", "postgresql+asyncpg://", real_database[0])
    env = {**os.environ, "TEST_DATABASE_URL": database, "TEST_REDIS_URL": real_redis[0], "PYTHONDONTWRITEBYTECODE": "1"}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    out = subprocess.run(
        args, check=False, capture_output=True, text=True, cwd=EXAMPLES / port / side, env=env, timeout=300
    )
    assert 0 == out.returncode, f"{out.stdout}\n{out.stderr}"
    assert re.search(r"\b\d+ passed\b", out.stdout), out.stdout
    assert "skipped" not in out.stdout, out.stdout


def unmet_requirements(pyproject: Path) -> list[str]:
    """The requirements of an app (its dependencies and its test extra) that the running environment does not meet."""
    from importlib import metadata

    from packaging.requirements import Requirement

    project = tomllib.loads(pyproject.read_text())["project"]
    missing = []
    for line in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(line)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(f"{line} (not installed)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            missing.append(f"{line} ({installed} installed)")
    return missing


@pytest.mark.parametrize("port", ["svc_port", "cache_port"])
def test_the_ported_apps_need_nothing_infraboot_does_not_install(port: str) -> None:
    """An app after its port runs wherever infraboot's own supported versions do: never skipped for its floor."""
    assert [] == unmet_requirements(EXAMPLES / port / "after" / "pyproject.toml")


def changed_lines(port: str, part: str) -> tuple[int, int]:
    """(added, removed) lines from ``before/<part>`` to ``after/<part>``, counted by ``git diff --numstat``."""
    root = EXAMPLES / port
    names = {
        p.relative_to(root / side).as_posix()
        for side in ("before", "after")
        for p in (root / side / part).rglob("*.py")
    }
    added = removed = 0
    for name in sorted(names):
        old, new = root / "before" / name, root / "after" / name
        args = [
            "git",
            "diff",
            "--no-index",
            "--numstat",
            str(old if old.exists() else os.devnull),
            str(new if new.exists() else os.devnull),
        ]
        out = subprocess.run(args, check=False, capture_output=True, text=True, cwd=root)
        for line in out.stdout.splitlines():
            plus, minus, _ = line.split("\t", 2)
            added, removed = added + int(plus), removed + int(minus)
    return added, removed


def test_the_service_port_costs_at_most_40_lines_of_app() -> None:
    """svc_port: the app's diff is at most +40 lines, for the 90-odd lines of hand-written startup it removes."""
    added, removed = changed_lines("svc_port", "svc")
    assert added <= 40, (added, removed)
    assert removed >= 90, (added, removed)


def test_the_cache_port_removes_more_app_lines_than_it_adds() -> None:
    """cache_port: the hand-written cache decorator, clients, lifespan and retries go; what comes in is smaller."""
    added, removed = changed_lines("cache_port", "shop")
    assert added <= 50, (added, removed)
    assert removed >= 2 * added, (added, removed)


def test_the_custom_pool_component_is_at_most_10_lines() -> None:
    """svc_port: the raw asyncpg pool, from its decorator to its teardown, takes at most 10 lines."""
    source = (EXAMPLES / "svc_port" / "after" / "svc" / "app.py").read_text()
    block = re.search(r'\n( *)@infraboot\.component\("pg_pool".*?\n\1    await pool\.close\(\)\n', source, re.S)
    assert block is not None
    assert len(block.group(0).strip("\n").splitlines()) <= 10


@pytest.mark.parametrize("port", ["svc_port", "cache_port"])
def test_no_session_is_built_by_hand_after_the_port(port: str) -> None:
    """No AsyncSession(...) or async_sessionmaker in the after: sessions come from infraboot, with its options."""
    after = EXAMPLES / port / "after"
    found = [
        str(p.relative_to(after))
        for p in after.rglob("*.py")
        if re.search(r"AsyncSession\(|async_sessionmaker", p.read_text())
    ]
    assert [] == found


def worker_env(tmp_path: Path, queue_url: str) -> dict[str, str]:
    """cache_port's worker on *queue_url*, with a SQLite file holding three items."""
    database = tmp_path / "items.db"
    # sqlite3's own `with` only commits; closing() closes too (3.13 warns about an unclosed connection).
    with closing(sqlite3.connect(database)) as conn, conn:
        conn.execute("CREATE TABLE cache_port_items (id INTEGER PRIMARY KEY, name VARCHAR(100))")
        conn.executemany("INSERT INTO cache_port_items (name) VALUES (?)", [("a",), ("b",), ("c",)])
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "REDIS_QUEUE_URL": queue_url,
        "REDIS_CACHE_URL": "memory://",
        "REDIS_RATE_LIMIT_URL": "memory://",
        "INFRABOOT_DRAIN_DELAY": "0.2",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@pytest.mark.real
def test_the_ported_worker_runs_a_job_and_exits_0_on_sigterm(tmp_path: Path, real_redis: tuple[str, str, int]) -> None:
    """cache_port's worker process (infraboot.asyncio.run) runs a queued job, then drains and exits 0 on SIGTERM."""
    import redis

    queue = redis.Redis.from_url(real_redis[0], decode_responses=True)
    report_id = uuid.uuid4().hex
    report = f"cache_port:report:{report_id}"
    queue.lpush("cache_port:queue", json.dumps({"id": "1", "function": "build_report", "args": [report_id]}))
    args = [sys.executable, "-m", "shop.worker"]
    worker = subprocess.Popen(args, cwd=EXAMPLES / "cache_port" / "after", env=worker_env(tmp_path, real_redis[0]))
    try:
        deadline = time.monotonic() + 30
        while queue.hgetall(report) != {"items": "3"}:
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the job did not run within 30 s"
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        assert 0 == worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        queue.delete(report)
        queue.close()


def test_the_ported_worker_exits_2_with_one_line_when_its_redis_refuses(tmp_path: Path) -> None:
    """cache_port's worker on a Redis that refuses: exit status 2, one line naming the component and the fix."""
    args = [sys.executable, "-m", "shop.worker"]
    env = worker_env(tmp_path, "redis://127.0.0.1:1/0")
    where = EXAMPLES / "cache_port" / "after"
    out = subprocess.run(args, check=False, cwd=where, env=env, capture_output=True, text=True, timeout=60)
    assert 2 == out.returncode, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("infraboot: required component 'queue'"), out.stderr
    assert "QUEUE_REQUIRED=false" in last
    assert "Traceback" not in out.stderr
