"""The generic image-folder loader (ImageFolder layout), for ``--robust-data PATH``.

Two layouts are accepted::

    PATH/<class>/*.{jpg,jpeg,png,bmp}              (flat: the whole folder is the data set)
    PATH/{train,test}/<class>/*.{jpg,jpeg,png,bmp} (split: ``split`` picks the sub-folder)

Class names are the folder names, lower-cased and sorted alphabetically (so ``benign`` is 0 and
``malignant`` is 1). Files and folders whose name starts with ``.`` are ignored, and so are files
with another extension; class folders are not searched recursively. Files are ordered by class,
then by the natural order of their names (``2.jpg`` before ``10.jpg``), so the same folder always
gives the same tensors.

Each image is decoded completely (a truncated file is an error, not a grey stripe), turned
upright from its EXIF orientation, converted to RGB (alpha is dropped; 16-bit greyscale is scaled
from its full range) and squashed to ``size`` x ``size`` with Pillow's bilinear filter, which
widens with the scale factor when shrinking, so downsampling is antialiased (like torchvision's
``antialias=True``); ``reducing_gap`` is left off, so no JPEG draft-mode shortcut changes pixels.
The files' sizes before resizing are counted in ``source["original_sizes"]``, and images that had
another size than ``size`` are announced with a :class:`~pytest_robust.errors.RobustDataWarning`
naming both sizes, so a resize is never silent.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Final

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image, ImageOps

from pytest_robust.config import PROFILES
from pytest_robust.data.dataset import ImageDataset, resize_note
from pytest_robust.errors import RobustDataError, RobustDataWarning

__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "check_root",
    "image_files",
    "load_image_folder",
    "load_one",
    "natural_key",
    "subdirs",
    "to_rgb",
    "unreadable_error",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: Final = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
SPLITS: Final = ("train", "test")
_MAX_LISTED: Final = 10
_LAYOUT_HINT: Final = "expected PATH/<class>/*.jpg or PATH/{train,test}/<class>/*.jpg"
_DIGITS: Final = re.compile(r"(\d+)", re.ASCII)


def natural_key(name: str) -> tuple[tuple[tuple[int, int, str], ...], str]:
    """Sort key that orders runs of digits by value (``img2`` before ``img10``), case-insensitively,
    with the exact name as the final tie-breaker so the order is total."""
    parts = tuple(
        (0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk.casefold())
        for chunk in _DIGITS.split(name)
        if chunk
    )
    return parts, name


def _visible(entries: list[Path]) -> list[Path]:
    return [e for e in entries if not e.name.startswith(".")]


def _broken_link(entry: Path) -> bool:
    """A symbolic link whose target is missing, or a loop of links (neither file nor folder)."""
    return entry.is_symlink() and not entry.exists()


def subdirs(path: Path) -> list[Path]:
    """The visible sub-folders; a broken link there is an error, never silently left out."""
    entries = _visible(list(path.iterdir()))
    broken = [e for e in entries if _broken_link(e) and e.suffix.lower() not in IMAGE_EXTENSIONS]
    if broken:
        listed = ", ".join(repr(e.name) for e in broken[:_MAX_LISTED])
        raise RobustDataError(
            f"{str(path)!r} holds {len(broken)} broken symbolic link(s) (a missing target or a loop): "
            f"{listed}. Fix or remove them: they may be a class folder."
        )
    return sorted((e for e in entries if e.is_dir()), key=lambda p: natural_key(p.name))


def image_files(folder: Path) -> list[Path]:
    """The visible image files; a broken link with an image name is kept (reading it fails, and
    unreadable files are errors) instead of being silently left out."""
    files = (
        e
        for e in _visible(list(folder.iterdir()))
        if (e.is_file() or _broken_link(e)) and e.suffix.lower() in IMAGE_EXTENSIONS
    )
    return sorted(files, key=lambda p: natural_key(p.name))


def check_root(path: str | os.PathLike[str]) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise RobustDataError(f"image folder {str(root)!r} does not exist; check the path ({_LAYOUT_HINT})")
    if not root.is_dir():
        raise RobustDataError(
            f"{str(root)!r} is a file, not a folder; pass the folder that holds the class sub-folders "
            f"({_LAYOUT_HINT})"
        )
    return root.resolve()


def _data_root(root: Path, split: str | None) -> tuple[Path, str | None]:
    """The folder whose sub-folders are the classes, and the split actually used (None: flat)."""
    if split is not None and split not in SPLITS:
        raise RobustDataError(f"unknown split {split!r}; use one of {list(SPLITS)} or None")
    split_dirs = {d.name.lower(): d for d in subdirs(root) if d.name.lower() in SPLITS}
    if not split_dirs:
        return root, None
    if split is None:
        raise RobustDataError(
            f"{str(root)!r} has {'/'.join(sorted(split_dirs))} sub-folders: pass split='train' or "
            "split='test' to choose one (or point at a folder of class sub-folders)"
        )
    if split not in split_dirs:
        raise RobustDataError(
            f"{str(root)!r} has no {split}/ sub-folder (found {sorted(split_dirs)}); add it or choose "
            "another split"
        )
    return split_dirs[split], split


def _classes(data_root: Path) -> list[tuple[str, Path]]:
    """``(lower-cased name, folder)`` per class, sorted by name; checks there are at least two."""
    folders = subdirs(data_root)
    if not folders:
        loose = len(image_files(data_root))
        found = f" (it holds {loose} image files directly)" if loose else ""
        raise RobustDataError(
            f"no class sub-folders in {str(data_root)!r}{found}; put the images in one sub-folder per "
            f"class ({_LAYOUT_HINT})"
        )
    by_name: dict[str, Path] = {}
    for folder in folders:
        name = folder.name.lower()
        if name in by_name:
            raise RobustDataError(
                f"class folders {by_name[name].name!r} and {folder.name!r} in {str(data_root)!r} differ "
                "only in case; merge or rename them"
            )
        by_name[name] = folder
    if len(by_name) < 2:
        raise RobustDataError(
            f"only one class folder ({next(iter(by_name))!r}) in {str(data_root)!r}; a classifier needs "
            "at least 2 classes: add a sub-folder per class"
        )
    return sorted(by_name.items())


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB version of any Pillow mode (palette with transparency, CMYK, L, LA, RGBA, 16-bit, ...)."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode == "I":
        grey = np.clip(np.asarray(image, dtype=np.float64) / 65535.0 * 255.0, 0.0, 255.0)
        return Image.fromarray(np.round(grey).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def load_one(file: Path, size: int) -> NDArray[np.float32]:
    """``(3, size, size)`` float32 in [0, 1]; raises whatever Pillow raises for a bad file."""
    return _load_sized(file, size)[0]


def _load_sized(file: Path, size: int) -> tuple[NDArray[np.float32], str]:
    """:func:`load_one` and the image's upright size before resizing, ``"WxH"``."""
    with Image.open(file) as image:
        image.load()
        upright = ImageOps.exif_transpose(image)
        width, height = upright.size
        rgb = to_rgb(upright)
        resized = rgb.resize((size, size), resample=Image.Resampling.BILINEAR, reducing_gap=None)
        pixels = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
    chw: NDArray[np.float32] = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    return chw, f"{width}x{height}"


def resize_warning(name: str, note: str) -> str:
    """The text of the :class:`RobustDataWarning` of a resized folder: what, and how to change it."""
    profiles = ", ".join(f"{p.name} {p.image_size} px" for p in PROFILES.values())
    return (
        f"image folder {name!r}: {note}. Under pytest, --robust-data loads at the "
        f"profile's image size ({profiles}); to load at another size, override the robust_data "
        "fixture with load_image_folder(path, size=N) (README: 'Bring your own model and data')"
    )


def unreadable_error(failures: list[tuple[Path, str]], data_root: Path) -> RobustDataError:
    listed = "; ".join(f"{f.relative_to(data_root)} ({why})" for f, why in failures[:_MAX_LISTED])
    more = f"; and {len(failures) - _MAX_LISTED} more" if len(failures) > _MAX_LISTED else ""
    return RobustDataError(
        f"{len(failures)} image file(s) in {str(data_root)!r} could not be read: {listed}{more}. "
        "Re-download or remove them."
    )


def load_image_folder(path: str | os.PathLike[str], *, size: int, split: str | None = "test") -> ImageDataset:
    """Load a folder of class sub-folders as an :class:`ImageDataset` of ``size`` x ``size`` RGB images.

    With ``PATH/train`` and/or ``PATH/test`` sub-folders, ``split`` picks one (None is an error);
    for a flat folder ``split`` is ignored and recorded as None in ``source``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise RobustDataError(f"image size must be a positive integer, got {size!r}")
    root = check_root(path)
    data_root, used_split = _data_root(root, split)
    classes = _classes(data_root)
    files: list[tuple[Path, int]] = []
    for label, (name, folder) in enumerate(classes):
        found = image_files(folder)
        if not found:
            raise RobustDataError(
                f"class folder {name!r} ({str(folder)!r}) holds no images with extension "
                f"{sorted(IMAGE_EXTENSIONS)}; add images or remove the folder"
            )
        files.extend((f, label) for f in found)

    images = np.empty((len(files), 3, size, size), dtype=np.float32)
    failures: list[tuple[Path, str]] = []
    sizes: Counter[str] = Counter()
    for i, (file, _) in enumerate(files):
        try:
            images[i], original = _load_sized(file, size)
            sizes[original] += 1
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            failures.append((file, f"{type(exc).__name__}: {exc}"))
    if failures:
        raise unreadable_error(failures, data_root)

    labels = np.fromiter((label for _, label in files), dtype=np.int64, count=len(files))
    logger.info("loaded %d images of %d classes from %s at %dpx", len(files), len(classes), data_root, size)
    source = {
        "kind": "folder",
        "path": str(root),
        "split": used_split,
        "size": size,
        "n_files": len(files),
        # "WxH" before resizing -> files, most common first
        "original_sizes": dict(sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
    note = resize_note(source)
    if note is not None:
        warnings.warn(RobustDataWarning(resize_warning(root.name, note)), stacklevel=2)
    return ImageDataset(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        classes=tuple(name for name, _ in classes),
        name=root.name,
        synthetic=False,
        source=source,
        ids=tuple(file.relative_to(data_root).as_posix() for file, _ in files),
    )
