"""A component's record has one writer: the fields of ``Slot`` are assigned by its own methods only."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infraboot import ComponentState, component
from infraboot._engine._slot import Override, Slot

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


# -- the written-out steps say what transition() says ------------------------------------------------

_S = ComponentState
_RESOURCE, _CLOSER = object(), object()


def _slot_in(state: ComponentState, *, overridden: bool) -> tuple[Slot, dict[str, Any]]:
    @component("c")
    async def c(ctx: Any) -> Any:
        yield None

    index: dict[str, Any] = {}
    overrides = {"c": Override("stand-in")} if overridden else {}
    slot = Slot(c, index, overrides, lambda: None)
    holding = state in (_S.READY, _S.UNHEALTHY, _S.STOPPING)
    slot.transition(state, resource=_RESOURCE if holding else None, closer=_CLOSER if holding else None)
    return slot, index


def _seen(slot: Slot, index: dict[str, Any]) -> tuple[Any, ...]:
    probe = slot.probe
    return (
        slot.state,
        slot.resource,
        slot.closer,
        slot.started_at is None,
        slot.ended_at is None,
        probe.healthy,
        probe.failures,
        probe.checked_at is None,
        {n: "this slot" if v is slot else type(v).__name__ for n, v in index.items()},
    )


STEPS: list[tuple[str, Callable[[Slot], None], Callable[[Slot], None]]] = [
    ("starting_now", Slot.starting_now, lambda s: s.transition(_S.STARTING)),
    (
        "ready_now",
        lambda s: s.ready_now(_RESOURCE, _CLOSER),
        lambda s: s.transition(_S.READY, resource=_RESOURCE, closer=_CLOSER),
    ),  # type: ignore[arg-type]
    ("stopping_now", Slot.stopping_now, lambda s: s.transition(_S.STOPPING)),
    ("stopped_now", Slot.stopped_now, lambda s: s.transition(_S.STOPPED, resource=None, closer=None)),
]


@pytest.mark.parametrize("overridden", [False, True], ids=["plain", "overridden"])
@pytest.mark.parametrize("state", list(ComponentState), ids=lambda s: s.value)
@pytest.mark.parametrize(("name", "step", "general"), STEPS, ids=[s[0] for s in STEPS])
def test_a_written_out_step_leaves_the_slot_and_the_index_as_transition_does(
    name: str,
    step: Callable[[Slot], None],
    general: Callable[[Slot], None],
    state: ComponentState,
    overridden: bool,
) -> None:
    """The hot path's steps (starting, ready, stopping, stopped) write what transition() writes, from any state."""
    mine, mine_index = _slot_in(state, overridden=overridden)
    theirs, theirs_index = _slot_in(state, overridden=overridden)
    mine.probe.failed("timeout")
    theirs.probe.failed("timeout")
    step(mine)
    general(theirs)
    assert _seen(theirs, theirs_index) == _seen(mine, mine_index)
