"""The package tree shows the architecture: rooms in layers, and no import climbs back up.

Layers, bottom to top: ``_base`` ← ``_engine`` ← ``_components`` ← ``_front`` ← ``_web`` and the
public modules (adapters, CLI, cache, test kit). A module may import its own room and the rooms
below it; an import of a higher room, even inside a function, is a climb.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "src" / "infraboot"
LAYERS = ["_base", "_engine", "_components", "_front", "_web"]
TOP = len(LAYERS)  # the public modules, _cache and testing sit above every room
PUBLIC = {
    *("__init__", "__main__", "asyncio", "cache", "exceptions", "fastapi", "metrics", "starlette"),
    *("arq", "celery", "faststream", "taskiq"),  # the worker adapters
    "otel",  # OpenTelemetry spans and pool metrics (extra ``otel``)
}
#: ``exceptions`` is the public vocabulary: every room may raise its errors.
EVERYWHERE = {"infraboot.exceptions"}

#: Climbs still in the code, each with its reason; the list may only shrink.
KNOWN_CLIMBS: dict[tuple[str, str], str] = {
    ("infraboot._engine._system", "infraboot._front._accessors"): "an own system's get_session() (lazy)",
    ("infraboot._web._asgi", "infraboot.metrics"): "the /metrics route registers the collectors (lazy)",
    ("infraboot._web._demo", "infraboot.fastapi"): "the demo is an application of the public adapter",
}


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return TOP


def _imports(path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("infraboot"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if not target.startswith("infraboot"):
                continue
            for alias in node.names:  # from infraboot._engine import _slot names a module
                found.add(
                    f"{target}.{alias.name}"
                    if (PACKAGE.parent / f"{target}.{alias.name}".replace(".", "/")).with_suffix(".py").exists()
                    else target
                )
    return found


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def test_the_package_root_holds_only_the_front_door_and_rooms() -> None:
    flat = {p.stem for p in PACKAGE.glob("*.py")}
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert flat == PUBLIC
    assert rooms == {*LAYERS, "_cache", "testing"}


def test_every_room_says_what_it_owns() -> None:
    for room in [*LAYERS, "_cache", "testing"]:
        doc = ast.get_docstring(ast.parse((PACKAGE / room / "__init__.py").read_text()))
        assert doc, f"{room}/__init__.py has no docstring saying what the room owns"


def test_no_import_climbs_to_a_higher_room() -> None:
    climbs = set()
    for module, path in _modules().items():
        for target in _imports(path, module):
            if target not in EVERYWHERE and _layer(target) > _layer(module):
                climbs.add((module, target))
    assert climbs == set(KNOWN_CLIMBS)
