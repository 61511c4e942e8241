"""APGD (Croce & Hein, ICML 2020, Algorithm 1) with per-sample early exit.

Auto-PGD is PGD with momentum and a step size that adapts per sample: it starts at ``2 * eps``
and is halved at checkpoints where the loss stopped rising (fewer than ``rho`` of the steps
since the last checkpoint increased it, or the step was not reduced at the last checkpoint and
the best loss has not moved since); a halving restarts the sample from its point of highest
loss. The checkpoints are ``0.22 * steps`` apart at first, the period shrinking by
``0.03 * steps`` per checkpoint down to ``0.06 * steps`` (the paper's ``p_j`` schedule).

This is the project's own implementation of the published algorithm (the AutoAttack adapter
runs it for APGD-CE/APGD-DLR unless ``early_exit=False``). It differs from the reference code
in what it spends, never in what it finds: a sample stops being attacked at the first iterate
that fools the model (``early_exit``), while every unbroken sample takes every step of every
restart. Per-sample computations do not depend on the other samples of the batch (models in
eval mode), so early exit returns the same decisions as running every sample to the end; the
random starts are drawn for the whole batch before any sample stops, from the caller's
generator. An unbroken sample returns its iterate of highest loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pytest_robust import validate
from pytest_robust.attacks.base import AttackOutcome, attack_loss, forward_with_grad
from pytest_robust.attacks.gradient import ascent_direction, random_start_point
from pytest_robust.errors import RobustConfigError, RobustModelError
from pytest_robust.perturbation import project
from pytest_robust.threat import ThreatModel

#: ``ce``: cross-entropy (APGD-CE). ``dlr``: the difference of logits ratio (APGD-DLR; needs >= 3
#: classes). ``margin``: the scale-invariant margin of :data:`pytest_robust.attacks.base.LOSSES`
#: (works with 2 classes).
APGD_LOSSES = ("ce", "dlr", "margin")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Untargeted DLR: ``-(z_y - max_{i != y} z_i) / (z_(1) - z_(3))`` (sorted logits, descending)."""
    if logits.shape[1] < 3:
        raise RobustConfigError(
            f"the DLR loss needs >= 3 classes (it divides by the gap to the 3rd-largest logit), the "
            f"model has {logits.shape[1]}; use loss='margin' (scale-invariant, any class count)"
        )
    ordered = logits.sort(dim=1, descending=True).values
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, y.view(-1, 1), float("-inf")).max(dim=1).values
    loss: torch.Tensor = (others - true) / (ordered[:, 0] - ordered[:, 2] + 1e-12)
    return loss


def _loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    return dlr_loss(logits, y) if loss == "dlr" else attack_loss(logits, y, loss)


@dataclass(frozen=True, slots=True, kw_only=True)
class APGD:
    """Auto-PGD: ``steps`` iterations per restart, ``restarts`` random restarts (on the samples
    still robust), ``loss`` ``ce``/``dlr``/``margin``; ``early_exit`` stops a sample once broken."""

    steps: int = 100
    restarts: int = 1
    loss: str = "ce"
    #: the fraction of steps between checkpoints that must have raised the loss to keep the step
    rho: float = 0.75
    #: weight of the new gradient step against the previous update (the paper's alpha)
    momentum: float = 0.75
    early_exit: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", validate.positive_int("APGD steps", self.steps))
        object.__setattr__(self, "restarts", validate.positive_int("APGD restarts", self.restarts))
        for name in ("rho", "momentum"):
            value = validate.finite_positive(f"APGD {name}", getattr(self, name))
            if value > 1:
                raise RobustConfigError(f"APGD {name} must be in (0, 1], got {value!r}")
            object.__setattr__(self, name, value)
        if self.loss not in APGD_LOSSES:
            raise RobustConfigError(f"unknown APGD loss {self.loss!r}; valid: {', '.join(APGD_LOSSES)}")
        if not isinstance(self.early_exit, bool):
            raise RobustConfigError(f"APGD early_exit must be True or False, got {self.early_exit!r}")

    @property
    def name(self) -> str:
        return "apgd"

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps": self.steps,
            "restarts": self.restarts,
            "loss": self.loss,
            "rho": self.rho,
            "momentum": self.momentum,
            "early_exit": self.early_exit,
        }

    def describe(self) -> str:
        s = "" if self.restarts == 1 else "s"
        exit_ = ", early exit" if self.early_exit else ""
        return f"APGD-{self.loss.upper()} ({self.steps} steps x{self.restarts} restart{s}{exit_})"

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        return self.search(model, x, y, threat, generator=generator)[0]

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator,
    ) -> AttackOutcome:
        x_adv, fooled = self.search(model, x, y, threat, generator=generator)
        return AttackOutcome(x_adv=x_adv, broken_by=tuple(self.name if f else "" for f in fooled.tolist()))

    def search(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_adv, fooled)``: per sample the first fooling iterate (``fooled``) or the iterate of
        highest loss. Samples the model already misclassifies are returned unchanged, as fooled."""
        x = x.detach()
        n = x.shape[0]
        best = x.clone()
        if n == 0 or threat.eps == 0:
            with torch.no_grad():
                return best, (model(x).argmax(dim=1) != y) if n else torch.zeros(0, dtype=torch.bool)
        with torch.no_grad():
            logits = model(x)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise RobustModelError("APGD needs a model returning (batch, classes) logits")
        fooled = logits.argmax(dim=1) != y
        best_loss = torch.full((n,), -torch.inf, device=x.device)
        for _ in range(self.restarts):
            idx = (~fooled).nonzero().flatten()
            if idx.numel() == 0:
                break
            start = random_start_point(x[idx], threat, generator)
            self._restart(model, x, y, threat, idx, start, best, best_loss, fooled)
        return best, fooled

    def _restart(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        idx: torch.Tensor,
        start: torch.Tensor,
        best: torch.Tensor,
        best_loss: torch.Tensor,
        fooled: torch.Tensor,
    ) -> None:
        """One restart on the samples ``idx`` from ``start``; updates ``best``/``best_loss``/``fooled``."""
        steps = self.steps
        period = max(int(0.22 * steps), 1)
        shrink, min_period = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
        x0, y0 = x[idx], y[idx]
        # per-sample state of the samples still attacked (rows of ``rows``, indices into x)
        rows = idx
        cur = start
        loss, grad, hit = self._step(model, cur, y0)
        prev = cur
        last_loss = loss
        top_loss, top_x, top_grad = loss.clone(), cur.clone(), grad.clone()
        eta = torch.full((rows.numel(),), 2 * threat.eps, device=x.device)
        ups = torch.zeros(rows.numel(), device=x.device)
        top_at_check = top_loss.clone()
        reduced = torch.ones(rows.numel(), dtype=torch.bool, device=x.device)
        done = torch.zeros(rows.numel(), dtype=torch.bool, device=x.device)

        def record(hit: torch.Tensor, point: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
            """Keep the first fooling iterate; return the rows to keep attacking."""
            new = hit & ~done
            best[rows[new]] = point[new].detach()
            best_loss[rows[new]] = torch.inf
            fooled[rows[new]] = True
            done.copy_(done | new)
            return ~done if self.early_exit else torch.ones_like(done)

        keep = record(hit, cur, loss)
        counter = 0
        for i in range(steps):
            if not bool(keep.all()):
                if not bool(keep.any()):
                    return
                rows, x0, y0 = rows[keep], x0[keep], y0[keep]
                cur, prev, grad, last_loss = cur[keep], prev[keep], grad[keep], last_loss[keep]
                top_loss, top_x, top_grad = top_loss[keep], top_x[keep], top_grad[keep]
                eta, ups, top_at_check = eta[keep], ups[keep], top_at_check[keep]
                reduced, done = reduced[keep], done[keep]
            shape = (-1,) + (1,) * (x.dim() - 1)
            with torch.no_grad():
                z = project(cur + eta.view(shape) * ascent_direction(grad, threat.norm), x0, threat)
                a = self.momentum if i > 0 else 1.0
                nxt = project(cur + a * (z - cur) + (1 - a) * (cur - prev), x0, threat)
            prev, cur = cur, nxt
            loss, grad, hit = self._step(model, cur, y0)
            ups += (loss > last_loss).float()
            last_loss = loss
            better = loss > top_loss
            top_loss = torch.where(better, loss, top_loss)
            top_x[better], top_grad[better] = cur[better], grad[better]
            keep = record(hit, cur, loss)
            counter += 1
            if counter == period:
                stalled = (~reduced) & (top_at_check >= top_loss)
                halve = (ups < self.rho * period) | stalled
                eta = torch.where(halve, eta / 2, eta)
                cur, grad = cur.clone(), grad.clone()
                cur[halve], grad[halve] = top_x[halve], top_grad[halve]
                prev = prev.clone()
                prev[halve] = top_x[halve]
                reduced, top_at_check = halve, top_loss.clone()
                ups.zero_()
                counter, period = 0, max(period - shrink, min_period)
        # the samples still robust: their point of highest loss, if it beats an earlier restart's
        open_ = ~done
        take = open_ & (top_loss > best_loss[rows])
        best[rows[take]] = top_x[take].detach()
        best_loss[rows[take]] = top_loss[take]

    def _step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample loss, its input gradient, and whether ``x`` fools the model (one pass)."""
        leaf, logits = forward_with_grad(model, x)
        with torch.enable_grad():
            loss = _loss(logits.float(), y, self.loss)
            (grad,) = torch.autograd.grad(loss.sum(), leaf)
        hit = logits.detach().argmax(dim=1) != y
        return loss.detach(), grad.detach(), hit
