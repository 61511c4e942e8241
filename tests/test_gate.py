"""assert_robust as a function: decisions, messages, policies, JSON."""

from __future__ import annotations

import json
import warnings

import pytest
from torch import nn

from pytest_robust.attacks import PGD
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import RobustConfigError, RobustDataWarning
from pytest_robust.gate import (
    LowerConfidenceBound,
    PointEstimate,
    RobustnessFailure,
    RobustResult,
    assert_robust,
    samples_label,
)
from pytest_robust.training import seeded
from tests.conftest import make_blobs, tiny_net


def test_pass_returns_a_frozen_result(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    r = assert_robust(trained_tiny, "fgsm", eps=1 / 255, min_acc=0.5, data=blobs, device="cpu")
    assert r.passed
    assert r.n == len(blobs)
    assert 0.5 <= r.robust_acc <= r.clean_acc
    assert len(r.robust_correct) == r.n
    assert r.timings["total_s"] > 0
    with pytest.raises(AttributeError):
        r.min_acc = 0.0  # type: ignore[misc]
    again = RobustResult.from_json(json.loads(json.dumps(r.to_json())))
    assert again == r


def test_failure_message_is_actionable(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    with pytest.raises(RobustnessFailure) as info:
        assert_robust(
            trained_tiny, PGD(steps=10), eps=32 / 255, min_acc=0.9, data=blobs, n=100, device="cpu", seed=3
        )
    msg = str(info.value)
    result = info.value.result
    assert result.robust_acc < 0.9
    assert f"robust accuracy {result.robust_acc:.3f} < required 0.900" in msg
    assert f"clean accuracy  {result.clean_acc:.3f}" in msg
    assert "Linf eps=32/255" in msg
    assert "PGD-10 (step 0.5*eps, 1 restart(s), random start)" in msg
    assert "n=100" in msg
    assert "cpu, seed=3" in msg
    assert "95% CI [" in msg
    assert isinstance(info.value, AssertionError)


def test_lower_confidence_bound_is_stricter(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    point = assert_robust(trained_tiny, "fgsm", eps=0.0, min_acc=0.0, data=blobs, n=20, device="cpu")
    acc = point.robust_acc
    assert_robust(
        trained_tiny, "fgsm", eps=0.0, min_acc=acc, data=blobs, n=20, device="cpu", policy=PointEstimate()
    )
    with pytest.raises(RobustnessFailure, match="lower bound"):
        assert_robust(
            trained_tiny,
            "fgsm",
            eps=0.0,
            min_acc=acc,
            data=blobs,
            n=20,
            device="cpu",
            policy=LowerConfidenceBound(),
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": 4, "min_acc": 0.7}, "Did you mean eps=4/255"),
        ({"eps": -1 / 255, "min_acc": 0.7}, "eps must be >= 0"),
        ({"eps": 4 / 255, "min_acc": 70}, "Did you mean min_acc=0.7"),
        ({"eps": 4 / 255, "min_acc": 0.7, "norm": "L3"}, "valid norms: 'Linf', 'L2'"),
        ({"eps": 4 / 255, "min_acc": 0.7, "n": 0}, "n must be a positive integer"),
        ({"eps": 4 / 255, "min_acc": 0.7, "policy": "strict"}, "policy must have a decide"),
    ],
)
def test_bad_arguments_fail_before_any_work(
    trained_tiny: nn.Module, blobs: ImageDataset, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(RobustConfigError, match=match):
        assert_robust(trained_tiny, "pgd", data=blobs, **kwargs)  # type: ignore[arg-type]


def test_unknown_attack_name(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    valid = "valid attacks: aa, apgd, auto-attack, autoattack, clean, fgsm, none, pgd"
    with pytest.raises(RobustConfigError, match=valid):
        assert_robust(trained_tiny, "cw", eps=4 / 255, min_acc=0.5, data=blobs)


@pytest.mark.parametrize(("attack", "eps"), [("none", 0.0), ("fgsm", 0.0)])
def test_a_failed_clean_gate_advises_a_better_model_not_adversarial_training(
    trained_tiny: nn.Module, blobs: ImageDataset, attack: str, eps: float
) -> None:
    with pytest.raises(RobustnessFailure) as info:
        assert_robust(trained_tiny, attack, eps=eps, min_acc=1.0, data=blobs, n=40, device="cpu")
    msg = str(info.value)
    hint = msg.splitlines()[-1]
    assert hint.startswith("  to fix: this gate measures clean accuracy (no attack): improve or retrain")
    assert "the labels (0 benign, 1 malignant), the input shape (3x8x8), pixels in [0, 1]" in hint
    assert "adversarial" not in msg
    assert "train for robustness" not in msg


def test_a_failed_robust_gate_keeps_its_advice(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    with pytest.raises(RobustnessFailure) as info:
        assert_robust(
            trained_tiny, PGD(steps=10), eps=32 / 255, min_acc=0.9, data=blobs, n=100, device="cpu", seed=3
        )
    assert info.value.result.clean_acc >= 0.9
    hint = str(info.value).splitlines()[-1]
    assert hint == (
        "  to fix: train for robustness (e.g. PGD adversarial training), or lower the requirement "
        "deliberately; a larger n narrows the interval"
    )


def test_a_robust_gate_below_on_clean_inputs_says_to_fix_the_clean_model_first(blobs: ImageDataset) -> None:
    with seeded(0):
        untrained = tiny_net().eval()
    with pytest.raises(RobustnessFailure) as info:
        assert_robust(untrained, "fgsm", eps=8 / 255, min_acc=0.99, data=blobs, n=64, device="cpu")
    clean = info.value.result.clean_acc
    assert clean < 0.99
    hint = str(info.value).splitlines()[-1]
    assert hint.startswith(
        f"  to fix: clean accuracy {clean:.3f} is already below the required 0.990, and robust "
        "accuracy cannot exceed it: first improve the model on clean inputs"
    )


def test_fewer_samples_than_n_are_all_evaluated_and_said_so(trained_tiny: nn.Module) -> None:
    small = make_blobs(40, seed=3)
    with pytest.warns(RobustDataWarning, match=r"'blobs' has 40 samples, fewer than the n=256 requested"):
        result = assert_robust(
            trained_tiny, "fgsm", eps=1 / 255, min_acc=0.0, data=small, n=256, device="cpu"
        )
    assert result.n == 40
    assert result.evaluation.data["n"] == 40
    assert result.evaluation.data["requested_n"] == 256
    assert "n=40 (all 40 samples; 256 requested)" in result.explain()
    again = RobustResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again.evaluation.data["requested_n"] == 256
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # n=None (all) or n within the data: nothing to say
        for n in (None, 40, 20):
            r = assert_robust(trained_tiny, "fgsm", eps=1 / 255, min_acc=0.0, data=small, n=n, device="cpu")
            assert "requested_n" not in r.evaluation.data
            assert "requested" not in r.explain()


def test_samples_label() -> None:
    assert samples_label(40, {"n": 40}) == "40"
    assert samples_label(40, {"n": 40, "requested_n": 256}) == "40 (all 40 samples; 256 requested)"
    # a sequential policy that stopped after 20 of the 40 samples there were
    assert (
        samples_label(20, {"n": 20, "available": 40, "requested_n": 256})
        == "20 (of 40 samples; 256 requested)"
    )
