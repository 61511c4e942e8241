"""Attacks: the :class:`Attack` protocol, FGSM, PGD, APGD and the AutoAttack adapter, and a registry.

The registry maps names to factories; :func:`make_attack` builds an attack from a name and budget
keyword arguments, and rejects unknown names with the list of valid ones. The built-in names are
fixed; :func:`register_attack` adds others (plugins do it through the
``pytest_robust_register_attacks`` hook, and the plugin undoes their registrations when the pytest
session ends). :data:`ATTACKS` is a read-only view of the registry, built-ins and registered ones.
The registry is the package's one piece of module-level mutable state, changed only through
:func:`register_attack` and :func:`unregister_attack`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from pytest_robust.attacks.apgd import APGD
from pytest_robust.attacks.autoattack import AutoAttack
from pytest_robust.attacks.base import Attack, AttackOutcome, run_attack
from pytest_robust.attacks.ensemble import Ensemble
from pytest_robust.attacks.gradient import FGSM, PGD, NoAttack
from pytest_robust.errors import RobustConfigError

__all__ = [
    "APGD",
    "ATTACKS",
    "BUILTIN_ATTACKS",
    "FGSM",
    "PGD",
    "Attack",
    "AttackOutcome",
    "AutoAttack",
    "Ensemble",
    "NoAttack",
    "coerce_attack",
    "make_attack",
    "register_attack",
    "run_attack",
    "unregister_attack",
]

BUILTIN_ATTACKS: Mapping[str, Callable[..., Attack]] = MappingProxyType(
    {"none": NoAttack, "fgsm": FGSM, "pgd": PGD, "apgd": APGD, "autoattack": AutoAttack}
)
_REGISTRY: dict[str, Callable[..., Attack]] = dict(BUILTIN_ATTACKS)
#: every attack name: the built-ins and those registered with :func:`register_attack` (read-only)
ATTACKS: Mapping[str, Callable[..., Attack]] = MappingProxyType(_REGISTRY)
ALIASES: Mapping[str, str] = MappingProxyType(
    {"aa": "autoattack", "auto-attack": "autoattack", "clean": "none"}
)
#: a registered name: lower case, starts with a letter, then letters, digits, ``-``, ``_``, ``.``
ATTACK_NAME = re.compile(r"[a-z][a-z0-9_.-]*")


def register_attack(
    name: str, factory: Callable[..., Attack], *, replace: bool = False
) -> Callable[..., Attack] | None:
    """Make ``name`` build an attack with ``factory(**budget)``; returns the factory it replaced.

    Raises :class:`RobustConfigError` for an invalid name (lower case: ``[a-z][a-z0-9_.-]*``), a
    built-in name or alias (never replaceable), a factory that is not callable, or a name already
    registered unless ``replace=True``. The factory's result is checked against the
    :class:`Attack` protocol when :func:`make_attack` builds it.
    """
    if not isinstance(name, str) or not ATTACK_NAME.fullmatch(name):
        raise RobustConfigError(
            f"invalid attack name {name!r}: use lower case letters, digits, '-', '_' or '.', "
            "starting with a letter (e.g. 'my-attack')"
        )
    if name in BUILTIN_ATTACKS or name in ALIASES:
        raise RobustConfigError(
            f"attack name {name!r} is built in and cannot be replaced; register yours under another name"
        )
    if not callable(factory):
        raise RobustConfigError(
            f"attack {name!r}: the factory must be callable (factory(**budget) -> Attack), "
            f"got {type(factory).__name__}"
        )
    previous = _REGISTRY.get(name)
    if previous is not None and not replace:
        raise RobustConfigError(
            f"attack {name!r} is already registered (by {_describe(previous)}); choose another name, "
            "or pass replace=True to replace it"
        )
    _REGISTRY[name] = factory
    return previous


def unregister_attack(name: str) -> None:
    """Remove an attack registered with :func:`register_attack` (built-ins cannot be removed)."""
    if name in BUILTIN_ATTACKS or name in ALIASES:
        raise RobustConfigError(f"attack name {name!r} is built in and cannot be unregistered")
    if name not in _REGISTRY:
        raise RobustConfigError(f"attack {name!r} is not registered")
    del _REGISTRY[name]


def _describe(factory: Callable[..., Any]) -> str:
    module = getattr(factory, "__module__", None) or "?"
    return f"{module}.{getattr(factory, '__qualname__', type(factory).__name__)}"


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in ATTACKS:
        valid = ", ".join(sorted([*ATTACKS, *ALIASES]))
        raise RobustConfigError(f"unknown attack {name!r}; valid attacks: {valid}")
    return key


def make_attack(name: str, **budget: Any) -> Attack:
    """Build an attack by name (``fgsm``, ``pgd``, ``autoattack``/``aa``, a registered one) and budget."""
    key = canonical_name(name)
    factory = ATTACKS[key]
    try:
        attack = factory(**budget)
    except TypeError as exc:
        raise RobustConfigError(f"bad budget for attack {name!r}: {exc}") from exc
    if not isinstance(attack, Attack):
        raise RobustConfigError(
            f"attack {name!r}: its factory {_describe(factory)} returned {type(attack).__name__}, which "
            "does not satisfy pytest_robust.attacks.Attack (name, config(), describe(), perturb(...))"
        )
    return attack


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
    if isinstance(attack, type):
        name = attack.__name__
        raise RobustConfigError(
            f"pass an attack object, {name}() (with its budget, e.g. {name}(steps=20) for PGD), "
            f"not the class {name}"
        )
    if not isinstance(attack, Attack):
        raise RobustConfigError(
            f"expected an attack (e.g. the pgd fixture, pytest_robust.attacks.PGD(), or a name "
            f"such as 'pgd'), got {type(attack).__name__}"
        )
    return attack
