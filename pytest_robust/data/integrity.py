"""Data-set integrity report: unreadable files, colour modes, duplicates, leaks across splits.

A robustness number measured on a test split that shares images with the training split, or
that silently dropped unreadable files, is not the number it claims to be. :func:`integrity_report`
checks a list of ``(split, class, path)`` records (:class:`ImageRecord`; any layout can produce
them, and a folder in the ImageFolder layout is read directly) for

- **unreadable or truncated files** — every file is decoded completely; an error lists them, or
  they are counted with ``skip_unreadable=True``;
- **non-RGB images** — counted per Pillow mode (``RGBA``, ``L``, ``CMYK``, ``P``, ...); the loaders
  convert them (:func:`~pytest_robust.data.folder.to_rgb`);
- **exact duplicates** within and across splits — the SHA-256 of the file bytes;
- **near-duplicates across splits** — the perceptual hash pHash (``imagehash.phash``, 16 x 16 =
  256 bits, from the DCT of the 64 x 64 greyscale image) of each image, upright and in RGB; a pair
  is reported when the Hamming distance is at most :data:`NEAR_THRESHOLD`. Byte-identical pairs are
  reported as exact duplicates only. Flipped or rotated copies are not searched for, and images
  with almost no texture (flat or very smooth) hash unstably; pairs within one split are not
  compared (exact duplicates are);
- **class balance** per split.

Calibration of :data:`NEAR_THRESHOLD` (on the real ISIC copy, 660 test x 2637 train images): the
leaked ``test/malignant/507.jpg`` ~ ``train/malignant/439.jpg`` is at distance 0; every pair up to
40 that was inspected is the same lesion (a re-encoded, recoloured or re-framed copy, or another
shot of one lesion in a series); the first different lesions appear at 42 (a small mole on plain
skin) and become common above 56. The 64-bit pHash does not separate them: different small
lesions on plain skin collide at distance 4.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from pytest_robust.data.decode_cache import DECODE_ERRORS
from pytest_robust.data.folder import SPLITS, check_root, image_files, subdirs, to_rgb, unreadable_error
from pytest_robust.errors import RobustDataError

__all__ = [
    "HASH_SIZE",
    "NEAR_THRESHOLD",
    "DuplicateGroup",
    "ImageRecord",
    "IntegrityReport",
    "NearDuplicate",
    "folder_records",
    "integrity_report",
]

log = logging.getLogger(__name__)

#: pHash side: HASH_SIZE**2 = 256 bits.
HASH_SIZE: Final = 16
#: Largest Hamming distance (of 256 bits) reported as a near-duplicate; see the module docstring.
NEAR_THRESHOLD: Final = 40
_SHOWN: Final = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRecord:
    """One image file of a data set: its split (``train``, ``test``, or ``all``), class and path."""

    split: str
    label: str
    path: Path

    def to_json(self) -> dict[str, str]:
        return {"split": self.split, "label": self.label, "path": str(self.path)}


@dataclass(frozen=True, slots=True, kw_only=True)
class DuplicateGroup:
    """Files with byte-identical content (``files[i]`` is in ``splits[i]`` with class ``labels[i]``)."""

    sha256: str
    files: tuple[str, ...]
    splits: tuple[str, ...]
    labels: tuple[str, ...]

    @property
    def cross_split(self) -> bool:
        return len(set(self.splits)) > 1

    @property
    def label_conflict(self) -> bool:
        return len(set(self.labels)) > 1

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "files": list(self.files),
            "splits": list(self.splits),
            "labels": list(self.labels),
            "cross_split": self.cross_split,
            "label_conflict": self.label_conflict,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class NearDuplicate:
    """Two perceptually near-identical images in different splits (``split_a`` < ``split_b``)."""

    a: str
    b: str
    split_a: str
    split_b: str
    label_a: str
    label_b: str
    distance: int

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "split_a": self.split_a,
            "split_b": self.split_b,
            "label_a": self.label_a,
            "label_b": self.label_b,
            "distance": self.distance,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class IntegrityReport:
    """What :func:`integrity_report` found. File names are relative to ``root``."""

    root: str
    n_files: int
    class_balance: dict[str, dict[str, int]]
    unreadable: tuple[tuple[str, str], ...]
    modes: dict[str, int]
    sizes: dict[str, int]
    exact_duplicates: tuple[DuplicateGroup, ...]
    near_duplicates: tuple[NearDuplicate, ...]
    near_threshold: int
    hash_bits: int
    seconds: float

    @property
    def non_rgb(self) -> dict[str, int]:
        """Images per Pillow mode other than RGB (the loaders convert them)."""
        return {mode: n for mode, n in self.modes.items() if mode != "RGB"}

    @property
    def leaked(self) -> tuple[str, ...]:
        """Files of the first split (``test`` before ``train``) of a pair across splits."""
        files = {d.a for d in self.near_duplicates}
        for group in self.exact_duplicates:
            if group.cross_split:
                first = min(group.splits)
                files.update(f for f, s in zip(group.files, group.splits, strict=True) if s == first)
        return tuple(sorted(files))

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "n_files": self.n_files,
            "class_balance": self.class_balance,
            "unreadable": [[f, why] for f, why in self.unreadable],
            "modes": self.modes,
            "non_rgb": self.non_rgb,
            "sizes": self.sizes,
            "exact_duplicates": [g.to_json() for g in self.exact_duplicates],
            "near_duplicates": [d.to_json() for d in self.near_duplicates],
            "near_threshold": self.near_threshold,
            "hash": f"phash-{self.hash_bits}",
            "leaked": list(self.leaked),
            "seconds": self.seconds,
        }

    def summary(self) -> str:
        """One paragraph for a log or a test report."""
        balance = "; ".join(
            f"{split}: " + ", ".join(f"{c} {n}" for c, n in counts.items())
            for split, counts in self.class_balance.items()
        )
        parts = [f"{self.n_files} files in {self.root} checked in {self.seconds:.1f} s ({balance})."]
        if self.unreadable:
            shown = _first([f for f, _ in self.unreadable], ", ")
            parts.append(f"{len(self.unreadable)} unreadable file(s) skipped ({shown}).")
        else:
            parts.append("All files decode completely.")
        non_rgb = self.non_rgb
        modes = ", ".join(f"{m} {n}" for m, n in sorted(non_rgb.items()))
        parts.append(
            f"{sum(non_rgb.values())} non-RGB image(s) converted to RGB ({modes})." if non_rgb else "All RGB."
        )
        groups = self.exact_duplicates
        shown = _first([" = ".join(g.files) for g in groups], "; ")
        parts.append(
            f"{len(groups)} group(s) of byte-identical files ({sum(g.cross_split for g in groups)} across "
            f"splits, {sum(g.label_conflict for g in groups)} with conflicting labels)"
            + (f": {shown}." if groups else ".")
        )
        near = self.near_duplicates
        shown = _first([f"{d.a} ~ {d.b} ({d.distance})" for d in near], "; ")
        parts.append(
            f"{len(near)} near-duplicate pair(s) across splits (pHash-{self.hash_bits} Hamming distance "
            f"<= {self.near_threshold})" + (f", e.g. {shown}" if near else "")
            + f"; {len(self.leaked)} file(s) have a copy in another split."
        )  # fmt: skip
        return " ".join(parts)


def _first(items: Sequence[str], sep: str) -> str:
    return sep.join(items[:_SHOWN]) + (f"{sep}..." if len(items) > _SHOWN else "")


def folder_records(root: str | os.PathLike[str]) -> list[ImageRecord]:
    """Records of an ImageFolder-layout folder: ``root/{train,test}/<class>/*`` or ``root/<class>/*``
    (split ``all``). Split and class names are lower-cased; see :mod:`pytest_robust.data.folder`."""
    base = check_root(root)
    splits = [(d.name.lower(), d) for d in subdirs(base) if d.name.lower() in SPLITS]
    if not splits:
        splits = [("all", base)]
    records = [
        ImageRecord(split=split, label=class_dir.name.lower(), path=file)
        for split, split_dir in splits
        for class_dir in subdirs(split_dir)
        for file in image_files(class_dir)
    ]
    if not records:
        raise RobustDataError(
            f"no image files found in {str(base)!r}; expected PATH/[train|test/]<class>/*.jpg"
        )
    return records


@dataclass(frozen=True, slots=True)
class _Seen:
    sha256: str
    mode: str
    size: str
    phash: NDArray[np.uint8]


def _inspect(path: Path) -> _Seen | str:
    """Hash, decode completely and pHash one file; the reason as a string when it cannot be read."""
    import imagehash

    try:
        payload = path.read_bytes()
        with Image.open(io.BytesIO(payload)) as image:
            image.load()
            mode, size = image.mode, f"{image.width}x{image.height}"
            rgb = to_rgb(ImageOps.exif_transpose(image))
            bits = imagehash.phash(rgb, hash_size=HASH_SIZE).hash
    except DECODE_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"
    return _Seen(hashlib.sha256(payload).hexdigest(), mode, size, np.packbits(bits.ravel()))


def _distances(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> NDArray[np.int64]:
    """Hamming distances between packed hashes ``a`` (n, k) and ``b`` (m, k): |x| + |y| - 2 x.y."""
    xa = np.unpackbits(a, axis=1).astype(np.float32)
    xb = np.unpackbits(b, axis=1).astype(np.float32)
    dist = xa.sum(1)[:, None] + xb.sum(1)[None, :] - 2.0 * (xa @ xb.T)
    out: NDArray[np.int64] = np.rint(dist).astype(np.int64)
    return out


def _near_pairs(
    names: list[str], records: list[ImageRecord], seen: list[_Seen], threshold: int
) -> list[NearDuplicate]:
    by_split: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        by_split[rec.split].append(i)
    splits = sorted(by_split)
    pairs: list[NearDuplicate] = []
    for s, split_a in enumerate(splits):
        for split_b in splits[s + 1 :]:
            ia, ib = by_split[split_a], by_split[split_b]
            hb = np.stack([seen[j].phash for j in ib])
            for start in range(0, len(ia), 512):
                rows = ia[start : start + 512]
                dist = _distances(np.stack([seen[i].phash for i in rows]), hb)
                for r, c in zip(*np.nonzero(dist <= threshold), strict=True):
                    i, j = rows[int(r)], ib[int(c)]
                    if seen[i].sha256 == seen[j].sha256:
                        continue
                    pairs.append(
                        NearDuplicate(
                            a=names[i],
                            b=names[j],
                            split_a=split_a,
                            split_b=split_b,
                            label_a=records[i].label,
                            label_b=records[j].label,
                            distance=int(dist[r, c]),
                        )
                    )
    return sorted(pairs, key=lambda d: (d.distance, d.a, d.b))


def _display_root(records: Sequence[ImageRecord]) -> Path:
    """The deepest folder that holds every record (files are named relative to it)."""
    return Path(os.path.commonpath(sorted({str(r.path.parent) for r in records})))


def integrity_report(
    data: str | os.PathLike[str] | Sequence[ImageRecord],
    *,
    near_threshold: int = NEAR_THRESHOLD,
    skip_unreadable: bool = False,
    workers: int | None = None,
) -> IntegrityReport:
    """Check a data set (a folder, or records from any layout); see the module docstring.

    Unreadable files raise :class:`RobustDataError` listing them unless ``skip_unreadable``.
    ``workers`` threads decode in parallel (default: up to 4, at most the CPU count).
    """
    start = time.perf_counter()
    if isinstance(data, (str, os.PathLike)):
        base = check_root(data)
        records = folder_records(base)
    else:
        records = list(data)
        if not records:
            raise RobustDataError(
                "integrity_report got no records; pass a folder or a non-empty list of ImageRecord"
            )
        base = _display_root(records)
    if not 0 <= near_threshold <= HASH_SIZE * HASH_SIZE:
        raise RobustDataError(
            f"near_threshold must be in [0, {HASH_SIZE * HASH_SIZE}], got {near_threshold!r}"
        )
    n_workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
        results = list(pool.map(_inspect, [r.path for r in records]))

    names = [os.path.relpath(r.path, base) for r in records]
    failures = [(records[i].path, res) for i, res in enumerate(results) if isinstance(res, str)]
    if failures and not skip_unreadable:
        err = unreadable_error(failures, base)
        raise RobustDataError(f"{err} Or pass skip_unreadable=True to count them in the report.")
    ok = [i for i, res in enumerate(results) if not isinstance(res, str)]
    seen = [res for res in results if not isinstance(res, str)]
    kept_records, kept_names = [records[i] for i in ok], [names[i] for i in ok]

    balance: dict[str, dict[str, int]] = {}
    for rec in records:
        balance.setdefault(rec.split, {}).setdefault(rec.label, 0)
        balance[rec.split][rec.label] += 1
    by_sha: dict[str, list[int]] = defaultdict(list)
    for k, s in enumerate(seen):
        by_sha[s.sha256].append(k)
    groups = tuple(
        DuplicateGroup(
            sha256=sha,
            files=tuple(kept_names[k] for k in ks),
            splits=tuple(kept_records[k].split for k in ks),
            labels=tuple(kept_records[k].label for k in ks),
        )
        for sha, ks in sorted(by_sha.items(), key=lambda item: kept_names[item[1][0]])
        if len(ks) > 1
    )
    report = IntegrityReport(
        root=str(base),
        n_files=len(records),
        class_balance={s: dict(sorted(c.items())) for s, c in sorted(balance.items())},
        unreadable=tuple((os.path.relpath(f, base), why) for f, why in failures),
        modes=dict(sorted(Counter(s.mode for s in seen).items())),
        sizes=dict(Counter(s.size for s in seen).most_common()),
        exact_duplicates=groups,
        near_duplicates=tuple(_near_pairs(kept_names, kept_records, seen, near_threshold)),
        near_threshold=near_threshold,
        hash_bits=HASH_SIZE * HASH_SIZE,
        seconds=time.perf_counter() - start,
    )
    log.info("integrity: %s", report.summary())
    return report
