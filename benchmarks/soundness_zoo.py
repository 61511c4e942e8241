"""The zoo of tests/zoo.py around the quick-start standard CNN (ci budgets, synthetic, n=256, Linf 4/255).

Run from the repository root: ``PYTHONPATH=. python benchmarks/soundness_zoo.py`` (docs/results.md).
"""

import sys

import torch

sys.path.insert(0, "tests")
from zoo import ZOO

from pytest_robust.attacks import FGSM, PGD, AutoAttack
from pytest_robust.config import default_cache_dir
from pytest_robust.data.synthetic import generate_synthetic
from pytest_robust.errors import RobustError, RobustModelError
from pytest_robust.gate import assert_robust
from pytest_robust.quickstart import quickstart_model

torch.set_num_threads(1)
train = generate_synthetic(2048, size=32, seed=0, split="train")
test = generate_synthetic(660, size=32, seed=0, split="test")
base = quickstart_model(
    train, "standard", cache_dir=default_cache_dir(), seed=0, device=torch.device("cpu")
).model.eval()
attacks = {"FGSM": FGSM(), "PGD-20": PGD(steps=20), "aa": AutoAttack(apgd_steps=25, square_queries=100)}
print("| wrapper | " + " | ".join(attacks) + " |")
print("|---|---|---|---|")
passes = 0
for name, W in [("none (the base model)", None), *ZOO.items()]:
    m = base if W is None else W(base).eval()
    cells = []
    for _label, a in attacks.items():
        try:
            r = assert_robust(
                m, a, eps=4 / 255, min_acc=0.5, data=test, n=256, device="cpu", soundness="warn"
            )
            verdict = "UNSOUND" if not r.sound else ("PASS" if r.passed else "FAIL")
            if r.sound and r.passed:
                passes += 1
            cells.append(
                f"{r.robust_acc:.3f} {verdict}"
                + (f" ({', '.join(r.verdict.failed_checks)})" if not r.sound else "")
            )
        except RobustModelError:
            cells.append("RobustModelError (no gradient path)")
        except RobustError as e:
            r = e.result
            verdict = "UNSOUND" if not r.sound else "FAIL"
            cells.append(
                f"{r.robust_acc:.3f} {verdict}"
                + (f" ({', '.join(r.verdict.failed_checks)})" if not r.sound else "")
            )
    print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
print(f"\nsound passes of a masked model: {passes} (the base model does not pass)")
