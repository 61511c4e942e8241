"""Run a model over data under an attack: the pure core of every robustness test (no pytest).

Data flow: clean pass over all samples → attack only the still-correct samples → check every
adversarial input against the threat model → adversarial pass. A sample is robust when it is
correct on the clean input AND on its adversarial input.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pytest_robust.attacks import Attack, coerce_attack
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import RobustConfigError, RobustDataError, RobustModelError
from pytest_robust.examples import Example, make_example, pick
from pytest_robust.models import eval_mode, model_device, model_fingerprint, resolve_device
from pytest_robust.perturbation import check_perturbation
from pytest_robust.threat import Norm, ThreatModel, format_eps


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalResult:
    """Per-sample outcome of one attack at one threat model, plus how it was obtained."""

    threat: ThreatModel
    attack: dict[str, Any]
    attack_description: str
    labels: tuple[int, ...]
    clean_pred: tuple[int, ...]
    adv_pred: tuple[int, ...]
    clean_correct: tuple[bool, ...]
    robust_correct: tuple[bool, ...]
    clean_scores: tuple[float, ...]
    adv_scores: tuple[float, ...]
    data: dict[str, Any]
    model: dict[str, Any]
    device: str
    seed: int
    timings: dict[str, float]
    versions: dict[str, str]
    examples: tuple[Example, ...] = ()

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def n_clean_correct(self) -> int:
        return sum(self.clean_correct)

    @property
    def n_robust(self) -> int:
        return sum(self.robust_correct)

    @property
    def clean_acc(self) -> float:
        return self.n_clean_correct / self.n

    @property
    def robust_acc(self) -> float:
        return self.n_robust / self.n

    def to_json(self) -> dict[str, Any]:
        return {
            "threat": self.threat.to_json(),
            "attack": self.attack,
            "attack_description": self.attack_description,
            "n": self.n,
            "clean_acc": self.clean_acc,
            "robust_acc": self.robust_acc,
            "labels": list(self.labels),
            "clean_pred": list(self.clean_pred),
            "adv_pred": list(self.adv_pred),
            "clean_correct": list(self.clean_correct),
            "robust_correct": list(self.robust_correct),
            "clean_scores": list(self.clean_scores),
            "adv_scores": list(self.adv_scores),
            "data": self.data,
            "model": self.model,
            "device": self.device,
            "seed": self.seed,
            "timings": self.timings,
            "versions": self.versions,
            "examples": [e.to_json() for e in self.examples],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EvalResult:
        return cls(
            threat=ThreatModel.from_json(d["threat"]),
            attack=d["attack"],
            attack_description=d["attack_description"],
            labels=tuple(int(v) for v in d["labels"]),
            clean_pred=tuple(int(v) for v in d["clean_pred"]),
            adv_pred=tuple(int(v) for v in d["adv_pred"]),
            clean_correct=tuple(bool(v) for v in d["clean_correct"]),
            robust_correct=tuple(bool(v) for v in d["robust_correct"]),
            clean_scores=tuple(float(v) for v in d["clean_scores"]),
            adv_scores=tuple(float(v) for v in d["adv_scores"]),
            data=d["data"],
            model=d["model"],
            device=d["device"],
            seed=int(d["seed"]),
            timings={k: float(v) for k, v in d["timings"].items()},
            versions={k: str(v) for k, v in d["versions"].items()},
            examples=tuple(Example.from_json(e) for e in d.get("examples", ())),
        )


def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("pytest-robust", "pyautoattack", "timm", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    versions["cuda"] = str(torch.version.cuda) if torch.cuda.is_available() else "none"
    return versions


def _check_data(data: ImageDataset) -> None:
    if len(data) == 0:
        raise RobustDataError(f"data set {data.name!r} is empty: nothing to evaluate")
    x = data.images
    if not x.is_floating_point():
        raise RobustDataError(
            f"data set {data.name!r} has {x.dtype} images; convert to float in [0, 1] (e.g. x / 255)"
        )
    if not bool(torch.isfinite(x).all()):
        raise RobustDataError(f"data set {data.name!r} contains NaN or inf pixels")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        hint = " (looks like 0–255 pixels: divide by 255)" if hi > 1.5 else ""
        hint = hint or " (looks normalised: put the normalisation inside the model, see NormalizedModel)"
        raise RobustDataError(
            f"data set {data.name!r} has pixels outside [0, 1] (min {lo:.4g}, max {hi:.4g}){hint}; "
            "attacks and eps budgets are defined in [0, 1] pixel space"
        )
    labels = data.labels
    if int(labels.min()) < 0 or int(labels.max()) >= data.num_classes:
        raise RobustDataError(
            f"data set {data.name!r} has labels outside 0..{data.num_classes - 1}"
        )


def _logits(model: nn.Module, x: torch.Tensor, num_classes: int, what: str) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    if not isinstance(out, torch.Tensor):
        raise RobustModelError(
            f"model returned {type(out).__name__}, expected a logits tensor of shape (batch, {num_classes})"
        )
    if out.shape != (x.shape[0], num_classes):
        raise RobustModelError(
            f"model output has shape {tuple(out.shape)} on {what} inputs, expected "
            f"({x.shape[0]}, {num_classes}): one logit per class of the data set"
        )
    if not bool(torch.isfinite(out).all()):
        raise RobustModelError(
            f"model produced NaN/inf logits on {what} inputs; a robustness number measured on "
            "non-finite outputs would be meaningless"
        )
    return out.float()


def _score(logits: torch.Tensor) -> torch.Tensor:
    """Probability of the positive class (label 1) for binary tasks; of the predicted one otherwise."""
    probs = logits.softmax(dim=1)
    return probs[:, 1] if probs.shape[1] == 2 else probs.max(dim=1).values


def evaluate(
    model: nn.Module,
    data: ImageDataset,
    attack: Attack | str,
    threat: ThreatModel,
    *,
    device: str | torch.device = "auto",
    seed: int = 0,
    batch_size: int = 128,
    progress: bool | None = None,
    examples: int = 0,
    model_sha256: str | None = None,
) -> EvalResult:
    """Measure clean and robust correctness of ``model`` on every sample of ``data``.

    ``examples``: keep up to that many attacked samples (images and predictions) for a report's
    gallery, successful attacks first, the classes in turn. ``model_sha256``: the model's
    fingerprint when the caller already computed it (hashing large weights takes a moment).
    """
    attack = coerce_attack(attack)
    if attack.name == "none" and threat.eps > 0:
        raise RobustConfigError(
            f"attack 'none' measures clean accuracy: use eps=0, not eps={format_eps(threat.eps)}"
        )
    _check_data(data)
    if threat.norm is Norm.L2:
        diameter = math.sqrt(data.images[0].numel())
        if threat.eps > diameter:
            raise RobustDataError(
                f"L2 eps={threat.eps:g} exceeds the diameter {diameter:.3g} of the [0, 1] image cube"
            )
    target = resolve_device(device)
    original_device = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    n = len(data)
    labels, clean_pred, adv_pred, clean_ok, robust_ok = [], [], [], [], []
    clean_scores: list[float] = []
    adv_scores: list[float] = []
    t_clean = t_attack = 0.0
    flipped: dict[int, list[Example]] = {}
    held: dict[int, list[Example]] = {}
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    model.to(target)
    try:
        with eval_mode(model):
            batches = range(0, n, batch_size)
            bar = tqdm(
                batches, desc=f"{attack.name} {threat.describe()}", unit="batch",
                disable=(not progress) if progress is not None else None, leave=False,
            )
            for start in bar:
                x = data.images[start : start + batch_size].to(target)
                y = data.labels[start : start + batch_size].to(target)
                t1 = time.perf_counter()
                logits = _logits(model, x, data.num_classes, "clean")
                pred = logits.argmax(dim=1)
                correct = pred == y
                t2 = time.perf_counter()
                t_clean += t2 - t1
                clean_score = _score(logits)
                a_pred, a_score = pred.clone(), clean_score.clone()
                robust = correct.clone()
                idx = correct.nonzero().flatten()
                if idx.numel() and threat.eps > 0:
                    x_sel, y_sel = x[idx], y[idx]
                    x_adv = attack.perturb(model, x_sel, y_sel, threat, generator=generator)
                    check_perturbation(x_adv, x_sel, threat, attack=attack.describe())
                    adv_logits = _logits(model, x_adv, data.num_classes, "adversarial")
                    a_pred[idx] = adv_logits.argmax(dim=1)
                    a_score[idx] = _score(adv_logits)
                    robust[idx] = a_pred[idx] == y_sel
                    if examples:
                        _keep_examples(
                            flipped, held, examples, start=start, idx=idx, x=x_sel, x_adv=x_adv,
                            y=y_sel, clean_logits=logits[idx], adv_logits=adv_logits, eps=threat.eps,
                        )
                t_attack += time.perf_counter() - t2
                labels += y.tolist()
                clean_pred += pred.tolist()
                adv_pred += a_pred.tolist()
                clean_ok += correct.tolist()
                robust_ok += robust.tolist()
                clean_scores += clean_score.tolist()
                adv_scores += a_score.tolist()
    finally:
        model.to(original_device)
    total = time.perf_counter() - t0
    return EvalResult(
        threat=threat,
        attack=attack.config(),
        attack_description=attack.describe(),
        labels=tuple(labels),
        clean_pred=tuple(clean_pred),
        adv_pred=tuple(adv_pred),
        clean_correct=tuple(clean_ok),
        robust_correct=tuple(robust_ok),
        clean_scores=tuple(clean_scores),
        adv_scores=tuple(adv_scores),
        data={
            "name": data.name,
            "synthetic": data.synthetic,
            "n": n,
            "classes": list(data.classes),
            "shape": list(data.images.shape[1:]),
            "fingerprint": data.fingerprint(),
            "source": data.source,
        },
        model={
            "class": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "fingerprint": model_sha256 or model_fingerprint(model),
        },
        device=str(target),
        seed=seed,
        timings={"clean_s": t_clean, "attack_s": t_attack, "total_s": total},
        versions=library_versions(),
        examples=pick(flipped, examples) or pick(held, examples),
    )


def _keep_examples(
    flipped: dict[int, list[Example]], held: dict[int, list[Example]], k: int, *, start: int,
    idx: torch.Tensor, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
    clean_logits: torch.Tensor, adv_logits: torch.Tensor, eps: float,
) -> None:
    """Add this batch's attacked samples to the per-class candidates (at most ``k`` per class)."""
    for j in range(idx.numel()):
        label = int(y[j])
        ok = bool(adv_logits[j].argmax() == y[j])
        store = held if ok else flipped
        bucket = store.setdefault(label, [])
        if len(bucket) >= k:
            continue
        bucket.append(make_example(
            index=start + int(idx[j]), x=x[j], x_adv=x_adv[j], label=label,
            clean_logits=clean_logits[j], adv_logits=adv_logits[j], eps=eps,
        ))


__all__ = ["EvalResult", "evaluate", "format_eps"]
