"""Every public module's ``__all__`` is honest: each name exists, is public, and is listed once."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC_MODULES = [
    "infraboot",
    "infraboot.exceptions",
    "infraboot.testing",
    "infraboot.fastapi",
    "infraboot.starlette",
    "infraboot.asyncio",
    "infraboot.metrics",
    "infraboot.cache",
    "infraboot.taskiq",
    "infraboot.faststream",
    "infraboot.celery",
    "infraboot.otel",
]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_name_in_all_exists(module_name: str) -> None:
    """Each name in ``__all__`` resolves (lazy names too), and none is listed twice."""
    module = importlib.import_module(module_name)
    names = list(module.__all__)
    missing = [n for n in names if not hasattr(module, n)]
    assert [] == missing
    assert sorted(set(names)) == sorted(names)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_definition_is_in_all(module_name: str) -> None:
    """A public class or function defined in the module (not imported into it) is declared in ``__all__``."""
    module = importlib.import_module(module_name)
    defined = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module_name
    ]
    assert [] == sorted(set(defined) - set(module.__all__))


def test_the_front_door_lists_what_its_lazy_table_loads() -> None:
    """``infraboot.__all__`` and the lazy-import table name the same things."""
    import infraboot

    lazy = set(infraboot._LAZY)
    assert sorted(lazy) == sorted(set(infraboot.__all__) - {"__version__"})


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_are_documented(module_name: str) -> None:
    """Every public class and function has a docstring: the API page is built from them."""
    module = importlib.import_module(module_name)
    undocumented = [
        n
        for n in module.__all__
        if (inspect.isclass(obj := getattr(module, n)) or inspect.isfunction(obj)) and not inspect.getdoc(obj)
    ]
    assert [] == undocumented
