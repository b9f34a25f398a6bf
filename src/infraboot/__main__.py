"""The ``infraboot`` command line: ``infraboot --version``, ``infraboot demo``, ``infraboot check``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

EMBEDDED = {"REDIS_URL": "memory://", "DATABASE_URL": "sqlite+aiosqlite:///:memory:"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infraboot", description="Start, check and stop service infrastructure.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="start the built-in components on embedded defaults (no server needed)")
    demo.add_argument("--once", action="store_true", help="exit after printing instead of serving until Ctrl-C")
    check = sub.add_parser("check", help="start the configured components, report, shut down")
    check.add_argument("names", nargs="*", help="components to check (default: redis database)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    if args.version:
        from infraboot import __version__

        print(__version__)
        return 0
    if args.command == "demo":
        for key, value in EMBEDDED.items():
            os.environ.setdefault(key, value)
        return asyncio.run(_demo(once=args.once))
    if args.command == "check":
        return asyncio.run(_check(args.names or ["redis", "database"], as_json=args.json))
    parser.print_help()
    return 0


async def _demo(*, once: bool) -> int:
    from collections.abc import AsyncIterator

    import infraboot

    @infraboot.component("greeter", requires=["redis", "database"], required=False, timeout=2.0)
    async def greeter(ctx: infraboot.Context) -> AsyncIterator[str]:
        await ctx.get("redis").set("demo:greeting", "hello from infraboot")
        yield "greeter"

    infraboot.register(greeter)
    try:
        status = await _start(["redis", "database", "greeter"])
        if status == 2:
            return status
        from sqlalchemy import text

        greeting = await infraboot.get_redis().get("demo:greeting")
        async with infraboot.get_session() as session:
            answer = (await session.execute(text("SELECT 6 * 7"))).scalar_one()
        print(f"\nredis says: {greeting!r}; the database says 6 * 7 = {answer}")
        if not once:
            print("running; press Ctrl-C to stop")
            await asyncio.Event().wait()
    finally:
        report = await infraboot.shutdown()
        names = ", ".join(s.name for s in report.stopped)
        print(f"\nshutdown {'ok' if report.ok else 'with errors'} in {report.duration:.3f}s: {names}")
    return status


async def _start(names: list[str], *, as_json: bool = False) -> int:
    import infraboot

    try:
        report = await infraboot.ensure_initialized(names)
    except infraboot.ConfigError as exc:
        for problem in exc.problems:
            print(f"infraboot: {problem}", file=sys.stderr)
        return 2
    except infraboot.StartupError as exc:
        report = exc.report
        print(json.dumps(report.to_dict(), indent=2) if as_json else report.render())
        print(f"\ninfraboot: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if as_json else report.render())
    return 0 if report.status == "ok" else 1


async def _check(names: list[str], *, as_json: bool) -> int:
    import infraboot

    try:
        return await _start(names, as_json=as_json)
    finally:
        await infraboot.shutdown()


if __name__ == "__main__":
    sys.exit(main())
