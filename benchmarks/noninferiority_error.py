"""False-pass rate and power of the exact paired non-inferiority test, by simulation.

    python benchmarks/noninferiority_error.py

At a true difference of exactly -margin (the candidate worse by the margin: a pass is wrong) the
rate of passes must be at most 5%; at a true difference of 0 the rate of passes is the power.
2000 simulated candidate/baseline pairs per cell, seeded; prints a Markdown table.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from pytest_robust.paired import p_value

MARGIN = 0.02


@functools.cache
def passes(b: int, c: int, n: int) -> bool:
    return p_value(b, c, n, MARGIN) <= 0.05


def rate(n: int, discordant: float, delta: float, rng: np.random.Generator, size: int = 2000) -> float:
    p10, p01 = (discordant - delta) / 2, (discordant + delta) / 2
    draws = rng.multinomial(n, [p10, p01, 1 - discordant], size=size)
    return float(np.mean([passes(int(b), int(c), n) for b, c, _ in draws]))


def main() -> None:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    print("| n | discordant rate | false passes at delta = -0.02 | passes at delta = 0 (power) |")
    print("|---|---|---|---|")
    for n in (256, 660):
        for discordant in (0.005, 0.025, 0.06, 0.2):
            wrong = rate(n, discordant, -MARGIN, rng) if discordant >= MARGIN else float("nan")
            power = rate(n, discordant, 0.0, rng)
            print(f"| {n} | {discordant:g} | {wrong:.1%} | {power:.1%} |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
