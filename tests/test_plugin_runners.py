"""The pytest plugin under each test runner, and its reset between tests, run as a user's suite would run.

Each test copies a small project (from ``tests/plugin_projects/`` or from ``docs/testing.md``) into a
temporary folder with its own pytest configuration and runs pytest on it in a subprocess, with no
``REDIS_*`` / ``DATABASE_*`` variable set. The projects' test files are named ``check_*.py`` so that
this suite never collects them itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PROJECTS = Path(__file__).parent / "plugin_projects"
PAGE = ROOT / "docs" / "testing.md"
FENCE = re.compile(
    r'^```(?P<lang>python|py|toml) title="(?P<title>[^"]+)"\n(?P<code>.*?)^```$', re.MULTILINE | re.DOTALL
)
WARNINGS_AS_ERRORS = "[pytest]\npython_files = check_*.py\nfilterwarnings =\n    error\n"


def page_files() -> list[tuple[str, str]]:
    """The titled blocks of docs/testing.md, in order: (title, code)."""
    return [(m["title"], m["code"]) for m in FENCE.finditer(PAGE.read_text())]


def documented(title: str, containing: str = "") -> str:
    """The first titled block of the page named *title* (and holding *containing*)."""
    found = [code for t, code in page_files() if t == title and containing in code]
    assert found, f"docs/testing.md has no block titled {title!r} holding {containing!r}"
    return found[0]


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_", "PYTEST_"))}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, cwd=project, env=env, timeout=120)


def project(tmp_path: Path, name: str, ini: str) -> Path:
    shutil.copytree(PROJECTS / name, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pytest.ini").write_text(ini)
    return tmp_path


def passed(out: subprocess.CompletedProcess[str]) -> str:
    assert 0 == out.returncode, out.stdout + out.stderr
    return out.stdout


# -- the documented test files -------------------------------------------------------------------

DOCUMENTED_RUNS = {
    "pytest-asyncio": ("asyncio_mode", None, []),
    "anyio": ("anyio_mode", None, ["-p", "no:asyncio"]),
    "anyio-uvloop": ("anyio_mode", '("asyncio", {"use_uvloop": True})', ["-p", "no:asyncio"]),
}


@pytest.mark.parametrize("runner", list(DOCUMENTED_RUNS))
def test_documented_test_file_passes_under_each_runner(runner: str, tmp_path: Path) -> None:
    """test_shop.py passes in a fresh project configured as the page says, under each runner it names."""
    option, backend, plugins = DOCUMENTED_RUNS[runner]
    (tmp_path / "pyproject.toml").write_text(documented("pyproject.toml", option))
    (tmp_path / "test_shop.py").write_text(documented("test_shop.py"))
    if option == "anyio_mode":  # anyio's runs have no pytest-asyncio at all, as in a project without it
        conftest = documented("conftest.py", "anyio_backend")
        if backend is not None:
            conftest = conftest.replace('return "asyncio"', f"return {backend}")
        (tmp_path / "conftest.py").write_text(conftest)
    out = passed(run_pytest(tmp_path, *plugins))
    assert re.search(r"\b5 passed\b", out), out


@pytest.mark.parametrize("runner", ["pytest-asyncio", "anyio"])
def test_documented_session_pattern_starts_once(runner: str, tmp_path: Path) -> None:
    """The page's start-once-per-session pattern passes: one start for the session, overrides restored per test."""
    toml = documented("pyproject.toml", "infraboot_reset")
    plugins: list[str] = []
    if runner == "anyio":
        toml = re.sub(r"^asyncio_.*\n", "", toml, flags=re.MULTILINE) + 'anyio_mode = "auto"\n'
        plugins = ["-p", "no:asyncio"]
    (tmp_path / "pyproject.toml").write_text(toml)
    (tmp_path / "conftest.py").write_text(documented("conftest.py", 'scope="session", autouse=True'))
    (tmp_path / "test_session.py").write_text(documented("test_session.py"))
    out = passed(run_pytest(tmp_path, *plugins))
    assert re.search(r"\b2 passed\b", out), out


# -- leaks between tests -----------------------------------------------------------------------------

POLLUTERS = [
    "test_polluter_leaves_testing_mode_on",
    "test_polluter_leaves_a_component_running",
    "test_polluter_leaves_a_component_running_in_a_gone_loop",
    "test_polluter_leaves_overrides_open",
    "test_polluter_changes_the_registrations",
]
CHECKERS = [f"test_checker_{n}" for n in range(1, 6)]


def interleaved(polluters: list[str]) -> list[str]:
    return [f"check_leaks.py::{name}" for pair in zip(polluters, CHECKERS, strict=True) for name in pair]


ORDERS = {
    "asyncio-forward": (["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"], POLLUTERS),
    "asyncio-backward": (
        ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"],
        POLLUTERS[::-1],
    ),
    "anyio-uvloop-shuffled": (["-p", "no:asyncio", "-o", "anyio_mode=auto"], [POLLUTERS[i] for i in (3, 0, 4, 2, 1)]),
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_no_state_leaks_into_a_later_test(order: str, tmp_path: Path) -> None:
    """Under warnings-as-errors, each checker after a polluter sees the application's clean default system."""
    options, polluters = ORDERS[order]
    root = project(tmp_path, "leaks", WARNINGS_AS_ERRORS)
    nodes = interleaved(polluters)
    out = passed(run_pytest(root, *options, "-vv", *nodes))
    ran = re.findall(r"check_leaks\.py::(\w+)", out)
    assert [n.split("::")[1] for n in nodes] == [name for name in ran if not name.startswith("anyio")][: len(nodes)]
    assert re.search(rf"\b{len(nodes)} passed\b", out), out


def test_a_component_left_running_in_a_gone_loop_is_blamed_on_its_test(tmp_path: Path) -> None:
    """The ResourceWarning fails the test that leaked, naming it, and never the test after it."""
    root = project(tmp_path, "leaks", WARNINGS_AS_ERRORS)
    out = run_pytest(root, "-p", "no:asyncio", "check_named_leak.py")
    assert 1 == out.returncode, out.stdout + out.stderr
    assert re.search(r"\b2 passed, 1 error\b", out.stdout), out.stdout
    assert "ERROR at teardown of test_forgets_to_shut_down" in out.stdout
    assert "check_named_leak.py::test_forgets_to_shut_down left components ['pool'] running" in out.stdout


def test_a_proxy_left_open_is_closed_and_blamed_on_its_test(tmp_path: Path) -> None:
    """A TcpProxy a test left open is closed at its end; the ResourceWarning fails that test, not the next."""
    root = project(tmp_path, "leaks", WARNINGS_AS_ERRORS)
    out = run_pytest(root, "-p", "no:asyncio", "check_proxy_leak.py")
    assert 1 == out.returncode, out.stdout + out.stderr
    assert re.search(r"\b2 passed, 1 error\b", out.stdout), out.stdout
    assert "ERROR at teardown of test_leaves_a_proxy_open" in out.stdout
    assert "check_proxy_leak.py::test_leaves_a_proxy_open left 1 TcpProxy open (<TcpProxy 127.0.0.1:" in out.stdout


# -- runners -------------------------------------------------------------------------------------------


def test_strict_mode_runs_marked_tests_in_their_own_loops(tmp_path: Path) -> None:
    """Strict mode: marked tests (any loop scope) and sync tests get the fixtures; unmarked async ones learn why not."""
    root = project(tmp_path, "strict", WARNINGS_AS_ERRORS)
    out = run_pytest(root, "-o", "asyncio_mode=strict", "-o", "asyncio_default_fixture_loop_scope=function")
    assert 1 == out.returncode, out.stdout + out.stderr
    assert re.search(r"\b4 passed, 1 error\b", out.stdout), out.stdout
    assert "ERROR at setup of test_unmarked_async_test_is_told_what_to_do" in out.stdout
    assert "infraboot's async fixtures need an async test runner" in out.stdout


def test_without_a_runner_the_fixtures_name_both_plugins(tmp_path: Path) -> None:
    """With neither pytest-asyncio nor anyio's plugin, a test using an async fixture errors with one clear message."""
    root = project(tmp_path, "runnerless", "[pytest]\npython_files = check_*.py\n")
    out = run_pytest(root, "-p", "no:asyncio", "-p", "no:anyio", "-rN")  # no summary: its width varies
    assert 1 == out.returncode, out.stdout + out.stderr
    assert 2 == out.stdout.count("infraboot's async fixtures need an async test runner: install pytest-asyncio"), (
        out.stdout
    )
    assert "anyio's pytest plugin (@pytest.mark.anyio" in out.stdout
    assert "fixture 'fake_redis' not found" not in out.stdout


def test_an_unknown_reset_scope_is_a_usage_error(tmp_path: Path) -> None:
    """infraboot_reset takes function, session or off; anything else stops pytest with the choices."""
    out = run_pytest(tmp_path, "-p", "no:asyncio", "-o", "infraboot_reset=sometimes")
    assert 4 == out.returncode, out.stdout + out.stderr
    assert "infraboot_reset = 'sometimes': use one of function, session, off" in out.stderr
