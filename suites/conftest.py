"""Suite configuration: the ISIC fixtures (``fixtures/``) and the evaluation data they imply."""

from __future__ import annotations

import pytest

from pytest_robust.data.dataset import ImageDataset

pytest_plugins = ["fixtures.isic"]


@pytest.fixture(scope="session")
def robust_data(isic_test: ImageDataset) -> ImageDataset:
    """Evaluate on the ISIC test split (synthetic stand-in without --robust-data)."""
    return isic_test


@pytest.fixture(scope="session")
def robust_train_data(isic_train: ImageDataset) -> ImageDataset:
    """The quick-start models train on the ISIC training split (synthetic stand-in by default)."""
    return isic_train
