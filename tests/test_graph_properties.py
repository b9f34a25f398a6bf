"""Property-based: on any DAG, every component starts after its requirements and stops before them, once."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from infraboot import SystemInitializer

from .conftest import Journal, sim


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[str, tuple[str, ...]]]:
    n = draw(st.integers(min_value=1, max_value=12))
    names = [f"c{i}" for i in range(n)]
    graph = []
    for i, name in enumerate(names):
        # Requirements only point backwards: the graph is acyclic by construction.
        reqs = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        graph.append((name, tuple(reqs)))
    order = draw(st.permutations(graph))
    return list(order)


@settings(max_examples=60, deadline=None)
@given(graph=dags(), subset=st.integers(min_value=0, max_value=11))
def test_random_dags_start_and_stop_in_dependency_order(graph: list[tuple[str, tuple[str, ...]]], subset: int) -> None:
    journal = Journal()
    system = SystemInitializer([sim(journal, name, requires=reqs) for name, reqs in graph])
    target = graph[subset % len(graph)][0]

    async def run() -> None:
        await system.ensure_initialized([target])
        await system.ensure_initialized(None)
        await system.shutdown()

    asyncio.run(run())
    starts, stops = journal.names("ready"), journal.names("stop")
    assert sorted(starts) == sorted(name for name, _ in graph)
    assert sorted(stops) == sorted(starts)  # each exactly once
    for name, reqs in graph:
        for r in reqs:
            assert journal.index("ready", r) < journal.index("start", name)
            assert journal.index("stop", name) < journal.index("stop", r)
