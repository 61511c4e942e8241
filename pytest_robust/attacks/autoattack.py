"""AutoAttack (Croce & Hein, ICML 2020) as an :class:`~pytest_robust.attacks.base.Attack`.

A thin adapter over the ``pyautoattack`` package (preferred) or upstream ``autoattack``
(``pip install git+https://github.com/fra31/auto-attack``); both are imported lazily, inside
:meth:`AutoAttack.perturb`. The adapter chooses sub-attacks that are valid for the model's class
count (AutoAttack's DLR losses need 3 or 4 classes and otherwise crash mid-run, auto-attack issue
#76), sets the budgets on the library's sub-attack objects, and shields the caller from the
library's side effects: it reseeds the global torch RNG, calls ``sys.settrace(None)`` (which
switches off coverage tools and debuggers), prints, logs and warns.

The sub-attacks run in order, each on the samples still robust and in the library's batches
(what the library's own loop does), which tells per sample which sub-attack broke it: the
soundness checks compare the gradient-free Square with the gradient attacks. APGD-CE and
APGD-DLR run in the project's APGD (:mod:`pytest_robust.attacks.apgd`: the same algorithm, a
sample stops at its first fooling iterate) unless ``early_exit=False``, which runs the library's
APGD; APGD-T, FAB and Square always run in the library (its Square already stops per sample).
The library's sub-attack objects are called directly, as its loop calls them, so nothing is
computed twice: its own checks (randomness, probability outputs, dynamic defences, class count;
Square beating the others) run once per call instead of once per sub-attack, and their warnings
come back as ``flags`` of :meth:`AutoAttack.run`, never hidden.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pytest_robust import validate
from pytest_robust.attacks.apgd import APGD
from pytest_robust.attacks.base import AttackOutcome, keep_fooled, seed_from
from pytest_robust.errors import AttackUnavailableError, RobustConfigError, RobustModelError
from pytest_robust.threat import ThreatModel

_LOG = logging.getLogger(__name__)
_LIBRARY_LOGGER = "auto-attack"  # the logger pyautoattack writes to

BACKENDS = ("auto", "pyautoattack", "autoattack")
#: Sub-attack → the fewest classes it works with. The untargeted DLR loss divides by the gap
#: between the largest and the 3rd-largest logit; the targeted one averages the 3rd- and
#: 4th-largest. CE, Square's margin loss and FAB need only a runner-up class (FAB-T then has a
#: single target class).
MIN_CLASSES = {"apgd-ce": 2, "apgd-dlr": 3, "apgd-t": 4, "fab": 2, "fab-t": 2, "square": 2}
_WHY = {
    "apgd-dlr": "its DLR loss uses the 3rd-largest logit",
    "apgd-t": "its targeted DLR loss uses the 3rd- and 4th-largest logits",
}
_LABEL = {
    "apgd-ce": "APGD-CE",
    "apgd-dlr": "APGD-DLR",
    "apgd-t": "APGD-T",
    "fab": "FAB",
    "fab-t": "FAB-T",
    "square": "Square",
}
_INSTALL_HINT = "pip install pyautoattack"
#: Sub-attacks that use no gradient.
BLACK_BOX = frozenset({"square"})
#: Sub-attacks run by the project's APGD (with per-sample early exit) when ``early_exit`` is on,
#: with the loss of the same name.
NATIVE = {"apgd-ce": "ce", "apgd-dlr": "dlr"}


def auto_attacks(n_classes: int) -> tuple[str, ...]:
    """The sub-attacks run when ``attacks`` is ``None``.

    * 2 classes: APGD-CE + Square, the reference study's choice (no DLR loss exists for 2 classes).
    * 3 classes: the standard version with APGD-T (needs 4 classes) replaced by untargeted
      APGD-DLR, the same scale-invariant margin loss without a target; FAB-T runs with its 2
      possible targets. This is the only valid set that keeps a gradient attack on a loss other
      than CE, which is what guards against CE's gradient masking on overconfident models.
    * 4+ classes: the standard version, APGD-CE + APGD-T + FAB-T + Square.
    """
    if n_classes < 2:
        raise RobustModelError(f"AutoAttack needs a classifier with >= 2 classes, got {n_classes}")
    if n_classes == 2:
        return ("apgd-ce", "square")
    if n_classes == 3:
        return ("apgd-ce", "apgd-dlr", "fab-t", "square")
    return ("apgd-ce", "apgd-t", "fab-t", "square")


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one call runs: the resolved sub-attacks and library arguments."""

    attacks: tuple[str, ...]
    n_classes: int
    n_target_classes: int
    norm: str
    eps: float
    seed: int
    device: torch.device


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoAttack:
    """AutoAttack with the published budgets (standard version: APGD 100 steps, 1 restart;
    Square 5000 queries; FAB-T 1 restart; up to 9 target classes).

    ``attacks=None`` picks the sub-attacks from the class count (:func:`auto_attacks`); explicit
    names are checked against :data:`MIN_CLASSES`. ``apgd_steps`` and ``apgd_restarts`` apply to
    APGD-CE, APGD-DLR and APGD-T; ``fab_restarts`` to untargeted FAB (the library always runs
    FAB-T with one restart per target class).
    """

    attacks: tuple[str, ...] | None = None
    backend: str = "auto"
    apgd_steps: int = 100
    apgd_restarts: int = 1
    square_queries: int = 5000
    fab_restarts: int = 1
    batch_size: int = 500
    #: run the library's own checks (randomness, output range, dynamic defence) with each call;
    #: the soundness module switches them off for its internal probes, where they only cost time
    library_checks: bool = True
    #: run APGD-CE/APGD-DLR with the project's APGD (:mod:`pytest_robust.attacks.apgd`), which stops
    #: attacking a sample at its first fooling iterate; False: the library's APGD, every sample
    #: taking every step (the reference implementation, bit for bit). APGD-T, FAB and Square always
    #: run in the library (its Square already stops per sample).
    early_exit: bool = True

    def __post_init__(self) -> None:
        for field in ("apgd_steps", "apgd_restarts", "square_queries", "fab_restarts", "batch_size"):
            object.__setattr__(
                self, field, validate.positive_int(f"AutoAttack {field}", getattr(self, field))
            )
        if not isinstance(self.early_exit, bool):
            raise RobustConfigError(f"AutoAttack early_exit must be True or False, got {self.early_exit!r}")
        if self.backend not in BACKENDS:
            raise RobustConfigError(
                f"unknown AutoAttack backend {self.backend!r}; valid: {', '.join(BACKENDS)}"
            )
        if self.attacks is not None:
            names = (self.attacks,) if isinstance(self.attacks, str) else tuple(self.attacks)
            names = tuple(str(n).strip().lower() for n in names)
            if not names:
                raise RobustConfigError("AutoAttack attacks must not be empty (use None for auto)")
            for n in names:
                if n not in MIN_CLASSES:
                    raise RobustConfigError(
                        f"unknown AutoAttack sub-attack {n!r}; valid: {', '.join(MIN_CLASSES)}"
                    )
            if len(set(names)) != len(names):
                raise RobustConfigError(f"AutoAttack attacks list a sub-attack twice: {names}")
            object.__setattr__(self, "attacks", names)

    @property
    def name(self) -> str:
        return "autoattack"

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "attacks": list(self.attacks) if self.attacks is not None else "auto",
            "apgd_steps": self.apgd_steps,
            "apgd_restarts": self.apgd_restarts,
            "square_queries": self.square_queries,
            "fab_restarts": self.fab_restarts,
            "batch_size": self.batch_size,
            **({} if self.library_checks else {"library_checks": False}),
            "early_exit": self.early_exit,
        }

    def _part(self, attack: str) -> str:
        if attack.startswith("apgd"):
            s = "" if self.apgd_restarts == 1 else "s"
            exit_ = ", early exit" if self.early_exit and attack in NATIVE else ""
            return f"{_LABEL[attack]} {self.apgd_steps} steps x{self.apgd_restarts} restart{s}{exit_}"
        if attack == "fab":
            return f"FAB x{self.fab_restarts} restart{'' if self.fab_restarts == 1 else 's'}"
        return f"Square {self.square_queries} queries" if attack == "square" else _LABEL[attack]

    def describe(self) -> str:
        if self.attacks is not None:
            return f"AutoAttack({' + '.join(self._part(a) for a in self.attacks)})"
        sets = "; ".join(
            f"{'+'.join(_LABEL[a] for a in auto_attacks(n))} for {label}"
            for n, label in ((2, "2 classes"), (3, "3"), (4, ">=4"))
        )
        return (
            f"AutoAttack(auto: {sets}; {self._part('apgd-ce').removeprefix('APGD-CE ')} per "
            f"APGD, {self._part('square')})"
        )

    def plan(self, n_classes: int, threat: ThreatModel, seed: int, device: torch.device) -> _Plan:
        """Resolve the sub-attacks for ``n_classes``; raise RobustConfigError if one is invalid."""
        default = auto_attacks(n_classes)  # raises RobustModelError below 2 classes
        attacks = default if self.attacks is None else self.attacks
        for a in attacks:
            if n_classes < MIN_CLASSES[a]:
                raise RobustConfigError(
                    f"{a} needs >= {MIN_CLASSES[a]} classes ({_WHY[a]}), but the model has "
                    f"{n_classes}; it would crash inside AutoAttack. Valid for {n_classes} classes: "
                    f"{', '.join(k for k, v in MIN_CLASSES.items() if v <= n_classes)}"
                )
        return _Plan(attacks, n_classes, min(9, n_classes - 1), threat.norm.value, threat.eps, seed, device)

    def configure(self, adversary: Any, plan: _Plan) -> None:
        """Set the budgets on the library's sub-attack objects (after construction)."""
        for apgd in (adversary.apgd, adversary.apgd_targeted):
            apgd.n_iter = self.apgd_steps
            apgd.n_restarts = self.apgd_restarts
            # pyautoattack derives APGD's step-size checkpoints from n_iter in __init__ only
            # (upstream does it per run): recompute them, or a changed n_iter keeps the schedule
            # of 100 steps (with fewer than 22 steps the step size would never be halved).
            apgd.n_iter_orig = self.apgd_steps
            apgd.n_iter_2 = max(int(0.22 * self.apgd_steps), 1)
            apgd.n_iter_min = max(int(0.06 * self.apgd_steps), 1)
            apgd.size_decr = max(int(0.03 * self.apgd_steps), 1)
        adversary.apgd_targeted.n_target_classes = plan.n_target_classes
        adversary.fab.n_restarts = self.fab_restarts
        adversary.fab.n_target_classes = plan.n_target_classes
        adversary.square.n_queries = self.square_queries

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        return self.run(model, x, y, threat, generator=generator).x_adv

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator,
    ) -> AttackOutcome:
        """Run the sub-attacks in order, each on the samples none before it broke."""
        if x.shape[0] == 0:
            return AttackOutcome(x_adv=x.detach().clone())
        with torch.no_grad():
            out = model(x[:1])
        if out.dim() != 2:
            raise RobustModelError(f"AutoAttack needs (batch, classes) logits, got {tuple(out.shape)}")
        plan = self.plan(int(out.shape[1]), threat, seed_from(generator), x.device)
        if "square" in plan.attacks and threat.norm.value == "L2" and min(x.shape[-2:]) < 5:
            raise RobustConfigError(
                f"Square's L2 attack needs images of at least 5x5 pixels (it tiles them in 5x5 "
                f"windows), got {tuple(x.shape[-2:])}; pass attacks without 'square' or larger images"
            )
        parts = tuple({"name": a, "black_box": a in BLACK_BOX} for a in plan.attacks)
        if threat.eps == 0:
            return AttackOutcome(x_adv=x.detach().clone(), broken_by=("",) * x.shape[0], parts=parts)
        native = {a: NATIVE[a] for a in plan.attacks if self.early_exit and a in NATIVE}
        library = self.library_checks or any(a not in native for a in plan.attacks)
        backend, module = _import_backend(self.backend) if library else ("none", None)
        _LOG.debug("AutoAttack via %s: %s at %s", backend, ", ".join(plan.attacks), threat.describe())
        x, y = x.detach(), y.detach()
        x_adv = x.clone()
        broken_by = [""] * x.shape[0]
        flags: list[str] = []
        if self.library_checks:
            with _shielded(x.device, module, flags):
                _library_checks(module, model, x, y, plan, self.batch_size)
        robust_after: dict[str, float] = {}
        for sub in plan.attacks:
            todo = [i for i, b in enumerate(broken_by) if not b]
            if not todo:
                break
            for chunk in range(0, len(todo), self.batch_size):  # the library's batches
                part = todo[chunk : chunk + self.batch_size]
                idx = torch.tensor(part, device=x.device)
                if sub in native:
                    apgd = APGD(steps=self.apgd_steps, restarts=self.apgd_restarts, loss=native[sub])
                    adv, fooled = apgd.search(
                        model, x[idx], y[idx], threat, generator=torch.Generator().manual_seed(plan.seed)
                    )
                    for j in fooled.nonzero().flatten().tolist():
                        broken_by[part[j]] = sub
                        x_adv[part[j]] = adv[j]
                    continue
                with _shielded(x.device, module, flags):
                    adv = _direct(module, self, model, x[idx], y[idx], plan, sub)
                keep_fooled(
                    model,
                    adv.detach().to(device=x.device, dtype=x.dtype),
                    y[idx],
                    part,
                    x_adv,
                    broken_by,
                    sub,
                )
            robust_after[sub] = sum(1 for b in broken_by if not b) / len(broken_by)
        if self.library_checks and "square" in robust_after:
            with _shielded(x.device, module, flags):
                # cumulative robust accuracy after each sub-attack, as the library's loop keeps it; the
                # 'clean' entry (1.0, an upper bound) never decides the minimum once another attack ran
                _call_check(module, "check_square_sr", {"clean": 1.0, **robust_after}, flags=flags)
        return AttackOutcome(
            x_adv=x_adv, broken_by=tuple(broken_by), flags=tuple(dict.fromkeys(flags)), parts=parts
        )


def _library_checks(
    module: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor, plan: _Plan, bs: int
) -> None:
    """The library's own checks, once per call, on its first batch (what its evaluation loop runs
    before the attacks): randomness, probability outputs, dynamic defences, class count."""
    xb, yb = x[:bs], y[:bs]
    _call_check(module, "check_randomized", model, xb, yb, bs=bs)
    _call_check(module, "check_range_output", model, xb)
    _call_check(module, "check_dynamic", model, xb, False)
    targets = plan.n_target_classes
    _call_check(module, "check_n_classes", plan.n_classes, list(plan.attacks), targets, targets)


def _call_check(module: Any, name: str, *args: Any, flags: list[str] | None = None, **kwargs: Any) -> None:
    """Call ``module.checks.<name>`` with ``logger=None`` (its warnings become flags through the shield)."""
    checks = getattr(module, "checks", None)
    if checks is None:
        try:
            checks = importlib.import_module(f"{module.__name__}.checks")
        except ImportError:
            checks = None
    check = getattr(checks, name, None)
    if not callable(check):
        warnings.warn(Warning(f"the AutoAttack library has no check {name}; it was not run"), stacklevel=2)
        return
    with torch.no_grad():
        check(*args, logger=None, **kwargs)


def _adversary(module: Any, attack: AutoAttack, model: nn.Module, plan: _Plan, sub: str) -> Any:
    """The library's AutoAttack object for ``sub``, with the budgets set (either backend's signature)."""
    if module.__name__.split(".")[0] == "autoattack":  # upstream fra31/auto-attack
        adversary = module.AutoAttack(
            model,
            norm=plan.norm,
            eps=plan.eps,
            seed=plan.seed,
            verbose=False,
            attacks_to_run=[sub],
            version="custom",
            device=plan.device,
            log_path=None,
        )
    else:  # pyautoattack >= 0.2: keyword-only constructor
        adversary = module.AutoAttack(
            model,
            attacks=[sub],
            device=plan.device,
            eps=plan.eps,
            norm=plan.norm,
            seed=plan.seed,
            version="custom",
        )
    attack.configure(adversary, plan)
    return adversary


def _direct(
    module: Any, attack: AutoAttack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, plan: _Plan, sub: str
) -> torch.Tensor:
    """Run one sub-attack object of the library directly, as its evaluation loop does (the checks run
    once per call instead, in :func:`_library_checks`)."""
    adversary = _adversary(module, attack, model, plan, sub)
    if sub in ("apgd-ce", "apgd-dlr"):
        runner = adversary.apgd
        runner.loss = "ce" if sub == "apgd-ce" else "dlr"
    elif sub == "apgd-t":
        runner = adversary.apgd_targeted
    elif sub in ("fab", "fab-t"):
        runner = adversary.fab
        runner.targeted = sub == "fab-t"
        if sub == "fab-t":
            runner.n_restarts = 1
    else:
        runner = adversary.square
    runner.seed = plan.seed
    return _first(runner.perturb(x, y))


def _first(result: Any) -> torch.Tensor:
    x_adv = result[0] if isinstance(result, tuple) else result  # (x_adv, y_adv) or x_adv
    if not isinstance(x_adv, torch.Tensor):
        raise TypeError(f"AutoAttack returned {type(x_adv).__name__}, expected a tensor")
    return x_adv


def _import_backend(requested: str) -> tuple[str, Any]:
    """Import the requested backend (``auto``: pyautoattack, then upstream autoattack)."""
    candidates = ("pyautoattack", "autoattack") if requested == "auto" else (requested,)
    failures = []
    for name in candidates:
        try:
            return name, importlib.import_module(name)
        except ImportError as exc:
            failures.append(f"{name}: {exc}")
    hint = (
        _INSTALL_HINT
        if requested != "autoattack"
        else (
            "pip install git+https://github.com/fra31/auto-attack (or use backend='pyautoattack' "
            f"after {_INSTALL_HINT})"
        )
    )
    raise AttackUnavailableError(
        f"the autoattack attack needs the AutoAttack library ({'; '.join(failures)}). Install it with: {hint}"
    )


class _ToDebug(logging.Handler):
    """Re-log the library's records (progress) at debug level; keep its warnings as flags."""

    def __init__(self, flags: list[str]) -> None:
        super().__init__()
        self.flags = flags

    def emit(self, record: logging.LogRecord) -> None:
        _LOG.debug("autoattack %s: %s", record.levelname.lower(), record.getMessage())
        if record.levelno >= logging.WARNING:
            self.flags.append(record.getMessage())


def _reset_library_state(module: Any) -> None:
    """Zero the call counters of the library's dynamic-defence check.

    They are module-level and never reset by the library, so once one model calls a function
    named ``grad`` or ``backward`` in its forward, every later model would be flagged as dynamic.
    """
    checks = getattr(module, "checks", None)
    counters = getattr(checks, "funcs", None)
    if isinstance(counters, dict):
        for key in counters:
            counters[key] = 0


@contextlib.contextmanager
def _shielded(device: torch.device, module: Any = None, flags: list[str] | None = None) -> Iterator[None]:
    """Undo the library's global side effects: RNG reseeding, ``sys.settrace(None)``, output.

    The global CPU RNG (and that of the CUDA device in use, or the current one once CUDA is
    initialised) is forked; the trace function is put back (the library touches only this
    thread's, so ``threading.settrace`` needs nothing); prints, log records and warnings become
    debug records of this module. The library's check warnings (log records at WARNING, Python
    warnings, upstream's printed ``Warning:`` lines) are appended to ``flags``.
    """
    flags = flags if flags is not None else []
    if module is not None:
        _reset_library_state(module)
    cuda = (
        {device.index if device.index is not None else torch.cuda.current_device()}
        if device.type == "cuda"
        else set()
    )
    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        cuda.add(torch.cuda.current_device())
    tracer = sys.gettrace()
    library_log = logging.getLogger(_LIBRARY_LOGGER)
    handler, propagate = _ToDebug(flags), library_log.propagate
    library_log.addHandler(handler)
    library_log.propagate = False
    stdout, stderr = io.StringIO(), io.StringIO()
    caught: list[warnings.WarningMessage] = []
    try:
        with (
            torch.random.fork_rng(devices=sorted(cuda)),
            warnings.catch_warnings(record=True) as w,
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
        ):
            warnings.simplefilter("always")
            try:
                yield
            finally:
                caught = list(w)
    finally:
        sys.settrace(tracer)
        library_log.removeHandler(handler)
        library_log.propagate = propagate
        for message in caught:
            _LOG.debug("autoattack warning: %s", message.message)
            if message.category is Warning:  # the library warns with the bare Warning class
                flags.append(str(message.message))
        for text in (stdout.getvalue(), stderr.getvalue()):
            if text.strip():
                _LOG.debug("autoattack output:\n%s", text.rstrip())
            flags.extend(
                line.strip().removeprefix("Warning:").strip()
                for line in text.splitlines()
                if line.strip().startswith("Warning:")
            )
