"""The pointwise worst case over several attacks (AutoAttack's authors' rule for reporting).

``Ensemble((fgsm, pgd, aa))`` runs the attacks in the given order (cheap first); each attack gets
only the samples that every attack before it left robust, so a sample is robust only if every
attack fails on it. ``assert_robust(model, [fgsm, pgd, aa], ...)`` builds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pytest_robust.attacks.base import Attack, AttackOutcome, keep_fooled, run_attack
from pytest_robust.errors import RobustConfigError
from pytest_robust.threat import ThreatModel


@dataclass(frozen=True, slots=True, kw_only=True)
class Ensemble:
    """Worst case per sample over ``attacks``, run in order on the samples still robust."""

    attacks: tuple[Attack, ...]

    def __post_init__(self) -> None:
        attacks = tuple(self.attacks)
        if not attacks:
            raise RobustConfigError("an ensemble needs at least one attack")
        for a in attacks:
            if not isinstance(a, Attack):
                raise RobustConfigError(f"ensemble member {a!r} is not an attack")
            if a.name == "ensemble":
                raise RobustConfigError("ensembles do not nest: list the attacks in one ensemble")
        object.__setattr__(self, "attacks", attacks)

    @property
    def name(self) -> str:
        return "ensemble"

    def labels(self) -> tuple[str, ...]:
        """A distinct label per member: its name, numbered when a name repeats."""
        names = [a.name for a in self.attacks]
        return tuple(
            n if names.count(n) == 1 else f"{n}#{names[: i + 1].count(n)}" for i, n in enumerate(names)
        )

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "attacks": [a.config() for a in self.attacks]}

    def describe(self) -> str:
        return "worst case of " + " + ".join(a.describe() for a in self.attacks)

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        return self.run(model, x, y, threat, generator=generator).x_adv

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator,
    ) -> AttackOutcome:
        from pytest_robust.perturbation import check_perturbation

        x_adv = x.detach().clone()
        broken_by = [""] * x.shape[0]
        flags: list[str] = []
        parts: list[dict[str, Any]] = []
        for label, attack in zip(self.labels(), self.attacks, strict=True):
            todo = [i for i, b in enumerate(broken_by) if not b]
            outcome = None
            if todo:
                idx = torch.tensor(todo, device=x.device)
                outcome = run_attack(attack, model, x[idx], y[idx], threat, generator=generator)
                check_perturbation(outcome.x_adv, x[idx], threat, attack=attack.describe())
                inner_by = outcome.broken_by or ("",) * len(todo)
                keep_fooled(
                    model,
                    outcome.x_adv,
                    y[idx],
                    todo,
                    x_adv,
                    broken_by,
                    [f"{label}:{sub}" if sub else label for sub in inner_by],
                )
                flags.extend(outcome.flags)
            inner = outcome.parts if outcome is not None else ()
            if inner:
                parts.extend({**p, "name": f"{label}:{p['name']}"} for p in inner)
            else:
                parts.append({"name": label, "black_box": False})
        return AttackOutcome(
            x_adv=x_adv, broken_by=tuple(broken_by), flags=tuple(dict.fromkeys(flags)), parts=tuple(parts)
        )
