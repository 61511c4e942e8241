"""A results.json as a Markdown table next to the study's Table V (for docs and pull requests).

python -m pytest_robust.report.markdown reports/latest/results.json
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_robust.report import fmt
from pytest_robust.report import results as res
from pytest_robust.report.setup import plumbing, run_setup
from pytest_robust.threat import format_eps


def _cell(value: str, ref: dict[str, float], key: str, show: Callable[[float | None], str]) -> str:
    return f"{value} ({show(ref[key])})" if key in ref else value


def _mark(value: str, sound: bool) -> str:
    return value if sound else f"{value} **UNSOUND**"


#: The study's value where it reports none (the worst case over the attacks): not a measurement.
NO_STUDY_VALUE = "—"

#: Column headings of the per-model table's accuracy columns (:data:`results.TABLE_ATTACKS`).
HEADINGS = {
    "fgsm": "FGSM acc",
    "pgd": "PGD-20 acc",
    "autoattack": "AutoAttack acc",
    res.WORST_CASE: "worst case acc",
}


def table(document: dict[str, Any]) -> str:
    """One line per model: this run's value, then the study's in parentheses.

    A value whose evaluation failed a soundness check is marked **UNSOUND**; every unsound
    evaluation (at any eps) is listed under the table with its failed checks. A degenerate model
    (:mod:`pytest_robust.degeneracy`) is marked **DEGENERATE** and listed under the table with why. A
    plumbing-check profile (``smoke``) says so above the table; this run's setup next to the study's
    follows it.
    """
    rows = res.model_table(document)
    if not rows:
        return plumbing_line(document) + "(no results)\n"
    # the worst case over the attacks gets its column when some model has one
    worst = res.has_worst_case(rows)
    columns = [*res.ATTACK_ORDER, res.WORST_CASE] if worst else list(res.ATTACK_ORDER)
    headings = ["model", "clean acc", "clean F1", "clean AUC", *(HEADINGS[a] for a in columns)]
    head = "| " + " | ".join(headings) + " |\n" + "|---" * len(headings) + "|\n"
    lines = []
    for t in rows:
        ref = t["reference"] or {}
        attacks = t["attacks"]
        cells = [
            _cell(_mark(fmt.pct(t["clean_acc"]), t.get("clean_sound", True)), ref, "clean_acc", fmt.pct)
            + _clean_clinical(t),
            _cell(fmt.num(t["clean_f1"]), ref, "clean_f1", fmt.num),
            _cell(fmt.num(t["clean_auc"]), ref, "clean_auc", fmt.num),
        ]
        for a in columns:
            value = fmt.MISSING
            if a in attacks:
                lo, hi = attacks[a]["ci"]
                value = f"{fmt.pct(attacks[a]['acc'])} [{fmt.pct(lo)}, {fmt.pct(hi)}]"
                value = _mark(value, attacks[a].get("sound", True))
            if a in ref and ref[a] is None:  # the study has no such number
                value = f"{value} ({NO_STUDY_VALUE})"
            else:
                value = _cell(value, ref, a, fmt.pct)
            cells.append(value + (_attack_clinical(attacks[a]) if a in attacks else ""))
        model = f"{t['model']} **DEGENERATE**" if t.get("degenerate") else t["model"]
        lines.append("| " + " | ".join([model, *cells]) + " |")
    eps = rows[0]["eps"]
    note = (
        f"\nAccuracy in %, Linf eps {format_eps(eps) if eps else fmt.MISSING}, n = {rows[0]['n']} per model; "
        "brackets: 95% Clopper–Pearson interval; parentheses: the reference study's Table V"
        + (
            f"; worst case: the pointwise worst case over the attacks (a sample counts only when every "
            f"attack failed on it), which the study does not report ({NO_STUDY_VALUE})"
            if worst
            else ""
        )
        + ".\n"
    )
    if any(t.get("clean_sensitivity") is not None for t in rows):
        positives = sorted({_plain(str(t["positive_class"])) for t in rows if t.get("positive_class")})
        note += (
            "\nsens / spec: sensitivity and specificity in % (positive class: "
            + (", ".join(positives) or "label 1")
            + "), clean beside the clean accuracy, robust (a positive counts only when called positive "
            "both clean and attacked) beside an attack's accuracy; flipped: positives caught on the clean "
            "input and called negative under the attack.\n"
        )
    unsound = [
        f"- **{res.verdict_label(passed=bool(r['gate_passed']), sound=False)}**: {r['model']}, "
        f"{r['attack']} {r.get('eps_label') or r['eps']}: failed checks "
        f"{(r.get('failed_checks') or '?').replace(';', ', ')} (`{r['nodeid']}`)"
        for r in res.unsound_rows(document)
    ]
    if unsound:
        note += (
            "\n**UNSOUND**: a soundness check failed, so the measured accuracy is not evidence:\n\n"
            + "\n".join(unsound)
            + "\n"
        )
    degenerate = [
        f"- **DEGENERATE**: {t['model']}: {t['degenerate_reason']}" for t in rows if t.get("degenerate")
    ]
    if degenerate:
        note += (
            "\n**DEGENERATE**: the model (almost) never predicts a class of the data, so its accuracies "
            "measure the class balance, not robustness:\n\n" + "\n".join(degenerate) + "\n"
        )
    return plumbing_line(document) + head + "\n".join(lines) + "\n" + note + setup_table(document)


def plumbing_line(document: dict[str, Any]) -> str:
    """A bold line saying the numbers are a plumbing check, with the profile's notice (``smoke``);
    empty for a profile that measures."""
    notice = plumbing(document)
    if notice is None:
        return ""
    return f"**Plumbing check, not a measurement:** {_plain(notice)}\n\n"


def setup_table(document: dict[str, Any]) -> str:
    """The setup of this run's table next to the study's, item by item (– where not recorded)."""
    lines = "".join(_row([s.item, s.run, s.study]) for s in run_setup(document))
    return "\n| setup | this run | the study |\n|---|---|---|\n" + lines


def seed_table(document: dict[str, Any]) -> str:
    """The seed study (``--robust-seeds``): per model and cell, mean [95% t interval] and each seed's
    value; then each finding with the seeds it held at. Empty for a one-seed run."""
    study = document.get("seed_study")
    if not study:
        return ""
    seeds = study["seeds"]
    cells = [c for c in res.STUDY_CELLS if any(x["cell"] == c for x in study["cells"])]
    names = {"clean": "clean acc", **HEADINGS}
    head = "| model | " + " | ".join(names[c] for c in cells) + " |\n" + "|---" * (len(cells) + 1) + "|\n"
    lines = []
    for model in dict.fromkeys(x["model"] for x in study["cells"]):
        out = []
        for c in cells:
            hit = next((x for x in study["cells"] if x["model"] == model and x["cell"] == c), None)
            if hit is None:
                out.append(fmt.MISSING)
                continue
            interval = f" [{fmt.pct(hit['ci'][0])}, {fmt.pct(hit['ci'][1])}]" if hit["ci"] else ""
            per_seed = " / ".join(fmt.pct(hit["per_seed"][str(s)]) for s in seeds)
            out.append(f"{fmt.pct(hit['mean'])}{interval} ({per_seed})")
        lines.append("| " + " | ".join([model, *out]) + " |")
    seed_list = ", ".join(str(s) for s in seeds)
    note = (
        f"\nAccuracy in %: mean over seeds {seed_list} [95% t interval of the mean across seeds] "
        f"(each seed's value, in that order).\n"
    )
    if study["findings"]:
        note += (
            "\n| finding | claim | holds at | holds across seeds |\n|---|---|---|---|\n"
            + "\n".join(
                f"| {f['name']} | {f['claim']} | {f['seeds_holding']} of {len(seeds)} seeds | "
                f"{'yes' if f['holds'] else 'no'} |"
                for f in study["findings"]
            )
            + "\n"
        )
    return head + "\n".join(lines) + "\n" + note


def _clean_clinical(entry: dict[str, Any]) -> str:
    """`` · sens 85.0 · spec 90.0`` after the clean accuracy; nothing for results without them."""
    sens, spec = entry.get("clean_sensitivity"), entry.get("clean_specificity")
    if sens is None and spec is None:
        return ""
    return f" · sens {fmt.pct(sens)} · spec {fmt.pct(spec)}"


def _attack_clinical(cell: dict[str, Any]) -> str:
    """`` · sens 42.0 · 12 flipped`` after an attack's accuracy; nothing for results without them."""
    if cell.get("robust_sensitivity") is None:
        return ""
    return f" · sens {fmt.pct(cell['robust_sensitivity'])} · {cell.get('flipped_to_negative')} flipped"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def _plain(text: str) -> str:
    """Plugin text as literal Markdown: HTML and Markdown syntax escaped, never interpreted."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def sections(document: dict[str, Any]) -> str:
    """The sections plugins added (``pytest_robust_report_sections``): a paragraph or a table each."""
    out = []
    for section in document.get("sections", []):
        out.append(f"\n### {_plain(section['title'])}\n\n")
        if section.get("text") is not None:
            out.append(_plain(section["text"]) + "\n")
            continue
        headers = section.get("headers", [])
        out.append(_row(headers) + "|---" * len(headers) + "|\n")
        out.extend(_row(r) for r in section.get("rows", []))
    return "".join(out)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(_plain(c).replace("\n", " ") for c in cells) + " |\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("results", type=Path, help="a results.json written by --robust-report")
    args = parser.parse_args(argv)
    document = json.loads(args.results.read_text(encoding="utf-8"))
    sys.stdout.write(table(document) + seed_table(document) + sections(document))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
