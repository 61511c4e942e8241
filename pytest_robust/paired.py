"""Exact non-inferiority test for paired binary outcomes (candidate vs baseline on the same samples).

Each sample is robust or not under the baseline and under the candidate. Only the discordant
samples carry information about the difference of robust accuracies ``delta = pi01 - pi10``
(``pi10``: the probability that a sample is newly broken, ``pi01``: newly robust). The null
hypothesis "the candidate is worse by at least ``margin``" is ``pi10 - pi01 >= margin``.

The test is exact and unconditional (Suissa & Shuster's approach for matched pairs): the
statistic is the Wald-type score ``z = (d + margin) / se``, ``d = (c - b) / n``,
``se = sqrt((b + c) / n - d**2) / sqrt(n)``; the p-value is the largest probability, over every
discordant rate the null allows (a grid), of a table at least as extreme, computed from the
trinomial distribution of (newly broken, newly robust, concordant). Its false-pass rate is at
most ``alpha`` by construction (up to the grid; tested by simulation). For a fixed number of
discordant samples ``m`` the statistic falls as ``b`` grows, so "at least as extreme" is
``b <= b*(m)`` and each probability is a sum of binomial terms (scipy): ``O(grid x n)``.

Confidence bounds of ``delta`` invert the test (bisection on the margin). Pure: numpy, scipy.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: points of the grid of discordant rates over which the p-value is maximised
GRID = 200


def _z(b: NDArray[np.float64], c: NDArray[np.float64], n: int, margin: float) -> NDArray[np.float64]:
    d = (c - b) / n
    var = np.maximum((b + c) / n - d * d, 0.0) / n
    num = d + margin
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, num / np.sqrt(np.where(var > 0, var, 1.0)), np.sign(num) * np.inf)
    return np.where((var == 0) & (num == 0), 0.0, z)


def _thresholds(z_obs: float, n: int, margin: float) -> NDArray[np.int64]:
    """Per number of discordant samples m, the largest b (newly broken) whose table is at least as
    extreme as the observed one (-1: none)."""
    out = np.full(n + 1, -1, dtype=np.int64)
    for m in range(n + 1):
        b = np.arange(m + 1, dtype=np.float64)
        ok = _z(b, m - b, n, margin) >= z_obs - 1e-12
        if ok.any():
            out[m] = int(np.nonzero(ok)[0].max())  # z falls with b: ok is a prefix
    return out


def p_value(newly_broken: int, newly_robust: int, n: int, margin: float, grid: int = GRID) -> float:
    """Exact p-value of H0: ``pi10 - pi01 >= margin`` (the candidate worse by ``margin`` or more)."""
    from scipy import stats

    if n <= 0:
        return 1.0
    z_obs = float(_z(np.array([float(newly_broken)]), np.array([float(newly_robust)]), n, margin)[0])
    cut = _thresholds(z_obs, n, margin)
    lo = max(abs(margin), 1e-9)
    if lo >= 1:
        return 1.0
    near = lo + (1 - lo) * np.geomspace(1e-6, 1, grid)  # dense near the smallest rate the null allows
    rates = np.unique(np.concatenate([np.linspace(lo, 1.0, grid), near]))
    m = np.arange(n + 1)
    pm = stats.binom.pmf(m[None, :], n, rates[:, None])  # (G, n+1): P(m discordant)
    p10 = np.clip((rates + margin) / (2 * rates), 0.0, 1.0)  # P(newly broken | discordant) under H0
    tail = stats.binom.cdf(cut[None, :], m[None, :], p10[:, None])
    tail = np.where(cut[None, :] < 0, 0.0, tail)
    return float(min(1.0, (pm * tail).sum(axis=1).max()))


def lower_bound(newly_broken: int, newly_robust: int, n: int, alpha: float, grid: int = GRID) -> float:
    """The exact ``1 - alpha`` lower confidence bound of ``delta = acc(candidate) - acc(baseline)``:
    where the test starts to reject, by bisection (to about 1e-4). The p-value is not exactly
    monotone in the margin (the binomial lattice), so a decision also requires the test itself to
    reject at the margin (see :class:`~pytest_robust.policies.NonInferiority`)."""
    # p_value falls as the margin grows: find the smallest margin it rejects, on [-1, 1]
    lo, hi = -1.0, 1.0
    for _ in range(14):
        mid = (lo + hi) / 2
        if p_value(newly_broken, newly_robust, n, mid, grid) <= alpha:
            hi = mid
        else:
            lo = mid
    return -hi


def upper_bound(newly_broken: int, newly_robust: int, n: int, alpha: float, grid: int = GRID) -> float:
    """The exact ``1 - alpha`` upper confidence bound of ``delta`` (the lower bound with the roles
    of the two models swapped)."""
    return -lower_bound(newly_robust, newly_broken, n, alpha, grid)
