"""A worker under infraboot.asyncio.run that reports, every few milliseconds, whether it is draining."""

from __future__ import annotations

import asyncio
import sys

import infraboot
import infraboot.asyncio


async def main(system: infraboot.SystemInitializer) -> None:
    print("worker started", flush=True)
    while True:
        print(f"tick draining={system.drainer.active}", flush=True)
        await asyncio.sleep(0.02)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    infraboot.asyncio.run(main, components=[])
    print("worker stopped", flush=True)
    sys.exit(0)
