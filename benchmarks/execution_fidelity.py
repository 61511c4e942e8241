"""Does the table's setting change any decision on the trained benchmark models? (issue #12)

For each cached ``ci`` benchmark checkpoint (five architectures x standard / PGD-AT, trained on the
benchmark's default data; a checkpoint not in the cache is skipped, never trained), evaluates
PGD with the ``ci`` budget at Linf 4/255 on the first ``--n`` test images twice - ``execution="fp32"``
and ``execution="auto"`` - and prints, per model, the setting auto used (after its fidelity check),
the attack seconds of both and how many per-sample robust decisions differ.

Run from the repository root (a few minutes with 1 thread; uses the checkpoint cache):

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/execution_fidelity.py [--n 128]
"""

from __future__ import annotations

import argparse

import torch

from fixtures.isic import load_split
from pytest_robust.architectures import REFERENCE_ARCHITECTURES
from pytest_robust.attacks import PGD
from pytest_robust.cache import CheckpointCache, spec_key
from pytest_robust.checkpoints import build_checkpoint, checkpoint_spec, training_data
from pytest_robust.config import PROFILES, RobustConfig
from pytest_robust.evaluate import evaluate
from pytest_robust.recipes import get_profile
from pytest_robust.soundness import SoundnessConfig
from pytest_robust.threat import Norm, ThreatModel
from pytest_robust.training import Recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rc = RobustConfig(profile=PROFILES["ci"])
    train = load_split(rc, "train")
    test = load_split(rc, "test").subset(args.n, seed=0)
    profile = get_profile("ci")
    cache = CheckpointCache(rc.resolved_cache_dir())
    budget = rc.profile.budgets
    attack = PGD(steps=budget.pgd_steps, rel_step_size=budget.pgd_rel_step_size, restarts=budget.pgd_restarts)
    threat = ThreatModel(norm=Norm.LINF, eps=4 / 255)
    off = SoundnessConfig(enabled=False)
    print(f"PGD-{budget.pgd_steps}, Linf 4/255, {len(test)} images ({test.name}), {args.threads} thread(s)\n")
    columns = [
        "model",
        "auto used (proposed)",
        "fidelity",
        "robust fp32",
        "robust auto",
        "decisions differing",
        "rechecked in fp32 (broken)",
        "attack s fp32",
        "attack s auto",
        "fidelity s",
    ]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for arch in REFERENCE_ARCHITECTURES:
        for recipe in ("standard", "pgd-at"):
            data = training_data(train, profile, seed=0)
            key = spec_key(checkpoint_spec(arch, Recipe.coerce(recipe), profile, data, seed=0))
            if not (cache.entry(key) / "model.safetensors").is_file():
                print(f"| {arch} {recipe} | not cached |" + " |" * (len(columns) - 2))
                continue
            model = build_checkpoint(
                arch, recipe, "ci", train, seed=0, cache_dir=rc.resolved_cache_dir(), device="cpu"
            ).model
            runs = {
                mode: evaluate(model, test, attack, threat, device="cpu", soundness=off, execution=mode)
                for mode in ("fp32", "auto")
            }
            a, b = runs["fp32"], runs["auto"]
            differ = sum(x != y for x, y in zip(a.robust_correct, b.robust_correct, strict=True))
            ex = b.execution
            rechecked = ex.get("rechecked", {"samples": 0, "broken": 0})
            cells = [
                f"{arch} {recipe}",
                f"{ex['used']} ({ex['candidate']})",
                ex["fidelity"]["status"],
                f"{a.robust_acc:.3f}",
                f"{b.robust_acc:.3f}",
                f"{differ} of {a.n}",
                f"{rechecked['samples']} ({rechecked['broken']})",
                f"{a.timings['attack_s']:.1f}",
                f"{b.timings['attack_s']:.1f}",
                f"{b.timings['execution_s']:.1f}",
            ]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
