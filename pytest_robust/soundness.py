"""Automated soundness checks: can this evaluation's number be trusted?

A robust accuracy is evidence only if the attack could have found adversarial examples had they
existed. These checks automate the checklist of Carlini et al. (2019, "On Evaluating Adversarial
Robustness", §4-5) and AutoAttack's own flags, and run with every evaluation:

==================  ===========================================================================
check               fails when
==================  ===========================================================================
gradient            the input gradient (margin loss) is zero or non-finite on more than
                    ``max_bad_gradient`` of the probed samples
gradient-direction  a small step along the input gradient raises the margin loss on fewer than
                    ``min_uphill`` of the probed samples (a wrong, reversed or shattered gradient)
saturation          the cross-entropy gradient is zero where the margin's is not (saturated or
                    rescaled logits) on more than ``max_bad_gradient``, and every gradient
                    attack of the evaluation ascends the cross-entropy
determinism         two forward passes on the same inputs disagree (a randomized model) and
                    the model was not declared ``randomized``
output-form         the outputs are probabilities (rows in [0, 1] summing to 1), not logits
batch-independence  a sample's output depends on the other samples of its batch (BatchNorm or
                    dropout in train mode, a model that ignores ``.eval()``)
unbounded           the evaluation's attack breaks fewer than ``min_unbounded_success`` of the
                    probed samples at each of 4x, 16x and 64x its eps (at most Linf 0.5)
black-box           the gradient-free Square attack breaks, at the same eps, samples the
                    evaluation's gradient attacks left robust (more than ``max_black_box_share``
                    of them and at least ``min_black_box_count``)
attack-order        in an ensemble, a later (stronger) attack misses samples an earlier one broke
autoattack-flags    the AutoAttack library's own checks warned (minus documented false alarms)
==================  ===========================================================================

Checks across evaluations (:func:`attack_order`, :func:`eps_monotonicity`) compare results the
caller already has (the benchmark suite uses them). Each check is a :class:`Check`: its name,
what it measured, the threshold, the outcome, why it matters and what to do.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_robust.errors import AttackUnavailableError, RobustConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pytest_robust.attacks.base import Attack, AttackOutcome
    from pytest_robust.evaluate import EvalResult
    from pytest_robust.threat import ThreatModel

PASS, FAIL, SKIP = "pass", "fail", "skip"
#: Every per-evaluation check, in the order results and reports list them.
CHECK_NAMES = (
    "gradient",
    "gradient-direction",
    "saturation",
    "determinism",
    "output-form",
    "batch-independence",
    "unbounded",
    "black-box",
    "attack-order",
    "autoattack-flags",
)
MODES = ("strict", "warn")

#: Library flags that are false for a known reason, with the reason (see :func:`filter_flags`).
KNOWN_FALSE_FLAGS = {
    "randomized": "the model is declared randomized and evaluated as the mean of its draws "
    "(expectation over transformation), which is what the flag asks for",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One named soundness check: what it measured, against which threshold, and the outcome."""

    name: str
    status: str
    summary: str
    measured: float | None = None
    threshold: float | None = None
    why: str = ""
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "measured": self.measured,
            "threshold": self.threshold,
            "why": self.why,
            "fix": self.fix,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Check:
        return cls(
            name=str(d["name"]),
            status=str(d["status"]),
            summary=str(d["summary"]),
            measured=None if d.get("measured") is None else float(d["measured"]),
            threshold=None if d.get("threshold") is None else float(d["threshold"]),
            why=str(d.get("why", "")),
            fix=str(d.get("fix", "")),
        )

    def line(self) -> str:
        return f"{self.name}: {self.status.upper()} - {self.summary}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SoundnessConfig:
    """Thresholds and probe sizes of the checks (the defaults are what the gate uses).

        ``randomized``: the model is declared random; it is evaluated as the mean of ``draws``
        forward passes (:class:`~pytest_robust.models.ExpectationModel`) and the determinism check
        passes. ``enabled=False`` runs no check (for measuring what the checks cost; the result records
    that none ran).
    """

    enabled: bool = True
    randomized: bool = False
    draws: int = 8
    probe_samples: int = 32
    direction_step: float = 1e-4
    min_uphill: float = 0.8
    attack_samples: int = 16
    unbounded_samples: int = 8
    black_box_queries: int = 20
    max_bad_gradient: float = 0.05
    output_tolerance: float = 1e-3
    unbounded_linf: float = 0.5
    unbounded_l2_fraction: float = 0.5
    min_unbounded_success: float = 0.9
    max_black_box_share: float = 0.02
    min_black_box_count: int = 3
    max_order_share: float = 0.10
    min_order_count: int = 3

    def __post_init__(self) -> None:
        if self.draws < 1:
            raise RobustConfigError(f"draws must be >= 1, got {self.draws}")
        for name in (
            "probe_samples",
            "attack_samples",
            "unbounded_samples",
            "black_box_queries",
            "min_black_box_count",
            "min_order_count",
        ):
            if getattr(self, name) < 1:
                raise RobustConfigError(f"soundness {name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "max_bad_gradient",
            "min_unbounded_success",
            "min_uphill",
            "direction_step",
            "max_black_box_share",
            "max_order_share",
            "unbounded_linf",
            "unbounded_l2_fraction",
        ):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise RobustConfigError(f"soundness {name} must be in [0, 1], got {value}")

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def check_mode(mode: str) -> str:
    value = str(mode).strip().lower()
    if value not in MODES:
        raise RobustConfigError(f"unknown soundness mode {mode!r}; valid: {', '.join(MODES)}")
    return value


# --- helpers ---------------------------------------------------------------------------------------


def spread(indices: Sequence[int], k: int) -> list[int]:
    """Up to ``k`` of ``indices``, evenly spaced (deterministic; both classes when sorted by batch)."""
    items = list(indices)
    if len(items) <= k:
        return items
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def uses_gradients(config: dict[str, Any]) -> bool:
    """Whether an attack configuration runs a gradient attack (unknown attacks: assumed to)."""
    name = config.get("name")
    if name == "ensemble":
        return any(uses_gradients(member) for member in config.get("attacks", []))
    if name == "none":
        return False
    if name == "autoattack":
        attacks = config.get("attacks")
        return attacks in ("auto", None) or any(a != "square" for a in attacks)
    return True


def gradient_losses(config: dict[str, Any]) -> set[str]:
    """The losses the gradient attacks of an attack configuration ascend (``ce``, ``margin``)."""
    name = config.get("name")
    if name == "ensemble":
        out: set[str] = set()
        for member in config.get("attacks", []):
            out |= gradient_losses(member)
        return out
    if name in ("fgsm", "pgd"):
        return {str(config.get("loss", "ce"))}
    if name == "apgd":  # DLR is, like the margin, a logit difference immune to saturation
        return {"margin" if config.get("loss") == "dlr" else str(config.get("loss", "ce"))}
    if name == "autoattack":
        attacks = config.get("attacks")
        gradient = {
            "apgd-ce": "ce",
            "apgd-dlr": "margin",
            "apgd-t": "margin",
            "fab": "margin",
            "fab-t": "margin",
        }
        if attacks == "auto" or attacks is None:
            return {"ce"}  # APGD-CE always runs; DLR-based attacks only with >= 3 classes
        return {gradient[a] for a in attacks if a in gradient}
    return set()


# --- checks of the model (run once per evaluation, on clean-correct samples) ---------------------------


def model_checks(
    raw: nn.Module,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    attack_config: dict[str, Any],
    cfg: SoundnessConfig,
) -> list[Check]:
    """Gradient health, saturation, determinism, output form, batch independence.

    ``raw`` is the user's model, ``model`` what is attacked (the expectation wrapper of a declared
    randomized model, else ``raw``); ``x``/``y`` are clean-correct samples (at most a probe's worth).
    """
    import torch

    from pytest_robust.attacks.base import attack_loss, forward_with_grad
    from pytest_robust.models import input_resolution
    from pytest_robust.threat import Norm

    checks: list[Check] = []
    n = x.shape[0]
    # a float16 / bfloat16 model rounds its inputs and outputs: steps and tolerances at least its resolution
    resolution = input_resolution(raw)
    if n == 0:
        return [
            Check(name=c, status=SKIP, summary="no clean-correct sample to probe")
            for c in ("gradient", "saturation", "determinism", "output-form", "batch-independence")
        ]
    if uses_gradients(attack_config):
        # gradient health and saturation: one forward, two gradients
        leaf, logits = forward_with_grad(model, x)
        with torch.enable_grad():
            margin = attack_loss(logits.float(), y, "margin")
            ce = attack_loss(logits.float(), y, "ce")
            (g_margin,) = torch.autograd.grad(margin.sum(), leaf, retain_graph=True, allow_unused=True)
            (g_ce,) = torch.autograd.grad(ce.sum(), leaf, allow_unused=True)
        g_margin = torch.zeros_like(x) if g_margin is None else g_margin.detach()
        g_ce = torch.zeros_like(x) if g_ce is None else g_ce.detach()
        tiny = 0.0 if threat.norm is Norm.LINF else 1e-12

        def bad(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            flat = g.flatten(1)
            nonfinite = ~torch.isfinite(flat).all(dim=1)
            small = flat.abs().amax(dim=1) <= tiny if tiny else (flat == 0).all(dim=1)
            zero = ~nonfinite & small
            return zero, nonfinite

        zero, nonfinite = bad(g_margin)
        n_bad = int((zero | nonfinite).sum())
        share = _share(n_bad, n)
        checks.append(
            Check(
                name="gradient",
                status=FAIL if share > cfg.max_bad_gradient else PASS,
                measured=share,
                threshold=cfg.max_bad_gradient,
                summary=f"{share:.1%} of {n} probed samples have a zero ({int(zero.sum())}) or "
                f"non-finite ({int(nonfinite.sum())}) input gradient (allowed <= {cfg.max_bad_gradient:.0%})",
                why="gradient attacks follow the input gradient; where it is zero or NaN they do not move, "
                "and the model looks robust without being robust (gradient masking: quantisation, rounding, "
                "non-differentiable or NaN-producing layers)",
                fix="give the non-differentiable step a differentiable approximation for evaluation "
                "(straight-through estimator / BPDA), remove the operation producing NaN gradients, or "
                "evaluate the undefended model",
            )
        )
        healthy = ~(zero | nonfinite)
        step = max(cfg.direction_step, resolution)
        checks.append(_direction_check(model, x, y, logits.detach(), g_margin, healthy, threat, cfg, step))
        ce_zero, ce_nonfinite = bad(g_ce)
        saturated = (ce_zero | ce_nonfinite) & ~(zero | nonfinite)
        sat_share = _share(int(saturated.sum()), n)
        losses = gradient_losses(attack_config)
        relevant = bool(losses) and losses <= {"ce"}
        checks.append(
            Check(
                name="saturation",
                status=FAIL if sat_share > cfg.max_bad_gradient and relevant else PASS,
                measured=sat_share,
                threshold=cfg.max_bad_gradient,
                summary=f"{sat_share:.1%} of {n} probed samples have a vanishing cross-entropy gradient "
                f"while the margin's is non-zero (saturated logits; allowed <= {cfg.max_bad_gradient:.0%})"
                + (
                    ""
                    if relevant
                    else "; not relevant: this evaluation's gradient attacks use a margin loss"
                    if losses
                    else "; not relevant: no gradient attack in this evaluation"
                ),
                why="with very large (rescaled, temperature-scaled) logits the softmax saturates in float32 "
                "and the cross-entropy gradient underflows to exactly zero: cross-entropy attacks never move",
                fix="return unscaled logits for evaluation, or attack with a scale-invariant margin loss "
                "(PGD(loss='margin')) alongside",
            )
        )
    else:
        with torch.no_grad():
            logits = model(x)
        checks += [
            Check(name=name, status=SKIP, summary="no gradient attack in this evaluation")
            for name in ("gradient", "saturation")
        ]
    # determinism: the same inputs twice more (the raw model; the first pass is the one above when
    # the model is not wrapped)
    with torch.no_grad():
        first = logits.detach().float() if raw is model else raw(x).float()
        outs = [first, raw(x).float()]
    scale = 1.0 + max(float(o.abs().max()) for o in outs)
    tolerance = max(cfg.output_tolerance, resolution)
    diff = max(float((outs[0] - o).abs().max()) for o in outs[1:])
    flips = max(int((outs[0].argmax(1) != o.argmax(1)).sum()) for o in outs[1:])
    random = diff > tolerance * scale or flips > 0
    if cfg.randomized:
        summary = (
            f"declared randomized: decisions are the mean of {cfg.draws} draws' probabilities, "
            f"gradients are expectations over the draws (measured spread {diff:.3g})"
        )
        status = PASS
    else:
        summary = (
            f"2 forward passes on {n} inputs differ by up to {diff:.3g} (tolerance "
            f"{tolerance:g} x {scale:.3g}), {flips} prediction(s) flipped"
        )
        status = FAIL if random else PASS
    checks.append(
        Check(
            name="determinism",
            status=status,
            measured=diff,
            threshold=tolerance * scale,
            summary=summary,
            why="a randomized model gives each attack step a different model: gradients of single draws "
            "are noise, and a lucky draw at evaluation time passes a gate the average model fails",
            fix="declare the randomness (assert_robust(..., randomized=True) or "
            "@pytest.mark.robust(randomized=True)): predictions then use the mean of several draws and the "
            "attacks use expectation over transformation; or remove the randomness at evaluation",
        )
    )
    # output form
    with torch.no_grad():
        out = outs[0]

        def unit(t: torch.Tensor) -> bool:
            return bool((t >= -1e-6).all() and (t <= 1 + 1e-6).all())

        probs = unit(out) and bool(((out.sum(dim=1) - 1).abs() < 1e-3).all())
        # a one-logit binary model is seen as [0, z]: a sigmoid probability there is a z in [0, 1]
        sigmoid = out.shape[1] == 2 and bool((out[:, 0] == 0).all()) and unit(out[:, 1])
    checks.append(
        Check(
            name="output-form",
            status=FAIL if probs or sigmoid else PASS,
            measured=float(probs or sigmoid),
            summary="the outputs are probabilities (each row in [0, 1], summing to 1)"
            if probs
            else "the single output looks like a sigmoid probability (in [0, 1] on every probed sample): "
            "read as the logit z, every one of them predicts the positive class"
            if sigmoid
            else "the outputs are logits (not a probability distribution per row)",
            why="attacks take a softmax of the output: on probabilities that squashes the signal and "
            "weakens the gradient (AutoAttack's flag 'the output is a probability distribution')",
            fix="return the logits (the output before softmax); log-probabilities also work; a binary "
            "model with one output returns its logit z (before the sigmoid)",
        )
    )
    # batch independence
    if cfg.randomized or n < 2:
        checks.append(
            Check(
                name="batch-independence",
                status=SKIP,
                summary="not checked for a declared randomized model"
                if cfg.randomized
                else "needs at least 2 samples",
            )
        )
    else:
        half = n // 2
        with torch.no_grad():
            parts = torch.cat([raw(x[:half]).float(), raw(x[half:]).float()])
        bdiff = float((parts - outs[1]).abs().max())
        training = sorted({type(m).__name__ for m in raw.modules() if m.training})
        dependent = bdiff > tolerance * scale
        checks.append(
            Check(
                name="batch-independence",
                status=FAIL if dependent else PASS,
                measured=bdiff,
                threshold=tolerance * scale,
                summary=f"outputs in a batch of {n} and in two batches of {half}/{n - half} differ by up "
                f"to {bdiff:.3g}"
                + (f"; modules still in train mode after .eval(): {', '.join(training)}" if training else ""),
                why="a sample's prediction must not depend on the other samples of its batch: the attack "
                "sees other batches than the clean pass (BatchNorm or dropout in train mode, a model whose "
                ".eval() is overridden)",
                fix="evaluate the model in eval mode (do not override train()/eval()); use running "
                "statistics in BatchNorm",
            )
        )
    return checks


def _direction_check(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    logits: torch.Tensor,
    grad: torch.Tensor,
    healthy: torch.Tensor,
    threat: ThreatModel,
    cfg: SoundnessConfig,
    step: float,
) -> Check:
    """A small step along the input gradient must increase the margin (first order): is it uphill?

    ``grad`` is the gradient of the margin loss, whose direction is the raw margin's; ``step`` is
    ``cfg.direction_step``, or the model's resolution when that is coarser (float16, bfloat16).
    """
    import torch

    from pytest_robust.attacks.base import logit_margin
    from pytest_robust.threat import Norm

    if cfg.randomized or not bool(healthy.any()):
        reason = (
            "not checked for a declared randomized model (two draws differ by more than a small step changes)"
            if cfg.randomized
            else "no finite, non-zero gradient to follow"
        )
        return Check(name="gradient-direction", status=SKIP, summary=reason)
    xs, ys, gs = x[healthy], y[healthy], torch.nan_to_num(grad[healthy])
    if threat.norm is Norm.LINF:
        direction = gs.sign()
    else:
        norms = gs.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (gs.dim() - 1)))
        direction = gs / norms * (xs[0].numel() ** 0.5)
    with torch.no_grad():
        after = logit_margin(model((xs + step * direction).clamp(0, 1)).float(), ys)
    uphill = after > logit_margin(logits[healthy].float(), ys)
    share = float(uphill.float().mean())
    m = int(healthy.sum())
    return Check(
        name="gradient-direction",
        status=FAIL if share < cfg.min_uphill else PASS,
        measured=share,
        threshold=cfg.min_uphill,
        summary=f"a step of {step:.3g} along the input gradient raised the logit margin on "
        f"{int(uphill.sum())}/{m} probed samples ({share:.0%}; required >= {cfg.min_uphill:.0%})",
        why="the gradient that attacks follow must point uphill; a gradient that is wrong (reversed, "
        "replaced by a surrogate, shattered by a non-smooth layer) steers every gradient attack away from "
        "the adversarial examples that exist",
        fix="find the layer whose backward pass does not match its forward pass (a custom autograd "
        "function, a detached or surrogate gradient) and evaluate with the true gradient, or a "
        "differentiable approximation that follows the forward pass (BPDA)",
    )


# --- checks of the attack (run once per evaluation) ------------------------------------------------------


def unbounded_ladder(threat: ThreatModel, shape: Sequence[int], cfg: SoundnessConfig) -> list[ThreatModel]:
    """The budgets the unbounded check tries: 4x, 16x and 64x the evaluation's eps, at most the cap.

    The cap (Linf 0.5; L2 a fraction of the image cube's diameter) lets an attacker move every
    image to mid-grey, so no classifier is robust there. Attacks with steps relative to eps take
    coarse steps at the cap, which is why the smaller budgets are tried first.
    """
    from pytest_robust.threat import Norm, ThreatModel

    if threat.norm is Norm.LINF:
        cap = cfg.unbounded_linf
    else:
        cap = cfg.unbounded_l2_fraction * math.sqrt(math.prod(shape))
    cap = max(cap, threat.eps)
    ladder = sorted({min(cap, threat.eps * k) for k in (4, 16, 64)} if threat.eps > 0 else {cap})
    return [ThreatModel(norm=threat.norm, eps=e) for e in ladder]


def unbounded_check(
    model: nn.Module,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    cfg: SoundnessConfig,
    seed: int,
) -> Check:
    """Run ``attack`` at growing budgets on ``x``: a working attack breaks (almost) every sample."""
    import torch

    from pytest_robust.attacks.base import run_attack
    from pytest_robust.perturbation import check_perturbation
    from pytest_robust.threat import format_eps

    if attack.name in ("none", "fgsm"):
        return Check(
            name="unbounded",
            status=SKIP,
            summary=f"not run for {attack.describe()} (a single step has no budget to spend); "
            "the model checks and the black-box check still apply",
        )
    n = x.shape[0]
    if n == 0:
        return Check(name="unbounded", status=SKIP, summary="no clean-correct sample to attack")
    from dataclasses import replace

    from pytest_robust.attacks.autoattack import AutoAttack

    if isinstance(attack, AutoAttack):  # its library's checks already ran with the evaluation
        attack = replace(attack, library_checks=False)
    tried: list[str] = []
    left = list(range(n))  # a sample broken at a smaller budget stays broken at a larger one
    big = threat
    for k, big in enumerate(unbounded_ladder(threat, x.shape[1:], cfg)):
        idx = torch.tensor(left, dtype=torch.long, device=x.device)
        generator = torch.Generator().manual_seed(seed + 1 + k)
        outcome = run_attack(attack, model, x[idx], y[idx], big, generator=generator)
        check_perturbation(outcome.x_adv, x[idx], big, attack=attack.describe())
        with torch.no_grad():
            held = (model(outcome.x_adv).argmax(dim=1) == y[idx]).tolist()
        left = [i for i, h in zip(left, held, strict=True) if h]
        tried.append(f"{n - len(left)}/{n} by {big.norm.value} eps={format_eps(big.eps)}")
        if _share(n - len(left), n) >= cfg.min_unbounded_success:
            break
    success = _share(n - len(left), n)
    return Check(
        name="unbounded",
        status=FAIL if success < cfg.min_unbounded_success else PASS,
        measured=success,
        threshold=cfg.min_unbounded_success,
        summary="the attack broke " + ", ".join(tried) + " of the probed samples (each budget attacks "
        f"what the smaller ones left; required >= {cfg.min_unbounded_success:.0%} by the largest)",
        why="with an unbounded budget any input can be turned into any other, so a working attack "
        "breaks nearly every sample; one that cannot is not measuring this model (masked or "
        "non-differentiable gradients, a too-small budget, a degenerate model that never predicts "
        "the other class)",
        fix="check the gradient (see the other checks), give the attack more steps or restarts, or "
        "use a margin loss; a model that predicts one class everywhere cannot be gated on robustness",
    )


def black_box_check(
    model: nn.Module,
    attack: Attack,
    outcome: AttackOutcome | None,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    robust: Sequence[bool],
    threat: ThreatModel,
    cfg: SoundnessConfig,
    seed: int,
) -> Check:
    """Does a gradient-free attack break samples the gradient attacks left robust?

    ``x_all``/``y_all``: the attacked (clean-correct) samples; ``robust``: whether each stayed robust.
    When the evaluation itself ran a black-box part (Square inside AutoAttack), its own breakdown
    is used. Otherwise Square runs on up to ``attack_samples`` of the samples the gradient attack
    left robust (evenly spread) and the check counts those it breaks.
    """
    import torch

    from pytest_robust.threat import format_eps

    why = (
        "a gradient-free attack does not care about masked gradients; when it succeeds where the "
        "gradient attacks failed, the gradient attacks were not working (Carlini et al. 2019; "
        "AutoAttack's 'Square has decreased the robust accuracy' flag)"
    )
    fix = (
        "treat the gradient attacks' number as an upper bound only: find what masks the gradient "
        "(see the gradient and saturation checks), run AutoAttack, or an adaptive attack"
    )
    if attack.name == "none":
        return Check(name="black-box", status=SKIP, summary="no attack")
    parts = outcome.parts if outcome is not None else ()
    black = {p["name"] for p in parts if p.get("black_box")}
    if black and outcome is not None and outcome.broken_by:
        by_black = sum(1 for b in outcome.broken_by if b in black)
        reached = by_black + sum(1 for r in robust if r)
        share = _share(by_black, reached)
        failed = by_black >= cfg.min_black_box_count and share > cfg.max_black_box_share
        names = ", ".join(sorted(black))
        return Check(
            name="black-box",
            status=FAIL if failed else PASS,
            measured=share,
            threshold=cfg.max_black_box_share,
            summary=f"{names} broke {by_black} of the {reached} samples the gradient attacks left robust "
            f"({share:.1%}; allowed <= {cfg.max_black_box_share:.0%} or fewer than "
            f"{cfg.min_black_box_count})",
            why=why,
            fix=fix,
        )
    if threat.norm.value == "L2" and min(x_all.shape[-2:]) < 5:
        return Check(name="black-box", status=SKIP, summary="Square L2 needs images of 5x5 pixels or more")
    survivors = spread([i for i, r in enumerate(robust) if r], cfg.attack_samples)
    if not survivors:
        return Check(
            name="black-box",
            status=PASS,
            measured=0.0,
            threshold=cfg.max_black_box_share,
            summary="the gradient attack left no sample robust: nothing for a black-box attack to find",
        )
    from pytest_robust.attacks.autoattack import AutoAttack
    from pytest_robust.attacks.base import run_attack

    square = AutoAttack(attacks=("square",), square_queries=cfg.black_box_queries, library_checks=False)
    idx = torch.tensor(survivors, dtype=torch.long, device=x_all.device)
    x, y = x_all[idx], y_all[idx]
    try:
        result = run_attack(square, model, x, y, threat, generator=torch.Generator().manual_seed(seed + 2))
    except AttackUnavailableError as exc:
        return Check(name="black-box", status=SKIP, summary=f"Square unavailable: {exc}")
    with torch.no_grad():
        broken = int((model(result.x_adv).argmax(dim=1) != y).sum())
    share = _share(broken, len(survivors))
    failed = broken >= cfg.min_black_box_count and share > cfg.max_black_box_share
    return Check(
        name="black-box",
        status=FAIL if failed else PASS,
        measured=share,
        threshold=cfg.max_black_box_share,
        summary=f"Square ({cfg.black_box_queries} queries) at eps={format_eps(threat.eps)} broke {broken} of "
        f"{len(survivors)} samples the gradient attack left robust ({share:.1%}; allowed <= "
        f"{cfg.max_black_box_share:.0%} or fewer than {cfg.min_black_box_count})",
        why=why,
        fix=fix,
    )


def ensemble_order_check(
    model: nn.Module,
    attack: Attack,
    outcome: AttackOutcome | None,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    threat: ThreatModel,
    cfg: SoundnessConfig,
    seed: int,
) -> Check | None:
    """In an ensemble, give each later attack the samples an earlier one broke: it should break them too."""
    import torch

    from pytest_robust.attacks.base import run_attack
    from pytest_robust.attacks.ensemble import Ensemble

    if not isinstance(attack, Ensemble) or outcome is None or not outcome.broken_by:
        return None
    labels = attack.labels()
    missed: list[str] = []
    tried = failed_total = 0
    generator = torch.Generator().manual_seed(seed + 3)
    for i, j in itertools.combinations(range(len(labels)), 2):
        weaker, stronger = labels[i], attack.attacks[j]
        if stronger.name in ("none",):
            continue
        broken = spread(
            [k for k, b in enumerate(outcome.broken_by) if b.split(":")[0] == weaker], cfg.attack_samples
        )
        if not broken:
            continue
        idx = torch.tensor(broken, device=x_all.device)
        probe = run_attack(stronger, model, x_all[idx], y_all[idx], threat, generator=generator)
        with torch.no_grad():
            held = int((model(probe.x_adv).argmax(dim=1) == y_all[idx]).sum())
        tried += len(broken)
        failed_total += held
        if held:
            missed.append(f"{labels[j]} missed {held}/{len(broken)} broken by {weaker}")
    share = _share(failed_total, tried)
    failed = failed_total >= cfg.min_order_count and share > cfg.max_order_share
    return Check(
        name="attack-order",
        status=FAIL if failed else PASS,
        measured=share,
        threshold=cfg.max_order_share,
        summary=(
            f"later attacks re-run on {tried} samples earlier ones broke missed {failed_total} "
            f"({share:.1%}; allowed <= {cfg.max_order_share:.0%} or fewer than {cfg.min_order_count})"
            + (": " + "; ".join(missed) if missed else "")
        )
        if tried
        else "no sample broken by an earlier attack to re-run",
        why="a stronger attack that misses what a weaker one finds is not working on this model "
        "(gradient masking or a broken budget); the ensemble's worst case hides it, this check does not",
        fix="order the ensemble from weak to strong and find out why the stronger attack misses "
        "(step size, loss, restarts)",
    )


def filter_flags(flags: Sequence[str], *, randomized: bool) -> tuple[list[str], list[str]]:
    """Split library flags into (kept, dismissed-with-reason); see :data:`KNOWN_FALSE_FLAGS`."""
    kept, dismissed = [], []
    for flag in flags:
        if randomized and "randomized defense" in flag:
            dismissed.append(f"{flag} [dismissed: {KNOWN_FALSE_FLAGS['randomized']}]")
        else:
            kept.append(flag)
    return kept, dismissed


def flags_check(outcome: AttackOutcome | None, attack: Attack, *, randomized: bool) -> Check:
    from pytest_robust.attacks.autoattack import MIN_CLASSES  # the library's sub-attacks

    if outcome is None or not any(p["name"].split(":")[-1] in MIN_CLASSES for p in outcome.parts):
        return Check(name="autoattack-flags", status=SKIP, summary="AutoAttack did not run")
    kept, dismissed = filter_flags(outcome.flags, randomized=randomized)
    text = "; ".join(kept) if kept else "the library's checks raised no flag"
    if dismissed:
        text += " (" + "; ".join(dismissed) + ")"
    return Check(
        name="autoattack-flags",
        status=FAIL if kept else PASS,
        measured=float(len(kept)),
        threshold=0.0,
        summary=text,
        why="AutoAttack's own checks (randomness, probability outputs, dynamic defences, zero gradients) "
        "each name a way its numbers can be wrong (its flags_doc.md)",
        fix="follow the flag: declare randomness, return logits, or use an adaptive attack",
    )


# --- checks across evaluations --------------------------------------------------------------------------


def attack_order(
    weaker: EvalResult, stronger: EvalResult, *, max_share: float = 0.10, min_count: int = 3
) -> Check:
    """Per sample: broken by ``weaker`` but robust under ``stronger`` counts against ``stronger``."""
    _same_samples(weaker, stronger)
    broken_weak = [c and not r for c, r in zip(weaker.clean_correct, weaker.robust_correct, strict=True)]
    missed = sum(1 for b, r in zip(broken_weak, stronger.robust_correct, strict=True) if b and r)
    total = sum(broken_weak)
    share = _share(missed, total)
    failed = missed >= min_count and share > max_share
    return Check(
        name="attack-order",
        status=FAIL if failed else PASS,
        measured=share,
        threshold=max_share,
        summary=f"{stronger.attack_description} left {missed} of the {total} samples "
        f"{weaker.attack_description} broke robust ({share:.1%}; allowed <= {max_share:.0%} or fewer "
        f"than {min_count})",
        why="a stronger attack that misses what a weaker one finds is not working on this model",
        fix="report the pointwise worst case over both (worst_case) and find why the stronger misses",
    )


def eps_monotonicity(results: Sequence[EvalResult], *, slack: float = 0.0) -> Check:
    """Robust accuracy of one attack must not rise with eps (by more than ``slack``)."""
    from pytest_robust.threat import format_eps

    ordered = sorted(results, key=lambda r: r.threat.eps)
    for a, b in itertools.pairwise(ordered):
        _same_samples(a, b)
    rises = [(a, b) for a, b in itertools.pairwise(ordered) if b.robust_acc > a.robust_acc + slack]
    worst = max((b.robust_acc - a.robust_acc for a, b in itertools.pairwise(ordered)), default=0.0)
    curve = ", ".join(f"{r.robust_acc:.3f} at {format_eps(r.threat.eps)}" for r in ordered)
    return Check(
        name="eps-monotonicity",
        status=FAIL if rises else PASS,
        measured=worst,
        threshold=slack,
        summary=f"robust accuracy vs eps: {curve}"
        + (
            "; rises: "
            + ", ".join(f"{format_eps(a.threat.eps)} -> {format_eps(b.threat.eps)}" for a, b in rises)
            if rises
            else ""
        ),
        why="a larger budget contains every smaller one: robust accuracy that rises with eps means the "
        "attack gets weaker as it gets more room (gradient masking, a step size tied to eps)",
        fix="use a stronger attack (more steps, restarts, AutoAttack) and report the worst case",
    )


def _same_samples(a: EvalResult, b: EvalResult) -> None:
    if a.labels != b.labels or a.data.get("fingerprint") != b.data.get("fingerprint"):
        raise RobustConfigError("these evaluations are not on the same samples: compare like with like")
