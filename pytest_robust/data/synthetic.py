"""The embedded default data set: synthetic dermoscopy-like images of benign and malignant lesions.

Every image is drawn from its own random stream ``default_rng([seed, split_id, 0, i])``, so image
``i`` is the same whatever ``n`` is, and the ``train`` and ``test`` splits never share a stream.
The sampled parameters live in continuous coordinates ([-1, 1] across the image) and the random
textures are small fixed-size grids that are smoothed and then interpolated at the pixel centres,
so the same parameters render the same lesion at 32, 64 or 224 px.

The class signal is a latent *severity* in [0, 1] (benign ~ Beta(2, 7), malignant ~ Beta(7, 2)),
which drives the ABCD features: asymmetry, border irregularity, colour variety and diameter.
The two distributions overlap, so even a perfect reader of severity is wrong on about 3.5 % of
the images: the task is learnable but not trivially separable. Nuisances that carry no class
signal: skin tone and texture, hairs, lesion position and orientation, vignetting.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import ndimage

from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import RobustDataError

__all__ = ["CLASSES", "GENERATOR_VERSION", "SPLITS", "generate_synthetic"]

logger = logging.getLogger(__name__)

Array = NDArray[np.float64]

#: Label 0 and label 1.
CLASSES: Final = ("benign", "malignant")
#: Split name → the id that keeps the random streams of the splits apart.
SPLITS: Final = MappingProxyType({"train": 1, "test": 2})
#: Bumped whenever a change makes the same (seed, split, i) render a different image.
GENERATOR_VERSION: Final = 1
NAME: Final = "synthetic-dermoscopy"
MIN_SIZE: Final = 16

_IMAGE_STREAM: Final = 0
_LABEL_STREAM: Final = 1
#: Severity ~ Beta(a, b) per class (benign, malignant).
_SEVERITY_BETA: Final = ((2.0, 7.0), (7.0, 2.0))
#: Side of the random grids the smooth textures are interpolated from (fixed: size-independent).
_GRID: Final = 24
_N_HARMONICS: Final = 10
_HAIR_SEGMENTS: Final = 10
#: Lesion colours (RGB in [0, 1]) beside the base brown: dark brown, black, blue-grey, red.
_EXTRA_COLOURS: Final = (
    (0.30, 0.16, 0.09),
    (0.08, 0.06, 0.06),
    (0.38, 0.45, 0.55),
    (0.66, 0.32, 0.30),
)
#: The most each extra colour covers the base brown (blue-grey and red regions stay partial).
_EXTRA_OPACITY: Final = (0.9, 0.85, 0.6, 0.55)
_BASE_BROWN: Final = (0.58, 0.38, 0.24)
_SKIN_LIGHT: Final = (0.94, 0.80, 0.70)
_SKIN_DARK: Final = (0.68, 0.47, 0.35)
_HAIR_COLOUR: Final = (0.10, 0.07, 0.05)
#: Per-channel change of the skin colour per unit of the smooth redness field.
_REDNESS: Final = (0.025, -0.015, -0.01)


@dataclass(frozen=True, slots=True)
class _Hair:
    """A quadratic Bézier curve (control points in [-1, 1] coordinates), half-width and opacity."""

    control: Array  # (3, 2)
    half_width: float
    opacity: float


@dataclass(frozen=True, slots=True)
class _ImageParams:
    """Everything random about one image; rendering it is deterministic at any size."""

    severity: float
    skin: Array  # (3,) RGB
    skin_texture: Array  # (2, _GRID, _GRID) smoothed noise: brightness and redness
    centre: tuple[float, float]
    radius: float
    angle: float
    elongation: float
    amplitudes: Array  # (_N_HARMONICS,) border harmonics k = 1.._N_HARMONICS
    phases: Array  # (_N_HARMONICS,)
    edge: float
    base_colour: Array  # (3,)
    shading: Array  # (_GRID, _GRID) smoothed noise inside the lesion
    colour_fields: Array  # (4, _GRID, _GRID) smoothed noise, one per extra colour
    colour_weights: Array  # (4,) strength of each extra colour
    hairs: tuple[_Hair, ...]
    vignette: float
    vignette_power: float


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> Array:
    """White noise on a periodic grid, Gaussian-smoothed over its last two axes, rescaled to unit std."""
    noise = rng.standard_normal(shape)
    sigmas = (0.0,) * (len(shape) - 2) + (sigma, sigma)
    field: Array = ndimage.gaussian_filter(noise, sigma=sigmas, mode="wrap")
    axes = (-2, -1)
    std = field.std(axis=axes, keepdims=True)
    unit: Array = (field - field.mean(axis=axes, keepdims=True)) / np.maximum(std, 1e-12)
    return unit


def _sample_hair(rng: np.random.Generator) -> _Hair:
    start_angle = rng.uniform(0.0, 2.0 * np.pi)
    end_angle = start_angle + np.pi + rng.uniform(-0.9, 0.9)
    start = 1.3 * np.array([np.cos(start_angle), np.sin(start_angle)])
    end = 1.3 * np.array([np.cos(end_angle), np.sin(end_angle)])
    bend = rng.normal(0.0, 0.5, size=2)
    control = np.stack([start, (start + end) / 2.0 + bend, end])
    half_width = float(rng.uniform(0.005, 0.012))
    return _Hair(control=control, half_width=half_width, opacity=float(rng.uniform(0.6, 0.95)))


def _sample_params(rng: np.random.Generator, label: int) -> _ImageParams:
    """Draw one image's parameters; the order of the draws is part of the generator's version."""
    a, b = _SEVERITY_BETA[label]
    s = float(rng.beta(a, b))
    tone = rng.uniform(0.0, 1.0)
    skin = (1.0 - tone) * np.array(_SKIN_LIGHT) + tone * np.array(_SKIN_DARK) + rng.normal(0.0, 0.02, size=3)
    skin_texture = _smooth_noise(rng, (2, _GRID, _GRID), sigma=2.5)
    centre = (float(rng.normal(0.0, 0.12)), float(rng.normal(0.0, 0.12)))
    radius = float(np.clip(0.30 + 0.22 * s + rng.normal(0.0, 0.04), 0.15, 0.75))
    angle = float(rng.uniform(0.0, np.pi))
    elongation = float(rng.uniform(0.0, 0.08 + 0.22 * s))
    k = np.arange(1, _N_HARMONICS + 1, dtype=np.float64)
    # Low harmonics (k <= 3) make the shape asymmetric, high ones make the border irregular.
    low = (k <= 3) * (0.02 + 0.14 * s)
    high = (k > 3) * (0.004 + 0.09 * s**1.5) * (4.0 / k) ** 0.5
    amplitudes = (low + high) * rng.uniform(0.5, 1.0, size=_N_HARMONICS)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=_N_HARMONICS)
    edge = float(rng.uniform(0.008, 0.025))
    base_colour = np.array(_BASE_BROWN) * rng.uniform(0.8, 1.1) + rng.normal(0.0, 0.02, size=3)
    shading = _smooth_noise(rng, (_GRID, _GRID), sigma=3.0)
    colour_fields = _smooth_noise(rng, (len(_EXTRA_COLOURS), _GRID, _GRID), sigma=2.0)
    present = rng.uniform(size=len(_EXTRA_COLOURS)) < 0.1 + 0.8 * s
    amount = np.clip(s + rng.normal(0.0, 0.1, size=len(_EXTRA_COLOURS)), 0.0, 1.0)
    colour_weights = present * np.array(_EXTRA_OPACITY) * amount
    hairs = tuple(_sample_hair(rng) for _ in range(int(rng.poisson(1.5))))
    vignette = float(rng.uniform(0.15, 0.5))
    vignette_power = float(rng.uniform(2.0, 3.5))
    return _ImageParams(
        severity=s,
        skin=np.clip(skin, 0.0, 1.0),
        skin_texture=skin_texture,
        centre=centre,
        radius=radius,
        angle=angle,
        elongation=elongation,
        amplitudes=amplitudes,
        phases=phases,
        edge=edge,
        base_colour=np.clip(base_colour, 0.0, 1.0),
        shading=shading,
        colour_fields=colour_fields,
        colour_weights=colour_weights,
        hairs=hairs,
        vignette=vignette,
        vignette_power=vignette_power,
    )


def _centres(size: int) -> Array:
    """Pixel-centre coordinates along one axis, in [-1, 1]."""
    centres: Array = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    return centres


def _interpolation_matrix(size: int) -> Array:
    """``(size, _GRID)`` matrix W so that ``W @ F @ W.T`` is the periodic cubic-spline interpolation
    of a ``_GRID`` x ``_GRID`` field F at the pixel centres of a ``size`` x ``size`` image."""
    basis = np.eye(_GRID)
    matrix: Array = ndimage.zoom(
        basis, (size / _GRID, 1.0), order=3, mode="grid-wrap", grid_mode=True, prefilter=True
    )
    return matrix


def _sample_field(fields: Array, interp: Array) -> Array:
    """Upsample ``(..., G, G)`` periodic grids with the matrix from :func:`_interpolation_matrix`."""
    result: Array = interp @ fields @ interp.T
    return result


def _lesion_mask(p: _ImageParams, x: Array, y: Array, pixel: float) -> tuple[Array, Array]:
    """Soft lesion mask in [0, 1] (1 inside the irregular, elongated border) and the depth inside
    the lesion (1 at the centre, 0 at and beyond the border)."""
    dx, dy = x - p.centre[0], y - p.centre[1]
    ca, sa = np.cos(p.angle), np.sin(p.angle)
    u = (dx * ca + dy * sa) / (1.0 + p.elongation)
    v = (-dx * sa + dy * ca) * (1.0 + p.elongation)
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    k = np.arange(1, _N_HARMONICS + 1, dtype=np.float64)
    wobble = np.tensordot(np.cos(theta[..., None] * k + p.phases), p.amplitudes, axes=([-1], [0]))
    border = p.radius * (1.0 + wobble)
    width = max(p.edge, 0.5 * pixel)
    mask: Array = 1.0 / (1.0 + np.exp(-np.clip((border - rho) / width, -30.0, 30.0)))
    depth: Array = np.clip(1.0 - rho / np.maximum(border, 1e-6), 0.0, 1.0)
    return mask, depth


def _index_range(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Indices ``[first, stop)`` of the pixels whose centres lie within ``[lo, hi]`` on one axis."""
    first = int(np.ceil((lo + 1.0) / 2.0 * size - 0.5))
    stop = int(np.floor((hi + 1.0) / 2.0 * size - 0.5)) + 1
    return max(first, 0), min(stop, size)


def _hair_coverage(hair: _Hair, centres: Array, pixel: float) -> Array:
    """Approximate area coverage of one hair per pixel (anti-aliased, so thin hairs fade, not alias).

    The curve is a polyline; each segment only touches the pixels in its bounding box widened by
    the reach of the hair, so the cost grows with the hair's length, not with the image area.
    """
    size = len(centres)
    t = np.linspace(0.0, 1.0, _HAIR_SEGMENTS + 1)[:, None]
    c = hair.control
    pts = (1 - t) ** 2 * c[0] + 2 * (1 - t) * t * c[1] + t**2 * c[2]
    half = max(hair.half_width, 0.5 * pixel)
    reach = half + pixel  # coverage is 0 beyond this distance
    dist2 = np.full((size, size), np.inf)
    for (ax, ay), (bx, by) in itertools.pairwise(pts):
        c0, c1 = _index_range(min(ax, bx) - reach, max(ax, bx) + reach, size)
        r0, r1 = _index_range(min(ay, by) - reach, max(ay, by) + reach, size)
        if c0 >= c1 or r0 >= r1:
            continue
        px, py = centres[None, c0:c1] - ax, centres[r0:r1, None] - ay
        sx, sy = bx - ax, by - ay
        proj = np.clip((px * sx + py * sy) / max(sx * sx + sy * sy, 1e-12), 0.0, 1.0)
        block = dist2[r0:r1, c0:c1]
        np.minimum(block, (px - proj * sx) ** 2 + (py - proj * sy) ** 2, out=block)
    strength = hair.opacity * min(1.0, 2.0 * hair.half_width / pixel)
    coverage: Array = np.clip((half - np.sqrt(dist2)) / pixel + 0.5, 0.0, 1.0) * strength
    return coverage


def _column(rgb: tuple[float, float, float]) -> Array:
    """An RGB triple as a ``(3, 1, 1)`` array that broadcasts over an image."""
    return np.asarray(rgb, dtype=np.float64).reshape(3, 1, 1)


def _render(p: _ImageParams, size: int, interp: Array) -> Array:
    """Render the parameters as an RGB ``(3, size, size)`` float64 image in [0, 1]."""
    centres = _centres(size)
    y, x = np.meshgrid(centres, centres, indexing="ij")
    pixel = 2.0 / size
    brightness, redness = _sample_field(p.skin_texture, interp)
    skin = p.skin[:, None, None] * (1.0 + 0.05 * brightness) + _column(_REDNESS) * redness

    mask, depth = _lesion_mask(p, x, y, pixel)
    shading = _sample_field(p.shading, interp)
    lesion = p.base_colour[:, None, None] * (1.0 + 0.06 * shading - 0.2 * depth)
    weights = _sample_field(p.colour_fields, interp)
    for colour, strength, field in zip(_EXTRA_COLOURS, p.colour_weights, weights, strict=True):
        if strength <= 0.0:
            continue
        blob = strength / (1.0 + np.exp(-np.clip((field - 0.3) / 0.25, -30.0, 30.0)))
        lesion = lesion * (1.0 - blob) + _column(colour) * blob
    image = skin * (1.0 - mask) + lesion * mask

    for hair in p.hairs:
        cov = _hair_coverage(hair, centres, pixel)
        image = image * (1.0 - cov) + _column(_HAIR_COLOUR) * cov

    r = np.hypot(x, y) / np.sqrt(2.0)
    image = image * (1.0 - p.vignette * r**p.vignette_power)
    result: Array = np.clip(image, 0.0, 1.0)
    return result


def _check_int(value: object, what: str, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise RobustDataError(f"synthetic data: {what} must be an integer, got {value!r}")
    if value < minimum:
        raise RobustDataError(f"synthetic data: {what} must be >= {minimum}, got {value}; {hint}")
    return int(value)


def _labels(seed: int, split_id: int, n: int) -> NDArray[np.int64]:
    """Balanced labels: each pair (2j, 2j+1) holds one image of each class in a random order."""
    labels = np.empty(n, dtype=np.int64)
    for pair in range((n + 1) // 2):
        first = int(np.random.default_rng([seed, split_id, _LABEL_STREAM, pair]).integers(2))
        labels[2 * pair] = first
        if 2 * pair + 1 < n:
            labels[2 * pair + 1] = 1 - first
    return labels


def generate_synthetic(n: int, *, size: int = 64, seed: int = 0, split: str = "test") -> ImageDataset:
    """Generate ``n`` synthetic dermoscopy images of ``size`` x ``size`` px (0 benign, 1 malignant).

    Deterministic in ``(seed, split, i)``: image ``i`` does not depend on ``n`` or ``size`` (beyond
    resolution), and ``split="train"`` and ``split="test"`` are disjoint random streams.
    Labels are balanced (one of each class in every consecutive pair).
    """
    n = _check_int(n, "n", 1, "ask for at least one image")
    size = _check_int(size, "size", MIN_SIZE, f"images smaller than {MIN_SIZE} px cannot show a lesion")
    seed = _check_int(seed, "seed", 0, "use a non-negative integer seed")
    if not isinstance(split, str) or split not in SPLITS:
        raise RobustDataError(f"synthetic data: unknown split {split!r}; use one of {sorted(SPLITS)}")
    split_id = SPLITS[split]
    labels = _labels(seed, split_id, n)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    interp = _interpolation_matrix(size)
    for i in range(n):
        rng = np.random.default_rng([seed, split_id, _IMAGE_STREAM, i])
        images[i] = _render(_sample_params(rng, int(labels[i])), size, interp)
    logger.debug("generated %d synthetic %dpx images (seed=%d, split=%s)", n, size, seed, split)
    return ImageDataset(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        classes=CLASSES,
        name=NAME,
        synthetic=True,
        source={
            "generator": f"pytest_robust.data.synthetic:{NAME}",
            "version": GENERATOR_VERSION,
            "n": n,
            "size": size,
            "seed": seed,
            "split": split,
        },
    )
