"""Our FGSM / PGD / AutoAttack against the peer libraries, in one run (issue #12, item 3).

On identical models, data, budgets and seeds: FGSM and PGD-20 (step eps/2, random start) against
torchattacks; AutoAttack (APGD-CE + Square, the ``ci`` profile's budgets) against pyautoattack,
called two ways: ``direct`` (``run_standard_evaluation``, its checks included, as a user calls it)
and ``lean`` (its APGD and Square objects run directly on the clean-correct samples, then on the
survivors: no checks, no redundant passes). Every attack also gets a compute floor: its budget of
passes over the whole batch without early exit (``steps`` x one forward+backward, plus
``queries`` x one forward for Square), measured on the same batch in the same repetitions.

Timing: every contender of an attack (ours, the peers, the floor's passes) runs once per
repetition, in an order rotated between repetitions; wall time (``time.perf_counter``) and CPU time
(``time.process_time``) are reported as medians, and each ratio is the median over repetitions of
the ratio measured within one repetition (robust to drift on a shared machine). Robust accuracy is
measured by this script, the same way for everybody, over all ``n`` images (a misclassified clean
image counts as not robust), from the first repetition (every contender is seeded, so all
repetitions give the same images).

Rows whose variant does not exist in this tree (``early_exit=False`` before that field lands) are
skipped with a note, as is a peer whose library is not installed (torchattacks is in the ``bench``
extra only).

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/peers.py [--write BENCHMARKS.md]``
(``nox -s bench`` runs it after the pytest-benchmark tests). ``--write`` replaces the block between
``<!-- peers:start -->`` and ``<!-- peers:end -->`` in that file and leaves the rest untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pytest_robust.attacks import FGSM, PGD, AutoAttack, run_attack
from pytest_robust.attacks.base import Attack, seed_from
from pytest_robust.config import PROFILES
from pytest_robust.threat import Norm, ThreatModel

START = "<!-- peers:start -->"
END = "<!-- peers:end -->"
_CI = PROFILES["ci"].budgets
COLUMNS = (
    "model",
    "clean acc",
    "attack",
    "ours",
    "peer",
    "robust acc ours",
    "robust acc peer",
    "wall s ours",
    "wall s peer",
    "ours/peer wall",
    "ours/peer CPU",
    "floor wall s",
    "ours/floor wall",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Data, budgets and repetitions (defaults: the ``ci`` profile's budgets, 128 images, 32 px)."""

    n: int = 128
    size: int = 32
    eps: float = 4 / 255
    pgd_steps: int = _CI.pgd_steps
    apgd_steps: int = _CI.apgd_steps
    square_queries: int = _CI.square_queries
    reps: int = 3
    seed: int = 0
    #: forward(+backward) passes timed per repetition for the floor's unit costs
    floor_passes: int = 3


@dataclass(frozen=True, slots=True)
class ModelCase:
    name: str
    model: nn.Module


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """One contender's repetitions: wall and CPU seconds, and its adversarial images (first run)."""

    wall: tuple[float, ...]
    cpu: tuple[float, ...]
    x_adv: torch.Tensor | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    model: str
    clean_acc: float
    attack: str
    ours: str
    peer: str
    ours_acc: float
    peer_acc: float | None
    ours_wall: float
    peer_wall: float | None
    wall_ratio: float | None
    cpu_ratio: float | None
    floor_wall: float
    floor_ratio: float

    def cells(self) -> tuple[str, ...]:
        return (
            self.model,
            f"{self.clean_acc:.3f}",
            self.attack,
            self.ours,
            self.peer,
            f"{self.ours_acc:.3f}",
            _fmt(self.peer_acc, "{:.3f}"),
            f"{self.ours_wall:.3g}",
            _fmt(self.peer_wall, "{:.3g}"),
            _fmt(self.wall_ratio, "{:.2f}x"),
            _fmt(self.cpu_ratio, "{:.2f}x"),
            f"{self.floor_wall:.3g}",
            f"{self.floor_ratio:.2f}x",
        )


@dataclass(slots=True)
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else spec.format(value)


def has_field(cls: type, name: str) -> bool:
    """Whether the dataclass ``cls`` has the field ``name`` (``early_exit`` is added in parallel)."""
    return name in {f.name for f in dataclasses.fields(cls)}


@contextlib.contextmanager
def _library_shield() -> Iterator[None]:
    """Keep the global RNG and the trace function as they were (the peers reseed / reset them)."""
    tracer = sys.gettrace()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        sys.settrace(tracer)


def robust_accuracy(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x_adv.detach()).argmax(dim=1) == y).float().mean())


def perturbation_problem(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> str | None:
    """Why ``x_adv`` is not a valid Linf perturbation of ``x`` (None when it is)."""
    x_adv = x_adv.detach()
    if x_adv.shape != x.shape or not bool(torch.isfinite(x_adv).all()):
        return "wrong shape or non-finite values"
    if float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
        return "outside [0, 1]"
    worst = float((x_adv - x).abs().flatten(1).amax(dim=1).max())
    return f"Linf {worst:.6f} > eps" if worst > eps + 1e-6 else None


def interleave(contenders: dict[str, Callable[[], torch.Tensor | None]], reps: int) -> dict[str, Measured]:
    """Run every contender once per repetition, the order rotated each time; keep the first output."""
    names = list(contenders)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    first: dict[str, torch.Tensor | None] = {}
    for r in range(reps):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            w0, c0 = time.perf_counter(), time.process_time()
            out = contenders[name]()
            w1, c1 = time.perf_counter(), time.process_time()
            wall[name].append(w1 - w0)
            cpu[name].append(c1 - c0)
            first.setdefault(name, out)
    return {k: Measured(wall=tuple(wall[k]), cpu=tuple(cpu[k]), x_adv=first[k]) for k in names}


def _median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


# --- the contenders --------------------------------------------------------------------------


def ours(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings) -> torch.Tensor:
    threat = ThreatModel(norm=Norm.LINF, eps=s.eps)
    return run_attack(attack, model, x, y, threat, generator=torch.Generator().manual_seed(s.seed)).x_adv


def _torchattacks() -> Any | None:
    try:
        return importlib.import_module("torchattacks")
    except ImportError:
        return None


def torchattacks_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings) -> torch.Tensor:
    ta = importlib.import_module("torchattacks")
    out: torch.Tensor = ta.FGSM(model, eps=s.eps)(x, y)
    return out


def torchattacks_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings) -> torch.Tensor:
    ta = importlib.import_module("torchattacks")
    torch.manual_seed(s.seed)  # its random start draws from the global RNG
    attack = ta.PGD(model, eps=s.eps, alpha=s.eps / 2, steps=s.pgd_steps, random_start=True)
    out: torch.Tensor = attack(x, y)
    return out


def library_seed(s: Settings) -> int:
    """The integer seed our adapter hands the library for ``s.seed`` (so both draw the same starts)."""
    return seed_from(torch.Generator().manual_seed(s.seed))


def _pyautoattack(model: nn.Module, s: Settings) -> Any:
    """pyautoattack's AutoAttack with APGD-CE + Square at the budgets, as our adapter sets them."""
    pya = importlib.import_module("pyautoattack")
    adversary = pya.AutoAttack(
        model,
        attacks=["apgd-ce", "square"],
        device="cpu",
        eps=s.eps,
        norm="Linf",
        seed=library_seed(s),
        version="custom",
    )
    apgd = adversary.apgd
    apgd.n_iter, apgd.n_restarts = s.apgd_steps, 1
    # the step-size schedule is derived from n_iter in __init__ only: recompute it for the new n_iter
    apgd.n_iter_orig = s.apgd_steps
    apgd.n_iter_2 = max(int(0.22 * s.apgd_steps), 1)
    apgd.n_iter_min = max(int(0.06 * s.apgd_steps), 1)
    apgd.size_decr = max(int(0.03 * s.apgd_steps), 1)
    adversary.square.n_queries = s.square_queries
    return adversary


def pyautoattack_direct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings) -> torch.Tensor:
    """The library's own evaluation loop, as a user calls it (its checks included)."""
    x_adv, _ = _pyautoattack(model, s).run_standard_evaluation(x, y, batch_size=x.shape[0])
    out: torch.Tensor = x_adv
    return out


def pyautoattack_lean(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings) -> torch.Tensor:
    """APGD-CE then Square of the library, each on the samples still robust; no checks."""
    adversary = _pyautoattack(model, s)
    adversary.apgd.loss = "ce"
    x_adv = x.clone()
    with torch.no_grad():
        todo = (model(x).argmax(dim=1) == y).nonzero().flatten()
    for runner in (adversary.apgd, adversary.square):
        if todo.numel() == 0:
            break
        runner.seed = library_seed(s)
        adv = runner.perturb(x[todo], y[todo])
        with torch.no_grad():
            fooled = model(adv).argmax(dim=1) != y[todo]
        x_adv[todo[fooled]] = adv[fooled]
        todo = todo[~fooled]
    return x_adv


def _passes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, backward: bool) -> None:
    for _ in range(k):
        if backward:
            leaf = x.detach().requires_grad_(True)
            loss = nn.functional.cross_entropy(model(leaf), y, reduction="sum")
            torch.autograd.grad(loss, leaf)
        else:
            with torch.no_grad():
                model(x)


# --- one model ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Group:
    attack: str
    ours: dict[str, Callable[[], torch.Tensor]]
    #: None: the peer's library is not installed
    peers: dict[str, Callable[[], torch.Tensor] | None]
    #: (forward+backward passes, forward passes) of the budget over the whole batch
    floor: tuple[int, int]


def _groups(case: ModelCase, x: torch.Tensor, y: torch.Tensor, s: Settings, report: Report) -> list[_Group]:
    m = case.model
    have_ta = _torchattacks() is not None
    if not have_ta:
        note = "torchattacks is not installed (`pip install -e .[bench]`): its rows have no peer numbers"
        if note not in report.notes:
            report.notes.append(note)

    def our(attack: Attack) -> Callable[[], torch.Tensor]:
        return lambda: ours(attack, m, x, y, s)

    def peer(
        fn: Callable[[nn.Module, torch.Tensor, torch.Tensor, Settings], torch.Tensor],
    ) -> Callable[[], torch.Tensor]:
        return lambda: fn(m, x, y, s)

    pgd = f"PGD-{s.pgd_steps}"
    pgd_ours = {pgd: our(PGD(steps=s.pgd_steps, rel_step_size=0.5, random_start=True))}
    aa = f"AutoAttack (APGD-CE {s.apgd_steps} + Square {s.square_queries})"
    aa_kwargs: dict[str, Any] = {
        "attacks": ("apgd-ce", "square"),
        "apgd_steps": s.apgd_steps,
        "apgd_restarts": 1,
        "square_queries": s.square_queries,
    }
    aa_ours = {"AutoAttack": our(AutoAttack(**aa_kwargs))}
    for cls, label, store, kwargs in (
        (PGD, f"{pgd}, early_exit=False", pgd_ours, {"steps": s.pgd_steps}),
        (AutoAttack, "AutoAttack, early_exit=False", aa_ours, aa_kwargs),
    ):
        if has_field(cls, "early_exit"):
            store[label] = our(cls(**kwargs, early_exit=False))
            if cls is AutoAttack:  # the library's own checks off too: what "pyautoattack lean" runs
                bare = AutoAttack(**kwargs, early_exit=False, library_checks=False)
                store[f"{label}, library_checks=False"] = our(bare)
        else:
            note = f"`{cls.__name__}` has no `early_exit` field in this tree: the row `{label}` is skipped"
            if note not in report.notes:
                report.notes.append(note)
    ta = "torchattacks"
    return [
        _Group(
            attack="FGSM",
            ours={"FGSM": our(FGSM())},
            peers={f"{ta} FGSM": peer(torchattacks_fgsm) if have_ta else None},
            floor=(1, 0),
        ),
        _Group(
            attack=pgd,
            ours=pgd_ours,
            peers={f"{ta} PGD": peer(torchattacks_pgd) if have_ta else None},
            floor=(s.pgd_steps, 0),
        ),
        _Group(
            attack=aa,
            ours=aa_ours,
            peers={
                "pyautoattack direct": peer(pyautoattack_direct),
                "pyautoattack lean": peer(pyautoattack_lean),
            },
            floor=(s.apgd_steps, s.square_queries),
        ),
    ]


def measure_model(case: ModelCase, x: torch.Tensor, y: torch.Tensor, s: Settings, report: Report) -> None:
    """Append one row per (attack, our variant, peer) of ``case`` to ``report``."""
    model = case.model.eval()
    with torch.no_grad():
        clean = float((model(x).argmax(dim=1) == y).float().mean())
    for group in _groups(case, x, y, s, report):
        runnable: dict[str, Callable[[], torch.Tensor | None]] = {
            **{f"ours:{k}": v for k, v in group.ours.items()},
            **{f"peer:{k}": v for k, v in group.peers.items() if v is not None},
            "floor:fb": lambda: _passes(model, x, y, s.floor_passes, backward=True),
        }
        if group.floor[1]:
            runnable["floor:f"] = lambda: _passes(model, x, y, s.floor_passes, backward=False)
        with _library_shield():
            got = interleave(runnable, s.reps)
        floors = [
            group.floor[0] * fb / s.floor_passes
            + (group.floor[1] * got["floor:f"].wall[r] / s.floor_passes if group.floor[1] else 0.0)
            for r, fb in enumerate(got["floor:fb"].wall)
        ]
        acc: dict[str, float] = {}
        for key, m in got.items():
            if m.x_adv is None:
                continue
            problem = perturbation_problem(x, m.x_adv, s.eps)
            if problem:
                report.notes.append(f"{case.name}, {group.attack}, {key}: INVALID perturbation ({problem})")
            acc[key] = robust_accuracy(model, m.x_adv, y)
        for our_label in group.ours:
            mine = got[f"ours:{our_label}"]
            for peer_label in group.peers:
                theirs = got.get(f"peer:{peer_label}")
                report.rows.append(
                    Row(
                        model=case.name,
                        clean_acc=clean,
                        attack=group.attack,
                        ours=our_label,
                        peer=peer_label if theirs is not None else f"{peer_label} (not installed)",
                        ours_acc=acc[f"ours:{our_label}"],
                        peer_acc=acc.get(f"peer:{peer_label}"),
                        ours_wall=statistics.median(mine.wall),
                        peer_wall=statistics.median(theirs.wall) if theirs else None,
                        wall_ratio=_median_ratio(mine.wall, theirs.wall) if theirs else None,
                        cpu_ratio=_median_ratio(mine.cpu, theirs.cpu) if theirs else None,
                        floor_wall=statistics.median(floors),
                        floor_ratio=_median_ratio(mine.wall, floors),
                    )
                )


def run(models: Sequence[ModelCase], x: torch.Tensor, y: torch.Tensor, s: Settings) -> Report:
    report = Report()
    for case in models:
        measure_model(case, x, y, s, report)
    weaker = [r for r in report.rows if r.peer_acc is not None and r.ours_acc > r.peer_acc + 1e-12]
    report.notes.append(
        "ours never weaker than the peer (robust accuracy ours <= peer in every row): "
        + ("yes" if not weaker else "NO: " + "; ".join(f"{r.model} {r.ours} vs {r.peer}" for r in weaker))
    )
    return report


# --- output ------------------------------------------------------------------------------------


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(r.cells()) + " |" for r in rows),
    ]
    return "\n".join(lines)


def render(report: Report, header: str) -> str:
    parts = [header, "", markdown_table(report.rows)]
    if report.notes:
        parts += ["", *(f"- {n}" for n in report.notes)]
    return "\n".join(parts)


def replace_block(text: str, block: str, *, start: str = START, end: str = END) -> str:
    """``text`` with what lies between the markers replaced by ``block``; the rest byte-identical."""
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0 or j < i or text.count(start) != 1 or text.count(end) != 1:
        raise ValueError(f"expected one {start!r} followed by one {end!r}")
    return text[: i + len(start)] + "\n" + block.strip("\n") + "\n" + text[j:]


def write_block(path: Path, block: str) -> None:
    """Replace the marked block of ``path`` in place (bytes outside the markers are kept)."""
    text = path.read_bytes().decode("utf-8")
    new = replace_block(text, block)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(new.encode("utf-8"))
    os.replace(tmp, path)


# --- models --------------------------------------------------------------------------------------


def default_models(s: Settings, *, timm_arch: str, cache_dir: Path | None) -> list[ModelCase]:
    """The quick-start small CNN (standard, PGD-AT; from the checkpoint cache, trained on a miss on
    the plugin's default synthetic training set) and ``timm_arch`` briefly trained (2 epochs, 1024
    synthetic images at ``s.size`` px, seeded)."""
    from pytest_robust.architectures import create_model
    from pytest_robust.config import default_cache_dir
    from pytest_robust.data.synthetic import generate_synthetic
    from pytest_robust.quickstart import quickstart_model
    from pytest_robust.training import TrainConfig, seeded, train

    cache = cache_dir if cache_dir is not None else default_cache_dir()
    quick = generate_synthetic(2048, size=s.size, seed=s.seed, split="train")
    cases = [
        ModelCase(
            f"small CNN {recipe} (quick-start)",
            quickstart_model(quick, recipe, cache_dir=cache, seed=s.seed, device="cpu", progress=False).model,
        )
        for recipe in ("standard", "pgd-at")
    ]
    with seeded(s.seed):
        net = create_model(timm_arch, num_classes=2)
    data = generate_synthetic(1024, size=s.size, seed=s.seed, split="train")
    train(net, data, TrainConfig(epochs=2, batch_size=64, lr=1e-3, seed=s.seed), device="cpu", progress=False)
    cases.append(ModelCase(f"{timm_arch} (timm, 2 epochs standard)", net.eval()))
    return cases


def _version(name: str) -> str:
    try:
        return str(importlib.import_module(name).__version__)
    except (ImportError, AttributeError):
        return "not installed"


def header(s: Settings, command: str, seconds: float, load: str = "?") -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    threads = torch.get_num_threads()
    return (
        f"`{command}` ({today}; torch {torch.__version__}, {threads} torch thread"
        f"{'s' if threads != 1 else ''}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
        f"torchattacks {_version('torchattacks')}, pyautoattack {_version('pyautoattack')}): "
        f"{s.n} synthetic test images at {s.size} px, Linf eps {s.eps * 255:g}/255, seed {s.seed}, "
        f"{s.reps} interleaved repetitions, medians; ratios are medians of per-repetition ratios; "
        f"{seconds:.0f} s in all; load average at the start {load}. On a shared machine the CPU "
        "ratio is the one to read: the wall ratio also counts time the process waited for a core."
    )


def main(argv: Sequence[str] | None = None) -> int:
    defaults = Settings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=defaults.n, help="synthetic test images (default %(default)s)")
    p.add_argument("--size", type=int, default=defaults.size, help="image side in px (default %(default)s)")
    p.add_argument("--reps", type=int, default=defaults.reps, help="interleaved repetitions")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--pgd-steps", type=int, default=defaults.pgd_steps)
    p.add_argument("--apgd-steps", type=int, default=defaults.apgd_steps)
    p.add_argument("--square-queries", type=int, default=defaults.square_queries)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--timm-arch", default="resnet18", help="the timm model (default %(default)s)")
    p.add_argument("--cache-dir", type=Path, default=None, help="checkpoint cache (default: the plugin's)")
    p.add_argument("--write", type=Path, default=None, metavar="MARKDOWN", help="replace the marked block")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    s = Settings(
        n=args.n,
        size=args.size,
        reps=args.reps,
        seed=args.seed,
        pgd_steps=args.pgd_steps,
        apgd_steps=args.apgd_steps,
        square_queries=args.square_queries,
    )
    from pytest_robust.data.synthetic import generate_synthetic

    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    t0 = time.perf_counter()
    models = default_models(s, timm_arch=args.timm_arch, cache_dir=args.cache_dir)
    test = generate_synthetic(s.n, size=s.size, seed=s.seed, split="test")
    report = run(models, test.images, test.labels, s)
    command = "python benchmarks/peers.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    text = render(report, header(s, command, time.perf_counter() - t0, load))
    print(text)
    if args.write is not None:
        write_block(args.write, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
