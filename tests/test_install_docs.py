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
        'pip install "infraboot[redis,sqlite,fastapi]" pytest pytest-asyncio httpx',
    ]
    assert [] == [line for line in wanted if line not in text]


def test_testing_page_says_fake_database_needs_the_sqlite_extra() -> None:
    """docs/testing.md says where it introduces fake_database that it needs the sqlite extra."""
    row = next(line for line in (DOCS / "testing.md").read_text().splitlines() if line.startswith("| `fake_database`"))
    assert 'needs the `sqlite` extra: `pip install "infraboot[sqlite]"`' in row
