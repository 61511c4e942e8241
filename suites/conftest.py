"""Suite configuration: the ISIC fixtures (``fixtures/``) and the evaluation data they imply."""

from __future__ import annotations

import pytest

from pytest_robust.data.dataset import ImageDataset
from pytest_robust.plugin import CONFIG_KEY, load_default_split

pytest_plugins = ["fixtures.isic"]


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist's grouping marker, registered here too so that --strict-markers accepts it without
    # pytest-xdist installed (it then means nothing)
    config.addinivalue_line("markers", "xdist_group(name): run the tests of one group in one xdist worker")


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
