"""PGD-20 last iterate (before) vs best iterate (now) on the ten benchmark checkpoints, same random starts.

Run from the repository root: ``PYTHONPATH=. python benchmarks/pgd_best_vs_last.py`` (docs/results.md).
"""

from dataclasses import dataclass

import torch

from fixtures.isic import load_split
from pytest_robust.architectures import REFERENCE_ARCHITECTURES
from pytest_robust.attacks import PGD
from pytest_robust.attacks.base import input_gradient
from pytest_robust.attacks.gradient import ascent_direction, random_start_point
from pytest_robust.checkpoints import build_checkpoint
from pytest_robust.config import PROFILES, RobustConfig
from pytest_robust.evaluate import evaluate
from pytest_robust.perturbation import project
from pytest_robust.soundness import SoundnessConfig
from pytest_robust.threat import Norm, ThreatModel

torch.set_num_threads(2)


@dataclass(frozen=True)
class LastIterate:
    steps: int = 20
    name: str = "pgd-last"

    def config(self):
        return {"name": self.name, "steps": self.steps}

    def describe(self):
        return "PGD-20 last iterate"

    def perturb(self, model, x, y, threat, *, generator):
        x_adv = random_start_point(x, threat, generator)
        for _ in range(self.steps):
            g, _ = input_gradient(model, x_adv, y)
            x_adv = project(x_adv + threat.eps / 2 * ascent_direction(g, threat.norm), x, threat)
        return x_adv


rc = RobustConfig(profile=PROFILES["ci"])
train = load_split(rc, "train")
test = load_split(rc, "test").subset(256, seed=0)
off = SoundnessConfig(enabled=False)
print("| model | " + " | ".join(f"{e}/255 last → best" for e in (2, 4, 8)) + " |")
print("|---|---|---|---|")
for arch in REFERENCE_ARCHITECTURES:
    for recipe in ("standard", "pgd-at"):
        m = build_checkpoint(
            arch, recipe, "ci", train, seed=0, cache_dir=rc.resolved_cache_dir(), device=torch.device("cpu")
        ).model
        cells = []
        for e in (2, 4, 8):
            t = ThreatModel(norm=Norm.LINF, eps=e / 255)
            last = evaluate(m, test, LastIterate(), t, device="cpu", soundness=off)
            best = evaluate(m, test, PGD(steps=20), t, device="cpu", soundness=off)
            pairs = zip(best.robust_correct, last.robust_correct, strict=True)
            assert all(b <= a for b, a in pairs), (arch, recipe, e)  # best breaks all that last broke
            cells.append(f"{last.robust_acc * 100:.1f} → {best.robust_acc * 100:.1f}")
        print(f"| {arch} {recipe} | " + " | ".join(cells) + " |", flush=True)
