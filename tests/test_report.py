"""The ``--robust-report`` reporter through pytester: files, rows, failures, escaping, xdist."""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.test_plugin import CONFTEST

HOSTILE = "<script>alert(\"x\")</script> “quoted” 'single' naïve-Ωμέγα"

SUITE = textwrap.dedent(
    """
    import pytest

    HOSTILE = {hostile!r}
    MODELS = [pytest.param("resnet50", "standard", id="resnet50-standard"),
              pytest.param("convnext_tiny", "pgd-at", id="convnext-" + HOSTILE)]

    @pytest.mark.parametrize("arch,recipe", MODELS)
    def test_measure(assert_robust, model, arch, recipe):
        ctx = {{"model": f"{{arch}} / {{recipe}} " + HOSTILE, "arch": arch, "recipe": recipe}}
        assert_robust(model, "none", eps=0, min_acc=0.0, context=ctx)
        assert_robust(model, "fgsm", eps=4 / 255, min_acc=0.0, context=ctx)
        for eps in (2 / 255, 4 / 255, 8 / 255):
            assert_robust(model, "pgd", eps=eps, min_acc=0.0, context=ctx, examples=2)

    def test_gate_fails(assert_robust, model):
        assert_robust(model, "pgd", eps=32 / 255, min_acc=0.99, context={{"model": "gate " + HOSTILE}})

    @pytest.mark.xfail(reason="expected: " + HOSTILE, strict=True)
    def test_expected_failure(assert_robust, model):
        assert_robust(model, "fgsm", eps=32 / 255, min_acc=0.99)

    def test_plain_failure():
        assert 1 == 2, HOSTILE
    """
).format(hostile=HOSTILE)


def run_suite(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, Path]:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(**{"test_suite_naïve": SUITE})
    result = pytester.runpytest_subprocess(
        "--robust-report=out",
        "--robust-profile=smoke",
        "--robust-device=cpu",
        "--robust-threads=1",
        "-p",
        "no:cacheprovider",
        *args,
    )
    return result, pytester.path / "out" / "latest"


def load(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))


def strip_run_specific(doc: Any) -> Any:
    """Drop what legitimately differs between two runs: the run section and all timings."""
    if isinstance(doc, dict):
        return {k: strip_run_specific(v) for k, v in doc.items() if k not in {"run", "timings", "cache_dir"}}
    if isinstance(doc, list):
        return [strip_run_specific(v) for v in doc]
    return doc


def test_report_folder_has_every_file_and_row(pytester: pytest.Pytester) -> None:
    result, latest = run_suite(pytester)
    result.assert_outcomes(passed=2, failed=2, xfailed=1)
    assert latest.is_dir()
    run_dirs = [p for p in (pytester.path / "out").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(run_dirs) == 1
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run_dirs[0].name)
    for name in ("report.html", "results.json", "results.csv"):
        assert (latest / name).stat().st_size > 0
    doc = load(latest)
    assert doc["schema"] == "pytest-robust/results"
    assert doc["schema_version"] == 2
    tests = {t["nodeid"].split("::", 1)[1]: t for t in doc["tests"]}
    assert len(tests) == 5
    measure = [t for name, t in tests.items() if name.startswith("test_measure")]
    assert all(len(t["rows"]) == 5 for t in measure)  # clean, FGSM, PGD at 3 eps
    assert len(doc["rows"]) == 5 + 5 + 1 + 1
    assert len(doc["details"]) == len(doc["rows"])
    # the CSV: one row per evaluation; both test_measure cases share their five (one session model)
    import pandas as pd

    frame = pd.read_csv(latest / "results.csv", keep_default_na=False)
    assert len(frame) == 5 + 1 + 1
    assert {"model", "attack", "eps", "clean_acc", "robust_acc", "ci_low", "ci_high"} <= set(frame.columns)
    measure_ids = sorted(t["nodeid"] for t in measure)
    shared = frame[frame["tests"].str.contains("test_measure")]
    assert len(shared) == 5
    assert all(t.split("; ") == measure_ids for t in shared["tests"])
    assert set(shared["test_outcomes"]) == {"passed; passed"}
    assert set(shared["gates"]) == {2}
    assert set(shared["verdict"]) == {"PASS"}
    verdicts = {t.split("::", 1)[1]: v for t, v in zip(frame["tests"], frame["verdict"], strict=True)}
    assert verdicts["test_gate_fails"] == "FAIL"
    assert verdicts["test_expected_failure"] == "XFAIL"
    assert set(frame["run_id"]) == {doc["run"]["id"]}
    assert set(frame["profile"]) == {"smoke"}
    assert "commit" in frame.columns
    # the terminal shows the one summary and the path
    out = result.stdout.str()
    assert out.count("robustness summary") == 1
    # ... and the verify command with the hash of SHA256SUMS, to be kept apart from the run
    sums = hashlib.sha256((run_dirs[0] / "SHA256SUMS").read_bytes()).hexdigest()
    assert f"verify: pytest-robust verify {run_dirs[0]} --sums-sha256 {sums}" in out
    assert "report.html" in out
    assert "resnet50 / standard" in out


def test_failing_gate_is_failed_in_the_report(pytester: pytest.Pytester) -> None:
    _result, latest = run_suite(pytester)
    doc = load(latest)
    gate = next(t for t in doc["tests"] if t["nodeid"].endswith("test_gate_fails"))
    assert gate["outcome"] == "failed"
    assert "robust accuracy" in gate["message"]
    assert "required 0.990" in gate["message"]
    # the reasons read as text, without pytest's "E   " markers
    assert gate["message"].startswith("RobustnessFailure: robustness gate FAILED")
    assert not re.search(r"^E ", gate["longrepr"], re.MULTILINE)
    assert "RobustnessFailure: robustness gate FAILED" in gate["longrepr"]
    row = doc["rows"][gate["rows"][0]]
    assert row["gate_passed"] is False
    assert row["min_acc"] == 0.99
    xfail = next(t for t in doc["tests"] if t["nodeid"].endswith("test_expected_failure"))
    assert xfail["outcome"] == "xfailed"
    assert doc["summary"]["passed"] is False
    assert doc["summary"]["outcomes"]["failed"] == 2
    html = (latest / "report.html").read_text(encoding="utf-8")
    verdict = html[html.index('id="verdict-line"') : html.index('id="table"')]
    assert "FAILED" in verdict
    assert "test_gate_fails" in verdict


def test_hostile_strings_are_escaped(pytester: pytest.Pytester) -> None:
    _, latest = run_suite(pytester)
    html = (latest / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert "naïve-Ωμέγα" in html  # non-ASCII survives, in UTF-8
    assert "“quoted”" in html
    doc = load(latest)
    assert any(HOSTILE in row["model"] for row in doc["rows"])


def test_report_is_self_contained(pytester: pytest.Pytester) -> None:
    _, latest = run_suite(pytester)
    html = (latest / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.I)
    assert "@import" not in html
    assert "url(http" not in html
    # figures: Table V bars, one eps-curve panel, a confusion + ROC pair per model; gallery images
    assert html.count("<svg") >= 1 + 1 + 2 * 2
    assert html.count('src="data:image/png;base64,') >= 3


def test_latest_points_at_the_newest_run(pytester: pytest.Pytester) -> None:
    _, latest = run_suite(pytester, "-k", "test_plain_failure")
    first = load(latest)["run"]["id"]
    _, latest = run_suite(pytester, "-k", "test_plain_failure")
    second = load(latest)["run"]["id"]
    assert first != second
    assert {p.name for p in (pytester.path / "out").iterdir()} >= {first, second, "latest"}


def test_report_path_that_looks_like_a_test_path_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a="def test_a(): pass")
    result = pytester.runpytest("--robust-report", "test_a.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*looks like a test path*--robust-report=DIR*"])


def test_no_report_without_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a="def test_a(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()


def test_xdist_gives_the_same_results_as_one_process(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    _, latest = run_suite(pytester, "-n", "0")
    serial = load(latest)
    _, latest = run_suite(pytester, "-n", "2")
    parallel = load(latest)
    assert parallel["run"]["xdist_workers"] == 2
    assert strip_run_specific(serial) == strip_run_specific(parallel)


def test_interrupted_run_still_writes_a_report(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_a="""
        def test_first(assert_robust, model):
            assert_robust(model, "fgsm", eps=4 / 255, min_acc=0.0)

        def test_interrupt():
            raise KeyboardInterrupt
        """
    )
    result = pytester.runpytest_subprocess(
        "--robust-report=out", "--robust-profile=smoke", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    doc = load(pytester.path / "out" / "latest")
    assert doc["run"]["interrupted"] is True
    assert len(doc["rows"]) == 1
    assert "INCOMPLETE" in (pytester.path / "out" / "latest" / "report.html").read_text(encoding="utf-8")


SATURATED = """
import torch

class Scaled(torch.nn.Module):
    \"\"\"Logits times 1e4: cross-entropy saturates (no parameters of its own).\"\"\"

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * 1e4

def test_saturated(assert_robust, model, pgd):
    result = assert_robust(Scaled(model), pgd, eps=8 / 255, min_acc=0.0, context={"model": "scaled"})
    assert result.passed and not result.sound
"""


def test_unsound_result_passed_under_warn_is_marked_everywhere(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_saturated=SATURATED)
    result = pytester.runpytest_subprocess(
        "--robust-report=out",
        "--robust-profile=smoke",
        "--robust-soundness=warn",
        "--robust-device=cpu",
        "--robust-threads=1",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1)
    latest = pytester.path / "out" / "latest"
    doc = load(latest)
    assert doc["schema_version"] == 2
    (row,) = doc["rows"]
    assert row["gate_passed"] is True
    assert row["sound"] is False
    assert row["status"] == "unsound"
    assert row["soundness"] == "warn"
    assert "saturation" in row["failed_checks"].split(";")
    assert row["check_saturation"] == "fail"
    assert doc["summary"]["unsound"] == 1
    import pandas as pd

    frame = pd.read_csv(latest / "results.csv", keep_default_na=False)
    assert "check_saturation" in frame.columns
    assert frame.loc[0, "check_saturation"] == "fail"
    assert str(frame.loc[0, "sound"]) == "False"
    html = (latest / "report.html").read_text(encoding="utf-8")
    verdict = html[html.index('id="verdict-line"') : html.index('id="table"')]
    assert "PASSED" in verdict
    assert "passed only under soundness=warn" in verdict
    assert "UNSOUND (passed: soundness=warn)" in verdict
    assert "saturation" in verdict
    section = html[html.index('id="soundness-table"') : html.index('id="tests"')]
    assert '<td class="l check-fail" title="' in section
    assert "<script" not in html.lower()
    out = result.stdout.str()
    # the terminal's one line for the model: UNSOUND, with the failed check named
    assert re.search(r"^UNSOUND +\S*scaled.*tests: 1 passed  unsound: .*saturation", out, re.MULTILINE), out
