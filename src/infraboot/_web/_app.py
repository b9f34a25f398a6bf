"""An application's own system, found from ``module:attr`` (``infraboot check --app``), starting nothing.

The spec names what an ASGI server would serve (``myapp.main:app``), a
:class:`SystemInitializer` (``myapp.infra:system``), or a module alone (``myapp.components``)
whose import registers components on the default system. Importing the module runs the
application's module-level code (its ``infraboot.register(...)`` calls) and nothing more: no
lifespan runs, no server starts, no connection opens.

For an app, the system is the one its infraboot lifespan serves (``lifespan(system=...)``,
else the default system), found by following the app's lifespan (through FastAPI's merge of
included routers' lifespans) and any middleware wrapping it (``.app``); the components the
lifespan starts become the default names. An app without an infraboot lifespan is served by
the default system.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import types
from collections.abc import Iterator
from typing import Any, NamedTuple

from infraboot._base._errors import describe
from infraboot._engine._system import SystemInitializer
from infraboot._front import _default
from infraboot.exceptions import ConfigError

from ._asgi import STATE_KEY, LifespanTarget, made

__all__ = ["AppTarget", "load_app"]

#: How deep the search follows wrapped lifespans and middleware (an app is a few layers, not hundreds).
_MAX_DEPTH = 16


class AppTarget(NamedTuple):
    """The system *spec* names, and the components its app's lifespan starts (``None``: every one)."""

    system: SystemInitializer
    components: list[str] | None
    spec: str


def load_app(spec: str, *, source: str = "--app") -> AppTarget:
    """Import the module of *spec* (``module:attr`` or ``module``) and find its system; start nothing.

    The current directory comes first on ``sys.path``, as for uvicorn, so ``myapp.main:app``
    is found when run from the project's directory. Every mistake is a :class:`ConfigError`
    naming *source* (``--app`` or ``INFRABOOT_APP``) and the fix.
    """
    label = f"{source}={spec}" if source.isupper() else f"{source} {spec}"
    module_name, attr = _parse(spec, label)
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    module = _import(module_name, label)
    if attr is None:
        return AppTarget(_default.default_system(), None, spec)
    obj = _attribute(module, attr, label)
    found = system_of(obj)
    if found is None:
        msg = (
            f"{label}: {attr} is {_kind(obj)}, not a SystemInitializer nor an ASGI app (FastAPI, Starlette)"
            f"{_candidates(module, module_name)}"
        )
        if inspect.isfunction(obj) or inspect.isclass(obj):
            msg += f"; for a factory, name the object it builds (app = {attr}() in {module_name})"
        raise ConfigError(msg)
    return AppTarget(found.system or _default.default_system(), found.components, spec)


def _parse(spec: str, label: str) -> tuple[str, str | None]:
    module_name, colon, attr = spec.strip().partition(":")
    ok_module = all(part.isidentifier() for part in module_name.split("."))
    ok_attr = not colon or all(part.isidentifier() for part in attr.split("."))
    if not (ok_module and ok_attr):
        msg = f"{label}: expected module:attribute, e.g. myapp.main:app (or a module whose import registers components)"
        raise ConfigError(msg)
    return module_name, attr if colon else None


def _import(module_name: str, label: str) -> types.ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):  # the spec's module, not one it imports
            msg = (
                f"{label}: no module named {missing!r} (looked in {os.getcwd()} and sys.path); "
                "run infraboot from the project's directory, or set PYTHONPATH to the directory that holds it"
            )
            raise ConfigError(msg) from None
        msg = (
            f"{label}: importing {module_name} failed: no module named {missing!r}; "
            "install the application's dependencies in the environment that runs infraboot"
        )
        raise ConfigError(msg) from None
    except ConfigError:
        raise
    except Exception as exc:
        said = describe(exc)  # a URL's password in it is masked, registered or not
        msg = f"{label}: importing {module_name} raised {said}; python -c 'import {module_name}' shows the traceback"
        raise ConfigError(msg) from None


def _attribute(module: types.ModuleType, attr: str, label: str) -> Any:
    obj: Any = module
    walked: list[str] = []
    for part in attr.split("."):
        walked.append(part)
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = module.__name__ + (f":{'.'.join(walked[:-1])}" if len(walked) > 1 else "")
            msg = f"{label}: {where} has no attribute {part!r}{_candidates(module, module.__name__)}"
            raise ConfigError(msg) from None
    return obj


def _candidates(module: types.ModuleType, module_name: str) -> str:
    """``; it has: app (FastAPI), system (SystemInitializer)``: the names worth pointing at."""
    names = [
        f"{module_name}:{name} ({type(value).__name__})"
        for name, value in sorted(vars(module).items())
        if not name.startswith("_") and system_of(value) is not None and not isinstance(value, types.ModuleType)
    ]
    return f"; candidates: {', '.join(names)}" if names else ""


def _kind(obj: object) -> str:
    if inspect.isfunction(obj):
        return "a function"
    if inspect.isclass(obj):
        return f"the class {obj.__name__}"
    return f"a {type(obj).__name__}"


def system_of(obj: object) -> LifespanTarget | None:
    """What *obj* would start: itself if a system, else what an app's lifespan starts; ``None``: neither."""
    if isinstance(obj, SystemInitializer):
        return LifespanTarget(obj, None)
    if not _is_app(obj):
        return None
    for layer in _layers(obj):
        state = getattr(layer, "state", None)
        held = getattr(state, STATE_KEY, None) if state is not None else None
        if isinstance(held, SystemInitializer):
            return LifespanTarget(held, None)
        router = getattr(layer, "router", layer)
        found = _search_lifespan(getattr(router, "lifespan_context", None))
        if found is not None:
            return found
    return LifespanTarget(None, None)  # an app with no infraboot lifespan: the default system serves it


def _is_app(obj: object) -> bool:
    """An ASGI application or middleware: callable, and a router or a wrapper of one."""
    if isinstance(obj, type) or not callable(obj):
        return False
    return any(hasattr(obj, name) for name in ("router", "lifespan_context", "app"))


def _layers(app: object) -> Iterator[object]:
    """*app*, then what each middleware wraps (``.app``), outermost first."""
    seen: set[int] = set()
    for _ in range(_MAX_DEPTH):
        if app is None or id(app) in seen:
            return
        seen.add(id(app))
        yield app
        app = getattr(app, "app", None)


def _search_lifespan(fn: Any, depth: int = 0) -> LifespanTarget | None:
    """The target of the infraboot lifespan in *fn* or in the lifespans it wraps (FastAPI's merged ones)."""
    if fn is None or depth > _MAX_DEPTH:
        return None
    found: LifespanTarget | None
    try:
        found = made.get(fn)
    except TypeError:  # not weak-referenceable or not hashable: not one of ours
        found = None
    if found is not None:
        return found
    inner = [getattr(fn, "__wrapped__", None)]
    inner += [cell.cell_contents for cell in getattr(fn, "__closure__", None) or () if _filled(cell)]
    for candidate in inner:
        if candidate is not None and callable(candidate):
            found = _search_lifespan(candidate, depth + 1)
            if found is not None:
                return found
    return None


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True
