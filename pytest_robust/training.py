"""Training recipes: standard (cross-entropy) and PGD adversarial training (Madry et al. 2018).

Deterministic on the CPU for a seed: the model's initialisation happens under the caller's
seed (see :func:`seeded`), shuffling, flips and PGD random starts use explicit generators, and
each epoch runs under a global RNG seeded from (seed, epoch) (for dropout-like layers), so the
caller's RNG is left alone.

Resumable: with ``resume_dir``, the complete training state (weights, optimiser state, epoch,
history, generator states) is written atomically after every epoch to one safetensors file (JSON
metadata inside, nothing pickled); a later ``train`` with the same config and data continues
after the last completed epoch and ends with bit-identical weights (CPU, same thread count).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pytest_robust.attacks.gradient import PGD
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import ResumeStateError, RobustConfigError, StorageError
from pytest_robust.models import eval_mode, resolve_device
from pytest_robust.storage import atomic_write_bytes
from pytest_robust.threat import Norm, ThreatModel

log = logging.getLogger(__name__)

#: The file of the resume state inside ``resume_dir``.
RESUME_FILE = "train-state.safetensors"
_RESUME_FORMAT = 1
#: At most this many training images recompute the BatchNorm statistics after training.
BN_RECALIBRATION_IMAGES = 1024
_STREAMS = ("shuffle", "attack", "augment")


class Recipe(StrEnum):
    STANDARD = "standard"
    PGD_AT = "pgd-at"

    @classmethod
    def coerce(cls, value: str | Recipe) -> Recipe:
        if isinstance(value, Recipe):
            return value
        key = str(value).strip().lower().replace("_", "-")
        for recipe in cls:
            if recipe.value == key:
                return recipe
        raise RobustConfigError(
            f"unknown training recipe {value!r}; valid recipes: {', '.join(r.value for r in cls)}"
        )


class LrSchedule(StrEnum):
    """``constant`` (the reference study) or ``cosine`` (per step, from ``lr`` down to 0)."""

    CONSTANT = "constant"
    COSINE = "cosine"

    @classmethod
    def coerce(cls, value: str | LrSchedule) -> LrSchedule:
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise RobustConfigError(
                f"unknown lr schedule {value!r}; valid: {', '.join(s.value for s in cls)}"
            ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """A training run's hyper-parameters (recorded with every checkpoint).

    Adam (``torch.optim.Adam``: ``weight_decay`` is L2 added to the gradient), cross-entropy.
    ``augment`` adds random horizontal and vertical flips. ``profile`` names the
    :class:`~pytest_robust.recipes.TrainingProfile` the config was built from, if any.
    """

    recipe: Recipe = Recipe.STANDARD
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: LrSchedule = LrSchedule.CONSTANT
    augment: bool = False
    seed: int = 0
    at_eps: float = 2 / 255
    at_steps: int = 10
    at_step_size: float = 1 / 255
    profile: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipe", Recipe.coerce(self.recipe))
        object.__setattr__(self, "lr_schedule", LrSchedule.coerce(self.lr_schedule))
        if self.epochs < 1 or self.batch_size < 1:
            raise RobustConfigError("epochs and batch_size must be >= 1")
        if not self.lr > 0:
            raise RobustConfigError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.at_eps < 0 or self.at_steps < 1 or not self.at_step_size > 0:
            raise RobustConfigError("weight_decay and at_eps must be >= 0, at_steps >= 1, at_step_size > 0")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["recipe"] = self.recipe.value
        d["lr_schedule"] = self.lr_schedule.value
        return d

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based) out of ``total_steps``."""
        if self.lr_schedule is LrSchedule.CONSTANT:
            return self.lr
        return 0.5 * self.lr * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochStats:
    """One epoch: mean training loss and accuracy (on the inputs trained on: PGD ones for pgd-at)."""

    epoch: int
    loss: float
    accuracy: float
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainReport:
    """Per-epoch curve, the final model's clean accuracy on the training data (eval mode) and the
    fraction of training images it assigns to each class (a collapsed model predicts one class)."""

    config: TrainConfig
    epochs: tuple[EpochStats, ...] = field(default_factory=tuple)
    resumed_from: int = 0
    final_train_accuracy: float | None = None
    predicted_fractions: tuple[float, ...] = ()

    @property
    def seconds(self) -> float:
        return sum(e.seconds for e in self.epochs)

    @property
    def collapsed(self) -> bool:
        """True when the final model puts >= 95 % of the training images in one class."""
        return bool(self.predicted_fractions) and max(self.predicted_fractions) >= 0.95

    def to_json(self) -> dict[str, Any]:
        plain = ("seconds", "resumed_from", "final_train_accuracy", "collapsed")
        return {
            "config": self.config.to_json(),
            "epochs": [asdict(e) for e in self.epochs],
            "predicted_fractions": list(self.predicted_fractions),
            **{name: getattr(self, name) for name in plain},
        }


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with the global torch RNG seeded, restoring the caller's RNG state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _generators(seed: int) -> dict[str, torch.Generator]:
    """The explicit random streams of a run (their states are part of the resume state)."""
    return {name: torch.Generator().manual_seed(seed + k) for k, name in enumerate(_STREAMS)}


def train(
    model: nn.Module,
    data: ImageDataset,
    config: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    progress: bool | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    resume_dir: str | os.PathLike[str] | None = None,
    label: str | None = None,
) -> TrainReport:
    """Train ``model`` in place on ``data`` with ``config``'s recipe; returns per-epoch stats.

    ``device``: ``"auto"`` picks CUDA when available. ``progress``: tqdm bars (epochs with loss,
    accuracy and ETA; batches inside), None = only on a terminal; ``label`` names the model on them
    (e.g. the architecture; default: the model's class). ``on_epoch`` is called after each epoch's
    state is saved. ``resume_dir``: see the module docstring.
    """
    from tqdm.auto import tqdm

    device = resolve_device(device)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gens = _generators(config.seed)
    state_file = Path(resume_dir) / RESUME_FILE if resume_dir is not None else None
    data_id = data.fingerprint() if state_file is not None else ""
    history: list[EpochStats] = []
    if state_file is not None and state_file.is_file():
        history = _load_state(state_file, model, optimiser, gens, config, data_id)
        log.info("resuming %s training after epoch %d/%d", config.recipe.value, len(history), config.epochs)
    resumed_from = len(history)
    # Madry et al.'s training attack: the last iterate (evaluation keeps the best one)
    pgd = PGD(steps=config.at_steps, step_size=config.at_step_size, random_start=True, iterate="last")
    threat = ThreatModel(norm=Norm.LINF, eps=config.at_eps)
    loss_fn = nn.CrossEntropyLoss()
    n = len(data)
    steps_per_epoch = math.ceil(n / config.batch_size)
    disable = (not progress) if progress is not None else None
    bar = tqdm(
        range(resumed_from, config.epochs),
        total=config.epochs,
        initial=resumed_from,
        desc=f"train {label or type(model).__name__} {config.recipe.value}",
        unit="epoch",
        disable=disable,
        leave=False,
    )
    for epoch in bar:
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gens["shuffle"])
        total_loss, correct = 0.0, 0
        model.train()
        batches = tqdm(
            range(steps_per_epoch), desc=f"epoch {epoch + 1}", unit="batch", disable=disable, leave=False
        )
        with _epoch_rng(config.seed, epoch, device):
            for b in batches:
                idx = order[b * config.batch_size : (b + 1) * config.batch_size]
                x = _augment(data.images[idx], gens["augment"]) if config.augment else data.images[idx]
                x, y = x.to(device), data.labels[idx].to(device)
                if config.recipe is Recipe.PGD_AT:
                    with eval_mode(model):
                        x = pgd.perturb(model, x, y, threat, generator=gens["attack"])
                for group in optimiser.param_groups:
                    group["lr"] = config.lr_at(epoch * steps_per_epoch + b, config.epochs * steps_per_epoch)
                logits = model(x)
                loss = loss_fn(logits, y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total_loss += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(dim=1) == y).sum())
        batches.close()
        stats = EpochStats(
            epoch=epoch + 1, loss=total_loss / n, accuracy=correct / n, seconds=time.perf_counter() - t0
        )
        history.append(stats)
        if state_file is not None:
            try:
                _save_state(state_file, model, optimiser, gens, config, data_id, history)
            except OSError as exc:  # stop now, not after the remaining epochs
                raise StorageError(
                    f"cannot save the training's resume state in {str(state_file.parent)!r} after epoch "
                    f"{stats.epoch}: {exc.strerror or exc}. Free disk space there, or train into another "
                    "folder (the checkpoint cache: --robust-cache-dir or $PYTEST_ROBUST_CACHE_DIR)"
                ) from exc
        bar.set_postfix(loss=f"{stats.loss:.3f}", acc=f"{stats.accuracy:.3f}")
        log.info(
            "epoch %d/%d: loss %.4f, accuracy %.3f, %.1f s",
            stats.epoch,
            config.epochs,
            stats.loss,
            stats.accuracy,
            stats.seconds,
        )
        if on_epoch is not None:
            on_epoch(stats)
    bar.close()
    _recalibrate_batchnorm(model, data, config, pgd, threat, gens["attack"], device)
    model.eval()
    accuracy, fractions = _final_check(model, data, config.batch_size, device)
    report = TrainReport(
        config=config,
        epochs=tuple(history),
        resumed_from=resumed_from,
        final_train_accuracy=accuracy,
        predicted_fractions=fractions,
    )
    if report.collapsed:
        log.warning(
            "the trained model assigns %.0f%% of the training images to one class (train "
            "accuracy %.3f): it did not learn the task; train longer or with a higher learning "
            "rate",
            100 * max(fractions),
            accuracy,
        )
    return report


@contextlib.contextmanager
def _epoch_rng(seed: int, epoch: int, device: torch.device) -> Iterator[None]:
    """Global RNG seeded from (seed, epoch) for the epoch (stochastic layers), caller's restored."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed((seed * 1_000_003 + epoch) % (2**63))
        yield


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal and vertical flips (dermoscopy has no canonical orientation)."""
    flips = torch.rand((2, x.shape[0]), generator=generator) < 0.5
    x = torch.where(flips[0].view(-1, 1, 1, 1), x.flip(3), x)
    return torch.where(flips[1].view(-1, 1, 1, 1), x.flip(2), x)


def _final_check(
    model: nn.Module, data: ImageDataset, batch_size: int, device: torch.device
) -> tuple[float, tuple[float, ...]]:
    """Clean accuracy on the training data (eval mode) and the predicted-class fractions."""
    counts = torch.zeros(data.num_classes, dtype=torch.long)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            pred = model(data.images[start : start + batch_size].to(device)).argmax(dim=1).cpu()
            correct += int((pred == data.labels[start : start + batch_size]).sum())
            counts += torch.bincount(pred, minlength=data.num_classes)[: data.num_classes]
    n = max(len(data), 1)
    return correct / n, tuple(float(c) / n for c in counts)


def _save_state(
    path: Path,
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    gens: dict[str, torch.Generator],
    config: TrainConfig,
    data_id: str,
    history: list[EpochStats],
) -> None:
    """Write the full training state to ``path`` atomically (temporary file + ``os.replace``)."""
    from safetensors.torch import save

    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimiser.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in opt["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    for name, gen in gens.items():
        tensors[f"rng/{name}"] = gen.get_state()
    meta = {
        "format": _RESUME_FORMAT,
        "config": config.to_json(),
        "data": data_id,
        "history": [asdict(e) for e in history],
        "param_groups": opt["param_groups"],
        "optim_scalars": scalars,
        "optim_params": sorted(int(i) for i in opt["state"]),
    }
    atomic_write_bytes(path, save(tensors, metadata={"state": json.dumps(meta)}))


def _load_state(
    path: Path,
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    gens: dict[str, torch.Generator],
    config: TrainConfig,
    data_id: str,
) -> list[EpochStats]:
    """Restore the state saved by :func:`_save_state`; returns the completed epochs' history."""
    from safetensors import SafetensorError, safe_open

    hint = f"delete {str(path.parent)!r} to start over, or pass another resume_dir"
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["state"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open API)
        if not isinstance(meta, dict):
            raise ValueError("its metadata is not a JSON object")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise ResumeStateError(f"resume state {str(path)!r} is unreadable ({exc}); {hint}") from exc
    if meta.get("format") != _RESUME_FORMAT or meta.get("config") != config.to_json():
        raise ResumeStateError(
            f"resume state {str(path)!r} belongs to another training config "
            f"({meta.get('config')} != {config.to_json()}); {hint}"
        )
    if meta.get("data") != data_id:
        raise ResumeStateError(f"resume state {str(path)!r} was trained on other data; {hint}")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")}, strict=True)
    state: dict[int, dict[str, Any]] = {int(i): {} for i in meta["optim_params"]}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state[int(idx)][name] = value
    for idx, scalars in meta["optim_scalars"].items():
        state[int(idx)].update(scalars)
    optimiser.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    for name, gen in gens.items():
        gen.set_state(tensors[f"rng/{name}"])
    return [EpochStats(**e) for e in meta["history"]]


def _recalibrate_batchnorm(
    model: nn.Module,
    data: ImageDataset,
    config: TrainConfig,
    pgd: PGD,
    threat: ThreatModel,
    generator: torch.Generator,
    device: torch.device,
) -> None:
    """Recompute BatchNorm running statistics with the final weights (one pass, no updates).

    Running statistics lag behind the weights during training; with Adam at the quick-start
    learning rate, eval-mode accuracy swung by up to 20 points between epochs without this
    (measured on the synthetic set). Statistics are taken on the inputs the model was trained
    on: clean images for ``standard``, PGD examples for ``pgd-at`` (attacking a frozen copy of the
    trained model: ``update_bn`` resets the statistics the attack would otherwise run with), over
    at most :data:`BN_RECALIBRATION_IMAGES` evenly spaced images (both classes of a class-sorted set).
    """
    from torch.optim.swa_utils import update_bn

    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    n = min(len(data), BN_RECALIBRATION_IMAGES)
    idx = torch.linspace(0, len(data) - 1, n).round().long()
    attacker = copy.deepcopy(model).eval() if config.recipe is Recipe.PGD_AT else None

    def batches() -> Iterator[torch.Tensor]:
        for part in torch.split(idx, config.batch_size):
            x = data.images[part].to(device)
            if attacker is not None:
                x = pgd.perturb(attacker, x, data.labels[part].to(device), threat, generator=generator)
            yield x

    with torch.no_grad():
        update_bn(batches(), model)
