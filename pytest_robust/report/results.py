"""The results document (``results.json``, schema ``pytest-robust/results``, the version in
:mod:`pytest_robust.schema`) and its rows.

Pure functions over plain JSON: the collector hands over one :class:`TestRecord` per test (with
the robustness results the test recorded in ``user_properties``); :func:`build_document` turns
them into the versioned document (``results.csv``, one row per evaluation, is built from it by
:mod:`pytest_robust.report.evaluations`).
Nothing here depends on which process ran a test, so ``-n 2`` and ``-n 0`` give the same document
apart from the ``run`` section and the timings. The schema is described field by field in
``docs/results-schema.md``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from pytest_robust import soundness
from pytest_robust.degeneracy import degeneracy_of
from pytest_robust.policies import compares_with_baseline, relation
from pytest_robust.schema import RESULTS_SCHEMA, RESULTS_SCHEMA_VERSION
from pytest_robust.threat import format_eps

#: The document's ``schema`` and ``schema_version`` (defined, with the version history, in
#: :mod:`pytest_robust.schema`).
SCHEMA: Final = RESULTS_SCHEMA
SCHEMA_VERSION: Final = RESULTS_SCHEMA_VERSION

#: Attack names in increasing strength: the table's columns and the choice of "strongest".
ATTACK_ORDER: Final = ("fgsm", "pgd", "autoattack")
#: The attack name of :func:`pytest_robust.evaluate.worst_case` (the pointwise worst case over
#: several evaluations): the per-model table's last column. The reference study reports no such
#: number, so its study value is always ``None``.
WORST_CASE: Final = "worst-case"
#: The per-model table's accuracy columns, in order: the attacks, then their worst case.
TABLE_ATTACKS: Final = (*ATTACK_ORDER, WORST_CASE)
OUTCOMES: Final = ("passed", "failed", "error", "xfailed", "xpassed", "skipped")
#: The per-evaluation soundness checks, in the order of the ``check_<name>`` columns and of the
#: report's soundness table (owned by :mod:`pytest_robust.soundness`, which imports no torch).
CHECK_NAMES: Final = soundness.CHECK_NAMES


@dataclass(slots=True, kw_only=True)
class TestRecord:
    """What the collector saw of one test (all phases)."""

    __test__ = False  # not a pytest test class

    nodeid: str
    outcome: str = "passed"
    duration_s: float = 0.0
    message: str = ""
    longrepr: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, row_ids: list[int]) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "message": self.message,
            "longrepr": self.longrepr,
            "rows": row_ids,
            "findings": self.findings,
            "timings": {"duration_s": self.duration_s},
        }


def _metrics(labels: list[int], preds: list[int], scores: list[float]) -> tuple[float | None, float | None]:
    """F1 (positive class: label 1) and ROC AUC (None when undefined: one class only)."""
    from sklearn.metrics import f1_score, roc_auc_score

    if not labels or len(set(labels)) < 2:
        return None, None
    if max(labels) > 1:  # not a binary task: macro F1, no AUC from one score
        return float(f1_score(labels, preds, average="macro", zero_division=0)), None
    f1 = float(f1_score(labels, preds, pos_label=1, zero_division=0))
    auc = float(roc_auc_score(labels, scores))
    return f1, auc


def _clean(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def check_status(checks: list[dict[str, Any]], name: str) -> str:
    """The status of check ``name``: ``fail`` when any entry of that name failed (a worst case
    holds one per evaluation it combines), else ``pass`` when any passed, else ``skip``; ``""``
    when the check did not run."""
    statuses = {str(c.get("status", "")) for c in checks if c.get("name") == name}
    for status in ("fail", "pass", "skip"):
        if status in statuses:
            return status
    return next(iter(sorted(statuses)), "")


def soundness_of(result: dict[str, Any]) -> dict[str, Any]:
    """The soundness fields of one result (``RobustResult.to_json()``).

    Results written before the soundness checks existed have none of the keys: they read as
    sound, with the status from ``passed`` and no soundness policy (``""``).
    """
    ev, vd = result["evaluation"], result["verdict"]
    checks = list(ev.get("checks") or [])
    failed = vd.get("failed_checks")
    if failed is None:
        failed = [str(c["name"]) for c in checks if c.get("status") == "fail"]
    failed = list(dict.fromkeys(str(f) for f in failed))
    sound = bool(vd.get("sound", ev.get("sound", not failed)))
    passed = bool(vd["passed"])
    status = str(vd.get("status") or ("unsound" if not sound else "pass" if passed else "fail"))
    policy = str(vd.get("soundness") or "")
    # the verdict says whether the gate judged the model degenerate; a result recorded before the
    # rule existed is judged here from its labels and clean predictions
    degenerate = bool(vd["degenerate"] if "degenerate" in vd else degeneracy_of(ev)["degenerate"])
    return {
        "status": status,
        "sound": sound,
        "soundness": policy,
        "failed_checks": failed,
        "checks": checks,
        "degenerate": degenerate,
        "label": verdict_label(passed=passed, sound=sound, degenerate=degenerate, soundness=policy),
    }


def verdict_label(*, passed: bool, sound: bool, degenerate: bool = False, soundness: str = "warn") -> str:
    """PASS, FAIL, UNSOUND, DEGENERATE, or either of the last two with "(passed: soundness=warn)":
    :meth:`pytest_robust.gate.Verdict.label`. A degenerate model's gate recorded as passed under
    another policy (a result recorded before the rule existed) is "DEGENERATE (passed)"."""
    if not sound:
        return "UNSOUND (passed: soundness=warn)" if passed else "UNSOUND"
    if degenerate:
        if not passed:
            return "DEGENERATE"
        return "DEGENERATE (passed: soundness=warn)" if soundness == "warn" else "DEGENERATE (passed)"
    return "PASS" if passed else "FAIL"


def finding_holds(finding: dict[str, Any]) -> bool:
    """Whether a recorded finding holds: its ``holds``, and never when it was measured on a
    degenerate model (``degenerate``, set by ``record_finding(results=...)``)."""
    return bool(finding.get("holds")) and not finding.get("degenerate")


def make_row(row_id: int, record: TestRecord, result: dict[str, Any]) -> dict[str, Any]:
    """One flat row per robustness result (per-sample data stays in the detail); ``results.csv``
    groups them by evaluation (:mod:`pytest_robust.report.evaluations`)."""
    ev, vd, ctx = result["evaluation"], result["verdict"], result.get("context", {})
    clean_f1, clean_auc = _metrics(ev["labels"], ev["clean_pred"], ev["clean_scores"])
    adv_f1, adv_auc = _metrics(ev["labels"], ev["adv_pred"], ev["adv_scores"])
    eps = float(ev["threat"]["eps"])
    attack = ev["attack"]["name"] if eps > 0 else "none"
    sound = soundness_of(result)
    degenerate = degeneracy_of(ev)
    return {
        "row": row_id,
        "nodeid": record.nodeid,
        "test_outcome": record.outcome,
        "model": model_label(ctx, ev["model"]),
        "arch": ctx.get("arch"),
        "recipe": ctx.get("recipe"),
        "attack": attack,
        "attack_description": ev["attack_description"],
        "norm": ev["threat"]["norm"],
        "eps": eps,
        "eps_label": format_eps(eps) if eps > 0 else "0",
        "n": ev["n"],
        "clean_acc": ev["clean_acc"],
        "clean_f1": _clean(clean_f1),
        "clean_auc": _clean(clean_auc),
        "robust_acc": ev["robust_acc"],
        "adv_f1": _clean(adv_f1),
        "adv_auc": _clean(adv_auc),
        "ci_low": vd["interval"][0],
        "ci_high": vd["interval"][1],
        "confidence": vd["confidence"],
        "min_acc": result["min_acc"],
        "policy": vd["policy"],
        "gate_passed": vd["passed"],
        "reason": vd["reason"],
        "status": sound["status"],
        "sound": sound["sound"],
        "soundness": sound["soundness"],
        "failed_checks": ";".join(sound["failed_checks"]),
        **{f"check_{name}": check_status(sound["checks"], name) for name in CHECK_NAMES},
        "degenerate": bool(degenerate["degenerate"]),
        "degenerate_reason": str(degenerate.get("reason") or ""),
        "min_class_recall": degenerate.get("min_recall"),
        **clinical_columns(ev),
        **baseline_columns(vd),
        "requirements": requirements(vd),
        "samples_used": ev["n"],
        "samples_available": ev["data"].get("available", ev["n"]),
        "samples_requested": ev["data"].get("requested_n"),
        "data_name": ev["data"]["name"],
        "data_synthetic": bool(ev["data"].get("synthetic")),
        "data_fingerprint": ev["data"]["fingerprint"],
        "model_fingerprint": ev["model"]["fingerprint"],
        "checkpoint_sha256": (ctx.get("checkpoint") or {}).get("weights_sha256"),
        "seed": ev["seed"],
        "study_seed": ctx.get("study_seed"),
        "device": ev["device"],
        **execution_columns(ev),
        "timings": dict(ev["timings"]),
    }


def execution_columns(ev: dict[str, Any]) -> dict[str, Any]:
    """How the attack ran (:mod:`pytest_robust.execution`): the setting used, the one proposed and
    the fidelity check's status; None for a result recorded before settings existed (fp32)."""
    ex = ev.get("execution") or {}
    fidelity = ex.get("fidelity")
    return {
        "execution": ex.get("used"),
        "execution_candidate": ex.get("candidate"),
        "execution_fidelity": fidelity.get("status") if isinstance(fidelity, dict) else None,
    }


def clinical_columns(ev: dict[str, Any]) -> dict[str, Any]:
    """The clinical numbers of one evaluation (:mod:`pytest_robust.clinical`); None before schema 3."""
    c = ev.get("clinical") or {}
    keys = (
        "positive_class",
        "n_positive",
        "clean_sensitivity",
        "robust_sensitivity",
        "clean_specificity",
        "robust_specificity",
        "flipped_to_negative",
        "flip_rate",
    )
    return {k: c.get(k) for k in keys}


def baseline_part(vd: dict[str, Any]) -> dict[str, Any] | None:
    """The part of a verdict that compared the candidate with its stored baseline, if any."""
    return next((p for p in vd.get("parts", ()) if compares_with_baseline(p.get("details", {}))), None)


def baseline_columns(vd: dict[str, Any]) -> dict[str, Any]:
    """``vs_baseline_*``: the difference to the baseline, its bounds, the decision, the changed samples."""
    part = baseline_part(vd)
    if part is None:
        return {
            k: None
            for k in (
                "vs_baseline",
                "vs_baseline_low",
                "vs_baseline_high",
                "vs_baseline_passed",
                "baseline_robust_acc",
                "newly_broken",
                "newly_robust",
            )
        }
    d = part["details"]
    return {
        "vs_baseline": part["measured"],
        "vs_baseline_low": part["interval"][0],
        "vs_baseline_high": part["interval"][1],
        "vs_baseline_passed": part["passed"],
        "baseline_robust_acc": d["baseline_robust_acc"],
        "newly_broken": d["newly_broken"],
        "newly_robust": d["newly_robust"],
    }


def requirements(vd: dict[str, Any]) -> str:
    """Every requirement of the gate with the policy that decided it: ``PASS robust accuracy >= 0.7
    (point-estimate); FAIL robust sensitivity >= 0.8 (point-estimate)``."""
    parts = vd.get("parts") or [vd]
    out = []
    for p in parts:
        statistic = str(p.get("statistic", "robust accuracy"))
        rel = relation(statistic)
        measured, required = p.get("measured"), p.get("required")
        known = measured is not None and required is not None
        numbers = f" {measured:.3f} {rel} {required:.3f}" if known else ""
        out.append(f"{'PASS' if p['passed'] else 'FAIL'} {statistic}{numbers} ({p.get('policy', '')})")
    return "; ".join(out)


def model_label(context: dict[str, Any], model: dict[str, Any]) -> str:
    """A result's model as the report names it: the test's ``context["model"]``; else a checkpoint the
    plugin built (``small_cnn standard``); else the model's class and the start of its weights'
    SHA-256 (``SmallCNN cc88baa8``), which tells two models of one class apart."""
    if context.get("model"):
        return str(context["model"])
    checkpoint = context.get("checkpoint") or {}
    if checkpoint.get("arch") and checkpoint.get("recipe"):
        return f"{checkpoint['arch']} {checkpoint['recipe']}"
    return f"{model.get('class') or 'model'} {str(model.get('fingerprint', ''))[:8]}".strip()


def build_document(
    records: list[TestRecord], *, run: dict[str, Any], manifest: dict[str, Any]
) -> dict[str, Any]:
    """The whole results document. Tests are sorted by node id (the same under any -n)."""
    records = sorted(records, key=lambda r: r.nodeid)
    rows: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    tests = []
    for record in records:
        ids = []
        for result in record.results:
            row = make_row(len(rows), record, result)
            rows.append(row)
            details.append(result)
            ids.append(row["row"])
        tests.append(record.to_json(ids))
    counts = Counter(r.outcome for r in records)
    document: dict[str, Any] = {
        "schema": RESULTS_SCHEMA,
        "schema_version": RESULTS_SCHEMA_VERSION,
        "run": run,
        "manifest": manifest,
        "summary": {
            "tests": len(records),
            "outcomes": {o: counts.get(o, 0) for o in OUTCOMES},
            "passed": counts.get("failed", 0) == 0 and counts.get("error", 0) == 0,
            "results": len(rows),
            "synthetic_data": any(r["data_synthetic"] for r in rows),
            "unsound": sum(not r["sound"] for r in rows),
            "degenerate": sum(bool(r["degenerate"]) for r in rows),
        },
        "tests": tests,
        "rows": rows,
        "details": details,
    }
    study = seed_study(document)
    if study is not None:
        document["seed_study"] = study
    return document


#: A spreadsheet evaluates a cell that starts with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula, prefixed with ``'`` (OWASP); numbers untouched."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def main_eps(rows: list[dict[str, Any]], preferred: float = 4 / 255) -> float | None:
    """The eps of the table: ``preferred`` when some row has it, else the most common non-zero eps."""
    eps_values = [r["eps"] for r in rows if r["eps"] > 0]
    if not eps_values:
        return None
    if any(abs(e - preferred) < 1e-9 for e in eps_values):
        return preferred
    return float(Counter(eps_values).most_common(1)[0][0])


def models_in_order(rows: list[dict[str, Any]]) -> list[str]:
    """Model labels: reference architectures first (study order, standard before PGD-AT), then others."""
    from pytest_robust.report.reference import TABLE_V

    order = {key: i for i, key in enumerate(TABLE_V)}
    seen: dict[str, tuple[int, str]] = {}
    for r in rows:
        key = (r["arch"], r["recipe"])
        seen.setdefault(r["model"], (order.get(key, len(order)), r["model"]))
    return [m for m, _ in sorted(seen.items(), key=lambda kv: kv[1])]


def model_table(document: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The Table V equivalent: one row per model, clean metrics and accuracy per attack at the main eps.

    ``rows`` defaults to the document's :func:`primary_rows` (the first seed of a multi-seed run);
    :func:`seed_study` passes each seed's rows.

    The cells are keyed by :data:`TABLE_ATTACKS`: the attacks and the worst case over them (a
    ``worst-case`` row); ``reference`` holds the study's values under the same keys, ``None`` for
    the worst case, which the study does not report.

    Each cell names the row it came from; with several rows for one cell (the same evaluation
    recorded by two tests) the first wins — they are identical by construction.
    """
    from pytest_robust.report.reference import reference_row

    if rows is None:
        rows = primary_rows(document)
    eps = main_eps(rows)
    table = []
    for model in models_in_order(rows):
        mine = [r for r in rows if r["model"] == model]
        clean = next((r for r in mine if r["eps"] == 0), mine[0])
        degenerate = next((r for r in mine if r.get("degenerate")), None)
        entry: dict[str, Any] = {
            "model": model,
            "arch": clean["arch"],
            "recipe": clean["recipe"],
            "n": clean["n"],
            "clean_acc": clean["clean_acc"],
            "clean_f1": clean["clean_f1"],
            "clean_auc": clean["clean_auc"],
            "clean_sensitivity": clean.get("clean_sensitivity"),
            "clean_specificity": clean.get("clean_specificity"),
            "positive_class": clean.get("positive_class"),
            # an attacked row stands in for a missing clean one: its soundness is the attack's
            "clean_sound": _sound(clean) if clean["eps"] == 0 else True,
            # the model almost never predicts some class (any of its rows: they share clean predictions
            # on the same data); its accuracies measure the class balance, not robustness
            "degenerate": degenerate is not None,
            "degenerate_reason": degenerate["degenerate_reason"] if degenerate is not None else "",
            "eps": eps,
            "attacks": {},
        }
        for attack in TABLE_ATTACKS:
            hit = next(
                (r for r in mine if r["attack"] == attack and eps is not None and abs(r["eps"] - eps) < 1e-9),
                None,
            )
            if hit is not None:
                entry["attacks"][attack] = {
                    "acc": hit["robust_acc"],
                    "ci": [hit["ci_low"], hit["ci_high"]],
                    "row": hit["row"],
                    "f1": hit["adv_f1"],
                    "auc": hit["adv_auc"],
                    "sound": _sound(hit),
                    "failed_checks": hit.get("failed_checks", ""),
                    "robust_sensitivity": hit.get("robust_sensitivity"),
                    "robust_specificity": hit.get("robust_specificity"),
                    "flipped_to_negative": hit.get("flipped_to_negative"),
                    "vs_baseline": hit.get("vs_baseline"),
                    "newly_broken": hit.get("newly_broken"),
                }
        ref = reference_row(clean["arch"], clean["recipe"])
        entry["reference"] = (
            None
            if ref is None
            else {
                "clean_acc": ref.clean_acc,
                "clean_f1": ref.clean_f1,
                "clean_auc": ref.clean_auc,
                "fgsm": ref.fgsm_acc,
                "pgd": ref.pgd_acc,
                "autoattack": ref.autoattack_acc,
                WORST_CASE: None,  # the study reports no worst case: never a made-up number
            }
        )
        table.append(entry)
    return table


def study_seeds(document: dict[str, Any]) -> list[int]:
    """The seeds of a multi-seed run (``--robust-seeds``), in the order given; [] for one seed."""
    seeds = ((document.get("manifest") or {}).get("config") or {}).get("seeds")
    return [int(s) for s in seeds] if seeds else []


def primary_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of the first seed of a multi-seed run (and every row outside the study); all rows else.

    The per-model table shows one training; :func:`seed_study` gives the spread across seeds.
    """
    later = set(study_seeds(document)[1:])
    return [r for r in document["rows"] if r.get("study_seed") not in later]


#: the cells of the seed study: clean accuracy and accuracy per attack (see :func:`model_table`)
STUDY_CELLS: Final = ("clean", *TABLE_ATTACKS)


def spread(values: list[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean, sample standard deviation and the t interval of the mean of ``values`` (one per seed).

    The interval is for the mean over trainings (seeds are the sampling unit); with one value
    there is no spread: sd and interval are None.
    """
    from scipy import stats

    k = len(values)
    mean = sum(values) / k
    if k < 2:
        return {"k": k, "mean": mean, "sd": None, "ci": None, "min": mean, "max": mean}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, k - 1)) * sd / math.sqrt(k)
    return {
        "k": k,
        "mean": mean,
        "sd": sd,
        "ci": [max(0.0, mean - half), min(1.0, mean + half)],
        "min": min(values),
        "max": max(values),
    }


def seed_study(document: dict[str, Any]) -> dict[str, Any] | None:
    """Across the seeds of a multi-seed run: every Table V cell and every named finding.

    ``cells``: per model and cell (clean accuracy, each attack, the worst case) the value at each
    seed, their mean, standard deviation and 95% t interval. ``findings``: per finding (its name and
    claim: one name may cover one claim per architecture), whether it holds at each seed; it holds
    across seeds only if it was recorded at every seed and held at each (a claim that depends on the
    training draw does not hold). None for a one-seed run.
    """
    seeds = study_seeds(document)
    if len(seeds) < 2:
        return None
    tables = {}
    for seed in seeds:
        rows = [r for r in document["rows"] if r.get("study_seed") == seed]
        tables[seed] = {t["model"]: t for t in model_table(document, rows)}
    models = models_in_order([r for r in document["rows"] if r.get("study_seed") in seeds])
    cells = []
    for model in models:
        for cell in STUDY_CELLS:
            per_seed: dict[str, float | None] = {}
            for seed in seeds:
                entry = tables[seed].get(model)
                if entry is None:
                    value = None
                elif cell == "clean":
                    value = entry["clean_acc"]
                else:
                    value = (entry["attacks"].get(cell) or {}).get("acc")
                per_seed[str(seed)] = value
            values = [v for v in per_seed.values() if v is not None]
            if not values:
                continue
            any_entry = next(tables[s][model] for s in seeds if model in tables[s])
            cells.append(
                {
                    "model": model,
                    "arch": any_entry["arch"],
                    "recipe": any_entry["recipe"],
                    "cell": cell,
                    "per_seed": per_seed,
                    **spread(values),
                }
            )
    # a finding is its name and claim: one name may cover several claims (one per architecture)
    findings: dict[tuple[str, str], dict[str, Any]] = {}
    for test in document["tests"]:
        for f in test["findings"]:
            if f.get("seed") is None:
                continue
            key = (str(f["name"]), str(f["claim"]))
            entry = findings.setdefault(key, {"name": f["name"], "claim": f["claim"], "per_seed": {}})
            entry["per_seed"][str(f["seed"])] = {"holds": finding_holds(f), "measured": f["measured"]}
    for entry in findings.values():
        held = [s for s in seeds if entry["per_seed"].get(str(s), {}).get("holds")]
        entry["seeds_holding"] = len(held)
        entry["holds"] = len(held) == len(seeds)
    return {"seeds": seeds, "cells": cells, "findings": [findings[k] for k in sorted(findings)]}


def has_worst_case(table: list[dict[str, Any]]) -> bool:
    """Whether some model of :func:`model_table` has a worst-case cell (the column is shown then)."""
    return any(WORST_CASE in t["attacks"] for t in table)


def _sound(row: dict[str, Any]) -> bool:
    return bool(row.get("sound", True))


def unsound_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows whose evaluation failed a soundness check, in row order (a v1 document has none)."""
    return [r for r in document["rows"] if not _sound(r)]


def strongest_row(document: dict[str, Any], model: str) -> dict[str, Any] | None:
    """The row of ``model``'s strongest attack at the main eps (AutoAttack > PGD > FGSM).

    A worst-case row is not preferred over its parts: it keeps no adversarial examples for the
    gallery; it is taken only when the model has no single-attack row at that eps.
    """
    rows = document["rows"]
    eps = main_eps(rows)
    mine = [r for r in rows if r["model"] == model and eps is not None and abs(r["eps"] - eps) < 1e-9]
    for attack in reversed(ATTACK_ORDER):
        for r in mine:
            if r["attack"] == attack:
                return dict(r)
    return dict(mine[0]) if mine else None


def eps_curves(document: dict[str, Any]) -> dict[str, list[tuple[float, float, float, float]]]:
    """Per model, (eps, robust acc, CI low, CI high) under PGD (the attack with most eps values),
    with the clean accuracy at eps 0."""
    rows = document["rows"]
    curves: dict[str, list[tuple[float, float, float, float]]] = {}
    for model in models_in_order(rows):
        mine = [r for r in rows if r["model"] == model]
        by_attack = Counter(r["attack"] for r in mine if r["eps"] > 0)
        if not by_attack:
            continue
        attack = max(
            by_attack, key=lambda a: (by_attack[a], ATTACK_ORDER.index(a) if a in ATTACK_ORDER else -1)
        )
        points: dict[float, tuple[float, float, float, float]] = {}
        clean = mine[0]
        points[0.0] = (0.0, clean["clean_acc"], clean["clean_acc"], clean["clean_acc"])
        for r in mine:
            if r["attack"] == attack and r["eps"] > 0:
                points.setdefault(r["eps"], (r["eps"], r["robust_acc"], r["ci_low"], r["ci_high"]))
        if len(points) > 2:
            curves[model] = [points[e] for e in sorted(points)]
    return curves
