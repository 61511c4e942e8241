"""The quick-start models: a small CNN trained (once, then cached) on the fixture's train data.

Used by the plugin's ``model`` and ``robust_model_factory`` fixtures and the quick-start suite.
They are ordinary benchmark checkpoints (:func:`~pytest_robust.checkpoints.build_checkpoint`) of
``small_cnn`` under the :data:`~pytest_robust.recipes.QUICKSTART` training profile: the cache key
includes the data fingerprint, the recipe and its hyper-parameters and the seed, so changing any
of them trains a new model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from pytest_robust.cache import CachedModel
from pytest_robust.checkpoints import build_checkpoint
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.recipes import QUICKSTART
from pytest_robust.training import Recipe, TrainConfig

log = logging.getLogger(__name__)

#: Hyper-parameters of the quick-start models (measured: see BENCHMARKS.md), at seed 0.
QUICKSTART_TRAINING: dict[Recipe, TrainConfig] = {r: QUICKSTART.train_config(r, seed=0) for r in Recipe}
ARCH = "small_cnn"
WIDTH = 16


def quickstart_model(
    train_data: ImageDataset,
    recipe: str | Recipe,
    *,
    cache_dir: Path,
    seed: int = 0,
    device: torch.device | str = "cpu",
    force: bool = False,
    progress: bool | None = None,
) -> CachedModel:
    """The small CNN trained with ``recipe`` on ``train_data``, from the cache when present."""
    return build_checkpoint(
        ARCH,
        recipe,
        QUICKSTART,
        train_data,
        seed=seed,
        cache_dir=cache_dir,
        device=device,
        force=force,
        progress=progress,
    )
