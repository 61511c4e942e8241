"""Samples a sequential gate uses, by simulation (pytest_robust.sequential; numpy, seeded).

``python benchmarks/sequential_savings.py`` prints the Markdown table of BENCHMARKS.md
("Sequential policy: samples used"). Each cell simulates GATES gates whose per-sample outcomes
are independent Bernoulli(p) draws, decided after every batch of 32 samples with the 95% betting
CS, once with the bets tuned to half the budget (``horizon=N // 2``) and once with the paper's
time-uniform bets (``horizon=None``). p is 5 points above the threshold (pass is right), 5
points below (fail is right) and exactly at it (pass is a false pass). "share" is the number of
samples used over the budget N; an undecided gate used all N. The last column is, for context,
the exact probability that the fixed-n LowerConfidenceBound policy (Clopper-Pearson, 95%) passes
at p = threshold + 0.05 with all N samples.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from scipy import stats

from pytest_robust.sequential import decide_paths

THRESHOLDS = (0.3, 0.5, 0.7)
BUDGETS = (256, 660, 1000, 2000, 5000)
GATES = 2000  # simulated gates per cell
CHUNK = 500  # gates simulated at once (bounds the memory)
BATCH = 32
CONFIDENCE = 0.95
GAP = 0.05
TARGET = 0.40  # the target: median share of samples used at a 5-point margin


def simulate(
    p: float, required: float, n: int, horizon: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    status, used = [], []
    for start in range(0, GATES, CHUNK):
        x = rng.random((min(CHUNK, GATES - start), n)) < p
        s, u = decide_paths(x, required, CONFIDENCE, check_every=BATCH, horizon=horizon)
        status.append(s)
        used.append(u)
    return np.concatenate(status), np.concatenate(used)


def lcb_pass_rate(p: float, required: float, n: int) -> float:
    """P(Clopper-Pearson lower bound >= required) for Binomial(n, p), exactly."""
    k = np.arange(n + 1)
    with np.errstate(invalid="ignore"):
        lower = np.where(k > 0, stats.beta.ppf((1 - CONFIDENCE) / 2, k, n - k + 1), 0.0)
    return float(stats.binom.pmf(k, n, p)[lower >= required].sum())


def main() -> None:
    t0 = time.perf_counter()
    print(
        "| bets | threshold | N | +5: median share | +5: p90 share | +5: pass rate "
        "| −5: median share | −5: p90 share | −5: fail rate | at threshold: false pass "
        "| median ≤ 40 % both sides | LCB (all N), +5: pass rate |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    seed = 2024
    for label, half in (("horizon = N/2", True), ("time-uniform", False)):
        for thr in THRESHOLDS:
            for n in BUDGETS:
                horizon = n // 2 if half else None
                cells = {}
                for name, p in (("above", thr + GAP), ("below", thr - GAP), ("at", thr)):
                    seed += 1
                    cells[name] = simulate(p, thr, n, horizon, seed)
                (st_a, u_a), (st_b, u_b), (st_t, _) = cells["above"], cells["below"], cells["at"]
                med_a, med_b = np.median(u_a) / n, np.median(u_b) / n
                print(
                    f"| {label} | {thr:.1f} | {n} "
                    f"| {med_a:.0%} | {np.quantile(u_a, 0.9) / n:.0%} | {np.mean(st_a == 'pass'):.1%} "
                    f"| {med_b:.0%} | {np.quantile(u_b, 0.9) / n:.0%} | {np.mean(st_b == 'fail'):.1%} "
                    f"| {np.mean(st_t == 'pass'):.1%} "
                    f"| {'yes' if max(med_a, med_b) <= TARGET else 'no'} "
                    f"| {lcb_pass_rate(thr + GAP, thr, n):.1%} |"
                )
    print(
        f"\n{GATES} simulated gates per cell, batches of {BATCH}, {CONFIDENCE:.0%} CS, "
        f"{time.perf_counter() - t0:.0f} s ({sys.version.split()[0]}, numpy {np.__version__})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
