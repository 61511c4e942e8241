"""Public arguments: bad values are typed errors naming the argument, numpy/torch scalars are numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from pytest_robust.attacks import FGSM, PGD, AutoAttack, coerce_attack
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import RobustConfigError
from pytest_robust.evaluate import evaluate
from pytest_robust.gate import assert_robust
from pytest_robust.threat import Norm, ThreatModel


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"batch_size": -1}, "batch_size must be >= 1, got -1"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"seed": 2**70}, "seed must be <= "),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"min_acc": "0.7"}, "min_acc must be a number"),
    ],
)
def test_bad_arguments_of_assert_robust_are_typed_errors(
    trained_tiny: nn.Module, blobs: ImageDataset, kwargs: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"eps": 2 / 255, "min_acc": 0.0, "data": blobs, **kwargs}
    with pytest.raises(RobustConfigError, match=message.replace("(", r"\(").replace("*", r"\*")):
        assert_robust(trained_tiny, FGSM(), **arguments)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"batch_size": 0}, "batch_size"), ({"seed": 2**64}, "seed")]
)
def test_bad_arguments_of_evaluate_are_typed_errors(
    trained_tiny: nn.Module, blobs: ImageDataset, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(RobustConfigError, match=message):
        evaluate(trained_tiny, blobs, FGSM(), ThreatModel(norm=Norm.LINF, eps=2 / 255), **kwargs)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PGD(steps=2.5), "PGD steps must be an integer"),
        (lambda: PGD(steps=0), "PGD steps must be >= 1"),
        (lambda: PGD(restarts=True), "PGD restarts must be an integer"),
        (lambda: PGD(step_size=float("inf")), "PGD step_size must be a finite number > 0"),
        (lambda: PGD(step_size=float("nan")), "PGD step_size must be a finite number > 0"),
        (lambda: PGD(rel_step_size=-0.5), "PGD rel_step_size must be a finite number > 0"),
        (lambda: PGD(random_start="yes"), "random_start must be True or False"),
        (lambda: AutoAttack(apgd_steps=1.5), "AutoAttack apgd_steps must be an integer"),
        (lambda: coerce_attack(PGD), "not the class PGD"),
    ],
)
def test_bad_attack_budgets_are_typed_errors(make: Any, message: str) -> None:
    with pytest.raises(RobustConfigError, match=message):
        make()


@pytest.mark.parametrize(
    "eps", [np.float32(4 / 255), np.float64(4 / 255), torch.tensor(4 / 255), torch.tensor(4 / 255).double()]
)
def test_eps_as_a_numpy_or_torch_scalar_is_a_number(
    trained_tiny: nn.Module, blobs: ImageDataset, eps: Any
) -> None:
    result = assert_robust(trained_tiny, FGSM(), eps=eps, min_acc=0.0, data=blobs)
    assert result.evaluation.threat.eps == pytest.approx(4 / 255, abs=1e-7)
    assert type(result.evaluation.threat.eps) is float


def test_numpy_integers_are_integers() -> None:
    attack = PGD(steps=np.int64(5), restarts=np.int32(2))
    assert (attack.steps, attack.restarts) == (5, 2)
    assert type(attack.steps) is int  # plain ints: the configuration is JSON


def test_a_vector_is_not_an_eps() -> None:
    with pytest.raises(RobustConfigError, match="eps must be a number such as 4/255"):
        ThreatModel(norm=Norm.LINF, eps=torch.tensor([4 / 255, 8 / 255]))  # type: ignore[arg-type]
