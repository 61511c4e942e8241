"""The five-architecture ISIC benchmark of the reference study, as tests.

ResNet50, DenseNet121, MobileNetV2, EfficientNet-B2 and ConvNeXt-Tiny, each trained with standard
training and with PGD adversarial training (checkpoints from the cache, trained on a miss), are
evaluated on the test split: clean accuracy, F1 and ROC AUC (malignant positive), then accuracy
under FGSM, PGD-20 (step eps/2 = 2/255) and AutoAttack (APGD-CE + Square) at Linf eps 4/255, with
the active profile's budgets, plus PGD at several eps for the robustness curve.

The study's findings are named tests below; every threshold they use is in :data:`THRESHOLDS`,
one entry per profile, and every test compares numbers this run measured. The per-model
measurements run with ``soundness="warn"`` (they record numbers; min_acc is 0), and
``test_evaluations_are_sound`` then fails for every model whose evaluations failed a soundness
check - unless the check is listed as right for that model in ``expected_failures``. The headline
robust accuracy per model is the pointwise worst case over FGSM, PGD and AutoAttack at 4/255
(``test_worst_case``), the AutoAttack authors' rule for reporting.

    pytest suites/ --robust-report                                  # synthetic data, ci profile
    pytest suites/ --robust-report --robust-data ../shared/data/isic-malignant-vs-benign
    pytest suites/ -n 2 --robust-report                             # two processes, one architecture each
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from pytest_robust.architectures import REFERENCE_ARCHITECTURES
from pytest_robust.evaluate import worst_case
from pytest_robust.gate import RobustnessFailure
from pytest_robust.policies import LowerConfidenceBound, PointEstimate
from pytest_robust.soundness import SoundnessConfig, attack_order, eps_monotonicity
from pytest_robust.threat import format_eps

#: The study's evaluation budget (Linf).
EPS = 4 / 255
#: The robustness-vs-eps curve (PGD with the profile's budget, step eps/2).
EPS_CURVE = (2 / 255, 4 / 255, 8 / 255)
RECIPES = ("standard", "pgd-at")
#: Adversarial examples kept per evaluation for the report's gallery.
GALLERY = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """What the study's findings mean, numerically, at one profile's fidelity."""

    #: "every standard model collapses under PGD": PGD-20 robust accuracy at most this.
    collapse_max: float
    #: "PGD-AT raises robust accuracy for every architecture": PGD-20 gain (PGD-AT minus
    #: standard) at least this.
    at_gain_min: float
    #: the release gate "ConvNeXt PGD-AT under AutoAttack >= this" (an ordinary assert_robust).
    convnext_gate: float
    #: a stronger attack may not leave more robust accuracy than a weaker one by more than this
    #: (AutoAttack <= PGD <= FGSM; a larger excess is a sign of gradient masking or a broken attack).
    attack_order_slack: float
    #: robust accuracy may not rise with eps by more than this (same reason).
    monotone_slack: float
    why: str
    #: False: the profile's models are too small to carry the findings; those tests skip, saying so.
    check_findings: bool = True
    #: Checks measured NOT to hold at this profile's fidelity, with what was measured: the test
    #: still measures, then reports an expected failure (xfail) when the check fails, and passes
    #: when it holds after all. Keys: ``check:model`` (e.g. ``at_gain:mobilenetv2_100``).
    expected_failures: Mapping[str, str] = field(default_factory=dict)
    #: the profile's plumbing-check notice (``smoke``): every check that fails is an expected failure
    #: saying so, because the profile's numbers measure nothing (see ``Profile.plumbing``)
    plumbing: str | None = None
    #: the soundness checks' probe sizes for this profile's evaluations (None: the gate's defaults);
    #: every check still runs, on fewer samples and queries
    checks: SoundnessConfig | None = None
    #: the eps of the robustness curve (PGD at each): at least two, one of them :data:`EPS`
    eps_curve: tuple[float, ...] = EPS_CURVE

    def require_findings(self) -> None:
        if not self.check_findings:
            pytest.skip(f"findings not checked in this profile: {self.why}")

    def check(self, key: str, holds: bool, message: str) -> None:
        """Fail with ``message`` unless ``holds``; a known deviation (``expected_failures``) xfails."""
        __tracebackhide__ = True
        if holds:
            return
        if key in self.expected_failures:
            pytest.xfail(f"{message} [known at this profile: {self.expected_failures[key]}]")
        if self.plumbing:
            pytest.xfail(f"{message} [{self.plumbing}]")
        pytest.fail(message, pytrace=False)


_PGD_MASKED = (
    "PGD-20 (random start, step eps/2) gets weaker as eps grows on MobileNetV2 and EfficientNet-B2 at "
    "32 px (ISIC: MobileNetV2 1.6% robust at 4/255 but 7.4% at 8/255, EfficientNet-B2 9.0% -> 18.4%) "
    "while AutoAttack at 4/255 leaves 0.0%: PGD underestimates their vulnerability (gradient "
    "masking); gate them with AutoAttack"
)
_AT_WEAK = (
    "2 epochs of PGD-AT fine-tuning at 32 px leave EfficientNet-B2 nearly defenceless (ISIC: +6.6 "
    "points under PGD-20, 2.0% under AutoAttack; synthetic: -4.7 points), as the study found "
    "MobileNetV2 and EfficientNet-B2 after PGD-AT"
)
_MOBILENET_AT_WEAK = (
    "with best-iterate PGD-20 (which keeps every iterate that fooled the model) MobileNetV2 PGD-AT is "
    "barely more robust than standard training at 32 px (synthetic: 1.2% -> 6.6%, +5.5 points; AutoAttack "
    "1.2%); the last-iterate PGD-20 used before reported 31.6% because its iterates oscillated past the "
    "adversarial points they had found. The study, with last-iterate PGD, reports +19.6 points"
)
_GRADIENT_ATTACKS_FAIL = (
    "FGSM and PGD-20 cannot measure MobileNetV2 and EfficientNet-B2 at 32 px, and the soundness checks "
    "say so (synthetic, ci, seed 0): Square breaks 19-44% of the samples FGSM left robust (black-box), "
    "and PGD-20 breaks only 4-5 of 8 probed samples even at Linf eps 1/2 (unbounded) while AutoAttack "
    "(APGD-CE with step-size adaptation) leaves 0.0-1.2% at 4/255 and passes every check. The study's "
    "FGSM/PGD columns for these models are upper bounds, not measurements; gate them with AutoAttack"
)
_EFFNET_AT_DEGENERATE = (
    "EfficientNet-B2 + PGD-AT degenerates towards one class (ISIC: 60.9% accuracy, F1 0.29; "
    "synthetic: 48.4% with 50% majority; the study: 46.5% accuracy, AUC 0.39)"
)

#: One place for every threshold, per profile (``--robust-profile``).
THRESHOLDS: dict[str, Thresholds] = {
    # The study: standard models at most 15.2% under PGD (ConvNeXt), PGD-AT gains of 19.6 (MobileNetV2)
    # to 65.3 points, ConvNeXt PGD-AT 73.8% under AutoAttack.
    "paper": Thresholds(
        collapse_max=0.20,
        at_gain_min=0.15,
        convnext_gate=0.60,
        attack_order_slack=0.02,
        monotone_slack=0.02,
        why="the study's own numbers, with margin: standard <= 15.2% under PGD, AT gains >= 19.6 points, "
        "ConvNeXt PGD-AT 73.8% under AutoAttack",
        expected_failures={"majority:efficientnet_b2-pgd-at": _EFFNET_AT_DEGENERATE},
    ),
    # 32 px, 6 epochs from scratch, PGD-AT fine-tuned for 2 epochs (recipes.CI); n = 256.
    "ci": Thresholds(
        collapse_max=0.50,
        at_gain_min=0.10,
        convnext_gate=0.50,
        attack_order_slack=0.03,
        monotone_slack=0.03,
        why="low-fidelity CPU reproduction (32 px, 6 epochs, 2-epoch PGD-AT fine-tuning): models are "
        "less accurate and less brittle than at 224 px, so 'collapse' means at most half the images "
        "survive PGD-20, and PGD-AT must add 10 points",
        expected_failures={
            # measured: docs/results.md (synthetic default and ISIC, ci profile, seed 0)
            "monotone:mobilenetv2_100-standard": _PGD_MASKED,
            "monotone:mobilenetv2_100-pgd-at": _PGD_MASKED,
            "monotone:efficientnet_b2-standard": _PGD_MASKED,
            "monotone:efficientnet_b2-pgd-at": _PGD_MASKED,
            "at_gain:efficientnet_b2": _AT_WEAK,
            "at_gain:mobilenetv2_100": _MOBILENET_AT_WEAK,
            "majority:efficientnet_b2-pgd-at": _EFFNET_AT_DEGENERATE,
            "sound:mobilenetv2_100-standard": _GRADIENT_ATTACKS_FAIL,
            "sound:mobilenetv2_100-pgd-at": _GRADIENT_ATTACKS_FAIL,
            "sound:efficientnet_b2-standard": _GRADIENT_ATTACKS_FAIL,
            "sound:efficientnet_b2-pgd-at": _GRADIENT_ATTACKS_FAIL,
            "collapse:convnext_tiny": "standard ConvNeXt-Tiny at 32 px keeps 39% (ISIC) to 68% (synthetic) "
            "under PGD-20 at 4/255 (the study: 15.2% at 224 px)",
        },
    ),
    # About a minute: 1 epoch on 64 images, 32 test images, 5-step attacks. A plumbing check: the
    # mechanics run; the findings are not checked and any other failed check is an expected failure.
    "smoke": Thresholds(
        collapse_max=1.0,
        at_gain_min=-1.0,
        convnext_gate=0.0,
        attack_order_slack=0.10,
        monotone_slack=0.10,
        why="smoke profile: a plumbing check, models barely trained (1 epoch on 64 images); use "
        "--robust-profile ci",
        check_findings=False,
        # a plumbing check in under two minutes cold on 2 cores: every soundness check runs, on half
        # the probes (the checks cost more than the 5-step attacks themselves)
        checks=SoundnessConfig(probe_samples=16, attack_samples=8, unbounded_samples=4, black_box_queries=10),
        # and a two-point curve (its monotonicity check still runs)
        eps_curve=(EPS, 8 / 255),
    ),
}

#: Heaviest first (measured: ConvNeXt-Tiny 378 s of training and evaluation, ResNet50 272,
#: DenseNet121 223, EfficientNet-B2 170, MobileNetV2 67; ci, 1 thread): under pytest-xdist each
#: architecture is one work unit (suites/conftest.py), handed out in this order, so the workers
#: finish together. Test ids and the report's order do not depend on it.
BY_COST = sorted(
    REFERENCE_ARCHITECTURES,
    key=["convnext_tiny", "resnet50", "densenet121", "efficientnet_b2", "mobilenetv2_100"].index,
)
MODELS = [pytest.param(a, r, id=f"{a}-{r}") for a in BY_COST for r in RECIPES]
ARCHS = list(BY_COST)


def pgd_name(result: Any) -> str:
    """``PGD-20`` (the study's attack) or the step count the profile ran, from the measured result."""
    return f"PGD-{result.evaluation.attack.get('steps', '?')}"


def label(arch: str, recipe: str) -> str:
    return f"{arch} {'PGD-AT' if recipe == 'pgd-at' else recipe}"


def degenerate(*results: Any) -> str:
    """Why a finding cannot hold on ``results``: their degenerate models (``""`` when none is). A model
    that (almost) never predicts a class has the class balance as its robust accuracy
    (:mod:`pytest_robust.degeneracy`); ``record_finding(results=...)`` records such a finding as not
    holding, and the check's message says why."""
    return "; ".join(
        f"{r.context.get('model')}: {r.evaluation.degeneracy.reason}"
        for r in results
        if r.evaluation.degeneracy.degenerate
    )


@pytest.fixture(scope="session")
def thresholds(pytestconfig: pytest.Config) -> Thresholds:
    from pytest_robust.plugin import CONFIG_KEY

    profile = pytestconfig.stash[CONFIG_KEY].profile
    return replace(THRESHOLDS[profile.name], plumbing=profile.plumbing)


@pytest.fixture
def measure(assert_robust, checkpoint, checkpoint_record, pgd, aa, fgsm, thresholds):  # type: ignore[no-untyped-def]
    """``measure(arch, recipe, attack, eps=EPS, min_acc=0)`` → the recorded RobustResult.

    An evaluation already made in this process (same weights, data, attack, eps, seed) is reused,
    not recomputed; it is still recorded on the calling test.
    """
    attacks = {"none": "none", "fgsm": fgsm, "pgd": pgd, "autoattack": aa}

    def run(
        arch: str,
        recipe: str,
        attack: str,
        eps: float = EPS,
        min_acc: float = 0.0,
        soundness: str = "warn",
        policy: Any = None,
    ) -> Any:
        __tracebackhide__ = True
        context = {
            "model": label(arch, recipe),
            "arch": arch,
            "recipe": recipe,
            "checkpoint": checkpoint_record(arch, recipe),
        }
        return assert_robust(
            checkpoint(arch, recipe),
            attacks[attack],
            eps=eps if attack != "none" else 0.0,
            min_acc=min_acc,
            context=context,
            examples=GALLERY if attack != "none" else 0,
            soundness=soundness,
            checks=thresholds.checks,
            # the study reports point estimates on every sample; pinned, so that --robust-policy
            # (e.g. sequential, which stops early) never changes the reproduced numbers
            policy=policy or PointEstimate(),
        )

    return run


# --- per model: what Table V reports ----------------------------------------------------------------


@pytest.mark.parametrize(("arch", "recipe"), MODELS)
def test_clean_accuracy_beats_the_majority_class(measure, thresholds, arch: str, recipe: str) -> None:  # type: ignore[no-untyped-def]
    """Clean accuracy, F1 and AUC are recorded; the model must beat always answering the majority class."""
    result = measure(arch, recipe, "none")
    thresholds.require_findings()
    labels = result.evaluation.labels
    majority = max(labels.count(c) for c in set(labels)) / len(labels)
    thresholds.check(
        f"majority:{arch}-{recipe}",
        result.clean_acc > majority,
        f"{label(arch, recipe)}: clean accuracy {result.clean_acc:.3f} does not beat the majority class "
        f"({majority:.3f}): the model learned nothing usable (degenerate training)",
    )


@pytest.mark.parametrize(("arch", "recipe"), MODELS)
def test_fgsm(measure, arch: str, recipe: str) -> None:  # type: ignore[no-untyped-def]
    result = measure(arch, recipe, "fgsm")
    assert result.robust_acc <= result.clean_acc


@pytest.mark.parametrize(("arch", "recipe"), MODELS)
def test_pgd_is_at_least_as_strong_as_fgsm(measure, thresholds, arch: str, recipe: str) -> None:  # type: ignore[no-untyped-def]
    fgsm = measure(arch, recipe, "fgsm")
    pgd = measure(arch, recipe, "pgd")
    per_sample = attack_order(fgsm.evaluation, pgd.evaluation)
    thresholds.check(
        f"pgd_vs_fgsm:{arch}-{recipe}",
        pgd.robust_acc <= fgsm.robust_acc + thresholds.attack_order_slack and not per_sample.failed,
        f"{label(arch, recipe)}: {pgd_name(pgd)} leaves {pgd.robust_acc:.3f} robust but one-step FGSM only "
        f"{fgsm.robust_acc:.3f}, per sample: {per_sample.summary}: the iterative attack is weaker, a "
        "sign of gradient masking",
    )


@pytest.mark.parametrize(("arch", "recipe"), MODELS)
def test_autoattack_is_at_least_as_strong_as_pgd(measure, thresholds, arch: str, recipe: str) -> None:  # type: ignore[no-untyped-def]
    pgd = measure(arch, recipe, "pgd")
    aa = measure(arch, recipe, "autoattack")
    per_sample = attack_order(pgd.evaluation, aa.evaluation)
    thresholds.check(
        f"aa_vs_pgd:{arch}-{recipe}",
        aa.robust_acc <= pgd.robust_acc + thresholds.attack_order_slack and not per_sample.failed,
        f"{label(arch, recipe)}: AutoAttack leaves {aa.robust_acc:.3f} robust but {pgd_name(pgd)} "
        f"{pgd.robust_acc:.3f}, per sample: {per_sample.summary}: AutoAttack should never be weaker",
    )


@pytest.mark.parametrize(("arch", "recipe"), MODELS)
def test_robust_accuracy_falls_with_eps(measure, thresholds, arch: str, recipe: str) -> None:  # type: ignore[no-untyped-def]
    """The robustness curve (PGD at each eps of the profile's curve, EPS_CURVE but in ``smoke``); a curve
    that rises is a soundness failure."""
    curve = [measure(arch, recipe, "pgd", eps=eps).evaluation for eps in thresholds.eps_curve]
    check = eps_monotonicity(curve, slack=thresholds.monotone_slack)
    thresholds.check(f"monotone:{arch}-{recipe}", not check.failed, f"{label(arch, recipe)}: {check.summary}")


@pytest.mark.parametrize(("arch", "recipe"), MODELS)
def test_worst_case(measure, assert_robust, checkpoint, arch: str, recipe: str, fgsm, pgd, aa) -> None:  # type: ignore[no-untyped-def]
    """The headline number: robust only if FGSM, PGD and AutoAttack all fail on the sample."""
    results = [measure(arch, recipe, a).evaluation for a in ("fgsm", "pgd", "autoattack")]
    combined = worst_case(results)
    result = assert_robust(
        checkpoint(arch, recipe),
        [fgsm, pgd, aa],
        eps=EPS,
        min_acc=0.0,
        soundness="warn",
        policy=PointEstimate(),
        evaluator=lambda *args, **kwargs: combined,
        context={"model": label(arch, recipe), "arch": arch, "recipe": recipe},
    )
    assert result.robust_acc <= min(r.robust_acc for r in results)


@pytest.mark.parametrize(("arch", "recipe"), MODELS)
def test_evaluations_are_sound(measure, thresholds, arch: str, recipe: str) -> None:  # type: ignore[no-untyped-def]
    """Every evaluation of the model passes every soundness check (or the check is known to be right)."""
    results = [measure(arch, recipe, a) for a in ("fgsm", "pgd", "autoattack")]
    results += [measure(arch, recipe, "pgd", eps=eps) for eps in thresholds.eps_curve if eps != EPS]
    failed = [
        f"{r.evaluation.attack['name']} at {format_eps(r.threat.eps)}: {c.name} ({c.summary})"
        for r in results
        for c in r.evaluation.failed_checks
    ]
    thresholds.check(
        f"sound:{arch}-{recipe}",
        not failed,
        f"{label(arch, recipe)}: unsound evaluation(s): " + "; ".join(failed),
    )


# --- the study's findings ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_standard_model_collapses_under_pgd(measure, thresholds, record_finding, arch: str) -> None:  # type: ignore[no-untyped-def]
    thresholds.require_findings()
    result = measure(arch, "standard", "pgd")
    holds = record_finding(
        "standard models collapse under PGD",
        claim=f"{label(arch, 'standard')}: {pgd_name(result)} robust accuracy "
        f"<= {thresholds.collapse_max:.2f}",
        measured=f"{result.robust_acc:.3f} (clean {result.clean_acc:.3f})",
        holds=result.robust_acc <= thresholds.collapse_max,
        results=[result],
    )
    note = degenerate(result)
    thresholds.check(
        f"collapse:{arch}",
        holds,
        f"degenerate model, so the finding cannot hold: {note}"
        if note
        else f"{label(arch, 'standard')} keeps {result.robust_acc:.3f} under {pgd_name(result)} at "
        f"{format_eps(EPS)} "
        f"(clean {result.clean_acc:.3f}): more than {thresholds.collapse_max:.2f} ({thresholds.why})",
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_pgd_at_raises_robust_accuracy(measure, thresholds, record_finding, arch: str) -> None:  # type: ignore[no-untyped-def]
    thresholds.require_findings()
    standard = measure(arch, "standard", "pgd")
    robust = measure(arch, "pgd-at", "pgd")
    gain = robust.robust_acc - standard.robust_acc
    holds = record_finding(
        "PGD-AT raises robust accuracy",
        claim=f"{arch}: {pgd_name(robust)} accuracy gain of PGD-AT over standard "
        f">= {thresholds.at_gain_min:.2f}",
        measured=f"{standard.robust_acc:.3f} -> {robust.robust_acc:.3f} ({gain:+.3f})",
        holds=gain >= thresholds.at_gain_min,
        results=[standard, robust],
    )
    note = degenerate(standard, robust)
    thresholds.check(
        f"at_gain:{arch}",
        holds,
        f"degenerate model, so the finding cannot hold: {note}"
        if note
        else f"{arch}: PGD-AT gains only {gain:+.3f} {pgd_name(robust)} accuracy over standard training "
        f"({standard.robust_acc:.3f} -> {robust.robust_acc:.3f}); required {thresholds.at_gain_min:+.2f}",
    )


def test_ranking_of_pgd_at_models_under_autoattack(measure, record_finding) -> None:  # type: ignore[no-untyped-def]
    """The most robust PGD-AT model and the order of the architectures (the study: ConvNeXt first).

    A degenerate model's robust accuracy is the class balance, not robustness: such a model is left
    out of the comparison (and named), and the finding does not hold when ConvNeXt itself is one."""
    results = {arch: measure(arch, "pgd-at", "autoattack") for arch in REFERENCE_ARCHITECTURES}
    ranking = sorted(results, key=lambda a: (-results[a].robust_acc, a))
    best = ranking[0]
    excluded = [a for a in ranking if a != "convnext_tiny" and results[a].evaluation.degeneracy.degenerate]
    # ConvNeXt "is the most robust" unless another model is ahead beyond its 95% interval
    _lo, hi = results["convnext_tiny"].verdict.interval
    ahead = [a for a in ranking if a not in excluded and a != "convnext_tiny" and results[a].robust_acc > hi]
    record_finding(
        "ConvNeXt PGD-AT is the most robust model",
        claim="no non-degenerate PGD-AT model beats convnext_tiny under AutoAttack beyond its 95% interval",
        measured=" > ".join(f"{a} {results[a].robust_acc:.3f}" for a in ranking)
        + (f" (degenerate, left out: {', '.join(excluded)})" if excluded else ""),
        holds=not ahead,
        results=[results["convnext_tiny"]],
        ranking=ranking,
        excluded=excluded,
    )
    for arch, result in results.items():
        assert result.robust_acc <= result.clean_acc, arch
    assert best in REFERENCE_ARCHITECTURES


def test_release_gate_convnext_pgd_at_under_autoattack(measure, thresholds) -> None:  # type: ignore[no-untyped-def]
    """A release gate written as the product is used: an ordinary assert_robust on one model, with the
    soundness checks strict (an unsound evaluation fails the gate) and the default policy for new
    users: the exact 95% lower bound of the robust accuracy must clear the requirement."""
    try:
        measure(
            "convnext_tiny",
            "pgd-at",
            "autoattack",
            min_acc=thresholds.convnext_gate,
            soundness="strict",
            policy=LowerConfidenceBound(),
        )
    except RobustnessFailure as failure:
        if not thresholds.plumbing:
            raise
        pytest.xfail(f"{str(failure).splitlines()[0]} [{thresholds.plumbing}]")
