"""Models in the forms hospitals ship them: one sigmoid logit for a binary task, float16 / bfloat16.

The harness sees every model as float32 logits, one per class (``ClassifierView``): a one-logit
model on 2-class data as ``[0, z]``, a half-precision model with its input cast to its dtype and its
output cast back. Fingerprints stay those of the user's model.
"""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pytest_robust.attacks import FGSM, PGD, Attack
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import RobustModelError
from pytest_robust.evaluate import EvalResult, evaluate
from pytest_robust.models import behaviour_fingerprint, model_fingerprint
from pytest_robust.threat import Norm, ThreatModel
from tests.conftest import make_blobs, tiny_net
from tests.inner import PRELUDE

# large enough that the attacks break some samples of the easy blobs (8/255 breaks none)
THREAT = ThreatModel(norm=Norm.LINF, eps=0.08)


class OneLogit(nn.Module):
    """A binary model with one output: the logit z of the positive class (a sigmoid classifier)."""

    def __init__(self, two: nn.Module, *, flat: bool = False) -> None:
        super().__init__()
        self.two = two
        self.flat = flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.two(x)
        z = logits[:, 1:] - logits[:, :1]
        return z.flatten() if self.flat else z


class TwoLogit(nn.Module):
    """The same model written out with two logits, [0, z]: what the harness must see."""

    def __init__(self, one: nn.Module) -> None:
        super().__init__()
        self.one = one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.one(x)
        return torch.cat([torch.zeros_like(z), z], dim=1)


class SigmoidOutput(OneLogit):
    """A one-output model that returns the probability sigmoid(z) instead of the logit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).sigmoid()


@pytest.fixture(scope="module")
def few(blobs: ImageDataset) -> ImageDataset:
    return blobs.subset(64, seed=0)


def _outcomes(r: EvalResult) -> tuple[object, ...]:
    return (r.clean_pred, r.adv_pred, r.clean_correct, r.robust_correct, r.clean_scores, r.adv_scores)


@pytest.mark.parametrize("attack", [FGSM(), PGD(steps=10)], ids=["fgsm", "pgd"])
@pytest.mark.parametrize("flat", [False, True], ids=["batch-1", "batch"])
def test_one_logit_model_is_the_two_logit_model_0_z(
    trained_tiny: nn.Module, few: ImageDataset, attack: Attack, flat: bool
) -> None:
    one = OneLogit(trained_tiny, flat=flat)
    a = evaluate(one, few, attack, THREAT, device="cpu")
    b = evaluate(TwoLogit(OneLogit(trained_tiny)), few, attack, THREAT, device="cpu")
    assert _outcomes(a) == _outcomes(b)
    assert a.clean_acc > 0.9
    assert a.robust_acc < a.clean_acc  # the attack broke samples: the gradients went through
    assert a.sound, [c.line() for c in a.failed_checks]
    # class 1 (the positive) is predicted exactly where z > 0; the score is sigmoid(z)
    with torch.no_grad():
        z = one(few.images).flatten()
    assert list(a.clean_pred) == (z > 0).long().tolist()
    assert a.clean_scores == pytest.approx(z.sigmoid().tolist(), abs=1e-6)


def test_one_logit_model_on_three_classes_is_a_model_error() -> None:
    data = make_blobs(12, classes=3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 1))
    accepted = r"shape \(12, 1\).*expected \(12, 3\).*or \(12, 1\) for a binary model with a sigmoid"
    with pytest.raises(RobustModelError, match=accepted):
        evaluate(model, data, "fgsm", THREAT, device="cpu")


def test_other_wrong_shapes_name_the_accepted_ones(few: ImageDataset) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    with pytest.raises(RobustModelError, match=r"expected \(64, 2\).*or \(64, 1\) for a binary model"):
        evaluate(model, few, "fgsm", THREAT, device="cpu")


@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.bfloat16, torch.float64], ids=["half", "bfloat16", "double"]
)
@pytest.mark.parametrize("one_logit", [False, True], ids=["two-logit", "one-logit"])
def test_half_precision_models_evaluate_in_float32(
    trained_tiny: nn.Module, few: ImageDataset, dtype: torch.dtype, one_logit: bool
) -> None:
    reference = OneLogit(trained_tiny) if one_logit else trained_tiny
    model = copy.deepcopy(reference).to(dtype)
    weights = model_fingerprint(model)
    full = evaluate(reference, few, PGD(steps=10), THREAT, device="cpu")
    low = evaluate(model, few, PGD(steps=10), THREAT, device="cpu")
    assert low.clean_correct == full.clean_correct  # easy data: no decision near the boundary
    assert abs(low.robust_acc - full.robust_acc) <= 0.1
    assert low.robust_acc < low.clean_acc  # the attack's gradients went through the casts
    assert low.sound, [c.line() for c in low.failed_checks]
    # the user's model is untouched and fingerprinted as it is
    assert all(p.dtype == dtype for p in model.parameters())
    assert model_fingerprint(model) == weights == low.model["fingerprint"]
    assert low.model["class"] == type(model).__name__


def test_sigmoid_probability_output_fails_the_output_form_check(
    trained_tiny: nn.Module, few: ImageDataset
) -> None:
    r = evaluate(SigmoidOutput(trained_tiny), few, PGD(steps=5), THREAT, device="cpu")
    form = next(c for c in r.checks if c.name == "output-form")
    assert form.failed
    assert "sigmoid probability" in form.summary
    assert "before the sigmoid" in form.fix


def test_ordinary_models_keep_their_fingerprints(trained_tiny: nn.Module, few: ImageDataset) -> None:
    r = evaluate(trained_tiny, few, FGSM(), THREAT, device="cpu")
    probe = few.images[:8]
    assert r.model["fingerprint"] == model_fingerprint(trained_tiny)
    assert r.model["behaviour"] == behaviour_fingerprint(trained_tiny, probe)
    assert r.model["class"] == type(trained_tiny).__name__
    from pytest_robust.models import ClassifierView

    view = ClassifierView(trained_tiny, 2)
    assert behaviour_fingerprint(view, probe) == behaviour_fingerprint(trained_tiny, probe)


def test_the_view_leaves_modes_and_other_outputs_alone() -> None:
    from pytest_robust.models import ClassifierView

    net = tiny_net().train()
    view = ClassifierView(net, 2)
    x = torch.rand(4, 3, 8, 8)
    assert torch.equal(view(x), net(x))
    assert view.input_dtype is None
    assert ClassifierView(tiny_net(classes=1), 3)(x).shape == (4, 1)  # reported by the caller
    assert net.training


def test_half_models_are_cached_like_any_model(
    trained_tiny: nn.Module, few: ImageDataset, tmp_path: Path
) -> None:
    from pytest_robust.plugin import memoised_evaluate
    from pytest_robust.result_cache import ResultCache

    model = copy.deepcopy(trained_tiny).half()
    counts = {"hit": 0, "computed": 0}
    kwargs: dict[str, Any] = {"device": "cpu", "result_cache": ResultCache(tmp_path), "counts": counts}
    first = memoised_evaluate({}, model, few, FGSM(), THREAT, **kwargs)
    again = memoised_evaluate({}, model, few, FGSM(), THREAT, **kwargs)  # a new process: from disk
    assert counts == {"hit": 1, "computed": 1}
    assert _outcomes(again) == _outcomes(first)


CONFTEST = PRELUDE + textwrap.dedent(
    """
    class OneLogit(nn.Module):
        def __init__(self, two):
            super().__init__()
            self.two = two

        def forward(self, x):
            logits = self.two(x)
            return logits[:, 1:] - logits[:, :1]

    @pytest.fixture(scope="session")
    def robust_data():
        return blobs(64, 1)

    @pytest.fixture(scope="session")
    def two():
        return tiny_model()

    @pytest.fixture(scope="session")
    def one(two):
        return OneLogit(two)
    """
)


def test_assert_robust_fixture_accepts_one_logit_and_half_models(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        import copy
        import torch

        def test_one_logit(assert_robust, one, fgsm):
            result = assert_robust(one, fgsm, eps=1/255, min_acc=0.5)
            assert result.clean_acc > 0.8
            assert result.evaluation.sound

        def test_one_logit_half(assert_robust, one, fgsm):
            result = assert_robust(copy.deepcopy(one).half(), fgsm, eps=1/255, min_acc=0.5)
            assert result.clean_acc > 0.8

        def test_one_logit_fails_like_any_model(assert_robust, one, pgd):
            assert_robust(one, pgd, eps=32/255, min_acc=0.95)
        """
    )
    result = pytester.runpytest(
        "--robust-profile=smoke", "--robust-device=cpu", "--robust-threads=1", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["E   RobustnessFailure: robustness gate FAILED*"])
    assert "Traceback" not in result.stdout.str()
