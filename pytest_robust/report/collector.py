"""The reporter plugin object: collects every test's outcome and results on the controller.

Registered by :func:`pytest_robust.plugin.pytest_configure` in the controlling process only (never
in a pytest-xdist worker), like pytest's junitxml. It reads results from ``user_properties``, which
pytest-xdist ships from the workers with each report. At the session's end it takes what the report
needs of pytest into a frozen :class:`~pytest_robust.report.context.RunContext`, builds the results
document in memory, writes the run folder when ``--robust-report`` is given (also after an
interruption, Ctrl-C, when the report says it is incomplete) and prints the one terminal summary
from that document. It imports :mod:`pytest_robust.keys`, never the plugin.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_robust.keys import CONFIG_KEY, FINDING, PROPERTY, RESULT_COUNTS_KEY, RUN_ID_KEY, WORKERS_KEY
from pytest_robust.report.context import RunContext
from pytest_robust.report.results import TestRecord

if TYPE_CHECKING:
    from pytest_robust.hookspec import ReportSection

log = logging.getLogger(__name__)

_MAX_LONGREPR = 20_000


class ReportCollector:
    def __init__(self, config: pytest.Config, base: Path | None) -> None:
        self.config = config
        #: the report folder (``--robust-report``); None: summarise only, write nothing
        self.base = base
        self.records: dict[str, TestRecord] = {}
        self.document: dict[str, Any] | None = None
        self.started = datetime.datetime.now(datetime.UTC)
        self.t0 = time.perf_counter()
        self.written: Path | None = None
        self.error: str | None = None
        self.interrupted = False

    # --- collection of reports -------------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rec = self.records.setdefault(report.nodeid, TestRecord(nodeid=report.nodeid))
        rec.duration_s += float(getattr(report, "duration", 0.0))
        outcome = _outcome(report)
        if outcome is not None and _worse(outcome, rec.outcome):
            rec.outcome = outcome
            rec.message = _message(report)
            rec.longrepr = _longrepr(report)
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            for name, value in report.user_properties:
                if name == PROPERTY:
                    rec.results.append(json.loads(str(value)))
                elif name == FINDING:
                    rec.findings.append(json.loads(str(value)))

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        self.interrupted = True

    # --- writing ----------------------------------------------------------------------------------

    def context(self, exitstatus: int) -> RunContext:
        """The run as the report records it, taken from pytest's configuration now."""
        config = self.config
        rc = config.stash[CONFIG_KEY]
        counts = config.stash.get(RESULT_COUNTS_KEY, {"hit": 0, "computed": 0})
        xdist = config.pluginmanager.hasplugin("xdist")
        return RunContext(
            config=rc,
            run_id=config.stash[RUN_ID_KEY],
            base=self.base,
            rootpath=config.rootpath,
            command=(Path(sys.argv[0]).name, *config.invocation_params.args),
            invocation_dir=config.invocation_params.dir,
            xdist_workers=config.getoption("numprocesses", None) if xdist else None,
            options=robust_options(config),
            result_cache={
                "hit": counts["hit"],
                "computed": counts["computed"],
                "recompute": bool(config.getoption("robust_recompute")),
                "folder": str(rc.resolved_result_cache_dir()),
            },
            workers={k: dict(v) for k, v in config.stash.get(WORKERS_KEY, {}).items()},
            started=self.started,
            duration_s=time.perf_counter() - self.t0,
            exitstatus=exitstatus,
            interrupted=self.interrupted,
            sections=tuple(report_sections(config, self._details()) if self.base is not None else ()),
        )

    def _details(self) -> list[dict[str, Any]]:
        return [r for rec in sorted(self.records.values(), key=lambda x: x.nodeid) for r in rec.results]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from pytest_robust.report.build import build, write_report

        try:
            context = self.context(int(exitstatus))
            self.document = build(list(self.records.values()), context)
            if self.base is not None:
                self.written = write_report(self.document, context)
        except Exception as exc:  # a broken report must not hide the test results, nor pass the run
            log.exception("pytest-robust: could not write the report")
            self.error = f"{type(exc).__name__}: {exc}"
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The one robustness summary: a line per model, then the report's paths and the cache."""
        from pytest_robust.report.terminal import summary_lines, worker_lines

        tr = terminalreporter
        if self.error is not None:
            tr.write_sep("=", "robustness summary", red=True)
            what = "report could not be written" if self.base is not None else "summary could not be built"
            tr.write_line(f"the {what}: {self.error}")
            return
        document = self.document
        if document is None or not document["rows"]:
            for line in worker_lines(document) if document is not None else []:
                tr.write_line(line)
            _cache_line(tr, self.config)
            return
        tr.write_sep("=", "robustness summary")
        for line in summary_lines(document):
            tr.write_line(line)
        _cache_line(tr, self.config)
        if self.written is None:
            tr.write_line("details: per evaluation, with --robust-report")
            return
        tr.write_line(f"report: {self.written / 'report.html'}")
        tr.write_line(f"latest: {self.written.parent / 'latest' / 'report.html'}")
        from pytest_robust.evidence import SUMS, sha256

        try:  # the list's own hash, printed to be kept apart from the run (it catches tampering)
            sums = f" --sums-sha256 {sha256((self.written / SUMS).read_bytes())}"
        except OSError:
            sums = ""
        tr.write_line(f"verify: pytest-robust verify {self.written}{sums}")


def _cache_line(terminalreporter: Any, config: pytest.Config) -> None:
    """One line: how many evaluations the result cache answered, how many were computed, and where."""
    counts = config.stash.get(RESULT_COUNTS_KEY, None)
    if not counts or not (counts["hit"] or counts["computed"]):
        return
    where = config.stash[CONFIG_KEY].resolved_result_cache_dir()
    recompute = " (--robust-recompute: not read)" if config.getoption("robust_recompute") else ""
    terminalreporter.write_line(
        f"result cache: {counts['hit']} hit, {counts['computed']} computed{recompute}, {where}"
    )


def robust_options(config: pytest.Config) -> dict[str, Any]:
    """The run's ``--robust-*`` options as pytest resolved them (every option of the plugin has a
    ``robust_`` destination); a profile by its name, paths as strings."""

    def plain(value: Any) -> Any:
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return str(getattr(value, "name", value))

    return {k: plain(v) for k, v in sorted(vars(config.option).items()) if k.startswith("robust_")}


def report_sections(config: pytest.Config, results: list[dict[str, Any]]) -> list[ReportSection]:
    """The sections plugins add through ``pytest_robust_report_sections``, validated.

    A plugin that raises or returns anything but a list of :class:`ReportSection` is a
    :class:`RobustConfigError` naming the hook and its implementations (the report is then not
    written, and the terminal says why).
    """
    import copy

    from pytest_robust.errors import RobustConfigError
    from pytest_robust.hookspec import check_sections

    hook = config.hook.pytest_robust_report_sections
    impls = hook.get_hookimpls()
    if not impls:
        return []
    implementers = ", ".join(str(i.plugin_name) for i in impls)
    source = f"pytest_robust_report_sections (implemented by {implementers})"
    try:
        answers = hook(config=config, results=copy.deepcopy(results))
    except Exception as exc:
        raise RobustConfigError(f"{source} raised {type(exc).__name__}: {exc}") from exc
    return [section for answer in answers for section in check_sections(answer, source)]


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


#: pytest's marker of an error line (``E   ``) at the start of a line of a failure's text
_E_PREFIX = re.compile(r"^E {1,3}", re.MULTILINE)


def _longrepr(report: pytest.TestReport) -> str:
    """The failure's text for the report: a pytest-robust error (the message the plugin shortened
    the report to, a string) without pytest's ``E`` markers; any other traceback as pytest gave it."""
    if not report.longrepr:
        return ""
    text = _strip_worker_line(report.longreprtext)
    if isinstance(report.longrepr, str):
        text = _E_PREFIX.sub("", text)
    return text[:_MAX_LONGREPR]


def _message(report: pytest.TestReport) -> str:
    """One line saying why: the crash message, the skip reason, or the xfail reason (never with
    pytest's ``E`` markers)."""
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
    text = str(longrepr).strip()
    errors = [line for line in text.splitlines() if _E_PREFIX.match(line)]
    if errors:  # a pytest-robust error: "E   Type: message" and its details
        return _E_PREFIX.sub("", errors[0]).strip()
    return text
