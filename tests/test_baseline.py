"""Baselines, the paired non-inferiority policy and the clinical requirements (pure API, no plugin)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from pytest_robust.attacks import PGD
from pytest_robust.baseline import (
    Baseline,
    BaselineError,
    BaselineWarning,
    Comparison,
    compare,
    relative_path,
)
from pytest_robust.clinical import clinical, resolve_positive
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import RobustConfigError, RobustDataError
from pytest_robust.gate import RobustnessFailure, RobustResult, assert_robust
from pytest_robust.policies import NonInferiority, PointEstimate, Verdict
from pytest_robust.training import seeded
from tests.conftest import fit, make_blobs, tiny_net

PGD5 = PGD(steps=5)


def _gate(model: nn.Module, data: ImageDataset, **kw: object) -> RobustResult:
    kw.setdefault("min_acc", 0.0)
    kw.setdefault("policy", PointEstimate())  # decide at the measured value (default: the lower bound)
    kw.setdefault("eps", 4 / 255)
    return assert_robust(model, kw.pop("attack", PGD5), data=data, device="cpu", **kw)  # type: ignore[arg-type]


# --- clinical numbers ----------------------------------------------------------------------------


def test_clinical_counts_by_hand() -> None:
    labels = [1, 1, 1, 1, 0, 0, 0]
    clean = [1, 1, 1, 0, 0, 0, 1]
    adv = [1, 0, 0, 0, 0, 1, 1]
    c = clinical(labels, clean, adv, positive_label=1, classes=("benign", "malignant"))
    assert (c.n_positive, c.n_negative) == (4, 3)
    assert c.clean_true_positive == 3
    assert c.robust_true_positive == 1
    assert c.flipped_to_negative == 2
    assert c.flip_rate == pytest.approx(2 / 3)
    assert c.clean_true_negative == 2
    assert c.robust_true_negative == 1
    assert c.flipped_to_positive == 1
    assert c.robust_sensitivity == pytest.approx(0.25)
    assert c.robust_specificity == pytest.approx(1 / 3)
    swapped = clinical(labels, clean, adv, positive_label=0, classes=("benign", "malignant"))
    assert swapped.n_positive == 3
    assert swapped.positive_class == "benign"


def test_positive_class_by_name_or_label() -> None:
    assert resolve_positive("Malignant", ("benign", "malignant")) == 1
    assert resolve_positive(0, ("benign", "malignant")) == 0
    with pytest.raises(RobustConfigError, match="not a class"):
        resolve_positive("melanoma", ("benign", "malignant"))
    with pytest.raises(RobustConfigError, match="not a label"):
        resolve_positive(2, ("benign", "malignant"))


def test_clinical_numbers_in_every_result(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    r = _gate(trained_tiny, blobs, eps=16 / 255)
    d = r.to_json()["evaluation"]["clinical"]
    labels = np.array(r.evaluation.labels)
    robust = np.array(r.robust_correct)
    assert d["robust_sensitivity"] == pytest.approx(robust[labels == 1].mean())
    assert d["robust_specificity"] == pytest.approx(robust[labels == 0].mean())
    assert d["positive_class"] == "malignant"
    again = RobustResult.from_json(json.loads(json.dumps(r.to_json())))
    assert again.evaluation.clinical == r.evaluation.clinical


def test_sensitivity_gate_passes_and_fails(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    r = _gate(trained_tiny, blobs, eps=16 / 255)
    sens = r.evaluation.clinical.robust_sensitivity
    assert sens is not None
    assert 0 < sens < 1
    ok = _gate(trained_tiny, blobs, eps=16 / 255, min_sensitivity=sens)
    assert ok.passed
    assert [p.statistic for p in ok.verdict.parts] == ["robust accuracy", "robust sensitivity"]
    with pytest.raises(RobustnessFailure) as info:
        _gate(trained_tiny, blobs, eps=16 / 255, min_sensitivity=min(1.0, sens + 0.05))
    msg = str(info.value)
    assert "on 128 positive samples, robust sensitivity" in msg
    assert "FAIL robust sensitivity" in msg
    assert "PASS robust accuracy" in msg
    # the same requirement on the other class as the positive one reads the other numbers
    spec = r.evaluation.clinical.robust_specificity
    assert spec is not None
    with pytest.raises(RobustnessFailure):
        _gate(trained_tiny, blobs, eps=16 / 255, min_sensitivity=min(1.0, spec + 0.05), positive="benign")


def test_flip_rate_gate(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    r = _gate(trained_tiny, blobs, eps=16 / 255)
    rate = r.evaluation.clinical.flip_rate
    assert rate is not None
    assert rate > 0.05
    assert _gate(trained_tiny, blobs, eps=16 / 255, max_flip_rate=rate).passed
    with pytest.raises(RobustnessFailure, match="flip rate"):
        _gate(trained_tiny, blobs, eps=16 / 255, max_flip_rate=rate - 0.05)


def test_clinical_gate_without_positives_is_a_clear_error(
    trained_tiny: nn.Module, blobs: ImageDataset
) -> None:
    benign = blobs.select([i for i in range(len(blobs)) if int(blobs.labels[i]) == 0])
    with pytest.raises(RobustDataError, match="min_sensitivity needs positive samples"):
        _gate(trained_tiny, benign, min_sensitivity=0.5)
    with pytest.raises(RobustConfigError, match="fraction"):
        _gate(trained_tiny, blobs, min_sensitivity=80)


# --- non-inferiority -----------------------------------------------------------------------------


def test_non_inferiority_error_rate_by_simulation() -> None:
    """At a true difference of exactly -margin, the exact test rejects (passes) at most 5% of candidates."""
    import functools

    from pytest_robust.paired import p_value

    rng = np.random.default_rng(0)
    margin = 0.02
    test = functools.lru_cache(maxsize=None)(lambda b, c, n: p_value(b, c, n, margin) <= 0.05)
    for n, discordant in ((256, 0.025), (256, 0.06), (256, 0.2)):
        p10, p01 = (discordant + margin) / 2, (discordant - margin) / 2
        draws = rng.multinomial(n, [p10, p01, 1 - discordant], size=2000)
        passed = np.mean([test(int(b), int(c), n) for b, c, _ in draws])
        assert passed <= 0.05 + 0.01, (n, discordant, passed)  # 0.01: Monte-Carlo error (sd 0.005)
    # and it has power: an equal candidate with few discordant samples passes at n=256 most of the time
    draws = rng.multinomial(256, [0.002, 0.002, 0.996], size=300)
    assert np.mean([test(int(b), int(c), 256) for b, c, _ in draws]) > 0.9


def test_non_inferiority_decisions_by_hand() -> None:
    p = NonInferiority()
    one_each = Comparison(
        n=256,
        baseline_acc=0.8,
        candidate_acc=0.8,
        newly_broken=1,
        newly_robust=1,
        newly_broken_ids=("a",),
        newly_robust_ids=("b",),
        newly_broken_positions=(0,),
        same_model=False,
    )
    assert p.compare(one_each).passed  # 1 broken, 1 fixed of 256: shown within 2 points
    small = Comparison(
        n=64,
        baseline_acc=0.8,
        candidate_acc=0.8,
        newly_broken=0,
        newly_robust=0,
        newly_broken_ids=(),
        newly_robust_ids=(),
        newly_broken_positions=(),
        same_model=False,
    )
    verdict = p.compare(small)
    assert not verdict.passed  # n=64 cannot show it
    assert "not shown to be non-inferior" in verdict.reason
    assert p.compare(replace(small, same_model=True)).passed  # the same model: zero by construction
    worse = replace(one_each, newly_broken=39, newly_robust=8, candidate_acc=0.8 - 31 / 256)
    assert "credible regression" in p.compare(worse).reason


def test_non_inferiority_bounds_are_ordered_and_exact_at_the_edges() -> None:
    p = NonInferiority()
    lo, hi = p.bounds(0, 0, 256)
    assert -0.02 < lo < 0 < hi
    lo, hi = p.bounds(0, 40, 256)
    assert lo < -40 / 256 < hi < -0.05
    with pytest.raises(RobustConfigError):
        NonInferiority(margin=2)
    with pytest.raises(RobustConfigError):
        NonInferiority(confidence=95)


# --- baselines -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weaker() -> nn.Module:
    with seeded(5):
        net = tiny_net()
    return fit(net, make_blobs(1024, seed=7), steps=25)


def test_baseline_round_trip_is_sorted_and_deterministic(
    trained_tiny: nn.Module, blobs: ImageDataset
) -> None:
    r = _gate(trained_tiny, blobs, n=64)
    b = Baseline.from_result(r.evaluation, test="t.py::test_x", gate=1)
    text = b.to_text()
    again = _gate(trained_tiny, blobs, n=64).evaluation
    assert text == Baseline.from_result(again, test="t.py::test_x").to_text()
    assert Baseline.from_text(text) == b
    lines = text.splitlines()
    sample_lines = [ln for ln in lines if ln.strip().startswith('{"clean"')]
    assert len(sample_lines) == 64  # one line per sample
    ids = [json.loads(ln.rstrip(","))["id"] for ln in sample_lines]
    assert ids == sorted(ids, key=int)
    d = json.loads(text)
    assert d["data"]["fingerprint"] == r.evaluation.data["fingerprint"]
    assert d["attack"] == PGD5.config()
    assert d["seed"] == 0
    assert "torch" in d["versions"]


def test_same_model_passes_and_regression_fails(
    trained_tiny: nn.Module, weaker: nn.Module, blobs: ImageDataset, tmp_path: Path
) -> None:
    base = Baseline.from_result(_gate(trained_tiny, blobs, eps=16 / 255).evaluation, test="t")
    path = tmp_path / "b.json"
    path.write_text(base.to_text())
    same = _gate(trained_tiny, blobs, eps=16 / 255, baseline=path)
    part = same.verdict.parts[-1]
    assert part.passed
    assert part.policy.startswith("non-inferiority")
    assert part.interval == (0.0, 0.0)
    with pytest.raises(RobustnessFailure) as info:
        _gate(weaker, blobs, eps=16 / 255, baseline=str(path))
    result = info.value.result
    comp = compare(base, result.evaluation)
    assert comp.newly_broken > 5
    msg = str(info.value)
    assert f"{comp.newly_broken} newly broken" in msg
    assert "newly broken    " + ", ".join(comp.newly_broken_ids[:10]) in msg
    assert "--robust-baseline-update" in msg
    # the gallery's examples are the newly broken ones first
    assert result.evaluation.examples
    assert {e.index for e in result.evaluation.examples} <= set(comp.newly_broken_positions)


def test_baseline_on_other_data_attack_or_threat_is_an_error(
    trained_tiny: nn.Module, blobs: ImageDataset, tmp_path: Path
) -> None:
    base = Baseline.from_result(_gate(trained_tiny, blobs, n=64).evaluation, test="t")
    with pytest.raises(BaselineError, match=r"(?s)attack: .*--robust-baseline-update"):
        _gate(trained_tiny, blobs, n=64, baseline=base, attack=PGD(steps=6))
    with pytest.raises(BaselineError, match="threat model"):
        _gate(trained_tiny, blobs, n=64, baseline=base, eps=2 / 255)
    with pytest.raises(BaselineError, match=r"data: .* ids differ"):
        _gate(trained_tiny, blobs, n=65, baseline=base)
    shifted = ImageDataset(
        images=(blobs.images * 0.99),
        labels=blobs.labels,
        classes=blobs.classes,
        name=blobs.name,
        synthetic=True,
    )
    with pytest.raises(BaselineError, match="same sample ids with other pixels"):
        _gate(trained_tiny, shifted, n=64, baseline=base)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BaselineError, match="not valid JSON"):
        _gate(trained_tiny, blobs, n=64, baseline=bad)
    with pytest.raises(RobustConfigError, match=r"needs|has none"):
        _gate(trained_tiny, blobs, n=64, policy=NonInferiority())


def test_baseline_from_other_versions_warns_and_compares(
    trained_tiny: nn.Module, blobs: ImageDataset
) -> None:
    base = Baseline.from_result(_gate(trained_tiny, blobs, n=64).evaluation, test="t")
    old = Baseline.from_text(base.to_text().replace(f'"torch": "{base.versions["torch"]}"', '"torch": "1.0"'))
    with pytest.warns(BaselineWarning, match=r"torch 1.0 ->"):
        r = _gate(trained_tiny, blobs, n=64, baseline=old)
    assert r.passed


def test_relative_path_is_safe_and_unique() -> None:
    p = relative_path("suites/test_q.py::test_pgd[8/255]")
    assert p.parts[:2] == ("suites", "test_q.py")
    assert "/" not in p.name
    assert p.suffix == ".json"
    assert relative_path("suites/test_q.py::test_pgd[8_255]") != p
    assert relative_path("t.py::test_a", 2).name == "test_a.gate2.json"
    assert ".." not in relative_path("../x.py::test_a").parts


def test_verdict_parts_round_trip() -> None:
    part = Verdict(
        passed=False,
        policy="p",
        statistic="s",
        measured=0.1,
        required=0.2,
        interval=(0.0, 0.3),
        confidence=0.95,
        reason="r",
        details={"newly_broken": 3},
    )
    v = Verdict(
        passed=False,
        policy="p",
        statistic="s",
        measured=0.1,
        required=0.2,
        interval=(0.0, 0.3),
        confidence=0.95,
        reason="r",
        parts=(part,),
    )
    assert Verdict.from_json(json.loads(json.dumps(v.to_json()))) == v


# --- the sequential policy in a gate -------------------------------------------------------------


def test_sequential_gate_stops_early_both_ways(trained_tiny: nn.Module) -> None:
    from pytest_robust.policies import Sequential

    data = make_blobs(1024, seed=11)
    with pytest.raises(RobustnessFailure, match=r"confidence sequence .* is below 0\.700") as info:
        _gate(trained_tiny, data, eps=32 / 255, min_acc=0.7, policy=Sequential())
    bad = info.value.result
    assert bad.n < 1024
    assert bad.evaluation.data["available"] == 1024
    assert bad.verdict.details["used"] == bad.n
    assert "samples used" in str(info.value)
    ok = _gate(trained_tiny, data, eps=1 / 255, min_acc=0.5, policy=Sequential())
    assert ok.passed
    assert ok.n < 1024
    assert ok.verdict.interval[0] > 0.5
    # the fixed-n policy on the same gate used every sample and agrees
    assert _gate(trained_tiny, data, eps=1 / 255, min_acc=0.5).n == 1024


def test_sequential_gate_inconclusive_is_a_fail(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    from pytest_robust.policies import Sequential

    r = _gate(trained_tiny, blobs, eps=16 / 255)
    near = r.robust_acc  # the requirement at the measured accuracy: no sample size decides it
    with pytest.raises(RobustnessFailure, match="inconclusive after 256 of 256 samples"):
        _gate(trained_tiny, blobs, eps=16 / 255, min_acc=near, policy=Sequential())


def test_sequential_with_a_baseline_is_a_clear_error(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    from pytest_robust.policies import Sequential

    base = Baseline.from_result(_gate(trained_tiny, blobs, n=64).evaluation, test="t")
    with pytest.raises(RobustConfigError, match="pairs every sample"):
        _gate(trained_tiny, blobs, n=64, baseline=base, policy=Sequential())


def test_the_default_policy_is_the_lower_confidence_bound(
    trained_tiny: nn.Module, blobs: ImageDataset
) -> None:
    measured = _gate(trained_tiny, blobs, eps=16 / 255)
    acc = measured.robust_acc
    assert _gate(trained_tiny, blobs, eps=16 / 255, min_acc=acc).passed  # point estimate: passes
    with pytest.raises(RobustnessFailure, match="lower bound") as info:
        assert_robust(trained_tiny, PGD5, eps=16 / 255, min_acc=acc, data=blobs, device="cpu")
    assert info.value.result.verdict.policy == "lower-confidence-bound(0.95)"
