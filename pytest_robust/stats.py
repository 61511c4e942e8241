"""Statistics of evaluation results (scipy / scikit-learn; nothing hand-rolled)."""

from __future__ import annotations

from scipy import stats as _st


def proportion_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) confidence interval of a binomial proportion."""
    if n <= 0:
        return (0.0, 1.0)
    ci = _st.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="exact")
    return (float(ci.low), float(ci.high))
