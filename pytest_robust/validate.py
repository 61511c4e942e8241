"""Checks of public numeric arguments: a typed :class:`RobustConfigError` naming the argument, never
a raw ``ValueError`` / ``ZeroDivisionError`` / ``OverflowError`` from deep inside torch.

Numbers may come as Python numbers, numpy scalars or 0-d tensors (``eps=np.float32(4 / 255)``,
``eps=torch.tensor(4 / 255)``); booleans are never numbers here. Torch-free: a tensor is recognised
by its ``ndim`` and ``item()``.
"""

from __future__ import annotations

import math
import numbers
from typing import Final

from pytest_robust.errors import RobustConfigError

#: seeds are the range torch's generators accept (``manual_seed``)
MAX_SEED: Final = 2**63


def _scalar(value: object) -> object:
    """A 0-d tensor or numpy array as its Python number; anything else unchanged."""
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        return value.item()  # type: ignore[attr-defined]
    return value


def as_real(name: str, value: object, *, example: str = "") -> float:
    """``value`` as a float: a real number (int, float, numpy or 0-d tensor scalar), not a bool."""
    plain = _scalar(value)
    if isinstance(plain, bool) or not isinstance(plain, numbers.Real):
        hint = f" such as {example}" if example else ""
        raise RobustConfigError(f"{name} must be a number{hint}, got {value!r}")
    return float(plain)


def as_int(name: str, value: object, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int (int, numpy integer, 0-d integer tensor; 2.0 is not an int), within bounds."""
    plain = _scalar(value)
    if isinstance(plain, bool) or not isinstance(plain, numbers.Integral):
        raise RobustConfigError(f"{name} must be an integer, got {value!r}")
    number = int(plain)
    if minimum is not None and number < minimum:
        raise RobustConfigError(f"{name} must be >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise RobustConfigError(f"{name} must be <= {maximum}, got {number}")
    return number


def positive_int(name: str, value: object) -> int:
    return as_int(name, value, minimum=1)


def seed(name: str, value: object) -> int:
    return as_int(name, value, minimum=0, maximum=MAX_SEED - 1)


def finite_positive(name: str, value: object) -> float:
    number = as_real(name, value)
    if not math.isfinite(number) or number <= 0:
        raise RobustConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return number
