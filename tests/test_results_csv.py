"""results.csv: one row per evaluation, the tests and gates that used it, an honest verdict, run columns."""

from __future__ import annotations

import copy
import io
from typing import Any

import pandas as pd
import pytest

from pytest_robust.report import evaluations as ev
from pytest_robust.report import results as res
from tests.test_report_units import MANIFEST, _check, _result

RUN = {"id": "20250101-000000-abcdef", "command": ["pytest"], "duration_s": 1.0}
GIT = {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True}


def _gated(result: dict[str, Any], *, min_acc: float, passed: bool, policy: str = "point-estimate") -> Any:
    """The same evaluation behind another gate (the plugin records a reused evaluation identically)."""
    other = copy.deepcopy(result)
    other["min_acc"] = min_acc
    status = "pass" if passed else "fail"
    reason = f"robust accuracy 0.500 {'>=' if passed else '<'} required {min_acc:.3f}"
    other["verdict"].update(passed=passed, status=status, policy=policy, reason=reason)
    return other


def _document(*records: res.TestRecord) -> dict[str, Any]:
    return res.build_document(list(records), run=RUN, manifest={**MANIFEST, "git": GIT})


def _csv(document: dict[str, Any]) -> pd.DataFrame:
    """results.csv as written and read back (what a reader gets)."""
    text = ev.evaluations_frame(document).to_csv(index=False)
    return pd.read_csv(io.StringIO(text), keep_default_na=False)


def test_two_tests_recording_one_evaluation_give_one_row_listing_both() -> None:
    shared = _result()
    other = _result(attack="fgsm")
    doc = _document(
        res.TestRecord(nodeid="t::b", results=[_gated(shared, min_acc=0.3, passed=True)]),
        res.TestRecord(nodeid="t::a", results=[shared, other]),
    )
    assert len(doc["rows"]) == 3  # results.json keeps one row per (test, result)
    rows = ev.evaluation_rows(doc)
    assert len(rows) == 2
    first, second = rows  # in order of first appearance in the document's rows (t::a, then t::b)
    assert (first["evaluation"], first["rows"], first["tests"]) == (0, "0; 2", "t::a; t::b")
    assert first["test_outcomes"] == "passed; passed"
    assert (first["gates"], first["gates_passed"], first["gate_passed"]) == (2, 2, True)
    assert first["min_acc"] == 0.3  # the strictest requirement
    assert (second["attack"], second["tests"], second["gates"]) == ("fgsm", "t::a", 1)
    frame = _csv(doc)
    assert len(frame) == 2
    assert list(frame["tests"]) == ["t::a; t::b", "t::a"]
    assert "nodeid" not in frame.columns
    assert "row" not in frame.columns


def test_a_timing_difference_does_not_split_an_evaluation() -> None:
    """The same evaluation computed in two xdist workers differs only in its timings."""
    shared = _result()
    again = copy.deepcopy(shared)
    again["evaluation"]["timings"] = {"total_s": 9.0, "checks_s": 3.0}
    doc = _document(
        res.TestRecord(nodeid="t::a", results=[shared]), res.TestRecord(nodeid="t::b", results=[again])
    )
    (row,) = ev.evaluation_rows(doc)
    assert row["tests"] == "t::a; t::b"
    assert row["timings"] == {"total_s": 1.0, "checks_s": 0.5}  # the first one's
    changed = copy.deepcopy(shared)
    changed["evaluation"]["robust_acc"] = 0.25
    doc = _document(
        res.TestRecord(nodeid="t::a", results=[shared]), res.TestRecord(nodeid="t::b", results=[changed])
    )
    assert len(ev.evaluation_rows(doc)) == 2


def test_a_failed_test_makes_its_evaluation_fail_even_when_its_gate_passed() -> None:
    shared = _result()
    doc = _document(
        res.TestRecord(nodeid="t::fails", outcome="failed", message="assert 1 == 2", results=[shared]),
        res.TestRecord(nodeid="t::passes", results=[shared]),
    )
    assert all(r["gate_passed"] is True for r in doc["rows"])  # what the old CSV showed, per test
    (row,) = _csv(doc).to_dict("records")
    assert row["verdict"] == "FAIL"
    assert row["test_outcome"] == "failed"
    assert row["test_outcomes"] == "failed; passed"
    assert row["gate_passed"] is True  # the gate's own decision, next to the verdict
    assert (row["gates"], row["gates_passed"]) == (2, 2)
    # an error in setup or teardown of a test that used it, too
    doc = _document(res.TestRecord(nodeid="t::a", outcome="error", results=[shared]))
    assert ev.evaluation_rows(doc)[0]["verdict"] == "FAIL"


def test_gates_are_aggregated_honestly() -> None:
    shared = _result()
    strict = _gated(shared, min_acc=0.9, passed=False, policy="lower-confidence-bound")
    doc = _document(
        res.TestRecord(nodeid="t::a", results=[shared]),
        res.TestRecord(nodeid="t::b", outcome="failed", results=[strict]),
    )
    (row,) = ev.evaluation_rows(doc)
    assert (row["gates"], row["gates_passed"], row["gate_passed"]) == (2, 1, False)
    assert row["min_acc"] == 0.9
    assert row["policy"] == "point-estimate; lower-confidence-bound"
    assert row["reason"] == "robust accuracy 0.500 < required 0.900"  # the failed gate's
    assert row["status"] == "fail"
    assert row["verdict"] == "FAIL"
    # a gate that failed in a test that passed anyway (it caught the failure): an expected failure
    doc = _document(res.TestRecord(nodeid="t::raises", results=[strict]))
    (row,) = ev.evaluation_rows(doc)
    assert (row["gate_passed"], row["test_outcome"], row["verdict"]) == (False, "passed", "XFAIL")


def test_skipped_and_expected_failures_are_not_a_pass() -> None:
    shared = _result()
    skipped = _document(res.TestRecord(nodeid="t::a", outcome="skipped", results=[shared]))
    assert ev.evaluation_rows(skipped)[0]["verdict"] == "SKIPPED"
    assert ev.evaluation_rows(skipped)[0]["gate_passed"] is True
    xfailed = _document(
        res.TestRecord(nodeid="t::a", outcome="xfailed", results=[shared]),
        res.TestRecord(nodeid="t::b", outcome="skipped", results=[shared]),
    )
    (row,) = ev.evaluation_rows(xfailed)
    assert (row["verdict"], row["test_outcome"]) == ("XFAIL", "xfailed")
    # one test that passed with it is enough for a pass (the other was skipped)
    mixed = _document(
        res.TestRecord(nodeid="t::a", outcome="skipped", results=[shared]),
        res.TestRecord(nodeid="t::b", results=[shared]),
    )
    (row,) = ev.evaluation_rows(mixed)
    assert (row["verdict"], row["test_outcome"], row["test_outcomes"]) == (
        "PASS",
        "skipped",
        "skipped; passed",
    )


def test_an_unsound_evaluation_reads_unsound_whatever_the_tests_did() -> None:
    saturated = _result(checks=[_check("saturation", "fail", "zero gradient")], soundness="warn")
    for outcome in ("passed", "failed", "xfailed", "skipped"):
        doc = _document(res.TestRecord(nodeid="t::a", outcome=outcome, results=[saturated]))
        (row,) = ev.evaluation_rows(doc)
        assert (row["verdict"], row["status"], row["sound"]) == ("UNSOUND", "unsound", False), outcome
        assert row["failed_checks"] == "saturation"


@pytest.mark.parametrize(
    ("outcomes", "sound", "gates_passed", "verdict"),
    [
        (["passed"], True, True, "PASS"),
        (["xpassed"], True, True, "PASS"),
        (["passed", "failed"], True, True, "FAIL"),
        (["passed", "error"], True, True, "FAIL"),
        (["passed"], False, True, "UNSOUND"),
        (["failed"], False, False, "UNSOUND"),
        (["skipped", "skipped"], True, True, "SKIPPED"),
        (["xfailed"], True, True, "XFAIL"),
        (["xfailed"], True, False, "XFAIL"),
        (["passed"], True, False, "XFAIL"),
        (["mystery"], True, True, "FAIL"),
    ],
)
def test_verdict_table(outcomes: list[str], sound: bool, gates_passed: bool, verdict: str) -> None:
    assert ev.evaluation_verdict(outcomes, sound=sound, gates_passed=gates_passed) == verdict


def test_worst_outcome_order() -> None:
    assert ev.worst_outcome(["passed", "skipped"]) == "skipped"
    assert ev.worst_outcome(["xfailed", "skipped"]) == "xfailed"
    assert ev.worst_outcome(["xfailed", "xpassed"]) == "xpassed"
    assert ev.worst_outcome(["xpassed", "failed", "passed"]) == "failed"
    assert ev.worst_outcome(["error", "failed"]) == "error"
    assert ev.worst_outcome([]) == ""


def test_every_row_carries_the_run_profile_and_commit() -> None:
    doc = _document(
        res.TestRecord(nodeid="t::a", results=[_result(), _result(attack="fgsm")]),
    )
    frame = _csv(doc)
    assert list(frame.columns[:4]) == ["run_id", "profile", "commit", "git_dirty"]
    assert list(frame["run_id"]) == [doc["run"]["id"]] * 2
    assert list(frame["profile"]) == [doc["manifest"]["profile"]["name"]] * 2 == ["smoke"] * 2
    assert list(frame["commit"]) == [doc["manifest"]["git"]["commit"]] * 2
    assert list(frame["git_dirty"]) == [True, True]
    # outside git: empty cells, not a made-up commit
    outside = res.build_document(
        [res.TestRecord(nodeid="t::a", results=[_result()])], run=RUN, manifest={**MANIFEST, "git": None}
    )
    row = ev.evaluation_rows(outside)[0]
    assert (row["commit"], row["git_dirty"]) == (None, None)


def test_formula_cells_are_neutralised_in_every_text_column() -> None:
    hostile = _result(model='=HYPERLINK("http://x","y")')
    hostile["context"]["arch"] = "+cmd|' /C calc'!A0"
    doc = res.build_document(
        [
            res.TestRecord(nodeid="-t::a", results=[hostile]),
            res.TestRecord(nodeid="@t::b", results=[hostile]),
        ],
        run={"id": "=1+1"},
        manifest={"profile": {"name": "@smoke"}, "git": {"commit": "-abc", "dirty": False}},
    )
    frame = _csv(doc)
    (row,) = frame.to_dict("records")
    assert row["model"] == '\'=HYPERLINK("http://x","y")'
    assert row["arch"] == "'+cmd|' /C calc'!A0"
    assert row["tests"] == "'-t::a; @t::b"
    assert (row["run_id"], row["profile"], row["commit"]) == ("'=1+1", "'@smoke", "'-abc")
    assert row["robust_acc"] == 0.5  # numbers untouched
    assert row["time_total_s"] == 1.0


def test_no_results_give_a_header_only() -> None:
    doc = _document(res.TestRecord(nodeid="t::plain"))
    text = ev.evaluations_frame(doc).to_csv(index=False)
    assert text.splitlines() == [",".join((*ev.RUN_COLUMNS, *ev.LEAD_COLUMNS))]
