"""The robustness gate: validate the request, evaluate, decide with a policy, explain.

``assert_robust`` is the public entry point (the fixture of the same name binds it to a test).
The decision on the number is delegated to a :class:`Policy`; the soundness checks of the
evaluation (:mod:`pytest_robust.soundness`) then decide whether that number may be trusted. Under
the default ``soundness="strict"`` a failed check makes the verdict UNSOUND and the gate fails
(:class:`UnsoundEvaluation`) whatever the number; under ``"warn"`` the gate follows the policy but
the result is marked unsound everywhere it is shown. A degenerate model (one that almost never
predicts some class of the data: :mod:`pytest_robust.degeneracy`) is judged the same way: its
robust accuracy measures the class balance, so ``strict`` fails the gate (DEGENERATE) and ``warn``
marks it; both emit :class:`~pytest_robust.errors.DegenerateModelWarning`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pytest_robust import validate
from pytest_robust.degeneracy import RULE as DEGENERACY_RULE
from pytest_robust.errors import (
    DegenerateModelWarning,
    RobustConfigError,
    RobustDataError,
    RobustDataWarning,
    RobustError,
)
from pytest_robust.policies import (
    LowerConfidenceBound,
    NonInferiority,
    PointEstimate,
    Policy,
    Sequential,
    Verdict,
    compares_with_baseline,
    relation,
)
from pytest_robust.schema import RESULT_SCHEMA_VERSION
from pytest_robust.threat import Norm, ThreatModel, format_eps

if TYPE_CHECKING:
    from torch import nn

    from pytest_robust.attacks import Attack
    from pytest_robust.baseline import Baseline
    from pytest_robust.data.dataset import ImageDataset
    from pytest_robust.evaluate import EvalResult
    from pytest_robust.soundness import SoundnessConfig

#: The ``schema`` of :meth:`RobustResult.to_json` (defined in :mod:`pytest_robust.schema`).
SCHEMA_VERSION = RESULT_SCHEMA_VERSION

__all__ = [
    "LowerConfidenceBound",
    "NonInferiority",
    "PointEstimate",
    "Policy",
    "RobustResult",
    "RobustnessFailure",
    "Sequential",
    "UnsoundEvaluation",
    "Verdict",
    "assert_robust",
]


class RobustnessFailure(RobustError, AssertionError):
    """The model did not meet the robustness requirement. ``result`` holds the measurements."""

    def __init__(self, message: str, result: RobustResult) -> None:
        super().__init__(message)
        self.result = result


class UnsoundEvaluation(RobustnessFailure):
    """A soundness check failed: the measured number cannot be trusted, so the gate cannot pass.

    Raised under ``soundness="strict"`` (the default) whatever the robust accuracy; ``result``
    holds the measurements and every check (``result.evaluation.checks``).
    """


def validate_min_acc(min_acc: object) -> float:
    value = validate.as_real("min_acc", min_acc, example="0.7 (a fraction in [0, 1])")
    if not math.isfinite(value) or not 0 <= value <= 1:
        hint = f" Did you mean min_acc={value / 100:g} ({value:g}%)?" if 1 < value <= 100 else ""
        raise RobustConfigError(f"min_acc is a fraction in [0, 1], got {min_acc!r}.{hint}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class RobustResult:
    """What ``assert_robust`` returns (and attaches to :class:`RobustnessFailure`)."""

    evaluation: EvalResult
    verdict: Verdict
    min_acc: float
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    @property
    def clean_acc(self) -> float:
        return self.evaluation.clean_acc

    @property
    def robust_acc(self) -> float:
        return self.evaluation.robust_acc

    @property
    def n(self) -> int:
        return self.evaluation.n

    @property
    def robust_correct(self) -> tuple[bool, ...]:
        return self.evaluation.robust_correct

    @property
    def clean_correct(self) -> tuple[bool, ...]:
        return self.evaluation.clean_correct

    @property
    def threat(self) -> ThreatModel:
        return self.evaluation.threat

    @property
    def timings(self) -> dict[str, float]:
        return self.evaluation.timings

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": RESULT_SCHEMA_VERSION,
            "min_acc": self.min_acc,
            "verdict": self.verdict.to_json(),
            "evaluation": self.evaluation.to_json(),
            "context": self.context,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RobustResult:
        from pytest_robust.evaluate import EvalResult

        verdict = Verdict.from_json(d["verdict"])
        return cls(
            evaluation=EvalResult.from_json(d["evaluation"]),
            verdict=verdict,
            min_acc=float(d["min_acc"]),
            context=dict(d.get("context", {})),
        )

    @property
    def sound(self) -> bool:
        return self.verdict.sound

    def explain(self) -> str:
        """The multi-line report a reviewer reads: measured vs required, then the setup."""
        ev, vd = self.evaluation, self.verdict
        head = "PASSED" if vd.passed else "FAILED"
        lo, hi = vd.interval
        data = ev.data
        kind = "synthetic" if data.get("synthetic") else "real"
        from pytest_robust.data.dataset import resize_note

        note = resize_note(data.get("source") or {})
        resized = f" ({note})" if note else ""
        lines = []
        if not vd.sound:
            failed = ev.failed_checks
            verdict = (
                "the gate cannot pass" if vd.soundness == "strict" else "passed only because soundness=warn"
            )
            lines += [
                f"robustness gate UNSOUND: {len(failed)} soundness check(s) failed, so the measured "
                f"robust accuracy is not evidence ({verdict}; soundness={vd.soundness})",
            ]
            for c in failed:
                lines += [
                    f"  check {c.name}: {c.summary}",
                    f"    why    {c.why}",
                    f"    to fix {c.fix}",
                ]
            lines.append(f"  measured (not trusted): {vd.reason}")
        elif vd.degenerate:
            verdict = (
                "the gate cannot pass"
                if vd.soundness == "strict"
                else "passed only because soundness=warn"
                if vd.passed
                else "the requirement failed as well"
            )
            lines += [
                f"robustness gate DEGENERATE: {ev.degeneracy.reason}, so its robust accuracy measures the "
                f"class balance of the data, not robustness ({verdict}; soundness={vd.soundness})",
                f"  measured (not evidence): {vd.reason}",
            ]
        else:
            lines.append(f"robustness gate {head}: {vd.reason}")
        lines += [
            f"  threat model    {ev.threat.norm.value} eps={format_eps(ev.threat.eps)} ({ev.threat.eps:.6g})",
            f"  attack          {ev.attack_description}",
            f"  robust accuracy {ev.robust_acc:.3f} ({ev.n_robust}/{ev.n}), "
            f"{vd.confidence:.0%} CI [{lo:.3f}, {hi:.3f}]",
            f"  clean accuracy  {ev.clean_acc:.3f} ({ev.n_clean_correct}/{ev.n})",
            f"  required        {vd.statistic} >= {self.min_acc:.3f} "
            f"({vd.parts[0].policy if vd.parts else vd.policy})",
            f"  data            {data.get('name')} ({kind}), n={samples_label(ev.n, data)}, "
            f"{'x'.join(str(s) for s in data.get('shape', []))}{resized}",
            f"  device, seed    {ev.device}, seed={ev.seed}",
        ]
        ci = self.evaluation.clinical
        if ci.n_positive and ci.n_negative:
            lines.append(
                f"  clinical        robust sensitivity {ci.robust_sensitivity:.3f} "
                f"({ci.robust_true_positive}/{ci.n_positive} {ci.positive_class}), robust specificity "
                f"{ci.robust_specificity:.3f} ({ci.robust_true_negative}/{ci.n_negative}), "
                f"{ci.flipped_to_negative} {ci.positive_class} flipped to negative"
            )
        for part in vd.parts:
            plo, phi = part.interval
            rel = relation(part.statistic)
            lines.append(
                f"  requirement     {'PASS' if part.passed else 'FAIL'} {part.statistic}: measured "
                f"{part.measured:.3f}, {part.confidence:.0%} bounds [{plo:.3f}, {phi:.3f}], required "
                f"{rel} {part.required:.3f} ({part.policy})"
            )
            newly = part.details.get("newly_broken_ids")
            if newly:
                more = part.details["newly_broken"] - len(newly)
                lines.append(
                    "  newly broken    " + ", ".join(newly) + (f" (and {more} more)" if more > 0 else "")
                )
            if part.details.get("baseline"):
                lines.append(f"  baseline        {part.details['baseline']}")
        if "used" in vd.details:
            lines.append(
                f"  samples used    {vd.details['used']} of {vd.details.get('available', '?')} "
                f"(sequential decision)"
            )
        if "profile" in self.context:
            lines.append(f"  profile         {self.context['profile']}")
        if ev.checks:
            lines.append(
                "  soundness       "
                + ", ".join(f"{c.name} {c.status}" for c in ev.checks)
                + f" (policy {vd.soundness})"
            )
        deg = ev.degeneracy
        if deg.degenerate:
            lines += [
                f"  DEGENERATE      clean recall per class: {deg.recalls()}",
                f"    rule         {DEGENERACY_RULE}",
                "    to fix       the model learned (almost) nothing about that class: check the training "
                "(class balance, labels, learning rate, epochs, a loss that did not diverge) and the "
                "preprocessing; a robust accuracy of such a model is not evidence of robustness. "
                "soundness=warn lets the gate pass, marked DEGENERATE",
            ]
            if len(deg.missed) == len(deg.classes) > 1 and not deg.one_answer:
                lines.append(
                    "    note         every class is missed while the model predicts several: its outputs "
                    "are probably in another class order than the data's labels"
                )
            if vd.requirement_passed is False:  # the numbers fail the requirement as well: what to do
                lines.append(self._fix_hint())
        if vd.sound and not vd.passed and not vd.degenerate:
            vs_baseline = any(not p.passed and compares_with_baseline(p.details) for p in vd.parts)
            if vs_baseline:
                lines.append(
                    "  to fix: look at the newly broken samples (the report's gallery) and what changed "
                    "since the baseline; if the change is intended, accept it deliberately with "
                    "--robust-baseline-update and commit the new baseline"
                )
            else:
                lines.append(self._fix_hint())
        return "\n".join(lines)

    def _fix_hint(self) -> str:
        """What to do about a failed requirement: a clean gate (eps 0, no attack) needs a better model
        or data that matches it; a robust one whose clean accuracy already misses the requirement
        needs that first; otherwise robustness training."""
        ev = self.evaluation
        tail = "; or lower the requirement deliberately; a larger n narrows the interval"
        if ev.threat.eps == 0 or ev.attack.get("name") == "none":
            classes = ", ".join(f"{i} {c}" for i, c in enumerate(ev.data.get("classes", ())))
            if (ev.data.get("source") or {}).get("kind") == "folder":
                classes = f"the class folders in alphabetical order: {classes}"
            shape = "x".join(str(s) for s in ev.data.get("shape", []))
            return (
                "  to fix: this gate measures clean accuracy (no attack): improve or retrain the model, "
                f"and check that the data is what it expects - the labels ({classes}), the input shape "
                f"({shape}), pixels in [0, 1] with any normalisation inside the model{tail}"
            )
        if ev.clean_acc < self.min_acc:
            return (
                f"  to fix: clean accuracy {ev.clean_acc:.3f} is already below the required "
                f"{self.min_acc:.3f}, and robust accuracy cannot exceed it: first improve the model on "
                "clean inputs (and check its data, labels and preprocessing), then train for robustness "
                f"(e.g. PGD adversarial training){tail}"
            )
        return (
            "  to fix: train for robustness (e.g. PGD adversarial training), or lower the requirement "
            "deliberately; a larger n narrows the interval"
        )


def samples_label(n: int, data: Mapping[str, Any]) -> str:
    """The sample count of an evaluation as the reports say it: ``40``, or ``40 (all 40 samples; 256
    requested)`` when the gate asked for more samples than the data held (``data["requested_n"]``)."""
    requested = data.get("requested_n")
    if not isinstance(requested, int):
        return str(n)
    total = int(data.get("available", n))
    held = f"all {total}" if n == total else f"of {total}"
    return f"{n} ({held} samples; {requested} requested)"


def assert_robust(
    model: nn.Module,
    attack: Attack | str,
    *,
    eps: float,
    min_acc: float,
    norm: str | Norm = "Linf",
    data: ImageDataset | None = None,
    n: int | None = None,
    device: str = "auto",
    seed: int = 0,
    policy: Policy | NonInferiority | None = None,
    batch_size: int = 128,
    context: dict[str, Any] | None = None,
    record: Callable[[RobustResult], None] | None = None,
    progress: bool | None = None,
    examples: int = 0,
    evaluator: Callable[..., EvalResult] | None = None,
    soundness: str = "strict",
    randomized: bool = False,
    checks: SoundnessConfig | None = None,
    min_sensitivity: float | None = None,
    min_specificity: float | None = None,
    max_flip_rate: float | None = None,
    positive: int | str = 1,
    baseline: Baseline | str | os.PathLike[str] | None = None,
    baseline_policy: NonInferiority | None = None,
    execution: str = "auto",
) -> RobustResult:
    """Evaluate ``model`` under ``attack`` at ``eps`` and fail unless every requirement is met.

    ``data`` defaults to the embedded synthetic test set (256 images at 32 px). ``n`` draws a seeded,
    class-stratified subset of ``n`` samples; when ``data`` holds fewer, all are evaluated, the
    result's ``evaluation.data["requested_n"]`` keeps ``n`` (its messages say ``n=40 (all 40
    samples; 256 requested)``) and a :class:`~pytest_robust.errors.RobustDataWarning` says so.
    Returns a :class:`RobustResult`; raises :class:`RobustnessFailure` (an ``AssertionError``) with
    a reviewer-readable message when the requirement is not met.
    ``record`` is called with the result before the decision is raised (the fixture uses it to
    attach the result to the test report). ``progress``: a tqdm bar per evaluation (None: only
    when stderr is a terminal). ``examples``: keep that many adversarial examples in the result
    (for a report's gallery). ``evaluator``: called instead of :func:`~pytest_robust.evaluate.evaluate`
    with the same arguments (the plugin passes a memoising one). ``attack`` may be a list of
    attacks: the pointwise worst case, run cheapest first (:class:`~pytest_robust.attacks.Ensemble`).

    Requirements, each decided by ``policy`` and all reported. The default policy is
    :class:`LowerConfidenceBound` (the exact 95% lower bound must clear the requirement: a PASS is
    evidence, not a lucky sample); :class:`PointEstimate` is the study's practice, kept for
    reproductions; :class:`Sequential` stops early once an anytime-valid confidence sequence decides.
    ``min_acc`` (robust accuracy), ``min_sensitivity`` / ``min_specificity`` (robust accuracy on the
    ``positive`` class / on the others; ``positive`` is a label or a class name, default 1:
    malignant on ISIC), ``max_flip_rate`` (share of the correctly caught positives an attack turns
    negative). ``baseline`` (a :class:`~pytest_robust.baseline.Baseline` or its file): the stored
    outcome of the accepted model, compared sample by sample by ``baseline_policy`` (default
    :class:`NonInferiority`; passing a ``NonInferiority`` as ``policy`` means the same).

    ``soundness``: ``strict`` (default) fails the gate with :class:`UnsoundEvaluation` when a
    soundness check fails; ``warn`` lets the policy decide but marks the result unsound.
    ``randomized=True`` declares a random model: it is evaluated as the mean of several draws
    with expectation-over-transformation gradients. ``checks``: the checks' thresholds.

    ``execution``: how the attack runs (:mod:`pytest_robust.execution`): ``auto`` (default: the
    measured per-architecture table of memory format and bf16 autocast, fp32 for other models),
    ``fp32`` (the model as given) or ``calibrate``; a faster setting is used only when the attack
    reaches the same per-sample decisions as in fp32 on a probe batch, and the result records it
    (``result.evaluation.execution``).
    """
    __tracebackhide__ = True
    norm_ = Norm.coerce(norm)
    threat = ThreatModel(norm=norm_, eps=eps)
    required = validate_min_acc(min_acc)
    seed = validate.seed("seed", seed)
    batch_size = validate.positive_int("batch_size", batch_size)
    clinical_req = {
        name: validate_rate(value, name)
        for name, value in (
            ("min_sensitivity", min_sensitivity),
            ("min_specificity", min_specificity),
            ("max_flip_rate", max_flip_rate),
        )
        if value is not None
    }
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise RobustConfigError(f"n must be a positive integer (or None for all samples), got {n!r}")
    if isinstance(policy, NonInferiority):
        baseline_policy, policy = baseline_policy or policy, None
        if baseline is None:
            raise RobustConfigError(
                "policy=NonInferiority(...) compares with a stored baseline, and this gate has none: run "
                "with --robust-baseline=DIR (the plugin stores one per gate) or pass baseline=PATH"
            )
    if policy is not None and not isinstance(policy, Policy):
        raise RobustConfigError(f"policy must have a decide(result, min_acc) method, got {policy!r}")
    if baseline_policy is not None and not callable(getattr(baseline_policy, "compare", None)):
        raise RobustConfigError(
            f"baseline_policy must have a compare(comparison) method, got {baseline_policy!r}"
        )
    threshold = policy or LowerConfidenceBound()
    stop_rule = getattr(threshold, "stop_rule", None)
    from pytest_robust.soundness import SoundnessConfig, check_mode

    mode = check_mode(soundness)
    if not isinstance(randomized, bool):
        raise RobustConfigError(f"randomized must be True or False, got {randomized!r}")
    if checks is not None and not isinstance(checks, SoundnessConfig):
        raise RobustConfigError(f"checks must be a SoundnessConfig, got {checks!r}")
    from pytest_robust.config import EXECUTION_MODES

    if not isinstance(execution, str) or execution.strip().lower() not in EXECUTION_MODES:
        raise RobustConfigError(
            f"execution must be one of {', '.join(EXECUTION_MODES)} (how the attack runs), got {execution!r}"
        )
    base = checks or SoundnessConfig()
    cfg = replace(base, randomized=randomized or base.randomized)

    from pytest_robust.attacks import coerce_attack
    from pytest_robust.clinical import resolve_positive
    from pytest_robust.evaluate import evaluate

    attack_ = coerce_attack(attack)
    if data is None:
        from pytest_robust.data.synthetic import generate_synthetic

        data = generate_synthetic(256, size=32, seed=seed, split="test")
    positive_label = resolve_positive(positive, data.classes)
    subset = data.subset(n, seed=seed)
    short = n is not None and n > len(data)  # fewer samples than asked for: all are evaluated, and said so
    if short:
        warnings.warn(
            RobustDataWarning(
                f"data {data.name!r} has {len(data)} samples, fewer than the n={n} requested: all "
                f"{len(data)} are evaluated and results say n={len(data)} (all {len(data)} samples; {n} "
                "requested). Ask for every sample (n=None; under pytest --robust-n all or n='all') "
                "to evaluate them without this warning"
            ),
            stacklevel=2,
        )
    stored = _load_baseline(baseline)
    extra: dict[str, Any] = {}
    if stored is not None:
        if stop_rule is not None:
            raise RobustConfigError(
                f"policy {threshold!r} stops early on a share of the samples, but a baseline comparison "
                "pairs every sample: use a fixed-n policy (e.g. PointEstimate) with a baseline"
            )
        from pytest_robust.baseline import REGENERATE, BaselineError, robust_positions

        wrong = stored.mismatches(
            attack=attack_.config(),
            threat=threat,
            data_fingerprint=subset.fingerprint(),
            ids=subset.sample_ids(),
            seed=seed,
            positive_label=positive_label,
        )
        if wrong:
            raise BaselineError(
                f"baseline {stored.source or '(given)'} was measured on something else than this gate, so "
                "comparing would mean nothing:\n  " + "\n  ".join(wrong) + f"\n{REGENERATE}"
            )
        extra["focus"] = robust_positions(stored, subset.sample_ids())
        examples = max(examples, 8)
    elif stop_rule is not None:
        # a sequential policy sees the samples in a random (seeded) order, so every prefix is a fair draw
        import torch

        order = torch.randperm(len(subset), generator=torch.Generator().manual_seed(seed))
        extra["stop"] = stop_rule(required, len(subset))
        subset = subset.select(order)
        batch_size = min(batch_size, int(getattr(threshold, "batch", batch_size)))
    evaluation = (evaluator or evaluate)(
        model,
        subset,
        attack_,
        threat,
        device=device,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        examples=examples,
        soundness=cfg,
        positive_label=positive_label,
        execution=execution.strip().lower(),
        **extra,
    )
    if short:
        evaluation = replace(evaluation, data={**evaluation.data, "requested_n": n})
    parts = [threshold.decide(evaluation, required)]
    parts += _clinical_parts(threshold, evaluation, clinical_req)
    if stored is not None:
        from pytest_robust.baseline import BaselineWarning, compare

        for note in stored.drift(evaluation):
            warnings.warn(BaselineWarning(f"{stored.source}: compared although {note}"), stacklevel=2)
        comparison = compare(stored, evaluation)
        parts.append((baseline_policy or NonInferiority()).compare(comparison))
    verdict = judge(combine(parts), evaluation, mode)
    result = RobustResult(
        evaluation=evaluation, verdict=verdict, min_acc=required, context=dict(context or {})
    )
    if verdict.degenerate:
        what = str(result.context.get("model") or f"model {evaluation.model.get('fingerprint', '?')[:12]}")
        consequence = "the gate fails" if mode == "strict" else "the gate passes only under soundness=warn"
        warnings.warn(
            DegenerateModelWarning(
                f"{what} is DEGENERATE under {evaluation.attack_description}: "
                f"{evaluation.degeneracy.reason}; its robust accuracy measures the class balance, "
                f"not robustness ({consequence})"
            ),
            stacklevel=2,
        )
    if record is not None:
        record(result)
    if not verdict.passed:
        error = UnsoundEvaluation if not verdict.sound else RobustnessFailure
        raise error(result.explain(), result)
    return result


def validate_rate(value: object, name: str) -> float:
    number = validate.as_real(name, value, example="0.9 (a fraction in [0, 1])")
    if not 0 <= number <= 1:
        raise RobustConfigError(f"{name} is a fraction in [0, 1], got {value!r}")
    return number


def _load_baseline(baseline: Baseline | str | os.PathLike[str] | None) -> Baseline | None:
    from pytest_robust.baseline import Baseline

    if baseline is None or isinstance(baseline, Baseline):
        return baseline
    if isinstance(baseline, (str, os.PathLike)):
        return Baseline.load(baseline)
    raise RobustConfigError(f"baseline must be a Baseline or the path of a baseline file, got {baseline!r}")


_CLINICAL = {
    "min_sensitivity": ("robust sensitivity", "positive"),
    "min_specificity": ("robust specificity", "negative"),
}


def _clinical_parts(policy: Policy, evaluation: EvalResult, required: dict[str, float]) -> list[Verdict]:
    """The clinical requirements, each decided by ``policy`` on the samples it concerns."""
    pos = evaluation.positive_label
    name = evaluation.clinical.positive_class
    positives = [i for i, y in enumerate(evaluation.labels) if y == pos]
    negatives = [i for i, y in enumerate(evaluation.labels) if y != pos]
    parts = []
    for key, value in required.items():
        if key == "max_flip_rate":
            caught = [i for i in positives if evaluation.clean_correct[i]]
            _need(caught, f"max_flip_rate needs {name} samples the model catches on clean inputs", evaluation)
            sub = evaluation.restrict(caught)
            v = policy.decide(sub, 1 - value)
            k = len(caught) - sub.n_robust
            rate = k / len(caught)
            lo, hi = v.interval
            rel = "<=" if v.passed else ">"
            parts.append(
                replace(
                    v,
                    statistic=f"flip rate ({name} -> other)",
                    measured=rate,
                    required=value,
                    interval=(1 - hi, 1 - lo),
                    reason=f"flip rate {rate:.3f} ({k}/{len(caught)} caught {name} samples turned negative) "
                    f"{rel} allowed {value:.3f} ({v.policy}: {v.reason})",
                )
            )
            continue
        statistic, side = _CLINICAL[key]
        index = positives if side == "positive" else negatives
        what = name if side == "positive" else f"not {name}"
        _need(index, f"{key} needs {side} samples ({what})", evaluation)
        v = policy.decide(evaluation.restrict(index), value)
        reason = f"on {len(index)} {side} samples, {v.reason.replace('robust accuracy', statistic)}"
        parts.append(replace(v, statistic=statistic, reason=reason))
    return parts


def _need(index: list[int], what: str, evaluation: EvalResult) -> None:
    if not index:
        raise RobustDataError(f"{what}, and the {evaluation.n} evaluated samples have none")


def combine(parts: list[Verdict]) -> Verdict:
    """One verdict for a gate's requirements: it passes when each passes; every part is kept."""
    if len(parts) == 1:
        return parts[0]
    failed = [p for p in parts if not p.passed]
    policies = list(dict.fromkeys(p.policy for p in parts))
    main = parts[0]
    return replace(
        main,
        passed=not failed,
        policy=" + ".join(policies),
        reason="; ".join(f"{p.statistic}: {p.reason}" for p in (failed or parts)),
        parts=tuple(parts),
    )


def judge(verdict: Verdict, evaluation: EvalResult, mode: str) -> Verdict:
    """Apply the soundness policy to a policy's verdict: ``strict`` fails on any failed check and on
    a degenerate model (:mod:`pytest_robust.degeneracy`: the robust accuracy of a model that almost
    never predicts a class measures the class balance); ``warn`` keeps the policy's decision and
    marks the verdict."""
    failed = tuple(c.name for c in evaluation.failed_checks)
    sound = not failed
    degenerate = evaluation.degeneracy.degenerate
    passed = verdict.passed and ((sound and not degenerate) or mode == "warn")
    return replace(
        verdict,
        passed=passed,
        sound=sound,
        soundness=mode,
        failed_checks=failed,
        degenerate=degenerate,
        requirement_passed=verdict.passed,
    )
