"""The engine's cost in CPU instructions (valgrind's callgrind): noise-free ratios.

Wall-clock figures on a shared 2-core machine drift by tens of percent from run to run;
instruction counts do not. Each figure is a ratio of two sides counted in the same run:

- ``orchestration``: marginal instructions per no-op component (define, register, start,
  stop), infraboot ÷ a hand-written ``AsyncExitStack`` + ``gather`` (target ≤ 3);
- ``import``: ``import infraboot`` with the engine loaded ÷ ``import asyncio``, each above
  ``python -c pass`` (target ≤ 1.15).

    python benchmarks/bench_engine.py                       # both, with this Python
    python benchmarks/bench_engine.py orchestration --python ~/.pyenv/versions/3.12.1/bin/python

The other Python needs infraboot importable (``PYTHONPATH=src`` is set for it). Needs valgrind.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).parent.parent
TARGETS = {"orchestration": 3.0, "import": 1.15}

ORCHESTRATION = textwrap.dedent(
    """
    import asyncio, sys
    N, mode = int(sys.argv[2]), sys.argv[1]
    if mode == "infraboot":
        from infraboot import SystemInitializer, component
        comps = []
        for i in range(N):
            @component(f"c{i}")
            async def c(ctx):
                yield None
            comps.append(c)
        async def main():
            system = SystemInitializer(comps)
            await system.initialize_all()
            await system.shutdown()
    else:  # the floor: what a hand-written startup of N context managers costs
        from contextlib import AsyncExitStack, asynccontextmanager
        @asynccontextmanager
        async def c():
            yield None
        async def main():
            async with AsyncExitStack() as stack:
                await asyncio.gather(*(stack.enter_async_context(c()) for _ in range(N)))
    asyncio.run(main())
    """
)


def instructions(python: str, args: list[str]) -> int:
    """Instructions executed by ``python *args``, counted by callgrind, with bytecode cached as in production."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/cg.out", python, *args],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        msg = f"valgrind printed no instruction count:\n{out.stderr[-2000:]}"
        raise RuntimeError(msg)
    return int(found.group(1))


def orchestration(python: str) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(ORCHESTRATION)
    try:
        instructions(python, [f.name, "infraboot", "1"])  # warm the bytecode cache
        per = {}
        for mode in ("infraboot", "hand"):
            lo, hi = instructions(python, [f.name, mode, "200"]), instructions(python, [f.name, mode, "400"])
            per[mode] = (hi - lo) / 200
    finally:
        os.unlink(f.name)
    print(f"instructions per no-op component: infraboot {per['infraboot']:,.0f}, hand-written {per['hand']:,.0f}")
    return per["infraboot"] / per["hand"]


def import_cost(python: str) -> float:
    engine = "import infraboot; infraboot.SystemInitializer; infraboot.ensure_initialized; infraboot.component"
    instructions(python, ["-c", engine])  # warm the bytecode cache
    floor = instructions(python, ["-c", "pass"])
    ours, asyncio_ = instructions(python, ["-c", engine]), instructions(python, ["-c", "import asyncio"])
    print(f"instructions: python -c pass {floor:,}, import asyncio {asyncio_:,}, infraboot with the engine {ours:,}")
    return (ours - floor) / (asyncio_ - floor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="*", help="orchestration, import (default: both)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to count (default: this one)")
    args = parser.parse_args()
    measures = {"orchestration": orchestration, "import": import_cost}
    unknown = sorted(set(args.what) - set(measures))
    if unknown:
        parser.error(f"unknown measure(s) {', '.join(unknown)}; choose from {', '.join(measures)}")
    missed = False
    version = subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    for what in args.what or list(measures):
        value = measures[what](args.python)
        target = TARGETS[what]
        missed |= value > target
        verdict = "met" if value <= target else "missed"
        print(f"{what} (Python {version}): {value:.2f} x the floor (target <= {target}) {verdict}")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
