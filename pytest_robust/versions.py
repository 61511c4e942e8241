"""The versions of the libraries behind a number: one implementation for every caller.

* :func:`library_versions` — what decides an evaluation's numbers. It is part of every result-cache
  key (:mod:`pytest_robust.result_cache`) and of every recorded evaluation: its keys and values
  for one environment must never change, or every cached result misses.
* :func:`training_versions` — what decides a trained checkpoint's weights (part of the checkpoint
  cache spec, :mod:`pytest_robust.checkpoints`; the same rule holds).
* :func:`package_versions`, :func:`torch_info` — the report's manifest.

Torch-free at import time: torch (and timm) are imported inside the functions that need them.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from typing import Any, Final

#: Distributions whose versions are part of an evaluation's record and result-cache key (in this
#: order, after ``python`` and ``torch``; ``cuda`` last). Changing it invalidates every cached result.
EVALUATION_DISTRIBUTIONS: Final = ("pytest-robust", "pyautoattack", "timm", "numpy")

#: Distributions the report's manifest lists: everything that decides the numbers and the report's
#: own tools.
REPORT_DISTRIBUTIONS: Final = (
    "pytest-robust",
    "pytest",
    "torch",
    "torchvision",
    "timm",
    "pyautoattack",
    "autoattack",
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "matplotlib",
    "jinja2",
    "pillow",
    "safetensors",
    "pytest-xdist",
)


def installed_versions(distributions: Iterable[str]) -> dict[str, str]:
    """The installed version of each of ``distributions``, in that order; absent ones are left out."""
    from importlib import metadata

    versions: dict[str, str] = {}
    for dist in distributions:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def library_versions() -> dict[str, str]:
    """``python``, ``torch`` (with its local tag, e.g. ``+cu130``), :data:`EVALUATION_DISTRIBUTIONS`
    that are installed, and ``cuda`` (the build's CUDA version, ``"none"`` without a usable GPU)."""
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    versions.update(installed_versions(EVALUATION_DISTRIBUTIONS))
    versions["cuda"] = str(torch.version.cuda) if torch.cuda.is_available() else "none"
    return versions


def training_versions() -> dict[str, str]:
    """Versions of the libraries that determine the numerics of training: ``torch`` (without its
    local tag) and ``timm``."""
    import timm
    import torch

    return {"torch": torch.__version__.split("+")[0], "timm": str(timm.__version__)}


def package_versions() -> dict[str, str]:
    """``python`` and the installed :data:`REPORT_DISTRIBUTIONS` (the report's manifest)."""
    return {"python": platform.python_version(), **installed_versions(REPORT_DISTRIBUTIONS)}


def torch_info() -> dict[str, Any]:
    """torch's version, CUDA build, whether CUDA is usable, the cuDNN version and the GPUs' names."""
    import torch

    info: dict[str, Any] = {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,  # type: ignore[no-untyped-call]
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info
