"""Development sessions. Dependencies come from pyproject.toml's extras, nowhere else.

nox -s tests       # the project's tests
nox -s suites      # the acceptance suites with the HTML report, on the synthetic default
nox -s lint        # ruff
nox -s typecheck   # mypy --strict
nox -s bench       # benchmarks (pytest-benchmark), then benchmarks/peers.py --write BENCHMARKS.md
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
PYTHON = "3.11"


def install_chromium(session: nox.Session) -> None:
    """Debian's Chromium for the HTML report's rendering test, installed when missing.

    .ci/install-chromium never fails: without root, apt-get or a network it says so, and the
    rendering test skips. The playwright package (in the test extra) drives this system browser;
    `playwright install` is never run.
    """
    session.run("bash", ".ci/install-chromium", external=True)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the project's tests (pass extra pytest arguments after --)."""
    session.install("-e", ".[test]")
    install_chromium(session)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def suites(session: nox.Session) -> None:
    """Run the acceptance suites with the report (synthetic data; pass --robust-data PATH after --)."""
    session.install("-e", ".")
    session.run("pytest", "suites/", "--robust-report", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: attack and training throughput, then ours against the peer libraries (issue #12),
    whose table replaces the marked block of BENCHMARKS.md (see there)."""
    session.install("-e", ".[test,bench]")
    session.run(
        "pytest",
        "benchmarks/",
        "--benchmark-only",
        "--benchmark-columns=min,mean,max,rounds",
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )
    session.run("python", "benchmarks/peers.py", "--write", "BENCHMARKS.md", env={"OMP_NUM_THREADS": "1"})
