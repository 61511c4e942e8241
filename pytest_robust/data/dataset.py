"""The in-memory data set every evaluation runs on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from pytest_robust.errors import RobustDataError


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageDataset:
    """Images as a float32 tensor ``(N, C, H, W)`` in [0, 1] and int64 labels ``(N,)``.

    ``classes[i]`` names label ``i``. ``source`` is plain JSON describing where the data came
    from (generator and seed, or folder); ``synthetic`` says whether it is generated data.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    synthetic: bool
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dim() != 4:
            raise RobustDataError(
                f"data set {self.name!r}: images must be (N, C, H, W), got shape {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise RobustDataError(
                f"data set {self.name!r}: {self.images.shape[0]} images but labels of shape "
                f"{tuple(self.labels.shape)}"
            )
        if len(self.classes) < 2:
            raise RobustDataError(f"data set {self.name!r}: needs at least 2 classes, got {self.classes}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, n: int | None) -> ImageDataset:
        """The first ``n`` samples (all when ``n`` is None or larger than the set)."""
        if n is None or n >= len(self):
            return self
        return ImageDataset(
            images=self.images[:n],
            labels=self.labels[:n],
            classes=self.classes,
            name=self.name,
            synthetic=self.synthetic,
            source={**self.source, "subset": n},
        )

    def fingerprint(self) -> str:
        """SHA-256 over the exact tensors and class names: equal fingerprints, equal data."""
        h = hashlib.sha256()
        h.update(repr(self.classes).encode())
        h.update(str(tuple(self.images.shape)).encode())
        h.update(self.images.detach().cpu().contiguous().numpy().tobytes())
        h.update(self.labels.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def describe(self) -> str:
        kind = "synthetic" if self.synthetic else "real"
        _c, hh, ww = self.images.shape[1:]
        return f"{self.name} ({kind}, n={len(self)}, {ww}x{hh}px, classes={list(self.classes)})"
