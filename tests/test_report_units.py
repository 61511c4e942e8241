"""Unit tests of the pieces behind the report: subsets, examples, the clean attack, memoisation, rows."""

from __future__ import annotations

import base64
import copy
import io
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import nn

from pytest_robust.attacks import PGD, NoAttack, make_attack
from pytest_robust.data.dataset import ImageDataset, stratified_indices
from pytest_robust.errors import RobustConfigError
from pytest_robust.evaluate import EvalResult, evaluate
from pytest_robust.examples import amplify, png_base64
from pytest_robust.plugin import memoised_evaluate
from pytest_robust.report import results as res
from pytest_robust.report.evaluations import evaluations_frame
from pytest_robust.threat import ThreatModel

THREAT = ThreatModel(norm="Linf", eps=8 / 255)


def class_ordered(n0: int, n1: int) -> ImageDataset:
    labels = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n1, dtype=torch.long)])
    images = torch.rand(n0 + n1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    return ImageDataset(
        images=images, labels=labels, classes=("benign", "malignant"), name="o", synthetic=True
    )


def test_subset_is_stratified_seeded_and_in_order() -> None:
    data = class_ordered(360, 300)  # the ISIC test split's class counts, class-ordered like the folder
    sub = data.subset(256, seed=0)
    counts = torch.bincount(sub.labels).tolist()
    assert counts == [140, 116]  # 256 * 360/660 = 139.6, 256 * 300/660 = 116.4
    idx = stratified_indices(data.labels, 256, seed=0)
    assert torch.equal(idx, idx.sort().values)
    assert torch.equal(sub.images, data.images[idx])
    assert torch.equal(data.subset(256, seed=0).labels, sub.labels)
    assert not torch.equal(stratified_indices(data.labels, 256, seed=1), idx)
    assert sub.source["subset"] == {"n": 256, "seed": 0, "method": "stratified"}
    assert data.subset(None) is data
    assert data.subset(10_000) is data


def test_fingerprint_is_memoised_per_object() -> None:
    data = class_ordered(5, 5)
    first = data.fingerprint()
    assert data._memo["fingerprint"] == first
    assert class_ordered(5, 5).fingerprint() == first


def test_png_round_trip_and_amplified_perturbation() -> None:
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
    decoded = Image.open(io.BytesIO(base64.b64decode(png_base64(image))))
    assert decoded.size == (8, 8)
    assert decoded.mode == "RGB"
    delta = torch.tensor([-4 / 255, 0.0, 4 / 255]).view(3, 1, 1).expand(3, 2, 2)
    amp = amplify(delta, 4 / 255)
    assert amp[0].max() == 0.0
    assert amp[1].min() == 0.5
    assert amp[2].min() == 1.0


def test_evaluate_keeps_examples_of_both_classes(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    strong = ThreatModel(norm="Linf", eps=64 / 255)
    result = evaluate(trained_tiny, blobs.subset(64), PGD(steps=10), strong, device="cpu", examples=4)
    assert len(result.examples) == 4
    assert {e.label for e in result.examples} == {0, 1}
    assert all(e.adv_pred != e.label for e in result.examples), "successful attacks are shown first"
    for e in result.examples:
        assert e.linf <= strong.eps + 1e-6
        assert 0.5 <= e.clean_confidence <= 1
        assert 0 <= e.adv_confidence <= 1
    again = EvalResult.from_json(result.to_json())
    assert again.examples == result.examples
    assert evaluate(trained_tiny, blobs.subset(64), PGD(steps=5), strong, device="cpu").examples == ()


def test_no_attack_measures_clean_accuracy_only(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    assert isinstance(make_attack("clean"), NoAttack)
    result = evaluate(trained_tiny, blobs, "none", ThreatModel(norm="Linf", eps=0.0), device="cpu")
    assert result.robust_acc == result.clean_acc
    with pytest.raises(RobustConfigError, match="use eps=0"):
        evaluate(trained_tiny, blobs, "none", THREAT, device="cpu")


def test_memoised_evaluate_reuses_identical_evaluations(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    memo: dict[str, object] = {}
    kwargs = {"device": "cpu", "seed": 0, "batch_size": 64, "examples": 0}
    first = memoised_evaluate(memo, trained_tiny, blobs, PGD(steps=3), THREAT, **kwargs)
    second = memoised_evaluate(memo, trained_tiny, blobs, PGD(steps=3), THREAT, **kwargs)
    assert second is first
    assert len(memo) == 1
    other = memoised_evaluate(memo, trained_tiny, blobs, PGD(steps=4), THREAT, **kwargs)
    assert other is not first
    assert len(memo) == 2
    changed = copy.deepcopy(trained_tiny)
    with torch.no_grad():
        for p in changed.parameters():
            p.add_(0.01)  # new weights: a new evaluation
    memoised_evaluate(memo, changed, blobs, PGD(steps=3), THREAT, **kwargs)
    assert len(memo) == 3


def test_rows_metrics_and_table() -> None:
    ev = {
        "threat": {"norm": "Linf", "eps": 4 / 255},
        "attack": {"name": "pgd"},
        "attack_description": "PGD",
        "n": 4,
        "clean_acc": 0.75,
        "robust_acc": 0.25,
        "labels": [0, 0, 1, 1],
        "clean_pred": [0, 0, 1, 0],
        "adv_pred": [1, 0, 0, 0],
        "clean_scores": [0.1, 0.2, 0.9, 0.4],
        "adv_scores": [0.6, 0.3, 0.2, 0.4],
        "data": {"name": "d", "synthetic": True, "fingerprint": "f", "classes": ["b", "m"]},
        "model": {"fingerprint": "abc" * 10},
        "seed": 0,
        "device": "cpu",
        "timings": {"total_s": 1.0},
    }
    result = {
        "evaluation": ev,
        "verdict": {"interval": [0.0, 0.8], "confidence": 0.95, "policy": "p", "passed": True, "reason": "r"},
        "min_acc": 0.0,
        "context": {"model": "m1", "arch": "resnet50", "recipe": "standard"},
    }
    record = res.TestRecord(nodeid="t::a", results=[result])
    doc = res.build_document([record], run={}, manifest={})
    row = doc["rows"][0]
    assert row["clean_f1"] == pytest.approx(2 / 3)  # precision 1, recall 1/2
    assert row["clean_auc"] == 1.0
    assert row["adv_f1"] == 0.0
    assert row["eps_label"] == "4/255"
    table = res.model_table(doc)
    assert table[0]["attacks"]["pgd"]["acc"] == 0.25
    assert table[0]["reference"]["pgd"] == pytest.approx(0.0091)
    frame = evaluations_frame(doc)
    assert frame.loc[0, "time_total_s"] == 1.0
    # text a spreadsheet would run as a formula is neutralised in results.csv (numbers are not)
    hostile = {**result, "context": {"model": '=HYPERLINK("http://x","y")', "arch": "@SUM(A1)"}}
    frame = evaluations_frame(
        res.build_document([res.TestRecord(nodeid="-t::a", results=[hostile])], run={}, manifest={})
    )
    assert frame.loc[0, "model"] == '\'=HYPERLINK("http://x","y")'
    assert frame.loc[0, "arch"] == "'@SUM(A1)"
    assert frame.loc[0, "tests"] == "'-t::a"
    assert frame.loc[0, "robust_acc"] == 0.25


def test_markdown_table_puts_the_study_beside_the_run() -> None:
    from pytest_robust.report.markdown import table

    ev = {
        "threat": {"norm": "Linf", "eps": 4 / 255},
        "attack": {"name": "autoattack"},
        "attack_description": "AA",
        "n": 2,
        "clean_acc": 1.0,
        "robust_acc": 0.5,
        "labels": [0, 1],
        "clean_pred": [0, 1],
        "adv_pred": [0, 0],
        "clean_scores": [0.1, 0.9],
        "adv_scores": [0.1, 0.4],
        "data": {"name": "d", "synthetic": False, "fingerprint": "f", "classes": ["b", "m"]},
        "model": {"fingerprint": "0" * 64},
        "seed": 0,
        "device": "cpu",
        "timings": {},
    }
    result = {
        "evaluation": ev,
        "verdict": {"interval": [0.1, 0.9], "confidence": 0.95, "policy": "p", "passed": True, "reason": "r"},
        "min_acc": 0.0,
        "context": {"model": "convnext_tiny PGD-AT", "arch": "convnext_tiny", "recipe": "pgd-at"},
    }
    doc = res.build_document([res.TestRecord(nodeid="t", results=[result])], run={}, manifest={})
    text = table(doc)
    assert "| convnext_tiny PGD-AT | 100.0 (82.3) |" in text
    assert "50.0 [10.0, 90.0] (73.8)" in text


# --- soundness in the rows, the terminal table, the markdown table and report.html ---------------


def _check(name: str, status: str = "pass", summary: str = "") -> dict[str, object]:
    return {
        "name": name,
        "status": status,
        "summary": summary or f"{name} looked fine",
        "measured": 0.0,
        "threshold": 0.05,
        "why": f"why {name} matters",
        "fix": f"how to fix {name}",
    }


def _result(
    *,
    model: str = "m1",
    attack: str = "pgd",
    passed: bool = True,
    checks: list[dict[str, object]] | None = None,
    soundness: str | None = "warn",
    v1: bool = False,
) -> dict[str, object]:
    """A ``RobustResult.to_json()``; ``v1``: as written before the soundness checks existed."""
    ev: dict[str, object] = {
        "threat": {"norm": "Linf", "eps": 8 / 255},
        "attack": {"name": attack},
        "attack_description": attack.upper(),
        "n": 4,
        "clean_acc": 1.0,
        "robust_acc": 0.5,
        "labels": [0, 0, 1, 1],
        "clean_pred": [0, 0, 1, 1],
        "adv_pred": [0, 1, 1, 0],
        "clean_scores": [0.1, 0.2, 0.9, 0.8],
        "adv_scores": [0.1, 0.6, 0.7, 0.4],
        "data": {"name": "d", "synthetic": True, "fingerprint": "f", "classes": ["b", "m"], "shape": [4]},
        "model": {"fingerprint": "ab" * 32},
        "seed": 0,
        "device": "cpu",
        "timings": {"total_s": 1.0},
    }
    verdict: dict[str, object] = {
        "interval": [0.1, 0.9],
        "confidence": 0.95,
        "policy": "point-estimate",
        "passed": passed,
        "reason": "robust accuracy 0.500 >= required 0.000",
    }
    if not v1:
        checks = [_check(n) for n in res.CHECK_NAMES[:-1]] if checks is None else checks
        failed = [str(c["name"]) for c in checks if c["status"] == "fail"]
        ev.update(checks=checks, sound=not failed, broken_by=["", "pgd", "", "pgd"], soundness={})
        ev["timings"] = {"total_s": 1.0, "checks_s": 0.5}
        status = "unsound" if failed else "pass" if passed else "fail"
        verdict.update(status=status, sound=not failed, soundness=soundness, failed_checks=failed)
    return {
        "schema": 1,
        "evaluation": ev,
        "verdict": verdict,
        "min_acc": 0.0,
        "context": {"model": model},
    }


def _saturated(passed: bool = True, soundness: str = "warn") -> dict[str, object]:
    checks = [_check(n) for n in res.CHECK_NAMES if n != "autoattack-flags"]
    checks[1] = _check("saturation", "fail", 'cross-entropy gradient is zero on 90% <script>"x"</script>')
    return _result(model="scaled", passed=passed, checks=checks, soundness=soundness)


def _unsound_document() -> dict[str, object]:
    worst = _result(
        model="strict-model",
        passed=False,
        soundness="strict",
        checks=[
            _check("gradient", "pass", "[fgsm] fine"),
            _check("gradient", "fail", "[pgd] zero gradient"),
            _check("unbounded", "fail", "eps=1/2 breaks 0%"),
            _check("black-box", "skip", "no attack"),
        ],
    )
    records = [
        res.TestRecord(nodeid="t::sound", results=[_result()]),
        res.TestRecord(nodeid="t::warned", results=[_saturated()]),
        res.TestRecord(
            nodeid="t::strict", outcome="failed", message="robustness gate UNSOUND", results=[worst]
        ),
    ]
    return res.build_document(records, run={}, manifest={})


def test_rows_carry_status_sound_policy_and_one_column_per_check() -> None:
    doc = _unsound_document()
    assert doc["schema_version"] == 2
    assert doc["summary"]["unsound"] == 2
    sound, strict, warned = doc["rows"]  # sorted by node id
    assert (sound["status"], sound["sound"], sound["failed_checks"]) == ("pass", True, "")
    assert sound["check_gradient"] == "pass"
    assert sound["check_autoattack-flags"] == ""  # did not run
    assert warned["status"] == "unsound"
    assert warned["sound"] is False
    assert warned["gate_passed"] is True
    assert warned["soundness"] == "warn"
    assert warned["failed_checks"] == "saturation"
    assert warned["check_saturation"] == "fail"
    assert warned["check_gradient"] == "pass"
    assert strict["status"] == "unsound"
    assert strict["soundness"] == "strict"
    assert strict["failed_checks"] == "gradient;unbounded"
    assert strict["check_gradient"] == "fail"  # a worst case's failed part wins over its passed one
    assert strict["check_black-box"] == "skip"
    assert strict["check_saturation"] == ""
    assert [r["row"] for r in res.unsound_rows(doc)] == [1, 2]
    frame = evaluations_frame(doc)  # three evaluations: one row each, in row order
    assert [f"check_{n}" for n in res.CHECK_NAMES] == [c for c in frame.columns if c.startswith("check_")]
    assert list(frame["tests"]) == ["t::sound", "t::strict", "t::warned"]
    assert list(frame["status"]) == ["pass", "unsound", "unsound"]
    assert list(frame["verdict"]) == ["PASS", "UNSOUND", "UNSOUND"]
    assert list(frame["sound"]) == [True, False, False]
    assert list(frame["failed_checks"].fillna("")) == ["", "gradient;unbounded", "saturation"]
    assert frame.loc[2, "check_saturation"] == "fail"
    assert frame.loc[2, "time_checks_s"] == 0.5
    table = res.model_table(doc)
    cells = {t["model"]: t["attacks"]["pgd"] for t in table}
    assert cells["scaled"]["sound"] is False
    assert cells["m1"]["sound"] is True


def test_v1_results_without_soundness_keys_still_make_rows(tmp_path: Path) -> None:
    from pytest_robust.report.markdown import table
    from pytest_robust.report.terminal import summary_lines

    records = [
        res.TestRecord(nodeid="t::a", results=[_result(v1=True)]),
        res.TestRecord(nodeid="t::b", outcome="failed", results=[_result(model="m2", passed=False, v1=True)]),
    ]
    doc = res.build_document(records, run={}, manifest={})
    first, second = doc["rows"]
    assert (first["status"], first["sound"], first["soundness"], first["failed_checks"]) == (
        "pass",
        True,
        "",
        "",
    )
    assert second["status"] == "fail"
    assert second["sound"] is True
    assert all(first[f"check_{n}"] == "" for n in res.CHECK_NAMES)
    assert doc["summary"]["unsound"] == 0
    assert res.soundness_of(doc["details"][1])["label"] == "FAIL"
    assert "UNSOUND" not in table(doc)
    # a results.json of schema version 1 (rows without the new columns) still prints
    old = dict(doc, schema_version=1)
    old["rows"] = [
        {k: v for k, v in r.items() if k not in ("status", "sound", "soundness")} for r in doc["rows"]
    ]
    lines = summary_lines(old)
    assert not any("UNSOUND" in line for line in lines)
    assert [line.split()[:2] for line in lines[:2]] == [["PASS", "m1"], ["FAIL", "m2"]]
    assert "UNSOUND" not in table(old)


def test_terminal_and_markdown_tables_mark_unsound_results(tmp_path: Path) -> None:
    from pytest_robust.report.markdown import table
    from pytest_robust.report.terminal import summary_lines

    doc = _unsound_document()
    lines = summary_lines(doc)
    by_model = {line.split()[1]: line for line in lines if line.split()[0] in ("PASS", "FAIL", "UNSOUND")}
    # one line per model: its verdict, the failed checks named; UNSOUND outranks a failed test
    assert by_model["scaled"].startswith("UNSOUND    scaled")
    assert by_model["scaled"].endswith("tests: 1 passed  unsound: saturation")
    assert by_model["m1"].startswith("PASS       m1")
    assert "unsound" not in by_model["m1"]
    assert by_model["strict-model"].startswith("UNSOUND    strict-model")
    assert by_model["strict-model"].endswith("tests: 1 failed  unsound: gradient, unbounded")
    assert "UNSOUND: a soundness check failed; those numbers are not evidence" in "\n".join(lines)
    md = table(doc)
    assert "| scaled |" in md
    assert "50.0 [10.0, 90.0] **UNSOUND**" in md
    assert md.count("**UNSOUND**") == 2 + 1 + 1  # two cells, the note, the strict entry
    assert "- **UNSOUND (passed: soundness=warn)**: scaled, pgd 8/255: failed checks saturation" in md


def test_one_set_of_number_formats_with_widths_and_missing_text() -> None:
    from pytest_robust.report import fmt
    from pytest_robust.report.html import _environment

    assert (fmt.pct(0.5), fmt.pct(0), fmt.pct(0.12345), fmt.pct(None)) == ("50.0", "0.0", "12.3", "–")
    assert (fmt.num(0.5), fmt.num(0.5, 1), fmt.num(12.6, 0), fmt.num(None)) == ("0.500", "0.5", "13", "–")
    assert (fmt.pts(0.05), fmt.pts(-0.05), fmt.pts(0), fmt.pts(None)) == ("+5.0", "−5.0", "+0.0", "–")
    # the terminal table's fixed columns: right-aligned to 5, a hyphen for a missing value
    terminal = [fmt.pct(x, width=5, missing="-") for x in (0.5, 1.0, 0.001, None)]
    assert terminal == [" 50.0", "100.0", "  0.1", "    -"]
    assert [fmt.num(x, width=5, missing="-") for x in (0.5, 1.0, None)] == ["0.500", "1.000", "    -"]
    # the HTML pages (report and verification) format with the same functions
    filters = _environment().filters
    assert (filters["pct"], filters["num"], filters["pts"]) == (fmt.pct, fmt.num, fmt.pts)


RUN = {"id": "r", "command": ["pytest"], "duration_s": 1.0}
MANIFEST = {
    "profile": {"name": "smoke", "description": "d"},
    "config": {"seed": 0, "device": "cpu"},
    "torch": {},
    "platform": {},
    "integrity": {"summary": "synthetic"},
    "versions": {},
}


def test_the_schema_written_documented_and_shown_is_the_one_constant() -> None:
    from pytest_robust import gate, schema
    from pytest_robust.report.html import render_report

    doc = res.build_document([res.TestRecord(nodeid="t::a", results=[_result()])], run=RUN, manifest=MANIFEST)
    assert (doc["schema"], doc["schema_version"]) == (schema.RESULTS_SCHEMA, schema.RESULTS_SCHEMA_VERSION)
    assert (res.SCHEMA, res.SCHEMA_VERSION, gate.SCHEMA_VERSION) == (
        schema.RESULTS_SCHEMA,
        schema.RESULTS_SCHEMA_VERSION,
        schema.RESULT_SCHEMA_VERSION,
    )
    # the description of the document names the same versions, of results.json and of its details
    text = (Path(__file__).parents[1] / "docs" / "results-schema.md").read_text(encoding="utf-8")
    title = f"# `results.json` — schema `{schema.RESULTS_SCHEMA}`, version {schema.RESULTS_SCHEMA_VERSION}"
    assert text.splitlines()[0] == title
    assert f"| `schema_version` | `{schema.RESULTS_SCHEMA_VERSION}` |" in text
    assert f"(schema {schema.RESULT_SCHEMA_VERSION} of `pytest_robust.gate`)" in text
    # and the page shows what the document holds
    html = render_report(doc)
    assert f"(schema {schema.RESULTS_SCHEMA} v{schema.RESULTS_SCHEMA_VERSION})" in html


def test_report_html_shows_unsound_verdicts_and_every_check() -> None:
    from pytest_robust.report.html import render_report

    doc = _unsound_document()
    doc.update(run=RUN, manifest=MANIFEST)
    html = render_report(doc)
    assert "<script" not in html
    assert 'href="#soundness"' in html
    verdict = html[html.index('id="verdict-line"') : html.index('id="table"')]
    assert "2 UNSOUND" in verdict
    failed = verdict[verdict.index('id="unsound-failed"') : verdict.index('id="unsound-warned"')]
    for text in (
        "t::strict",
        "strict-model",
        "unsound",
        "[pgd] zero gradient",
        "why gradient matters",
        "how to fix unbounded",
    ):
        assert text in failed, text
    assert "t::warned" not in failed
    warned = verdict[verdict.index('id="unsound-warned"') :]
    assert "passed only under soundness=warn" in verdict
    assert "UNSOUND (passed: soundness=warn)" in warned
    assert "how to fix saturation" in warned
    assert "&lt;script&gt;" in warned
    section = html[html.index('id="soundness-table"') : html.index('id="tests"')]
    assert section.count("<tr>") == 1 + 3
    assert 'class="l check-fail" title="cross-entropy gradient is zero on 90% &lt;script&gt;' in section
    assert 'title="[fgsm] fine | [pgd] zero gradient">fail<' in section
    from pytest_robust.report.results import CHECK_NAMES

    ran = [{c["name"] for c in d["evaluation"].get("checks", [])} for d in doc["details"]]
    absent = sum(len(set(CHECK_NAMES) - names) for names in ran)
    assert section.count("check-none") == absent  # one cell per check that did not run
    tests = html[html.index('id="tests-table"') :]
    assert re.search(r'<b class="unsound">UNSOUND \(passed: soundness=warn\)</b>', tests)
    assert '<b class="outcome-passed">PASS</b>' in tests
    assert tests.count('<table class="checks">') == 3
    assert tests.count("<details open>") == 2  # the unsound evaluations' checks are shown open


def test_report_html_of_a_v1_document_has_no_unsound_marks() -> None:
    from pytest_robust.report.html import render_report

    doc = res.build_document(
        [res.TestRecord(nodeid="t::a", results=[_result(v1=True)])], run=RUN, manifest=MANIFEST
    )
    html = render_report(doc)
    assert "UNSOUND" not in html
    assert "No soundness check ran in this run" in html


# --- the worst case over the attacks: its own column, no study value ---------------------------------


def _at_4(
    attack: str,
    acc: float,
    *,
    model: str,
    context: dict[str, Any],
    checks: list[dict[str, object]] | None = None,
) -> dict[str, Any]:
    """A result at 4/255 (the table's eps); ``worst-case`` as :func:`pytest_robust.evaluate.worst_case`
    names it."""
    result: dict[str, Any] = _result(model=model, attack=attack, checks=checks)
    ev = result["evaluation"]
    ev["threat"] = {"norm": "Linf", "eps": 4 / 255}
    ev["robust_acc"] = acc
    if attack == res.WORST_CASE:
        ev["attack"] = {"name": attack, "attacks": [{"name": a} for a in res.ATTACK_ORDER]}
        ev["attack_description"] = "worst case of FGSM + PGD + AUTOATTACK"
    result["context"] = context
    return result


def _worst_case_document() -> dict[str, Any]:
    """A study model (resnet50 standard) and another one, each with FGSM, PGD, AutoAttack and
    their worst case at 4/255; the other model's worst case is UNSOUND (passed under warn)."""
    study = {"model": "resnet50 standard", "arch": "resnet50", "recipe": "standard"}
    other = {"model": "other"}
    failed = [_check("gradient", "fail", "[pgd] zero gradient"), _check("saturation")]
    records = [
        res.TestRecord(
            nodeid=f"t::{name}",
            results=[
                _at_4("fgsm", 0.75, model=ctx["model"], context=ctx),
                _at_4("pgd", 0.5, model=ctx["model"], context=ctx),
                _at_4("autoattack", 0.5, model=ctx["model"], context=ctx),
                _at_4(res.WORST_CASE, 0.25, model=ctx["model"], context=ctx, checks=checks),
            ],
        )
        for name, ctx, checks in (("study", study, None), ("other", other, failed))
    ]
    return res.build_document(records, run=RUN, manifest=MANIFEST)


def test_worst_case_gets_its_own_column_without_a_study_value(tmp_path: Path) -> None:
    from pytest_robust.report.html import render_report
    from pytest_robust.report.markdown import table as markdown_table
    from pytest_robust.report.terminal import summary_lines

    doc = _worst_case_document()
    # results.json rows: one row per result, the worst case like any other
    assert [r["attack"] for r in doc["rows"]] == [*res.ATTACK_ORDER, res.WORST_CASE] * 2
    # results.csv: one row per evaluation; the two models' single attacks are identical evaluations
    # here (only the worst cases' checks differ), so those rows list both tests and both labels
    frame = evaluations_frame(doc)
    assert list(frame["attack"]) == [*res.ATTACK_ORDER, res.WORST_CASE, res.WORST_CASE]
    assert set(frame.loc[:2, "tests"]) == {"t::other; t::study"}
    assert set(frame.loc[:2, "model"]) == {"other; resnet50 standard"}
    worst_rows = frame[frame["attack"] == res.WORST_CASE]
    assert list(worst_rows["model"]) == ["other", "resnet50 standard"]
    assert list(worst_rows["robust_acc"]) == [0.25, 0.25]
    assert all(d.startswith("worst case of") for d in worst_rows["attack_description"])
    assert list(worst_rows["sound"]) == [False, True]

    # the model table: a cell after AutoAttack; the study has no worst case (None, not a number)
    table = {t["model"]: t for t in res.model_table(doc)}
    assert list(table) == ["resnet50 standard", "other"]  # study models first
    study, other = table["resnet50 standard"], table["other"]
    assert list(study["attacks"]) == [*res.ATTACK_ORDER, res.WORST_CASE]
    assert study["attacks"][res.WORST_CASE]["acc"] == 0.25
    assert study["attacks"][res.WORST_CASE]["sound"] is True
    assert study["attacks"]["autoattack"]["acc"] == 0.5
    assert study["reference"][res.WORST_CASE] is None
    assert study["reference"]["autoattack"] == pytest.approx(0.0)
    assert other["attacks"][res.WORST_CASE]["sound"] is False
    assert other["attacks"][res.WORST_CASE]["failed_checks"] == "gradient"
    assert other["reference"] is None
    # the strongest single attack still picks the model cards (a worst case keeps no examples)
    assert res.strongest_row(doc, "other")["attack"] == "autoattack"  # type: ignore[index]

    # markdown: the column after AutoAttack, "—" for the study, the UNSOUND mark on the cell
    md = markdown_table(doc)
    head = "| FGSM acc | PGD-20 acc | AutoAttack acc | worst case acc |\n" + "|---" * 8 + "|\n"
    assert head in md
    study_line = next(line for line in md.splitlines() if line.startswith("| resnet50 standard |"))
    assert study_line.endswith("| 50.0 [10.0, 90.0] (0.0) | 25.0 [10.0, 90.0] (—) |")
    assert study_line.count("|") == 9
    other_line = next(line for line in md.splitlines() if line.startswith("| other |"))
    assert other_line.endswith("| 50.0 [10.0, 90.0] | 25.0 [10.0, 90.0] **UNSOUND** |")
    assert "the study does not report (—)" in md
    assert "- **UNSOUND (passed: soundness=warn)**: other, worst-case 4/255: failed checks gradient" in md

    # terminal: one line per model, its worst case named with the attacks it combines
    lines = summary_lines(doc)
    study_row = next(line for line in lines if " resnet50 standard " in line)
    other_row = next(line for line in lines if " other " in line)
    assert study_row.startswith("PASS")
    assert "(worst of FGSM+PGD+AA, 4/255)" in study_row
    assert other_row.startswith("UNSOUND")
    assert other_row.endswith("unsound: gradient")

    # report.html: a "Worst case" column with "—" for the study; the UNSOUND mark on the cell
    html = render_report(doc)
    assert "<script" not in html
    section = html[html.index('id="table-v"') : html.index("</table>", html.index('id="table-v"'))]
    assert 'AutoAttack acc</th><th colspan="2">Worst case acc</th>' in section
    assert section.count("<th>run</th>") == 3 + 4
    assert section.count('<span title="the study reports no worst case">—</span>') == 1  # the study model
    assert section.count("UNSOUND") == 1
    assert 'title="failed checks: gradient">UNSOUND' in section
    assert "the study reports no worst case (—)" in html
    assert "Worst case" in html


def test_without_a_worst_case_the_tables_keep_three_attack_columns(tmp_path: Path) -> None:
    from pytest_robust.report.html import render_report
    from pytest_robust.report.markdown import table as markdown_table

    ctx = {"model": "resnet50 standard", "arch": "resnet50", "recipe": "standard"}
    results = [_at_4(a, 0.5, model="m", context=ctx) for a in res.ATTACK_ORDER]
    doc = res.build_document([res.TestRecord(nodeid="t", results=results)], run=RUN, manifest=MANIFEST)
    assert not res.has_worst_case(res.model_table(doc))
    md = markdown_table(doc)
    assert "| AutoAttack acc |\n|---|---|---|---|---|---|---|\n" in md
    assert "worst case" not in md
    assert "—" not in md
    html = render_report(doc)
    assert "Worst case" not in html
    assert "—</span>" not in html


# --- clinical numbers, every requirement with its policy, the baseline comparison, sequential ---------


CLASSES = ["benign", "malignant"]
#: the identity of the sample at position 2: text a browser would run, were it not escaped
HOSTILE_ID = "test/benign/<b>x</b>.jpg"


def _sample_id(i: int) -> str:
    return HOSTILE_ID if i == 2 else f"test/{CLASSES[i % 2]}/ISIC_{i:07d}.jpg"


def _part(
    statistic: str,
    policy: str,
    *,
    passed: bool = True,
    measured: float = 0.5,
    required: float = 0.4,
    interval: tuple[float, float] = (0.3, 0.7),
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One requirement's verdict (``Verdict.to_json()`` of :mod:`pytest_robust.policies`)."""
    return {
        "passed": passed,
        "status": "pass" if passed else "fail",
        "policy": policy,
        "statistic": statistic,
        "measured": measured,
        "required": required,
        "interval": list(interval),
        "confidence": 0.95,
        "reason": f"{statistic}: r",
        "sound": True,
        "soundness": "strict",
        "failed_checks": [],
        "parts": [],
        "details": details or {},
    }


def _example(index: int, label: int, adv_pred: int) -> dict[str, Any]:
    image = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(index))
    return {
        "index": index,
        "label": label,
        "clean_pred": label,
        "adv_pred": adv_pred,
        "clean_confidence": 0.9,
        "adv_confidence": 0.8,
        "linf": 4 / 255,
        "original_png": png_base64(image),
        "perturbation_png": png_base64(image),
        "adversarial_png": png_base64(image),
    }


def _clinical_result(
    *, model: str, n: int = 24, broken: int = 12, baseline: bool = False, sequential: bool = False
) -> dict[str, Any]:
    """A result as the gate writes it now: clinical numbers, sample ids, the positive label and a
    verdict with parts (robust accuracy, robust sensitivity) — plus, with ``baseline``, a failed
    comparison with 12 newly broken samples (positions 0..11, the first 10 ids listed) and kept
    examples; with ``sequential``, a single sequential verdict that used ``n`` of ``4 n`` samples."""
    from pytest_robust.clinical import clinical

    result: dict[str, Any] = _result(model=model)
    ev = result["evaluation"]
    labels = [i % 2 for i in range(n)]
    adv = [1 - y if i < broken else y for i, y in enumerate(labels)]
    ev.update(
        n=n,
        labels=labels,
        clean_pred=labels,
        adv_pred=adv,
        clean_correct=[True] * n,
        robust_correct=[a == y for a, y in zip(adv, labels, strict=True)],
        clean_scores=[float(y) for y in labels],
        adv_scores=[float(a) for a in adv],
        robust_acc=(n - broken) / n,
        broken_by=["pgd" if i < broken else "" for i in range(n)],
        sample_ids=[_sample_id(i) for i in range(n)],
        positive_label=1,
        clinical=clinical(labels, labels, adv, positive_label=1, classes=CLASSES).to_json(),
    )
    ev["data"] = {**ev["data"], "classes": CLASSES}
    vd = result["verdict"]
    parts = [
        _part("robust accuracy", "point-estimate", measured=ev["robust_acc"]),
        _part("robust sensitivity", "point-estimate", measured=ev["clinical"]["robust_sensitivity"]),
    ]
    if baseline:
        details = {
            "baseline": "baselines/m.json",
            "n": n,
            "baseline_robust_acc": 23 / 24,
            "candidate_robust_acc": ev["robust_acc"],
            "newly_broken": 12,
            "newly_robust": 1,
            "newly_broken_ids": [_sample_id(i) for i in range(10)],
            "newly_robust_ids": [_sample_id(20)],
            "same_model": False,
        }
        parts.append(
            _part(
                "robust accuracy difference vs baseline",
                "non-inferiority(margin=0.02, confidence=0.95)",
                passed=False,
                measured=ev["robust_acc"] - 23 / 24,
                required=-0.02,
                interval=(-0.6, -0.25),
                details=details,
            )
        )
        # newly broken first: #3 is listed, #11 is newly broken beyond the listed ids, #20 held
        ev["examples"] = [_example(3, 1, 0), _example(11, 1, 0), _example(20, 0, 0)]
    if sequential:
        ev["data"] = {**ev["data"], "available": 4 * n}
        vd.update(
            policy="sequential(confidence=0.95)",
            statistic="robust accuracy",
            measured=ev["robust_acc"],
            required=0.4,
            details={"used": n, "available": 4 * n, "sequential": "pass", "horizon": 2 * n},
        )
        parts = []
    vd["parts"] = parts
    vd["passed"] = all(p["passed"] for p in parts) if parts else True
    if parts:
        vd["policy"] = " + ".join(dict.fromkeys(p["policy"] for p in parts))
    vd["status"] = "pass" if vd["passed"] else "fail"
    ev["threat"] = {"norm": "Linf", "eps": 4 / 255}
    return result


def _clinical_document() -> dict[str, Any]:
    records = [
        res.TestRecord(
            nodeid="t::baseline", outcome="failed", results=[_clinical_result(model="cand", baseline=True)]
        ),
        res.TestRecord(nodeid="t::plain", results=[_clinical_result(model="plain", broken=6)]),
        res.TestRecord(
            nodeid="t::seq", results=[_clinical_result(model="seq", n=8, broken=2, sequential=True)]
        ),
    ]
    return res.build_document(records, run=RUN, manifest=MANIFEST)


def _between(html: str, start: str, end: str) -> str:
    i = html.index(start)
    return html[i : html.index(end, i)]


def test_gates_table_shows_clinical_numbers_the_baseline_and_each_policy() -> None:
    from pytest_robust.report.html import render_report

    html = render_report(_clinical_document())
    assert "<b>x</b>" not in html
    table = _between(html, 'id="gates-table"', "</table>")
    head = table[: table.index('<tr class="gate">')]
    for column in (
        "robust sens",
        "robust spec",
        'flipped<br><span class="small">malignant → benign</span>',
        "vs baseline",
        "requirements (policy)",
    ):
        assert column in head, column
    rows = table.split('<tr class="gate">')[1:]
    assert len(rows) == 3
    cand, plain, seq = rows  # sorted by node id
    assert "<code>t::baseline</code>" in cand
    assert '<td class="robust-sens">50.0</td><td class="robust-spec">50.0</td>' in cand
    assert '<td class="flipped">6 (50.0%)</td>' in cand  # 6 of 12 caught malignant lesions
    assert '<td class="robust-sens">75.0</td>' in plain
    assert '<td class="flipped">3 (25.0%)</td>' in plain
    vs = _between(cand, 'class="l vs-baseline"', "</td>")
    assert "−45.8 pts" in vs
    assert "[−60.0, −25.0]" in vs
    assert '<b class="outcome-failed">FAIL</b>' in vs
    assert "12 newly broken · 1 newly robust · baseline 95.8%" in vs
    assert _between(plain, 'class="l vs-baseline"', "</td>").endswith(">—")
    reqs = _between(cand, 'class="l requirements"', "</td>")
    assert reqs.count("<li>") == 3
    assert reqs.count("decided by point-estimate") == 2
    assert "robust sensitivity 0.500 [0.300, 0.700], required ≥ 0.400" in reqs
    assert "decided by non-inferiority(margin=0.02, confidence=0.95)" in reqs
    assert "required lower bound ≥ −2.0" in reqs
    assert '<b class="outcome-failed">FAIL</b>\nrobust accuracy difference vs baseline' in reqs
    assert "samples used" not in cand + plain
    assert cand.rstrip().endswith('<td class="l outcome-failed">FAIL</td></tr>')
    seq_reqs = _between(seq, 'class="l requirements"', "</td>")
    assert seq_reqs.count("<li>") == 1
    assert "decided by sequential(confidence=0.95)" in seq_reqs
    assert "samples used: 8 of 32 (sequential: pass)" in seq_reqs
    assert '<td class="robust-sens">' in seq
    assert _between(seq, 'class="l vs-baseline"', "</td>").endswith(">—")


def test_newly_broken_section_lists_ids_counts_and_the_gallery_of_newly_broken_examples() -> None:
    from pytest_robust.report.html import render_report

    html = render_report(_clinical_document())
    assert 'href="#newly-broken"' in html
    section = _between(html, 'id="newly-broken"', 'id="findings"')
    assert "3 results compared" not in section
    assert "1 result compared with a stored" in section
    assert section.count('class="newly-broken-entry"') == 1  # only the result with newly broken samples
    assert "<code>t::baseline</code>" in section
    assert "12 newly broken, 1 newly robust of n=24" in section
    assert "95.8% (baseline) → 50.0%" in section
    assert "<code>baselines/m.json</code>" in section
    ids = _between(section, 'class="small newly-broken-ids"', "</div>")
    assert ids.count("<code>") == 10
    assert "<code>test/malignant/ISIC_0000001.jpg</code>" in ids
    assert "<code>test/benign/&lt;b&gt;x&lt;/b&gt;.jpg</code>" in ids
    assert "(and 2 more)" in ids
    assert "ISIC_0000010" not in ids
    gallery = _between(section, '<div class="gallery">', "</div>\n</div>")
    assert gallery.count('<figure class="ex">') == 2
    assert gallery.count('src="data:image/png;base64,') == 6
    assert 'alt="original #3"' in gallery
    assert 'alt="original #11"' in gallery  # newly broken beyond the listed ids: it comes first
    assert 'alt="original #20"' not in gallery  # a sample the attack did not break
    assert '<code class="sample-id">test/malignant/ISIC_0000011.jpg</code>' in gallery
    assert "true malignant: malignant (90.0%)\n→ benign (80.0%)" in gallery


def test_newly_broken_examples_are_matched_by_sample_id() -> None:
    from pytest_robust.report.html import newly_broken_examples

    ev = _clinical_result(model="m", baseline=True)["evaluation"]
    details = {"newly_broken": 2, "newly_broken_ids": [_sample_id(3), _sample_id(20)]}
    # the listing is complete: exactly the listed samples, whatever the order of the examples
    assert [e["index"] for e in newly_broken_examples(ev, details)] == [3, 20]
    # cut short but none of the examples is listed: no evidence that they are the newly broken ones
    cut = {"newly_broken": 30, "newly_broken_ids": [_sample_id(5)]}
    assert newly_broken_examples(ev, cut) == []
    # results without sample ids: the index is the identity
    del ev["sample_ids"]
    got = newly_broken_examples(ev, {"newly_broken": 1, "newly_broken_ids": ["11"]})
    assert [(e["index"], e["sample_id"]) for e in got] == [(11, "11")]


def test_model_table_shows_sensitivity_and_flips_in_html_and_markdown() -> None:
    from pytest_robust.report.html import render_report
    from pytest_robust.report.markdown import table as markdown_table

    doc = _clinical_document()
    html = render_report(doc)
    table = _between(html, 'id="table-v"', "</table>")
    assert table.count("sens 100.0% · spec 100.0%") == 3  # every model's clean cell
    assert table.count('class="small clinical"') == 3
    assert "sens 50.0% · 6 flipped" in table
    assert "sens 75.0% · 3 flipped" in table
    assert "robust sensitivity in %" in html
    md = markdown_table(doc)
    cand = next(line for line in md.splitlines() if line.startswith("| cand |"))
    assert cand.startswith("| cand | 100.0 · sens 100.0 · spec 100.0 | 1.000 | 1.000 |")
    assert "| – | 50.0 [10.0, 90.0] · sens 50.0 · 6 flipped | – |" in cand
    assert "positive class: malignant" in md


def test_old_results_without_the_new_fields_still_render() -> None:
    from pytest_robust.report.html import render_report
    from pytest_robust.report.markdown import table as markdown_table

    for v1 in (True, False):  # before the soundness checks; before clinical numbers and parts
        doc = res.build_document(
            [res.TestRecord(nodeid="t::a", results=[_result(v1=v1)])], run=RUN, manifest=MANIFEST
        )
        html = render_report(doc)
        table = _between(html, 'id="gates-table"', "</table>")
        row = table.split('<tr class="gate">')[1]
        assert '<td class="robust-sens">–</td><td class="robust-spec">–</td>' in row
        assert '<td class="flipped">–</td>' in row
        assert _between(row, 'class="l vs-baseline"', "</td>").endswith(">—")
        assert "flipped to negative</th>" in table
        assert "decided by point-estimate" in row
        assert "samples used" not in row
        assert 'id="newly-broken"' not in html
        assert 'href="#newly-broken"' not in html
        assert "sens" not in _between(html, 'id="table-v"', "</table>")
        md = markdown_table(doc)
        assert "sens" not in md
        assert "flipped" not in md


# --- the terminal's summary: one line per model ----------------------------------------------------


def _per_sample(attack: str, robust: list[bool], *, outcome_model: str = "m") -> dict[str, Any]:
    result = _at_4(attack, sum(robust) / len(robust), model=outcome_model, context={"model": outcome_model})
    ev = result["evaluation"]
    ev["robust_correct"] = robust
    ev["sample_ids"] = ["a", "b", "c", "d"]
    ev["labels"], ev["positive_label"] = [1, 1, 0, 0], 1
    return result


def test_terminal_summary_is_one_line_per_model_with_the_per_sample_worst_case() -> None:
    """Two attacks that break different samples: the model's robust accuracy is the share that
    survives both (1 of 4), not the weaker attack's 0.5; sensitivity over the positives (1 of 2)."""
    from pytest_robust.report.terminal import model_lines, summary_lines

    records = [
        res.TestRecord(nodeid="t::fgsm", results=[_per_sample("fgsm", [True, True, False, False])]),
        res.TestRecord(nodeid="t::pgd", results=[_per_sample("pgd", [True, False, True, False])]),
    ]
    doc = res.build_document(records, run=RUN, manifest=MANIFEST)
    (line,) = model_lines(doc)
    assert (line.robust_acc, line.robust_sensitivity, line.attacks, line.n) == (0.25, 0.5, ("fgsm", "pgd"), 4)
    lo, hi = line.interval  # type: ignore[misc]
    assert lo < 0.25 < hi
    text = summary_lines(doc)
    assert len([t for t in text if t.startswith(("PASS", "FAIL", "UNSOUND", "XFAIL", "SKIPPED"))]) == 1
    assert "robust 0.250 [" in text[0]
    assert "(worst of FGSM+PGD, 4/255)  sens 0.500  n=4  tests: 2 passed" in text[0]


def test_terminal_names_the_members_of_a_cascade() -> None:
    """A gate on the cascade [pgd, aa] beside a PGD gate: the worst case of PGD and AA, named so."""
    from pytest_robust.report.terminal import summary_lines

    cascade = _per_sample("ensemble", [True, False, False, False])
    cascade["evaluation"]["attack"] = {
        "name": "ensemble",
        "attacks": [{"name": "pgd"}, {"name": "autoattack"}],
    }
    records = [
        res.TestRecord(nodeid="t::pgd", results=[_per_sample("pgd", [True, True, False, False])]),
        res.TestRecord(nodeid="t::cascade", results=[cascade]),
    ]
    line = summary_lines(res.build_document(records, run=RUN, manifest=MANIFEST))[0]
    assert "robust 0.250 [" in line
    assert "(worst of PGD+AA, 4/255)" in line


@pytest.mark.parametrize(
    ("outcomes", "verdict"),
    [
        (("skipped", "skipped"), "SKIPPED"),  # gates inside skipped tests decide nothing: never PASS
        (("passed", "skipped"), "PASS"),
        (("xfailed", "skipped"), "XFAIL"),
        (("passed", "failed"), "FAIL"),  # a failed test that used the model, whatever its gate said
        (("error", "passed"), "FAIL"),
    ],
)
def test_terminal_verdict_of_a_model_follows_the_tests_that_used_it(
    outcomes: tuple[str, str], verdict: str
) -> None:
    from pytest_robust.report.terminal import summary_lines

    records = [
        res.TestRecord(nodeid=f"t::{i}", outcome=o, results=[_per_sample("pgd", [True, True, False, False])])
        for i, o in enumerate(outcomes)
    ]
    doc = res.build_document(records, run=RUN, manifest=MANIFEST)
    assert summary_lines(doc)[0].split()[0] == verdict


def test_terminal_summary_has_a_line_per_training_seed_and_names_a_plumbing_profile() -> None:
    from pytest_robust.report.terminal import summary_lines

    records = []
    for seed in (0, 1):
        result = _per_sample("pgd", [True, True, seed == 1, False])
        result["context"]["study_seed"] = seed
        records.append(res.TestRecord(nodeid=f"t[{seed}]", results=[result]))
    other = _per_sample("pgd", [False] * 4, outcome_model="other")  # outside the study: one line
    records.append(res.TestRecord(nodeid="t::other", results=[other]))
    manifest = {
        **MANIFEST,
        "config": {"seeds": [0, 1]},
        "profile": {"name": "smoke", "plumbing": "only plumbing"},
    }
    doc = res.build_document(records, run=RUN, manifest=manifest)
    lines = summary_lines(doc)
    assert [line[11:].split("  ")[0].strip() for line in lines[:3]] == [
        "m (seed 0)",
        "m (seed 1)",
        "other",
    ]
    assert "robust 0.500" in lines[0]
    assert "robust 0.750" in lines[1]
    assert "PLUMBING CHECK: only plumbing" in lines


# --- the Table V caption: this run's setup next to the study's; the plumbing-check notice ------------


def _standard_record(**fields: Any) -> dict[str, Any]:
    """A checkpoint record (``CachedModel.record()``) of a smoke-trained standard model."""
    return {
        "key": "std" * 8,
        "arch": "resnet50",
        "recipe": "standard",
        "seed": 0,
        "weights_sha256": "a" * 64,
        "training_profile": "smoke",
        "train_seconds": 1.0,
        "trained_on": "f" * 16,
        "train_images": 64,
        "train_shape": [3, 32, 32],
        "epochs": 1,
        "at_eps": None,
        "at_step_size": None,
        "at_steps": None,
        "init": None,
        **fields,
    }


def _setup_document(
    *, data_name: str = "isic-kaggle", manifest: dict[str, Any] | None = None
) -> dict[str, Any]:
    """resnet50 standard and PGD-AT (smoke checkpoints) on 32 of 660 real 32 px ISIC test images,
    FGSM, PGD-5 and AutoAttack (5 steps, 20 queries) at 4/255."""
    records = []
    for recipe, record in (
        ("standard", _standard_record()),
        (
            "pgd-at",
            _standard_record(
                key="adv" * 8,
                recipe="pgd-at",
                at_eps=2 / 255,
                at_step_size=1 / 255,
                at_steps=2,
                init="std" * 8,
            ),
        ),
    ):
        ctx = {"model": f"resnet50 {recipe}", "arch": "resnet50", "recipe": recipe, "checkpoint": record}
        results = [_at_4(a, 0.5, model=ctx["model"], context=ctx) for a in res.ATTACK_ORDER]
        for result in results:
            ev = result["evaluation"]
            ev["n"] = 32
            ev["data"] = {
                "name": data_name,
                "synthetic": False,
                "fingerprint": "f",
                "classes": ["benign", "malignant"],
                "shape": [3, 32, 32],
                "n": 32,
                "available": 660,
                "source": {"kind": "isic", "layout": "kaggle", "split": "test"},
            }
        results[1]["evaluation"]["attack"] = {
            "name": "pgd",
            "steps": 5,
            "step_size": None,
            "rel_step_size": 0.5,
            "restarts": 1,
        }
        results[2]["evaluation"]["attack"] = {
            "name": "autoattack",
            "attacks": "auto",
            "apgd_steps": 5,
            "apgd_restarts": 1,
            "square_queries": 20,
        }
        records.append(res.TestRecord(nodeid=f"t::{recipe}", results=results))
    return res.build_document(records, run=RUN, manifest=manifest or MANIFEST)


def _setup_rows(html: str) -> dict[str, tuple[str, str]]:
    """The HTML setup table: item → (this run, the study), as rendered (escaped) text."""
    section = _between(html, 'id="setup"', "</table>")
    found = re.findall(
        r'<tr><th class="l">(.*?)</th><td class="l run">(.*?)</td><td class="l ref">(.*?)</td></tr>', section
    )
    return {item: (run, study) for item, run, study in found}


def test_table_v_caption_shows_this_runs_setup_beside_the_studys() -> None:
    from pytest_robust.report.html import render_report
    from pytest_robust.report.markdown import table as markdown_table
    from pytest_robust.report.reference import SETUP_ITEMS
    from pytest_robust.report.setup import run_setup

    doc = _setup_document()
    setup = {s.item: (s.run, s.study) for s in run_setup(doc)}
    assert list(setup) == list(SETUP_ITEMS)
    expected = {
        "resolution": ("32 × 32 px", "224 × 224 px"),
        "training images": ("64", "2637 (the ISIC train split)"),
        "training epochs (standard / PGD-AT)": ("1 / 1 (PGD-AT fine-tunes the standard model)", "50 / 50"),
        "PGD-AT (training)": ("Linf 2/255, 2 steps of 1/255", "Linf 2/255, 10 steps of 1/255"),
        "threat (evaluation)": ("Linf 4/255", "Linf 4/255"),
        "PGD (evaluation)": ("PGD-5, step eps/2 = 2/255, 1 restart", "PGD-20, step eps/2 = 2/255"),
        "images evaluated per model": ("32 of 660", "660 of 660 (the ISIC test split)"),
        "test data": (
            "isic-kaggle: real images from a folder, test split",
            "ISIC dermoscopy, benign vs malignant (Kaggle copy): real images",
        ),
        "hardware": ("cpu", "one NVIDIA T4 GPU"),
    }
    for item, pair in expected.items():
        assert setup[item] == pair, item
    aa_run, aa_study = setup["AutoAttack"]
    assert aa_run == "APGD-CE + Square; APGD 5 steps × 1 restart, Square 20 queries"
    assert aa_study.startswith("APGD-CE + Square; budgets not stated")

    # report.html: a table under the Table V heading, this run beside the study, item by item
    html = render_report(doc)
    assert html.index('id="table"') < html.index('id="setup"') < html.index('id="table-v"')
    assert '<th class="l">this run</th><th class="l">the study</th>' in html
    shown = _setup_rows(html)
    for item, (run, study) in expected.items():
        assert shown[item] == (run, study.replace("'", "&#39;")), item
    assert "224 px, 50 epochs, GPU" not in html  # the study's setup alone, as the caption had it

    # Markdown: the same table under the run's Table V
    md = markdown_table(doc)
    assert "| setup | this run | the study |\n|---|---|---|\n" in md
    assert md.index("| resnet50 standard |") < md.index("| setup | this run | the study |")
    assert "| resolution | 32 × 32 px | 224 × 224 px |" in md
    assert "| PGD (evaluation) | PGD-5, step eps/2 = 2/255, 1 restart | PGD-20, step eps/2 = 2/255 |" in md
    assert "| images evaluated per model | 32 of 660 | 660 of 660 (the ISIC test split) |" in md
    assert "| test data | isic-kaggle: real images from a folder, test split |" in md


def test_setup_values_the_run_did_not_record_show_a_dash() -> None:
    from pytest_robust.report.html import render_report
    from pytest_robust.report.markdown import table as markdown_table
    from pytest_robust.report.setup import run_setup

    # models built by the tests (no checkpoint record), data without an image shape
    ctx = {"model": "resnet50 standard", "arch": "resnet50", "recipe": "standard"}
    results = [_at_4(a, 0.5, model="m", context=ctx) for a in res.ATTACK_ORDER]
    doc = res.build_document([res.TestRecord(nodeid="t", results=results)], run=RUN, manifest=MANIFEST)
    unknown = ("resolution", "training images", "training epochs (standard / PGD-AT)", "PGD-AT (training)")
    setup = {s.item: s.run for s in run_setup(doc)}
    for item in unknown:
        assert setup[item] == "–", item
    assert setup["threat (evaluation)"] == "Linf 4/255"
    shown = _setup_rows(render_report(doc))
    md = markdown_table(doc)
    for item in unknown:
        assert shown[item][0] == "–", item
        assert f"| {item} | – | " in md, item

    # a record written before records held epochs, budgets and the training set size: epochs and
    # the PGD-AT budget from the training profile it names, the training set size stays unknown
    old = ("train_images", "train_shape", "epochs", "at_eps", "at_step_size", "at_steps", "init")
    doc = _setup_document(manifest={**MANIFEST, "training_profile": _smoke_training_profile()})
    for detail in doc["details"]:
        for key in old:
            detail["context"]["checkpoint"].pop(key, None)  # one record per model, shared
    setup = {s.item: s.run for s in run_setup(doc)}
    assert setup["training images"] == "–"
    assert setup["training epochs (standard / PGD-AT)"] == "1 / 1 (PGD-AT fine-tunes the standard model)"
    assert setup["PGD-AT (training)"] == "Linf 2/255, 2 steps of 1/255"
    # ... but only from the profile the checkpoints name
    for detail in doc["details"]:
        detail["context"]["checkpoint"]["training_profile"] = "quickstart"
    setup = {s.item: s.run for s in run_setup(doc)}
    assert setup["training epochs (standard / PGD-AT)"] == "–"
    assert setup["PGD-AT (training)"] == "–"

    # a run without results: every value of the run unknown
    empty = res.build_document([], run=RUN, manifest=MANIFEST)
    assert {s.run for s in run_setup(empty)} == {"–"}


def _smoke_training_profile() -> dict[str, Any]:
    from pytest_robust.recipes import SMOKE

    return SMOKE.to_json()


def test_the_plumbing_banner_shows_exactly_when_the_profile_is_a_plumbing_check() -> None:
    from pytest_robust.config import PROFILES
    from pytest_robust.report.html import render_report
    from pytest_robust.report.markdown import table as markdown_table

    smoke = PROFILES["smoke"].to_json()
    assert smoke["plumbing"]
    for name, profile in PROFILES.items():
        doc = _setup_document(manifest={**MANIFEST, "profile": profile.to_json()})
        html = render_report(doc)
        md = markdown_table(doc)
        if profile.plumbing is None:
            assert name != "smoke"
            assert 'id="plumbing-banner"' not in html, name
            assert "Plumbing check" not in md, name
            continue
        banner = _between(html, 'id="plumbing-banner"', "</div>")
        assert html.index('id="plumbing-banner"') < html.index('id="verdict"')
        assert "PLUMBING CHECK, NOT A MEASUREMENT" in banner
        assert "smoke profile: a plumbing check, not a measurement" in banner
        assert "Plumbing check: not a measurement." in _between(html, 'id="setup"', "</table>")
        assert md.startswith("**Plumbing check, not a measurement:** smoke profile: a plumbing check")
    # documents written before profiles had the field: no banner
    legacy = {k: v for k, v in smoke.items() if k != "plumbing"}
    doc = _setup_document(manifest={**MANIFEST, "profile": legacy})
    assert 'id="plumbing-banner"' not in render_report(doc)
    assert "Plumbing check" not in markdown_table(doc)


def test_setup_table_escapes_the_data_name() -> None:
    from pytest_robust.report.html import render_report
    from pytest_robust.report.markdown import table as markdown_table

    plumbing = {**MANIFEST, "profile": {"name": "x", "plumbing": "<img src=x onerror=alert(1)>"}}
    doc = _setup_document(data_name="<script>alert(1)</script>", manifest=plumbing)
    html = render_report(doc)
    assert "<script" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;: real images" in _between(html, 'id="setup"', "</table>")
    assert "&lt;img src=x onerror=alert(1)&gt;" in _between(html, 'id="plumbing-banner"', "</div>")
    md = markdown_table(doc)
    assert "<script" not in md
    assert "<img" not in md


def test_the_auto_autoattack_of_two_classes_is_the_one_the_adapter_runs() -> None:
    from pytest_robust.attacks.autoattack import auto_attacks
    from pytest_robust.report.setup import AUTO_TWO_CLASSES

    assert auto_attacks(2) == AUTO_TWO_CLASSES


def test_terminal_line_of_a_degenerate_model_says_so() -> None:
    """A model that answers one class for everything: DEGENERATE with why, never PASS."""
    from pytest_robust.report.terminal import summary_lines

    result = _per_sample("pgd", [True, True, False, False])
    result["evaluation"]["clean_pred"] = [1, 1, 1, 1]
    doc = res.build_document([res.TestRecord(nodeid="t", results=[result])], run=RUN, manifest=MANIFEST)
    line = summary_lines(doc)[0]
    assert line.startswith("DEGENERATE m ")
    assert "  degenerate: " in line
