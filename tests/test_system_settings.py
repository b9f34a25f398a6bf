"""The system's settings are defined once; the defaults, the checks, the environment and the docs derive from it."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

import infraboot
from infraboot._engine._monitor import Settings as MonitorSettings
from infraboot._engine._system_settings import (
    DEFAULTS,
    ENV_VARIABLES,
    SETTINGS,
    SystemSettings,
    docs_table,
    read_env,
    settings_problems,
)
from infraboot._front import _default

DOCS = Path(__file__).parent.parent / "docs"


def test_the_docs_table_is_the_definition() -> None:
    """docs/configuration.md shows exactly the table the definition prints (regenerate it when this fails)."""
    page = (DOCS / "configuration.md").read_text()
    assert docs_table() in page, "run: python -m infraboot._engine._system_settings, paste into docs/configuration.md"


def test_no_other_page_keeps_its_own_table_of_the_variables() -> None:
    """A second table drifts: other pages link to the configuration page instead."""
    pages = [
        p.name
        for p in DOCS.glob("*.md")
        if p.name != "configuration.md" and "| `INFRABOOT_CHECK_TTL` |" in p.read_text()
    ]
    assert [] == pages


def test_the_typed_keywords_and_the_system_attributes_name_the_same_settings() -> None:
    """SystemSettings (for type checkers), SystemInitializer's attributes and the definition agree."""
    assert list(SETTINGS) == list(SystemSettings.__annotations__)
    system_hints = typing.get_type_hints(infraboot.SystemInitializer)
    assert {n: SystemSettings.__annotations__[n] for n in SETTINGS} == {
        n: SystemSettings.__annotations__[n] for n in system_hints if n in SETTINGS
    }
    assert set(SETTINGS) <= set(system_hints)
    assert set(typing.get_type_hints(MonitorSettings)) - {"drainer"} <= set(SETTINGS)


def test_a_new_system_has_the_defined_defaults() -> None:
    """The defaults are the definition's; the one documented as 3 elsewhere is 1."""
    system = infraboot.SystemInitializer()
    assert DEFAULTS == {name: getattr(system, name) for name in SETTINGS}
    assert 1 == system.failure_threshold


def test_the_default_system_reads_the_defined_variables() -> None:
    """ENV_VARIABLES (the typo check's list, and _default's) is every setting's INFRABOOT_ variable."""
    assert ENV_VARIABLES == _default.ENV_VARIABLES
    assert "INFRABOOT_RECOVERY" not in ENV_VARIABLES  # set in code only
    assert len(SETTINGS) - 1 == len(ENV_VARIABLES)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"check_ttl": -1}, "check_ttl=-1: must be a finite number of seconds > 0, e.g. check_ttl=1"),
        (
            {"startup_timeout": "soon"},
            "startup_timeout='soon': must be a number of seconds > 0, e.g. startup_timeout=60",
        ),
        ({"drain_delay": -1}, "drain_delay=-1: must be a finite number of seconds >= 0, e.g. drain_delay=5"),
        ({"failure_threshold": 0}, "failure_threshold=0: must be a whole number >= 1, e.g. failure_threshold=1"),
        ({"recovery": "yes"}, "recovery='yes' must be True or False"),
        ({"chek_ttl": 1}, "unknown setting 'chek_ttl'; did you mean 'check_ttl'?"),
    ],
)
def test_each_keyword_is_checked_with_an_example_from_its_default(given: dict[str, object], expected: str) -> None:
    """One check per kind; the example in the message is the default (or a sensible value when that is unset)."""
    (problem,) = settings_problems(given)
    assert problem.startswith(expected)


def test_none_is_accepted_only_where_it_means_something() -> None:
    """startup_timeout, check_interval and drain_token take None; the other seconds do not."""
    assert [] == settings_problems({"startup_timeout": None, "check_interval": None, "drain_token": None})
    assert 1 == len(settings_problems({"shutdown_timeout": None}))


def test_the_environment_is_read_with_the_same_checks() -> None:
    """read_env parses each variable by kind, names bad ones as written, and takes `off` for the monitor."""
    settings, problems = read_env(
        {
            "INFRABOOT_CHECK_INTERVAL": "off",
            "INFRABOOT_DRAIN_DELAY": "0",
            "INFRABOOT_SUCCESS_THRESHOLD": "2",
            "INFRABOOT_FAILURE_THRESHOLD": "three",
            "INFRABOOT_SHUTDOWN_TIMEOUT": "",
        }
    )
    assert {"check_interval": None, "drain_delay": 0.0, "success_threshold": 2} == settings
    assert [
        "INFRABOOT_FAILURE_THRESHOLD='three': must be a whole number >= 1, e.g. INFRABOOT_FAILURE_THRESHOLD=1"
    ] == problems
