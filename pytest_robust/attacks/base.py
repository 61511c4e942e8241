"""The attack protocol every attack implements, and shared helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from pytest_robust.errors import RobustConfigError, RobustModelError
from pytest_robust.threat import ThreatModel

#: Losses the gradient attacks can ascend. ``ce``: cross-entropy (the study's). ``margin``: the
#: Carlini–Wagner margin ``max_{j != y} z_j - z_y`` divided by the (detached) L2 norm of the
#: logits, so its value does not depend on the logits' scale and its gradient never underflows the
#: way the cross-entropy's does on saturated (very confident or rescaled) logits. (DLR divides by
#: the gap to the third-largest logit, which two classes do not have.)
LOSSES = ("ce", "margin")


@runtime_checkable
class Attack(Protocol):
    """An untargeted evasion attack in [0, 1] pixel space.

    Implementations are frozen dataclasses: the budget (steps, restarts, queries) is part of the
    object, the threat model (norm, eps) is given per call so one attack object serves many eps.
    ``perturb`` receives a model in eval mode that returns logits, a batch ``x`` in [0, 1] and
    labels ``y``, and returns adversarial inputs of the same shape. The caller checks the result
    (:func:`pytest_robust.perturbation.check_perturbation`); attacks need not trust themselves.
    Randomness comes only from ``generator``.

    An attack may also implement ``run(model, x, y, threat, *, generator) -> AttackOutcome`` to
    report more than the adversarial inputs (which of its parts broke each sample, the warnings of
    a library it wraps); :func:`run_attack` uses it when present.
    """

    @property
    def name(self) -> str: ...

    def config(self) -> dict[str, Any]:
        """The attack and its budget as plain JSON (recorded with every result)."""
        ...

    def describe(self) -> str:
        """One line for humans, e.g. ``PGD(steps=20, step=2/255, restarts=1, random_start)``."""
        ...

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AttackOutcome:
    """What one attack call produced.

    ``broken_by``: per sample, the name of the (sub-)attack that first fooled the model, or ``""``
    when none did (attacks that do not say leave it empty; the caller then decides from the
    adversarial prediction). ``flags``: warnings raised by a wrapped library's own checks.
    ``parts``: the (sub-)attacks that ran, in order, with ``black_box`` marking gradient-free ones.
    """

    x_adv: torch.Tensor
    broken_by: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    parts: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def run_attack(
    attack: Attack,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    generator: torch.Generator,
) -> AttackOutcome:
    """Run ``attack`` and return an :class:`AttackOutcome` (``run`` when it has one, else ``perturb``)."""
    runner = getattr(attack, "run", None)
    if callable(runner):
        outcome = runner(model, x, y, threat, generator=generator)
        if not isinstance(outcome, AttackOutcome):
            raise TypeError(f"{type(attack).__name__}.run returned {type(outcome).__name__}")
        return outcome
    return AttackOutcome(x_adv=attack.perturb(model, x, y, threat, generator=generator))


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise RobustConfigError(f"unknown loss {loss!r}; valid losses: {', '.join(LOSSES)}")
    return loss


def logit_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max_{j != y} z_j - z_y`` per sample (positive: misclassified), unnormalised."""
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, y.view(-1, 1), float("-inf"))
    margin: torch.Tensor = others.max(dim=1).values - true
    return margin


def attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-sample loss to ascend: cross-entropy or the scale-invariant margin (see :data:`LOSSES`)."""
    if loss == "ce":
        return nn.functional.cross_entropy(logits, y, reduction="none")
    scale = logits.detach().norm(dim=1).clamp_min(1e-12)
    normalised: torch.Tensor = logit_margin(logits, y) / scale
    return normalised


def keep_fooled(
    model: nn.Module,
    adv: torch.Tensor,
    y: torch.Tensor,
    todo: list[int],
    x_adv: torch.Tensor,
    broken_by: list[str],
    label: str | list[str],
) -> None:
    """Record the samples ``adv`` fools: ``adv`` holds the attacked samples ``todo`` (indices into
    ``x_adv``/``broken_by``, labels ``y``); a fooled one gets its adversarial input and ``label``
    (one label for all, or one per attacked sample)."""
    with torch.no_grad():
        fooled = model(adv).argmax(dim=1) != y
    for j in fooled.nonzero().flatten().tolist():
        broken_by[todo[j]] = label if isinstance(label, str) else label[j]
        x_adv[todo[j]] = adv[j]


def forward_with_grad(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_leaf, logits)`` with the graph kept; a model without a gradient path is a typed error."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
    if not isinstance(logits, torch.Tensor):
        raise RobustModelError(
            f"model returned {type(logits).__name__}, expected a logits tensor (batch, classes)"
        )
    if not logits.requires_grad:
        raise RobustModelError(
            "the model's output has no gradient path to its input (a non-differentiable layer, "
            "torch.no_grad() or .detach() inside forward), so gradient attacks cannot measure it. "
            "Give the non-differentiable step a differentiable approximation for evaluation (e.g. "
            "a straight-through estimator, BPDA), or evaluate with a gradient-free attack only and "
            "say so"
        )
    return x, logits


def require_gradient_path(model: nn.Module, x: torch.Tensor) -> None:
    """Raise :class:`RobustModelError` unless the model's output has a gradient path to ``x``."""
    leaf, logits = forward_with_grad(model, x)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(logits.float().sum(), leaf, allow_unused=True)
    if grad is None:
        raise RobustModelError(
            "the model's output does not depend differentiably on its input (the graph reaches "
            "parameters but not the input: an index or lookup by a non-differentiable value), so "
            "gradient attacks cannot measure it. Give that step a differentiable approximation for "
            "evaluation (straight-through estimator / BPDA)"
        )


def input_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "ce"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed loss w.r.t. the input, and the per-sample losses."""
    leaf, logits = forward_with_grad(model, x)
    with torch.enable_grad():
        losses = attack_loss(logits.float(), y, loss)
        try:
            (grad,) = torch.autograd.grad(losses.sum(), leaf)
        except RuntimeError as exc:  # e.g. an output that depends on x only through integer ops
            raise RobustModelError(
                f"no gradient of the model's output w.r.t. its input could be computed ({exc}); "
                "gradient attacks cannot measure this model"
            ) from None
    return grad.detach(), losses.detach()


def seed_from(generator: torch.Generator) -> int:
    """Draw an int seed for a library that takes seeds rather than generators."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
