from __future__ import annotations

import pytest

from pytest_robust.errors import RobustConfigError
from pytest_robust.gate import validate_min_acc
from pytest_robust.threat import Norm, ThreatModel, format_eps, validate_eps


@pytest.mark.parametrize(
    ("eps", "text"), [(4 / 255, "4/255"), (2 / 255, "2/255"), (0.5, "1/2"), (0.0123456, "0.0123456")]
)
def test_format_eps(eps: float, text: str) -> None:
    assert format_eps(eps) == text


@pytest.mark.parametrize("name", ["Linf", "linf", "inf", "L_inf", Norm.LINF])
def test_norm_aliases(name: str | Norm) -> None:
    assert Norm.coerce(name) is Norm.LINF


def test_unknown_norm_lists_valid_ones() -> None:
    with pytest.raises(RobustConfigError, match=r"unknown norm 'L1'.*'Linf', 'L2'"):
        Norm.coerce("L1")


def test_eps_written_in_pixel_levels_gets_a_hint() -> None:
    with pytest.raises(RobustConfigError, match=r"Did you mean eps=4/255"):
        validate_eps(4)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "4/255", None, True])
def test_bad_eps(bad: object) -> None:
    with pytest.raises(RobustConfigError):
        validate_eps(bad)


def test_eps_above_one_rejected_for_linf_even_beyond_255() -> None:
    with pytest.raises(RobustConfigError, match=r"\[0, 1\]"):
        validate_eps(300.0)


def test_l2_eps_may_exceed_one() -> None:
    assert ThreatModel(norm=Norm.L2, eps=1.5).eps == 1.5


def test_threat_model_json_round_trip() -> None:
    t = ThreatModel.of("linf", 4 / 255)
    assert ThreatModel.from_json(t.to_json()) == t
    assert t.describe() == "Linf eps=4/255"


def test_min_acc_percent_hint() -> None:
    with pytest.raises(RobustConfigError, match=r"Did you mean min_acc=0.7 \(70%\)"):
        validate_min_acc(70)


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan"), "0.7", None])
def test_bad_min_acc(bad: object) -> None:
    with pytest.raises(RobustConfigError):
        validate_min_acc(bad)
