"""Degenerate models: the measure, the evaluation's record, the gate, findings and the report."""

from __future__ import annotations

import json
import textwrap
import warnings
from typing import Any

import pytest
from markupsafe import escape
from torch import nn

from pytest_robust.attacks import FGSM
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.degeneracy import MAX_RECALL, MIN_CLASS_SAMPLES, RULE, degeneracy, degeneracy_of
from pytest_robust.errors import DegenerateModelWarning
from pytest_robust.evaluate import EvalResult, evaluate
from pytest_robust.gate import RobustnessFailure, RobustResult, UnsoundEvaluation, assert_robust
from pytest_robust.policies import PointEstimate, Verdict
from pytest_robust.report import results as res
from pytest_robust.threat import ThreatModel
from pytest_robust.training import seeded
from tests.conftest import make_blobs, tiny_net
from tests.inner import PRELUDE, smoke_args
from tests.zoo import OneClass

BM = ("benign", "malignant")

# --- the measure ----------------------------------------------------------------------------------


def test_a_one_class_predictor_is_degenerate() -> None:
    labels = [0] * 16 + [1] * 16
    d = degeneracy(labels, [1] * 32, classes=BM)
    assert d.degenerate
    assert d.one_answer
    assert [c.name for c in d.missed] == ["benign"]
    assert d.min_recall == 0.0
    assert (d.top_prediction, d.top_count) == ("malignant", 32)
    assert "never recognises benign" in d.reason
    assert "benign 0/16 (0.000)" in d.reason
    assert "malignant for 32 of 32 samples" in d.reason
    assert d.recalls() == "benign 0/16 (0.000), malignant 16/16 (1.000)"


def test_a_balanced_good_predictor_is_not() -> None:
    labels = [0] * 16 + [1] * 16
    preds = [0] * 14 + [1] * 2 + [1] * 13 + [0] * 3
    d = degeneracy(labels, preds, classes=BM)
    assert not d.degenerate
    assert d.reason == ""
    assert d.missed == ()
    assert d.min_recall == pytest.approx(13 / 16)
    # a weak model that still recognises both classes is not degenerate either
    weak = [0] * 4 + [1] * 12 + [1] * 16
    assert not degeneracy(labels, weak, classes=BM).degenerate


def test_the_issue_case_most_malignant_called_benign() -> None:
    """30 of 32 malignant lesions called benign (recall 0.0625): the model is degenerate although it
    does predict malignant twice."""
    labels = [0] * 32 + [1] * 32
    preds = [0] * 32 + [1] * 2 + [0] * 30
    d = degeneracy(labels, preds, classes=BM)
    assert d.degenerate
    assert not d.one_answer
    assert [c.name for c in d.missed] == ["malignant"]
    assert "malignant 2/32 (0.062)" in d.reason


def test_three_classes_one_never_predicted() -> None:
    names = ("a", "b", "c")
    labels = [0] * 12 + [1] * 12 + [2] * 12
    blind = [0] * 12 + [1] * 12 + [0] * 6 + [1] * 6  # never predicts c
    d = degeneracy(labels, blind, classes=names)
    assert d.degenerate
    assert not d.one_answer
    assert [c.name for c in d.missed] == ["c"]
    assert [c.predicted for c in d.classes] == [18, 18, 0]
    good = [0] * 12 + [1] * 12 + [2] * 10 + [0, 1]
    assert not degeneracy(labels, good, classes=names).degenerate


def test_the_threshold_and_small_classes() -> None:
    n = MIN_CLASS_SAMPLES * 2
    at = round(MAX_RECALL * n)  # recall exactly at the threshold: missed
    labels = [0] * n + [1] * n
    assert degeneracy(labels, [0] * n + [1] * at + [0] * (n - at), classes=BM).degenerate
    above = at + 1
    assert not degeneracy(labels, [0] * n + [1] * above + [0] * (n - above), classes=BM).degenerate
    # fewer samples than MIN_CLASS_SAMPLES: 0 of 3 is no evidence on its own ...
    small = [0] * 20 + [1] * 3
    d = degeneracy(small, [0] * 19 + [1] + [0] * 3, classes=BM)  # malignant 0/3, predicted once
    assert not d.classes[1].judged
    assert not d.degenerate
    # ... but one answer for every sample is degenerate whatever the counts
    tiny = degeneracy([0, 1, 0, 1], [1, 1, 1, 1], classes=BM)
    assert tiny.degenerate
    assert tiny.one_answer
    assert tiny.missed == ()
    assert "never recognises benign" in tiny.reason
    # one class in the data, recognised: nothing to compare it with
    assert not degeneracy([1] * 12, [1] * 12, classes=BM).degenerate


def test_json_block_and_old_results() -> None:
    d = degeneracy([0] * 10 + [1] * 10, [1] * 20, classes=BM).to_json()
    assert d["degenerate"] is True
    assert d["missed_classes"] == ["benign"]
    assert d["rule"] == RULE
    assert (d["max_recall"], d["min_class_samples"]) == (MAX_RECALL, MIN_CLASS_SAMPLES)
    assert d["classes"][0] == {
        "label": 0,
        "name": "benign",
        "n": 10,
        "correct": 0,
        "predicted": 0,
        "recall": 0.0,
    }
    # an evaluation recorded before the block existed is judged from its labels and predictions
    old = {"labels": [0] * 10 + [1] * 10, "clean_pred": [1] * 20, "data": {"classes": list(BM)}}
    assert degeneracy_of(old) == d
    assert degeneracy_of({**old, "degenerate": {"degenerate": False}}) == {"degenerate": False}


# --- an evaluation and the gate -------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_class() -> nn.Module:
    """An untrained tiny net plus a margin for malignant: it answers malignant for every image, and
    its gradients and logits are honest (the soundness checks pass)."""
    with seeded(0):
        base = tiny_net()
    return OneClass(base, label=1, margin=3.0).eval()


@pytest.fixture(scope="module")
def data() -> ImageDataset:
    return make_blobs(64, seed=3)


def test_evaluation_of_a_one_class_model_is_flagged_in_its_json(
    one_class: nn.Module, data: ImageDataset
) -> None:
    ev = evaluate(one_class, data, FGSM(), ThreatModel(norm="Linf", eps=2 / 255), device="cpu")
    assert ev.robust_acc == ev.clean_acc == 0.5  # the class balance, whatever the attack
    assert ev.degeneracy.degenerate
    block = ev.to_json()["degenerate"]
    assert block["degenerate"] is True
    assert block["missed_classes"] == ["benign"]
    assert block["one_answer"] is True
    # recomputed on load (the result cache and old results hold no block of their own)
    stored = ev.to_json()
    del stored["degenerate"]
    again = EvalResult.from_json(json.loads(json.dumps(stored)))
    assert again.degeneracy == ev.degeneracy
    assert again.to_json()["degenerate"] == block


def test_the_gate_fails_a_degenerate_model_under_strict(one_class: nn.Module, data: ImageDataset) -> None:
    warned = "DEGENERATE under FGSM: the model .*never recognises benign.*the gate fails"
    with pytest.warns(DegenerateModelWarning, match=warned), pytest.raises(RobustnessFailure) as info:
        assert_robust(one_class, FGSM(), eps=2 / 255, min_acc=0.0, data=data, device="cpu")
    assert not isinstance(info.value, UnsoundEvaluation)
    result = info.value.result
    assert result.evaluation.sound  # the checks pass: the model is degenerate, not masked
    assert result.verdict.degenerate
    assert not result.verdict.passed
    assert result.verdict.status == "fail"
    assert result.verdict.label() == "DEGENERATE"
    message = str(info.value)
    assert message.startswith("robustness gate DEGENERATE: the model (almost) never recognises benign")
    assert "the gate cannot pass; soundness=strict" in message
    assert "clean recall per class: benign 0/32 (0.000), malignant 32/32 (1.000)" in message
    assert RULE in message
    assert "to fix       the model learned (almost) nothing about that class" in message
    assert "train for robustness" not in message  # not the advice for a weak model
    again = RobustResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result
    assert again.to_json()["verdict"]["degenerate"] is True


def test_under_warn_the_policy_decides_and_the_result_is_marked(
    one_class: nn.Module, data: ImageDataset
) -> None:
    with pytest.warns(DegenerateModelWarning, match=r"the gate passes only under soundness=warn"):
        result = assert_robust(
            one_class,
            FGSM(),
            eps=2 / 255,
            min_acc=0.0,
            data=data,
            device="cpu",
            soundness="warn",
            policy=PointEstimate(),
            context={"model": "one-class"},
        )
    assert result.passed
    assert result.verdict.degenerate
    assert result.verdict.label() == "DEGENERATE (passed: soundness=warn)"
    assert result.explain().startswith("robustness gate DEGENERATE")
    assert "passed only because soundness=warn" in result.explain()


def test_a_healthy_model_is_not_flagged(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateModelWarning)
        result = assert_robust(trained_tiny, FGSM(), eps=1 / 255, min_acc=0.5, data=blobs, device="cpu")
    assert not result.verdict.degenerate
    assert result.verdict.label() == "PASS"
    assert result.to_json()["evaluation"]["degenerate"]["degenerate"] is False
    assert "DEGENERATE" not in result.explain()


def test_a_verdict_recorded_before_the_rule_reads_as_not_degenerate() -> None:
    v = Verdict(
        passed=True,
        policy="p",
        statistic="robust accuracy",
        measured=0.5,
        required=0.0,
        interval=(0.4, 0.6),
        confidence=0.95,
        reason="r",
        degenerate=True,
    )
    assert Verdict.from_json(v.to_json()) == v
    old = v.to_json()
    del old["degenerate"]
    assert Verdict.from_json(old).degenerate is False


# --- findings through the plugin ------------------------------------------------------------------

FINDINGS_CONFTEST = PRELUDE + textwrap.dedent(
    """
    import dataclasses

    class OneClass(nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base = base

        def forward(self, x):
            return self.base(x) + torch.tensor([0.0, 3.0])

    @pytest.fixture(scope="session")
    def robust_data():
        return blobs(64, 1)

    @pytest.fixture(scope="session")
    def good():
        return tiny_model()

    @pytest.fixture(scope="session")
    def bad():
        torch.manual_seed(0)
        return OneClass(nn.Sequential(nn.Flatten(), nn.Linear(192, 2))).eval()
    """
)

FINDINGS_TESTS = textwrap.dedent(
    """
    import warnings
    from pytest_robust.errors import DegenerateModelWarning

    def gate(assert_robust, model, name):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            r = assert_robust(model, "none", eps=0.0, min_acc=0.0, soundness="warn",
                              context={"model": name})
        return r, [w for w in seen if issubclass(w.category, DegenerateModelWarning)]

    def test_on_a_degenerate_model(assert_robust, record_finding, bad, good):
        r, warned = gate(assert_robust, bad, "one-class")
        assert warned and "one-class is DEGENERATE" in str(warned[0].message)
        ok, _ = gate(assert_robust, good, "good")
        holds = record_finding("bad wins", claim="one-class >= good", measured="0.5 vs 1.0",
                               holds=True, results=[r, ok])
        assert holds is False

    def test_on_healthy_models(assert_robust, record_finding, good):
        ok, warned = gate(assert_robust, good, "good")
        assert not warned
        assert record_finding("good holds", claim="c", measured="m", holds=True, results=[ok.evaluation])

    def test_results_must_be_results(record_finding):
        record_finding("x", claim="c", measured="m", holds=True, results=["not a result"])
    """
)


def test_record_finding_does_not_hold_on_a_degenerate_model(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FINDINGS_CONFTEST)
    pytester.makepyfile(test_findings=FINDINGS_TESTS)
    result = pytester.runpytest_subprocess(*smoke_args(pytester), "--robust-report=out")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*RobustConfigError: record_finding(results=...): 'not a result' is not a*"])
    doc = json.loads((pytester.path / "out" / "latest" / "results.json").read_text(encoding="utf-8"))
    findings = {f["name"]: f for t in doc["tests"] for f in t["findings"]}
    bad = findings["bad wins"]
    assert bad["holds"] is False
    assert bad["reason"].startswith("degenerate model: one-class: the model (almost) never recognises benign")
    assert [d["model"] for d in bad["degenerate"]] == ["one-class"]
    good = findings["good holds"]
    assert good["holds"] is True
    assert "reason" not in good
    assert "degenerate" not in good
    # the rows and the table carry the flag; the page shows it and never "holds" for that finding
    rows = {r["model"]: r for r in doc["rows"]}
    assert rows["one-class"]["degenerate"] is True
    assert rows["good"]["degenerate"] is False
    assert doc["summary"]["degenerate"] == 1
    page = (pytester.path / "out" / "latest" / "report.html").read_text(encoding="utf-8")
    table = page[page.index('id="findings-table"') :]
    table = table[: table.index("</table>")]
    bad_row = next(r for r in table.split("<tr>") if "bad wins" in r)
    assert (
        '<td class="l outcome-failed">no<br><span class="small finding-reason">degenerate model: one-class'
        in bad_row
    )
    assert "1 DEGENERATE" in page[page.index('id="verdict-line"') :]


# --- the report's rows, Table V, the page, the markdown ----------------------------------------------


def _result(
    model: str, clean_pred: list[int], *, degenerate_key: bool = True, passed: bool = True
) -> dict[str, Any]:
    labels = [0] * 10 + [1] * 10
    ev: dict[str, Any] = {
        "threat": {"norm": "Linf", "eps": 4 / 255},
        "attack": {"name": "pgd"},
        "attack_description": "PGD",
        "n": 20,
        "clean_acc": sum(p == y for p, y in zip(clean_pred, labels, strict=True)) / 20,
        "robust_acc": 0.5,
        "labels": labels,
        "clean_pred": clean_pred,
        "adv_pred": clean_pred,
        "clean_scores": [0.5] * 20,
        "adv_scores": [0.5] * 20,
        "data": {"name": "d", "synthetic": True, "fingerprint": "f", "classes": list(BM)},
        "model": {"fingerprint": "ab" * 32},
        "seed": 0,
        "device": "cpu",
        "timings": {"total_s": 1.0},
    }
    if degenerate_key:
        ev["degenerate"] = degeneracy(labels, clean_pred, classes=BM).to_json()
    verdict: dict[str, Any] = {
        "interval": [0.3, 0.7],
        "confidence": 0.95,
        "policy": "point-estimate",
        "passed": passed,
        "reason": "robust accuracy 0.500 >= required 0.000",
    }
    if degenerate_key:
        verdict.update(soundness="warn", degenerate=ev["degenerate"]["degenerate"])
    return {"schema": 1, "evaluation": ev, "verdict": verdict, "min_acc": 0.0, "context": {"model": model}}


def _document(*, degenerate_key: bool = True) -> dict[str, Any]:
    good = [0] * 9 + [1] + [1] * 9 + [0]
    records = [
        res.TestRecord(nodeid="t::good", results=[_result("good", good, degenerate_key=degenerate_key)]),
        res.TestRecord(
            nodeid="t::bad", results=[_result("one-class", [1] * 20, degenerate_key=degenerate_key)]
        ),
    ]
    return res.build_document(records, run={}, manifest={})


@pytest.mark.parametrize("degenerate_key", [True, False], ids=["recorded", "before-the-rule"])
def test_rows_and_table_carry_the_flag(degenerate_key: bool) -> None:
    doc = _document(degenerate_key=degenerate_key)
    rows = {r["model"]: r for r in doc["rows"]}
    bad, good = rows["one-class"], rows["good"]
    assert bad["degenerate"] is True
    assert bad["degenerate_reason"].startswith("the model (almost) never recognises benign")
    assert bad["min_class_recall"] == 0.0
    assert (good["degenerate"], good["degenerate_reason"], good["min_class_recall"]) == (False, "", 0.9)
    assert doc["summary"]["degenerate"] == 1
    table = {t["model"]: t for t in res.model_table(doc)}
    assert table["one-class"]["degenerate"] is True
    assert table["one-class"]["degenerate_reason"] == bad["degenerate_reason"]
    assert table["good"]["degenerate"] is False
    label = "DEGENERATE (passed: soundness=warn)" if degenerate_key else "DEGENERATE (passed)"
    assert res.soundness_of(doc["details"][doc["rows"].index(bad)])["label"] == label
    assert res.soundness_of(doc["details"][doc["rows"].index(good)])["label"] == "PASS"
    from pytest_robust.report.evaluations import evaluations_frame

    frame = evaluations_frame(doc)
    assert "degenerate" in frame.columns
    verdicts = dict(zip(frame["model"], frame["verdict"], strict=True))
    assert verdicts["one-class"] == "DEGENERATE"  # results.csv's verdict, whatever the gate said
    assert verdicts["good"] == "PASS"


def test_the_page_and_the_markdown_flag_the_model() -> None:
    from pytest_robust.report.html import render_report
    from pytest_robust.report.markdown import table as markdown_table
    from tests.test_report_units import MANIFEST, RUN

    doc = _document()
    doc.update(run=RUN, manifest=MANIFEST)
    page = render_report(doc)
    table_v = page[page.index('id="table-v"') :]
    table_v = table_v[: table_v.index("</table>")]
    bad_row = next(r for r in table_v.split("<tr") if "one-class" in r)
    good_row = next(r for r in table_v.split("<tr") if ">good" in r)
    assert 'class="degenerate-model"' in bad_row
    assert '<span class="degenerate small" title="the model (almost) never recognises benign' in bad_row
    assert "DEGENERATE" not in good_row
    assert str(escape(RULE)) in page  # the rule, under Table V
    gates = page[page.index('id="gates-table"') :]
    assert 'class="l degenerate"' in gates
    assert "DEGENERATE (passed: soundness=warn)" in gates
    md = markdown_table(doc)
    assert "| one-class **DEGENERATE** |" in md
    assert "- **DEGENERATE**: one-class: the model (almost) never recognises benign" in md
    assert "| good |" in md


def test_a_finding_marked_degenerate_never_shows_as_holding() -> None:
    assert res.finding_holds({"holds": True})
    assert not res.finding_holds({"holds": False})
    assert not res.finding_holds({"holds": True, "degenerate": [{"model": "m", "reason": "r"}]})
