"""README's examples work the way README says to run them, on the Python running the tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
EMBEDDED = {"REDIS_URL": "memory://", "DATABASE_URL": "sqlite+aiosqlite:///:memory:"}


def blocks() -> list[tuple[str | None, str]]:
    """(title, code) of every ```python block of README.md."""
    found = re.findall(r'^```python(?: title="([^"]+)")?\n(.*?)^```', README.read_text(), re.S | re.M)
    return [(title or None, code) for title, code in found]


def environment() -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_"))}
    return {**kept, **EMBEDDED}


def test_blocks_with_top_level_await_paste_into_the_asyncio_repl() -> None:
    """Every untitled block with a top-level await runs when pasted into `python -m asyncio`, as README says."""
    pasted = [code for title, code in blocks() if title is None and re.search(r"^(await|async with) ", code, re.M)]
    failures = []
    for code in pasted:
        run = subprocess.run(
            [sys.executable, "-m", "asyncio"],
            input=code + "\n",
            capture_output=True,
            text=True,
            env=environment(),
            timeout=120,
            check=False,
        )
        if "Traceback" in run.stderr or "Error:" in run.stderr:
            failures.append(run.stderr)
    assert (1, []) == (len(pasted), failures)


def test_the_quickstart_runs_as_a_file(tmp_path: Path) -> None:
    """The Quickstart, saved as quickstart.py and run with `python quickstart.py`, prints its waterfall."""
    code = dict(blocks())["quickstart.py"]
    (tmp_path / "quickstart.py").write_text(code)
    run = subprocess.run(
        [sys.executable, "quickstart.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=environment(),
        timeout=120,
        check=False,
    )
    assert (0, "") == (run.returncode, run.stderr)
    assert run.stdout.startswith("startup ok in ")


@pytest.mark.parametrize("line", ["python quickstart.py", "python -m asyncio"])
def test_readme_says_how_to_run_each_kind_of_block(line: str) -> None:
    """README names both ways to run its examples."""
    assert line in README.read_text()
