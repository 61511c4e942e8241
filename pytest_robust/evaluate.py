"""Run a model over data under an attack: the pure core of every robustness test (no pytest).

Data flow: clean pass over all samples → attack only the still-correct samples → check every
adversarial input against the threat model → adversarial pass → soundness checks
(:mod:`pytest_robust.soundness`). A sample is robust when it is correct on the clean input AND on
its adversarial input.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pytest_robust import validate
from pytest_robust.attacks import Attack, AttackOutcome, coerce_attack, run_attack
from pytest_robust.attacks.base import require_gradient_path
from pytest_robust.clinical import Clinical, clinical
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.degeneracy import Degeneracy, degeneracy
from pytest_robust.errors import RobustConfigError, RobustDataError, RobustModelError
from pytest_robust.examples import Example, make_example, pick
from pytest_robust.execution import (
    FP32,
    MIN_SAMPLES,
    PROBE_SAMPLES,
    ExecutionView,
    Fidelity,
    Plan,
    Setting,
    calibrate,
    fidelity_check,
    parse_mode,
    plan_execution,
    weights_in_format,
)
from pytest_robust.execution import record as execution_record
from pytest_robust.models import (
    ExpectationModel,
    as_classifier,
    behaviour_fingerprint,
    eval_mode,
    model_device,
    model_fingerprint,
    resolve_device,
    structure_fingerprint,
)
from pytest_robust.perturbation import check_perturbation
from pytest_robust.soundness import (
    SKIP,
    Check,
    SoundnessConfig,
    black_box_check,
    ensemble_order_check,
    flags_check,
    gradient_losses,
    model_checks,
    spread,
    unbounded_check,
    uses_gradients,
)
from pytest_robust.threat import Norm, ThreatModel, format_eps
from pytest_robust.versions import library_versions


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalResult:
    """Per-sample outcome of one attack at one threat model, plus how it was obtained."""

    threat: ThreatModel
    attack: dict[str, Any]
    attack_description: str
    labels: tuple[int, ...]
    clean_pred: tuple[int, ...]
    adv_pred: tuple[int, ...]
    clean_correct: tuple[bool, ...]
    robust_correct: tuple[bool, ...]
    clean_scores: tuple[float, ...]
    adv_scores: tuple[float, ...]
    data: dict[str, Any]
    model: dict[str, Any]
    device: str
    seed: int
    timings: dict[str, float]
    versions: dict[str, str]
    examples: tuple[Example, ...] = ()
    #: the soundness checks of this evaluation (empty when they were switched off)
    checks: tuple[Check, ...] = ()
    #: per sample, the (sub-)attack that broke it ("" when none did or it was not attacked)
    broken_by: tuple[str, ...] = ()
    #: the soundness configuration the checks ran with
    soundness: dict[str, Any] = field(default_factory=dict)
    #: each sample's identity (file path or index in the source set), to pair samples across runs
    sample_ids: tuple[str, ...] = ()
    #: the label of the class whose miss is dangerous (malignant on ISIC): see :mod:`pytest_robust.clinical`
    positive_label: int = 1
    #: how the attack ran (:mod:`pytest_robust.execution`): the mode, the candidate setting and where it
    #: came from (table row or calibration), the fidelity check, the setting ``used`` and why; empty
    #: for a result recorded before settings existed (it ran as fp32)
    execution: dict[str, Any] = field(default_factory=dict)

    @property
    def sound(self) -> bool:
        """No soundness check failed."""
        return not any(c.failed for c in self.checks)

    @property
    def failed_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.failed)

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def n_clean_correct(self) -> int:
        return sum(self.clean_correct)

    @property
    def n_robust(self) -> int:
        return sum(self.robust_correct)

    @property
    def clean_acc(self) -> float:
        return self.n_clean_correct / self.n

    @property
    def robust_acc(self) -> float:
        return self.n_robust / self.n

    @property
    def clinical(self) -> Clinical:
        """Robust sensitivity and specificity, and positives flipped to negative."""
        return clinical(
            self.labels,
            self.clean_pred,
            self.adv_pred,
            positive_label=self.positive_label,
            classes=self.data.get("classes", ()),
        )

    @property
    def degeneracy(self) -> Degeneracy:
        """Every class's clean recall and whether the model is degenerate (almost never predicts a
        class of the data: :mod:`pytest_robust.degeneracy`). Derived from the labels and the clean
        predictions, so a result read back from JSON or the result cache is judged the same way."""
        return degeneracy(self.labels, self.clean_pred, classes=self.data.get("classes", ()))

    def ids(self) -> tuple[str, ...]:
        """Every sample's identity (its position when the data recorded none)."""
        return self.sample_ids or tuple(str(i) for i in range(self.n))

    def restrict(self, index: Sequence[int]) -> EvalResult:
        """The same evaluation on the samples at ``index`` only (e.g. the positives, for sensitivity)."""

        def take(values: Sequence[Any]) -> tuple[Any, ...]:
            return tuple(values[i] for i in index) if values else ()

        return replace(
            self,
            labels=take(self.labels),
            clean_pred=take(self.clean_pred),
            adv_pred=take(self.adv_pred),
            clean_correct=take(self.clean_correct),
            robust_correct=take(self.robust_correct),
            clean_scores=take(self.clean_scores),
            adv_scores=take(self.adv_scores),
            broken_by=take(self.broken_by),
            sample_ids=take(self.ids()),
            examples=(),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "threat": self.threat.to_json(),
            "attack": self.attack,
            "attack_description": self.attack_description,
            "n": self.n,
            "clean_acc": self.clean_acc,
            "robust_acc": self.robust_acc,
            "labels": list(self.labels),
            "clean_pred": list(self.clean_pred),
            "adv_pred": list(self.adv_pred),
            "clean_correct": list(self.clean_correct),
            "robust_correct": list(self.robust_correct),
            "clean_scores": list(self.clean_scores),
            "adv_scores": list(self.adv_scores),
            "data": self.data,
            "model": self.model,
            "device": self.device,
            "seed": self.seed,
            "timings": self.timings,
            "versions": self.versions,
            "examples": [e.to_json() for e in self.examples],
            "sound": self.sound,
            "checks": [c.to_json() for c in self.checks],
            "broken_by": list(self.broken_by),
            "soundness": self.soundness,
            "sample_ids": list(self.ids()),
            "positive_label": self.positive_label,
            "clinical": self.clinical.to_json(),
            "degenerate": self.degeneracy.to_json(),
            "execution": self.execution,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EvalResult:
        return cls(
            threat=ThreatModel.from_json(d["threat"]),
            attack=d["attack"],
            attack_description=d["attack_description"],
            labels=tuple(int(v) for v in d["labels"]),
            clean_pred=tuple(int(v) for v in d["clean_pred"]),
            adv_pred=tuple(int(v) for v in d["adv_pred"]),
            clean_correct=tuple(bool(v) for v in d["clean_correct"]),
            robust_correct=tuple(bool(v) for v in d["robust_correct"]),
            clean_scores=tuple(float(v) for v in d["clean_scores"]),
            adv_scores=tuple(float(v) for v in d["adv_scores"]),
            data=d["data"],
            model=d["model"],
            device=d["device"],
            seed=int(d["seed"]),
            timings={k: float(v) for k, v in d["timings"].items()},
            versions={k: str(v) for k, v in d["versions"].items()},
            examples=tuple(Example.from_json(e) for e in d.get("examples", ())),
            checks=tuple(Check.from_json(c) for c in d.get("checks", ())),
            broken_by=tuple(str(b) for b in d.get("broken_by", ())),
            soundness=dict(d.get("soundness", {})),
            sample_ids=tuple(str(i) for i in d.get("sample_ids", ())),
            positive_label=int(d.get("positive_label", 1)),
            execution=dict(d.get("execution") or {}),
        )


def _check_data(data: ImageDataset) -> None:
    if len(data) == 0:
        raise RobustDataError(f"data set {data.name!r} is empty: nothing to evaluate")
    x = data.images
    if not x.is_floating_point():
        raise RobustDataError(
            f"data set {data.name!r} has {x.dtype} images; convert to float in [0, 1] (e.g. x / 255)"
        )
    if not bool(torch.isfinite(x).all()):
        raise RobustDataError(f"data set {data.name!r} contains NaN or inf pixels")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        hint = " (looks like 0–255 pixels: divide by 255)" if hi > 1.5 else ""
        hint = hint or " (looks normalised: put the normalisation inside the model, see NormalizedModel)"
        raise RobustDataError(
            f"data set {data.name!r} has pixels outside [0, 1] (min {lo:.4g}, max {hi:.4g}){hint}; "
            "attacks and eps budgets are defined in [0, 1] pixel space"
        )
    labels = data.labels
    if int(labels.min()) < 0 or int(labels.max()) >= data.num_classes:
        raise RobustDataError(f"data set {data.name!r} has labels outside 0..{data.num_classes - 1}")


def _accepted(batch: int | str, num_classes: int) -> str:
    """The output shapes a model may return for ``num_classes`` classes (for error messages)."""
    return (
        f"({batch}, {num_classes}): one logit per class of the data set, or ({batch}, 1) for a binary "
        "model with a sigmoid output (its logit z, viewed as the two logits [0, z]; only on data with 2 "
        "classes)"
    )


def _logits(model: nn.Module, x: torch.Tensor, num_classes: int, what: str) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    if not isinstance(out, torch.Tensor):
        raise RobustModelError(
            f"model returned {type(out).__name__}, expected a logits tensor of shape "
            + _accepted("batch", num_classes)
        )
    if out.shape != (x.shape[0], num_classes):
        raise RobustModelError(
            f"model output has shape {tuple(out.shape)} on {what} inputs, expected "
            + _accepted(x.shape[0], num_classes)
        )
    if not bool(torch.isfinite(out).all()):
        raise RobustModelError(
            f"model produced NaN/inf logits on {what} inputs; a robustness number measured on "
            "non-finite outputs would be meaningless"
        )
    return out.float()


def _score(logits: torch.Tensor) -> torch.Tensor:
    """Probability of the positive class (label 1) for binary tasks; of the predicted one otherwise."""
    probs = logits.softmax(dim=1)
    return probs[:, 1] if probs.shape[1] == 2 else probs.max(dim=1).values


def evaluate(
    model: nn.Module,
    data: ImageDataset,
    attack: Attack | str,
    threat: ThreatModel,
    *,
    device: str | torch.device = "auto",
    seed: int = 0,
    batch_size: int = 128,
    progress: bool | None = None,
    examples: int = 0,
    model_sha256: str | None = None,
    soundness: SoundnessConfig | None = None,
    check_cache: MutableMapping[str, Any] | None = None,
    positive_label: int = 1,
    focus: Sequence[int] = (),
    stop: Callable[[Sequence[bool]], bool] | None = None,
    execution: str | Plan = "auto",
    execution_cache: MutableMapping[str, Any] | None = None,
    calibration_dir: str | Path | None = None,
) -> EvalResult:
    """Measure clean and robust correctness of ``model`` on every sample of ``data``, then check it.

    ``examples``: keep up to that many attacked samples (images and predictions) for a report's
    gallery, successful attacks first, the classes in turn. ``model_sha256``: the model's
    fingerprint when the caller already computed it (hashing large weights takes a moment).
    ``soundness``: the checks' configuration (default :class:`SoundnessConfig`); a model declared
    ``randomized`` there is evaluated as the mean of its draws. ``check_cache``: a mapping in which
    the model checks (which depend on the model and the data, not on the attack) are kept and
    reused for the same model object, weights, structure and behaviour on the same samples. The
    global torch RNG is seeded with ``seed`` for the evaluation (and restored after), so a
    randomized model gives the same numbers on every run. ``positive_label``: the class whose miss
    is dangerous (clinical numbers). ``focus``: sample positions whose adversarial examples are kept
    first (e.g. those the baseline had robust, for a gallery of newly broken samples). ``stop``:
    called with the robust outcomes so far after each batch; when it returns True the evaluation
    ends there and covers only the samples evaluated (a sequential policy's early decision).

    ``execution``: how the attack's passes run (:mod:`pytest_robust.execution`): ``auto`` (the
    measured per-architecture table), ``fp32`` (the model as given) or ``calibrate`` (timed on the
    probe batch, the decision cached under ``calibration_dir``), or a :class:`~pytest_robust.execution.Plan`
    the caller made with :func:`execution_plan`. A setting other than fp32 is used only when the
    fidelity check agrees (its outcomes kept in ``execution_cache``); the clean pass, the decision
    on each adversarial input and the soundness checks always run in fp32. The result's
    ``execution`` records it all.
    """
    attack = coerce_attack(attack)
    seed = validate.seed("seed", seed)
    batch_size = validate.positive_int("batch_size", batch_size)
    examples = validate.as_int("examples", examples, minimum=0)
    cfg = soundness or SoundnessConfig()
    if not isinstance(execution, Plan):
        execution = parse_mode(execution)
    if attack.name == "none" and threat.eps > 0:
        raise RobustConfigError(
            f"attack 'none' measures clean accuracy: use eps=0, not eps={format_eps(threat.eps)}"
        )
    _check_data(data)
    if (
        isinstance(positive_label, bool)
        or not isinstance(positive_label, int)
        or not 0 <= positive_label < data.num_classes
    ):
        raise RobustConfigError(
            f"positive_label must be a label of the data (0..{data.num_classes - 1}), got {positive_label!r}"
        )
    if threat.norm is Norm.L2:
        diameter = math.sqrt(data.images[0].numel())
        if threat.eps > diameter:
            raise RobustDataError(
                f"L2 eps={threat.eps:g} exceeds the diameter {diameter:.3g} of the [0, 1] image cube"
            )
    target = resolve_device(device)
    original_device = model_device(model)
    # the model as the harness sees it (float32 logits, [0, z] for a one-logit binary model);
    # fingerprints and the check cache's identity stay those of the user's model
    view = as_classifier(model, data.num_classes)
    # the fp32 view: clean pass, every decision, the soundness checks; the attack runs through
    # ``attacked``, the same under the execution setting the fidelity check allowed
    base: nn.Module = ExpectationModel(view, cfg.draws) if cfg.randomized else view
    broken_by: list[str] = []
    flags: list[str] = []
    parts: tuple[dict[str, Any], ...] = ()
    first_attacked = -1
    rechecked = [0, 0]  # samples the fast setting called broken and fp32 did not; of them, broken in fp32
    generator = torch.Generator().manual_seed(seed)
    n = len(data)
    labels, clean_pred, adv_pred, clean_ok, robust_ok = [], [], [], [], []
    clean_scores: list[float] = []
    adv_scores: list[float] = []
    t_clean = t_attack = 0.0
    flipped: dict[int, list[Example]] = {}
    held: dict[int, list[Example]] = {}
    focused: dict[int, list[Example]] = {}
    focus_set = frozenset(focus)
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    model.to(target)
    devices = [target.index or 0] if target.type == "cuda" else []
    weights = model_sha256
    try:
        with eval_mode(view), torch.random.fork_rng(devices=devices):
            t_exec = time.perf_counter()
            if isinstance(execution, Plan):
                plan = execution
            else:
                where = (calibration_dir, execution_cache)
                plan = _plan(model, base, data, execution, target, cfg.randomized, *where)
            used, fidelity = FP32, Fidelity(status="skipped", detail="fp32 proposed")
            if not plan.candidate.plain and len(data) < MIN_SAMPLES:
                fidelity = Fidelity(
                    status="skipped",
                    detail=f"{len(data)} samples, fewer than {MIN_SAMPLES}: checking the setting would "
                    "cost more than it saves",
                )
            elif not plan.candidate.plain:
                weights = weights or model_fingerprint(model)
                used, fidelity = _check_fidelity(
                    plan.candidate,
                    model,
                    base,
                    data,
                    attack,
                    threat,
                    seed=seed,
                    target=target,
                    batch_size=batch_size,
                    cache=execution_cache,
                    weights=weights,
                )
            attacked: nn.Module = base if used.plain else ExecutionView(base, used, target.type)
            t_exec = time.perf_counter() - t_exec
            torch.manual_seed(seed)
            batches = range(0, n, batch_size)
            bar = tqdm(
                batches,
                desc=f"{attack.name} {threat.describe()}",
                unit="batch",
                disable=(not progress) if progress is not None else None,
                leave=False,
            )
            for start in bar:
                x = data.images[start : start + batch_size].to(target)
                y = data.labels[start : start + batch_size].to(target)
                t1 = time.perf_counter()
                logits = _logits(base, x, data.num_classes, "clean")
                pred = logits.argmax(dim=1)
                correct = pred == y
                t2 = time.perf_counter()
                t_clean += t2 - t1
                clean_score = _score(logits)
                a_pred, a_score = pred.clone(), clean_score.clone()
                robust = correct.clone()
                idx = correct.nonzero().flatten()
                batch_broken = [""] * x.shape[0]
                if first_attacked < 0 and idx.numel():
                    first_attacked = start
                if idx.numel() and threat.eps > 0:
                    x_sel, y_sel = x[idx], y[idx]
                    with weights_in_format(model, used):
                        if start == first_attacked and uses_gradients(attack.config()):
                            require_gradient_path(attacked, x_sel[:2])
                        outcome = run_attack(attack, attacked, x_sel, y_sel, threat, generator=generator)
                    check_perturbation(outcome.x_adv, x_sel, threat, attack=attack.describe())
                    # decided in fp32 whatever the setting: broken means it fools the model as given
                    adv_logits = _logits(base, outcome.x_adv, data.num_classes, "adversarial")
                    if attacked is not base:
                        views = (base, attacked, model, used)
                        outcome, adv_logits, disputed, settled = _recheck(
                            attack, *views, x_sel, y_sel, outcome, adv_logits, threat, generator
                        )
                        rechecked[0] += disputed
                        rechecked[1] += settled
                    x_adv = outcome.x_adv
                    flags += outcome.flags
                    parts = parts or outcome.parts
                    fooled = (adv_logits.argmax(dim=1) != y_sel).tolist()
                    for j, i in enumerate(idx.tolist()):
                        if fooled[j]:
                            label = outcome.broken_by[j] if outcome.broken_by else ""
                            batch_broken[i] = label or attack.name
                    a_pred[idx] = adv_logits.argmax(dim=1)
                    a_score[idx] = _score(adv_logits)
                    robust[idx] = a_pred[idx] == y_sel
                    if examples:
                        _keep_examples(
                            flipped,
                            held,
                            examples,
                            start=start,
                            idx=idx,
                            x=x_sel,
                            x_adv=x_adv,
                            y=y_sel,
                            clean_logits=logits[idx],
                            adv_logits=adv_logits,
                            eps=threat.eps,
                            focus=focus_set,
                            focused=focused,
                        )
                t_attack += time.perf_counter() - t2
                broken_by += batch_broken
                labels += y.tolist()
                clean_pred += pred.tolist()
                adv_pred += a_pred.tolist()
                clean_ok += correct.tolist()
                robust_ok += robust.tolist()
                clean_scores += clean_score.tolist()
                adv_scores += a_score.tolist()
                if stop is not None and len(robust_ok) < n and stop(robust_ok):
                    break
            bar.close()
            evaluated = len(labels)
            t3 = time.perf_counter()
            checks: tuple[Check, ...] = ()
            if evaluated < n:
                data = data.select(list(range(evaluated)))
            probe = data.images[: min(8, evaluated)].to(target)
            fingerprints = {
                "structure": structure_fingerprint(model),
                "behaviour": behaviour_fingerprint(base, probe),
            }
            weights = weights or model_fingerprint(model)
            if cfg.enabled:
                identity = json.dumps(
                    [
                        id(model),
                        weights,
                        fingerprints,
                        data.fingerprint(),
                        clean_ok,
                        cfg.to_json(),
                        threat.norm.value,
                        sorted(gradient_losses(attack.config())),
                        str(target),
                    ],
                    sort_keys=True,
                )
                checks = _soundness_checks(
                    view,
                    base,
                    attack,
                    data,
                    threat,
                    cfg,
                    seed=seed,
                    target=target,
                    cache=check_cache,
                    identity=identity,
                    clean_ok=clean_ok,
                    robust_ok=robust_ok,
                    outcome=AttackOutcome(
                        x_adv=probe, broken_by=tuple(broken_by), flags=tuple(flags), parts=parts
                    ),
                )
            t_checks = time.perf_counter() - t3
    finally:
        model.to(original_device)
    total = time.perf_counter() - t0
    return EvalResult(
        threat=threat,
        attack=attack.config(),
        attack_description=attack.describe(),
        labels=tuple(labels),
        clean_pred=tuple(clean_pred),
        adv_pred=tuple(adv_pred),
        clean_correct=tuple(clean_ok),
        robust_correct=tuple(robust_ok),
        clean_scores=tuple(clean_scores),
        adv_scores=tuple(adv_scores),
        data={
            "name": data.name,
            "synthetic": data.synthetic,
            "n": evaluated,
            **({"available": n} if evaluated < n else {}),
            "classes": list(data.classes),
            "shape": list(data.images.shape[1:]),
            "fingerprint": data.fingerprint(),
            "source": data.source,
        },
        model={
            "class": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "fingerprint": weights,
            **fingerprints,
            "randomized": cfg.randomized,
            **({"draws": cfg.draws} if cfg.randomized else {}),
        },
        device=str(target),
        seed=seed,
        timings={
            "clean_s": t_clean,
            "attack_s": t_attack,
            "checks_s": t_checks,
            "execution_s": t_exec,
            "total_s": total,
        },
        versions=library_versions(),
        examples=pick(focused, examples) or pick(flipped, examples) or pick(held, examples),
        checks=checks,
        broken_by=tuple(broken_by),
        soundness=cfg.to_json(),
        sample_ids=data.sample_ids(),
        positive_label=positive_label,
        execution={
            **execution_record(plan, fidelity, used),
            **({} if used.plain else {"rechecked": {"samples": rechecked[0], "broken": rechecked[1]}}),
        },
    )


def _recheck(
    attack: Attack,
    base: nn.Module,
    attacked: nn.Module,
    model: nn.Module,
    used: Setting,
    x: torch.Tensor,
    y: torch.Tensor,
    outcome: AttackOutcome,
    adv_logits: torch.Tensor,
    threat: ThreatModel,
    generator: torch.Generator,
) -> tuple[AttackOutcome, torch.Tensor, int, int]:
    """Attack again, in fp32, the samples whose adversarial input the fast setting calls broken and
    fp32 does not (a margin within the setting's numerical error: the attack stopped on a point
    only the fast view misclassifies). Without this the setting would bias the count towards
    robust. Returns the outcome and fp32 logits with those samples' fp32 results where fp32 broke
    them, how many were disputed and how many of them fp32 broke."""
    with torch.no_grad(), weights_in_format(model, used):
        fast_pred = attacked(outcome.x_adv).argmax(dim=1)
    disputed = ((fast_pred != y) & (adv_logits.argmax(dim=1) == y)).nonzero().flatten()
    if not disputed.numel():
        return outcome, adv_logits, 0, 0
    again = run_attack(attack, base, x[disputed], y[disputed], threat, generator=generator)
    check_perturbation(again.x_adv, x[disputed], threat, attack=attack.describe())
    again_logits = _logits(base, again.x_adv, adv_logits.shape[1], "adversarial")
    broken = again_logits.argmax(dim=1) != y[disputed]
    x_adv, logits = outcome.x_adv.clone(), adv_logits.clone()
    take = disputed[broken]
    x_adv[take] = again.x_adv[broken]
    logits[take] = again_logits[broken]
    labels = list(outcome.broken_by) or [""] * len(y)
    for j, i in enumerate(disputed.tolist()):
        if bool(broken[j]):
            labels[i] = again.broken_by[j] if again.broken_by else ""
    merged = replace(outcome, x_adv=x_adv, broken_by=tuple(labels), flags=(*outcome.flags, *again.flags))
    return merged, logits, int(disputed.numel()), int(broken.sum())


def execution_plan(
    model: nn.Module,
    data: ImageDataset,
    mode: str,
    *,
    device: str | torch.device = "auto",
    soundness: SoundnessConfig | None = None,
    calibration_dir: str | Path | None = None,
    execution_cache: MutableMapping[str, Any] | None = None,
) -> Plan:
    """The execution setting proposed for ``model`` on ``data`` (before the fidelity check):
    :func:`pytest_robust.execution.plan_execution`, with ``calibrate`` timing the first samples of
    ``data`` on ``device`` (the model is put back where it was). What :func:`evaluate` does for a
    ``mode``; a caller that keys results by the plan (the result cache) makes it first and passes it.
    ``execution_cache``: where this process keeps calibrations (and :func:`evaluate` fidelity checks)."""
    target = resolve_device(device)
    cfg = soundness or SoundnessConfig()
    view = as_classifier(model, data.num_classes)
    base: nn.Module = ExpectationModel(view, cfg.draws) if cfg.randomized else view
    original = model_device(model)
    model.to(target)
    try:
        with eval_mode(view):
            return _plan(model, base, data, mode, target, cfg.randomized, calibration_dir, execution_cache)
    finally:
        model.to(original)


def _plan(
    model: nn.Module,
    base: nn.Module,
    data: ImageDataset,
    mode: str,
    target: torch.device,
    randomized: bool,
    calibration_dir: str | Path | None,
    memo: MutableMapping[str, Any] | None = None,
) -> Plan:
    def timing() -> Plan:
        x = data.images[:PROBE_SAMPLES].to(target)
        y = data.labels[:PROBE_SAMPLES].to(target)
        _logits(base, x, data.num_classes, "clean")  # a model that cannot run says so properly
        folder = Path(calibration_dir) if calibration_dir is not None else None
        from pytest_robust.execution import architecture_of

        arch = architecture_of(model)
        return calibrate(base, x, y, model=model, device=target, folder=folder, arch=arch, memo=memo)

    return plan_execution(model, mode, device=target, randomized=randomized, timing=timing)


def _clean_correct_probe(
    base: nn.Module, data: ImageDataset, target: torch.device, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first :data:`~pytest_robust.execution.PROBE_SAMPLES` samples of ``data`` that the fp32
    view classifies correctly (fewer when the data has fewer)."""
    xs, ys, found = [], [], 0
    for start in range(0, len(data), batch_size):
        x = data.images[start : start + batch_size].to(target)
        y = data.labels[start : start + batch_size].to(target)
        ok = _logits(base, x, data.num_classes, "clean").argmax(dim=1) == y
        xs.append(x[ok])
        ys.append(y[ok])
        found += int(ok.sum())
        if found >= PROBE_SAMPLES:
            break
    return torch.cat(xs)[:PROBE_SAMPLES], torch.cat(ys)[:PROBE_SAMPLES]


def _check_fidelity(
    candidate: Setting,
    model: nn.Module,
    base: nn.Module,
    data: ImageDataset,
    attack: Attack,
    threat: ThreatModel,
    *,
    seed: int,
    target: torch.device,
    batch_size: int,
    cache: MutableMapping[str, Any] | None,
    weights: str,
) -> tuple[Setting, Fidelity]:
    """The setting the attack runs under: ``candidate`` when the fidelity check agrees, else fp32."""
    if attack.name == "none" or threat.eps == 0:
        return FP32, Fidelity(status="skipped", detail="nothing is attacked (eps=0): fp32")
    x, y = _clean_correct_probe(base, data, target, batch_size)
    if not len(y):
        return FP32, Fidelity(status="skipped", detail="no clean-correct sample to attack: fp32")
    if uses_gradients(attack.config()):
        require_gradient_path(base, x[:2])
    digest = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes())
    digest.update(str(y.tolist()).encode())
    kind = type(attack)
    identity = json.dumps(
        {
            "weights": weights,
            "structure": structure_fingerprint(model),
            "behaviour": behaviour_fingerprint(base, x),
            "probe": digest.hexdigest(),
            "attack": attack.config(),
            "class": f"{kind.__module__}.{kind.__qualname__}",
            "threat": threat.to_json(),
            "seed": seed,
            "setting": candidate.name,
            "device": str(target),
        },
        sort_keys=True,
        default=str,
    )
    outcome = fidelity_check(
        base, model, candidate, attack, x, y, threat, seed=seed, device=target, cache=cache, identity=identity
    )
    return (candidate if outcome.agreed else FP32), outcome


def _soundness_checks(
    raw: nn.Module,
    attacked: nn.Module,
    attack: Attack,
    data: ImageDataset,
    threat: ThreatModel,
    cfg: SoundnessConfig,
    *,
    seed: int,
    target: torch.device,
    clean_ok: Sequence[bool],
    robust_ok: Sequence[bool],
    outcome: AttackOutcome,
    cache: MutableMapping[str, Any] | None,
    identity: str,
) -> tuple[Check, ...]:
    """Every per-evaluation check of :mod:`pytest_robust.soundness`, on the clean-correct samples."""
    correct = [i for i, ok in enumerate(clean_ok) if ok]
    no_attack = attack.name == "none" or threat.eps == 0
    if cache is not None and identity in cache:
        checks = list(cache[identity][1])
    else:
        probe = spread(correct, cfg.probe_samples)
        x_probe = data.images[probe].to(target)
        y_probe = data.labels[probe].to(target)
        checks = model_checks(raw, attacked, x_probe, y_probe, threat, attack.config(), cfg)
        if cache is not None:
            cache[identity] = (raw, tuple(checks))  # the reference pins the model's id
    if no_attack:
        skip = {"gradient", "saturation", "output-form"}
        return tuple(
            Check(name=c.name, status=SKIP, summary=f"not relevant without an attack ({c.summary})")
            if c.name in skip
            else c
            for c in checks
        )
    few = spread(correct, cfg.unbounded_samples)
    checks.append(
        unbounded_check(
            attacked, attack, data.images[few].to(target), data.labels[few].to(target), threat, cfg, seed
        )
    )
    x_all, y_all = data.images[correct].to(target), data.labels[correct].to(target)
    sub = AttackOutcome(
        x_adv=x_all[:0],
        broken_by=tuple(outcome.broken_by[i] for i in correct),
        flags=outcome.flags,
        parts=outcome.parts,
    )
    robust = [robust_ok[i] for i in correct]
    checks.append(black_box_check(attacked, attack, sub, x_all, y_all, robust, threat, cfg, seed))
    order = ensemble_order_check(attacked, attack, sub, x_all, y_all, threat, cfg, seed)
    if order is not None:
        checks.append(order)
    checks.append(flags_check(sub, attack, randomized=cfg.randomized))
    return tuple(checks)


def worst_case(results: Sequence[EvalResult]) -> EvalResult:
    """The pointwise worst case over evaluations of one model on the same samples at one threat.

    A sample is robust only if it is robust under every one of ``results``; its adversarial
    prediction and score come from the first evaluation that broke it. Every broken sample was
    broken by a verified adversarial input, and every sample left robust was left robust by each
    evaluation, so the worst case is evidence when at least one of them is: its checks are those of
    the sound evaluations (their summaries name the attack), or of all when none is sound.
    """
    if not results:
        raise RobustConfigError("worst_case needs at least one evaluation")
    first = results[0]
    for r in results[1:]:
        if r.labels != first.labels or r.data.get("fingerprint") != first.data.get("fingerprint"):
            raise RobustConfigError("worst_case: the evaluations are not on the same samples")
        if r.threat != first.threat:
            raise RobustConfigError(
                f"worst_case: the evaluations are at different threat models ({first.threat.describe()} "
                f"vs {r.threat.describe()})"
            )
        if r.positive_label != first.positive_label:
            raise RobustConfigError("worst_case: the evaluations name different positive classes")
        if r.model.get("fingerprint") != first.model.get("fingerprint"):
            raise RobustConfigError("worst_case: the evaluations are of different models")
    adv_pred = list(first.adv_pred)
    adv_scores = list(first.adv_scores)
    robust = list(first.robust_correct)
    broken_by = list(first.broken_by) or [""] * first.n
    for r in results[1:]:
        for i in range(first.n):
            if robust[i] and not r.robust_correct[i]:
                robust[i] = False
                adv_pred[i] = r.adv_pred[i]
                adv_scores[i] = r.adv_scores[i]
                broken_by[i] = (
                    f"{r.attack['name']}:{r.broken_by[i]}"
                    if r.broken_by and r.broken_by[i]
                    else str(r.attack["name"])
                )
    trusted = [r for r in results if r.sound] or list(results)
    checks = tuple(
        Check(
            name=c.name,
            status=c.status,
            summary=f"[{r.attack['name']}] {c.summary}",
            measured=c.measured,
            threshold=c.threshold,
            why=c.why,
            fix=c.fix,
        )
        for r in trusted
        for c in r.checks
    )
    timings = {k: sum(r.timings.get(k, 0.0) for r in results) for k in first.timings}
    return EvalResult(
        threat=first.threat,
        attack={"name": "worst-case", "attacks": [r.attack for r in results]},
        attack_description="worst case of " + " + ".join(r.attack_description for r in results),
        labels=first.labels,
        clean_pred=first.clean_pred,
        adv_pred=tuple(adv_pred),
        clean_correct=first.clean_correct,
        robust_correct=tuple(robust),
        clean_scores=first.clean_scores,
        adv_scores=tuple(adv_scores),
        data=first.data,
        model=first.model,
        device=first.device,
        seed=first.seed,
        timings=timings,
        versions=first.versions,
        checks=checks,
        broken_by=tuple(broken_by),
        soundness=first.soundness,
        sample_ids=first.sample_ids,
        positive_label=first.positive_label,
        execution=_combined_execution(results),
    )


def _combined_execution(results: Sequence[EvalResult]) -> dict[str, Any]:
    """The execution record of a worst case: the parts' own when they agree, else the settings used
    (distinct, in order) and every part's record."""
    records = [r.execution for r in results]
    if all(rec == records[0] for rec in records):
        return dict(records[0])
    used = list(dict.fromkeys(str(rec.get("used", "fp32")) for rec in records))
    return {"used": ", ".join(used), "parts": records}


def _keep_examples(
    flipped: dict[int, list[Example]],
    held: dict[int, list[Example]],
    k: int,
    *,
    start: int,
    idx: torch.Tensor,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    clean_logits: torch.Tensor,
    adv_logits: torch.Tensor,
    eps: float,
    focus: frozenset[int] = frozenset(),
    focused: dict[int, list[Example]] | None = None,
) -> None:
    """Add this batch's attacked samples to the per-class candidates (at most ``k`` per class).

    Flipped samples at a ``focus`` position go to ``focused`` (the report shows those first).
    """
    for j in range(idx.numel()):
        label = int(y[j])
        ok = bool(adv_logits[j].argmax() == y[j])
        store = held if ok else flipped
        if not ok and focused is not None and start + int(idx[j]) in focus:
            store = focused
        bucket = store.setdefault(label, [])
        if len(bucket) >= k:
            continue
        bucket.append(
            make_example(
                index=start + int(idx[j]),
                x=x[j],
                x_adv=x_adv[j],
                label=label,
                clean_logits=clean_logits[j],
                adv_logits=adv_logits[j],
                eps=eps,
            )
        )


__all__ = ["EvalResult", "evaluate", "format_eps", "library_versions", "worst_case"]
