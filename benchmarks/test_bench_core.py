"""Throughput benchmarks (pytest-benchmark). Run: ``nox -s bench``; numbers in BENCHMARKS.md."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pytest_robust.attacks import FGSM, PGD, AutoAttack
from pytest_robust.data.synthetic import generate_synthetic
from pytest_robust.models import small_cnn
from pytest_robust.threat import Norm, ThreatModel
from pytest_robust.training import Recipe, TrainConfig, seeded, train

THREAT = ThreatModel(norm=Norm.LINF, eps=4 / 255)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = generate_synthetic(128, size=32, seed=0, split="test")
    return data.images, data.labels


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    with seeded(0):
        return small_cnn().eval()


@pytest.mark.parametrize("size", [32, 64])
def test_generate_synthetic_512(benchmark: Any, size: int) -> None:
    benchmark.pedantic(generate_synthetic, args=(512,), kwargs={"size": size}, rounds=3)


@pytest.mark.parametrize(
    "attack",
    [FGSM(), PGD(steps=20), AutoAttack(apgd_steps=25, square_queries=250)],
    ids=["fgsm", "pgd20", "aa-ci"],
)
def test_attack_128_images_32px(benchmark: Any, net: torch.nn.Module, batch: Any, attack: Any) -> None:
    x, y = batch
    gen = torch.Generator().manual_seed(0)
    benchmark.pedantic(attack.perturb, args=(net, x, y, THREAT), kwargs={"generator": gen}, rounds=3)


@pytest.mark.parametrize("recipe", [Recipe.STANDARD, Recipe.PGD_AT])
def test_train_epoch_1024_images_32px(benchmark: Any, recipe: Recipe) -> None:
    data = generate_synthetic(1024, size=32, seed=0, split="train")

    def one_epoch() -> None:
        with seeded(0):
            model = small_cnn()
        train(model, data, TrainConfig(recipe=recipe, epochs=1, at_steps=5), progress=False)

    benchmark.pedantic(one_epoch, rounds=2)


@pytest.mark.parametrize("checks", [True, False], ids=["checks-on", "checks-off"])
@pytest.mark.parametrize(
    "attack", [PGD(steps=20), AutoAttack(apgd_steps=25, square_queries=100)], ids=["pgd20", "aa-ci"]
)
def test_evaluate_256_images_soundness_cost(
    benchmark: Any, net: torch.nn.Module, attack: Any, checks: bool
) -> None:
    """What the soundness checks add to one evaluation (compare checks-on with checks-off)."""
    from pytest_robust.evaluate import evaluate
    from pytest_robust.soundness import SoundnessConfig

    data = generate_synthetic(256, size=32, seed=0, split="test")
    config = SoundnessConfig(enabled=checks)
    benchmark.pedantic(
        evaluate, args=(net, data, attack, THREAT), kwargs={"device": "cpu", "soundness": config}, rounds=2
    )
