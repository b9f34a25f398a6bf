"""The test kit and the public modules use the rooms through public names only (and the few documented seams).

Implementation lives in underscored modules (``infraboot._engine._system``), but what is taken from
them must be public: no ``from infraboot._components._redis import _memory_servers``, no
``component._open = ...`` from outside the module that owns it. Where the test kit needs a way in,
the owning module offers a public seam (``memory_server``, ``refusing``, ``failure_lines``).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "src" / "infraboot"
PUBLIC = ["__init__", "__main__", "asyncio", "cache", "exceptions", "fastapi", "metrics", "starlette"]
#: Underscored names these modules may still reach, each with its reason; the list may only shrink.
SEAMS: dict[tuple[str, str], str] = {}


def _checked() -> list[Path]:
    return [*(PACKAGE / f"{name}.py" for name in PUBLIC), *sorted((PACKAGE / "testing").glob("*.py"))]


def _modules() -> set[str]:
    """Every module and package name of infraboot (``_engine``, ``_redis``, ...): reaching a module is fine."""
    return {p.stem for p in PACKAGE.rglob("*.py")} | {p.name for p in PACKAGE.rglob("*") if p.is_dir()}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _reaches(path: Path) -> list[str]:
    modules = _modules()
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            found += [f"import {a.name}" for a in node.names if _private(a.name) and a.name not in modules]
        elif (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and node.attr not in modules
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(ast.unparse(node))
    return found


def test_no_underscored_name_is_reached_across_modules() -> None:
    """Public modules and the test kit import and touch public names only, or a seam listed with its reason."""
    reached = {(str(path.relative_to(PACKAGE)), what) for path in _checked() for what in _reaches(path)}
    assert [] == sorted(reached - set(SEAMS))


def test_the_listed_seams_are_still_used() -> None:
    """A seam no longer needed comes off the list."""
    reached = {(str(path.relative_to(PACKAGE)), what) for path in _checked() for what in _reaches(path)}
    assert [] == sorted(set(SEAMS) - reached)


def test_every_public_error_is_defined_in_exceptions() -> None:
    """An exception any public module exports lives in infraboot.exceptions (re-exported where it was)."""
    import importlib
    import inspect

    elsewhere = [
        f"{module}.{name}"
        for module in [
            "infraboot",
            *(f"infraboot.{m}" for m in PUBLIC if m not in ("__init__", "__main__")),
            "infraboot.testing",
        ]
        for name in importlib.import_module(module).__all__
        if inspect.isclass(obj := getattr(importlib.import_module(module), name))
        and issubclass(obj, BaseException)
        and obj.__module__ != "infraboot.exceptions"
    ]
    assert [] == elsewhere


def test_errors_raised_from_the_rooms_are_the_public_classes() -> None:
    """The rooms raise the classes of infraboot.exceptions, not look-alikes of their own."""
    from infraboot import exceptions
    from infraboot._cache import _codec, _l2
    from infraboot._components import _once
    from infraboot._engine import _signals

    assert (
        exceptions.CacheUnavailableError,
        exceptions.ValueTooLargeError,
        exceptions.OnceLockTimeout,
        exceptions.StoppedBySignal,
    ) == (_l2.CacheUnavailableError, _codec.ValueTooLargeError, _once.OnceLockTimeout, _signals.StoppedBySignal)
    assert issubclass(exceptions.StoppedBySignal, exceptions.StartupError)
    assert issubclass(exceptions.OnceLockTimeout, TimeoutError)


def test_set_testing_has_one_name_and_the_old_one_warns() -> None:
    """infraboot.set_testing is the switch; infraboot.testing.set_testing still works, with a DeprecationWarning."""
    import pytest

    import infraboot
    import infraboot.testing

    assert "set_testing" not in infraboot.testing.__all__
    with pytest.warns(DeprecationWarning, match="use infraboot.set_testing"):
        old = infraboot.testing.set_testing
    assert infraboot.set_testing is old
