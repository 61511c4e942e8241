"""The robustness gate: validate the request, evaluate, decide with a policy, explain.

``assert_robust`` is the public entry point (the fixture of the same name binds it to a test).
The decision on the number is delegated to a :class:`Policy`; the soundness checks of the
evaluation (:mod:`pytest_robust.soundness`) then decide whether that number may be trusted. Under
the default ``soundness="strict"`` a failed check makes the verdict UNSOUND and the gate fails
(:class:`UnsoundEvaluation`) whatever the number; under ``"warn"`` the gate follows the policy but
the result is marked unsound everywhere it is shown.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pytest_robust.errors import RobustConfigError, RobustError
from pytest_robust.threat import Norm, ThreatModel, format_eps

if TYPE_CHECKING:
    from torch import nn

    from pytest_robust.attacks import Attack
    from pytest_robust.data.dataset import ImageDataset
    from pytest_robust.evaluate import EvalResult
    from pytest_robust.soundness import SoundnessConfig

SCHEMA_VERSION = 1


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
    if isinstance(min_acc, bool) or not isinstance(min_acc, (int, float)):
        raise RobustConfigError(f"min_acc must be a number in [0, 1], got {min_acc!r}")
    value = float(min_acc)
    if not math.isfinite(value) or not 0 <= value <= 1:
        hint = f" Did you mean min_acc={value / 100:g} ({value:g}%)?" if 1 < value <= 100 else ""
        raise RobustConfigError(f"min_acc is a fraction in [0, 1], got {min_acc!r}.{hint}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """A policy's decision: pass or fail, on which statistic, and why."""

    passed: bool
    policy: str
    statistic: str
    measured: float
    required: float
    interval: tuple[float, float]
    confidence: float
    reason: str
    #: whether every soundness check passed
    sound: bool = True
    #: the soundness policy that made the final decision: ``strict`` or ``warn``
    soundness: str = "strict"
    #: names of the failed soundness checks
    failed_checks: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """``pass``, ``fail`` or ``unsound`` (a failed check, whatever the gate decided)."""
        if not self.sound:
            return "unsound"
        return "pass" if self.passed else "fail"

    def label(self) -> str:
        """PASS, FAIL, UNSOUND, or UNSOUND (passed: soundness=warn)."""
        if not self.sound:
            return "UNSOUND (passed: soundness=warn)" if self.passed else "UNSOUND"
        return "PASS" if self.passed else "FAIL"

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "status": self.status,
            "policy": self.policy,
            "statistic": self.statistic,
            "measured": self.measured,
            "required": self.required,
            "interval": list(self.interval),
            "confidence": self.confidence,
            "reason": self.reason,
            "sound": self.sound,
            "soundness": self.soundness,
            "failed_checks": list(self.failed_checks),
        }


@runtime_checkable
class Policy(Protocol):
    """Decides whether an evaluation meets a required robust accuracy."""

    def decide(self, result: EvalResult, min_acc: float) -> Verdict: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PointEstimate:
    """Pass when the measured robust accuracy is at least ``min_acc`` (the study's practice).

    The Clopper–Pearson interval is reported alongside, so a reader sees how much the point
    estimate can move with the sample size.
    """

    confidence: float = 0.95

    def decide(self, result: EvalResult, min_acc: float) -> Verdict:
        from pytest_robust.stats import proportion_ci

        ci = proportion_ci(result.n_robust, result.n, self.confidence)
        passed = result.robust_acc >= min_acc
        rel = ">=" if passed else "<"
        return Verdict(
            passed=passed,
            policy="point-estimate",
            statistic="robust accuracy",
            measured=result.robust_acc,
            required=min_acc,
            interval=ci,
            confidence=self.confidence,
            reason=f"robust accuracy {result.robust_acc:.3f} {rel} required {min_acc:.3f}",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LowerConfidenceBound:
    """Pass only when the lower end of the exact confidence interval is at least ``min_acc``.

    Stricter than :class:`PointEstimate`: a small sample that happens to score high does not pass.
    """

    confidence: float = 0.95

    def decide(self, result: EvalResult, min_acc: float) -> Verdict:
        from pytest_robust.stats import proportion_ci

        ci = proportion_ci(result.n_robust, result.n, self.confidence)
        passed = ci[0] >= min_acc
        rel = ">=" if passed else "<"
        return Verdict(
            passed=passed,
            policy=f"lower-confidence-bound({self.confidence:g})",
            statistic="robust accuracy lower bound",
            measured=ci[0],
            required=min_acc,
            interval=ci,
            confidence=self.confidence,
            reason=(
                f"{self.confidence:.0%} lower bound of robust accuracy {ci[0]:.3f} {rel} required "
                f"{min_acc:.3f} (point estimate {result.robust_acc:.3f}, n={result.n})"
            ),
        )


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
            "schema": SCHEMA_VERSION,
            "min_acc": self.min_acc,
            "verdict": self.verdict.to_json(),
            "evaluation": self.evaluation.to_json(),
            "context": self.context,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RobustResult:
        from pytest_robust.evaluate import EvalResult

        v = d["verdict"]
        verdict = Verdict(
            passed=bool(v["passed"]),
            policy=v["policy"],
            statistic=v["statistic"],
            measured=float(v["measured"]),
            required=float(v["required"]),
            interval=(float(v["interval"][0]), float(v["interval"][1])),
            confidence=float(v["confidence"]),
            reason=v["reason"],
            sound=bool(v.get("sound", True)),
            soundness=str(v.get("soundness", "strict")),
            failed_checks=tuple(str(c) for c in v.get("failed_checks", ())),
        )
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
        lines = []
        if not vd.sound:
            failed = ev.failed_checks
            verdict = ("the gate cannot pass" if vd.soundness == "strict"
                       else "passed only because soundness=warn")
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
        else:
            lines.append(f"robustness gate {head}: {vd.reason}")
        lines += [
            f"  threat model    {ev.threat.norm.value} eps={format_eps(ev.threat.eps)} ({ev.threat.eps:.6g})",
            f"  attack          {ev.attack_description}",
            f"  robust accuracy {ev.robust_acc:.3f} ({ev.n_robust}/{ev.n}), "
            f"{vd.confidence:.0%} CI [{lo:.3f}, {hi:.3f}]",
            f"  clean accuracy  {ev.clean_acc:.3f} ({ev.n_clean_correct}/{ev.n})",
            f"  required        {vd.statistic} >= {self.min_acc:.3f} ({vd.policy})",
            f"  data            {data.get('name')} ({kind}), n={ev.n}, "
            f"{'x'.join(str(s) for s in data.get('shape', []))}",
            f"  device, seed    {ev.device}, seed={ev.seed}",
        ]
        if "profile" in self.context:
            lines.append(f"  profile         {self.context['profile']}")
        if ev.checks:
            lines.append("  soundness       " + ", ".join(f"{c.name} {c.status}" for c in ev.checks)
                         + f" (policy {vd.soundness})")
        if vd.sound and not vd.passed:
            lines.append(
                "  to fix: train for robustness (e.g. PGD adversarial training), or lower the "
                "requirement deliberately; a larger n narrows the interval"
            )
        return "\n".join(lines)


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
    policy: Policy | None = None,
    batch_size: int = 128,
    context: dict[str, Any] | None = None,
    record: Callable[[RobustResult], None] | None = None,
    progress: bool | None = None,
    examples: int = 0,
    evaluator: Callable[..., EvalResult] | None = None,
    soundness: str = "strict",
    randomized: bool = False,
    checks: SoundnessConfig | None = None,
) -> RobustResult:
    """Evaluate ``model`` under ``attack`` at ``eps`` and fail unless the policy is met.

    ``data`` defaults to the embedded synthetic test set (256 images at 32 px). ``n`` keeps the
    first ``n`` samples. Returns a :class:`RobustResult`; raises :class:`RobustnessFailure`
    (an ``AssertionError``) with a reviewer-readable message when the requirement is not met.
    ``record`` is called with the result before the decision is raised (the fixture uses it to
    attach the result to the test report). ``progress``: a tqdm bar per evaluation (None: only
    when stderr is a terminal). ``examples``: keep that many adversarial examples in the result
    (for a report's gallery). ``evaluator``: called instead of :func:`~pytest_robust.evaluate.evaluate`
    with the same arguments (the plugin passes a memoising one). ``attack`` may be a list of
    attacks: the pointwise worst case, run cheapest first (:class:`~pytest_robust.attacks.Ensemble`).

    ``soundness``: ``strict`` (default) fails the gate with :class:`UnsoundEvaluation` when a
    soundness check fails; ``warn`` lets the policy decide but marks the result unsound.
    ``randomized=True`` declares a random model: it is evaluated as the mean of several draws
    with expectation-over-transformation gradients. ``checks``: the checks' thresholds.
    """
    __tracebackhide__ = True
    norm_ = Norm.coerce(norm)
    threat = ThreatModel(norm=norm_, eps=eps)
    required = validate_min_acc(min_acc)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise RobustConfigError(f"n must be a positive integer (or None for all samples), got {n!r}")
    if policy is not None and not isinstance(policy, Policy):
        raise RobustConfigError(f"policy must have a decide(result, min_acc) method, got {policy!r}")
    from pytest_robust.soundness import SoundnessConfig, check_mode

    mode = check_mode(soundness)
    if not isinstance(randomized, bool):
        raise RobustConfigError(f"randomized must be True or False, got {randomized!r}")
    if checks is not None and not isinstance(checks, SoundnessConfig):
        raise RobustConfigError(f"checks must be a SoundnessConfig, got {checks!r}")
    base = checks or SoundnessConfig()
    cfg = replace(base, randomized=randomized or base.randomized)

    from pytest_robust.attacks import coerce_attack
    from pytest_robust.evaluate import evaluate

    attack_ = coerce_attack(attack)
    if data is None:
        from pytest_robust.data.synthetic import generate_synthetic

        data = generate_synthetic(256, size=32, seed=seed, split="test")
    subset = data.subset(n, seed=seed)
    evaluation = (evaluator or evaluate)(
        model, subset, attack_, threat, device=device, seed=seed, batch_size=batch_size,
        progress=progress, examples=examples, soundness=cfg,
    )
    verdict = judge((policy or PointEstimate()).decide(evaluation, required), evaluation, mode)
    result = RobustResult(
        evaluation=evaluation, verdict=verdict, min_acc=required, context=dict(context or {})
    )
    if record is not None:
        record(result)
    if not verdict.passed:
        error = UnsoundEvaluation if not verdict.sound else RobustnessFailure
        raise error(result.explain(), result)
    return result


def judge(verdict: Verdict, evaluation: EvalResult, mode: str) -> Verdict:
    """Apply the soundness policy to a policy's verdict: strict fails on any failed check."""
    failed = tuple(c.name for c in evaluation.failed_checks)
    sound = not failed
    passed = verdict.passed and (sound or mode == "warn")
    return replace(verdict, passed=passed, sound=sound, soundness=mode, failed_checks=failed)
