"""Per-sample early exit: a sample's search stops at its first fooling iterate, unbroken samples keep
their whole budget, so the robust accuracy is never higher than without early exit, and the passes
saved are real. Also the project's APGD against the library's (the AutoAttack adapter runs ours)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from pytest_robust.attacks import APGD, PGD, AutoAttack, make_attack
from pytest_robust.attacks.apgd import dlr_loss
from pytest_robust.errors import RobustConfigError
from pytest_robust.perturbation import check_perturbation
from pytest_robust.threat import ThreatModel
from pytest_robust.training import seeded
from tests.conftest import fit, make_blobs, tiny_net

HAS_LIBRARY = importlib.util.find_spec("pyautoattack") is not None


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Rows(nn.Module):
    """Counts the input rows the model processes (forward passes x batch size)."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base, self.rows = base, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        out: torch.Tensor = self.base(x)
        return out


def conv_net(classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, classes),
    )


def models() -> Iterator[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]:
    """Trained models of 2 and 3 classes (MLP and CNN: robustness varies per sample) and an untrained CNN."""
    for classes in (2, 3):
        train = make_blobs(512, seed=11, classes=classes)
        test = make_blobs(96, seed=12, classes=classes)
        with seeded(classes):
            mlp, cnn, raw = tiny_net(classes=classes), conv_net(classes), conv_net(classes)
        yield f"mlp-{classes}", fit(mlp, train, steps=200), test.images, test.labels
        yield f"cnn-{classes}", fit(cnn, train, steps=200), test.images, test.labels
        yield f"untrained-{classes}", raw.eval(), test.images, test.labels


CASES = list(models())
ATTACKS: list[tuple[Any, Any]] = [
    (PGD(steps=10), PGD(steps=10, early_exit=False)),
    (PGD(steps=6, restarts=2, loss="margin"), PGD(steps=6, restarts=2, loss="margin", early_exit=False)),
    (APGD(steps=12), APGD(steps=12, early_exit=False)),
    (APGD(steps=8, restarts=2, loss="margin"), APGD(steps=8, restarts=2, loss="margin", early_exit=False)),
]


def robust(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(dim=1) == y


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize(("fast", "full"), ATTACKS, ids=[a.describe() for a, _ in ATTACKS])
@pytest.mark.parametrize("eps", [2 / 255, 8 / 255])
def test_early_exit_never_leaves_more_samples_robust(case: Any, fast: Any, full: Any, eps: float) -> None:
    _name, model, x, y = case
    threat = ThreatModel.of("Linf", eps)
    counted_fast, counted_full = Rows(model), Rows(model)
    a = fast.perturb(counted_fast, x, y, threat, generator=torch.Generator().manual_seed(3))
    b = full.perturb(counted_full, x, y, threat, generator=torch.Generator().manual_seed(3))
    check_perturbation(a, x, threat)
    robust_fast, robust_full = robust(model, a, y), robust(model, b, y)
    # per sample: every sample robust with early exit is robust without it (the same search)
    assert not bool((robust_fast & ~robust_full).any())
    assert int(robust_fast.sum()) <= int(robust_full.sum())
    # and what early exit saves is real: never more rows, fewer whenever a sample broke early
    assert counted_fast.rows <= counted_full.rows
    if int((~robust_fast).sum()) > int((~robust(model, x, y)).sum()):
        assert counted_fast.rows < counted_full.rows


def test_early_exit_saves_most_passes_on_a_non_robust_model() -> None:
    _name, model, x, y = next(c for c in CASES if c[0] == "mlp-2")
    threat = ThreatModel.of("Linf", 32 / 255)
    for fast, full in ATTACKS[:1] + ATTACKS[2:3]:
        a, b = Rows(model), Rows(model)
        x_a = fast.perturb(a, x, y, threat, generator=torch.Generator().manual_seed(0))
        fast.perturb(b, x, y, threat, generator=torch.Generator().manual_seed(0))
        full.perturb(b, x, y, threat, generator=torch.Generator().manual_seed(0))
        assert int(robust(model, x_a, y).sum()) == 0  # every sample breaks at 32/255 ...
        assert a.rows < 0.5 * (b.rows - a.rows)  # ... within the first half of the budget


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_adapter_early_exit_is_as_strong_as_the_library(loss: str) -> None:
    """AutoAttack with the project's APGD (early exit) against the library's own APGD, at several eps:
    the robust counts agree within 2 samples of 96 (different random starts), and never by more."""
    if not HAS_LIBRARY:
        pytest.skip("needs pyautoattack (a core dependency)")
    classes = 2 if loss == "ce" else 3
    for name, model, x, y in [c for c in CASES if c[0].endswith(str(classes))]:
        for k in (2, 4, 8):
            threat = ThreatModel.of("Linf", k / 255)
            sub = ("apgd-ce",) if loss == "ce" else ("apgd-dlr",)
            counts = []
            for early_exit in (True, False):
                attack = AutoAttack(attacks=sub, apgd_steps=20, early_exit=early_exit, library_checks=False)
                x_adv = attack.perturb(model, x, y, threat, generator=torch.Generator().manual_seed(1))
                counts.append(int(robust(model, x_adv, y).sum()))
            assert counts[0] <= counts[1] + 2, (name, k, counts)
            assert abs(counts[0] - counts[1]) <= 2, (name, k, counts)


def test_unbroken_samples_take_every_step() -> None:
    """A model that cannot be fooled: early exit saves nothing, every sample takes every step."""
    flat = Rows(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)))
    with torch.no_grad():
        for p in flat.parameters():
            p.zero_()
        flat.base[1].bias.copy_(torch.tensor([5.0, 0.0]))  # always class 0
    x = torch.rand(4, 3, 8, 8)
    y = torch.zeros(4, dtype=torch.long)
    x_adv = APGD(steps=50).perturb(flat, x, y, ThreatModel.of("Linf", 8 / 255), generator=torch.Generator())
    assert flat.rows == 4 * (1 + 51)  # the clean pass, the start and 50 steps: nothing saved
    assert bool(robust(flat, x_adv, y).all())


def test_apgd_validation_config_and_registry() -> None:
    with pytest.raises(RobustConfigError, match="steps"):
        APGD(steps=0)
    with pytest.raises(RobustConfigError, match="rho"):
        APGD(rho=1.5)
    with pytest.raises(RobustConfigError, match="unknown APGD loss 'hinge'"):
        APGD(loss="hinge")
    with pytest.raises(RobustConfigError, match="early_exit"):
        APGD(early_exit="yes")  # type: ignore[arg-type]
    with pytest.raises(RobustConfigError, match="early_exit"):
        PGD(early_exit=1)  # type: ignore[arg-type]
    with pytest.raises(RobustConfigError, match=">= 3 classes"):
        dlr_loss(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    assert make_attack("apgd", steps=10) == APGD(steps=10)
    assert APGD().describe() == "APGD-CE (100 steps x1 restart, early exit)"
    assert APGD(early_exit=False, restarts=2).config()["early_exit"] is False
    # PGD's cache identity is unchanged unless early exit is switched off
    assert "early_exit" not in PGD().config()
    assert PGD(early_exit=False).config()["early_exit"] is False
    assert PGD(early_exit=False).describe().endswith("no early exit)")
