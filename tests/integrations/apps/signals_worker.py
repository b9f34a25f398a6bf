"""A worker under infraboot.asyncio.run for the signal tests: the ``marker`` component and a required Redis.

MARKER_FILE and REDIS_* as for signals_app.py; ``main`` prints ``worker serving`` and waits for ever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import infraboot
import infraboot.asyncio

MARKER = Path(os.environ["MARKER_FILE"])


def note(line: str) -> None:
    with MARKER.open("a") as f:
        f.write(line + "\n")


@infraboot.component("marker")
async def marker(ctx: infraboot.Context) -> AsyncIterator[str]:
    note("started")
    yield "marker"
    note("stopped")


async def main() -> None:
    print("worker serving", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
    infraboot.register(marker)
    infraboot.asyncio.run(main, components=["marker", "redis"])
    print("worker stopped", flush=True)
