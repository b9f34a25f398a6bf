"""Chores: nox -s tests | lint | typing | docs | bench."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite against the local servers (scripts/services.sh starts what is missing)."""
    session.run("bash", "scripts/services.sh", external=True)
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "noxfile.py")


@nox.session
def typing(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Check that every example the docs point to runs (the test suite runs them too)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "tests/test_examples.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Orchestration benchmarks; prints a table (not part of the test suite)."""
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/bench_core.py", *session.posargs)
