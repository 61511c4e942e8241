"""Training profiles: the reference study's recipe (``paper``) and the CPU-sized ones (``ci``, ``smoke``).

A :class:`TrainingProfile` fixes everything about how the benchmark models are trained except the
architecture, the recipe (standard or PGD-AT) and the seed; :meth:`TrainingProfile.train_config`
turns it into the :class:`~pytest_robust.training.TrainConfig` of one run, which records the
profile's name. Every way a profile departs from the study's Table IV is listed in its
``deviations``, so reports can say what was actually run.

The names match the evaluation profiles of :mod:`pytest_robust.config` (same image size), so a
``--robust-profile=ci`` run evaluates models trained with the ``ci`` training profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Final

from pytest_robust.errors import RobustConfigError
from pytest_robust.training import LrSchedule, Recipe, TrainConfig

__all__ = ["CI", "PAPER", "PROFILES", "QUICKSTART", "SMOKE", "AtInit", "TrainingProfile", "get_profile"]


class AtInit(StrEnum):
    """Where PGD adversarial training starts: a fresh model, or the profile's standard checkpoint."""

    SCRATCH = "scratch"
    STANDARD = "standard"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingProfile:
    """How benchmark models are trained (optimiser Adam, loss cross-entropy, always).

    ``image_size`` is the side the training data must have (None: any). ``train_subset`` trains on
    a fixed random subset of that many images (None: all). The ``at_*`` fields are PGD adversarial
    training's (Linf): budget, and epochs / learning rate when they differ from standard
    training's (None: the same); ``at_init`` says whether it starts from scratch or fine-tunes the
    standard model of the same profile, architecture, data and seed.
    """

    name: str
    description: str
    image_size: int | None
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    lr_schedule: LrSchedule = LrSchedule.CONSTANT
    augment: bool = False
    train_subset: int | None = None
    at_eps: float
    at_step_size: float
    at_steps: int
    at_epochs: int | None = None
    at_lr: float | None = None
    at_init: AtInit = AtInit.SCRATCH
    deviations: tuple[str, ...] = ()

    optimizer: ClassVar[str] = "adam"
    loss: ClassVar[str] = "cross-entropy"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_schedule", LrSchedule.coerce(self.lr_schedule))
        try:
            object.__setattr__(self, "at_init", AtInit(self.at_init))
        except ValueError:
            raise RobustConfigError(
                f"profile {self.name!r}: unknown at_init {self.at_init!r}; valid: scratch, standard"
            ) from None
        if self.image_size is not None and self.image_size < 16:
            raise RobustConfigError(f"profile {self.name!r}: image_size must be >= 16 or None")
        if self.train_subset is not None and self.train_subset < 2:
            raise RobustConfigError(f"profile {self.name!r}: train_subset must be >= 2 or None")
        for recipe in Recipe:  # validates epochs, lr, budgets through TrainConfig
            self.train_config(recipe, seed=0)

    def train_config(self, recipe: str | Recipe, *, seed: int) -> TrainConfig:
        """The config of one training run under this profile (records the profile's name)."""
        recipe = Recipe.coerce(recipe)
        at = recipe is Recipe.PGD_AT
        return TrainConfig(
            recipe=recipe,
            epochs=self.at_epochs if at and self.at_epochs is not None else self.epochs,
            batch_size=self.batch_size,
            lr=self.at_lr if at and self.at_lr is not None else self.lr,
            weight_decay=self.weight_decay,
            lr_schedule=self.lr_schedule,
            augment=self.augment,
            seed=seed,
            at_eps=self.at_eps,
            at_steps=self.at_steps,
            at_step_size=self.at_step_size,
            profile=self.name,
        )

    def fine_tunes(self, recipe: str | Recipe) -> bool:
        """Whether ``recipe`` starts from this profile's standard model."""
        return Recipe.coerce(recipe) is Recipe.PGD_AT and self.at_init is AtInit.STANDARD

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            lr_schedule=self.lr_schedule.value,
            at_init=self.at_init.value,
            deviations=list(self.deviations),
            optimizer=self.optimizer,
            loss=self.loss,
        )
        return d


#: The reference study's Table IV, exactly: 224 px, batch 32, Adam 1e-4 (weight decay 1e-4),
#: cross-entropy, 50 epochs; PGD-AT Linf eps 2/255, step 1/255, 10 steps, from scratch.
PAPER: Final = TrainingProfile(
    name="paper",
    description="the reference study's recipe (Table IV); hours per model on a GPU",
    image_size=224,
    epochs=50,
    batch_size=32,
    lr=1e-4,
    weight_decay=1e-4,
    at_eps=2 / 255,
    at_step_size=1 / 255,
    at_steps=10,
)

#: Ten models (five architectures x {standard, PGD-AT}) on the 2637 ISIC training images on a
#: 2-core CPU, from scratch (no pretrained weights offline). Measured (BENCHMARKS.md):
#: 20.3 min with 2 threads on the idle machine (31 min with 1 thread on a shared one);
#: clean test accuracy 0.78-0.86 (standard), 0.77-0.83 (PGD-AT) except EfficientNet-B2 + PGD-AT,
#: which degenerates to the majority class (0.58), as in the study.
CI: Final = TrainingProfile(
    name="ci",
    description="2-core CPU: 32 px, 6 epochs at lr 1e-3 (cosine), PGD-AT fine-tunes the standard model",
    image_size=32,
    epochs=6,
    batch_size=32,
    lr=1e-3,
    weight_decay=1e-4,
    lr_schedule=LrSchedule.COSINE,
    augment=True,
    at_eps=2 / 255,
    at_step_size=1 / 255,
    at_steps=3,
    at_epochs=2,
    at_lr=3e-4,
    at_init=AtInit.STANDARD,
    deviations=(
        "32 px instead of 224 px (about 50x less compute per image; the ci evaluation profile is 32 px)",
        "6 epochs instead of 50",
        "lr 1e-3 with cosine decay instead of a constant 1e-4 (from scratch, 1e-4 barely moves in 6 epochs)",
        "random horizontal/vertical flips (none stated in the study)",
        "PGD-AT fine-tunes the ci standard model for 2 epochs at lr 3e-4 (cosine) instead of 50 "
        "epochs from scratch",
        "PGD-AT uses 3 steps of 1/255 instead of 10 (same eps 2/255; random start)",
    ),
)

#: Seconds, for tests: one epoch on 64 images; PGD-AT 2 steps, fine-tuning like ``ci``.
SMOKE: Final = TrainingProfile(
    name="smoke",
    description="seconds, for tests: 1 epoch on 64 images at 32 px",
    image_size=32,
    epochs=1,
    batch_size=32,
    lr=1e-3,
    weight_decay=1e-4,
    train_subset=64,
    at_eps=2 / 255,
    at_step_size=1 / 255,
    at_steps=2,
    at_epochs=1,
    at_init=AtInit.STANDARD,
    deviations=("a smoke test, not a model: 1 epoch on 64 images, 32 px, PGD-AT 2 steps",),
)

#: The quick-start small CNN (any image size): 8 epochs at lr 2e-3, batch 64; PGD-AT at eps
#: 8/255 (5 steps of 2.5/255) from scratch, so the quick-start gate at 4/255 is passable.
QUICKSTART: Final = TrainingProfile(
    name="quickstart",
    description="the quick-start small CNN on the embedded synthetic data",
    image_size=None,
    epochs=8,
    batch_size=64,
    lr=2e-3,
    weight_decay=1e-4,
    at_eps=8 / 255,
    at_step_size=2.5 / 255,
    at_steps=5,
    deviations=("small CNN, synthetic data; PGD-AT at eps 8/255 with 5 steps",),
)

PROFILES: Final[Mapping[str, TrainingProfile]] = MappingProxyType(
    {p.name: p for p in (PAPER, CI, SMOKE, QUICKSTART)}
)


def get_profile(profile: str | TrainingProfile) -> TrainingProfile:
    """A profile by name (``paper``, ``ci``, ``smoke``, ``quickstart``), or the profile itself."""
    if isinstance(profile, TrainingProfile):
        return profile
    key = str(profile).strip().lower()
    if key not in PROFILES:
        raise RobustConfigError(
            f"unknown training profile {profile!r}; valid profiles: {', '.join(PROFILES)}"
        )
    return PROFILES[key]
