"""A run's default data: one loader for the plugin's fixtures and the suites', one table of sizes.

Without ``--robust-data`` the data is the embedded synthetic dermoscopy set, of the sizes in
:data:`SYNTHETIC_SIZES` (one entry per profile); with it, the folder's ``train/`` or ``test/`` split
(or a flat folder as the test split), decoded at :func:`image_size`. The suites parametrise the
same loader: ``layout="isic"`` reads the Kaggle ISIC layout with its fixed classes (benign 0,
malignant 1) through the decode cache, ``train_set="benchmark"`` is the five-architecture
benchmark's training set.

Errors are :class:`~pytest_robust.errors.RobustDataError`; the plugin turns them into a usage
error that stops the run (:func:`pytest_robust.plugin.load_default_split`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal

from pytest_robust.errors import RobustDataError

if TYPE_CHECKING:
    from pytest_robust.config import RobustConfig
    from pytest_robust.data.dataset import ImageDataset


@dataclass(frozen=True, slots=True, kw_only=True)
class SyntheticSizes:
    """How many synthetic images each role gets under one profile."""

    #: the training set of the plugin's default models (the quick-start small CNN)
    train: int
    #: the five-architecture benchmark's training set: half the ISIC split (2637), so the cold CI
    #: run (ten models, training included) fits a job on 2 cores
    benchmark_train: int
    #: the evaluation set, of the ISIC test split's size; each evaluation draws the profile's n from it
    test: int


_SIZES = SyntheticSizes(train=2048, benchmark_train=1024, test=660)

#: The synthetic set's sizes per profile. ``smoke`` (a plumbing check in under two minutes cold)
#: trains the default models (the quick-start CNN: 8 epochs, PGD-AT with 5 steps) on 512 images:
#: measured (seed 0, n=32) 0.906 clean, 0.844 under PGD and AutoAttack at 4/255 for the PGD-AT
#: model, in a third of the time of 2048.
SYNTHETIC_SIZES: Final[Mapping[str, SyntheticSizes]] = MappingProxyType(
    {"smoke": SyntheticSizes(train=512, benchmark_train=1024, test=660), "ci": _SIZES, "paper": _SIZES}
)

Split = Literal["train", "test"]


def synthetic_sizes(rc: RobustConfig) -> SyntheticSizes:
    return SYNTHETIC_SIZES.get(rc.profile.name, _SIZES)


def image_size(rc: RobustConfig) -> int:
    """The side images are loaded at: the training profile's (so evaluation and training agree),
    else the evaluation profile's (32 px for ``smoke`` and ``ci``, 224 for ``paper``)."""
    from pytest_robust.recipes import PROFILES

    training = PROFILES.get(rc.profile.name)
    size = training.image_size if training is not None else None
    return size if size is not None else rc.profile.image_size


def load_default_split(
    rc: RobustConfig,
    split: Split,
    *,
    layout: Literal["folder", "isic"] = "folder",
    train_set: Literal["default", "benchmark"] = "default",
) -> ImageDataset:
    """The ``split`` of the run's data (``rc.data``), or of the synthetic set when none is given.

    ``layout="folder"``: any ImageFolder layout (class folders, optionally under ``train/`` and
    ``test/``; a flat folder is a test split only). ``layout="isic"``: the Kaggle ISIC layout,
    decoded once into ``<cache dir>/decoded``. ``train_set`` picks the synthetic training set's
    size (:class:`SyntheticSizes`).
    """
    if split not in ("train", "test"):
        raise RobustDataError(f"unknown split {split!r}; use 'train' or 'test'")
    size = image_size(rc)
    if rc.data is None:
        from pytest_robust.data.synthetic import generate_synthetic

        sizes = synthetic_sizes(rc)
        n = (
            sizes.test
            if split == "test"
            else (sizes.benchmark_train if train_set == "benchmark" else sizes.train)
        )
        return generate_synthetic(n, size=size, seed=rc.seed, split=split)
    if layout == "isic":
        from pytest_robust.data.isic import load_isic_folder

        return load_isic_folder(
            rc.data,
            split=split,
            size=size,
            cache_dir=rc.resolved_cache_dir() / "decoded",
            skip_unreadable=rc.skip_unreadable,
        )
    has_splits = (rc.data / "train").is_dir() and (rc.data / "test").is_dir()
    if split == "train" and not has_splits:
        raise RobustDataError(
            f"{rc.data} has no train/ and test/ sub-folders, so the default model fixtures cannot "
            "train on it; provide your own `model` fixture or a folder with both splits"
        )
    from pytest_robust.data.folder import load_image_folder

    return load_image_folder(rc.data, size=size, split=split if has_splits else None)
