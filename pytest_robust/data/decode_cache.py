"""Decode once: decoded, resized images cached on disk, keyed by the files' content.

Decoding and resizing thousands of JPEGs costs seconds to minutes every session; the result
depends only on the files' bytes, the resolution and the decoder. An entry is addressed by

    SHA-256(canonical JSON of {decoder version, Pillow version, size, [SHA-256 of each file's bytes,
    in order]})

so renaming or moving a folder still hits, and changing one byte of one image (or the resolution,
or :data:`DECODE_VERSION`) misses. Layout: ``<cache_dir>/decoded/<key[:2]>/<key>/`` with

- ``images.safetensors``: one ``uint8`` tensor ``(n_ok, 3, size, size)`` (a quarter of float32);
- ``meta.json``: the key, file count, size, the files that failed to decode (index and reason:
  failures depend on the bytes too, so they are cached) and the SHA-256 of the pixel bytes.

Writes go to a temporary file published with ``os.replace`` (images first, the sidecar last, so a
sidecar always describes complete pixels); a lock per entry (:mod:`pytest_robust.storage`) makes
concurrent workers decode once. An entry whose sidecar is unreadable, whose shape disagrees or
whose pixels fail their hash is rebuilt, never used. Nothing is unpickled.

Pixels are bit-identical with and without the cache: :func:`~pytest_robust.data.folder.load_one`
returns ``k / 255`` in float32, stored exactly as ``k``, and turned back with the same division.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import PIL
import torch
from numpy.typing import NDArray
from PIL import Image

from pytest_robust.cache import canonical_json, file_sha256
from pytest_robust.data.folder import load_one
from pytest_robust.errors import RobustDataError
from pytest_robust.storage import atomic_replace, cache_lock

__all__ = ["DECODE_ERRORS", "DECODE_VERSION", "DecodedImages", "decode_images", "decode_key"]

log = logging.getLogger(__name__)

#: Bump when the decoded pixels change (resampling filter, colour conversion, value scaling).
DECODE_VERSION: Final = 1
#: What decoding a bad file raises (truncated, not an image, decompression bomb, ...).
DECODE_ERRORS: Final = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
IMAGES: Final = "images.safetensors"
META: Final = "meta.json"
_TENSOR: Final = "images"


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodedImages:
    """Decoded images in file order, without the files that failed.

    ``images[j]`` is file ``kept[j]``; ``failures`` holds ``(file index, reason)``. ``key`` is the
    cache key (None when no cache was used) and ``hit`` says whether nothing was decoded.
    """

    images: torch.Tensor
    kept: tuple[int, ...]
    failures: tuple[tuple[int, str], ...]
    key: str | None
    hit: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": list(self.images.shape),
            "n_kept": len(self.kept),
            "failures": [[i, why] for i, why in self.failures],
            "key": self.key,
            "hit": self.hit,
            "seconds": self.seconds,
        }


def _content_id(file: Path) -> str:
    """SHA-256 of the file's bytes; a file that cannot be read is keyed by its error instead."""
    try:
        return file_sha256(file)
    except OSError as exc:
        return f"unreadable:{type(exc).__name__}:{exc}"


def decode_key(content_ids: Sequence[str], size: int) -> str:
    """The cache key of ``content_ids`` (per-file SHA-256, in order) decoded at ``size`` px."""
    spec = {
        "decoder": DECODE_VERSION,
        "pillow": PIL.__version__,
        "size": size,
        "files": list(content_ids),
    }
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def _decode_all(files: Sequence[Path], size: int) -> tuple[NDArray[np.uint8], list[tuple[int, str]]]:
    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    failures: list[tuple[int, str]] = []
    ok = 0
    for i, file in enumerate(files):
        try:
            pixels = load_one(file, size)
        except DECODE_ERRORS as exc:
            failures.append((i, f"{type(exc).__name__}: {exc}"))
            continue
        np.rint(pixels * np.float32(255.0), out=pixels)
        out[ok] = pixels
        ok += 1
    log.debug("decoded %d files at %dpx (%d failed)", len(files), size, len(failures))
    return out[:ok], failures


def _to_float(pixels: NDArray[np.uint8]) -> torch.Tensor:
    images = pixels.astype(np.float32)
    images /= np.float32(255.0)
    return torch.from_numpy(images)


def _store(
    folder: Path, key: str, n: int, size: int, pixels: NDArray[np.uint8], failures: list[tuple[int, str]]
) -> None:
    from safetensors.numpy import save_file

    contiguous = np.ascontiguousarray(pixels)
    atomic_replace(folder / IMAGES, lambda tmp: save_file({_TENSOR: contiguous}, tmp))
    meta = {
        "key": key,
        "decoder": DECODE_VERSION,
        "n_files": n,
        "size": size,
        "failures": [[i, why] for i, why in failures],
        "pixels_sha256": hashlib.sha256(contiguous.data).hexdigest(),
    }
    payload = json.dumps(meta, indent=2, sort_keys=True).encode()
    atomic_replace(folder / META, lambda tmp: Path(tmp).write_bytes(payload))


def _read(
    folder: Path, key: str, n: int, size: int
) -> tuple[NDArray[np.uint8], list[tuple[int, str]]] | None:
    """The entry's pixels and failures, or None when it is missing or fails any check."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    meta_path, images_path = folder / META, folder / IMAGES
    if not (meta_path.is_file() and images_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        failures = [(int(i), str(why)) for i, why in meta["failures"]]
        if (meta["key"], meta["n_files"], meta["size"]) != (key, n, size):
            raise ValueError("sidecar describes another entry")
        pixels = load_file(str(images_path))[_TENSOR]
        expected = (n - len(failures), 3, size, size)
        if pixels.dtype != np.uint8 or pixels.shape != expected:
            raise ValueError(f"pixels are {pixels.dtype} {pixels.shape}, expected uint8 {expected}")
        if hashlib.sha256(np.ascontiguousarray(pixels).data).hexdigest() != meta["pixels_sha256"]:
            raise ValueError("pixels fail their hash check")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        log.warning("decode cache entry %s is corrupt (%s); decoding again", key[:12], exc)
        return None
    return pixels, failures


def _result(
    pixels: NDArray[np.uint8],
    failures: list[tuple[int, str]],
    n: int,
    *,
    key: str | None,
    hit: bool,
    start: float,
) -> DecodedImages:
    failed = {i for i, _ in failures}
    return DecodedImages(
        images=_to_float(pixels),
        kept=tuple(i for i in range(n) if i not in failed),
        failures=tuple(failures),
        key=key,
        hit=hit,
        seconds=time.perf_counter() - start,
    )


def decode_images(
    files: Sequence[Path], *, size: int, cache_dir: str | os.PathLike[str] | None = None
) -> DecodedImages:
    """Decode ``files`` to ``(n_ok, 3, size, size)`` float32 in [0, 1], through the cache when given.

    Files that fail to decode are left out and reported in ``failures``; the caller decides
    whether that is an error. With ``cache_dir`` a second call on the same bytes decodes nothing.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise RobustDataError(f"image size must be a positive integer, got {size!r}")
    start = time.perf_counter()
    files = list(files)
    if cache_dir is None:
        pixels, failures = _decode_all(files, size)
        return _result(pixels, failures, len(files), key=None, hit=False, start=start)

    key = decode_key([_content_id(f) for f in files], size)
    folder = Path(cache_dir).expanduser() / "decoded" / key[:2] / key
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RobustDataError(
            f"cannot create the decode cache folder {str(folder)!r} ({exc}); pass a writable cache_dir "
            "or cache_dir=None"
        ) from exc
    with cache_lock(folder / ".lock"):
        cached = _read(folder, key, len(files), size)
        if cached is not None:
            log.info("decode cache hit %s: %d files at %dpx", key[:12], len(files), size)
            return _result(*cached, len(files), key=key, hit=True, start=start)
        pixels, failures = _decode_all(files, size)
        _store(folder, key, len(files), size, pixels, failures)
        log.info("decode cache miss %s: decoded %d files at %dpx", key[:12], len(files), size)
        return _result(pixels, failures, len(files), key=key, hit=False, start=start)
