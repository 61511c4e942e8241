"""The anytime-valid sequential decision (pytest_robust.sequential): error rates by simulation.

The simulations are vectorised over thousands of simulated gates (seeded numpy); the Monte-Carlo
margins are three or four standard errors, tight enough that a procedure that peeks at a
fixed-n interval after every batch fails them (``test_naive_peeking_fails_the_same_check``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from pytest_robust.errors import RobustConfigError
from pytest_robust.sequential import (
    SequentialState,
    _bets,
    confidence_sequence,
    decide_paths,
    sequential_decision,
)

ALPHA = 0.05
GATES = 2000  # simulated gates per cell
BATCH = 32


def _margin(rate: float, n: int, k: float = 3.0) -> float:
    """``rate`` plus ``k`` Monte-Carlo standard errors of a proportion over ``n`` trials."""
    return rate + k * math.sqrt(rate * (1 - rate) / n)


def _paths(seed: int, p: float, n: int, gates: int = GATES) -> np.ndarray:
    return np.random.default_rng(seed).random((gates, n)) < p


# -- error rates ------------------------------------------------------------------------------

CELLS = [(thr, n) for thr in (0.3, 0.5, 0.7, 0.9) for n in (256, 2000)]


@pytest.mark.parametrize("horizon", [None, "half"])
def test_false_pass_at_the_threshold_is_at_most_five_percent(horizon: str | None) -> None:
    """True accuracy exactly at the threshold: 'pass' is wrong; so is 'fail' (p >= required holds)."""
    passes = fails = total = 0
    for i, (thr, n) in enumerate(CELLS):
        h = None if horizon is None else n // 2
        status, used = decide_paths(_paths(100 + i, thr, n), thr, 0.95, check_every=BATCH, horizon=h)
        rate = float(np.mean(status == "pass"))
        assert rate <= _margin(ALPHA, GATES), (thr, n, rate)
        assert np.all((used % BATCH == 0) | (used == n))
        passes += int(np.sum(status == "pass"))
        fails += int(np.sum(status == "fail"))
        total += GATES
    # one side of the two-sided 95% CS: each wrong decision has probability <= alpha / 2
    assert passes / total <= _margin(ALPHA / 2, total, 4), passes / total
    assert fails / total <= _margin(ALPHA / 2, total, 4), fails / total


def test_false_pass_when_checking_after_every_sample() -> None:
    """Stopping at any sample (check_every=1) is as valid as at batch boundaries."""
    status, _ = decide_paths(_paths(7, 0.6, 1000), 0.6, 0.95, check_every=1)
    assert float(np.mean(status == "pass")) <= _margin(ALPHA / 2, GATES)


def test_naive_peeking_fails_the_same_check() -> None:
    """The test has teeth: Clopper-Pearson's lower bound peeked at after every batch exceeds 5%."""
    thr, n = 0.5, 2000
    x = _paths(11, thr, n)
    times = np.arange(BATCH, n + 1, BATCH)
    k = np.cumsum(x, axis=1)[:, times - 1]
    with np.errstate(invalid="ignore"):
        lower = np.where(k > 0, stats.beta.ppf(ALPHA / 2, k, times - k + 1), 0.0)
    naive = float(np.mean((lower > thr).any(axis=1)))
    assert naive > _margin(ALPHA, GATES), naive
    # ... while a single look at the end is a valid fixed-n test
    assert float(np.mean(lower[:, -1] > thr)) <= _margin(ALPHA / 2, GATES)
    status, _ = decide_paths(x, thr, 0.95, check_every=BATCH)
    assert float(np.mean(status == "pass")) <= _margin(ALPHA, GATES)


@pytest.mark.parametrize(
    ("thr", "horizon", "min_rate"), [(0.5, 2500, 0.95), (0.7, 2500, 0.95), (0.5, None, 0.8)]
)
def test_five_points_above_passes_and_below_fails(thr: float, horizon: int | None, min_rate: float) -> None:
    n, gates = 5000, 500
    above, used_above = decide_paths(
        _paths(21, thr + 0.05, n, gates), thr, check_every=BATCH, horizon=horizon
    )
    below, used_below = decide_paths(
        _paths(22, thr - 0.05, n, gates), thr, check_every=BATCH, horizon=horizon
    )
    assert float(np.mean(above == "pass")) >= min_rate
    assert float(np.mean(below == "fail")) >= min_rate
    # the wrong way round is a false fail / false pass: at most alpha / 2 each
    assert float(np.mean(above == "fail")) <= _margin(ALPHA / 2, gates)
    assert float(np.mean(below == "pass")) <= _margin(ALPHA / 2, gates)
    assert np.median(used_above) < n / 2
    assert np.median(used_below) < n / 2


@pytest.mark.parametrize("p", [0.05, 0.5, 0.85])
def test_the_cs_covers_the_true_mean_at_all_times(p: float) -> None:
    """Uniformly over time: the true mean is never excluded on >= 95% of the paths.

    ``decide_paths(x, p, check_every=1)`` is undecided exactly when ``p`` stayed in the CS at
    every time; the grid CS of a subset of the paths agrees.
    """
    n = 1000
    x = _paths(31, p, n)
    status, _ = decide_paths(x, p, check_every=1)
    covered = status == "undecided"
    assert float(np.mean(covered)) >= 1 - _margin(ALPHA, GATES)
    for row in range(40):
        lower, upper = confidence_sequence(x[row], grid=400)
        grid_covered = bool(np.all((lower <= p) & (p <= upper)))
        assert grid_covered or not covered[row]  # the grid bounds are rounded outwards


# -- consistency --------------------------------------------------------------------------------


def _reference_cs(x: np.ndarray, alpha: float, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Straight from the paper, one grid point at a time, no monotonicity shortcut.

    Hedged capital max(theta K+, (1 - theta) K-), theta = 1/2, PrPl bets truncated at 1/(2m) and
    1/(2(1 - m)); a mean leaves the CS for good once the capital reaches 1/alpha.
    """
    t = np.arange(1, len(x) + 1)
    mu = (0.5 + np.cumsum(x)) / (t + 1)
    var = (0.25 + np.cumsum((x - mu) ** 2)) / (t + 1)
    lam = np.sqrt(2 * np.log(2 / alpha) / (np.r_[0.25, var[:-1]] * t * np.log(1 + t)))
    ms = np.arange(grid + 1) / grid
    inside = np.empty((grid + 1, len(x)), dtype=bool)
    for j, m in enumerate(ms):
        lam_plus = np.minimum(lam, 0.5 / m) if m > 0 else lam
        lam_minus = np.minimum(lam, 0.5 / (1 - m)) if m < 1 else lam
        capital = np.maximum(
            0.5 * np.cumprod(1 + lam_plus * (x - m)), 0.5 * np.cumprod(1 - lam_minus * (x - m))
        )
        inside[j] = np.logical_and.accumulate(capital < 1 / alpha)
    lower = np.array([max(ms[inside[:, i]].min() - 1 / grid, 0.0) for i in range(len(x))])
    upper = np.array([min(ms[inside[:, i]].max() + 1 / grid, 1.0) for i in range(len(x))])
    return lower, upper


@pytest.mark.parametrize(("p", "seed"), [(0.5, 1), (0.9, 2), (0.2, 3), (1.0, 4)])
def test_confidence_sequence_matches_the_papers_construction(p: float, seed: int) -> None:
    x = (np.random.default_rng(seed).random(300) < p).astype(float)
    lower, upper = confidence_sequence(x, 0.95, grid=200)
    ref_lower, ref_upper = _reference_cs(x, 0.05, 200)
    np.testing.assert_allclose(lower, ref_lower, atol=1e-12)
    np.testing.assert_allclose(upper, ref_upper, atol=1e-12)
    assert np.all(np.diff(lower) >= 0)
    assert np.all(np.diff(upper) <= 0)


def test_bets_are_predictable() -> None:
    """The bet for sample t uses samples 1..t-1 only (the CS is invalid otherwise)."""
    x = (np.random.default_rng(5).random(200) < 0.6).astype(float)
    for horizon in (None, 100):
        lam = _bets(x, 0.05, horizon)
        for k in (0, 1, 50, 199):
            y = x.copy()
            y[k] = 1 - y[k]
            np.testing.assert_array_equal(_bets(y, 0.05, horizon)[: k + 1], lam[: k + 1])


def test_bounds_depend_only_on_the_past() -> None:
    x = (np.random.default_rng(6).random(400) < 0.7).astype(float)
    lower, upper = confidence_sequence(x, grid=500)
    short_lower, short_upper = confidence_sequence(x[:250], grid=500)
    np.testing.assert_array_equal(lower[:250], short_lower)
    np.testing.assert_array_equal(upper[:250], short_upper)


def test_decision_agrees_with_the_batch_simulator_and_its_bounds() -> None:
    rng = np.random.default_rng(8)
    thr, n, grid = 0.6, 600, 500
    x = rng.random((100, n)) < rng.uniform(0.5, 0.7, size=(100, 1))
    status, used = decide_paths(x, thr, check_every=BATCH, horizon=300)
    seen = set()
    for row in range(len(x)):
        state = sequential_decision(x[row], thr, check_every=BATCH, horizon=300)
        assert (state.status, state.used) == (status[row], used[row])
        assert state.successes == int(x[row, : state.used].sum())
        seen.add(state.status)
        if state.status == "pass":
            assert state.lower > thr
        elif state.status == "fail":
            assert state.upper < thr
        else:
            assert state.lower <= thr <= state.upper
            assert state.used == n
        lower, upper = confidence_sequence(x[row, : state.used], grid=grid, horizon=300)
        assert lower[-1] <= state.lower <= lower[-1] + 1 / grid
        assert upper[-1] - 1 / grid <= state.upper <= upper[-1]
    assert seen == {"pass", "fail", "undecided"}


def test_stop_now_after_every_batch_is_the_full_scan() -> None:
    """Calling it on the prefix after each batch stops at the batch the full scan stops at."""
    x = np.random.default_rng(9).random(3000) < 0.62
    full = sequential_decision(x, 0.55, check_every=BATCH, horizon=1500)
    assert full.status == "pass"
    for end in range(BATCH, len(x) + 1, BATCH):
        state = sequential_decision(x[:end], 0.55, check_every=BATCH, horizon=1500)
        if state.decided:
            break
    assert state == full


# -- determinism, edge cases ----------------------------------------------------------------------


def test_deterministic_and_input_types_agree() -> None:
    x = np.random.default_rng(10).random(700) < 0.8
    states = [
        sequential_decision(v, 0.7, check_every=16)
        for v in (x, x.tolist(), x.astype(int).tolist(), x.astype(np.float32), x.astype(np.uint8))
    ]
    assert all(s == states[0] for s in states)
    assert states[0].status == "pass"
    assert 0.7 < states[0].lower <= states[0].estimate
    assert (
        decide_paths(_paths(3, 0.5, 100), 0.4)[1].tolist()
        == decide_paths(_paths(3, 0.5, 100), 0.4)[1].tolist()
    )


def test_state_is_frozen_and_serialisable() -> None:
    state = sequential_decision([True] * 100, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.used = 3  # type: ignore[misc]
    doc = state.to_json()
    assert doc["status"] == "pass"
    assert doc["used"] == state.used
    assert doc["confidence"] == 0.95
    assert SequentialState(**doc) == state


def test_no_outcomes_is_undecided() -> None:
    state = sequential_decision([], 0.5)
    assert (state.status, state.used, state.lower, state.upper) == ("undecided", 0, 0.0, 1.0)
    assert math.isnan(state.estimate)
    assert not state.decided
    lower, upper = confidence_sequence([])
    assert lower.shape == upper.shape == (0,)
    status, used = decide_paths(np.zeros((3, 0)), 0.5)
    assert status.tolist() == ["undecided"] * 3
    assert used.tolist() == [0] * 3


def test_required_zero_passes_without_samples() -> None:
    for outcomes in ([], [False] * 50):
        state = sequential_decision(outcomes, 0.0)
        assert (state.status, state.used, state.lower, state.upper) == ("pass", 0, 0.0, 1.0)
    status, used = decide_paths(np.zeros((2, 10)), 0.0)
    assert status.tolist() == ["pass", "pass"]
    assert used.tolist() == [0, 0]


def test_required_one_never_passes_and_fails_on_failures() -> None:
    ones = sequential_decision([True] * 10_000, 1.0, check_every=BATCH)
    assert ones.status == "undecided"
    assert ones.used == 10_000
    assert ones.upper == 1.0
    assert ones.lower > 0.999
    some = sequential_decision([True] * 100 + [False] * 20, 1.0)
    assert some.status == "fail"
    assert some.upper < 1.0


def test_extremes_decide_quickly() -> None:
    assert sequential_decision([True] * 200, 0.9).status == "pass"
    assert sequential_decision([False] * 200, 0.1).status == "fail"
    assert sequential_decision([True] * 200, 0.9).used < 100


# -- argument errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0, 1, 1.5, -0.1, math.nan, True, "0.95", None])
def test_bad_confidence(confidence: object) -> None:
    with pytest.raises(RobustConfigError, match="confidence"):
        sequential_decision([True], 0.5, confidence)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="confidence"):
        confidence_sequence([True], confidence)  # type: ignore[arg-type]


def test_percentages_get_a_hint() -> None:
    with pytest.raises(RobustConfigError, match=r"Did you mean confidence=0\.95"):
        sequential_decision([True], 0.5, 95)
    with pytest.raises(RobustConfigError, match=r"Did you mean required=0\.7"):
        sequential_decision([True], 70)


@pytest.mark.parametrize("required", [-0.01, 1.01, math.nan, math.inf, False, "0.5", None])
def test_bad_required(required: object) -> None:
    with pytest.raises(RobustConfigError, match="required"):
        sequential_decision([True], required)  # type: ignore[arg-type]
    with pytest.raises(RobustConfigError, match="required"):
        decide_paths(np.ones((1, 1)), required)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "outcomes", [[0, 1, 2], [0.5], [math.nan], ["1", "0"], [[True, False]], np.array(True), [None]]
)
def test_bad_outcomes(outcomes: object) -> None:
    with pytest.raises(RobustConfigError, match="outcomes"):
        sequential_decision(outcomes, 0.5)  # type: ignore[arg-type]


def test_decide_paths_needs_a_matrix() -> None:
    with pytest.raises(RobustConfigError, match="2-D"):
        decide_paths(np.ones(5), 0.5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("check_every", 0),
        ("check_every", -3),
        ("check_every", 1.5),
        ("check_every", True),
        ("horizon", 0),
        ("horizon", 2.0),
    ],
)
def test_bad_integers(name: str, value: object) -> None:
    with pytest.raises(RobustConfigError, match=name):
        sequential_decision([True], 0.5, **{name: value})  # type: ignore[arg-type]
    with pytest.raises(RobustConfigError, match="grid"):
        confidence_sequence([True], grid=0)
