"""Gate policies: how a measured robustness number becomes a pass or a fail, with its uncertainty.

Every policy returns a :class:`Verdict` that names the policy, the statistic, the measured value,
its confidence interval and the reason. Threshold policies implement ``decide(result, min_acc)``
(:class:`PointEstimate`, the study's practice; :class:`LowerConfidenceBound`; :class:`Sequential`);
:class:`NonInferiority` compares a candidate with the stored baseline of the accepted model,
sample by sample.

Pure: scipy for the statistics, no torch, no pytest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pytest_robust.errors import RobustConfigError

if TYPE_CHECKING:
    from pytest_robust.baseline import Comparison
    from pytest_robust.evaluate import EvalResult


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
    #: the model is degenerate (it almost never predicts some class of the data:
    #: :mod:`pytest_robust.degeneracy`); judged with the soundness policy: ``strict`` fails the gate
    degenerate: bool = False
    #: the policy's own decision on the numbers, before the soundness policy judged it (None: not
    #: judged); kept for the failure message, not recorded
    requirement_passed: bool | None = field(default=None, compare=False)
    #: every requirement of the gate decided on its own (robust accuracy, clinical numbers, the
    #: baseline comparison); empty for a single-requirement verdict. ``passed`` is their conjunction.
    parts: tuple[Verdict, ...] = ()
    #: what a policy measured besides the statistic (samples used, discordant counts, ...)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``pass``, ``fail`` or ``unsound`` (a failed check, whatever the gate decided). A degenerate
        model's gate is ``fail`` under ``strict`` and ``pass`` under ``warn``: see ``degenerate``."""
        if not self.sound:
            return "unsound"
        return "pass" if self.passed else "fail"

    def label(self) -> str:
        """PASS, FAIL, UNSOUND, DEGENERATE, or either with "(passed: soundness=warn)"."""
        if not self.sound:
            return "UNSOUND (passed: soundness=warn)" if self.passed else "UNSOUND"
        if self.degenerate:
            return "DEGENERATE (passed: soundness=warn)" if self.passed else "DEGENERATE"
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
            "degenerate": self.degenerate,
            "parts": [p.to_json() for p in self.parts],
            "details": self.details,
        }

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> Verdict:
        return cls(
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
            degenerate=bool(v.get("degenerate", False)),
            parts=tuple(cls.from_json(p) for p in v.get("parts", ())),
            details=dict(v.get("details", {})),
        )


def relation(statistic: str) -> str:
    """How a requirement on ``statistic`` compares: a flip rate is an upper limit (``<=``), every
    other statistic a lower one (``>=``)."""
    return "<=" if statistic.startswith("flip rate") else ">="


def compares_with_baseline(details: dict[str, Any]) -> bool:
    """Whether a verdict's ``details`` are those of a baseline comparison (``Comparison.summary``)."""
    return "baseline_robust_acc" in details


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


def _confidence(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) < 1:
        raise RobustConfigError(f"{what}: confidence must be in (0, 1), e.g. 0.95, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class NonInferiority:
    """Pass when the candidate is credibly no more than ``margin`` less robust than the baseline.

    Uses the pairing: only the discordant samples (robust in one model, broken in the other) carry
    information about the difference ``delta = acc(candidate) - acc(baseline) = pi01 - pi10``
    (``pi10``: the rate of newly broken samples, ``pi01``: newly robust). The test of
    "the candidate is worse by ``margin`` or more" is exact and unconditional
    (:mod:`pytest_robust.paired`: a score statistic on the discordant counts, its p-value maximised
    over every discordant rate the null allows), so the probability of passing a candidate whose
    true difference is ``-margin`` or worse is at most ``1 - confidence`` (tested by simulation).
    It passes when the test rejects at the margin and the exact lower confidence bound of the
    difference is above ``-margin``. The burden of proof is on the candidate: too few samples to
    show non-inferiority is a fail that says so, never a pass. A candidate that is the same model
    as the baseline (same weights, structure and outputs) with the same per-sample outcomes passes
    without statistics: the difference is zero by construction.
    """

    margin: float = 0.02
    confidence: float = 0.95

    def __post_init__(self) -> None:
        m = self.margin
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m < 1:
            raise RobustConfigError(f"NonInferiority: margin must be in [0, 1), e.g. 0.02, got {m!r}")
        _confidence(self.confidence, "NonInferiority")

    @property
    def name(self) -> str:
        return f"non-inferiority(margin={self.margin:g}, confidence={self.confidence:g})"

    def bounds(self, newly_robust: int, newly_broken: int, n: int) -> tuple[float, float]:
        """Exact lower and upper bound of ``delta``, each one-sided at level ``confidence``."""
        from pytest_robust import paired

        alpha = 1 - self.confidence
        return (
            paired.lower_bound(newly_broken, newly_robust, n, alpha),
            paired.upper_bound(newly_broken, newly_robust, n, alpha),
        )

    def p_value(self, newly_robust: int, newly_broken: int, n: int) -> float:
        """Exact p-value of "the candidate is worse by ``margin`` or more"."""
        from pytest_robust import paired

        return paired.p_value(newly_broken, newly_robust, n, self.margin)

    def compare(self, comparison: Comparison) -> Verdict:
        c = comparison
        delta = c.candidate_acc - c.baseline_acc
        level = f"{self.confidence:.0%}"
        if c.same_model and c.newly_broken == 0 and c.newly_robust == 0:
            lower = upper = 0.0
            passed = True
            why = "the same model as the baseline (weights, structure, outputs), identical outcomes"
        else:
            lower, upper = self.bounds(c.newly_robust, c.newly_broken, c.n)
            p = self.p_value(c.newly_robust, c.newly_broken, c.n)
            passed = p <= 1 - self.confidence and lower >= -self.margin
            if passed:
                why = (
                    f"the {level} lower bound of the difference {lower:+.3f} >= -{self.margin:g} "
                    f"(exact test p={p:.3g})"
                )
            elif upper < -self.margin:
                why = (
                    f"a credible regression: even the {level} upper bound of the difference "
                    f"{upper:+.3f} is below -{self.margin:g}"
                )
            else:
                why = (
                    f"not shown to be non-inferior: the {level} lower bound of the difference "
                    f"{lower:+.3f}, exact test p={p:.3g} (needs >= -{self.margin:g} and p <= "
                    f"{1 - self.confidence:.2g}: the data cannot exclude a loss larger than the margin; "
                    f"more samples or a wider margin decide it)"
                )
        head = (
            f"robust accuracy {c.candidate_acc:.3f} vs baseline {c.baseline_acc:.3f} (difference "
            f"{delta:+.3f}; {c.newly_broken} newly broken, {c.newly_robust} newly robust of n={c.n}): {why}"
        )
        return Verdict(
            passed=passed,
            policy=self.name,
            statistic="robust accuracy difference vs baseline",
            measured=delta,
            required=-self.margin,
            interval=(lower, upper),
            confidence=self.confidence,
            reason=head,
            details=c.summary(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRule:
    """When a :class:`Sequential` gate may stop: called with the robust outcomes so far."""

    required: float
    confidence: float
    check_every: int
    horizon: int | None

    @property
    def key(self) -> str:
        """Identifies the rule (the plugin's memo keys evaluations on it)."""
        return f"sequential:{self.required!r}:{self.confidence!r}:{self.check_every}:{self.horizon}"

    def __call__(self, outcomes: Sequence[bool]) -> bool:
        from pytest_robust.sequential import sequential_decision

        state = sequential_decision(
            list(outcomes), self.required, self.confidence, check_every=self.check_every, horizon=self.horizon
        )
        return state.decided


@dataclass(frozen=True, slots=True, kw_only=True)
class Sequential:
    """Evaluate in a random order, a batch at a time; stop once the robust accuracy is clearly decided.

    The decision comes from an anytime-valid betting confidence sequence
    (:mod:`pytest_robust.sequential`, Waudby-Smith & Ramdas): the gate passes as soon as the whole
    sequence lies above ``min_acc``, fails as soon as it lies below, and fails as *inconclusive*
    when the samples run out first (never a false pass). Because the sequence is valid at every
    sample size at once, looking after every batch does not inflate the error: a false pass has
    probability at most ``(1 - confidence) / 2`` (tested by simulation). The bets are tuned for
    half the sample budget (``horizon``), which made 5-point margins decidable with a third of
    2000 samples in simulation (BENCHMARKS.md). The verdict reports the samples used.
    """

    confidence: float = 0.95
    #: samples per look (the evaluation's batch size is capped at this)
    batch: int = 32

    def __post_init__(self) -> None:
        _confidence(self.confidence, "Sequential")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise RobustConfigError(f"Sequential: batch must be a positive integer, got {self.batch!r}")

    @property
    def name(self) -> str:
        return f"sequential(confidence={self.confidence:g})"

    def stop_rule(self, min_acc: float, available: int) -> StopRule:
        return StopRule(
            required=min_acc,
            confidence=self.confidence,
            check_every=self.batch,
            horizon=max(1, available // 2),
        )

    def decide(self, result: EvalResult, min_acc: float) -> Verdict:
        from pytest_robust.sequential import sequential_decision

        available = int(result.data.get("available", result.n))
        rule = self.stop_rule(min_acc, available)
        state = sequential_decision(
            list(result.robust_correct),
            min_acc,
            self.confidence,
            check_every=self.batch,
            horizon=rule.horizon,
        )
        lo, hi = state.lower, state.upper
        used = f"after {result.n} of {available} samples"
        cs = f"the {self.confidence:.0%} confidence sequence [{lo:.3f}, {hi:.3f}]"
        if state.status == "pass":
            reason = f"{cs} is above {min_acc:.3f} {used}"
        elif state.status == "fail":
            reason = f"{cs} is below {min_acc:.3f} {used}"
        else:
            reason = (
                f"inconclusive {used}: {cs} still contains {min_acc:.3f}, so the gate fails (never a "
                "false pass); more samples decide it"
            )
        return Verdict(
            passed=state.status == "pass",
            policy=self.name,
            statistic="robust accuracy",
            measured=result.robust_acc,
            required=min_acc,
            interval=(lo, hi),
            confidence=self.confidence,
            reason=reason,
            details={
                "used": result.n,
                "available": available,
                "sequential": state.status,
                "horizon": rule.horizon,
            },
        )
