"""Run a model over data under an attack: the pure core of every robustness test (no pytest).

Data flow: clean pass over all samples → attack only the still-correct samples → check every
adversarial input against the threat model → adversarial pass → soundness checks
(:mod:`pytest_robust.soundness`). A sample is robust when it is correct on the clean input AND on
its adversarial input.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
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
    """
    attack = coerce_attack(attack)
    seed = validate.seed("seed", seed)
    batch_size = validate.positive_int("batch_size", batch_size)
    examples = validate.as_int("examples", examples, minimum=0)
    cfg = soundness or SoundnessConfig()
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
    attacked: nn.Module = ExpectationModel(view, cfg.draws) if cfg.randomized else view
    broken_by: list[str] = []
    flags: list[str] = []
    parts: tuple[dict[str, Any], ...] = ()
    first_attacked = -1
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
    try:
        with eval_mode(view), torch.random.fork_rng(devices=devices):
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
                logits = _logits(attacked, x, data.num_classes, "clean")
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
                    if start == first_attacked and uses_gradients(attack.config()):
                        require_gradient_path(attacked, x_sel[:2])
                    outcome = run_attack(attack, attacked, x_sel, y_sel, threat, generator=generator)
                    x_adv = outcome.x_adv
                    check_perturbation(x_adv, x_sel, threat, attack=attack.describe())
                    adv_logits = _logits(attacked, x_adv, data.num_classes, "adversarial")
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
                "behaviour": behaviour_fingerprint(attacked, probe),
            }
            weights = model_sha256 or model_fingerprint(model)
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
                    attacked,
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
        timings={"clean_s": t_clean, "attack_s": t_attack, "checks_s": t_checks, "total_s": total},
        versions=library_versions(),
        examples=pick(focused, examples) or pick(flipped, examples) or pick(held, examples),
        checks=checks,
        broken_by=tuple(broken_by),
        soundness=cfg.to_json(),
        sample_ids=data.sample_ids(),
        positive_label=positive_label,
    )


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
    )


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
