"""The reporter plugin object: collects every test's outcome and results on the controller.

Registered by :func:`pytest_robust.plugin.pytest_configure` only when ``--robust-report`` is given
and only in the controlling process (never in a pytest-xdist worker), like pytest's junitxml. It
reads results from ``user_properties``, which pytest-xdist ships from the workers with each
report. The run folder is written in ``pytest_sessionfinish`` — also after an interruption
(Ctrl-C), when the report says it is incomplete.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_robust.report.results import TestRecord

log = logging.getLogger(__name__)

_MAX_LONGREPR = 20_000


class ReportCollector:
    def __init__(self, config: pytest.Config, base: Path) -> None:
        self.config = config
        self.base = base
        self.records: dict[str, TestRecord] = {}
        self.started = datetime.datetime.now(datetime.UTC)
        self.t0 = time.perf_counter()
        self.written: Path | None = None
        self.error: str | None = None
        self.interrupted = False

    # --- collection of reports -------------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from pytest_robust.plugin import FINDING, PROPERTY

        rec = self.records.setdefault(report.nodeid, TestRecord(nodeid=report.nodeid))
        rec.duration_s += float(getattr(report, "duration", 0.0))
        outcome = _outcome(report)
        if outcome is not None and _worse(outcome, rec.outcome):
            rec.outcome = outcome
            rec.message = _message(report)
            rec.longrepr = _strip_worker_line(report.longreprtext)[:_MAX_LONGREPR] if report.longrepr else ""
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            for name, value in report.user_properties:
                if name == PROPERTY:
                    rec.results.append(json.loads(str(value)))
                elif name == FINDING:
                    rec.findings.append(json.loads(str(value)))

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        self.interrupted = True

    # --- writing ----------------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from pytest_robust.report.build import write_report

        try:
            self.written = write_report(self, exitstatus=int(exitstatus))
        except Exception as exc:  # a broken report must not hide the test results, nor pass the run
            log.exception("pytest-robust: could not write the report")
            self.error = f"{type(exc).__name__}: {exc}"
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from pytest_robust.report.build import terminal_table

        tr = terminalreporter
        if self.error is not None:
            tr.write_sep("=", "robustness report", red=True)
            tr.write_line(f"the report could not be written: {self.error}")
            return
        if self.written is None:
            return
        tr.write_sep("=", "robustness report")
        for line in terminal_table(self.written / "results.json"):
            tr.write_line(line)
        tr.write_line(f"report: {self.written / 'report.html'}")
        tr.write_line(f"latest: {self.base / 'latest' / 'report.html'}")
        from pytest_robust.evidence import SUMS, sha256

        try:  # the list's own hash, printed to be kept apart from the run (it catches tampering)
            sums = f" --sums-sha256 {sha256((self.written / SUMS).read_bytes())}"
        except OSError:
            sums = ""
        tr.write_line(f"verify: pytest-robust verify {self.written}{sums}")


_RANK = {o: i for i, o in enumerate(("passed", "skipped", "xpassed", "xfailed", "failed", "error"))}


def _worse(new: str, old: str) -> bool:
    return _RANK.get(new, 0) > _RANK.get(old, 0)


def _outcome(report: pytest.TestReport) -> str | None:
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if xfail:
            return "xfailed" if report.skipped else ("xpassed" if report.passed else "failed")
        return str(report.outcome)
    if report.failed:
        return "error"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return None


def _strip_worker_line(text: str) -> str:
    """Drop pytest-xdist's ``[gw0] linux -- Python ...`` header, so reports match across -n."""
    return re.sub(r"\A\s*\[gw\d+\] [^\n]*\n", "", text).strip()


def _message(report: pytest.TestReport) -> str:
    """One line saying why: the crash message, the skip reason, or the xfail reason."""
    if hasattr(report, "wasxfail") and report.skipped:
        return f"expected failure: {report.wasxfail}" if report.wasxfail else "expected failure"
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple):  # skip: (path, line, reason)
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    return str(longrepr).strip()
