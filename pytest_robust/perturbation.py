"""Tensor operations of a threat model: projection onto the eps-ball and the post-attack check."""

from __future__ import annotations

import torch

from pytest_robust.errors import PerturbationError
from pytest_robust.threat import Norm, ThreatModel, format_eps

#: Slack allowed by :func:`check_perturbation` for floating-point rounding.
TOLERANCE = 1e-6


def lp_norms(delta: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Per-sample norm of a batch of perturbations."""
    flat = delta.flatten(1)
    if norm is Norm.LINF:
        return flat.abs().amax(dim=1)
    norms: torch.Tensor = flat.norm(p=2, dim=1)
    return norms


def project(x_adv: torch.Tensor, x: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """Project ``x_adv`` onto the eps-ball around ``x`` and then into [0, 1]."""
    delta = x_adv - x
    if threat.norm is Norm.LINF:
        delta = delta.clamp(-threat.eps, threat.eps)
    else:
        norms = lp_norms(delta, Norm.L2).clamp_min(1e-12)
        factor = (threat.eps / norms).clamp(max=1.0)
        delta = delta * factor.view(-1, *([1] * (delta.dim() - 1)))
    return (x + delta).clamp(0.0, 1.0)


def check_perturbation(
    x_adv: torch.Tensor, x: torch.Tensor, threat: ThreatModel, *, attack: str = "attack"
) -> None:
    """Raise :class:`PerturbationError` unless every ``x_adv`` is a legal adversarial input.

    Legal means: same shape as ``x``, finite, inside [0, 1], and within ``eps`` of ``x`` in the
    threat model's norm (``TOLERANCE`` of slack for rounding).
    """
    if x_adv.shape != x.shape:
        raise PerturbationError(
            f"{attack} returned inputs of shape {tuple(x_adv.shape)}, expected {tuple(x.shape)}"
        )
    if x_adv.shape[0] == 0:
        return
    finite = torch.isfinite(x_adv).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten().tolist()[:10]
        raise PerturbationError(f"{attack} produced non-finite inputs (samples {bad})")
    lo, hi = float(x_adv.min()), float(x_adv.max())
    if lo < -TOLERANCE or hi > 1 + TOLERANCE:
        raise PerturbationError(f"{attack} left the [0, 1] pixel range (min {lo:.6g}, max {hi:.6g})")
    norms = lp_norms((x_adv - x).double(), threat.norm)
    worst = float(norms.max()) if norms.numel() else 0.0
    if worst > threat.eps + TOLERANCE:
        n_bad = int((norms > threat.eps + TOLERANCE).sum())
        raise PerturbationError(
            f"{attack} exceeded the threat model {threat.describe()}: largest "
            f"{threat.norm.value} perturbation {worst:.6g} > {threat.eps:.6g} "
            f"({format_eps(threat.eps)}) on {n_bad} sample(s)"
        )
