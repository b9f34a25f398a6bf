"""The engine's frozen records behave as the dataclasses they are, though their methods are written on first use."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from infraboot._base._record import dataclass, field
from infraboot._engine._health import HealthReport
from infraboot._engine._report import ShutdownReport, StopResult


def test_a_record_is_a_frozen_dataclass_once_made() -> None:
    """Equality, hashing, repr and immutability are the dataclass ones; each instance gets its own default."""
    a, b = StopResult("redis", 0.5), StopResult("redis", 0.5)
    assert (a, hash(a), "StopResult(name='redis', duration=0.5, error=None)") == (b, hash(b), repr(a))
    assert dataclasses.is_dataclass(StopResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "other"  # type: ignore[misc]
    assert ShutdownReport().errors == {}
    assert HealthReport("liveness", "pass").time > 0


def test_arguments_are_checked_as_a_dataclass_checks_them() -> None:
    """A missing or unknown argument is a TypeError, on the first instance as on the next."""
    with pytest.raises(TypeError):
        StopResult("redis")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        StopResult("redis", 0.1, nope=1)  # type: ignore[call-arg]


def test_threads_making_the_first_instances_at_once_all_get_records() -> None:
    """The methods are written once, whichever thread makes the first instance."""

    @dataclass(frozen=True, slots=True)
    class Point:
        x: int
        tags: list[int] = field(default_factory=list)

    made: list[Point] = []
    start = threading.Barrier(8)

    def make(i: int) -> None:
        start.wait()
        made.append(Point(i))

    threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(range(8)) == sorted(p.x for p in made)
    assert all(p.tags == [] for p in made)
    assert len({id(p.tags) for p in made}) == 8


def test_importing_the_engine_writes_no_dataclass_and_loads_no_difflib() -> None:
    """`import infraboot` with the engine defers dataclasses and difflib to first use (the import-cost budget)."""
    import subprocess
    import sys

    code = (
        "import sys, infraboot; infraboot.SystemInitializer; infraboot.ensure_initialized; infraboot.component; "
        "print(sorted(m for m in ('dataclasses', 'difflib', 'tenacity') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[]" == out.stdout.strip()


def test_a_record_class_is_a_dataclass_before_its_first_instance() -> None:
    """is_dataclass / fields see a dataclass from the start (pydantic's TypeAdapter, cattrs), in a fresh process."""
    import subprocess
    import sys

    code = (
        "import dataclasses, infraboot; "
        "print(dataclasses.is_dataclass(infraboot.StartupReport), "
        "[f.name for f in dataclasses.fields(infraboot.StopResult)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "True ['name', 'duration', 'error']" == out.stdout.strip()


async def test_reports_pickle_copy_hash_and_convert_with_their_read_only_mappings() -> None:
    """A startup, health or shutdown report crosses a process boundary (pickle), copies, hashes, and converts
    (asdict, json, pydantic) as the same value; its mappings stay read-only."""
    import copy
    import json
    import pickle
    from collections.abc import AsyncIterator

    import pydantic

    import infraboot

    @infraboot.component("x")
    async def x(ctx: infraboot.Context) -> AsyncIterator[int]:
        yield 1

    system = infraboot.SystemInitializer([x])
    reports: list[object] = [await system.initialize_all(), await system.readiness(), system.liveness()]
    reports.append(await system.shutdown())
    for report in reports:
        again = pickle.loads(pickle.dumps(report))  # noqa: S301 - our own bytes
        assert report == again
        assert report == copy.deepcopy(report)
        assert hash(report) == hash(again)
        plain = dataclasses.asdict(report)  # type: ignore[call-overload]
        assert json.loads(json.dumps(plain, default=str))
        assert pydantic.TypeAdapter(type(report)).dump_python(report, mode="json")
        mappings = [v for v in vars(again).values() if isinstance(v, dict)]
        assert mappings
        for mapping in mappings:
            with pytest.raises(TypeError, match="read-only"):
                mapping["x"] = 1  # type: ignore[index]
