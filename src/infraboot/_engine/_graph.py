"""The component graph, as pure functions over ``{name: requires}``.

Every entry point that takes names goes through :func:`resolve`, so the same mistake
gives the same error everywhere. Nothing here recurses: a chain thousands deep is
as fine as a short one.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence

from infraboot.exceptions import ConfigError, DependencyError, UnknownComponentError

__all__ = ["Graph", "closure", "dependents", "is_name", "levels", "resolve", "unknown", "validate"]

Graph = Mapping[str, Sequence[str]]
"""Component name -> the names it requires."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def is_name(value: object) -> bool:
    """Whether *value* is a valid component name: letters, digits, ``_ - .``, not starting with a digit."""
    if not isinstance(value, str):
        return False
    # An ASCII identifier is one (the common case, without the regex); "pg-pool" and "db.replica" too.
    return (value.isidentifier() and value.isascii()) or _NAME.fullmatch(value) is not None


def unknown(name: object, registered: Collection[str]) -> UnknownComponentError:
    """The error for a name that is not registered, with a did-you-mean and the registered names."""
    import difflib

    close = difflib.get_close_matches(str(name), list(registered), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ", ".join(sorted(registered)) or "none"
    msg = (
        f"unknown component {name!r}{hint}; registered: {listed}. "
        "Register it with infraboot.register(...) or pass it to SystemInitializer"
    )
    return UnknownComponentError(msg, name=str(name), suggestion=close[0] if close else None)


def resolve(names: Iterable[str] | None, registered: Collection[str], *, call: str) -> list[str]:
    """The names of a call (every registered one for ``None``), each checked, duplicates dropped.

    A bare string is refused (it would be read as its letters), naming *call* in the fix.
    """
    if names is None:
        return list(registered)
    if isinstance(names, str | bytes):
        msg = f"{call}({names!r}): pass a list of names, e.g. {call}([{names!r}])"
        raise ConfigError(msg)
    out = list(dict.fromkeys(names))
    missing = [n for n in out if n not in registered]
    if len(missing) == 1:
        raise unknown(missing[0], registered)
    if missing:
        errors = [unknown(n, registered) for n in missing]
        hints = ", ".join(
            f"{e.name!r}" + (f" (did you mean {e.suggestion!r}?)" if e.suggestion else "") for e in errors
        )
        listed = ", ".join(sorted(registered)) or "none"
        msg = f"unknown components {hints}; registered: {listed}"
        raise UnknownComponentError(msg, name=errors[0].name, suggestion=errors[0].suggestion)
    return out


def validate(graph: Graph) -> list[str]:
    """Every name, requirements before their dependents (``closure(graph, graph)``); raises
    :class:`DependencyError` for a requirement that is not registered, or a cycle (its path shown)."""
    for name, requires in graph.items():
        missing = [r for r in requires if r not in graph]
        if missing:
            msg = (
                f"component {name!r} requires {', '.join(map(repr, missing))}, which is not registered; "
                f"register it, or remove it from {name!r}'s requires"
            )
            raise DependencyError(msg)
    # closure()'s walk, with the path kept: a requirement met again on the path closes a cycle.
    order: list[str] = []
    seen: set[str] = set()
    for root in graph:
        if root in seen:
            continue
        seen.add(root)
        path = [root]
        on_path = {root}
        stack = [iter(graph[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done = path.pop()
                on_path.discard(done)
                order.append(done)
            elif nxt in on_path:
                cycle = [*path[path.index(nxt) :], nxt]
                msg = f"dependency cycle: {' -> '.join(cycle)}; remove one of these requirements to break it"
                raise DependencyError(msg)
            elif nxt not in seen:
                seen.add(nxt)
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(graph[nxt]))
    return order


def closure(roots: Iterable[str], graph: Graph) -> list[str]:
    """*roots* and everything they require, transitively, requirements before their dependents."""
    order: list[str] = []
    seen: set[str] = set()
    for root in roots:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(graph[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                order.append(node)
            elif nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, iter(graph[nxt])))
    return order


def dependents(names: Iterable[str], graph: Graph) -> set[str]:
    """*names* and everything that requires any of them, transitively."""
    required_by: dict[str, list[str]] = {n: [] for n in graph}
    for name, requires in graph.items():
        for r in requires:
            required_by[r].append(name)
    out = set(names)
    todo = list(out)
    while todo:
        for d in required_by[todo.pop()]:
            if d not in out:
                out.add(d)
                todo.append(d)
    return out


def levels(graph: Graph) -> list[list[str]]:
    """The start levels: level 0 requires nothing, level k requires something at level k - 1."""
    depth: dict[str, int] = {}
    for name in closure(graph, graph):  # requirements first, so every requirement's depth is known
        depth[name] = 1 + max((depth[r] for r in graph[name]), default=-1)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in graph:
        out[depth[name]].append(name)
    return out
