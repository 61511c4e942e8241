"""The in-memory data set every evaluation runs on."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from pytest_robust.errors import RobustDataError


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageDataset:
    """Images as a float32 tensor ``(N, C, H, W)`` in [0, 1] and int64 labels ``(N,)``.

    ``classes[i]`` names label ``i``. ``source`` is plain JSON describing where the data came
    from (generator and seed, or folder; a folder's ``original_sizes`` counts the files' sizes
    before they were resized, see :func:`resize_note`); ``synthetic`` says whether it is generated
    data.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    synthetic: bool
    source: dict[str, Any] = field(default_factory=dict)
    #: each sample's identity (a file path relative to the data root, or an index in the generated
    #: set); empty means "the position in this data set". Subsets keep their samples' identities, so
    #: a baseline can pair the same samples across runs.
    ids: tuple[str, ...] = ()
    #: memo of :meth:`fingerprint` (data sets are treated as immutable once built)
    _memo: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

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
        if self.ids and len(self.ids) != self.images.shape[0]:
            raise RobustDataError(
                f"data set {self.name!r}: {self.images.shape[0]} images but {len(self.ids)} sample ids"
            )
        if len(self.classes) < 2:
            raise RobustDataError(f"data set {self.name!r}: needs at least 2 classes, got {self.classes}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sample_ids(self) -> tuple[str, ...]:
        """Every sample's identity: ``ids`` when the loader recorded them, else the position."""
        return self.ids or tuple(str(i) for i in range(len(self)))

    def select(self, index: torch.Tensor | list[int]) -> ImageDataset:
        """The samples at ``index`` (in that order), with their identities and ``source``."""
        index_ = torch.as_tensor(index, dtype=torch.long)
        ids = self.sample_ids()
        return ImageDataset(
            images=self.images[index_],
            labels=self.labels[index_],
            classes=self.classes,
            name=self.name,
            synthetic=self.synthetic,
            source=self.source,
            ids=tuple(ids[i] for i in index_.tolist()),
        )

    def subset(self, n: int | None, *, seed: int = 0) -> ImageDataset:
        """``n`` samples drawn per class in proportion to the class sizes (all when ``n`` is None
        or not smaller than the set).

        The draw is a fixed function of ``seed`` (an explicit generator) and keeps the data set's
        order, so the same ``n`` and seed always give the same samples. Taking the first ``n``
        instead would be wrong for folder data, which is ordered by class: the first 256 ISIC
        test images are all benign.
        """
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise RobustDataError(f"data set {self.name!r}: subset size must be >= 1, got {n}")
        index = stratified_indices(self.labels, n, seed=seed)
        chosen = self.select(index)
        subset = {"n": n, "seed": seed, "method": "stratified"}
        return replace(chosen, source={**self.source, "subset": subset}, _memo={})

    def fingerprint(self) -> str:
        """SHA-256 over the exact tensors and class names: equal fingerprints, equal data.

        Computed once per data set object (about 1 s for the ISIC test split at 224 px).
        """
        cached = self._memo.get("fingerprint")
        if cached is not None:
            return cached
        h = hashlib.sha256()
        h.update(repr(self.classes).encode())
        h.update(str(tuple(self.images.shape)).encode())
        h.update(self.images.detach().cpu().contiguous().numpy().tobytes())
        h.update(self.labels.detach().cpu().contiguous().numpy().tobytes())
        self._memo["fingerprint"] = h.hexdigest()
        return self._memo["fingerprint"]

    def describe(self) -> str:
        kind = "synthetic" if self.synthetic else "real"
        _c, hh, ww = self.images.shape[1:]
        resized = resize_note(self.source)
        note = f"; {resized}" if resized else ""
        return f"{self.name} ({kind}, n={len(self)}, {ww}x{hh}px{note}, classes={list(self.classes)})"


def resize_note(source: Mapping[str, Any]) -> str | None:
    """``40 images of 48x48 resized to 32x32`` from a data set's ``source`` (its ``original_sizes``,
    ``"WxH"`` → files, and ``size``); None when nothing was resized or the source does not say."""
    sizes = source.get("original_sizes")
    size = source.get("size")
    if not isinstance(sizes, Mapping) or not isinstance(size, int):
        return None
    target = f"{size}x{size}"
    other = {str(k): int(v) for k, v in sizes.items() if k != target}
    if not other:
        return None
    resized = sum(other.values())
    total = sum(int(v) for v in sizes.values())
    count = f"{resized} images" if resized == total else f"{resized} of {total} images"
    if len(other) == 1:
        what = f"{count} of {next(iter(other))}"
    else:
        ranked = sorted(other.items(), key=lambda kv: (-kv[1], kv[0]))
        listed = ", ".join(f"{k}: {v}" for k, v in ranked[:3])
        what = f"{count} ({listed}{', ...' if len(ranked) > 3 else ''})"
    squashed = any(_non_square(k) for k in other)
    return f"{what} resized to {target}" + (" (non-square ones squashed, not cropped)" if squashed else "")


def _non_square(size: str) -> bool:
    w, _, h = size.partition("x")
    return w != h


def stratified_indices(labels: torch.Tensor, n: int, *, seed: int) -> torch.Tensor:
    """Sorted indices of ``n`` samples, each class represented in proportion to its size.

    Per-class quotas by largest remainder (ties to the lower label); within a class, a seeded
    random permutation picks the members.
    """
    total = int(labels.numel())
    classes, counts = torch.unique(labels, return_counts=True)
    exact = [int(c) * n / total for c in counts]
    quota = [int(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - quota[i]), i))
    for i in order[: n - sum(quota)]:
        quota[i] += 1
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label, q in zip(classes.tolist(), quota, strict=True):
        members = (labels == label).nonzero().flatten()
        perm = torch.randperm(members.numel(), generator=generator)
        chosen.append(members[perm[:q]])
    return torch.cat(chosen).sort().values
