"""Adversarial examples kept for the report's gallery (the study's Fig. 3).

An :class:`Example` is plain data: the three images as base64 PNG (original, perturbation
amplified to the full grey range, adversarial), the true and predicted labels and confidences.
It travels inside a result's JSON, so it survives pytest-xdist.
"""

from __future__ import annotations

import base64
import io
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True, slots=True, kw_only=True)
class Example:
    """One attacked sample: index in the evaluated data, labels, confidences, images (PNG base64)."""

    index: int
    label: int
    clean_pred: int
    adv_pred: int
    clean_confidence: float
    adv_confidence: float
    linf: float
    original_png: str
    perturbation_png: str
    adversarial_png: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Example:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def png_base64(image: torch.Tensor) -> str:
    """A ``(C, H, W)`` image in [0, 1] as a base64 PNG (8 bits per channel)."""
    from PIL import Image

    array = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    mode = "L" if array.shape[2] == 1 else "RGB"
    pil = Image.fromarray(array[:, :, 0] if mode == "L" else array, mode=mode)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def amplify(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Map a perturbation in [-eps, eps] onto [0, 1] (mid-grey: unchanged pixel)."""
    scale = eps if eps > 0 else float(delta.abs().max()) or 1.0
    return (delta / (2 * scale) + 0.5).clamp(0, 1)


def make_example(
    *,
    index: int,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    label: int,
    clean_logits: torch.Tensor,
    adv_logits: torch.Tensor,
    eps: float,
) -> Example:
    """An :class:`Example` from one clean / adversarial pair and the model's logits on both."""
    p_clean, p_adv = clean_logits.float().softmax(0), adv_logits.float().softmax(0)
    delta = (x_adv - x).detach()
    return Example(
        index=index,
        label=label,
        clean_pred=int(p_clean.argmax()),
        adv_pred=int(p_adv.argmax()),
        clean_confidence=float(p_clean.max()),
        adv_confidence=float(p_adv.max()),
        linf=float(delta.abs().max()),
        original_png=png_base64(x),
        perturbation_png=png_base64(amplify(delta, eps)),
        adversarial_png=png_base64(x_adv),
    )


def pick(candidates: dict[int, list[Example]], k: int) -> tuple[Example, ...]:
    """Up to ``k`` examples, taking the classes in turn (so both classes show when they can)."""
    queues = [list(v) for _, v in sorted(candidates.items())]
    out: list[Example] = []
    while len(out) < k and any(queues):
        for q in queues:
            if q and len(out) < k:
                out.append(q.pop(0))
    return tuple(sorted(out, key=lambda e: e.index))
