"""The ``infraboot`` command line (console script and ``python -m infraboot``).

- ``infraboot check [NAMES] [--json] [--timeout S]``: start, report, shut down; exit 0 / 1 / 2.
- ``infraboot wait [NAMES] --timeout S``: block until the components are reachable.
- ``infraboot graph [--format text|mermaid|dot]``: the dependency graph.
- ``infraboot demo [--once]``: the FastAPI demo on embedded defaults, no server needed.
- ``infraboot --version``.

Exit status, the same for every command and for ``infraboot.asyncio.run``:

- 0 ok; 1 degraded (only optional components down, or readiness "warn");
- 2 a required component failed, the configuration is invalid (bad ``INFRABOOT_*`` values
  included) or an optional dependency is missing: one ``infraboot: ...`` line per problem
  on stderr, a missing extra with its ``pip install`` command, never a traceback;
- 130 interrupted (Ctrl-C); 141 stdout was closed early (``infraboot graph | head -1``),
  the status a shell reports for a writer stopped by SIGPIPE.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself would double the start-up time of `infraboot --version`
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["main"]

EMBEDDED = {"REDIS_URL": "memory://", "DATABASE_URL": "sqlite+aiosqlite:///:memory:"}
EXIT_OK, EXIT_DEGRADED, EXIT_FAILED = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:  # the fast path: nothing imported but the package's front door
        from infraboot import __version__

        print(__version__)
        return EXIT_OK
    return _main(args)


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="infraboot", description="Start, check and stop service infrastructure.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    check = sub.add_parser("check", help="start the configured components, report, shut down (exit 0/1/2)")
    check.add_argument("names", nargs="*", help="components to check (default: every configured one)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--timeout", type=_seconds, default=None, metavar="S", help="give up after S seconds in all")
    wait = sub.add_parser("wait", help="block until the components are reachable (init containers, compose)")
    wait.add_argument("names", nargs="*", help="components to wait for (default: every configured one)")
    wait.add_argument("--timeout", type=_seconds, required=True, metavar="S", help="give up after S seconds (exit 2)")
    graph = sub.add_parser("graph", help="print the dependency graph of the configured components")
    graph.add_argument("--format", choices=["text", "mermaid", "dot"], default="text")
    demo = sub.add_parser("demo", help="serve the FastAPI demo on embedded defaults (no server needed)")
    demo.add_argument("--once", action="store_true", help="exit after printing instead of serving until Ctrl-C")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    if args.version:
        from infraboot import __version__

        print(__version__)
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    from infraboot.exceptions import ConfigError, StartupError

    try:
        code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not as a warning at interpreter exit
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (ConfigError, StartupError, ImportError) as exc:
        from infraboot.asyncio import _failure_lines

        lines = _failure_lines(exc)
        if lines is None:
            raise  # a bug, not a configuration: the traceback is the report
        return _say(lines)
    return code


def _dispatch(args: Any) -> int:
    import asyncio

    if args.command == "check":
        return asyncio.run(_check(args.names or None, as_json=args.json, budget=args.timeout))
    if args.command == "wait":
        return asyncio.run(_wait(args.names or None, budget=args.timeout))
    if args.command == "graph":
        return _graph(args.format)
    return _demo(once=args.once, host=args.host, port=args.port)


def _silence_stdout() -> None:
    """Point stdout at devnull, so that the final flush at exit cannot fail again (as the Python docs advise)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _say(lines: list[str]) -> int:
    for line in lines:
        print(line, file=sys.stderr)
    return EXIT_FAILED


def _seconds(text: str) -> float:
    import argparse

    from infraboot._checks import seconds_problem

    try:
        value: object = float(text)
    except ValueError:
        value = text
    problem = seconds_problem("--timeout", value, example="--timeout 30")
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return float(text)


def _configured(names: list[str] | None) -> list[str]:
    """The components to act on: the named ones, else every registered one that is not switched off."""
    import infraboot

    system = infraboot.default_system()
    if names:
        return names
    return list(system.components)


# -- check -------------------------------------------------------------------------------------------


async def _check(names: list[str] | None, *, as_json: bool, budget: float | None) -> int:
    import json
    import logging

    import infraboot

    logging.getLogger("infraboot").setLevel(logging.CRITICAL)  # the table and the waterfall say it all
    system = infraboot.default_system()
    _warn_unknown_variables(system)
    if budget is not None:
        system.configure(startup_timeout=budget, shutdown_timeout=min(budget, system.shutdown_timeout))
    try:
        try:
            report = await system.ensure_initialized(_configured(names))
            error = None
        except infraboot.StartupError as exc:
            report, error = exc.report, exc
        health = await system.health(fresh=True) if error is None else None
        if as_json:
            body: dict[str, Any] = {"startup": report.to_dict()}
            if health is not None:
                body["health"] = health.to_dict(details=True)
            print(json.dumps(body, indent=2))
        else:
            print(_table(report, health))
            print()
            print(report.render())
        if error is not None:
            sys.stdout.flush()  # the table first, then the reason, when both go to one terminal
            print(f"infraboot: {error}", file=sys.stderr)
            return EXIT_FAILED
        if health is not None and health.status == "fail":
            return EXIT_FAILED
        return EXIT_OK if report.status == "ok" and (health is None or health.status == "pass") else EXIT_DEGRADED
    finally:
        await system.shutdown()


def _warn_unknown_variables(system: Any) -> None:
    """The variables under our prefixes that look misspelt, before anything starts (the log is silenced here)."""
    from infraboot._variables import check_variables

    try:
        lines = check_variables(system.components.values(), warn=False)
    except ImportError:  # no pydantic: the start reports the missing extra
        return
    for line in lines:
        print(f"infraboot: warning: {line}", file=sys.stderr)
    sys.stderr.flush()


def _table(report: Any, health: Any) -> str:
    rows = [("component", "state", "latency", "attempts", "error")]
    for name, r in report.components.items():
        h = health.components.get(name) if health is not None else None
        latency = f"{h.latency * 1000:.1f} ms" if h is not None and h.latency is not None else "-"
        state = h.state.value if h is not None else r.state.value
        code = (
            (h.error_code if h is not None else None)
            or r.error_code
            or (r.reason if r.state.value == "disabled" else None)
        )
        rows.append((name, state, latency, str(r.attempts), code or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


# -- wait --------------------------------------------------------------------------------------------


async def _wait(names: list[str] | None, *, budget: float) -> int:
    import asyncio
    import logging
    import random
    import time

    import infraboot

    logging.getLogger("infraboot").setLevel(logging.CRITICAL)  # our progress lines say it once per round
    deadline = time.monotonic() + budget
    wanted = _configured(names)
    round_no, pause, last = 0, 0.2, "not tried yet"
    while True:
        round_no += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            print(f"infraboot: gave up after {budget:g}s: {last}", file=sys.stderr)
            return EXIT_FAILED
        infraboot._default.reset_default_system(None)  # every round from scratch, nothing half-open
        system = infraboot.default_system()
        system.configure(startup_timeout=remaining, check_interval=None, recovery=False)
        try:
            report = await system.ensure_initialized(wanted)
        except infraboot.StartupError as exc:
            report = exc.report
        finally:
            await system.shutdown()
        if report.status == "ok":  # an optional component counts too: waiting means every one answers
            ready = ", ".join(n for n, r in report.components.items() if r.state.value in ("ready", "stopped"))
            print(f"ready after {budget - remaining:.1f}s ({round_no} round{'s' if round_no > 1 else ''}): {ready}")
            return EXIT_OK
        down = [n for n, r in report.components.items() if r.error_code or r.state.value in ("failed", "blocked")]
        last = "; ".join(f"{n}: {report.components[n].error_code or report.components[n].state.value}" for n in down)
        print(f"waiting ({time.monotonic() - (deadline - budget):.1f}s): {last}", flush=True)
        await asyncio.sleep(min(random.uniform(pause / 2, pause), max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 5.0)


# -- graph -------------------------------------------------------------------------------------------


def _graph(fmt: str) -> int:
    import infraboot
    from infraboot._graph import levels

    system = infraboot.default_system()
    system.validate()
    comps = system.components
    if fmt == "mermaid":
        lines = ["graph TD"]
        for name, comp in comps.items():
            shape = f'{_node(name)}["{name}"]' if comp.required else f'{_node(name)}("{name} (optional)")'
            lines.append(f"  {shape}")
        lines += [f"  {_node(r)} --> {_node(n)}" for n, c in comps.items() for r in c.requires]
    elif fmt == "dot":
        lines = ["digraph infraboot {", "  rankdir=LR;"]
        for name, comp in comps.items():
            style = "" if comp.required else ", style=dashed"
            lines.append(f'  "{name}" [label="{name}"{style}];')
        lines += [f'  "{r}" -> "{n}";' for n, c in comps.items() for r in c.requires]
        lines.append("}")
    else:
        lines = []
        for level, names in enumerate(levels({n: tuple(c.requires) for n, c in comps.items()})):
            lines.append(f"level {level} (start together):")
            for name in names:
                comp = comps[name]
                needs = f"  <- {', '.join(comp.requires)}" if comp.requires else ""
                lines.append(f"  {name}{'' if comp.required else ' (optional)'}{needs}")
    print("\n".join(lines))
    return EXIT_OK


def _node(name: str) -> str:
    return "n_" + "".join(ch if ch.isalnum() else "_" for ch in name)


# -- demo --------------------------------------------------------------------------------------------


def _demo(*, once: bool, host: str, port: int) -> int:
    import asyncio
    import json
    import os

    for key, value in EMBEDDED.items():
        os.environ.setdefault(key, value)
    try:
        from infraboot._demo import create_app
    except ImportError:
        print('infraboot: the demo needs FastAPI and uvicorn: pip install "infraboot[all]"', file=sys.stderr)
        return EXIT_FAILED

    app = create_app()

    async def run() -> int:
        import infraboot
        from infraboot.testing import lifespan

        try:
            # Started here first (the lifespan's own start is then a no-op), so that a bad setting
            # or a failed component is a ConfigError / StartupError, not a lifespan traceback.
            await infraboot.default_system().ensure_initialized(["redis", "database"])
            async with lifespan(app):
                system = infraboot.default_system()
                print(system.report.render())
                print("\nreadiness:", json.dumps((await system.health(fresh=True)).to_dict(details=True), indent=2))
                if not once:
                    import uvicorn

                    print(
                        f"\nserving on http://{host}:{port}/ (probes: /livez /readyz /startupz /metrics); Ctrl-C stops"
                    )
                    config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="warning")
                    await uvicorn.Server(config).serve()
        except RuntimeError as exc:
            print(f"infraboot: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            stopped = [n for n, r in infraboot.default_system().report.components.items() if r.state.value == "stopped"]
            if stopped:
                print(f"\nshut down: {', '.join(stopped)}", flush=True)
        return EXIT_OK

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
