"""report.html: one self-contained page (inline CSS and SVG, images as data: URLs, no JavaScript).

Rendered with Jinja2 with autoescaping on for everything; the only markup inserted unescaped is
the SVG that :mod:`.figures` produced (matplotlib output, text drawn as paths).
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from pytest_robust.report import figures
from pytest_robust.report import results as res
from pytest_robust.threat import format_eps

#: Adversarial examples shown per model in the gallery.
GALLERY_PER_MODEL = 4


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader

    env = Environment(
        loader=PackageLoader("pytest_robust.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.1f}"
    env.filters["num"] = lambda x, d=3: "–" if x is None else f"{x:.{d}f}"
    env.filters["eps"] = lambda x: "0" if not x else format_eps(x)
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


def render_report(document: dict[str, Any]) -> str:
    """The page for ``document`` (see :func:`pytest_robust.report.results.build_document`)."""
    from pytest_robust.report.reference import CITATION

    table = res.model_table(document)
    attacks = [a for a in res.TABLE_ATTACKS if any(a in t["attacks"] for t in table)]
    tests = document["tests"]
    bad = [t for t in tests if t["outcome"] in ("failed", "error")]
    expected = [t for t in tests if t["outcome"] in ("xfailed", "xpassed")]
    findings = [(t["nodeid"], f) for t in tests for f in t["findings"]]
    context = {
        "doc": document,
        "run": document["run"],
        "summary": document["summary"],
        "manifest": document["manifest"],
        "table": table,
        "attacks": attacks,
        "attack_names": ATTACK_NAMES,
        "has_reference": any(t["reference"] for t in table),
        "citation": CITATION,
        "bars": Markup(figures.accuracy_bars(table, attacks=attacks, labels=ATTACK_NAMES)) if table else None,
        "curves": _curve_figures(document),
        "cards": _model_cards(document),
        "bad": bad,
        "expected": expected,
        "findings": findings,
        "tests": tests,
        "rows": document["rows"],
        "soundness": _soundness(document),
        "check_names": res.CHECK_NAMES,
        # sections from plugins (pytest_robust_report_sections): plain strings, escaped like the rest
        "sections": document.get("sections", []),
    }
    return str(_environment().get_template("report.html.j2").render(**context))
