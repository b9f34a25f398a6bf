"""Code in the documentation runs as a reader would paste it.

Every ```python block of README.md and of each page in docs/ is executed:

- A page's blocks run in order in one namespace (a fresh ``__main__`` module), in a fresh interpreter
  per page (``python tests/test_docs.py PAGE``) with warnings as errors and the embedded defaults in
  its environment: ``REDIS_URL=memory://``, ``DATABASE_URL=sqlite+aiosqlite:///:memory:`` (no other
  ``REDIS_*``, ``DATABASE_*`` or ``INFRABOOT_*`` variable). The test's own environment is untouched.
- A block with top-level ``await`` (as in ``python -m asyncio``) runs in the page's one event loop;
  every other block runs outside any loop, so ``asyncio.run(main())`` works in it.
- A block with a title (```python title="app.py") is also written to that file, in the page's working
  directory; a titled ``test_*.py`` block is a test file instead: pytest runs it as a user's suite
  would, with no ``REDIS_*`` / ``DATABASE_*`` variable set (the fixtures set their own).
- A failure names the page and the line of the failing block, and the traceback points at lines
  of the Markdown file.

Not run: ```py blocks, which are illustrations (fragments of a larger app); and a ```python block
whose preceding line is an opt-out with its reason, ``<!-- not-run: needs a real server -->``. Keep
those rare.

Stand-ins: none. Every block defines or imports what it uses (a placeholder client is a tiny class in
the block itself). Should rewriting an example ever make it worse, add the name and the object the
block gets for it to ``STAND_INS``, and say why there.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import os
import re
import subprocess
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEFAULTS = {"REDIS_URL": "memory://", "DATABASE_URL": "sqlite+aiosqlite:///:memory:"}
# name -> object put into a page's namespace before its first block (see the module docstring).
STAND_INS: dict[str, Any] = {}

OPENING = re.compile(r"^(?P<indent> *)```python(?:\s+(?P<attrs>.*))?$")
NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One ```python block: *line* is the line of its opening fence (1-based)."""

    page: Path
    line: int
    code: str
    title: str | None
    not_run: str | None

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"

    @property
    def is_test_file(self) -> bool:
        return self.title is not None and self.title.startswith("test_")


def blocks(page: Path) -> list[Block]:
    """The ```python blocks of *page*, in order."""
    lines = page.read_text().splitlines()
    found = []
    i = 0
    while i < len(lines):
        opening = OPENING.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent = len(opening["indent"])
        start = i
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        title = re.search(r'title="([^"]+)"', opening["attrs"] or "")
        not_run = NOT_RUN.match(lines[start - 1]) if start > 0 else None
        code = "\n".join(line[indent:] for line in lines[start + 1 : i]) + "\n"
        found.append(Block(page, start + 1, code, title[1] if title else None, not_run["reason"] if not_run else None))
        i += 1
    return found


def write_titled_files(page: Path, directory: Path) -> None:
    for block in blocks(page):
        if block.title is not None and block.not_run is None:
            (directory / block.title).write_text(block.code)


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_"))}
    return {**env, **extra}


def run_page(page: Path) -> int:
    """Run the page's blocks in one fresh ``__main__`` namespace (in this interpreter); 0 when all pass."""
    sys.path[0] = os.getcwd()  # the page's titled files import each other, as in a project (not tests/)
    module = types.ModuleType("__main__")
    module.__dict__.update(STAND_INS)
    sys.modules["__main__"] = module
    loop: asyncio.AbstractEventLoop | None = None
    try:
        for block in blocks(page):
            if block.is_test_file:
                continue
            if block.not_run is not None:
                print(f"{block.where}: not run: {block.not_run}")
                continue
            try:
                # Padded so that tracebacks point at the lines of the Markdown file.
                source = "\n" * block.line + block.code
                code = compile(source, str(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                result = eval(code, module.__dict__)  # noqa: S307 - our own docs, run on purpose
                if result is not None:  # top-level await: a coroutine to run in the page's loop
                    if loop is None:
                        loop = asyncio.new_event_loop()
                    loop.run_until_complete(result)
            except BaseException:
                print(f"{block.where}: this ```python block failed:", file=sys.stderr)
                traceback.print_exc()
                return 1
    finally:
        if loop is not None:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    return 0


PAGES_WITH_CODE = [p for p in PAGES if any(not b.is_test_file for b in blocks(p))]
TEST_FILES = [b for p in PAGES for b in blocks(p) if b.is_test_file and b.not_run is None]


def test_pages_are_found() -> None:
    """README.md and the docs pages are all collected, and some have code to run."""
    assert ROOT / "README.md" in PAGES_WITH_CODE
    assert (ROOT / "docs" / "index.md") in PAGES_WITH_CODE


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=[str(p.relative_to(ROOT)) for p in PAGES_WITH_CODE])
def test_page_code_runs(page: Path, tmp_path: Path) -> None:
    """The page's ```python blocks run, in order, in one namespace, on the embedded defaults."""
    write_titled_files(page, tmp_path)
    args = [sys.executable, "-W", "error", __file__, str(page)]
    out = subprocess.run(
        args, check=False, capture_output=True, text=True, cwd=tmp_path, env=environment(**DEFAULTS), timeout=120
    )
    assert 0 == out.returncode, f"{page.relative_to(ROOT)}:\n{out.stdout}\n{out.stderr}"


@pytest.mark.parametrize("block", TEST_FILES, ids=[b.where for b in TEST_FILES])
def test_documented_test_file_passes(block: Block, tmp_path: Path) -> None:
    """A documented test file passes under pytest, with only the page's own files beside it."""
    write_titled_files(block.page, tmp_path)
    options = ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"]
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, block.title or ""]
    out = subprocess.run(
        args,
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment(),
        timeout=120,
    )
    assert 0 == out.returncode, f"{block.where} ({block.title}):\n{out.stdout}\n{out.stderr}"


def test_opt_outs_name_their_reason() -> None:
    """Every ``not-run`` marker gives a reason and stands right before a ```python block."""
    stray = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        for n, line in enumerate(lines):
            if "<!--" in line and "not-run" in line:
                following = lines[n + 1] if n + 1 < len(lines) else ""
                if not NOT_RUN.match(line) or not OPENING.match(following):
                    stray.append(f"{page.relative_to(ROOT)}:{n + 1}")
    assert [] == stray


def test_api_page_lists_every_public_name() -> None:
    """docs/api.md has a section per public module: every name of its ``__all__`` and its ``:::`` directive."""
    from .test_all_attributes import PUBLIC_MODULES  # the modules docs/api.md describes, one section each

    api = (ROOT / "docs" / "api.md").read_text()
    sections = dict(re.findall(r"^## `([\w.]+)`\n(.*?)(?=^## |\Z)", api, re.MULTILINE | re.DOTALL))
    in_exceptions = set(importlib.import_module("infraboot.exceptions").__all__)  # re-exported, listed there
    missing = []
    for module in PUBLIC_MODULES:
        text = sections.get(module, "")
        if f"::: {module}\n" not in text:
            missing.append(f"::: {module}")
        public = importlib.import_module(module).__all__
        if module == "infraboot":
            public = [n for n in public if n not in in_exceptions]
        missing += [f"{module}.{n}" for n in public if not re.search(rf"`{re.escape(n)}[`(]", text)]
    assert [] == missing


def test_every_page_has_a_place_in_the_navigation() -> None:
    """mkdocs.yml lists every page in docs/."""
    nav = (ROOT / "mkdocs.yml").read_text()
    assert [] == [p.name for p in (ROOT / "docs").glob("*.md") if p.name not in nav]


if __name__ == "__main__":
    sys.exit(run_page(Path(sys.argv[1]).resolve()))
