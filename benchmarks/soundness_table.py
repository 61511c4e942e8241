"""Per evaluation: every soundness check and the checks cost, from a run results.json.

``python benchmarks/soundness_table.py reports/latest/results.json`` (docs/results.md, BENCHMARKS.md).
"""

import json
import sys
from collections import defaultdict

from pytest_robust.soundness import CHECK_NAMES

with open(sys.argv[1]) as handle:
    doc = json.load(handle)
seen = {}
for d in doc["details"]:
    ev = d["evaluation"]
    ctx = d.get("context", {})
    model = ctx.get("model") or ev["model"]["fingerprint"][:8]
    att = ev["attack"]["name"]
    eps = round(ev["threat"]["eps"] * 255, 2)
    seen[(model, att, eps)] = d
names = [n for n in CHECK_NAMES if n != "attack-order"]  # attack-order: ensembles only
abbrev = {"pass": "ok", "fail": "FAIL", "skip": "–"}
print("| model | evaluation | robust acc | " + " | ".join(names) + " |")
print("|---|---|---|" + "---|" * len(names))
order = sorted(
    seen,
    key=lambda k: (
        k[0],
        ["none", "fgsm", "pgd", "autoattack", "worst-case"].index(k[1])
        if k[1] in ["none", "fgsm", "pgd", "autoattack", "worst-case"]
        else 9,
        k[2],
    ),
)
cost = defaultdict(lambda: [0.0, 0.0])
for key in order:
    d = seen[key]
    ev = d["evaluation"]
    if key[1] in ("none", "worst-case"):
        continue
    checks = {c["name"]: c for c in ev.get("checks", [])}
    cells = []
    for n in names:
        c = checks.get(n)
        if c is None:
            cells.append("")
            continue
        m = c.get("measured")
        val = (
            f" {m:.2f}"
            if isinstance(m, float)
            and n in ("gradient", "saturation", "unbounded", "black-box")
            and c["status"] != "skip"
            else ""
        )
        cells.append(abbrev[c["status"]] + val)
    print(
        f"| {key[0]} | {key[1]} {key[2]:g}/255 | {ev['robust_acc'] * 100:.1f} | " + " | ".join(cells) + " |"
    )
    t = ev["timings"]
    cost[key[1]][0] += t.get("clean_s", 0) + t.get("attack_s", 0)
    cost[key[1]][1] += t.get("checks_s", 0)
print()
tot_e = sum(v[0] for v in cost.values())
tot_c = sum(v[1] for v in cost.values())
for k, (e, c) in cost.items():
    print(f"{k}: evaluation {e:.1f} s, checks {c:.1f} s, {c / e:.1%}")
print(f"all: evaluation {tot_e:.1f} s, checks {tot_c:.1f} s, {tot_c / tot_e:.1%}")
