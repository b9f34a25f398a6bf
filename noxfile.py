"""Chores: nox -s tests | tests_lowest | lint | typing | docs | bench."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python=["3.11", "3.12", "3.13"])
def tests(session: nox.Session) -> None:
    """The whole suite on every supported Python, against the local servers (scripts/services.sh starts them)."""
    session.run("bash", "scripts/services.sh", external=True)
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def tests_lowest(session: nox.Session) -> None:
    """The whole suite against the lowest supported versions of every dependency (tests/constraints-lowest.txt)."""
    session.run("bash", "scripts/services.sh", external=True)
    session.install("-c", "tests/constraints-lowest.txt", "-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "examples", "benchmarks", "noxfile.py")


@nox.session
def typing(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the site with warnings as errors, after running every code block and example it shows."""
    session.install("-e", ".[dev,docs]")
    session.run("pytest", "tests/test_docs.py", "tests/test_examples.py")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark table (docs/performance.md); svcs and dishka are installed here only."""
    session.run("bash", "scripts/services.sh", external=True)
    session.install("-e", ".[dev]", "svcs", "dishka", "cashews", "aiocache")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """The flapping soak for ten minutes (tests/soak/); writes its figures to docs/performance.md."""
    session.run("bash", "scripts/services.sh", external=True)
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/soak.py", "--write", *session.posargs)
