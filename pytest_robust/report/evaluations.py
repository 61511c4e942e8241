"""``results.csv``: one row per evaluation, with the tests and gates that used it and the run's identity.

The document's ``rows`` hold one entry per (test, recorded result): a test that reuses an
evaluation another test ran (the plugin memoises them) records it again, so one evaluation can sit
in several rows with different gates and test outcomes. The CSV is the table a reader sorts and
filters, so it has one row per evaluation: its numbers once, the tests that used it with their
outcomes, the gates on it aggregated (how many, how many passed, the strictest requirement) and a
``verdict`` that never reads as a pass when a test using the evaluation failed.

Two results are the same evaluation when their ``evaluation`` JSON is identical apart from its
``timings`` (the same evaluation computed twice, in two xdist workers, differs only there). Pure
functions over the results document (:mod:`pytest_robust.report.results`); the columns are
described in ``docs/results-schema.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from pytest_robust.report.results import baseline_columns, neutralise

if TYPE_CHECKING:
    import pandas as pd

#: Test outcomes from least to most severe: a row's ``test_outcome`` is the most severe of its tests'.
OUTCOME_SEVERITY: Final = ("passed", "skipped", "xfailed", "xpassed", "failed", "error")
#: The ``verdict`` column's values (see :func:`evaluation_verdict`).
VERDICTS: Final = ("UNSOUND", "DEGENERATE", "FAIL", "SKIPPED", "PASS", "XFAIL")
#: The run's identity, on every row.
RUN_COLUMNS: Final = ("run_id", "profile", "commit", "git_dirty")
#: The columns before the evaluation's own: which evaluation, the document rows, tests and verdict.
LEAD_COLUMNS: Final = ("evaluation", "rows", "tests", "test_outcomes", "test_outcome", "verdict")
#: Row fields that belong to one test (replaced by ``tests`` / ``test_outcomes``) or are flattened.
_PER_TEST: Final = frozenset({"row", "nodeid", "test_outcome", "timings"})
#: Row fields taken from the test's ``context``: several tests may name one evaluation differently.
_CONTEXT: Final = ("model", "arch", "recipe", "checkpoint_sha256", "study_seed")
#: Row fields of one gate (aggregated over the gates on the evaluation by :func:`gate_columns`).
_GATE: Final = frozenset(
    {
        "min_acc",
        "policy",
        "gate_passed",
        "reason",
        "requirements",
        "status",
        "sound",
        "soundness",
        "failed_checks",
    }
)
_BASELINE: Final = tuple(baseline_columns({}))
_JOIN: Final = "; "


def evaluation_key(result: dict[str, Any]) -> str:
    """The identity of a recorded result's evaluation: its JSON without ``timings``, keys sorted."""
    evaluation = {k: v for k, v in result["evaluation"].items() if k != "timings"}
    return json.dumps(evaluation, sort_keys=True, default=str)


def group_by_evaluation(document: dict[str, Any]) -> list[list[int]]:
    """The document's row indices grouped by evaluation, groups in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, detail in enumerate(document["details"]):
        groups.setdefault(evaluation_key(detail), []).append(i)
    return list(groups.values())


def worst_outcome(outcomes: Iterable[str]) -> str:
    """The most severe of ``outcomes`` (:data:`OUTCOME_SEVERITY`; an unknown outcome counts as an
    error); ``""`` for none."""
    rank = {o: i for i, o in enumerate(OUTCOME_SEVERITY)}
    return max(outcomes, key=lambda o: rank.get(o, len(rank)), default="")


def evaluation_verdict(
    outcomes: list[str], *, sound: bool, gates_passed: bool, degenerate: bool = False
) -> str:
    """What one evaluation's row means, from the outcomes of the tests that used it and its gates:

    - ``UNSOUND``: it failed a soundness check, whatever its gates and tests decided (also when a
      gate passed under ``soundness=warn``): an unsound number is worse than no number;
    - ``DEGENERATE``: the model (almost) never predicts a class of the data
      (:mod:`pytest_robust.degeneracy`): its accuracies measure the class balance;
    - ``FAIL``: some test that used it failed or errored (whatever its gates decided);
    - ``SKIPPED``: every test that used it was skipped;
    - ``PASS``: every gate on it passed and some test that used it passed (or passed unexpectedly);
    - ``XFAIL``: otherwise, a failure the tests expected: the tests that ran were expected
      failures, or a gate failed in a test that passed anyway (it caught the failure).
    """
    if not sound:
        return "UNSOUND"
    if degenerate:
        return "DEGENERATE"
    if any(o not in ("passed", "skipped", "xfailed", "xpassed") for o in outcomes):
        return "FAIL"
    if all(o == "skipped" for o in outcomes):
        return "SKIPPED"
    if gates_passed and any(o in ("passed", "xpassed") for o in outcomes):
        return "PASS"
    return "XFAIL"


def _distinct(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v is not None and v != ""))


def _one_or_joined(values: Iterable[Any]) -> Any:
    """The value when the rows agree (None when none has one), else the distinct values ``; ``-joined."""
    distinct = _distinct(values)
    if not distinct:
        return None
    return distinct[0] if len(distinct) == 1 else _JOIN.join(str(v) for v in distinct)


def gate_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The gates on one evaluation (one per row), aggregated: ``min_acc`` the strictest requirement,
    ``policy`` the distinct policies, ``gates`` / ``gates_passed`` the counts, ``gate_passed`` true
    only when every gate passed, ``reason`` the failed gates' reasons (the first gate's when none
    failed), ``requirements`` every distinct requirement, ``status`` the worst (``unsound`` >
    ``fail`` > ``pass``), ``sound`` only when every gate saw it sound, ``soundness`` the distinct
    soundness policies and ``failed_checks`` every failed check once."""
    passed = [bool(r["gate_passed"]) for r in rows]
    failed_reasons = [r["reason"] for r, ok in zip(rows, passed, strict=True) if not ok]
    statuses = {str(r["status"]) for r in rows}
    status = next((s for s in ("unsound", "fail") if s in statuses), str(rows[0]["status"]))
    requirements = _distinct(part for r in rows for part in str(r.get("requirements") or "").split(_JOIN))
    failed_checks = _distinct(c for r in rows for c in str(r.get("failed_checks") or "").split(";"))
    return {
        "min_acc": max(float(r["min_acc"]) for r in rows),
        "policy": _JOIN.join(str(p) for p in _distinct(r["policy"] for r in rows)),
        "gates": len(rows),
        "gates_passed": sum(passed),
        "gate_passed": all(passed),
        "reason": _JOIN.join(_distinct(failed_reasons)) if failed_reasons else rows[0]["reason"],
        "requirements": _JOIN.join(requirements),
        "status": status,
        "sound": all(bool(r.get("sound", True)) for r in rows),
        "soundness": _JOIN.join(str(s) for s in _distinct(r.get("soundness") for r in rows)),
        "failed_checks": ";".join(failed_checks),
    }


def run_columns(document: dict[str, Any]) -> dict[str, Any]:
    """``run_id``, ``profile`` (the evaluation profile's name), ``commit`` and ``git_dirty`` of the
    checkout (None outside git or when the document does not say)."""
    manifest = document.get("manifest") or {}
    profile = (manifest.get("profile") or {}).get("name") or (manifest.get("config") or {}).get("profile")
    git = manifest.get("git") or {}
    return {
        "run_id": (document.get("run") or {}).get("id"),
        "profile": profile,
        "commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
    }


def evaluation_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per evaluation of ``document`` (see the module docstring), in order of first
    appearance in ``document["rows"]``: the run columns, ``evaluation`` (its index), ``rows`` (the
    document rows it stands for), ``tests``, ``test_outcomes`` (``; ``-joined, one per test that
    used it, in row order), ``test_outcome`` (the most severe), ``verdict``, then the columns of a
    document row with the gate and context ones aggregated and ``timings`` kept as a dict."""
    run = run_columns(document)
    out = []
    for index, ids in enumerate(group_by_evaluation(document)):
        rows = [document["rows"][i] for i in ids]
        tests = {str(r["nodeid"]): str(r["test_outcome"]) for r in rows}  # a test may gate it twice
        gates = gate_columns(rows)
        baseline = next((r for r in rows if r.get("vs_baseline") is not None), rows[0])
        row: dict[str, Any] = {
            **run,
            "evaluation": index,
            "rows": _JOIN.join(str(r["row"]) for r in rows),
            "tests": _JOIN.join(tests),
            "test_outcomes": _JOIN.join(tests.values()),
            "test_outcome": worst_outcome(tests.values()),
            "verdict": evaluation_verdict(
                list(tests.values()),
                sound=gates["sound"],
                gates_passed=gates["gate_passed"],
                degenerate=any(bool(r.get("degenerate")) for r in rows),
            ),
        }
        for key, value in rows[0].items():
            if key in _PER_TEST:
                continue
            if key in _CONTEXT:
                row[key] = _one_or_joined(r.get(key) for r in rows)
            elif key in _GATE:
                if "gates" not in row:  # the gate block, in place of the first gate column
                    row.update(gates)
            elif key in _BASELINE:
                row[key] = baseline.get(key)
            else:
                row[key] = value
        row["timings"] = dict(rows[0]["timings"])
        out.append(row)
    return out


def evaluations_frame(document: dict[str, Any]) -> pd.DataFrame:
    """:func:`evaluation_rows` as the pandas table of ``results.csv``: timings flattened into
    ``time_*`` columns, text that a spreadsheet would run as a formula neutralised (test ids and
    model labels come from test code). Without results, the run and lead columns only."""
    import pandas as pd

    flat = []
    for row in evaluation_rows(document):
        r = {k: neutralise(v) for k, v in row.items() if k != "timings"}
        r.update({f"time_{k}": v for k, v in row["timings"].items()})
        flat.append(r)
    if not flat:
        return pd.DataFrame(columns=[*RUN_COLUMNS, *LEAD_COLUMNS])
    return pd.DataFrame(flat)
