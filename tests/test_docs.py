"""Code in the documentation runs: every ```python block in docs/ is executed, test files with pytest.

Blocks fenced as ```py are illustrations (fragments of a larger app) and are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
FENCE = re.compile(r"^```python(?P<attrs>[^\n]*)\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str, str]]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        for i, match in enumerate(FENCE.finditer(page.read_text())):
            found.append((f"{page.name}#{i + 1}", match["attrs"], match["code"]))
    return found


BLOCKS = blocks()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_"))}


@pytest.mark.parametrize(("where", "attrs", "code"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_documented_code_runs(where: str, attrs: str, code: str, tmp_path: Path) -> None:
    """The block exits 0 (a test file: all its tests pass)."""
    title = re.search(r'title="([^"]+)"', attrs)
    name = title[1] if title else "snippet.py"
    path = tmp_path / name
    path.write_text(code)
    if name.startswith("test_"):
        args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", str(path)]
    else:
        args = [sys.executable, str(path)]
    out = subprocess.run(args, check=False, capture_output=True, text=True, cwd=tmp_path, env=clean_env(), timeout=120)
    assert 0 == out.returncode, f"{where}:\n{out.stdout}\n{out.stderr}"


def test_every_page_has_a_place_in_the_navigation() -> None:
    """mkdocs.yml lists every page in docs/."""
    nav = (DOCS.parent / "mkdocs.yml").read_text()
    assert [] == [p.name for p in DOCS.glob("*.md") if p.name not in nav]
