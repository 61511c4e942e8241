"""Under pytest-xdist the benchmark suite hands out one architecture per worker (suites/conftest.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pytest_robust.architectures import REFERENCE_ARCHITECTURES
from suites.conftest import architecture_group, pytest_xdist_make_scheduler

BENCH = "suites/test_isic_benchmark.py::"


@pytest.mark.parametrize(
    ("nodeid", "group"),
    [
        (BENCH + "test_fgsm[convnext_tiny-standard]", "convnext_tiny"),
        (BENCH + "test_fgsm[convnext_tiny-pgd-at]", "convnext_tiny"),
        (BENCH + "test_standard_model_collapses_under_pgd[resnet50]", "resnet50"),
        (BENCH + "test_worst_case[mobilenetv2_100-pgd-at]", "mobilenetv2_100"),
        ("suites/test_quickstart.py::test_candidate_is_robust", "quickstart"),
        # the tests across architectures are units of their own
        (
            BENCH + "test_ranking_of_pgd_at_models_under_autoattack",
            BENCH + "test_ranking_of_pgd_at_models_under_autoattack",
        ),
    ],
)
def test_each_test_belongs_to_its_architecture(nodeid: str, group: str) -> None:
    assert architecture_group(nodeid) == group


def test_every_architecture_test_of_the_suite_has_its_group(pytestconfig: pytest.Config) -> None:
    """The real suite's parametrisations: 16 tests per architecture, none lost to another unit."""
    import suites.test_isic_benchmark as suite

    per_arch = {a: 0 for a in REFERENCE_ARCHITECTURES}
    for name in dir(suite):
        func = getattr(suite, name)
        for mark in getattr(func, "pytestmark", []):
            if mark.name != "parametrize":
                continue
            for param in mark.args[1]:
                values = param.values if hasattr(param, "values") else (param,)
                nodeid = f"{BENCH}{name}[{'-'.join(str(v) for v in values)}]"
                per_arch[architecture_group(nodeid)] += 1
    assert set(per_arch.values()) == {16}
    # heaviest first: the scheduler hands the units out in collection order (ties)
    assert suite.BY_COST[0] == "convnext_tiny"
    assert sorted(suite.BY_COST) == sorted(REFERENCE_ARCHITECTURES)


def test_the_scheduler_groups_by_architecture_only_under_the_default_distribution() -> None:
    pytest.importorskip("xdist")
    from xdist.scheduler import LoadScopeScheduling

    def config(dist: str) -> Any:
        values = {"dist": dist, "tx": ["popen", "popen"], "numprocesses": None}
        return SimpleNamespace(getvalue=values.get, option=SimpleNamespace(**values, maxschedchunk=None))

    for dist in ("each", "loadfile", "loadscope", "worksteal"):
        assert pytest_xdist_make_scheduler(config(dist), None) is None  # left as asked
    try:
        scheduler = pytest_xdist_make_scheduler(config("load"), None)
    except Exception as exc:  # pragma: no cover - a constructor change in pytest-xdist
        pytest.fail(f"pytest-xdist's LoadScopeScheduling changed: {exc!r}")
    assert isinstance(scheduler, LoadScopeScheduling)
    assert scheduler._split_scope(BENCH + "test_fgsm[densenet121-pgd-at]") == "densenet121"
