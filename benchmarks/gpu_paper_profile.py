"""The paper profile, reduced to fit one GPU in under ten minutes (issue #12, item 5).

Trains two reference architectures (default ``resnet50`` and ``convnext_tiny``) at 224 px, each
standard and with PGD adversarial training, on synthetic data (or ``--data`` PATH, the Kaggle ISIC
layout), with the project's training API (:func:`pytest_robust.training.train`, the ``paper``
training profile with the deviations below), then evaluates every model with the ``paper``
evaluation profile's attack budgets (:data:`pytest_robust.config.PROFILES`): FGSM, PGD-20 (step
eps/2, random start), AutoAttack APGD-CE (100 steps x 5 restarts) + Square (5000 queries), through
:func:`pytest_robust.evaluate.evaluate` (soundness checks off: they are timed elsewhere, and the
point here is the attacks' cost at 224 px). It prints the GPU's name, the wall time of every step
and the numbers as Markdown tables.

Deviations from the paper profile (Table IV), to fit the time: 1024 training images instead of
all; 3 epochs instead of 50 for both recipes; Adam lr 1e-3 with per-step cosine decay instead of a
constant 1e-4 (from scratch, 1e-4 barely moves in a few epochs: the ``ci`` profile's finding); 64
test images instead of all 660. Everything else is the paper's: 224 px, batch 32, weight decay
1e-4, PGD-AT from scratch at Linf eps 2/255 with 10 steps of 1/255; the evaluation budgets above at
Linf eps 4/255 (``--eps``).

Time on one H100 -- an ESTIMATE from FLOPs, not a measurement (to be verified the first time a GPU
is lent; BENCHMARKS.md says whether it has been). fp32 (TF32 convolutions, torch's default), no
AMP. ResNet-50 costs about 4.1 GFLOP per 224 px image forward, ConvNeXt-T 4.5; a forward+backward
about 3x that (~13 GFLOP). Assumed, conservatively: 15 TFLOP/s effective for forward+backward
(~1150 images/s, a fraction of the card's peak), 30 TFLOP/s for forwards, and at least 10 ms per
call on small batches (Python and kernel-launch overhead).

* data: 1024 + 64 synthetic images at 224 px, ~100 images/s on one core: ~11 s.
* training, per architecture: standard 3 x 1024 = 3 k forward+backward passes; PGD-AT 3 x 1024 x
  (10 attack steps + 1 update) = 34 k; BatchNorm recalibration on PGD examples ~11 k more: ~48 k
  passes x 13 GFLOP = 620 TFLOP, ~42 s; both architectures ~85 s.
* evaluation, per model, worst case (every image survives every attack): FGSM 64 and PGD-20
  1.3 k passes, ~2 s; APGD-CE 100 x 5 restarts x 64 = 32 k passes, ~28 s (500 calls, above the
  latency floor); Square 5000 forward calls on <= 64 images, 10 ms each: ~50 s. ~80 s per model,
  ~320 s for the four; a model that breaks under APGD leaves Square nothing to do.
* start-up (CUDA, timm, model creation): ~20 s.

Total, worst case: ~7.5 minutes; a typical run (the standard models break early) less. With
``--data`` add the decoding of the ISIC folder's 3297 JPEGs at 224 px (not estimated; the subsets
are drawn after decoding both splits).

Dry run on a CPU (what the test suite runs so this script does not rot): ``--allow-cpu --tiny``
(32 px, 16 training and 8 test images, 1 epoch, PGD-AT 1 step, PGD-2, APGD-CE 2 steps x 1 restart,
Square 5 queries). Without CUDA and without ``--allow-cpu`` it exits with status 2.

Run: ``bash benchmarks/gpu_paper_profile.sh`` (from the repository root; arguments are passed on).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

EXIT_NO_GPU = 2
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    """What one run trains and evaluates (the defaults fit one H100 in < 10 min: see the docstring)."""

    image_size: int = 224
    train_n: int = 1024
    test_n: int = 64
    epochs: int = 3
    at_steps: int = 10
    pgd_steps: int = 20
    apgd_steps: int = 100
    apgd_restarts: int = 5
    square_queries: int = 5000
    batch_size: int = 128


#: ``--tiny``: a dry run of every step in seconds on a CPU
TINY = Sizes(
    image_size=32,
    train_n=16,
    test_n=8,
    epochs=1,
    at_steps=1,
    pgd_steps=2,
    apgd_steps=2,
    apgd_restarts=1,
    square_queries=5,
    batch_size=8,
)


def paper_sizes() -> Sizes:
    """The default sizes with the ``paper`` evaluation profile's attack budgets."""
    from pytest_robust.config import PROFILES

    b = PROFILES["paper"].budgets
    return Sizes(
        image_size=PROFILES["paper"].image_size,
        pgd_steps=b.pgd_steps,
        apgd_steps=b.apgd_steps,
        apgd_restarts=b.apgd_restarts,
        square_queries=b.square_queries,
    )


@dataclass(slots=True)
class Clock:
    """Wall time of each named step (the device synchronised before and after)."""

    device: torch.device
    steps: list[tuple[str, float]] = dataclasses.field(default_factory=list)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.sync()
        t0 = time.perf_counter()
        yield
        self.sync()
        seconds = time.perf_counter() - t0
        self.steps.append((name, seconds))
        print(f"[{seconds:8.1f} s] {name}", file=sys.stderr, flush=True)

    def timed(self, name: str, fn: Callable[[], T]) -> tuple[T, float]:
        with self.step(name):
            out = fn()
        return out, self.steps[-1][1]


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def training_profile(sizes: Sizes) -> Any:
    """The ``paper`` training profile with this run's epochs, PGD-AT steps and deviations."""
    from pytest_robust.recipes import PAPER
    from pytest_robust.training import LrSchedule

    return dataclasses.replace(
        PAPER,
        name="paper-reduced",
        description="the paper profile reduced to fit one GPU in < 10 min (benchmarks/gpu_paper_profile.py)",
        image_size=sizes.image_size,
        epochs=sizes.epochs,
        lr=1e-3,
        lr_schedule=LrSchedule.COSINE,
        at_steps=sizes.at_steps,
        deviations=(
            f"{sizes.train_n} training images, {_n(sizes.epochs, 'epoch')} instead of 50",
            "lr 1e-3 with cosine decay instead of a constant 1e-4",
            *(() if sizes.image_size == 224 else (f"{sizes.image_size} px instead of 224 px",)),
            *(() if sizes.at_steps == 10 else (f"PGD-AT {_n(sizes.at_steps, 'step')} instead of 10",)),
        ),
    )


def load_data(sizes: Sizes, data: Path | None, seed: int) -> tuple[Any, Any]:
    """(train, test): synthetic, or the Kaggle ISIC layout at ``data``; stratified subsets."""
    if data is None:
        from pytest_robust.data.synthetic import generate_synthetic

        train = generate_synthetic(sizes.train_n, size=sizes.image_size, seed=seed, split="train")
        test = generate_synthetic(sizes.test_n, size=sizes.image_size, seed=seed, split="test")
        return train, test
    from pytest_robust.data.isic import load_isic_folder

    splits = [load_isic_folder(data, split=s, size=sizes.image_size) for s in ("train", "test")]
    return splits[0].subset(sizes.train_n, seed=seed), splits[1].subset(sizes.test_n, seed=seed)


def attacks(sizes: Sizes) -> dict[str, Any]:
    from pytest_robust.attacks import FGSM, PGD, AutoAttack

    return {
        "FGSM": FGSM(),
        f"PGD-{sizes.pgd_steps}": PGD(steps=sizes.pgd_steps, rel_step_size=0.5, restarts=1),
        "AutoAttack": AutoAttack(
            apgd_steps=sizes.apgd_steps,
            apgd_restarts=sizes.apgd_restarts,
            square_queries=sizes.square_queries,
        ),
    }


def run(
    sizes: Sizes, *, archs: Sequence[str], device: torch.device, data: Path | None, eps: float, seed: int
) -> str:
    """Train and evaluate; returns the Markdown report (the steps' times are printed as they end)."""
    from pytest_robust.architectures import create_model
    from pytest_robust.evaluate import evaluate
    from pytest_robust.soundness import SoundnessConfig
    from pytest_robust.threat import Norm, ThreatModel
    from pytest_robust.training import Recipe, seeded, train

    clock = Clock(device)
    t_start = time.perf_counter()
    (train_set, test_set), _ = clock.timed("data", lambda: load_data(sizes, data, seed))
    profile = training_profile(sizes)
    threat = ThreatModel(norm=Norm.LINF, eps=eps)
    off = SoundnessConfig(enabled=False)
    budgets = attacks(sizes)
    rows: list[str] = []
    for arch in archs:
        for recipe in (Recipe.STANDARD, Recipe.PGD_AT):
            with seeded(seed):
                model = create_model(arch, num_classes=train_set.num_classes)
            config = profile.train_config(recipe, seed=seed)
            _, train_s = clock.timed(
                f"train {arch} {recipe.value}",
                lambda m=model, c=config: train(m, train_set, c, device=device, progress=False),
            )
            cells: list[str] = []
            times: list[str] = []
            clean = None
            for name, attack in budgets.items():
                result, secs = clock.timed(
                    f"evaluate {arch} {recipe.value} {name}",
                    lambda m=model, a=attack: evaluate(
                        m,
                        test_set,
                        a,
                        threat,
                        device=device,
                        seed=seed,
                        batch_size=sizes.batch_size,
                        progress=False,
                        soundness=off,
                    ),
                )
                clean = result.clean_acc
                cells.append(f"{result.robust_acc:.3f}")
                times.append(f"{secs:.1f}")
            rows.append(
                f"| {arch} | {recipe.value} | {train_s:.1f} | {clean:.3f} | "
                + " | ".join(cells + times)
                + " |"
            )
            model.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()
    total = time.perf_counter() - t_start
    names = list(budgets)
    head = (
        "| arch | recipe | train s | clean acc | "
        + " | ".join(f"{n} robust acc" for n in names)
        + " | "
        + " | ".join(f"{n} s" for n in names)
        + " |"
    )
    budget = (
        f"PGD-{sizes.pgd_steps} step eps/2 random start; AutoAttack APGD-CE {_n(sizes.apgd_steps, 'step')} "
        f"x {_n(sizes.apgd_restarts, 'restart')} + Square {_n(sizes.square_queries, 'query', 'queries')}"
    )
    lines = [
        f"device: {describe_device(device)}; torch {torch.__version__}",
        f"data: {'synthetic' if data is None else data} at {sizes.image_size} px, {len(train_set)} "
        f"training and {len(test_set)} test images; Linf eps {eps * 255:g}/255; seed {seed}",
        f"training: {profile.name} ({'; '.join(profile.deviations)}); PGD-AT eps "
        f"{profile.at_eps * 255:g}/255, {_n(profile.at_steps, 'step')} of "
        f"{profile.at_step_size * 255:g}/255, from scratch",
        f"attacks: FGSM; {budget}; soundness checks off",
        "",
        head,
        "|" + "---|" * head.count(" | ") + "---|",
        *rows,
        "",
        "| step | wall s |",
        "|---|---|",
        *(f"| {name} | {secs:.1f} |" for name, secs in clock.steps),
        f"| **total** | **{total:.1f}** |",
    ]
    return "\n".join(lines)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU, {torch.get_num_threads()} torch thread(s)"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Train 2 architectures at 224 px (standard, PGD-AT), attack them with the paper budgets."
    )
    p.add_argument("--archs", default="resnet50,convnext_tiny", help="comma-separated (default %(default)s)")
    p.add_argument(
        "--data", type=Path, default=None, help="the ISIC folder (Kaggle layout); default synthetic"
    )
    p.add_argument("--eps", type=float, default=4.0, help="Linf eps in 1/255 (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--allow-cpu", action="store_true", help="run on the CPU when no GPU is there (needs --tiny)"
    )
    p.add_argument("--tiny", action="store_true", help="tiny sizes and budgets: a dry run of every step")
    p.add_argument("--threads", type=int, default=1, help="torch threads on a CPU (default %(default)s)")
    args = p.parse_args(argv)
    if torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    elif args.allow_cpu and args.tiny:
        device = torch.device("cpu")
        torch.set_num_threads(args.threads)
    else:
        print(
            "gpu_paper_profile: no CUDA GPU is available (torch.cuda.is_available() is False). This "
            "benchmark needs one (about 10 minutes on an H100); for a dry run on a CPU pass "
            "--allow-cpu --tiny.",
            file=sys.stderr,
        )
        return EXIT_NO_GPU
    sizes = TINY if args.tiny else paper_sizes()
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    print(f"gpu_paper_profile on {describe_device(device)}: {sizes}", file=sys.stderr, flush=True)
    report = run(sizes, archs=archs, device=device, data=args.data, eps=args.eps / 255, seed=args.seed)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
