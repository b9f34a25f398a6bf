"""A component's record has one writer: the fields of ``Slot`` are assigned by its own methods only."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "src" / "infraboot"
#: The fields other rooms read; they say what happened through Slot's methods (``transition``, ...).
OWNED = {
    "start",
    "settled",
    "attempts",
    "healable",
    "recovery",
    "stop_task",
    "state",
    "resource",
    "closer",
    "closing",
}


def _targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        out: list[ast.expr] = []
        for target in node.targets:
            out.extend(target.elts if isinstance(target, ast.Tuple) else [target])
        return out
    if isinstance(node, ast.AugAssign | ast.AnnAssign):
        return [node.target]
    return []


def outside_writes(source: str) -> list[tuple[int, str]]:
    """``x.<owned field> = ...`` through any name but ``self``, as (line, field).

    ``self.<field>`` is the writing class's own attribute: Slot's in its methods, another
    class's own attribute of the same name elsewhere.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        for target in _targets(node):
            if not (isinstance(target, ast.Attribute) and target.attr in OWNED):
                continue
            if isinstance(target.value, ast.Name) and target.value.id == "self":
                continue
            found.append((node.lineno, target.attr))
    return found


def _holders() -> list[Path]:
    """The modules that may hold a slot: those that import it (and its own)."""
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.name == "_slot.py" or "Slot" in p.read_text()]


def test_only_slot_methods_assign_a_slots_fields() -> None:
    """No module assigns a slot's state, start, attempts, recovery or stop task from outside Slot's methods."""
    holders = _holders()
    assert {"_slot.py", "_startup.py", "_monitor.py", "_teardown.py", "_system.py"} <= {p.name for p in holders}
    found = [
        f"{path.relative_to(PACKAGE)}:{line} {field}"
        for path in holders
        for line, field in outside_writes(path.read_text())
    ]
    assert [] == found


def test_the_check_finds_assignments_from_outside() -> None:
    """The check is not vacuous: plain, tuple and augmented assignments to another object's field are found."""
    source = "def f(slot):\n    slot.attempts = 2\n    slot.healable, x = False, 1\n    slot.attempts += 1\n"
    assert [(2, "attempts"), (3, "healable"), (4, "attempts")] == sorted(outside_writes(source))


def test_a_class_may_write_its_own_attribute_of_the_same_name() -> None:
    """``self.start`` is the writing class's own attribute: not a write into a slot."""
    assert [] == outside_writes("class Start:\n    def go(self):\n        self.start = None\n")
