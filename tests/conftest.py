from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import infraboot


class Journal:
    """Records what simulated components did, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.running: set[str] = set()
        self.max_parallel = 0

    def add(self, what: str, name: str) -> None:
        self.events.append((what, name))

    def index(self, what: str, name: str) -> int:
        return self.events.index((what, name))

    def names(self, what: str) -> list[str]:
        return [n for w, n in self.events if w == what]


@pytest.fixture
def journal() -> Journal:
    return Journal()


def sim(
    journal: Journal,
    name: str,
    *,
    requires: tuple[str, ...] = (),
    required: bool = True,
    delay: float = 0.0,
    fail: BaseException | None = None,
    fail_times: int = 0,
    stop_error: BaseException | None = None,
    gate: asyncio.Event | None = None,
    **settings: Any,
) -> infraboot.Component[str]:
    """A simulated component that records start and stop in *journal*."""
    calls = {"n": 0}

    @infraboot.component(name, requires=requires, required=required, **settings)
    async def comp(ctx: infraboot.Context) -> AsyncIterator[str]:
        calls["n"] += 1
        journal.add("start", name)
        journal.running.add(name)
        journal.max_parallel = max(journal.max_parallel, len(journal.running))
        try:
            if gate is not None:
                await gate.wait()
            if delay:
                await asyncio.sleep(delay)
            if fail is not None and (fail_times == 0 or calls["n"] <= fail_times):
                raise fail
        finally:
            journal.running.discard(name)
        for dep in requires:
            assert ctx.get(dep) == f"<{dep}>"
        journal.add("ready", name)
        yield f"<{name}>"
        journal.add("stop", name)
        if stop_error is not None:
            raise stop_error

    comp.calls = calls  # type: ignore[attr-defined]
    return comp


@pytest.fixture
def no_backoff() -> Iterator[None]:
    with infraboot.set_testing(attempts=3):
        yield
