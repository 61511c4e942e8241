"""The quick-start models: a small CNN trained (once, then cached) on the fixture's train data.

Used by the plugin's ``model`` and ``robust_model_factory`` fixtures and the quick-start suite.
The training spec, and therefore the cache key, includes the data fingerprint, the recipe and
its hyper-parameters and the seed: change any of them and a new model is trained.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pytest_robust.cache import CachedModel, CheckpointCache
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.models import small_cnn
from pytest_robust.training import Recipe, TrainConfig, seeded, train

log = logging.getLogger(__name__)

#: Hyper-parameters of the quick-start models (measured: see BENCHMARKS.md).
QUICKSTART_TRAINING: dict[Recipe, TrainConfig] = {
    Recipe.STANDARD: TrainConfig(recipe=Recipe.STANDARD, epochs=8, batch_size=64, lr=2e-3),
    Recipe.PGD_AT: TrainConfig(
        recipe=Recipe.PGD_AT, epochs=8, batch_size=64, lr=2e-3,
        at_eps=8 / 255, at_steps=5, at_step_size=2.5 / 255,
    ),
}
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
    recipe = Recipe.coerce(recipe)
    base = QUICKSTART_TRAINING[recipe]
    config = TrainConfig(**{**base.to_json(), "recipe": recipe, "seed": seed})
    spec: dict[str, Any] = {
        "name": f"quickstart-small_cnn-{recipe.value}",
        "arch": "small_cnn",
        "width": WIDTH,
        "num_classes": train_data.num_classes,
        "train": config.to_json(),
        "data": {"name": train_data.name, "n": len(train_data), "fingerprint": train_data.fingerprint()},
    }

    def make() -> nn.Module:
        with seeded(seed):
            return small_cnn(train_data.num_classes, WIDTH)

    def fit(model: nn.Module) -> dict[str, Any]:
        report = train(model, train_data, config, device=device, progress=progress)
        model.to("cpu")
        return report.to_json()

    cached = CheckpointCache(cache_dir).get_or_build(spec, make, fit, force=force)
    cached.model.eval()
    return cached
