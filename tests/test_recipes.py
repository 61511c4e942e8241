"""Training profiles: ``paper`` is the study's Table IV exactly; ``ci`` and ``smoke`` are sane."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pytest_robust import config as eval_config
from pytest_robust.errors import RobustConfigError
from pytest_robust.recipes import CI, PAPER, PROFILES, QUICKSTART, SMOKE, AtInit, TrainingProfile, get_profile
from pytest_robust.training import LrSchedule, Recipe


def test_paper_is_table_iv_exactly() -> None:
    assert (PAPER.image_size, PAPER.batch_size, PAPER.epochs) == (224, 32, 50)
    assert (PAPER.optimizer, PAPER.loss) == ("adam", "cross-entropy")
    assert (PAPER.lr, PAPER.weight_decay) == (1e-4, 1e-4)
    assert (PAPER.at_eps, PAPER.at_step_size, PAPER.at_steps) == (2 / 255, 1 / 255, 10)
    assert PAPER.lr_schedule is LrSchedule.CONSTANT
    assert not PAPER.augment
    assert PAPER.train_subset is None
    assert (PAPER.at_epochs, PAPER.at_lr, PAPER.at_init) == (None, None, AtInit.SCRATCH)
    assert PAPER.deviations == ()
    for recipe in Recipe:
        c = PAPER.train_config(recipe, seed=0)
        assert (c.epochs, c.batch_size, c.lr, c.weight_decay) == (50, 32, 1e-4, 1e-4)
        assert (c.at_eps, c.at_step_size, c.at_steps) == (2 / 255, 1 / 255, 10)
        assert c.lr_schedule is LrSchedule.CONSTANT
        assert not c.augment
        assert not PAPER.fine_tunes(recipe)


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_every_config_records_its_profile(profile: TrainingProfile) -> None:
    for recipe in Recipe:
        c = profile.train_config(recipe, seed=7)
        assert c.profile == profile.name
        assert c.seed == 7
        assert c.to_json()["profile"] == profile.name
    json.dumps(profile.to_json())


def test_ci_is_cpu_sized_and_keeps_the_threat_model() -> None:
    assert CI.image_size == eval_config.PROFILES["ci"].image_size == 32
    assert 1 <= CI.epochs <= 10
    assert CI.train_subset is None
    assert CI.lr > PAPER.lr  # from scratch
    assert CI.at_eps == PAPER.at_eps
    assert CI.at_steps < PAPER.at_steps
    at = CI.train_config(Recipe.PGD_AT, seed=0)
    assert at.epochs < CI.epochs
    assert CI.fine_tunes(Recipe.PGD_AT)
    assert not CI.fine_tunes(Recipe.STANDARD)
    # random start + steps must be able to reach the edge of the eps-ball
    assert CI.at_step_size * CI.at_steps >= CI.at_eps
    assert len(CI.deviations) >= 3
    assert all(isinstance(d, str) and d for d in CI.deviations)


def test_smoke_is_tiny() -> None:
    assert SMOKE.image_size == eval_config.PROFILES["smoke"].image_size
    assert SMOKE.epochs == 1
    assert SMOKE.train_subset is not None
    assert SMOKE.train_subset <= 128
    assert SMOKE.at_steps <= 2


def test_quickstart_keeps_the_quick_start_hyper_parameters() -> None:
    c = QUICKSTART.train_config("pgd-at", seed=0)
    assert (c.epochs, c.batch_size, c.lr, c.at_eps, c.at_steps) == (8, 64, 2e-3, 8 / 255, 5)
    assert QUICKSTART.image_size is None


def test_get_profile() -> None:
    assert get_profile("CI") is CI
    assert get_profile(PAPER) is PAPER
    with pytest.raises(RobustConfigError, match="valid profiles: paper, ci, smoke"):
        get_profile("fast")


def test_profiles_are_frozen_and_validated() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CI.epochs = 3  # type: ignore[misc]
    with pytest.raises(RobustConfigError, match="lr must be > 0"):
        dataclasses.replace(CI, at_lr=0.0)
    with pytest.raises(RobustConfigError, match="image_size"):
        dataclasses.replace(CI, image_size=8)
    with pytest.raises(RobustConfigError, match="unknown at_init 'warm'"):
        dataclasses.replace(CI, at_init="warm")  # type: ignore[arg-type]
