"""Execution settings of the attack: memory format and autocast per model, measured, not guessed.

A setting changes how fast the attack's forward and backward passes run, never what is decided:

- ``fp32``: the model as given (contiguous inputs, no autocast): today's behaviour and the opt-out;
- ``channels_last``: inputs, and for the attack the model's 4-D weights, in channels-last memory
  format (the user's tensors are swapped back afterwards, exactly);
- ``bf16``: the forward pass under ``torch.autocast(device_type, dtype=torch.bfloat16)``, logits
  returned as float32;
- ``channels_last+bf16``: both.

Which setting a model gets (``--robust-execution``, :data:`~pytest_robust.config.EXECUTION_MODES`):

- ``auto`` (default): :data:`TABLE`, keyed by the timm architecture name and the device type,
  measured by ``benchmarks/execution_settings.py`` (ratios of median step times, BENCHMARKS.md);
  a row's setting is the fastest candidate when it is at least :data:`MIN_SPEEDUP` times faster
  than fp32, else fp32. Deterministic: nothing is timed at run time. Every other model is fp32 with
  the reason recorded: a model that is not one timm network of a listed architecture behind
  parameter-free wrappers (a user's own module, ``small_cnn``), a device type without a measured
  row, a model whose weights are not float32, a model declared randomized;
- ``fp32``: the opt-out;
- ``calibrate``: the candidates are timed on the probe batch (interleaved, medians) and the decision
  is cached on disk (``<cache dir>/execution/``) keyed by the model's structure and weight dtype,
  the device (type and name), the torch version, the thread count and the input shape, so a rerun
  reads it back and decides the same (the first one's timings are recorded).

Whatever proposed it, a candidate other than fp32 is used only after the **fidelity check**
(:func:`fidelity_check`): the evaluated attack, with the evaluation's seed, runs on a probe batch
(the first :data:`PROBE_SAMPLES` clean-correct samples) once on the fp32 view and once under the
candidate; when any sample's clean prediction or robust / broken decision differs, or the
candidate fails to run, the evaluation uses fp32 and records why. Outcomes are kept in-process per
(model weights, structure, probe, attack configuration, threat, seed, candidate, device), a pure
function of those, so a suite does not repeat the check for every gate.

The clean pass, the decision on every adversarial input (its fp32 logits) and the soundness checks
always run on the fp32 view: a setting only changes the attack's search, never a recorded
prediction, and a sample is counted broken only when its adversarial input fools the fp32 model.
A sample whose adversarial input the fast setting calls broken and fp32 does not (the attack
stopped on a point within the setting's numerical error of the boundary) is attacked again in fp32
(``rechecked`` in the record), so the setting cannot tilt the count towards robust that way.

The fidelity check is a probe, not a proof: on the trained benchmark models (BENCHMARKS.md) a
setting the check accepted still decided 1-2 of 128 samples differently from fp32 for MobileNetV2
(channels_last, fp32 arithmetic: a different summation order sends a borderline PGD search
elsewhere, as another seed would; MobileNetV2 is now fp32 by the table), and in the ``ci`` suite
DenseNet121 under channels_last+bf16 moved 0-2 of 256 PGD decisions per evaluation, in both
directions (ConvNeXt-Tiny: none). ``--robust-execution=fp32`` is the opt-out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeGuard

import torch
from torch import nn

from pytest_robust.config import EXECUTION_MODES
from pytest_robust.errors import RobustConfigError

if TYPE_CHECKING:
    from pytest_robust.attacks import Attack
    from pytest_robust.threat import ThreatModel

__all__ = [
    "CANDIDATES",
    "FP32",
    "MIN_SAMPLES",
    "MIN_SPEEDUP",
    "TABLE",
    "ExecutionView",
    "Fidelity",
    "Plan",
    "Setting",
    "TableRow",
    "architecture_of",
    "calibrate",
    "choose",
    "fidelity_check",
    "plan_execution",
    "weights_in_format",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """How the attack's passes run: channels-last memory format and / or bfloat16 autocast."""

    channels_last: bool = False
    bf16: bool = False

    @property
    def name(self) -> str:
        """``fp32``, ``channels_last``, ``bf16`` or ``channels_last+bf16``."""
        on = [n for n, flag in (("channels_last", self.channels_last), ("bf16", self.bf16)) if flag]
        return "+".join(on) or "fp32"

    @property
    def plain(self) -> bool:
        """The model as given (fp32): nothing to check."""
        return not (self.channels_last or self.bf16)

    @classmethod
    def parse(cls, name: str) -> Setting:
        for setting in CANDIDATES:
            if setting.name == name:
                return setting
        raise RobustConfigError(
            f"unknown execution setting {name!r}; valid: {', '.join(s.name for s in CANDIDATES)}"
        )


FP32: Final = Setting()
CHANNELS_LAST: Final = Setting(channels_last=True)
BF16: Final = Setting(bf16=True)
CHANNELS_LAST_BF16: Final = Setting(channels_last=True, bf16=True)
#: Every setting, fp32 first (the reference of every ratio).
CANDIDATES: Final = (FP32, CHANNELS_LAST, BF16, CHANNELS_LAST_BF16)
#: A candidate replaces fp32 only when its median step is at least this many times faster. The
#: fidelity check attacks 2 x 16 probe samples per (model, attack, eps) at small-batch speed, which at
#: the ``ci`` profile's n = 256 costs about what a 1.3x setting saves (measured, BENCHMARKS.md); a
#: setting also moves borderline searches (MobileNetV2 under channels-last: 1-2 of 128 decisions).
#: Only a clear gain is worth that, and a clear margin keeps a remeasurement from flipping the choice.
MIN_SPEEDUP: Final = 1.5
#: Samples of the fidelity check's probe batch (the first clean-correct ones of the data).
PROBE_SAMPLES: Final = 16
#: The fewest samples an evaluation needs before a setting other than fp32 is tried: the fidelity
#: check attacks the probe twice at small-batch speed, which a 1.5-1.8x setting only pays back on
#: several times the probe (measured: the ``smoke`` profile's 32 samples ran 30% slower with the
#: check than in fp32). Below it the evaluation runs in fp32 and says why.
MIN_SAMPLES: Final = 8 * PROBE_SAMPLES


def choose(speedups: Mapping[str, float]) -> Setting:
    """The fastest candidate of ``speedups`` (fp32 time / candidate time, by setting name) when it
    is at least :data:`MIN_SPEEDUP` times faster than fp32, else fp32."""
    best = FP32
    ratio = 1.0
    for setting in CANDIDATES[1:]:
        value = speedups.get(setting.name)
        if value is not None and math.isfinite(value) and value > ratio:
            best, ratio = setting, value
    return best if ratio >= MIN_SPEEDUP else FP32


@dataclass(frozen=True, slots=True, kw_only=True)
class TableRow:
    """One measured row: an architecture on a device type, each candidate's speed-up over fp32."""

    arch: str
    device_type: str
    #: fp32 step time / the candidate's (median), by setting name (fp32 itself omitted)
    speedups: Mapping[str, float]

    @property
    def setting(self) -> Setting:
        """The row's decision: :func:`choose` over its measured speed-ups."""
        return choose(self.speedups)


#: Which measurement :data:`TABLE` holds (recorded with every plan from the table: a new
#: measurement is a new plan, so the result cache does not serve results decided by the old one).
TABLE_MEASURED: Final = "benchmarks/execution_settings.py, 2026-12-02"
#: How :data:`TABLE` was measured (BENCHMARKS.md, "Execution settings").
TABLE_SOURCE: Final = (
    "benchmarks/execution_settings.py, 2026-12-02: CPU (AMD EPYC, AVX512-BF16), torch 2.14.1, 1 thread, "
    "32 px, batch 16, forward + input gradient of the 2-class model, 61 interleaved rounds, median "
    "ratios to fp32"
)


def _row(arch: str, device_type: str, channels_last: float, bf16: float, both: float) -> TableRow:
    return TableRow(
        arch=arch,
        device_type=device_type,
        speedups=MappingProxyType(
            {CHANNELS_LAST.name: channels_last, BF16.name: bf16, CHANNELS_LAST_BF16.name: both}
        ),
    )


#: The measured rows, keyed by (timm architecture name, device type). Only what was measured:
#: no row for a device type means fp32 there.
TABLE: Final[Mapping[tuple[str, str], TableRow]] = MappingProxyType(
    {
        (r.arch, r.device_type): r
        for r in (
            _row("resnet50", "cpu", 1.01, 1.15, 1.22),
            _row("densenet121", "cpu", 1.36, 1.28, 1.77),
            _row("mobilenetv2_100", "cpu", 1.42, 0.58, 0.72),
            _row("efficientnet_b2", "cpu", 1.07, 0.68, 0.85),
            _row("convnext_tiny", "cpu", 1.01, 1.66, 1.71),
        )
    }
)


# --- running a model under a setting ---------------------------------------------------------


class ExecutionView(nn.Module):
    """``model`` run under ``setting``: channels-last inputs and / or bfloat16 autocast, float32
    logits out (differentiable: the attack's gradients flow through the casts).

    The weights' memory format is the business of :func:`weights_in_format` (around the attack).
    """

    def __init__(self, model: nn.Module, setting: Setting, device_type: str) -> None:
        super().__init__()
        self.model = model
        self.setting = setting
        self.device_type = device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.setting.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.setting.bf16:
            with torch.autocast(device_type=self.device_type, dtype=torch.bfloat16):
                out = self.model(x)
        else:
            out = self.model(x)
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.dtype != torch.float32:
            out = out.float()
        return out  # type: ignore[no-any-return]  # a wrong output is reported by the caller

    def extra_repr(self) -> str:
        return f"setting={self.setting.name}, device_type={self.device_type}"


@contextlib.contextmanager
def weights_in_format(model: nn.Module, setting: Setting) -> Iterator[None]:
    """For the block, ``model``'s 4-D parameters and buffers in channels-last memory format (for a
    ``channels_last`` setting; nothing otherwise). Each tensor's own data object is put back after,
    so the user's model leaves with the very storage, strides and values it came with."""
    if not setting.channels_last:
        yield
        return
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    seen: set[int] = set()
    for t in (*model.parameters(), *model.buffers()):
        if t.dim() == 4 and id(t) not in seen:
            seen.add(id(t))
            saved.append((t, t.data))
    try:
        for t, data in saved:
            t.data = data.contiguous(memory_format=torch.channels_last)
        yield
    finally:
        for t, data in saved:
            t.data = data


# --- which setting: the table, calibration, the opt-out --------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The setting proposed for one model before the fidelity check, and where it came from."""

    mode: str
    candidate: Setting
    #: ``opt-out`` (mode fp32), ``table``, ``calibration``, or ``none`` (auto without a row)
    source: str
    reason: str
    arch: str | None = None
    #: the table row's or the calibration's ratios (fp32 time / candidate time), by setting name
    speedups: Mapping[str, float] = field(default_factory=dict)
    #: calibration only: ``key`` (its cache key: the file ``<key>.json`` in the cache folder),
    #: ``seconds`` (median step times by setting), ``threads``, ``shape``
    calibration: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "candidate": self.candidate.name,
            "source": self.source,
            "reason": self.reason,
            "arch": self.arch,
            "speedups": dict(self.speedups),
            **({"table": TABLE_MEASURED} if self.source == "table" else {}),
            **({"calibration": dict(self.calibration)} if self.calibration else {}),
        }


def architecture_of(model: nn.Module) -> str | None:
    """The timm architecture name of ``model`` when it is one timm network behind wrappers without
    parameters of their own (``NormalizedModel``, the harness's views), else None.

    timm records the name in the network's ``pretrained_cfg["architecture"]``; a module that holds
    parameters outside that network (a user's head or ensemble) is not that architecture.
    """
    networks = [(m, name) for m in model.modules() if (name := _timm_architecture(m)) is not None]
    if not networks:
        return None
    net, name = networks[0]  # the outermost one (modules() is depth first)
    inner = {id(p) for p in net.parameters()}
    if not inner or any(id(p) not in inner for p in model.parameters()):
        return None
    return name


def _timm_architecture(module: nn.Module) -> str | None:
    """``module.pretrained_cfg["architecture"]`` (set by ``timm.create_model``), else None."""
    cfg: object = getattr(module, "pretrained_cfg", None)
    name = cfg.get("architecture") if isinstance(cfg, Mapping) else None
    return name if isinstance(name, str) else None


def _floating_dtype(model: nn.Module) -> torch.dtype | None:
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def plan_execution(
    model: nn.Module,
    mode: str,
    *,
    device: torch.device,
    randomized: bool = False,
    timing: Callable[[], Plan] | None = None,
) -> Plan:
    """The setting proposed for ``model`` on ``device`` under ``mode`` (``auto``, ``fp32``,
    ``calibrate``). ``timing``: what ``calibrate`` runs (:func:`calibrate` bound to the probe and
    the cache folder; the caller supplies it because it needs the data). Pure for ``auto`` and
    ``fp32``: the same model on the same device type gets the same plan."""
    mode = parse_mode(mode)
    arch = architecture_of(model)
    if mode == "fp32":
        return Plan(mode=mode, candidate=FP32, source="opt-out", reason="execution=fp32 (opt-out)", arch=arch)
    dtype = _floating_dtype(model)
    why = None
    if randomized:
        why = "a model declared randomized is attacked in fp32 (its draws are not compared across settings)"
    elif dtype is not None and dtype != torch.float32:
        why = f"the model's weights are {str(dtype).removeprefix('torch.')}: it runs as given"
    if why is not None:
        return Plan(mode=mode, candidate=FP32, source="none", reason=why, arch=arch)
    if mode == "calibrate":
        if timing is None:
            raise RobustConfigError("execution mode 'calibrate' needs a probe batch to time")
        return timing()
    row = TABLE.get((arch, device.type)) if arch is not None else None
    if row is None:
        what = (
            f"no measured row for {arch} on {device.type}"
            if arch is not None
            else "not one timm network of a measured architecture (a model of its own)"
        )
        return Plan(mode=mode, candidate=FP32, source="none", reason=f"{what}: fp32", arch=arch)
    setting = row.setting
    best = max(row.speedups.items(), key=lambda kv: kv[1])
    reason = (
        f"table row {arch}/{device.type}: {setting.name} {row.speedups[setting.name]:.2f}x faster than fp32"
        if not setting.plain
        else f"table row {arch}/{device.type}: no candidate {MIN_SPEEDUP}x faster than fp32 (best "
        f"{best[0]} {best[1]:.2f}x)"
    )
    return Plan(
        mode=mode, candidate=setting, source="table", reason=reason, arch=arch, speedups=dict(row.speedups)
    )


def parse_mode(mode: str) -> str:
    value = str(mode).strip().lower()
    if value not in EXECUTION_MODES:
        raise RobustConfigError(f"unknown execution mode {mode!r}; valid: {', '.join(EXECUTION_MODES)}")
    return value


# --- calibration ------------------------------------------------------------------------------


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One attack step's work: forward, cross-entropy, gradient with respect to the input."""
    leaf = x.detach().clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(leaf).float(), y)
    torch.autograd.grad(loss, leaf)


def time_settings(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    device_type: str,
    settings: tuple[Setting, ...] = CANDIDATES,
    repeats: int = 5,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Seconds of one attack step (forward + input gradient) of ``model`` on ``(x, y)`` under each
    setting, ``repeats`` times, interleaved (each round runs every setting, rotating the order, so a
    neighbour's load hits them alike), after ``warmup`` untimed rounds. A setting that fails to run
    is left out. ``model`` is the fp32 view (:class:`~pytest_robust.models.ClassifierView`)."""
    runnable = list(settings)
    seconds: dict[str, list[float]] = {s.name: [] for s in runnable}
    for r in range(warmup + repeats):
        order = runnable[r % len(runnable) :] + runnable[: r % len(runnable)] if runnable else []
        for s in order:
            view = ExecutionView(model, s, device_type)
            try:
                with weights_in_format(model, s):
                    _sync(device_type)
                    t0 = time.perf_counter()
                    _step(view, x, y)
                    _sync(device_type)
                    elapsed = time.perf_counter() - t0
            except Exception:  # a setting this model or device cannot run is not a candidate
                if s.plain:
                    raise  # the model itself fails: its evaluation reports that properly
                runnable.remove(s)
                del seconds[s.name]
                continue
            if r >= warmup:
                seconds[s.name].append(elapsed)
    return seconds


def _sync(device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.synchronize()


def speedups_of(seconds: Mapping[str, list[float]]) -> dict[str, float]:
    """fp32's median step time / each other setting's, rounded to 2 decimals."""
    base = statistics.median(seconds[FP32.name])
    return {
        name: round(base / statistics.median(times), 2)
        for name, times in seconds.items()
        if name != FP32.name and times
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return platform.processor() or platform.machine()


def calibrate(
    view: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    model: nn.Module,
    device: torch.device,
    folder: Path | None,
    mode: str = "calibrate",
    arch: str | None = None,
    memo: MutableMapping[str, Any] | None = None,
) -> Plan:
    """Time every candidate on ``(x, y)`` (:func:`time_settings`) and plan the fastest (``choose``),
    or read the decision stored under ``folder`` for the same model structure and weight dtype,
    device, torch version, thread count and input shape (written once, under a lock: the first
    calibration wins, so every later run decides the same). ``folder`` None: nothing is stored on
    disk. ``memo``: a mapping in which this process keeps calibrations (checked first)."""
    from pytest_robust.models import structure_fingerprint

    material = {
        "structure": structure_fingerprint(model),
        "dtype": str(_floating_dtype(model)),
        "device_type": device.type,
        "device_name": _device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "shape": list(x.shape),
    }
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def measure() -> dict[str, Any]:
        seconds = time_settings(view, x, y, device_type=device.type)
        return {
            "key": key,
            "material": material,
            "seconds": {k: round(statistics.median(v), 6) for k, v in seconds.items()},
            "speedups": speedups_of(seconds),
        }

    memo_key = f"calibration:{key}"
    if memo is not None and memo_key in memo:
        entry: dict[str, Any] = memo[memo_key]
    else:
        entry = measure() if folder is None else _cached_calibration(folder, key, measure)
        if memo is not None:
            memo[memo_key] = entry
    speedups = {str(k): float(v) for k, v in entry["speedups"].items()}
    setting = choose(speedups)
    best = max(speedups.items(), key=lambda kv: kv[1], default=("fp32", 1.0))
    reason = (
        f"calibration: {setting.name} {speedups[setting.name]:.2f}x faster than fp32"
        if not setting.plain
        else f"calibration: no candidate {MIN_SPEEDUP}x faster than fp32 (best {best[0]} {best[1]:.2f}x)"
    )
    return Plan(
        mode=mode,
        candidate=setting,
        source="calibration",
        reason=reason,
        arch=arch,
        speedups=speedups,
        calibration={
            "key": key,
            "seconds": dict(entry["seconds"]),
            "threads": material["threads"],
            "shape": material["shape"],
        },
    )


def _cached_calibration(folder: Path, key: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The calibration stored under ``key`` in ``folder``, or ``measure()`` written there."""
    from filelock import FileLock

    from pytest_robust.cache import atomic_write_bytes

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.json"
    with FileLock(str(path.with_suffix(".lock"))):
        if path.is_file():
            try:
                stored: object = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                stored = None  # a damaged entry is measured again and replaced
            if _valid_calibration(stored, key):
                return stored
        entry = measure()
        atomic_write_bytes(path, json.dumps(entry, sort_keys=True, indent=1).encode())
        return entry


def _valid_calibration(entry: object, key: str) -> TypeGuard[dict[str, Any]]:
    return (
        isinstance(entry, dict)
        and entry.get("key") == key
        and isinstance(entry.get("speedups"), dict)
        and isinstance(entry.get("seconds"), dict)
    )


# --- the fidelity check -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Fidelity:
    """The fidelity check's outcome on the probe batch."""

    #: ``agree``, ``disagree`` (a decision differed), ``error`` (the candidate failed to run),
    #: ``skipped`` (nothing to compare: fp32 proposed, no attack, no clean-correct sample)
    status: str
    samples: int = 0
    #: positions in the probe whose clean prediction or robust decision differed
    mismatches: tuple[int, ...] = ()
    detail: str = ""

    @property
    def agreed(self) -> bool:
        return self.status == "agree"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "samples": self.samples,
            "mismatches": list(self.mismatches),
            "detail": self.detail,
        }


def _decisions(
    base: nn.Module,
    attacked: nn.Module,
    model: nn.Module,
    setting: Setting,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    seed: int,
) -> tuple[list[int], list[bool]]:
    """Clean predictions of ``attacked`` and the fp32 decision (robust or not) on the adversarial
    inputs the attack finds through ``attacked``, with the evaluation's seed."""
    from pytest_robust.attacks import run_attack

    torch.manual_seed(seed)
    with weights_in_format(model, setting):
        with torch.no_grad():
            clean = attacked(x).argmax(dim=1)
        outcome = run_attack(attack, attacked, x, y, threat, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        robust = base(outcome.x_adv).float().argmax(dim=1) == y
    return clean.tolist(), robust.tolist()


def fidelity_check(
    base: nn.Module,
    model: nn.Module,
    setting: Setting,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    seed: int,
    device: torch.device,
    cache: MutableMapping[str, Any] | None = None,
    identity: str = "",
) -> Fidelity:
    """Run ``attack`` on the probe ``(x, y)`` through the fp32 view ``base`` and under ``setting``
    (same seed) and compare every sample's clean prediction and robust decision; ``model`` is the
    user's model (its weights change format for a channels-last setting, and change back).

    ``cache`` / ``identity``: a mapping in which the outcome is kept under ``identity`` (the caller
    makes it from everything the outcome depends on) and reused. The global RNG is restored after.
    """
    if cache is not None and identity and identity in cache:
        cached: Fidelity = cache[identity]
        return cached
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        reference = _decisions(base, base, model, FP32, attack, x, y, threat, seed)
        fast = ExecutionView(base, setting, device.type)
        try:
            candidate = _decisions(base, fast, model, setting, attack, x, y, threat, seed)
        except Exception as exc:  # the candidate cannot run this model: fp32 it is
            outcome = Fidelity(
                status="error",
                samples=len(y),
                detail=f"{setting.name} failed on this model ({type(exc).__name__}: {exc})"[:500],
            )
        else:
            pairs = zip(zip(*reference, strict=True), zip(*candidate, strict=True), strict=True)
            mismatches = tuple(i for i, (a, b) in enumerate(pairs) if a != b)
            robust = sum(reference[1])
            outcome = Fidelity(
                status="disagree" if mismatches else "agree",
                samples=len(y),
                mismatches=mismatches,
                detail=(
                    f"{len(mismatches)} of {len(y)} probe samples decided differently under {setting.name}"
                    if mismatches
                    else f"the same {len(y)} clean predictions and robust decisions ({robust} robust) "
                    f"under {setting.name} as under fp32"
                ),
            )
    if cache is not None and identity:
        cache[identity] = outcome
    return outcome


def record(plan: Plan, fidelity: Fidelity, used: Setting) -> dict[str, Any]:
    """The ``execution`` record of an evaluation: the plan, the fidelity check, the setting used
    and why (a function of the model, data, attack and options: no timing of this run in it)."""
    if used == plan.candidate:
        why = plan.reason if plan.candidate.plain else f"{plan.reason}; fidelity check: {fidelity.detail}"
    else:
        why = (
            f"{plan.candidate.name} proposed ({plan.reason}) but fidelity check {fidelity.status}: "
            f"{fidelity.detail}: fp32"
        )
    return {**plan.to_json(), "used": used.name, "why": why, "fidelity": fidelity.to_json()}
