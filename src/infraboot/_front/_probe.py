"""``infraboot probe live|ready|startup``: an exec probe answered from the state file, in one line.

It imports neither the application nor a driver nor argparse: it reads the file the running
process keeps fresh (``INFRABOOT_STATE_FILE``, see ``docs/workers.md``) and exits

- 0: ``pass`` or ``warn`` (degraded: only optional components are down);
- 1: ``fail``, no state file yet, or a stale one (the process stopped writing: dead or stuck);
- 2: the command itself is wrong (no file named, an unknown probe): the line says the fix.
"""

from __future__ import annotations

import os
import sys
import time

from infraboot._engine._statefile import ENV_FILE, KINDS, judge, read_state

__all__ = ["main"]

USAGE = f"usage: infraboot probe {{{'|'.join(KINDS)}}} [--file PATH] [--max-age S]"


def main(argv: list[str]) -> int:
    """Run the probe for *argv* (what follows ``probe``); print one line; return the exit status."""
    kind: str | None = None
    path = os.environ.get(ENV_FILE, "").strip()
    max_age: float | None = None
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help"):
            print(USAGE)
            print(__doc__.split("\n\n", 1)[1].strip() if __doc__ else "")
            return 0
        if arg in ("--file", "--max-age"):
            value = next(args, None)
            if value is None:
                return _usage(f"{arg} needs a value")
            if arg == "--file":
                path = value
            else:
                try:
                    max_age = float(value)
                except ValueError:
                    max_age = -1.0
                if not max_age > 0 or max_age == float("inf"):
                    return _usage(f"--max-age={value!r}: must be a finite number of seconds > 0, e.g. --max-age 10")
        elif kind is None and not arg.startswith("-"):
            kind = arg
        else:
            return _usage(f"unexpected argument {arg!r}")
    if kind not in KINDS:
        return _usage(f"which probe? one of {', '.join(KINDS)}" if kind is None else f"unknown probe {kind!r}")
    if not path:
        return _usage(f"no state file: set {ENV_FILE} (as the running process has it) or pass --file PATH")
    try:
        body = read_state(path)
    except (OSError, ValueError) as exc:
        print(f"{kind}: fail (cannot read {path}: {type(exc).__name__})")
        return 1
    ok, line = judge(body, kind, now=time.time(), max_age=max_age)
    print(line)
    return 0 if ok else 1


def _usage(problem: str) -> int:
    print(f"infraboot: probe: {problem}", file=sys.stderr)
    print(USAGE, file=sys.stderr)
    return 2
