"""The benchmark suite's threshold table: one entry per profile, and no key that matches nothing."""

from __future__ import annotations

import pytest

from pytest_robust.architectures import REFERENCE_ARCHITECTURES
from pytest_robust.config import PROFILES
from suites import test_isic_benchmark as suite

CHECKS_PER_MODEL = {"monotone", "pgd_vs_fgsm", "aa_vs_pgd", "majority", "sound"}
CHECKS_PER_ARCH = {"collapse", "at_gain"}


def test_every_profile_has_thresholds() -> None:
    assert set(suite.THRESHOLDS) == set(PROFILES)


@pytest.mark.parametrize("profile", sorted(suite.THRESHOLDS))
def test_expected_failure_keys_name_real_checks(profile: str) -> None:
    models = {f"{a}-{r}" for a in REFERENCE_ARCHITECTURES for r in suite.RECIPES}
    for key, reason in suite.THRESHOLDS[profile].expected_failures.items():
        check, _, target = key.partition(":")
        if check in CHECKS_PER_MODEL:
            assert target in models, key
        else:
            assert check in CHECKS_PER_ARCH, key
            assert target in REFERENCE_ARCHITECTURES, key
        assert len(reason) > 20, f"{key}: say what was measured"


def test_thresholds_are_fractions() -> None:
    for t in suite.THRESHOLDS.values():
        assert 0 <= t.collapse_max <= 1
        assert -1 <= t.at_gain_min <= 1
        assert 0 <= t.convnext_gate <= 1
        assert 0 <= t.attack_order_slack < 0.5
        assert 0 <= t.monotone_slack < 0.5


def test_only_the_plumbing_profile_turns_failed_checks_into_expected_failures() -> None:
    """``smoke`` is a plumbing check (its config says why): a failed check is an expected failure
    naming that notice; under ``ci`` and ``paper`` the same failure fails the test."""
    from dataclasses import replace

    assert PROFILES["smoke"].plumbing
    assert PROFILES["ci"].plumbing is None
    assert PROFILES["paper"].plumbing is None
    smoke = replace(suite.THRESHOLDS["smoke"], plumbing=PROFILES["smoke"].plumbing)
    with pytest.raises(pytest.xfail.Exception, match="plumbing check, not a measurement"):
        smoke.check("monotone:resnet50-standard", False, "robust accuracy rises with eps")
    smoke.check("monotone:resnet50-standard", True, "holds")  # a check that holds passes
    with pytest.raises(pytest.fail.Exception, match="robust accuracy rises with eps"):
        suite.THRESHOLDS["ci"].check("monotone:resnet50-standard", False, "robust accuracy rises with eps")


def test_the_smoke_curve_keeps_the_table_eps() -> None:
    for t in suite.THRESHOLDS.values():
        assert suite.EPS in t.eps_curve
        assert len(t.eps_curve) >= 2
