"""White-box gradient attacks: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018).

Both ascend the cross-entropy (default) or a scale-invariant margin loss. PGD keeps, per sample,
the first iterate that fools the model (any iterate counts, not only the last one) and spends no
further gradient steps on samples already broken; an unbroken sample keeps its iterate of highest
loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pytest_robust import validate
from pytest_robust.attacks.base import attack_loss, check_loss, forward_with_grad, input_gradient
from pytest_robust.errors import RobustConfigError
from pytest_robust.perturbation import lp_norms, project
from pytest_robust.threat import Norm, ThreatModel, format_eps


def ascent_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Steepest-ascent direction of unit norm: sign for Linf, normalised gradient for L2.

    Non-finite gradient entries count as zero (the attack does not move along them); the
    soundness checks report such gradients, so this never hides them.
    """
    grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    if norm is Norm.LINF:
        return grad.sign()
    norms = lp_norms(grad, Norm.L2).clamp_min(1e-12)
    return grad / norms.view(-1, *([1] * (grad.dim() - 1)))


def random_start_point(x: torch.Tensor, threat: ThreatModel, generator: torch.Generator) -> torch.Tensor:
    """A uniform point of the eps-ball (drawn on the CPU generator, so devices agree)."""
    shape = x.shape
    if threat.norm is Norm.LINF:
        noise = torch.rand(shape, generator=generator, dtype=torch.float32) * 2 - 1
        delta = noise * threat.eps
    else:
        gauss = torch.randn(shape, generator=generator, dtype=torch.float32)
        direction = gauss / lp_norms(gauss, Norm.L2).clamp_min(1e-12).view(-1, 1, 1, 1)
        d = x[0].numel()
        radius = torch.rand((shape[0],), generator=generator) ** (1.0 / d) * threat.eps
        delta = direction * radius.view(-1, 1, 1, 1)
    return project(x + delta.to(device=x.device, dtype=x.dtype), x, threat)


@dataclass(frozen=True, slots=True, kw_only=True)
class NoAttack:
    """No perturbation: ``assert_robust(model, "none", eps=0, min_acc=...)`` gates clean accuracy."""

    @property
    def name(self) -> str:
        return "none"

    def config(self) -> dict[str, Any]:
        return {"name": self.name}

    def describe(self) -> str:
        return "no attack (clean inputs)"

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        return x.clone()


@dataclass(frozen=True, slots=True, kw_only=True)
class FGSM:
    """Fast Gradient Sign Method: one step of size eps along the gradient's sign (L2: direction)."""

    loss: str = "ce"

    def __post_init__(self) -> None:
        check_loss(self.loss)

    @property
    def name(self) -> str:
        return "fgsm"

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "loss": self.loss}

    def describe(self) -> str:
        return "FGSM" if self.loss == "ce" else f"FGSM ({self.loss} loss)"

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        grad, _ = input_gradient(model, x, y, self.loss)
        return project(x + threat.eps * ascent_direction(grad, threat.norm), x, threat)


@dataclass(frozen=True, slots=True, kw_only=True)
class PGD:
    """Projected gradient descent with random start and restarts, keeping the best iterate.

    ``step_size`` is absolute; when ``None`` it is ``rel_step_size * eps`` (the reference study's
    PGD-20 uses 2/255 at eps 4/255, i.e. 0.5). ``loss``: ``ce`` (cross-entropy) or ``margin``
    (scale-invariant Carlini–Wagner margin; immune to saturated logits). A sample counts as broken
    when any iterate of any restart fools the model; that iterate is returned and the sample gets
    no further steps or restarts. Otherwise the iterate of highest loss is returned.
    """

    steps: int = 20
    step_size: float | None = None
    rel_step_size: float = 0.5
    random_start: bool = True
    restarts: int = 1
    loss: str = "ce"
    #: ``best`` (evaluation): keep the first iterate that fools, stop attacking broken samples;
    #: ``last`` (Madry et al.'s training attack): every sample takes every step, the last iterate
    #: is returned. PGD adversarial training uses ``last``: stopping at the first fooling iterate
    #: trains on weaker examples (measured: ConvNeXt PGD-AT gained 6 points less).
    iterate: str = "best"
    #: ``best`` only: stop attacking a sample at its first fooling iterate (False: every sample takes
    #: every step; the same decisions at a higher cost, kept to measure what early exit saves)
    early_exit: bool = True

    def __post_init__(self) -> None:
        # normalised to plain Python numbers (numpy / 0-d tensor scalars are accepted)
        object.__setattr__(self, "steps", validate.positive_int("PGD steps", self.steps))
        object.__setattr__(self, "restarts", validate.positive_int("PGD restarts", self.restarts))
        if self.step_size is not None:
            object.__setattr__(self, "step_size", validate.finite_positive("PGD step_size", self.step_size))
        object.__setattr__(
            self, "rel_step_size", validate.finite_positive("PGD rel_step_size", self.rel_step_size)
        )
        if not isinstance(self.random_start, bool):
            raise RobustConfigError(f"PGD random_start must be True or False, got {self.random_start!r}")
        check_loss(self.loss)
        if self.iterate not in ("best", "last"):
            raise RobustConfigError(f"PGD iterate must be 'best' or 'last', got {self.iterate!r}")
        if not isinstance(self.early_exit, bool):
            raise RobustConfigError(f"PGD early_exit must be True or False, got {self.early_exit!r}")

    @property
    def name(self) -> str:
        return "pgd"

    def step_for(self, eps: float) -> float:
        return self.step_size if self.step_size is not None else self.rel_step_size * eps

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps": self.steps,
            "step_size": self.step_size,
            "rel_step_size": self.rel_step_size,
            "random_start": self.random_start,
            "restarts": self.restarts,
            "loss": self.loss,
            "iterate": self.iterate,
            **({} if self.early_exit else {"early_exit": False}),
        }

    def describe(self) -> str:
        step = format_eps(self.step_size) if self.step_size is not None else f"{self.rel_step_size:g}*eps"
        start = ", random start" if self.random_start else ""
        loss = "" if self.loss == "ce" else f", {self.loss} loss"
        last = "" if self.iterate == "best" else ", last iterate"
        full = "" if self.early_exit or self.iterate == "last" else ", no early exit"
        return f"PGD-{self.steps} (step {step}, {self.restarts} restart(s){start}{loss}{last}{full})"

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        step = self.step_for(threat.eps)
        if self.iterate == "last":
            return self._last_iterate(model, x, y, threat, step, generator)
        best = x.clone()
        best_loss = torch.full((x.shape[0],), -torch.inf, device=x.device)
        broken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

        def record(idx: torch.Tensor, x_it: torch.Tensor, loss: torch.Tensor, fooled: torch.Tensor) -> None:
            open_ = ~broken[idx]
            first = fooled & open_
            take = first | (open_ & (loss > best_loss[idx]))
            best[idx[take]] = x_it[take].detach()
            best_loss[idx[take]] = torch.where(first[take], torch.inf, loss[take])
            broken[idx[first]] = True

        for _ in range(self.restarts):
            idx = (~broken).nonzero().flatten()
            if idx.numel() == 0:
                break
            x_it = random_start_point(x[idx], threat, generator) if self.random_start else x[idx].clone()
            for _ in range(self.steps):
                leaf, logits = forward_with_grad(model, x_it)
                with torch.enable_grad():
                    loss = attack_loss(logits.float(), y[idx], self.loss)
                    (grad,) = torch.autograd.grad(loss.sum(), leaf)
                fooled = logits.detach().argmax(dim=1) != y[idx]
                record(idx, x_it, loss.detach(), fooled)
                keep = ~broken[idx] if self.early_exit else torch.ones_like(fooled)
                if not bool(keep.any()):
                    idx = idx[keep]
                    break
                idx, x_it = idx[keep], x_it[keep]
                x_it = project(x_it + step * ascent_direction(grad[keep], threat.norm), x[idx], threat)
            if idx.numel():
                with torch.no_grad():
                    logits = model(x_it)
                record(
                    idx, x_it, attack_loss(logits.float(), y[idx], self.loss), logits.argmax(dim=1) != y[idx]
                )
        return best

    def _last_iterate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        step: float,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Madry et al.'s loop: every sample takes every step; across restarts a fooling restart wins,
        then the one of highest loss."""
        best = x.clone()
        best_loss = torch.full((x.shape[0],), -torch.inf, device=x.device)
        broken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            x_adv = random_start_point(x, threat, generator) if self.random_start else x.clone()
            for _ in range(self.steps):
                grad, _ = input_gradient(model, x_adv, y, self.loss)
                x_adv = project(x_adv + step * ascent_direction(grad, threat.norm), x, threat)
            with torch.no_grad():
                logits = model(x_adv)
                loss = attack_loss(logits.float(), y, self.loss)
                fooled = logits.argmax(dim=1) != y
            take = (fooled & ~broken) | (~broken & ~fooled & (loss > best_loss))
            best[take] = x_adv[take]
            best_loss = torch.where(take, loss, best_loss)
            broken |= fooled
        return best
