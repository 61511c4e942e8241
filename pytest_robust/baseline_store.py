"""The plugin's side of baselines: one file per gate under ``--robust-baseline=DIR``.

Lifecycle as pytest users know it from pytest-regressions and syrupy: a gate without a baseline
is evaluated, its baseline is written, and the test fails with "baseline created: review and
commit it"; the next run compares with it; ``--robust-baseline-update`` rewrites baselines
deliberately (the gate then passes on its other requirements). The file is written by the
controlling process only: a gate (in a pytest-xdist worker or not) attaches the baseline's text
to its test report, and :class:`BaselineWriter`, registered in the controller, writes it when the
report arrives. No torch at import.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pytest

from pytest_robust.errors import RobustError

if TYPE_CHECKING:
    from pytest_robust.gate import RobustResult

#: ``user_properties`` name under which a gate hands a new baseline to the controller
PROPERTY = "pytest_robust.baseline"


class BaselineCreated(RobustError, AssertionError):
    """The gate had no baseline: one was written from this run; review and commit it."""


class BaselineStore:
    """Where each gate's baseline lives, and the create / compare / update decision."""

    def __init__(self, root: Path, *, update: bool) -> None:
        self.root = root
        self.update = update
        self._gates: dict[str, int] = {}

    def next_gate(self, nodeid: str) -> int:
        """1 for a test's first gate, 2 for its second, ... (one file per gate)."""
        self._gates[nodeid] = self._gates.get(nodeid, 0) + 1
        return self._gates[nodeid]

    def run(
        self, item: pytest.Item, run_gate: Callable[..., RobustResult], kwargs: dict[str, Any]
    ) -> RobustResult:
        """Run one gate against its stored baseline, or create / update the baseline from it."""
        __tracebackhide__ = True
        from pytest_robust.baseline import Baseline, BaselineError, is_baseline_file, relative_path
        from pytest_robust.gate import RobustnessFailure

        nodeid = item.nodeid
        gate = self.next_gate(nodeid)
        rel = relative_path(nodeid, gate)
        path = self.root / rel
        if path.exists() and not self.update:
            return run_gate(baseline=Baseline.load(path), **kwargs)
        if path.exists() and not is_baseline_file(path):
            raise BaselineError(f"{path} exists and is not a pytest-robust baseline: not overwriting it")
        try:
            result = run_gate(**kwargs)
        except RobustnessFailure as exc:
            note = (
                f"\n  baseline        not written ({path}): a baseline records an accepted model, and this "
                "gate failed"
            )
            raise type(exc)(f"{exc}{note}", exc.result) from None
        text = Baseline.from_result(result.evaluation, test=nodeid, gate=gate).to_text()
        payload = {"path": rel.as_posix(), "text": text, "update": self.update}
        item.user_properties.append((PROPERTY, json.dumps(payload, sort_keys=True)))
        if self.update:
            return result
        raise BaselineCreated(
            f"baseline created: {path}\n"
            f"review and commit it: later runs compare this gate with it "
            f"(robust accuracy {result.robust_acc:.3f}, n={result.n}); the test fails once so that a "
            "missing baseline never passes silently"
        )


class BaselineWriter:
    """Writes the baselines that gates hand over in their test reports (controller only)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.written: list[tuple[str, bool]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        from pytest_robust.baseline import BaselineError, write_text_atomic

        for name, value in report.user_properties:
            if name != PROPERTY:
                continue
            payload = json.loads(str(value))
            rel = PurePosixPath(payload["path"])
            if rel.is_absolute() or ".." in rel.parts:
                raise BaselineError(f"refusing to write a baseline outside {self.root}: {rel}")
            write_text_atomic(self.root / rel, payload["text"])
            self.written.append((str(rel), bool(payload.get("update"))))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.written:
            return
        terminalreporter.write_sep("-", "robust baselines")
        for rel, update in sorted(self.written):
            what = "updated" if update else "created (review and commit it)"
            terminalreporter.write_line(f"{what}: {self.root / rel}")
