"""report.html: one self-contained page (inline CSS and SVG, images as data: URLs, no JavaScript).

Rendered with Jinja2 with autoescaping on for everything; the only markup inserted unescaped is
the SVG that :mod:`.figures` produced (matplotlib output, text drawn as paths).
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from pytest_robust.degeneracy import RULE as DEGENERACY_RULE
from pytest_robust.policies import compares_with_baseline, relation
from pytest_robust.report import figures, fmt
from pytest_robust.report import results as res
from pytest_robust.report.setup import plumbing, run_setup
from pytest_robust.threat import format_eps

#: Adversarial examples shown per model in the gallery.
GALLERY_PER_MODEL = 4
#: Newly broken samples shown per result in the baseline gallery (a gate with a baseline keeps 8).
GALLERY_NEWLY_BROKEN = 8


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader

    env = Environment(
        loader=PackageLoader("pytest_robust.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = fmt.pct
    env.filters["num"] = fmt.num  # ``x | num(1)``: one decimal
    env.filters["eps"] = lambda x: "0" if not x else format_eps(x)
    # a difference of two accuracies in percentage points, always signed
    env.filters["pts"] = fmt.pts
    return env


#: Display names of the per-model table's accuracy columns (:data:`results.TABLE_ATTACKS`).
ATTACK_NAMES = {"fgsm": "FGSM", "pgd": "PGD", "autoattack": "AutoAttack", res.WORST_CASE: "Worst case"}


def _attack_label(row: dict[str, Any]) -> str:
    return ATTACK_NAMES.get(row["attack"], str(row["attack"]))


def _model_cards(document: dict[str, Any]) -> list[dict[str, Any]]:
    cards = []
    details = document["details"]
    for model in res.models_in_order(document["rows"]):
        row = res.strongest_row(document, model)
        if row is None:
            continue
        ev = details[row["row"]]["evaluation"]
        title = f"{_attack_label(row)} {format_eps(row['eps'])}"
        cards.append(
            {
                "model": model,
                "row": row,
                "attacked": title,
                "sound": bool(row.get("sound", True)),
                "confusion": Markup(
                    figures.confusion_pair(
                        ev["labels"],
                        ev["clean_pred"],
                        ev["adv_pred"],
                        ev["data"]["classes"],
                        attacked_title=title,
                    )
                ),
                "roc": Markup(
                    figures.roc_pair(ev["labels"], ev["clean_scores"], ev["adv_scores"], attacked_title=title)
                ),
                "classes": ev["data"]["classes"],
                "examples": ev.get("examples", [])[:GALLERY_PER_MODEL],
            }
        )
    return cards


def _curve_figures(document: dict[str, Any]) -> list[dict[str, Any]]:
    curves = res.eps_curves(document)
    if not curves:
        return []
    rows = document["rows"]
    recipe_of = {r["model"]: r["recipe"] for r in rows}
    recipes = sorted({recipe_of[m] for m in curves if recipe_of.get(m)})
    groups: list[tuple[str, dict[str, Any]]] = []
    if len(recipes) > 1:
        for recipe in recipes:
            groups.append(
                (f"{recipe} models", {m: c for m, c in curves.items() if recipe_of.get(m) == recipe})
            )
        rest = {m: c for m, c in curves.items() if not recipe_of.get(m)}
        if rest:
            groups.append(("other models", rest))
    else:
        groups.append(("all models", curves))
    return [
        {"title": t, "svg": Markup(figures.eps_curves(c, title=f"robust accuracy vs eps: {t}"))}
        for t, c in groups
        if c
    ]


def _soundness(document: dict[str, Any]) -> dict[str, Any]:
    """Per row: the label, the checks (full, from the detail) and one status per known check;
    the unsound rows split into those that failed the gate and those passed under ``warn``."""
    entries = []
    for row, detail in zip(document["rows"], document["details"], strict=True):
        sound = res.soundness_of(detail)
        checks = sound["checks"]
        cells = {}
        for name in res.CHECK_NAMES:
            mine = [c for c in checks if c.get("name") == name]
            cells[name] = {
                "status": res.check_status(mine, name),
                "summary": " | ".join(str(c.get("summary", "")) for c in mine),
            }
        entries.append(
            {
                "row": row,
                "label": sound["label"],
                "sound": sound["sound"],
                "degenerate": sound["degenerate"],
                "policy": sound["soundness"],
                "checks": checks,
                "cells": cells,
                "failed": [c for c in checks if c.get("status") == "fail"],
            }
        )
    unsound = [e for e in entries if not e["sound"]]
    return {
        "entries": entries,
        "failed_gate": [e for e in unsound if not e["row"]["gate_passed"]],
        "warned": [e for e in unsound if e["row"]["gate_passed"]],
        "any_checks": any(e["checks"] for e in entries),
    }


def _sample_ids(evaluation: dict[str, Any]) -> list[str]:
    """Each evaluated sample's identity (file path or index); the index for results without them."""
    ids = evaluation.get("sample_ids")
    return [str(i) for i in ids] if ids else [str(i) for i in range(int(evaluation.get("n", 0)))]


def _flip_label(evaluation: dict[str, Any]) -> str | None:
    """``malignant → benign``: the positive class and what a flip turns it into (``other`` with
    more than two classes); None when the result has no clinical numbers."""
    clinical = evaluation.get("clinical")
    if not clinical:
        return None
    classes = [str(c) for c in evaluation.get("data", {}).get("classes", [])]
    positive = int(clinical.get("positive_label", evaluation.get("positive_label", 1)))
    rest = [c for i, c in enumerate(classes) if i != positive]
    negative = rest[0] if len(rest) == 1 else "other"
    return f"{clinical.get('positive_class', positive)} → {negative}"


def _requirement(part: dict[str, Any]) -> dict[str, Any]:
    """One requirement of a gate as the report shows it: decision, statistic, numbers, policy."""
    statistic = str(part.get("statistic") or "robust accuracy")
    details = part.get("details") or {}
    interval = part.get("interval") or [None, None]
    return {
        "passed": bool(part.get("passed")),
        "statistic": statistic,
        "measured": part.get("measured"),
        "required": part.get("required"),
        "rel": "≤" if relation(statistic) == "<=" else "≥",
        "interval": interval,
        "confidence": part.get("confidence"),
        "policy": str(part.get("policy") or ""),
        "difference": compares_with_baseline(details),
        # a sequential decision: how many of the available samples it needed
        "used": details.get("used"),
        "available": details.get("available"),
        "sequential": details.get("sequential"),
    }


def _gates(document: dict[str, Any]) -> dict[str, Any]:
    """Per row: the clinical numbers, the baseline comparison and every requirement with the policy
    that decided it (results recorded before these existed show "–")."""
    entries = []
    for row, detail in zip(document["rows"], document["details"], strict=True):
        ev, vd = detail["evaluation"], detail["verdict"]
        parts = [_requirement(p) for p in (vd.get("parts") or [vd])]
        used = row.get("samples_used", ev.get("n"))
        available = row.get("samples_available", ev.get("data", {}).get("available", used))
        # a stopped evaluation whose verdict does not say so itself: "samples used" on the row
        stopped = used is not None and available is not None and available > used
        shown = any(p["used"] is not None for p in parts)
        entries.append(
            {
                "row": row,
                "label": res.soundness_of(detail)["label"],
                "sound": bool(row.get("sound", True)),
                "degenerate": bool(row.get("degenerate")),
                "requirements": parts,
                "flip_label": _flip_label(ev),
                "used": used if stopped and not shown else None,
                "available": available,
            }
        )
    labels = {e["flip_label"] for e in entries if e["flip_label"]}
    return {
        "entries": entries,
        "flip_label": next(iter(labels)) if len(labels) == 1 else None,
    }


def _newly_broken(document: dict[str, Any]) -> dict[str, Any]:
    """The results compared with a baseline, and for those with newly broken samples: the counts,
    the first newly broken sample ids and the kept examples among them."""
    compared = []
    entries = []
    for row, detail in zip(document["rows"], document["details"], strict=True):
        part = res.baseline_part(detail["verdict"])
        if part is None:
            continue
        compared.append(row)
        d = part["details"]
        if not d.get("newly_broken"):
            continue
        ev = detail["evaluation"]
        listed = [str(i) for i in d.get("newly_broken_ids") or []]
        entries.append(
            {
                "row": row,
                "passed": bool(part.get("passed")),
                "policy": str(part.get("policy") or ""),
                "interval": part.get("interval") or [None, None],
                "details": d,
                "ids": listed,
                "more": int(d["newly_broken"]) - len(listed),
                "classes": ev["data"]["classes"],
                "examples": newly_broken_examples(ev, d)[:GALLERY_NEWLY_BROKEN],
            }
        )
    return {"compared": compared, "entries": entries}


def newly_broken_examples(evaluation: dict[str, Any], details: dict[str, Any]) -> list[dict[str, Any]]:
    """The kept examples (``evaluation.examples``) that are newly broken samples, each with its
    ``sample_id``.

    An example is newly broken when its sample's identity is among the listed
    ``newly_broken_ids``. The list holds only the first few; when it is cut short, the examples a
    gate kept with a baseline put the newly broken samples first, so a leading run of attacked and
    flipped examples counts as newly broken too — once one of them was found in the list (without
    such evidence the kept examples may be ordinary flips, which are not shown).
    """
    ids = _sample_ids(evaluation)
    listed = {str(i) for i in details.get("newly_broken_ids") or []}
    complete = len(listed) >= int(details.get("newly_broken") or 0)
    examples = [
        {**e, "sample_id": ids[e["index"]] if 0 <= e["index"] < len(ids) else str(e["index"])}
        for e in evaluation.get("examples", [])
    ]
    certain = [e["sample_id"] in listed for e in examples]
    if complete or not any(certain):
        return [e for e, hit in zip(examples, certain, strict=True) if hit]
    out = []
    for e, hit in zip(examples, certain, strict=True):
        if not hit and e["adv_pred"] == e["label"]:
            break  # the newly broken samples come first; a sample the attack missed ends them
        out.append(e)
    return out


def render_report(document: dict[str, Any]) -> str:
    """The page for ``document`` (see :func:`pytest_robust.report.results.build_document`)."""
    from pytest_robust.report.reference import CITATION

    table = res.model_table(document)
    attacks = [a for a in res.TABLE_ATTACKS if any(a in t["attacks"] for t in table)]
    tests = document["tests"]
    bad = [t for t in tests if t["outcome"] in ("failed", "error")]
    expected = [t for t in tests if t["outcome"] in ("xfailed", "xpassed")]
    # a finding measured on a degenerate model never shows as holding (res.finding_holds)
    findings = [(t["nodeid"], {**f, "holds": res.finding_holds(f)}) for t in tests for f in t["findings"]]
    study = document.get("seed_study")
    context = {
        "study": study,
        "study_cells": [c for c in res.STUDY_CELLS if study and any(x["cell"] == c for x in study["cells"])],
        "study_models": list(dict.fromkeys(x["model"] for x in study["cells"])) if study else [],
        "study_index": {(x["model"], x["cell"]): x for x in study["cells"]} if study else {},
        "doc": document,
        "run": document["run"],
        "summary": document["summary"],
        "manifest": document["manifest"],
        "table": table,
        "attacks": attacks,
        "attack_names": ATTACK_NAMES,
        "has_reference": any(t["reference"] for t in table),
        "citation": CITATION,
        # this run's setup beside the study's (the Table V caption); the smoke profile's notice
        "setup": run_setup(document),
        "plumbing": plumbing(document),
        "bars": Markup(figures.accuracy_bars(table, attacks=attacks, labels=ATTACK_NAMES)) if table else None,
        "curves": _curve_figures(document),
        "cards": _model_cards(document),
        "bad": bad,
        "expected": expected,
        "findings": findings,
        "tests": tests,
        "rows": document["rows"],
        "soundness": _soundness(document),
        "gates": _gates(document),
        "baseline": _newly_broken(document),
        "check_names": res.CHECK_NAMES,
        "degeneracy_rule": DEGENERACY_RULE,
        # sections from plugins (pytest_robust_report_sections): plain strings, escaped like the rest
        "sections": document.get("sections", []),
    }
    return str(_environment().get_template("report.html.j2").render(**context))
