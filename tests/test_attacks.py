"""Properties of FGSM and PGD (hypothesis) and their strength on a trained model."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from pytest_robust.attacks import APGD, FGSM, PGD, coerce_attack, make_attack
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import PerturbationError, RobustConfigError
from pytest_robust.evaluate import evaluate
from pytest_robust.perturbation import check_perturbation, lp_norms
from pytest_robust.threat import Norm, ThreatModel
from pytest_robust.training import seeded

ATTACKS = [
    FGSM(),
    PGD(steps=3),
    PGD(steps=2, restarts=2),
    PGD(steps=2, random_start=False),
    PGD(steps=3, early_exit=False),
    APGD(steps=4),
    APGD(steps=3, restarts=2, loss="margin", early_exit=False),
]


def _random_case(seed: int, size: int, classes: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    with seeded(seed):
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * size * size, classes)
        ).eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((5, 3, size, size), generator=g)
    y = torch.randint(0, classes, (5,), generator=g)
    return model, x, y


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    size=st.sampled_from([4, 8]),
    classes=st.integers(2, 4),
    norm=st.sampled_from([Norm.LINF, Norm.L2]),
    eps=st.floats(0.0, 0.5),
    attack=st.sampled_from(ATTACKS),
)
def test_attack_output_stays_in_ball_and_box(
    seed: int, size: int, classes: int, norm: Norm, eps: float, attack: FGSM | PGD | APGD
) -> None:
    model, x, y = _random_case(seed, size, classes)
    threat = ThreatModel(norm=norm, eps=eps)
    x_adv = attack.perturb(model, x, y, threat, generator=torch.Generator().manual_seed(seed))
    assert x_adv.shape == x.shape
    assert float(x_adv.min()) >= 0.0
    assert float(x_adv.max()) <= 1.0
    assert float(lp_norms(x_adv - x, norm).max()) <= eps + 1e-6
    check_perturbation(x_adv, x, threat)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), attack=st.sampled_from(ATTACKS))
def test_attacks_are_deterministic_for_a_seed(seed: int, attack: FGSM | PGD | APGD) -> None:
    model, x, y = _random_case(seed, 8, 2)
    threat = ThreatModel(norm=Norm.LINF, eps=8 / 255)
    a = attack.perturb(model, x, y, threat, generator=torch.Generator().manual_seed(seed))
    b = attack.perturb(model, x, y, threat, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)


def test_check_perturbation_rejects_violations() -> None:
    x = torch.full((2, 3, 4, 4), 0.5)
    threat = ThreatModel(norm=Norm.LINF, eps=4 / 255)
    with pytest.raises(PerturbationError, match="exceeded the threat model"):
        check_perturbation(x + 5 / 255, x, threat)
    with pytest.raises(PerturbationError, match=r"\[0, 1\]"):
        check_perturbation(torch.full_like(x, 1.5), torch.ones_like(x), ThreatModel(norm=Norm.L2, eps=10.0))
    bad = x.clone()
    bad[1, 0, 0, 0] = float("nan")
    with pytest.raises(PerturbationError, match="non-finite"):
        check_perturbation(bad, x, threat)
    check_perturbation(x + 4 / 255, x, threat)  # exactly on the boundary is legal


def test_pgd_is_not_weaker_than_fgsm_on_a_trained_model(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    threat = ThreatModel(norm=Norm.LINF, eps=16 / 255)
    f = evaluate(trained_tiny, blobs, FGSM(), threat, device="cpu")
    p = evaluate(trained_tiny, blobs, PGD(steps=20), threat, device="cpu")
    assert f.clean_acc > 0.9
    assert p.robust_acc <= f.robust_acc + 0.02  # noise margin: 5 of 256 samples
    assert p.robust_acc < p.clean_acc - 0.2


def test_pgd_budget_validation() -> None:
    with pytest.raises(RobustConfigError, match="steps"):
        PGD(steps=0)
    with pytest.raises(RobustConfigError, match="restarts"):
        PGD(restarts=0)
    with pytest.raises(RobustConfigError, match="step_size"):
        PGD(step_size=-1.0)


def test_registry_names_and_errors() -> None:
    assert isinstance(make_attack("PGD", steps=5), PGD)
    assert make_attack("aa").name == "autoattack"
    assert coerce_attack("fgsm") == FGSM()
    with pytest.raises(RobustConfigError, match=r"unknown attack 'pgdd'; valid attacks: aa, .*pgd"):
        make_attack("pgdd")
    with pytest.raises(RobustConfigError, match="bad budget"):
        make_attack("pgd", stepz=3)
    with pytest.raises(RobustConfigError, match="expected an attack"):
        coerce_attack(42)  # type: ignore[arg-type]


def test_pgd_describe_and_config() -> None:
    p = PGD(steps=20, step_size=2 / 255)
    assert p.describe() == "PGD-20 (step 2/255, 1 restart(s), random start)"
    assert p.config()["steps"] == 20


def test_check_perturbation_accepts_an_empty_batch() -> None:
    x = torch.zeros((0, 3, 4, 4))
    check_perturbation(x, x, ThreatModel(norm=Norm.LINF, eps=4 / 255))
    assert lp_norms(x, Norm.L2).shape == (0,)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    classes=st.integers(2, 4),
    norm=st.sampled_from([Norm.LINF, Norm.L2]),
    eps=st.floats(0.0, 0.5),
)
def test_autoattack_output_stays_in_ball_and_box(seed: int, classes: int, norm: Norm, eps: float) -> None:
    from pytest_robust.attacks import AutoAttack

    model, x, y = _random_case(seed, 8, classes)
    threat = ThreatModel(norm=norm, eps=eps)
    aa = AutoAttack(apgd_steps=3, square_queries=5)
    x_adv = aa.perturb(model, x, y, threat, generator=torch.Generator().manual_seed(seed))
    check_perturbation(x_adv, x, threat)


def test_autoattack_square_l2_on_tiny_images_is_a_clear_error() -> None:
    from pytest_robust.attacks import AutoAttack

    model, x, y = _random_case(0, 4, 2)
    with pytest.raises(RobustConfigError, match="at least 5x5 pixels"):
        AutoAttack(apgd_steps=3, square_queries=5).perturb(
            model, x, y, ThreatModel(norm=Norm.L2, eps=0.5), generator=torch.Generator().manual_seed(0)
        )
