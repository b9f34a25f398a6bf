"""The pages that say "paste into ``python -m asyncio``" mean it: their blocks run there, piped line by line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _blocks(page: str) -> str:
    text = (ROOT / page).read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    if page == "README.md":
        blocks = blocks[:1]  # the README's others are files (Quickstart), as it says
    return "\n".join(blocks)


@pytest.mark.parametrize("page", ["README.md", "docs/cache.md"])
def test_the_page_pastes_into_the_asyncio_repl(page: str, tmp_path: Path) -> None:
    """Every block, pasted in order into ``python -m asyncio``, runs without a SyntaxError or a traceback."""
    if page != "README.md" and sys.version_info >= (3, 13):
        # 3.13's asyncio REPL compiles piped input one line at a time (a paste in a terminal goes through
        # its new editor, which takes a block whole): the pipe stands for the REPL of 3.11 and 3.12, where
        # a block ends at its first blank line -- the rule the page is written to.
        pytest.skip("a pipe into 3.13's asyncio REPL is read line by line; the page is checked on 3.11/3.12")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_"))}
    env |= {"REDIS_URL": "memory://", "DATABASE_URL": "sqlite+aiosqlite:///:memory:", "PYTHONWARNINGS": "error"}
    done = subprocess.run(
        [sys.executable, "-m", "asyncio"],
        input=_blocks(page) + "\n\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=90,
        check=False,
    )
    output = done.stdout + done.stderr
    assert [] == [line for line in output.splitlines() if "Error" in line or "Traceback" in line]
