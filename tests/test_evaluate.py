"""The evaluation core: per-sample correctness, bad models and bad data, mode restoration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from pytest_robust.attacks import PGD
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import PerturbationError, RobustDataError, RobustModelError
from pytest_robust.evaluate import EvalResult, evaluate
from pytest_robust.threat import Norm, ThreatModel

THREAT = ThreatModel(norm=Norm.LINF, eps=8 / 255)


def _with_images(data: ImageDataset, images: torch.Tensor) -> ImageDataset:
    return ImageDataset(images=images, labels=data.labels, classes=data.classes, name="x", synthetic=True)


def test_robust_means_clean_and_adversarial_correct(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    r = evaluate(trained_tiny, blobs, PGD(steps=10), THREAT, device="cpu")
    assert r.n == len(blobs)
    assert all(c for c, rb in zip(r.clean_correct, r.robust_correct, strict=True) if rb)
    assert r.robust_acc <= r.clean_acc
    # a wrongly classified sample is never attacked: its adversarial prediction is the clean one
    for ok, cp, ap in zip(r.clean_correct, r.clean_pred, r.adv_pred, strict=True):
        if not ok:
            assert cp == ap
    assert EvalResult.from_json(r.to_json()) == r


def test_eps_zero_gives_clean_accuracy(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    r = evaluate(trained_tiny, blobs, "pgd", ThreatModel(norm=Norm.LINF, eps=0.0), device="cpu")
    assert r.robust_acc == r.clean_acc


def test_same_seed_same_numbers(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    a = evaluate(trained_tiny, blobs, PGD(steps=3), THREAT, device="cpu", seed=5)
    b = evaluate(trained_tiny, blobs, PGD(steps=3), THREAT, device="cpu", seed=5)
    assert a.robust_correct == b.robust_correct
    assert a.adv_scores == b.adv_scores


class Dropper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not self.training, "evaluation must run in eval mode"
        out: torch.Tensor = self.inner(self.drop(x))
        return out


def test_eval_mode_enforced_and_restored(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    model = Dropper(trained_tiny).train()
    evaluate(model, blobs.subset(16), PGD(steps=2), THREAT, device="cpu")
    assert model.training
    assert model.drop.training
    model.eval()
    evaluate(model, blobs.subset(16), PGD(steps=2), THREAT, device="cpu")
    assert not model.training


def test_wrong_output_shape(blobs: ImageDataset) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    with pytest.raises(RobustModelError, match=r"shape \(128, 3\).*expected \(128, 2\)"):
        evaluate(model, blobs, "fgsm", THREAT, device="cpu")


class NaNModel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 2), float("nan"))


def test_nan_logits(blobs: ImageDataset) -> None:
    with pytest.raises(RobustModelError, match="NaN/inf logits"):
        evaluate(NaNModel(), blobs, "fgsm", THREAT, device="cpu")


@pytest.mark.parametrize(
    ("transform", "match"),
    [
        (lambda x: x * 255, "divide by 255"),
        (lambda x: (x - 0.5) / 0.25, "normalisation inside the model"),
        (lambda x: x.masked_fill(x > 0.45, float("nan")), "NaN or inf"),
        (lambda x: (x * 255).to(torch.uint8), "float in"),
    ],
)
def test_bad_pixels(trained_tiny: nn.Module, blobs: ImageDataset, transform: Any, match: str) -> None:
    with pytest.raises(RobustDataError, match=match):
        evaluate(trained_tiny, _with_images(blobs, transform(blobs.images)), "fgsm", THREAT, device="cpu")


def test_empty_data_set(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    empty = ImageDataset(
        images=blobs.images[:0], labels=blobs.labels[:0], classes=blobs.classes, name="empty", synthetic=True
    )
    with pytest.raises(RobustDataError, match="empty"):
        evaluate(trained_tiny, empty, "fgsm", THREAT, device="cpu")


@dataclass(frozen=True)
class Cheater:
    """A broken attack that ignores the budget."""

    name: str = "cheater"

    def config(self) -> dict[str, Any]:
        return {"name": self.name}

    def describe(self) -> str:
        return "Cheater"

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        return (1 - x).clamp(0, 1)


def test_attack_outside_threat_model_is_an_error_not_a_number(
    trained_tiny: nn.Module, blobs: ImageDataset
) -> None:
    with pytest.raises(PerturbationError, match="Cheater exceeded the threat model Linf eps=8/255"):
        evaluate(trained_tiny, blobs, Cheater(), THREAT, device="cpu")


def test_l2_eps_beyond_the_cube(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    with pytest.raises(RobustDataError, match="diameter"):
        evaluate(trained_tiny, blobs, "pgd", ThreatModel(norm=Norm.L2, eps=100.0), device="cpu")
