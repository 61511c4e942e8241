"""Attacks: the :class:`Attack` protocol, FGSM, PGD and the AutoAttack adapter, and a registry.

The registry maps names to factories. It is immutable; :func:`make_attack` builds an attack from a
name and budget keyword arguments, and rejects unknown names with the list of valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from pytest_robust.attacks.autoattack import AutoAttack
from pytest_robust.attacks.base import Attack, AttackOutcome, run_attack
from pytest_robust.attacks.ensemble import Ensemble
from pytest_robust.attacks.gradient import FGSM, PGD, NoAttack
from pytest_robust.errors import RobustConfigError

__all__ = [
    "ATTACKS", "FGSM", "PGD", "Attack", "AttackOutcome", "AutoAttack", "Ensemble", "NoAttack",
    "coerce_attack", "make_attack", "run_attack",
]

ATTACKS: Mapping[str, Callable[..., Attack]] = MappingProxyType(
    {"none": NoAttack, "fgsm": FGSM, "pgd": PGD, "autoattack": AutoAttack}
)
ALIASES: Mapping[str, str] = MappingProxyType(
    {"aa": "autoattack", "auto-attack": "autoattack", "clean": "none"}
)


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in ATTACKS:
        valid = ", ".join(sorted([*ATTACKS, *ALIASES]))
        raise RobustConfigError(f"unknown attack {name!r}; valid attacks: {valid}")
    return key


def make_attack(name: str, **budget: Any) -> Attack:
    """Build an attack by name (``fgsm``, ``pgd``, ``autoattack``/``aa``) with its budget."""
    factory = ATTACKS[canonical_name(name)]
    try:
        return factory(**budget)
    except TypeError as exc:
        raise RobustConfigError(f"bad budget for attack {name!r}: {exc}") from exc


def coerce_attack(attack: Attack | str | Sequence[Attack | str]) -> Attack:
    """Accept an attack object, a name (built with default budgets), or a list of them.

    A list or tuple becomes an :class:`Ensemble`: the pointwise worst case, run in the given order.
    """
    if isinstance(attack, str):
        return make_attack(attack)
    if isinstance(attack, (list, tuple)):
        if len(attack) == 1:
            return coerce_attack(attack[0])
        return Ensemble(attacks=tuple(coerce_attack(a) for a in attack))
    if not isinstance(attack, Attack):
        raise RobustConfigError(
            f"expected an attack (e.g. the pgd fixture, pytest_robust.attacks.PGD(), or a name "
            f"such as 'pgd'), got {type(attack).__name__}"
        )
    return attack
