"""Samples used by the sequential policy against the fixed-n policies, on the ten benchmark models.

    PYTHONPATH=. python benchmarks/sequential_models.py [--data PATH] [--n 256 660] [--min-acc 0.25 0.5]

Loads (or trains) the suite's ten checkpoints of the ``ci`` profile from the checkpoint cache, and
for each model and requirement runs the PGD-20 gate at 4/255 three ways: the point estimate and the
exact lower confidence bound on all N samples, and :class:`~pytest_robust.policies.Sequential`
(stops once the anytime-valid confidence sequence decides). Prints a Markdown table: the decisions
and the samples the sequential gate used. Soundness checks are switched off here: they do not
change which samples are attacked, and this measures samples, not time.
"""

from __future__ import annotations

import argparse
import time

import torch

from fixtures.isic import load_split
from pytest_robust.architectures import REFERENCE_ARCHITECTURES
from pytest_robust.attacks import PGD
from pytest_robust.checkpoints import build_checkpoint
from pytest_robust.config import PROFILES, RobustConfig, parse_data
from pytest_robust.gate import RobustnessFailure, RobustResult, assert_robust
from pytest_robust.policies import LowerConfidenceBound, PointEstimate, Sequential
from pytest_robust.soundness import SoundnessConfig

EPS = 4 / 255


def gate(model: torch.nn.Module, data, n: int, min_acc: float, policy) -> RobustResult:  # type: ignore[no-untyped-def]
    try:
        return assert_robust(
            model,
            PGD(steps=20),
            eps=EPS,
            min_acc=min_acc,
            data=data,
            n=n,
            device="cpu",
            policy=policy,
            checks=SoundnessConfig(enabled=False),
            batch_size=128,
        )
    except RobustnessFailure as exc:
        return exc.result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--n", type=int, nargs="+", default=[256, 660])
    parser.add_argument("--min-acc", type=float, nargs="+", default=[0.25, 0.5])
    args = parser.parse_args()
    rc = RobustConfig(profile=PROFILES["ci"], data=parse_data(args.data))
    train, test = load_split(rc, "train"), load_split(rc, "test")
    rows = []
    t0 = time.perf_counter()
    for arch in REFERENCE_ARCHITECTURES:
        for recipe in ("standard", "pgd-at"):
            model = build_checkpoint(
                arch,
                recipe,
                "ci",
                train,
                seed=0,
                cache_dir=rc.resolved_cache_dir(),
                device=torch.device("cpu"),
            ).model
            for n in args.n:
                fixed = gate(model, test, n, 0.0, PointEstimate())
                for min_acc in args.min_acc:
                    point = PointEstimate().decide(fixed.evaluation, min_acc)
                    lcb = LowerConfidenceBound().decide(fixed.evaluation, min_acc)
                    seq = gate(model, test, n, min_acc, Sequential())
                    rows.append(
                        (
                            f"{arch} {recipe}",
                            fixed.n,
                            min_acc,
                            fixed.robust_acc,
                            point.passed,
                            lcb.passed,
                            seq.verdict.details["sequential"],
                            seq.n,
                        )
                    )
    print(f"data: {args.data}; PGD-20 at 4/255; {time.perf_counter() - t0:.0f} s\n")
    print(
        "| model | N | required | robust acc (all N) | point estimate | lower bound | sequential | "
        "samples used |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for model, n, req, acc, point, lcb, seq, used in rows:
        print(
            f"| {model} | {n} | {req:.2f} | {acc:.3f} | {'pass' if point else 'fail'} | "
            f"{'pass' if lcb else 'fail'} | {seq} | {used} ({used / n:.0%}) |"
        )
    total = sum(r[1] for r in rows)
    used = sum(r[7] for r in rows)
    print(
        f"\nsamples: sequential {used} of {total} ({used / total:.0%}); "
        f"median share {sorted(r[7] / r[1] for r in rows)[len(rows) // 2]:.0%}"
    )
    wrong = [r for r in rows if r[6] == "pass" and not r[5]]
    print(f"sequential passes that the fixed-n lower bound fails: {len(wrong)}")


if __name__ == "__main__":
    main()
