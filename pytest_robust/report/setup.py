"""This run's setup next to the reference study's: the Table V caption of every rendering.

:func:`run_setup` reads a results document (pure, plain JSON) and gives, for each item of
:data:`~pytest_robust.report.reference.SETUP_ITEMS` (resolution, training images and epochs, the
PGD-AT budget, the evaluation attacks, the images evaluated, the data, hardware, seeds), what the
evaluations of the per-model table recorded and what the study used. The run's side comes from
those evaluations' own records: their data (shape, name, kind, sample counts), attack
configurations and devices, and the checkpoint records of the models they attacked (training
images, epochs, the PGD-AT budget); a results document written before the checkpoint records held
epochs and budgets falls back to ``manifest.training_profile`` when the checkpoint names it. What
the run did not record is :data:`pytest_robust.report.fmt.MISSING`, never a guess (models built by
the tests themselves have no checkpoint record: how they were trained is unknown here).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from pytest_robust.report import fmt
from pytest_robust.report import results as res
from pytest_robust.threat import format_eps

#: The sub-attacks AutoAttack runs on 2 classes when it chooses them (``attacks="auto"``):
#: :func:`pytest_robust.attacks.autoattack.auto_attacks` (imported here it would import torch).
AUTO_TWO_CLASSES: Final = ("apgd-ce", "square")
_AA_LABELS: Final = {"square": "Square", "fab": "FAB"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupItem:
    """One line of the caption: an item of the setup, this run's value and the study's."""

    item: str
    run: str
    study: str


def run_setup(document: dict[str, Any]) -> list[SetupItem]:
    """This run's setup beside the study's, one :class:`SetupItem` per item of
    :data:`~pytest_robust.report.reference.SETUP_ITEMS`; several distinct values of the run are
    listed, comma-separated; an unrecorded one is ``–``."""
    from pytest_robust.report.reference import SETUP_ITEMS, STUDY_SETUP

    values = _run_values(document)
    return [SetupItem(item=k, run=values.get(k) or fmt.MISSING, study=STUDY_SETUP[k]) for k in SETUP_ITEMS]


def plumbing(document: dict[str, Any]) -> str | None:
    """The evaluation profile's plumbing-check notice (``manifest.profile.plumbing``: set for
    ``smoke``), or None when the run's numbers are meant as measurements."""
    profile = (document.get("manifest") or {}).get("profile") or {}
    text = profile.get("plumbing") if isinstance(profile, dict) else None
    return str(text) if text else None


def _table_results(document: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The rows the per-model table is made of (its seed, clean and at its eps) with their details."""
    rows = res.primary_rows(document)
    eps = res.main_eps(rows)
    details = document.get("details") or []
    return [
        (r, details[r["row"]])
        for r in rows
        if (r["eps"] == 0 or (eps is not None and abs(r["eps"] - eps) < 1e-9)) and r["row"] < len(details)
    ]


def _distinct(values: Iterable[object]) -> str | None:
    """The distinct values (in order of appearance), comma-separated; None when there are none."""
    seen = list(dict.fromkeys(str(v) for v in values if v is not None and v != ""))
    return ", ".join(seen) if seen else None


def _run_values(document: dict[str, Any]) -> dict[str, str | None]:
    results = _table_results(document)
    evaluations = [d.get("evaluation") or {} for _, d in results]
    data = [e.get("data") or {} for e in evaluations]
    attacked = [(r, d) for r, d in results if r["eps"] > 0]
    records = _checkpoints(d for _, d in results)
    profile = (document.get("manifest") or {}).get("training_profile")
    eps = res.main_eps([r for r, _ in results])

    def attacks(name: str) -> list[dict[str, Any]]:
        return [d.get("evaluation") or {} for r, d in attacked if r["attack"] == name]

    return {
        "resolution": _distinct(_resolution(d.get("shape")) for d in data),
        "training images": _distinct(c.get("train_images") for c in records),
        "training epochs (standard / PGD-AT)": _epochs(records, profile),
        "PGD-AT (training)": _distinct(_at_budget(c, profile) for c in _recipe(records, "pgd-at")),
        "threat (evaluation)": _distinct(f"{r['norm']} {r['eps_label']}" for r, _ in attacked),
        "PGD (evaluation)": _distinct(_pgd(e.get("attack") or {}, eps) for e in attacks("pgd")),
        "AutoAttack": _distinct(_autoattack(e) for e in attacks("autoattack")),
        "images evaluated per model": _distinct(
            f"{r['n']} of {r.get('samples_available', r['n'])}" for r, _ in results
        ),
        "test data": _distinct(_data_kind(d) for d in data),
        "hardware": _hardware([r.get("device") for r, _ in results], document),
        "execution (attacks)": _execution([d.get("evaluation") or {} for _, d in attacked]),
        "runs per model": _runs(document) if results else None,
    }


def _checkpoints(details: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checkpoint records of the models the results attacked, each once (by its cache key)."""
    records: dict[str, dict[str, Any]] = {}
    for detail in details:
        record = (detail.get("context") or {}).get("checkpoint")
        if isinstance(record, dict):
            records.setdefault(str(record.get("key") or len(records)), record)
    return list(records.values())


def _recipe(records: list[dict[str, Any]], recipe: str) -> list[dict[str, Any]]:
    return [c for c in records if c.get("recipe") == recipe]


def _resolution(shape: object) -> str | None:
    if not isinstance(shape, list) or len(shape) < 2:
        return None
    return f"{shape[-2]} × {shape[-1]} px"


def _from_profile(record: dict[str, Any], field: str, profile: object) -> Any:
    """``record[field]``; for a record written before it held the field, the training profile's
    value when the record names that profile (None otherwise: not recorded)."""
    if field in record:
        return record[field]
    if not isinstance(profile, dict) or record.get("training_profile") != profile.get("name"):
        return None
    if field == "epochs" and record.get("recipe") == "pgd-at":
        return profile.get("at_epochs") or profile.get("epochs")
    if field == "init":  # a fine-tuned PGD-AT model starts from the standard one
        return "standard" if profile.get("at_init") == "standard" else None
    return profile.get(field)


def _epochs(records: list[dict[str, Any]], profile: object) -> str | None:
    standard = _distinct(_from_profile(c, "epochs", profile) for c in _recipe(records, "standard"))
    adversarial = _recipe(records, "pgd-at")
    at = _distinct(_from_profile(c, "epochs", profile) for c in adversarial)
    if standard is None and at is None:
        return None
    fine_tuned = at is not None and any(_from_profile(c, "init", profile) for c in adversarial)
    note = " (PGD-AT fine-tunes the standard model)" if fine_tuned else ""
    return f"{standard or fmt.MISSING} / {at or fmt.MISSING}{note}"


def _at_budget(record: dict[str, Any], profile: object) -> str | None:
    eps, step, steps = (_from_profile(record, f, profile) for f in ("at_eps", "at_step_size", "at_steps"))
    if eps is None or step is None or steps is None:
        return None
    return f"Linf {format_eps(float(eps))}, {steps} steps of {format_eps(float(step))}"


def _pgd(config: dict[str, Any], eps: float | None) -> str | None:
    steps = config.get("steps")
    if steps is None:
        return None
    parts = [f"PGD-{steps}"]
    if config.get("step_size") is not None:
        parts.append(f"step {format_eps(float(config['step_size']))}")
    elif config.get("rel_step_size") is not None:
        rel = float(config["rel_step_size"])
        name = "eps/2" if rel == 0.5 else f"{rel:g}·eps"
        parts.append(f"step {name}" + (f" = {format_eps(rel * eps)}" if eps else ""))
    restarts = config.get("restarts")
    if restarts is not None:
        parts.append(f"{restarts} restart{'' if restarts == 1 else 's'}")
    return ", ".join(parts)


def _autoattack(evaluation: dict[str, Any]) -> str | None:
    config = evaluation.get("attack") or {}
    classes = (evaluation.get("data") or {}).get("classes")
    chosen = config.get("attacks")
    if isinstance(chosen, list):
        attacks: tuple[str, ...] | None = tuple(str(a) for a in chosen)
    else:  # "auto": chosen by the class count
        attacks = AUTO_TWO_CLASSES if isinstance(classes, list) and len(classes) == 2 else None
    names = " + ".join(_AA_LABELS.get(a, a.upper()) for a in attacks) if attacks else "auto (by class count)"
    budgets = []
    steps, restarts = config.get("apgd_steps"), config.get("apgd_restarts")
    if steps is not None and (attacks is None or any(a.startswith("apgd") for a in attacks)):
        s = "" if restarts == 1 else "s"
        budgets.append(f"APGD {steps} steps" + (f" × {restarts} restart{s}" if restarts is not None else ""))
    queries = config.get("square_queries")
    if queries is not None and (attacks is None or "square" in attacks):
        budgets.append(f"Square {queries} queries")
    return names + (f"; {', '.join(budgets)}" if budgets else "")


def _data_kind(data: dict[str, Any]) -> str | None:
    name = data.get("name")
    if name is None:
        return None
    source = data.get("source") or {}
    split = source.get("split") if isinstance(source, dict) else None
    where = f", {split} split" if split else ""
    if data.get("synthetic"):
        return f"{name}: embedded synthetic images{where} (not patient data)"
    kind = source.get("kind") if isinstance(source, dict) else None
    if kind in ("folder", "isic"):
        return f"{name}: real images from a folder{where}"
    return f"{name}: not the embedded synthetic set (source not recorded)"


def _hardware(devices: list[object], document: dict[str, Any]) -> str | None:
    text = _distinct(devices)
    torch_info = (document.get("manifest") or {}).get("torch") or {}
    gpus = torch_info.get("gpus") if isinstance(torch_info, dict) else None
    if text and gpus and "cuda" in text:
        text += f" ({', '.join(str(g) for g in gpus)})"
    return text


def _execution(evaluations: list[dict[str, Any]]) -> str | None:
    """How the attacks ran (:mod:`pytest_robust.execution`), in one line: the mode(s), each setting
    used with its count of evaluations, and how many fell back to fp32 after a fidelity check
    (``auto: channels_last+bf16 ×4, fp32 ×6; 1 fell back to fp32``); None when none recorded it."""
    records = [e["execution"] for e in evaluations if isinstance(e.get("execution"), dict) and e["execution"]]
    if not records:
        return None
    used: dict[str, int] = {}
    for r in records:
        used[str(r.get("used") or "fp32")] = used.get(str(r.get("used") or "fp32"), 0) + 1
    text = f"{_distinct(r.get('mode') for r in records) or fmt.MISSING}: " + ", ".join(
        f"{name} ×{count}" for name, count in used.items()
    )
    fallbacks = sum(1 for r in records if r.get("candidate") not in (None, r.get("used")))
    return text + (f"; {fallbacks} fell back to fp32 (fidelity check)" if fallbacks else "")


def _runs(document: dict[str, Any]) -> str:
    seeds = res.study_seeds(document)
    counted = f"{len(seeds)} seeds ({', '.join(str(s) for s in seeds)})" if len(seeds) > 1 else "1"
    return f"{counted}; 95% intervals on every number"
