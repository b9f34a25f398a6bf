"""Under uvicorn, infraboot's INFO events show once the app gives them the handler docs/troubleshooting.md shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")

TROUBLESHOOTING = Path(__file__).parent.parent.parent / "docs" / "troubleshooting.md"
APP = """
from fastapi import FastAPI
import infraboot.fastapi as ib

app = FastAPI(lifespan=ib.lifespan(["redis"]))
"""


def startup_output(tmp_path: Path, app_code: str) -> str:
    """What `uvicorn app:app --log-level info` prints until its startup completes (then it is stopped)."""
    (tmp_path / "app.py").write_text(app_code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_"))}
    env["REDIS_URL"] = "memory://"
    command = [sys.executable, "-m", "uvicorn", "app:app", "--port", "0", "--log-level", "info"]
    lines: list[str] = []
    with subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) as server:
        try:
            assert server.stderr is not None
            end = time.monotonic() + 60
            while time.monotonic() < end:
                line = server.stderr.readline()
                lines.append(line)
                if not line or "Application startup" in line:
                    break
        finally:
            server.terminate()
            server.wait(timeout=30)
    return "".join(lines)


def test_the_documented_basicconfig_line_shows_component_ready_under_uvicorn(tmp_path: Path) -> None:
    """Without a handler uvicorn shows no component_ready; with docs/troubleshooting.md's line it does."""
    line = re.search(r"^logging\.basicConfig\(.*\)", TROUBLESHOOTING.read_text(), re.M)
    assert line is not None
    without = startup_output(tmp_path, APP)
    with_line = startup_output(tmp_path, f"import logging\n{line.group(0)}\n{APP}")
    found = ("component_ready component=redis" in without, "component_ready component=redis" in with_line)
    assert (False, True) == found, with_line


CANARY = "canary-pw-7f3a9"


@pytest.mark.parametrize("background", [False, True])
def test_a_required_failure_under_uvicorn_is_one_line_naming_the_component_and_the_fix(
    tmp_path: Path, background: bool
) -> None:
    """No traceback after infraboot's line: a handful of lines in all, the component and the fix named, no password."""
    code = APP.replace('["redis"]', f'["redis"], background={background}')
    (tmp_path / "app.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_"))}
    env |= {"REDIS_URL": f"redis://app:{CANARY}@127.0.0.1:1/0", "REDIS_MAX_RETRIES": "0", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "uvicorn", "app:app", "--port", "0"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    lines = done.stderr.splitlines()
    failures = [line for line in lines if line.startswith("startup_failed")]

    assert (2 if background else 3) == done.returncode, done.stderr
    assert "Traceback" not in done.stderr
    assert CANARY not in done.stderr + done.stdout
    # Started server process, Waiting for application startup, component_failed, startup_failed, and
    # uvicorn's own exit line(s): "Application startup failed. Exiting." (foreground).
    assert len(lines) <= 6, done.stderr
    assert 1 == len(failures), done.stderr
    assert "'redis'" in failures[0]
    assert "REDIS_REQUIRED=false" in failures[0]
