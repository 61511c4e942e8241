"""The number formats of every rendering (terminal table, Markdown, HTML pages): one implementation.

A value that is missing (``None``) prints as :data:`MISSING` unless the caller names its own text;
``width`` right-aligns the text (numbers and the missing text alike), as the terminal's fixed
columns need. Stdlib only.
"""

from __future__ import annotations

from typing import Final

#: The text of a missing value in Markdown and HTML (an en dash).
MISSING: Final = "–"
#: The minus sign of a signed difference (U+2212; a hyphen is too short beside the plus sign).
MINUS: Final = "−"


def pct(x: float | None, *, width: int = 0, missing: str = MISSING) -> str:
    """A fraction as a percentage with one decimal, without the ``%`` sign: 0.5 → ``50.0``."""
    text = missing if x is None else f"{100 * x:.1f}"
    return text.rjust(width)


def num(x: float | None, digits: int = 3, *, width: int = 0, missing: str = MISSING) -> str:
    """A number with ``digits`` decimals: 0.5 → ``0.500``."""
    text = missing if x is None else f"{x:.{digits}f}"
    return text.rjust(width)


def pts(x: float | None, *, missing: str = MISSING) -> str:
    """A difference of two fractions in signed percentage points: 0.05 → ``+5.0``, -0.05 → ``−5.0``."""
    return missing if x is None else f"{100 * x:+.1f}".replace("-", MINUS)
