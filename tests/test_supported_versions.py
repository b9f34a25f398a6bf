"""The lowest-versions run tests what pyproject.toml promises: each pin is the lower bound of its extra."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parent.parent


def lower_bounds() -> dict[str, Version]:
    """Every ``>=`` bound of the runtime extras (not docs/dev/testing: tools, as dev's), by normalised package name."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    bounds: dict[str, Version] = {}
    for extra, requirements in extras.items():
        if extra in ("docs", "dev", "testing"):
            continue
        for line in requirements:
            requirement = Requirement(line)
            for spec in requirement.specifier:
                if spec.operator == ">=":
                    bounds[_normal(requirement.name)] = Version(spec.version)
    return bounds


def pins() -> dict[str, Version]:
    text = (ROOT / "tests" / "constraints-lowest.txt").read_text()
    found = (re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip()) for line in text.splitlines())
    return {_normal(m[1]): Version(m[2]) for m in found if m}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_lower_bound_is_pinned_in_the_lowest_constraints() -> None:
    """tests/constraints-lowest.txt pins each runtime extra's package at exactly its >= bound in pyproject.toml."""
    bounds = lower_bounds()
    pinned = pins()
    assert {name: bounds[name] for name in sorted(bounds) if name != "infraboot"} == {
        name: pinned.get(name) for name in sorted(bounds) if name != "infraboot"
    }


def test_the_core_depends_on_nothing() -> None:
    """`pip install infraboot` installs infraboot alone: every driver and framework is an extra."""
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [] == core
