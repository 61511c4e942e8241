"""ISIC dermoscopy data: the Kaggle folder layout and the ISIC Archive layout.

Classes are fixed, not read from the folders: :data:`ISIC_CLASSES` = ``("benign", "malignant")``,
so label 0 is benign and label 1 is **malignant, the positive class** of F1, sensitivity and AUC.

Kaggle layout (``fanconic/skin-cancer-malignant-vs-benign``), :func:`load_isic_folder`:
``ROOT/{train,test}/{benign,malignant}/*.jpg``. Split and class folder names match
case-insensitively (``Train/MALIGNANT/`` is fine); any other class folder, a missing or empty one,
or two differing only in case is an error listing what was found. Files are ordered by class, then
naturally by name (:func:`~pytest_robust.data.folder.natural_key`).

ISIC Archive layout, :func:`load_isic_archive`: ``IMAGE_DIR/<isic_id>.{jpg,jpeg,png}`` and a
metadata CSV with an ``isic_id`` column and a label, taken per row from the first that gives one:

1. ``benign_malignant`` (ISIC's own field) or ``diagnosis_1`` (its 2024 taxonomy), when the value
   is ``benign`` or ``malignant`` (``indeterminate...`` values do not count);
2. ``diagnosis`` through :data:`DIAGNOSIS_CLASSES` (lower-cased; ``_``/``-`` read as spaces).

Rows that get no label are an error listing their values (``unknown="error"``, the default) or are
left out and counted per value in ``source["excluded"]`` (``unknown="exclude"``). Left unmapped on
purpose, because sources disagree: actinic keratosis (``akiec``: pre-malignant), atypical
melanocytic proliferation, ``other``, ``unknown``; pass ``diagnosis_map`` to decide them.

The archive has no split. A ``split`` column (values ``train``/``test``) is honoured when present;
otherwise each class is split on its own (stratified): its groups are ordered by
SHA-256(``seed``, group) and moved to ``test`` until ``test_fraction`` of the class's images
(rounded half up; at least one per split for a class of two or more) are there. A group is one
``lesion_id`` when that column is filled (a lesion photographed twice must not leak across the
split), else one ``isic_id``. The split depends only on the metadata rows and the seed, not on
their order nor on which image files are present.

Both loaders decode through :mod:`pytest_robust.data.decode_cache` when ``cache_dir`` is given.
Unreadable files are an error listing them unless ``skip_unreadable=True``; skipped files are
counted in ``source["skipped"]``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import numpy as np
import torch

from pytest_robust.data.dataset import ImageDataset
from pytest_robust.data.decode_cache import decode_images
from pytest_robust.data.folder import SPLITS, check_root, image_files, natural_key, subdirs, unreadable_error
from pytest_robust.data.integrity import ImageRecord
from pytest_robust.errors import RobustDataError

__all__ = [
    "ARCHIVE_SUFFIXES",
    "DIAGNOSIS_CLASSES",
    "ISIC_CLASSES",
    "POSITIVE_LABEL",
    "archive_records",
    "kaggle_records",
    "load_isic_archive",
    "load_isic_folder",
]

log = logging.getLogger(__name__)

ISIC_CLASSES: Final = ("benign", "malignant")
POSITIVE_LABEL: Final = 1  # malignant: the positive class of F1, sensitivity and AUC
ARCHIVE_SUFFIXES: Final = (".jpg", ".jpeg", ".png")
_MALIGNANT: Final = (
    "melanoma", "melanoma metastasis", "basal cell carcinoma", "squamous cell carcinoma",
    "mel", "bcc", "scc",
)  # fmt: skip
_BENIGN: Final = (
    "nevus", "seborrheic keratosis", "pigmented benign keratosis", "benign keratosis",
    "lichenoid keratosis", "solar lentigo", "lentigo nos", "lentigo simplex", "dermatofibroma",
    "vascular lesion", "angioma", "angiokeratoma", "cafe au lait macule", "clear cell acanthoma",
    "sebaceous hyperplasia", "nv", "bkl", "df", "vasc",
)  # fmt: skip
#: ``diagnosis`` value (normalised: lower case, ``_``/``-`` as spaces) -> class; HAM10000 codes too.
DIAGNOSIS_CLASSES: Final[Mapping[str, str]] = MappingProxyType(
    {**dict.fromkeys(_MALIGNANT, "malignant"), **dict.fromkeys(_BENIGN, "benign")}
)
_DIRECT_COLUMNS: Final = ("benign_malignant", "diagnosis_1")
_KAGGLE: Final = "ROOT/{train,test}/{benign,malignant}/*.jpg"
_LISTED: Final = 10


def _check_args(split: str, size: int) -> None:
    if split not in SPLITS:
        raise RobustDataError(f"unknown split {split!r}; use 'train' or 'test'")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise RobustDataError(f"image size must be a positive integer, got {size!r}")


def _by_lower_name(folders: Iterable[Path], where: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder in folders:
        key = folder.name.lower()
        if key in out:
            raise RobustDataError(
                f"folders {out[key].name!r} and {folder.name!r} in {str(where)!r} differ only in case; "
                "merge or rename them"
            )
        out[key] = folder
    return out


def kaggle_records(root: str | os.PathLike[str], *, splits: Sequence[str] = SPLITS) -> list[ImageRecord]:
    """Records of the Kaggle layout for ``splits``, checked (see the module docstring)."""
    base = check_root(root)
    found = _by_lower_name([d for d in subdirs(base) if d.name.lower() in SPLITS], base)
    records: list[ImageRecord] = []
    for split in splits:
        if split not in found:
            raise RobustDataError(
                f"no {split}/ folder in {str(base)!r} (sub-folders: {[d.name for d in subdirs(base)]}); "
                f"expected the Kaggle layout {_KAGGLE}"
            )
        folders = subdirs(found[split])
        classes = _by_lower_name(folders, found[split])
        unexpected = [f.name for f in folders if f.name.lower() not in ISIC_CLASSES]
        missing = [c for c in ISIC_CLASSES if c not in classes]
        if unexpected or missing:
            raise RobustDataError(
                f"class folders of {str(found[split])!r} must be {list(ISIC_CLASSES)} (any case); found "
                f"{[f.name for f in folders]}"
                + (f", unexpected {unexpected}" if unexpected else "")
                + (f", missing {missing}" if missing else "")
                + f". Rename or remove folders to match {_KAGGLE}"
            )
        for label in ISIC_CLASSES:
            files = image_files(classes[label])
            if not files:
                raise RobustDataError(
                    f"class folder {str(classes[label])!r} holds no image files (.jpg/.jpeg/.png/.bmp); "
                    f"both classes need images in the {split} split"
                )
            records.extend(ImageRecord(split=split, label=label, path=f) for f in files)
    return records


def _dataset(
    records: Sequence[ImageRecord],
    *,
    size: int,
    skip_unreadable: bool,
    cache_dir: str | os.PathLike[str] | None,
    name: str,
    base: Path,
    source: dict[str, Any],
) -> ImageDataset:
    """Decode ``records`` (one split) into an :class:`ImageDataset` with the fixed ISIC classes."""
    decoded = decode_images([r.path for r in records], size=size, cache_dir=cache_dir)
    failures = [(records[i].path, why) for i, why in decoded.failures]
    if failures and not skip_unreadable:
        raise RobustDataError(
            f"{unreadable_error(failures, base)} Or skip them: skip_unreadable=True, on the command "
            "line --robust-skip-unreadable (they are counted in source['skipped'])."
        )
    for file, why in failures:
        log.warning("%s: skipped unreadable %s (%s)", name, file, why)
    kept = [records[i] for i in decoded.kept]
    labels = np.fromiter((ISIC_CLASSES.index(r.label) for r in kept), dtype=np.int64, count=len(kept))
    counts = {c: int((labels == k).sum()) for k, c in enumerate(ISIC_CLASSES)}
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise RobustDataError(
            f"the {source['split']} split of {str(base)!r} has no readable {'/'.join(empty)} images "
            f"(per class: {counts}, {len(failures)} skipped); both classes are needed"
        )
    log.info("%s %s: %d images at %dpx, %s", name, source["split"], len(kept), size, counts)
    return ImageDataset(
        images=decoded.images,
        labels=torch.from_numpy(labels),
        classes=ISIC_CLASSES,
        name=name,
        synthetic=False,
        source={
            **source,
            "size": size,
            "n": len(kept),
            "n_per_class": counts,
            "skipped": len(failures),
            "skipped_files": [os.path.relpath(f, base) for f, _ in failures[:_LISTED]],
        },
        ids=tuple(Path(os.path.relpath(r.path, base)).as_posix() for r in kept),
    )


def load_isic_folder(
    root: str | os.PathLike[str],
    *,
    split: Literal["train", "test"],
    size: int,
    skip_unreadable: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ImageDataset:
    """Load one split of the Kaggle layout as float32 ``(N, 3, size, size)`` in [0, 1], int64 labels."""
    _check_args(split, size)
    base = check_root(root)
    source = {"kind": "isic", "layout": "kaggle", "root": str(base), "split": split}
    return _dataset(
        kaggle_records(base, splits=(split,)), size=size, skip_unreadable=skip_unreadable,
        cache_dir=cache_dir, name="isic-kaggle", base=base, source=source,
    )  # fmt: skip


def _normalise(value: str) -> str:
    return " ".join(value.lower().replace("_", " ").replace("-", " ").split())


def _read_metadata(path: Path) -> tuple[set[str], list[dict[str, str]]]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise RobustDataError(f"metadata CSV {str(path)!r} does not exist; check the path") from exc
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise RobustDataError(f"cannot read metadata CSV {str(path)!r}: {exc}") from exc
    frame.columns = columns = [str(c).strip().lower() for c in frame.columns]
    if "isic_id" not in columns or not {*_DIRECT_COLUMNS, "diagnosis"} & set(columns) or frame.empty:
        raise RobustDataError(
            f"metadata CSV {str(path)!r} needs rows with an isic_id column and a label column "
            f"(benign_malignant, diagnosis_1 or diagnosis); it has {len(frame)} rows, columns {columns}"
        )
    rows: list[dict[str, str]] = [
        {str(k): str(v).strip() for k, v in r.items()} for r in frame.to_dict("records")
    ]
    dupes = [i for i, n in Counter(r["isic_id"] for r in rows).items() if n > 1]
    if dupes:
        raise RobustDataError(
            f"metadata CSV {str(path)!r} lists isic_id(s) more than once: {sorted(dupes)[:_LISTED]}"
        )
    return set(columns), rows


def _label(row: Mapping[str, str], table: Mapping[str, str]) -> str | None:
    for column in _DIRECT_COLUMNS:
        value = row.get(column, "").lower()
        if value in ISIC_CLASSES:
            return value
    return table.get(_normalise(row.get("diagnosis", "")))


def _split_by_hash(
    rows: Sequence[Mapping[str, str]], labels: Sequence[str], seed: int, fraction: float
) -> list[str]:
    splits = ["train"] * len(rows)
    for cls in ISIC_CLASSES:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            if labels[i] == cls:
                groups[row.get("lesion_id") or row["isic_id"]].append(i)
        n = sum(len(g) for g in groups.values())
        target = math.floor(n * fraction + 0.5)
        target = min(max(target, 1), n - 1) if n >= 2 else 0
        taken = 0
        for group in sorted(groups, key=lambda g: hashlib.sha256(f"{seed}\0{g}".encode()).hexdigest()):
            if taken >= target:
                break
            for i in groups[group]:
                splits[i] = "test"
            taken += len(groups[group])
    return splits


def archive_records(
    image_dir: str | os.PathLike[str],
    metadata_csv: str | os.PathLike[str],
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    split_column: str | None = "split",
    unknown: Literal["error", "exclude"] = "error",
    diagnosis_map: Mapping[str, str] | None = None,
) -> tuple[list[ImageRecord], dict[str, Any]]:
    """Records of both splits of an ISIC Archive download, and what was left out (JSON).

    Rows without a label are handled per ``unknown``; rows whose image is missing from
    ``image_dir`` are listed in ``info["missing"]`` (the loader decides whether that is an error).
    """
    if not 0.0 < test_fraction < 1.0:
        raise RobustDataError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if unknown not in ("error", "exclude"):
        raise RobustDataError(f"unknown= must be 'error' or 'exclude', got {unknown!r}")
    table = {**DIAGNOSIS_CLASSES, **{_normalise(k): v.lower() for k, v in (diagnosis_map or {}).items()}}
    bad = sorted({v for v in table.values() if v not in ISIC_CLASSES})
    if bad:
        raise RobustDataError(f"diagnosis_map values must be in {list(ISIC_CLASSES)}, got {bad}")
    directory = check_root(image_dir)
    csv_path = Path(metadata_csv).expanduser().resolve()
    columns, rows = _read_metadata(csv_path)
    labelled, labels, unlabelled = [], [], Counter[str]()
    for row in rows:
        label = _label(row, table)
        if label is None:
            value = next((row[c] for c in ("diagnosis", *_DIRECT_COLUMNS) if row.get(c)), "(empty)")
            unlabelled[value] += 1
        else:
            labelled.append(row)
            labels.append(label)
    if unlabelled and unknown == "error":
        shown = ", ".join(f"{v!r} x{n}" for v, n in unlabelled.most_common(_LISTED))
        raise RobustDataError(
            f"{sum(unlabelled.values())} metadata row(s) have no benign/malignant label: {shown}. Map them "
            "with diagnosis_map={...: 'benign'|'malignant'} or pass unknown='exclude' to leave them out"
        )
    column = split_column.lower() if split_column else None
    if column is not None and column in columns:
        splits = [row[column].lower() for row in labelled]
        odd = sorted(set(splits) - set(SPLITS))
        if odd:
            raise RobustDataError(
                f"split column {column!r} of {str(csv_path)!r} has values {odd} besides train/test; fix "
                "them or pass split_column=None for the seeded stratified split"
            )
        method = f"column:{column}"
    else:
        splits = _split_by_hash(labelled, labels, seed, test_fraction)
        method = "seeded-stratified" + ("-by-lesion" if "lesion_id" in columns else "")
    files: dict[str, list[Path]] = defaultdict(list)
    for f in image_files(directory):
        if f.suffix.lower() in ARCHIVE_SUFFIXES:
            files[f.stem].append(f)
    clashes = sorted(stem for stem, fs in files.items() if len(fs) > 1)
    if clashes:
        raise RobustDataError(
            f"{len(clashes)} isic_id(s) have several image files in {str(directory)!r} (e.g. "
            f"{[f.name for f in files[clashes[0]]]}); keep one file per image"
        )
    records, missing = [], []
    for row, label, split in zip(labelled, labels, splits, strict=True):
        found = files.get(row["isic_id"])
        if found:
            records.append(ImageRecord(split=split, label=label, path=found[0]))
        else:
            missing.append((split, row["isic_id"]))
    records.sort(key=lambda r: (r.split, ISIC_CLASSES.index(r.label), natural_key(r.path.name)))
    info = {
        "image_dir": str(directory),
        "metadata": str(csv_path),
        "split_method": method,
        "seed": seed,
        "test_fraction": test_fraction,
        "excluded": dict(unlabelled.most_common()),
        "missing": missing,
    }
    return records, info


def load_isic_archive(
    image_dir: str | os.PathLike[str],
    metadata_csv: str | os.PathLike[str],
    *,
    split: Literal["train", "test"],
    size: int,
    seed: int = 0,
    test_fraction: float = 0.2,
    split_column: str | None = "split",
    unknown: Literal["error", "exclude"] = "error",
    diagnosis_map: Mapping[str, str] | None = None,
    skip_unreadable: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ImageDataset:
    """Load one split of an ISIC Archive download (see the module docstring for labels and split).

    An image listed in the metadata but absent from ``image_dir`` is an error unless
    ``skip_unreadable``, which skips it like an unreadable file (counted in ``source["missing"]``).
    """
    _check_args(split, size)
    records, info = archive_records(
        image_dir, metadata_csv, seed=seed, test_fraction=test_fraction, split_column=split_column,
        unknown=unknown, diagnosis_map=diagnosis_map,
    )  # fmt: skip
    missing = [isic_id for s, isic_id in info.pop("missing") if s == split]
    if missing and not skip_unreadable:
        raise RobustDataError(
            f"{len(missing)} image(s) of the {split} split listed in the metadata are missing from "
            f"{info['image_dir']!r} (looked for <isic_id>{{{','.join(ARCHIVE_SUFFIXES)}}}): "
            f"{', '.join(missing[:_LISTED])}{' ...' if len(missing) > _LISTED else ''}. Download them or "
            "skip them: skip_unreadable=True, on the command line --robust-skip-unreadable"
        )
    chosen = [r for r in records if r.split == split]
    if not chosen:
        raise RobustDataError(
            f"no images in the {split} split of {info['image_dir']!r} ({info['split_method']})"
        )
    source = {"kind": "isic", "layout": "archive", "root": info.pop("image_dir"), "split": split, **info}
    source["missing"] = len(missing)  # skipped like unreadable files
    return _dataset(
        chosen, size=size, skip_unreadable=skip_unreadable, cache_dir=cache_dir, name="isic-archive",
        base=Path(source["root"]), source=source,
    )  # fmt: skip
