"""Training recipes: determinism, and PGD-AT buys robustness that standard training does not."""

from __future__ import annotations

import pytest
import torch

from pytest_robust.attacks import PGD
from pytest_robust.data.synthetic import generate_synthetic
from pytest_robust.errors import RobustConfigError
from pytest_robust.evaluate import evaluate
from pytest_robust.models import small_cnn
from pytest_robust.threat import Norm, ThreatModel
from pytest_robust.training import Recipe, TrainConfig, seeded, train


def _trained(recipe: Recipe, n: int, epochs: int, seed: int = 0) -> torch.nn.Module:
    data = generate_synthetic(n, size=32, seed=0, split="train")
    with seeded(seed):
        model = small_cnn()
    config = TrainConfig(
        recipe=recipe, epochs=epochs, lr=2e-3, seed=seed, at_eps=8 / 255, at_steps=5, at_step_size=2.5 / 255
    )
    report = train(model, data, config, progress=False)
    assert [e.epoch for e in report.epochs] == list(range(1, epochs + 1))
    return model


def test_training_is_deterministic_for_a_seed() -> None:
    a = _trained(Recipe.PGD_AT, 128, 2)
    b = _trained(Recipe.PGD_AT, 128, 2)
    c = _trained(Recipe.PGD_AT, 128, 2, seed=1)
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name
    assert not torch.equal(a.state_dict()["net.head.2.weight"], c.state_dict()["net.head.2.weight"])


def test_training_leaves_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    _trained(Recipe.STANDARD, 64, 1)
    assert torch.equal(state, torch.random.get_rng_state())


def test_unknown_recipe() -> None:
    with pytest.raises(RobustConfigError, match="valid recipes: standard, pgd-at"):
        TrainConfig(recipe="trades")


@pytest.mark.slow
def test_pgd_at_is_more_robust_than_standard_training() -> None:
    test = generate_synthetic(256, size=32, seed=0, split="test")
    threat = ThreatModel(norm=Norm.LINF, eps=4 / 255)
    results = {
        recipe: evaluate(_trained(recipe, 1024, 4), test, PGD(steps=10), threat, device="cpu")
        for recipe in (Recipe.STANDARD, Recipe.PGD_AT)
    }
    standard, robust = results[Recipe.STANDARD], results[Recipe.PGD_AT]
    assert standard.clean_acc > 0.8
    assert standard.robust_acc < standard.clean_acc - 0.4
    assert robust.robust_acc > standard.robust_acc + 0.3


def test_progress_bars_name_the_model_being_trained(capsys: pytest.CaptureFixture[str]) -> None:
    """Ten models train in a row in the benchmark: each bar says which (the architecture)."""
    data = generate_synthetic(32, size=16, seed=0, split="train")
    config = TrainConfig(recipe=Recipe.STANDARD, epochs=1, batch_size=16, seed=0)
    with seeded(0):
        model = small_cnn(num_classes=2)
    train(model, data, config, progress=True, label="densenet121")
    assert "train densenet121 standard" in capsys.readouterr().err
    train(model, data, config, progress=True)  # no label: the model's class
    assert f"train {type(model).__name__} standard" in capsys.readouterr().err
