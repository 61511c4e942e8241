"""The attack protocol every attack implements, and shared helpers."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from pytest_robust.threat import ThreatModel


@runtime_checkable
class Attack(Protocol):
    """An untargeted evasion attack in [0, 1] pixel space.

    Implementations are frozen dataclasses: the budget (steps, restarts, queries) is part of the
    object, the threat model (norm, eps) is given per call so one attack object serves many eps.
    ``perturb`` receives a model in eval mode that returns logits, a batch ``x`` in [0, 1] and
    labels ``y``, and returns adversarial inputs of the same shape. The caller checks the result
    (:func:`pytest_robust.perturbation.check_perturbation`); attacks need not trust themselves.
    Randomness comes only from ``generator``.
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


def input_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed cross-entropy w.r.t. the input, and the per-sample losses."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        losses = nn.functional.cross_entropy(logits, y, reduction="none")
        (grad,) = torch.autograd.grad(losses.sum(), x)
    return grad.detach(), losses.detach()


def seed_from(generator: torch.Generator) -> int:
    """Draw an int seed for a library that takes seeds rather than generators."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
