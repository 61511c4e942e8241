"""report.html in headless Chromium (Debian's package; installed by .ci/run and the nox session).

Skipped only when Chromium or playwright cannot be found, and the skip says which.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import browser
from tests.test_report import run_suite


def test_report_renders_offline_without_errors(pytester: pytest.Pytester, tmp_path: Path) -> None:
    reason = browser.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    _, latest = run_suite(pytester)
    shot = tmp_path / "report.png"
    result = browser.render(latest / "report.html", shot)
    browser.keep_artifact(shot, "report.png")
    assert result.console_errors == ()
    assert result.external_requests == ()
    assert result.scripts == 0
    assert result.title.startswith("pytest-robust report ")
    svgs = [f for f in result.figures if not f.name.startswith("img")]
    images = [f for f in result.figures if f.name.startswith("img")]
    assert len(svgs) >= 6
    assert len(images) >= 3
    for figure in result.figures:
        assert figure.width > 0, figure
        assert figure.height > 0, figure
        assert figure.loaded, figure
    assert shot.stat().st_size > 10_000
