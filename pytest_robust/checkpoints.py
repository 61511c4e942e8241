"""Benchmark checkpoints: an architecture trained with a recipe under a profile, built once and cached.

The cache key (see :mod:`pytest_robust.cache`) covers the architecture (and
:data:`~pytest_robust.architectures.MODEL_REVISION`), recipe, the profile's
numeric parameters and the resulting training config, the training data's fingerprint, the seed,
the key of the standard checkpoint a PGD-AT model is fine-tuned from (profiles with
``at_init="standard"``), and the torch and timm versions. The metadata records the training
curve, timings, device, thread count and versions.

Training is resumable: its per-epoch state lives in the cache entry's ``resume/`` folder while
it runs (an interrupted build continues after its last completed epoch when called again) and is
removed once the checkpoint is stored.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import shutil
import time
from typing import Any

import torch
from torch import nn

from pytest_robust.architectures import MODEL_REVISION, create_model
from pytest_robust.cache import CachedModel, CheckpointCache, spec_key
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import ResumeStateError, RobustConfigError
from pytest_robust.models import resolve_device
from pytest_robust.recipes import TrainingProfile, get_profile
from pytest_robust.training import Recipe, seeded, train
from pytest_robust.versions import training_versions

__all__ = ["RESUME_DIR", "build_checkpoint", "checkpoint_spec", "library_versions"]

log = logging.getLogger(__name__)

#: The sub-folder of a cache entry that holds the resume state while the model trains.
RESUME_DIR = "resume"
#: Profile fields that do not change the trained weights (kept out of the cache key).
_DESCRIPTIVE = ("description", "deviations")


#: Versions of the libraries that determine the numerics of training (part of the cache spec).
library_versions = training_versions


def training_data(data: ImageDataset, profile: TrainingProfile, *, seed: int) -> ImageDataset:
    """``data`` as ``profile`` trains on it: checked for size, reduced to ``train_subset`` images.

    The subset is a fixed random one (class-ordered folders would otherwise lose a class).
    """
    size = profile.image_size
    if size is not None and tuple(data.images.shape[-2:]) != (size, size):
        h, w = data.images.shape[-2:]
        raise RobustConfigError(
            f"training profile {profile.name!r} trains on {size}x{size} images but {data.name!r} is "
            f"{w}x{h}; load it at that size, e.g. load_image_folder(root, size={size}, split='train')"
        )
    n = profile.train_subset
    if n is None or n >= len(data):
        return data
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    idx = order[:n].sort().values
    return ImageDataset(
        images=data.images[idx],
        labels=data.labels[idx],
        classes=data.classes,
        name=data.name,
        synthetic=data.synthetic,
        source={**data.source, "subset": n, "subset_seed": seed},
    )


def checkpoint_spec(
    arch: str, recipe: str | Recipe, profile: str | TrainingProfile, data: ImageDataset, *, seed: int
) -> dict[str, Any]:
    """The cache spec of a checkpoint (``data`` as trained on: see :func:`training_data`)."""
    recipe, profile = Recipe.coerce(recipe), get_profile(profile)
    init = None
    if profile.fine_tunes(recipe):
        init = spec_key(checkpoint_spec(arch, Recipe.STANDARD, profile, data, seed=seed))
    return {
        "name": f"{arch}-{recipe.value}-{profile.name}",
        "arch": arch,
        "model_revision": MODEL_REVISION,
        "num_classes": data.num_classes,
        "recipe": recipe.value,
        "profile": {k: v for k, v in profile.to_json().items() if k not in _DESCRIPTIVE},
        "train": profile.train_config(recipe, seed=seed).to_json(),
        "data": {
            "name": data.name,
            "n": len(data),
            "shape": list(data.images.shape[1:]),
            "classes": list(data.classes),
            "fingerprint": data.fingerprint(),
        },
        "seed": seed,
        "init": init,
        "versions": library_versions(),
    }


def build_checkpoint(
    arch: str,
    recipe: str | Recipe,
    profile: str | TrainingProfile,
    train_data: ImageDataset,
    *,
    seed: int,
    cache_dir: str | os.PathLike[str],
    device: torch.device | str = "auto",
    force: bool = False,
    progress: bool | None = None,
) -> CachedModel:
    """``arch`` trained with ``recipe`` under ``profile`` on ``train_data``: from the cache, or trained.

    The model comes back on the CPU in eval mode. ``force`` retrains this checkpoint from scratch
    (not the standard checkpoint a fine-tuned PGD-AT model starts from). A PGD-AT model of a
    fine-tuning profile builds (or loads) its standard checkpoint first.
    """
    recipe, profile = Recipe.coerce(recipe), get_profile(profile)
    device = resolve_device(device)
    data = training_data(train_data, profile, seed=seed)
    spec = checkpoint_spec(arch, recipe, profile, data, seed=seed)
    config = profile.train_config(recipe, seed=seed)
    cache = CheckpointCache(cache_dir)
    resume_dir = cache.entry(spec_key(spec)) / RESUME_DIR

    def make() -> nn.Module:
        with seeded(seed):
            return create_model(arch, num_classes=data.num_classes)

    def fit(model: nn.Module) -> dict[str, Any]:
        if force:
            shutil.rmtree(resume_dir, ignore_errors=True)
        if spec["init"] is not None:
            base = build_checkpoint(
                arch,
                Recipe.STANDARD,
                profile,
                train_data,
                seed=seed,
                cache_dir=cache_dir,
                device=device,
                progress=progress,
            )
            model.load_state_dict(base.model.state_dict())
        log.info("training %s on %s (%d images) on %s", spec["name"], data.name, len(data), device)
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        try:
            report = train(
                model, data, config, device=device, progress=progress, resume_dir=resume_dir, label=arch
            )
        except ResumeStateError as exc:  # the cache's own resume state: discard it, never block reruns
            log.warning("%s: discarding it and training from the start", exc)
            shutil.rmtree(resume_dir, ignore_errors=True)
            model.load_state_dict(initial)
            report = train(
                model, data, config, device=device, progress=progress, resume_dir=resume_dir, label=arch
            )
        wall = time.perf_counter() - t0
        model.to("cpu")
        shutil.rmtree(resume_dir, ignore_errors=True)
        return {
            **report.to_json(),
            "wall_seconds": wall,
            "started": started,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "versions": {**library_versions(), "python": platform.python_version()},
            "machine": platform.machine(),
        }

    cached = cache.get_or_build(spec, make, fit, force=force)
    cached.model.eval()
    return cached


def _clean_accuracy(model: nn.Module, data: ImageDataset, batch_size: int = 256) -> tuple[float, float]:
    """Clean accuracy on ``data`` and the fraction of images predicted as the last class."""
    with torch.no_grad():
        pred = torch.cat(
            [model(data.images[i : i + batch_size]).argmax(dim=1) for i in range(0, len(data), batch_size)]
        )
    return float((pred == data.labels).float().mean()), float((pred == data.num_classes - 1).float().mean())


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_robust.checkpoints DATA``: build the benchmark checkpoints, report them.

    Trains (or loads) every architecture x recipe under the profile on ``DATA/train`` and writes,
    per model, the seconds per epoch, the final training accuracy and the clean accuracy on
    ``DATA/test`` as a Markdown table (stdout) and JSON (``--json``).
    """
    import argparse
    import json
    import sys
    from pathlib import Path

    from pytest_robust.architectures import REFERENCE_ARCHITECTURES
    from pytest_robust.config import default_cache_dir
    from pytest_robust.data.folder import load_image_folder

    parser = argparse.ArgumentParser(prog="python -m pytest_robust.checkpoints", description=main.__doc__)
    parser.add_argument("data", type=Path, help="ImageFolder root with train/ and test/ class folders")
    parser.add_argument("--profile", default="ci", help="training profile (default: ci)")
    parser.add_argument("--arch", action="append", help="repeatable; default: the five reference ones")
    parser.add_argument("--recipe", action="append", choices=[r.value for r in Recipe])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: the plugin's cache dir")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--force", action="store_true", help="retrain even when cached")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    size = profile.image_size or 32
    train_set = load_image_folder(args.data, size=size, split="train")
    test_set = load_image_folder(args.data, size=size, split="test")
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for arch in args.arch or REFERENCE_ARCHITECTURES:
        for recipe in args.recipe or [r.value for r in Recipe]:
            cached = build_checkpoint(
                arch,
                recipe,
                profile,
                train_set,
                seed=args.seed,
                device=args.device,
                force=args.force,
                cache_dir=args.cache_dir or default_cache_dir(),
            )
            info = cached.meta["train"]
            accuracy, malignant = _clean_accuracy(cached.model, test_set)
            rows.append(
                {
                    "arch": arch,
                    "recipe": recipe,
                    "hit": cached.hit,
                    "key": cached.key,
                    "epoch_seconds": [round(e["seconds"], 1) for e in info["epochs"]],
                    "train_seconds": round(info["wall_seconds"], 1),
                    "final_train_accuracy": info["final_train_accuracy"],
                    "test_accuracy": accuracy,
                    "test_predicted_last_class": malignant,
                }
            )
            log.info("%s", json.dumps(rows[-1]))
    total = time.perf_counter() - t0
    out = [
        "| arch | recipe | s/epoch | train s | train acc | test acc | pred. malignant |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mean_epoch = sum(r["epoch_seconds"]) / len(r["epoch_seconds"])
        out.append(
            f"| {r['arch']} | {r['recipe']} | {mean_epoch:.1f} | {r['train_seconds']:.0f} | "
            f"{r['final_train_accuracy']:.3f} | {r['test_accuracy']:.3f} | "
            f"{r['test_predicted_last_class']:.2f} |"
        )
    out.append(
        f"\ntotal {total:.0f} s for {len(rows)} models (profile {profile.name}, "
        f"{torch.get_num_threads()} threads)"
    )
    sys.stdout.write("\n".join(out) + "\n")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"profile": profile.to_json(), "total_seconds": total, "rows": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
