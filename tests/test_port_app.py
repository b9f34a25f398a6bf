"""The port example (examples/port_app) passes its own test suite, run as its maintainers would run it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "examples" / "port_app"


def test_the_examples_own_suite_passes() -> None:
    """The example's pytest suite passes from its own folder, with its own pytest configuration."""
    args = [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"]
    out = subprocess.run(args, check=False, capture_output=True, text=True, cwd=EXAMPLE, timeout=300)
    assert 0 == out.returncode, f"{out.stdout}\n{out.stderr}"
    assert re.search(r"\b\d+ passed\b", out.stdout), out.stdout


def test_the_example_never_writes_os_environ() -> None:
    """No file of the example sets, updates or deletes an environment variable."""
    writes = re.compile(r"os\.environ(\[[^\]]+\]\s*=[^=]|\.(update|setdefault|pop|clear)\()|os\.putenv|del os\.environ")
    files = [p for p in EXAMPLE.rglob("*") if p.is_file() and p.suffix in {".py", ".toml", ".md", ".ini", ".cfg"}]
    assert len(files) >= 8
    assert [] == [str(p.relative_to(EXAMPLE)) for p in files if writes.search(p.read_text())]
