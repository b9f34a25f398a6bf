"""The install and testing pages say what a newcomer types: a checkout, a wheel, the test set, each extra."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).parent.parent / "docs"


def test_install_page_shows_a_checkout_a_wheel_and_what_testing_needs() -> None:
    """docs/install.md has a line for a checkout, for a built wheel, and the test set listed together."""
    text = (DOCS / "install.md").read_text()
    wanted = [
        'pip install -e ".[redis,postgres,fastapi]"',
        'pip install "$(ls dist/infraboot-*.whl)[redis,postgres,fastapi]"',
        'pip install "infraboot[redis,postgres,fastapi,testing]"',
    ]
    assert [] == [line for line in wanted if line not in text]


def test_testing_page_says_fake_database_needs_the_sqlite_extra() -> None:
    """docs/testing.md says where it introduces fake_database that it needs aiosqlite (the testing or sqlite extra)."""
    row = next(line for line in (DOCS / "testing.md").read_text().splitlines() if line.startswith("| `fake_database`"))
    assert 'needs aiosqlite: `pip install "infraboot[testing]"` (or the `sqlite` extra)' in row


def test_the_testing_extra_holds_what_a_test_run_needs() -> None:
    """infraboot[testing] is the fakes' drivers, pytest, a runner and httpx, and the testing page starts with it."""
    import tomllib

    extras = tomllib.loads((DOCS.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {line.split(">")[0].split("[")[0] for line in extras["testing"]}
    assert {"infraboot", "pytest", "pytest-asyncio", "httpx"} == names
    assert "infraboot[redis,sqlite]" in extras["testing"]
    assert 'pip install "infraboot[testing]"' in (DOCS / "testing.md").read_text().split("\n## ")[0]
