"""The execution settings per architecture: fp32 vs channels_last vs bf16 vs both (issue #12).

Measures what an attack step costs - forward, cross-entropy, gradient with respect to the input -
for each of the five reference timm architectures (2 classes, random init: speed does not depend on
the weights' values) at 32 px, batch 16, on the CPU with 1 thread, under each setting of
:mod:`pytest_robust.execution`, with the code the harness runs (``time_settings``: interleaved
rounds, rotating order, medians). Prints a Markdown table of ratios (fp32 time / setting time) and
each row's decision by the table's rule (``choose``: the fastest when at least ``MIN_SPEEDUP``
times faster, else fp32), then the ``TABLE`` rows for ``pytest_robust/execution.py``.

Run from the repository root (about 3 minutes; other jobs on the machine slow every setting alike,
which is why only ratios of interleaved medians are reported):

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/execution_settings.py [--repeats 61] [--size 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pytest_robust.architectures import REFERENCE_ARCHITECTURES, create_model
from pytest_robust.execution import CANDIDATES, MIN_SPEEDUP, choose, speedups_of, time_settings
from pytest_robust.models import ClassifierView


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=61)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arch", nargs="*", default=list(REFERENCE_ARCHITECTURES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=generator)
    y = torch.randint(0, 2, (args.batch,), generator=generator)
    names = [s.name for s in CANDIDATES]
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.size} px, batch {args.batch}, "
        f"{args.repeats} interleaved rounds after 1 warm-up; cells: fp32 median step (s), else fp32 "
        f"time / setting time; decision: the fastest when >= {MIN_SPEEDUP}x, else fp32\n"
    )
    print("| architecture | fp32 step (s) | " + " | ".join(names[1:]) + " | decision |")
    print("|---|---|" + "---|" * (len(names) - 1) + "---|")
    rows = []
    start = time.perf_counter()
    for arch in args.arch:
        torch.manual_seed(0)
        view = ClassifierView(create_model(arch, num_classes=2).eval(), 2)
        seconds = time_settings(view, x, y, device_type="cpu", repeats=args.repeats)
        ratios = speedups_of(seconds)
        decision = choose(ratios)
        base = statistics.median(seconds["fp32"])
        cells = [f"{ratios[n]:.2f}x" if n in ratios else "fails" for n in names[1:]]
        print(f"| {arch} | {base:.3f} | " + " | ".join(cells) + f" | {decision.name} |", flush=True)
        rows.append((arch, ratios))
    print(f"\n({time.perf_counter() - start:.0f} s)\n\nTABLE rows for pytest_robust/execution.py:")
    for arch, ratios in rows:
        values = ", ".join(f"{ratios.get(n, 0.0)}" for n in names[1:])
        print(f'            _row("{arch}", "cpu", {values}),')


if __name__ == "__main__":
    main()
