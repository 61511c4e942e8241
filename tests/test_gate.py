"""assert_robust as a function: decisions, messages, policies, JSON."""

from __future__ import annotations

import json

import pytest
from torch import nn

from pytest_robust.attacks import PGD
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import RobustConfigError
from pytest_robust.gate import (
    LowerConfidenceBound,
    PointEstimate,
    RobustnessFailure,
    RobustResult,
    assert_robust,
)


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
    valid = "valid attacks: aa, auto-attack, autoattack, clean, fgsm, none, pgd"
    with pytest.raises(RobustConfigError, match=valid):
        assert_robust(trained_tiny, "cw", eps=4 / 255, min_acc=0.5, data=blobs)
