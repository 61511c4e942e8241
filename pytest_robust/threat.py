"""Threat models: which perturbations an adversary may apply.

``Norm`` and ``ThreatModel`` are pure value objects (no torch), so the plugin can validate
options without importing torch. The tensor operations (projection, the perturbation check) live
in :mod:`pytest_robust.perturbation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

from pytest_robust import validate
from pytest_robust.errors import RobustConfigError


class Norm(StrEnum):
    """The Lp norm that bounds a perturbation."""

    LINF = "Linf"
    L2 = "L2"

    @classmethod
    def coerce(cls, value: str | Norm) -> Norm:
        """Accept a ``Norm`` or its name (case-insensitive, ``inf``/``linf``/``l_inf``/``2``/``l2``)."""
        if isinstance(value, Norm):
            return value
        key = str(value).strip().lower().replace("_", "").replace("-", "")
        aliases = {"linf": cls.LINF, "inf": cls.LINF, "l∞": cls.LINF, "l2": cls.L2, "2": cls.L2}
        if key not in aliases:
            valid = ", ".join(repr(n.value) for n in cls)
            raise RobustConfigError(f"unknown norm {value!r}; valid norms: {valid}")
        return aliases[key]


def format_eps(eps: float) -> str:
    """Write eps the way papers do: ``4/255`` when it is a multiple of 1/255, else a decimal."""
    k = eps * 255
    if eps > 0 and abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    frac = Fraction(eps).limit_denominator(1000)
    if eps > 0 and abs(float(frac) - eps) < 1e-12 and frac.denominator > 1:
        return f"{frac.numerator}/{frac.denominator}"
    return f"{eps:g}"


def validate_eps(eps: object, norm: Norm = Norm.LINF) -> float:
    """Return eps as a float, or raise :class:`RobustConfigError` saying what is wrong.

    Images live in [0, 1]. For Linf an eps above 1 is meaningless; a whole number between 1 and
    255 is almost always a budget written in pixel levels (``4`` for ``4/255``), and the message
    says so. For L2 any finite eps >= 0 is accepted here; the evaluation rejects an L2 eps larger
    than the diameter of the image cube.
    """
    value = validate.as_real("eps", eps, example="4/255")
    if not math.isfinite(value):
        raise RobustConfigError(f"eps must be finite, got {value}")
    if value < 0:
        raise RobustConfigError(f"eps must be >= 0, got {value}")
    if norm is Norm.LINF and value > 1:
        hint = ""
        if value <= 255:
            hint = (
                f"; pixel values are in [0, 1], so eps={value:g} allows any image. "
                f"Did you mean eps={value:g}/255 (= {value / 255:.6f})?"
            )
        raise RobustConfigError(f"Linf eps must be in [0, 1], got {value:g}{hint}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreatModel:
    """An Lp ball of radius ``eps`` around each input, intersected with the [0, 1] pixel box."""

    norm: Norm
    eps: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", Norm.coerce(self.norm))
        object.__setattr__(self, "eps", validate_eps(self.eps, self.norm))

    @classmethod
    def of(cls, norm: str | Norm, eps: float) -> ThreatModel:
        return cls(norm=Norm.coerce(norm), eps=eps)

    def describe(self) -> str:
        return f"{self.norm.value} eps={format_eps(self.eps)}"

    def to_json(self) -> dict[str, Any]:
        return {"norm": self.norm.value, "eps": self.eps, "eps_str": format_eps(self.eps)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ThreatModel:
        return cls(norm=Norm.coerce(data["norm"]), eps=float(data["eps"]))
