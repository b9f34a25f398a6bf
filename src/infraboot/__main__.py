"""The ``infraboot`` command line (console script and ``python -m infraboot``).

- ``infraboot check [NAMES] [--json] [--timeout S] [--group G] [--app M:A]``: start, report, shut down; exit 0 / 1 / 2.
- ``infraboot wait [NAMES] --timeout S [--app M:A]``: block until the components are reachable.
- ``infraboot graph [--format text|mermaid|dot] [--app M:A]``: the dependency graph.
- ``infraboot demo [--once]``: the FastAPI demo on embedded defaults, no server needed.
- ``infraboot probe live|ready|startup``: an exec probe answered from ``INFRABOOT_STATE_FILE``.
- ``infraboot --version``.

``--app module:attr`` (or ``INFRABOOT_APP``) acts on an application's own system: the app's
(FastAPI, Starlette), a ``SystemInitializer``, or what a module registers when imported; nothing
of the app starts.

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
import time

TYPE_CHECKING = False  # typing itself would double the start-up time of `infraboot --version`
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["main"]

EMBEDDED = {"REDIS_URL": "memory://", "DATABASE_URL": "sqlite+aiosqlite:///:memory:"}
EXIT_OK, EXIT_DEGRADED, EXIT_FAILED = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
#: The share of ``check --timeout S`` kept for shutting down (at most ``SHUTDOWN_RESERVE_MAX`` seconds) and
#: for the interpreter's exit after ours (at most ``EXIT_RESERVE_MAX``: unloading SQLAlchemy and redis-py takes ~0.1 s).
SHUTDOWN_SHARE, SHUTDOWN_RESERVE_MAX = 0.1, 2.0
EXIT_SHARE, EXIT_RESERVE_MAX = 0.1, 0.25


def main(argv: Sequence[str] | None = None) -> int:
    # check --timeout S counts from the process's start when we are the program, else from here
    started = time.monotonic() - (_age() if argv is None else 0.0)
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:  # the fast path: nothing imported but the package's front door
        from infraboot import __version__

        print(__version__)
        return EXIT_OK
    if args[:1] == ["probe"]:  # the exec probe: no argparse, no app, no driver (docs/workers.md)
        from infraboot._front._probe import main as probe

        return probe(args[1:])
    return _main(args, started)


def _age() -> float:
    """Seconds since this process started (Linux), the interpreter's own start included; 0 elsewhere."""
    import os

    try:
        with open("/proc/self/stat", "rb") as f:
            ticks = int(f.read().rpartition(b")")[2].split()[19])  # field 22, starttime, in clock ticks
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def _main(argv: list[str], started: float) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="infraboot", description="Start, check and stop service infrastructure.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    check = sub.add_parser("check", help="start the configured components, report, shut down (exit 0/1/2)")
    check.add_argument("names", nargs="*", help="components to check (default: every configured one)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--timeout", type=_seconds, default=None, metavar="S", help="take at most S seconds in all")
    check.add_argument("--group", default=None, metavar="G", help="judge by health group G (its members, its policy)")
    _app_option(check)
    wait = sub.add_parser("wait", help="block until the components are reachable (init containers, compose)")
    wait.add_argument("names", nargs="*", help="components to wait for (default: every configured one)")
    wait.add_argument("--timeout", type=_seconds, required=True, metavar="S", help="give up after S seconds (exit 2)")
    _app_option(wait)
    graph = sub.add_parser("graph", help="print the dependency graph of the configured components")
    graph.add_argument("--format", choices=["text", "mermaid", "dot"], default="text")
    _app_option(graph)
    demo = sub.add_parser("demo", help="serve the FastAPI demo on embedded defaults (no server needed)")
    demo.add_argument("--once", action="store_true", help="exit after printing instead of serving until Ctrl-C")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    # main() answers `probe` before argparse loads (an exec probe runs every few seconds); listed here for --help
    probe = sub.add_parser(
        "probe", help="exec probe from the state file ($INFRABOOT_STATE_FILE): exit 0 pass/warn, 1 fail, 2 misuse"
    )
    probe.add_argument("kind", choices=["live", "ready", "startup"], help="which probe to answer")
    probe.add_argument("--file", metavar="PATH", help="the state file (default: $INFRABOOT_STATE_FILE)")
    probe.add_argument("--max-age", metavar="S", help="call the file stale when older than S seconds")
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
        code = _dispatch(args, started)
        sys.stdout.flush()  # a closed pipe shows here, not as a warning at interpreter exit
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (ConfigError, StartupError, ImportError) as exc:
        from infraboot._front._failures import failure_lines

        lines = failure_lines(exc)
        if lines is None:
            raise  # a bug, not a configuration: the traceback is the report
        return _say(lines)
    return code


def _app_option(parser: Any) -> None:
    from infraboot._base._names import APP_VARIABLE

    parser.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help=f"the application's own system: its FastAPI/Starlette app, a SystemInitializer, or a module "
        f"registering components (default: ${APP_VARIABLE}); nothing of the app starts",
    )


def _dispatch(args: Any, started: float) -> int:
    import asyncio

    if args.command == "demo":
        return _demo(once=args.once, host=args.host, port=args.port)
    if args.command == "probe":  # main() answers `infraboot probe ...` first; this is for a caller of _main()
        from infraboot._front._probe import main as probe

        options = [
            *(["--file", args.file] if args.file else []),
            *(["--max-age", args.max_age] if args.max_age else []),
        ]
        return probe([args.kind, *options])
    target = _target(args.app)
    if args.command == "check":
        deadline = None if args.timeout is None else _deadline(started, args.timeout)
        return asyncio.run(_check(target, args.names, as_json=args.json, deadline=deadline, group=args.group))
    if args.command == "wait":
        return asyncio.run(_wait(target, args.names, budget=args.timeout, started=started))
    return _graph(target, args.format)


def _deadline(started: float, budget: float) -> float:
    """When our own work must be done for the process to end *budget* seconds after *started*."""
    return started + budget - min(EXIT_SHARE * budget, EXIT_RESERVE_MAX)


def _target(spec: str | None) -> Any:
    """The system to act on (an ``AppTarget``): ``--app``'s, else ``INFRABOOT_APP``'s, else the default one."""
    import os

    from infraboot._base._names import APP_VARIABLE

    source = "--app"
    if spec is None:
        spec, source = os.environ.get(APP_VARIABLE, "").strip() or None, APP_VARIABLE
    if spec is None:
        import infraboot
        from infraboot._web._app import AppTarget

        return AppTarget(infraboot.default_system(), None, "")
    from infraboot._web._app import load_app

    return load_app(spec, source=source)


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

    from infraboot._base._checks import seconds_problem

    try:
        value: object = float(text)
    except ValueError:
        value = text
    problem = seconds_problem("--timeout", value, example="--timeout 30")
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return float(text)


def _configured(target: Any, names: list[str] | None) -> list[str]:
    """The components to act on: the named ones, else those the app's lifespan starts, else every registered one."""
    if names:
        return names
    if target.components is not None:
        return list(target.components)
    return list(target.system.components)


# -- check -------------------------------------------------------------------------------------------


async def _check(
    target: Any, names: list[str] | None, *, as_json: bool, deadline: float | None, group: str | None = None
) -> int:
    import json
    import logging

    import infraboot

    logging.getLogger("infraboot").setLevel(logging.CRITICAL)  # the table and the waterfall say it all
    _quiet_asyncio()
    system = target.system
    _warn_unknown_variables(system)
    if group is not None:  # an unknown group is said before anything starts; its members are what is checked
        chosen = system.health_group(group)
        names = names or [n for n, c in system.components.items() if chosen.covers(c)]
    wanted = _configured(target, names)
    reserve = 0.0 if deadline is None else _budget(system, wanted, deadline)
    try:
        try:
            report = await system.ensure_initialized(wanted)
            error = None
        except infraboot.StartupError as exc:
            report, error = exc.report, exc
        health = None
        if error is None:
            if deadline is not None:
                system.configure(health_timeout=min(_left(deadline - reserve), system.health_timeout))
            health = await system.health(fresh=True, group=group)
        if as_json:
            body: dict[str, Any] = {"startup": report.to_dict()}
            if health is not None:
                body["health"] = health.to_dict(details=True)
            print(json.dumps(body, indent=2))
        else:
            print(_table(report, health, getattr(error, "component", None)))
            print()
            print(report.render())
        failures = _failures(system, report, health, error)
        if failures:
            sys.stdout.flush()  # the table first, then the reasons, when both go to one terminal
            for line in failures:
                print(line, file=sys.stderr)
        if error is not None or (health is not None and health.http_status == 503):  # a group may keep a failure at 200
            return EXIT_FAILED
        return EXIT_OK if report.status == "ok" and (health is None or health.status == "pass") else EXIT_DEGRADED
    finally:
        await system.shutdown(timeout=None if deadline is None else _left(deadline))


def _budget(system: Any, wanted: list[str], deadline: float) -> float:
    """Fit a startup and its shutdown before *deadline*; returns the seconds kept for the shutdown."""
    _prepare(system, wanted)  # the drivers' imports, before the startup's clock: inside our budget
    reserve = max(0.0, min(SHUTDOWN_SHARE * (deadline - time.monotonic()), SHUTDOWN_RESERVE_MAX))
    system.configure(
        startup_timeout=_left(deadline - reserve),
        shutdown_timeout=min(_left(deadline), system.shutdown_timeout),  # a rollback's too
    )
    return reserve


def _quiet_asyncio() -> None:
    """Keep asyncio's late reports off stderr, whose lines are ours (one per problem).

    A driver's connect cancelled at the deadline can leave a future whose exception nobody
    retrieves (asyncpg: ``unexpected connection_lost() call``); asyncio logs it with a
    traceback when the future is collected, after our lines.
    """
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def _left(until: float) -> float:
    """Seconds from now to *until*; a sliver when none are left (a budget is never zero)."""
    return max(until - time.monotonic(), 0.01)


def _prepare(system: Any, names: list[str]) -> None:
    """Configure the components a startup of *names* would start: their drivers are imported now.

    A startup does this again before its clock starts (so an attempt's timeout never pays for
    an import); doing it first puts the imports inside ``check --timeout``'s budget, where the
    wall clock counts them. Problems are left to the startup, which reports every one.
    """
    import contextlib

    from infraboot._engine._graph import closure

    graph = {n: tuple(c.requires) for n, c in system.components.items()}
    with contextlib.suppress(Exception):
        for name in closure([n for n in names if n in graph], graph):
            with contextlib.suppress(Exception):
                system.component(name).configure()


def _failures(system: Any, report: Any, health: Any, error: Any) -> list[str]:
    """One ``infraboot: ...`` line per component that failed to start or fails its probe."""
    lines = [] if error is None else [f"infraboot: {error}"]
    named = {getattr(error, "component", None)}
    culprit = report.components.get(getattr(error, "component", None) or "")
    out_of_time = culprit is not None and culprit.error_code == "timeout"  # the startup's time ran out for all
    for name, r in report.components.items():
        if name in named or r.state.value not in ("failed", "blocked"):
            continue
        if r.error_code == "cancelled" and not out_of_time:
            continue  # a start cut short by another's failure is no failure of its own: the table says it
        named.add(name)
        kind = "required" if r.required else "optional"
        target = system.component(name).target
        where = f"{name!r} at {target}" if target else repr(name)
        if r.state.value == "blocked":
            cause = r.reason or "a requirement is unavailable"
            lines.append(f"infraboot: {kind} component {where} did not start ({cause})")
            continue
        if r.error_code == "cancelled":
            cause = f"no answer before the startup's time ran out; {r.reason}" if r.reason else "no answer in time"
            lines.append(f"infraboot: {kind} component {where} did not finish starting ({cause})")
            continue
        cause = f"{r.error_code}: {str(r.error).rstrip('.')}" if r.error else str(r.error_code)
        attempts = f"{r.attempts} attempt{'' if r.attempts == 1 else 's'}"
        lines.append(f"infraboot: {kind} component {where} failed after {attempts} ({cause})")
    for name, h in health.components.items() if health is not None else ():
        if name not in named and h.status != "pass":
            kind = "required" if h.required else "optional"
            lines.append(f"infraboot: {kind} component {name!r} fails its probe ({h.error_code or h.state.value})")
    return lines


def _warn_unknown_variables(system: Any) -> None:
    """The variables under our prefixes that look misspelt, before anything starts (the log is silenced here)."""
    from infraboot._base._variables import check_variables

    try:
        lines = check_variables(system.components.values(), warn=False)
    except ImportError:  # no pydantic: the start reports the missing extra
        return
    for line in lines:
        print(f"infraboot: warning: {line}", file=sys.stderr)
    sys.stderr.flush()


def _table(report: Any, health: Any, culprit: str | None = None) -> str:
    """The check table; *culprit* is the component whose failure stopped the startup (others are cancelled)."""
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
        if h is None and r.error_code == "cancelled":
            state = "cancelled"
            code = f"not finished: stopped because {culprit!r} failed" if culprit else "not finished: startup stopped"
            if r.reason:  # it had been retrying: say after what
                code += f" ({r.reason})"
        rows.append((name, state, latency, str(r.attempts), code or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


# -- wait --------------------------------------------------------------------------------------------


async def _wait(target: Any, names: list[str] | None, *, budget: float, started: float) -> int:
    import asyncio
    import logging

    import infraboot
    from infraboot._engine._backoff import backoff
    from infraboot._engine._startup import last_error_code

    logging.getLogger("infraboot").setLevel(logging.CRITICAL)  # our progress lines say it once per round
    _quiet_asyncio()
    deadline = _deadline(started, budget)
    system = target.system
    wanted = _configured(target, names)
    system.configure(check_interval=None, recovery=False)
    reserve = _budget(system, wanted, deadline)
    round_no, last = 0, "not tried: importing the drivers (and the app) took the whole time"
    errors: dict[str, str] = {}  # the last real error of each component, over the rounds
    while True:
        round_no += 1
        remaining = deadline - reserve - time.monotonic()
        if remaining <= 0:
            print(f"infraboot: gave up after {budget:g}s: {last}", file=sys.stderr)
            return EXIT_FAILED
        system.configure(startup_timeout=remaining, shutdown_timeout=min(_left(deadline), system.shutdown_timeout))
        try:  # every round from scratch: the last one shut everything down, nothing is left half-open
            report = await system.ensure_initialized(wanted)
        except infraboot.StartupError as exc:
            report = exc.report
        finally:
            await system.shutdown(timeout=_left(deadline))
        if report.status == "ok":  # an optional component counts too: waiting means every one answers
            ready = ", ".join(n for n, r in report.components.items() if r.state.value in ("ready", "stopped"))
            rounds = f"{round_no} round{'s' if round_no > 1 else ''}"
            print(f"ready after {time.monotonic() - started:.1f}s ({rounds}): {ready}")
            return EXIT_OK
        down = [n for n, r in report.components.items() if r.error_code or r.state.value in ("failed", "blocked")]
        for n in down:  # a start cut short says the error it was retrying after, else the last round's
            r = report.components[n]
            real = last_error_code(r) if r.error_code == "cancelled" else (r.error_code or r.state.value)
            ours = r.start_offset is not None and r.start_offset + (r.duration or 0.0) >= remaining - 0.01
            if real == "timeout" and ours:  # ended by our own budget, not by the server: it said nothing new
                continue
            if real is not None:
                errors[n] = real
        last = "; ".join(f"{n}: {errors.get(n, 'no answer (still starting)')}" for n in down)
        print(f"waiting ({time.monotonic() - started:.1f}s): {last}", flush=True)
        pause = backoff(round_no, initial=0.4, maximum=5.0, forever=True)
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))


# -- graph -------------------------------------------------------------------------------------------


def _graph(target: Any, fmt: str) -> int:
    from infraboot._engine._graph import closure, levels

    system = target.system
    system.validate()
    comps = system.components
    if target.components is not None:  # what the app's lifespan starts, with what those require
        graph = {n: tuple(c.requires) for n, c in comps.items()}
        shown = set(closure([n for n in target.components if n in graph], graph))
        comps = {n: c for n, c in comps.items() if n in shown}
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
        from infraboot._web._demo import create_app
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
