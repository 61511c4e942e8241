"""Suite configuration: the ISIC fixtures (``fixtures/``) and the evaluation data they imply."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_robust.data.dataset import ImageDataset
from pytest_robust.plugin import CONFIG_KEY, load_default_split

pytest_plugins = ["fixtures.isic"]


def architecture_group(nodeid: str) -> str:
    """The work unit of a suite test under pytest-xdist: its architecture (both recipes, every
    evaluation, the findings about it), the quick-start module, or the test itself (the tests across
    architectures)."""
    from pytest_robust.architectures import REFERENCE_ARCHITECTURES

    if "test_quickstart.py::" in nodeid:
        return "quickstart"
    params = nodeid.partition("[")[2]
    for arch in REFERENCE_ARCHITECTURES:
        if params.startswith((f"{arch}]", f"{arch}-")):
            return arch
    return nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist's default distribution (``-n N``), one architecture per worker at a time:
    the PGD-AT checkpoint fine-tunes the standard one and the tests share evaluations, so a worker
    never waits on another's cache lock. The architectures are collected heaviest first, and the
    scheduler hands out the largest units first, so the workers finish together. (pytest-xdist's
    own ``--dist loadgroup`` does not group under pytest 9, whose node ids it can no longer suffix.)
    Another ``--dist`` is left as asked."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByArchitecture(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return architecture_group(nodeid)

    return ByArchitecture(config, log)


@pytest.fixture(scope="session")
def robust_data(isic_test: ImageDataset) -> ImageDataset:
    """Evaluate on the ISIC test split (synthetic stand-in without --robust-data)."""
    return isic_test


@pytest.fixture(scope="session")
def robust_train_data(request: pytest.FixtureRequest) -> ImageDataset:
    """The quick-start models train on the ISIC training split with --robust-data (decoded once,
    at the profile's resolution), else on the plugin's synthetic training set (2048 images)."""
    rc = request.config.stash[CONFIG_KEY]
    if rc.data is None:
        return load_default_split(rc, "train")
    isic_train: ImageDataset = request.getfixturevalue("isic_train")
    return isic_train
