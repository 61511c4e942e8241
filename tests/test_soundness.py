"""Soundness: masked, randomized or mis-measured models never pass; honest ones raise no alarm."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from pytest_robust.attacks import FGSM, PGD, AttackOutcome, AutoAttack, Ensemble, coerce_attack
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import RobustConfigError, RobustError, RobustModelError
from pytest_robust.evaluate import EvalResult, evaluate, worst_case
from pytest_robust.gate import RobustnessFailure, RobustResult, UnsoundEvaluation, assert_robust
from pytest_robust.models import ExpectationModel
from pytest_robust.plugin import memoised_evaluate
from pytest_robust.soundness import (
    FAIL,
    PASS,
    SKIP,
    Check,
    SoundnessConfig,
    attack_order,
    eps_monotonicity,
    filter_flags,
    flags_check,
    gradient_losses,
)
from pytest_robust.threat import Norm, ThreatModel
from pytest_robust.training import seeded
from tests.conftest import fit, make_blobs, tiny_net
from tests.zoo import ZOO, NoisyInput, ScaledLogits

#: At this budget the honest weak model below keeps (almost) nothing under every attack.
EPS = 32 / 255
SMALL_AA = AutoAttack(apgd_steps=10, square_queries=50)
ATTACKS = {"fgsm": FGSM(), "pgd": PGD(steps=10), "aa": SMALL_AA}


@pytest.fixture(scope="module")
def weak() -> nn.Module:
    """The honest model behind every wrapper: accurate, and not robust at EPS (checked below)."""
    with seeded(0):
        net = tiny_net()
    return fit(net, make_blobs(1024, seed=7))


def linf(eps: float) -> ThreatModel:
    return ThreatModel(norm=Norm.LINF, eps=eps)


def test_the_base_model_is_honestly_weak(weak: nn.Module, blobs: ImageDataset) -> None:
    for attack in ATTACKS.values():
        with pytest.raises(RobustnessFailure) as info:
            assert_robust(weak, attack, eps=EPS, min_acc=0.5, data=blobs, device="cpu")
        assert not isinstance(info.value, UnsoundEvaluation)
        result = info.value.result
        assert result.sound, [c.line() for c in result.evaluation.failed_checks]
        assert result.clean_acc > 0.95
        assert result.robust_acc < 0.1


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("wrapper", sorted(ZOO))
def test_no_masked_model_passes(weak: nn.Module, blobs: ImageDataset, wrapper: str, attack: str) -> None:
    """Every wrapper of the weak model is reported unsound, refused, or fails the gate: no false pass."""
    model = ZOO[wrapper](weak).eval()
    with pytest.raises(RobustError) as info:
        assert_robust(model, ATTACKS[attack], eps=EPS, min_acc=0.5, data=blobs, device="cpu")
    error = info.value
    assert isinstance(error, (UnsoundEvaluation, RobustnessFailure, RobustModelError))
    if isinstance(error, RobustModelError):
        assert "gradient" in str(error)
        return
    result = error.result
    # a masked model is caught by a check, or its number is honestly low
    assert not result.sound or result.robust_acc < 0.5
    if not result.sound:
        message = str(error)
        assert "robustness gate UNSOUND" in message
        for check in result.evaluation.failed_checks:
            assert f"check {check.name}: {check.summary}" in message
            assert check.why in message
            assert check.fix in message


@pytest.mark.parametrize("wrapper", sorted(ZOO))
def test_warn_mode_marks_masked_models_unsound(weak: nn.Module, blobs: ImageDataset, wrapper: str) -> None:
    """Under soundness='warn' a masked model may pass the number, but never as a sound result."""
    model = ZOO[wrapper](weak).eval()
    try:
        result = assert_robust(
            model, PGD(steps=10), eps=EPS, min_acc=0.5, data=blobs, device="cpu", soundness="warn"
        )
    except (RobustnessFailure, RobustModelError):
        return
    assert result.passed
    assert not result.sound
    assert result.verdict.status == "unsound"
    assert result.verdict.label() == "UNSOUND (passed: soundness=warn)"
    assert result.verdict.soundness == "warn"


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "aa", "ensemble"])
def test_no_false_alarm_on_an_honest_robust_model(
    trained_tiny: nn.Module, blobs: ImageDataset, attack: str
) -> None:
    chosen = coerce_attack([FGSM(), PGD(steps=10), SMALL_AA]) if attack == "ensemble" else ATTACKS[attack]
    result = assert_robust(trained_tiny, chosen, eps=4 / 255, min_acc=0.5, data=blobs, device="cpu")
    assert result.sound
    assert result.verdict.status == "pass"
    statuses = {c.name: c.status for c in result.evaluation.checks}
    assert set(statuses.values()) <= {PASS, SKIP}
    for name in (
        "gradient",
        "gradient-direction",
        "saturation",
        "determinism",
        "output-form",
        "batch-independence",
        "black-box",
    ):
        assert statuses[name] == PASS, name
    assert statuses["unbounded"] == (SKIP if attack == "fgsm" else PASS)
    if attack == "ensemble":
        assert statuses["attack-order"] == PASS


def test_each_zoo_model_fails_the_check_that_names_its_flaw(weak: nn.Module, blobs: ImageDataset) -> None:
    expected = {
        "quantized": "gradient",
        "scaled-logits": "saturation",
        "noisy-input": "determinism",
        "one-hot-lookup": "gradient",
        "nan-gradient": "gradient",
        "probabilities": "output-form",
        "batch-statistics": "batch-independence",
        "reversed-gradient": "gradient-direction",
    }
    for wrapper, check in expected.items():
        result = evaluate(ZOO[wrapper](weak).eval(), blobs, PGD(steps=10), linf(EPS), device="cpu")
        assert check in {c.name for c in result.failed_checks}, (wrapper, [c.line() for c in result.checks])


def test_a_model_without_gradient_path_is_a_typed_error(weak: nn.Module, blobs: ImageDataset) -> None:
    model = ZOO["no-gradient-path"](weak)
    for attack in ATTACKS.values():
        with pytest.raises(RobustModelError, match="no gradient path"):
            evaluate(model, blobs, attack, linf(EPS), device="cpu")

    class Lookup(nn.Module):
        """The output is a parameter indexed by the base model's argmax: a graph, but not to x."""

        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.eye(2) * 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.table[weak(x).argmax(dim=1)]

    with pytest.raises(RobustModelError, match="differentiabl"):
        evaluate(Lookup(), blobs, PGD(steps=2), linf(EPS), device="cpu")


def test_declared_randomized_model_is_measured_as_the_mean_of_draws(
    weak: nn.Module, blobs: ImageDataset
) -> None:
    noisy = NoisyInput(weak)
    with pytest.raises(UnsoundEvaluation, match="determinism"):
        assert_robust(noisy, PGD(steps=10), eps=EPS, min_acc=0.0, data=blobs, device="cpu")
    # declared: the determinism check passes, decisions are on the mean of draws, and EOT attacks
    # break the weak model as they break it without noise
    first = assert_robust(noisy, FGSM(), eps=EPS, min_acc=0.0, data=blobs, device="cpu", randomized=True)
    again = assert_robust(noisy, FGSM(), eps=EPS, min_acc=0.0, data=blobs, device="cpu", randomized=True)
    assert first.evaluation.robust_correct == again.evaluation.robust_correct  # seeded: reproducible
    assert first.evaluation.clean_scores == again.evaluation.clean_scores
    assert first.evaluation.model["randomized"] is True
    assert first.evaluation.model["draws"] == SoundnessConfig().draws
    determinism = next(c for c in first.evaluation.checks if c.name == "determinism")
    assert determinism.status == PASS
    assert "declared randomized" in determinism.summary
    assert first.clean_acc > 0.9
    assert first.robust_acc < 0.1
    with pytest.raises(RobustnessFailure):
        assert_robust(noisy, FGSM(), eps=EPS, min_acc=0.5, data=blobs, device="cpu", randomized=True)


def test_expectation_model_averages_probabilities(weak: nn.Module) -> None:
    x = make_blobs(4, seed=1).images
    with seeded(3):
        out = ExpectationModel(NoisyInput(weak), draws=5)(x)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(4), atol=1e-5)
    deterministic = ExpectationModel(weak, draws=3)(x)
    assert torch.allclose(deterministic, weak(x).log_softmax(dim=1), atol=1e-5)
    with pytest.raises(RobustConfigError):
        ExpectationModel(weak, draws=0)


def test_the_margin_loss_sees_through_saturated_logits(weak: nn.Module, blobs: ImageDataset) -> None:
    scaled = ScaledLogits(weak)
    ce = evaluate(scaled, blobs, PGD(steps=10), linf(EPS), device="cpu")
    margin = evaluate(scaled, blobs, PGD(steps=10, loss="margin"), linf(EPS), device="cpu")
    assert ce.robust_acc > 0.9
    assert margin.robust_acc < 0.1
    assert "saturation" in {c.name for c in ce.failed_checks}
    saturation = next(c for c in margin.checks if c.name == "saturation")
    assert saturation.status == PASS
    assert "not relevant" in saturation.summary
    assert margin.sound


def test_unbounded_attack_detects_a_model_that_never_changes_its_mind(blobs: ImageDataset) -> None:
    """A model that answers 'benign' for (almost) every input cannot be gated on robustness."""
    const = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    with torch.no_grad():
        const[1].weight.fill_(1e-4)
        const[1].bias.copy_(torch.tensor([5.0, 0.0]))
    result = evaluate(const, blobs, PGD(steps=10), linf(EPS), device="cpu")
    unbounded = next(c for c in result.checks if c.name == "unbounded")
    assert unbounded.status == FAIL
    assert unbounded.measured == 0.0
    assert "0/8 by Linf eps=1/2" in unbounded.summary


def test_evaluation_numbers_do_not_depend_on_the_checks(weak: nn.Module, blobs: ImageDataset) -> None:
    on = evaluate(weak, blobs, PGD(steps=5), linf(8 / 255), device="cpu")
    off = evaluate(
        weak, blobs, PGD(steps=5), linf(8 / 255), device="cpu", soundness=SoundnessConfig(enabled=False)
    )
    assert on.robust_correct == off.robust_correct
    assert on.adv_pred == off.adv_pred
    assert off.checks == ()
    assert on.checks
    assert off.timings["checks_s"] <= on.timings["checks_s"]


# --- the evaluation memo never shares results between different models --------------------------------


def test_memo_keys_on_model_identity_and_behaviour(weak: nn.Module, blobs: ImageDataset) -> None:
    memo: dict[str, Any] = {}
    kwargs: dict[str, Any] = {"device": "cpu", "seed": 0, "batch_size": 128}
    base = memoised_evaluate(memo, weak, blobs, PGD(steps=3), linf(EPS), **kwargs)
    scaled = memoised_evaluate(memo, ScaledLogits(weak), blobs, PGD(steps=3), linf(EPS), **kwargs)
    noisy = memoised_evaluate(memo, NoisyInput(weak), blobs, PGD(steps=3), linf(EPS), **kwargs)
    assert len(memo) == 3  # same weights, three models, three evaluations
    assert base.robust_acc < 0.1
    assert scaled.robust_acc > 0.9
    assert not scaled.sound
    assert not noisy.sound
    assert base.sound
    assert memoised_evaluate(memo, weak, blobs, PGD(steps=3), linf(EPS), **kwargs) is base
    assert len(memo) == 3
    # the same weights in another wrapper object of the same class: another model, another entry
    memoised_evaluate(memo, ScaledLogits(weak), blobs, PGD(steps=3), linf(EPS), **kwargs)
    assert len(memo) == 4
    # a mutated behaviour of the same object is a new entry too
    scaler = ScaledLogits(weak)
    first = memoised_evaluate(memo, scaler, blobs, PGD(steps=3), linf(EPS), **kwargs)
    scaler.forward = weak.forward  # type: ignore[method-assign]
    second = memoised_evaluate(memo, scaler, blobs, PGD(steps=3), linf(EPS), **kwargs)
    assert first is not second
    assert second.robust_acc < 0.1


# --- attacks as strong as their budget allows ------------------------------------------------------------


class Oscillating(nn.Module):
    """Class 1 only in a thin band of the image mean, 0.02 to 0.03 above 0.5, the class-1 loss
    pulling towards the band's centre from both sides: PGD steps of eps/2 = 0.031 jump in and out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shift = x.mean(dim=(1, 2, 3)) - 0.5
        margin = ((shift - 0.025).abs() - 0.005) * 50  # < 0 (class 1) inside the band only
        return torch.stack([margin, -margin], dim=1)


def last_iterate_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    steps: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """The textbook PGD that returns its last iterate (what this project did before)."""
    from pytest_robust.attacks.base import input_gradient
    from pytest_robust.attacks.gradient import ascent_direction, random_start_point
    from pytest_robust.perturbation import project

    x_adv = random_start_point(x, threat, generator)
    for _ in range(steps):
        grad, _ = input_gradient(model, x_adv, y)
        x_adv = project(x_adv + threat.eps / 2 * ascent_direction(grad, threat.norm), x, threat)
    return x_adv


def test_best_iterate_pgd_keeps_every_sample_any_iterate_broke() -> None:
    model = Oscillating()
    g = torch.Generator().manual_seed(0)
    pattern = torch.rand((64, 3, 8, 8), generator=g) * 0.4 - 0.2
    x = 0.5 + pattern - pattern.mean(dim=(1, 2, 3), keepdim=True)  # every image's mean is 0.5
    y = torch.zeros(64, dtype=torch.long)
    with torch.no_grad():
        assert bool((model(x).argmax(dim=1) == y).all())
    threat = linf(16 / 255)
    best = PGD(steps=20).perturb(model, x, y, threat, generator=torch.Generator().manual_seed(1))
    last = last_iterate_pgd(model, x, y, threat, 20, torch.Generator().manual_seed(1))
    with torch.no_grad():
        broken_best = model(best).argmax(dim=1) != y
        broken_last = model(last).argmax(dim=1) != y
    assert bool((broken_best | ~broken_last).all()), "best-iterate PGD lost a sample the last iterate broke"
    assert int(broken_best.sum()) > int(broken_last.sum()) + 5  # the last iterate un-fools samples


def test_pgd_spends_no_steps_on_broken_samples(weak: nn.Module, blobs: ImageDataset) -> None:
    calls: list[int] = []

    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = weak

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.shape[0])
            out: torch.Tensor = self.base(x)
            return out

    x, y = blobs.images[:64], blobs.labels[:64]
    PGD(steps=20).perturb(Counting(), x, y, linf(EPS), generator=torch.Generator().manual_seed(0))
    assert sum(calls) < 20 * 64 / 2  # most samples break in a few steps and leave the batch
    assert calls[0] == 64
    assert calls == sorted(calls, reverse=True)


def test_ensemble_runs_cheap_first_and_only_on_survivors(
    trained_tiny: nn.Module, blobs: ImageDataset
) -> None:
    ensemble = Ensemble(attacks=(FGSM(), PGD(steps=5), SMALL_AA))
    result = evaluate(trained_tiny, blobs, ensemble, linf(16 / 255), device="cpu")
    alone = {
        a.name: evaluate(trained_tiny, blobs, a, linf(16 / 255), device="cpu")
        for a in (FGSM(), PGD(steps=5), SMALL_AA)
    }
    assert result.robust_acc <= min(r.robust_acc for r in alone.values())
    labels = {b.split(":")[0] for b in result.broken_by if b}
    assert labels <= {"fgsm", "pgd", "autoattack"}
    broken_by_fgsm = [i for i, b in enumerate(result.broken_by) if b == "fgsm"]
    assert broken_by_fgsm == [
        i
        for i, (c, r) in enumerate(
            zip(alone["fgsm"].clean_correct, alone["fgsm"].robust_correct, strict=True)
        )
        if c and not r
    ]
    assert result.attack["name"] == "ensemble"
    assert len(result.attack["attacks"]) == 3
    assert "worst case of FGSM + PGD-5" in result.attack_description
    with pytest.raises(RobustConfigError):
        Ensemble(attacks=())
    with pytest.raises(RobustConfigError, match="nest"):
        Ensemble(attacks=(ensemble,))


def test_worst_case_is_pointwise(weak: nn.Module, blobs: ImageDataset) -> None:
    results = [evaluate(weak, blobs, a, linf(4 / 255), device="cpu") for a in (FGSM(), PGD(steps=5))]
    combined = worst_case(results)
    for i in range(combined.n):
        assert combined.robust_correct[i] == all(r.robust_correct[i] for r in results)
    assert combined.robust_acc <= min(r.robust_acc for r in results)
    assert combined.attack["name"] == "worst-case"
    assert len(combined.checks) == sum(len(r.checks) for r in results)  # both sound: all checks kept
    from dataclasses import replace

    flagged = Check(name="black-box", status=FAIL, summary="Square broke what FGSM left")
    masked = replace(results[0], checks=(*results[0].checks, flagged))
    assert not masked.sound
    assert results[1].sound
    assert worst_case([masked, results[1]]).sound  # evidence when one of its parts is
    assert not worst_case([masked, masked]).sound
    again = EvalResult.from_json(json.loads(json.dumps(combined.to_json())))
    assert again == combined
    other = evaluate(weak, blobs, FGSM(), linf(8 / 255), device="cpu")
    with pytest.raises(RobustConfigError, match="threat"):
        worst_case([results[0], other])


# --- checks across evaluations ----------------------------------------------------------------------------


def _with_flags(result: EvalResult, robust: list[bool]) -> EvalResult:
    from dataclasses import replace

    return replace(
        result, robust_correct=tuple(r and c for r, c in zip(robust, result.clean_correct, strict=True))
    )


def test_attack_order_counts_samples_the_stronger_attack_missed(weak: nn.Module, blobs: ImageDataset) -> None:
    base = evaluate(weak, blobs, "none", linf(0), device="cpu")
    n = base.n
    weaker = _with_flags(base, [i % 2 == 0 for i in range(n)])  # breaks the odd samples
    good = _with_flags(base, [False] * n)
    bad = _with_flags(base, [i % 4 != 1 for i in range(n)])  # misses half of what the weaker broke
    assert attack_order(weaker, good).status == PASS
    check = attack_order(weaker, bad)
    assert check.status == FAIL
    assert check.measured == pytest.approx(0.5, abs=0.02)


def test_eps_monotonicity(weak: nn.Module, blobs: ImageDataset) -> None:
    curve = [evaluate(weak, blobs, PGD(steps=5), linf(e / 255), device="cpu") for e in (8, 16, 32)]
    assert curve[0].robust_acc > curve[2].robust_acc + 0.5
    assert eps_monotonicity(curve).status == PASS
    from dataclasses import replace

    fake_high = replace(curve[2], robust_correct=curve[2].clean_correct)
    check = eps_monotonicity([curve[0], fake_high])
    assert check.status == FAIL
    assert "rises: 8/255 -> 32/255" in check.summary


# --- AutoAttack's own checks -------------------------------------------------------------------------------


def test_autoattack_flags_are_surfaced_as_a_check(weak: nn.Module, blobs: ImageDataset) -> None:
    result = evaluate(ZOO["probabilities"](weak), blobs, SMALL_AA, linf(EPS), device="cpu")
    flags = next(c for c in result.checks if c.name == "autoattack-flags")
    assert flags.status == FAIL
    assert "probability distribution" in flags.summary


def test_flag_filter_dismisses_only_known_false_flags() -> None:
    flags = [
        'it seems to be a randomized defense! Please use version="rand".',
        "it seems that the output is a probability distribution, please be sure that the logits are used!",
    ]
    kept, dismissed = filter_flags(flags, randomized=True)
    assert kept == flags[1:]
    assert "dismissed" in dismissed[0]
    kept, dismissed = filter_flags(flags, randomized=False)
    assert kept == flags
    assert dismissed == []
    outcome = AttackOutcome(
        x_adv=torch.zeros(0), flags=tuple(flags[:1]), parts=({"name": "apgd-ce", "black_box": False},)
    )
    assert flags_check(outcome, SMALL_AA, randomized=True).status == PASS
    assert flags_check(outcome, SMALL_AA, randomized=False).status == FAIL


def test_a_stale_dynamic_defence_counter_raises_no_flag(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    checks = pytest.importorskip("pyautoattack.checks")
    checks.funcs["grad"] = 3  # what an earlier dynamic model leaves behind in the library
    result = evaluate(trained_tiny, blobs, SMALL_AA, linf(4 / 255), device="cpu")
    flags = next(c for c in result.checks if c.name == "autoattack-flags")
    assert flags.status == PASS, flags.summary


def test_gradient_losses_of_attack_configs() -> None:
    assert gradient_losses(PGD().config()) == {"ce"}
    assert gradient_losses(PGD(loss="margin").config()) == {"margin"}
    assert gradient_losses(SMALL_AA.config()) == {"ce"}
    assert gradient_losses(AutoAttack(attacks=("square",)).config()) == set()
    assert gradient_losses(Ensemble(attacks=(PGD(), PGD(loss="margin"))).config()) == {"ce", "margin"}
    with pytest.raises(RobustConfigError, match="unknown loss"):
        PGD(loss="hinge")


# --- results ---------------------------------------------------------------------------------------------


def test_checks_round_trip_through_json(weak: nn.Module, blobs: ImageDataset) -> None:
    with pytest.raises(UnsoundEvaluation) as info:
        assert_robust(ScaledLogits(weak), PGD(steps=3), eps=EPS, min_acc=0.0, data=blobs, device="cpu")
    result = info.value.result
    data = json.loads(json.dumps(result.to_json()))
    assert data["verdict"]["status"] == "unsound"
    assert data["verdict"]["sound"] is False
    assert "saturation" in data["verdict"]["failed_checks"]
    assert data["evaluation"]["sound"] is False
    again = RobustResult.from_json(data)
    assert again == result
    assert isinstance(again.evaluation.checks[0], Check)
    # results written before soundness checks existed still load, as sound
    old = json.loads(json.dumps(result.to_json()))
    for key in ("sound", "status", "soundness", "failed_checks"):
        old["verdict"].pop(key)
    for key in ("sound", "checks", "broken_by", "soundness"):
        old["evaluation"].pop(key)
    legacy = RobustResult.from_json(old)
    assert legacy.sound
    assert legacy.evaluation.checks == ()


def test_bad_soundness_arguments(weak: nn.Module, blobs: ImageDataset) -> None:
    with pytest.raises(RobustConfigError, match="soundness mode"):
        assert_robust(weak, "pgd", eps=EPS, min_acc=0.5, data=blobs, soundness="lenient")
    with pytest.raises(RobustConfigError, match="randomized"):
        assert_robust(weak, "pgd", eps=EPS, min_acc=0.5, data=blobs, randomized="yes")  # type: ignore[arg-type]
    with pytest.raises(RobustConfigError, match="max_bad_gradient"):
        SoundnessConfig(max_bad_gradient=2.0)


def test_a_gradient_free_evaluation_needs_no_gradient(weak: nn.Module, blobs: ImageDataset) -> None:
    """Square alone may measure a model without a gradient path; the gradient checks then skip."""
    model = ZOO["no-gradient-path"](weak)
    square = AutoAttack(attacks=("square",), square_queries=300)
    result = evaluate(model, blobs, square, linf(EPS), device="cpu")
    statuses = {c.name: c.status for c in result.checks}
    assert statuses["gradient"] == SKIP
    assert statuses["saturation"] == SKIP
    assert result.robust_acc < result.clean_acc - 0.2  # Square breaks the weak model without a gradient


def test_training_attack_is_the_last_iterate() -> None:
    """PGD adversarial training keeps Madry et al.'s last iterate: the best-iterate early stop would
    train on weaker examples (ConvNeXt PGD-AT gained 6 points less robustness when it did)."""
    model = Oscillating()
    g = torch.Generator().manual_seed(0)
    pattern = torch.rand((16, 3, 8, 8), generator=g) * 0.4 - 0.2
    x = 0.5 + pattern - pattern.mean(dim=(1, 2, 3), keepdim=True)
    y = torch.zeros(16, dtype=torch.long)
    threat = linf(16 / 255)
    last = PGD(steps=20, iterate="last")
    ours = last.perturb(model, x, y, threat, generator=torch.Generator().manual_seed(1))
    textbook = last_iterate_pgd(model, x, y, threat, 20, torch.Generator().manual_seed(1))
    assert torch.equal(ours, textbook)
    with pytest.raises(RobustConfigError, match="iterate"):
        PGD(iterate="first")
    import inspect

    from pytest_robust import training

    assert 'iterate="last"' in inspect.getsource(training.train)
