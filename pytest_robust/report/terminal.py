"""The terminal's robustness summary, from the in-memory results document: one line per model.

Each line gives the model's verdict, its clean accuracy, its worst-case robust accuracy (a sample
counts as robust only when it is classified correctly under every attack the run made on it at the
table's eps) with its 95% interval, the robust sensitivity (the positive class's share kept) and
the tests' outcomes. The per-evaluation details are the report's (``--robust-report``).

The verdict of a model comes from the tests that recorded its results, never from a gate alone:

``UNSOUND``   a soundness check failed on one of its evaluations: the numbers are not evidence
``DEGENERATE`` it (almost) never predicts a class of the data: its accuracies measure the balance
``FAIL``      a test that used the model failed or errored (whatever its gates said)
``PASS``      some test that used it passed (gates included)
``XFAIL``     only expected failures used it
``SKIPPED``   every test that used it was skipped: nothing was decided, so no PASS

Pure: plain JSON in, lines out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from pytest_robust.devices import device_groups, shared_devices
from pytest_robust.report import fmt
from pytest_robust.report import results as res
from pytest_robust.report.evaluations import evaluation_verdict
from pytest_robust.threat import format_eps

_ATTACK_NAMES: Final = {"fgsm": "FGSM", "pgd": "PGD", "autoattack": "AA"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLine:
    """One model (one training seed of a multi-seed run) as the terminal shows it."""

    model: str
    seed: int | None
    verdict: str
    clean_acc: float | None
    #: worst-case robust accuracy over ``attacks`` at ``eps`` (None: no attack at that eps)
    robust_acc: float | None
    interval: tuple[float, float] | None
    robust_sensitivity: float | None
    attacks: tuple[str, ...]
    eps: float | None
    n: int
    outcomes: dict[str, int]
    unsound_checks: tuple[str, ...]
    #: why the model is degenerate (:mod:`pytest_robust.degeneracy`); None when it is not
    degenerate: str | None = None
    #: the samples a gate asked for when the data held fewer (all of them were evaluated)
    requested: int | None = None
    #: the comparisons with the baseline (``--robust-baseline``): the worst difference, newly broken
    #: samples summed, and whether every comparison passed; None without a baseline
    baseline: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return self.model if self.seed is None else f"{self.model} (seed {self.seed})"


def _test_outcomes(rows: list[dict[str, Any]]) -> dict[str, int]:
    by_test = {r["nodeid"]: r["test_outcome"] for r in rows}
    counts = Counter(by_test.values())
    return {o: counts[o] for o in res.OUTCOMES if counts.get(o)}


def _worst_case(
    attacked: list[dict[str, Any]], details: list[dict[str, Any]]
) -> tuple[list[bool], list[bool], tuple[str, ...]] | None:
    """Per sample: robust under every attack (same samples only), whether it is positive, attacks."""
    if not attacked:
        return None
    combined = [r for r in attacked if r["attack"] == res.WORST_CASE]
    chosen = combined[:1] or attacked
    first = details[chosen[0]["row"]]["evaluation"]
    ids = first.get("sample_ids") or []
    labels = list(first["labels"])
    robust = [True] * len(labels)
    names: list[str] = []
    for row in chosen:
        ev = details[row["row"]]["evaluation"]
        same = list(ev.get("sample_ids") or []) == list(ids) and list(ev["labels"]) == labels
        # the evaluation's own per-sample outcome (robust = correct on the clean input and attacked)
        mine = ev.get("robust_correct")
        if mine is None and len(ev.get("adv_pred") or []) == len(labels):
            mine = [p == y for p, y in zip(ev["adv_pred"], labels, strict=True)]
        if not same or mine is None or len(mine) != len(labels):
            continue  # another subset (a sequential policy stopped early): not comparable per sample
        robust = [ok and bool(r) for ok, r in zip(robust, mine, strict=True)]
        members = ev["attack"].get("attacks") if row["attack"] == "ensemble" else None
        # an ensemble (a cascade) counts as its members: the worst case of PGD and [PGD, AA] is PGD+AA
        for name in (
            [str(p.get("name", "?")) for p in members] if isinstance(members, list) else [row["attack"]]
        ):
            if name not in names:
                names.append(name)
    if combined:  # the worst case names what it combined
        parts = details[combined[0]["row"]]["evaluation"]["attack"].get("attacks") or []
        names = [str(p.get("name", "?")) if isinstance(p, dict) else str(p) for p in parts] or [
            res.WORST_CASE
        ]
    positive = int(first.get("positive_label", 1))
    return robust, [y == positive for y in labels], tuple(dict.fromkeys(names))


def model_lines(document: dict[str, Any]) -> list[ModelLine]:
    """The models of the run in the report's order, one entry per training seed of a multi-seed run."""
    from pytest_robust.stats import proportion_ci

    rows: list[dict[str, Any]] = document["rows"]
    details: list[dict[str, Any]] = document["details"]
    eps = res.main_eps(rows)
    study = res.study_seeds(document)
    lines = []
    for model in res.models_in_order(rows):
        mine = [r for r in rows if r["model"] == model]
        trained = {r.get("study_seed") for r in mine} - {None}
        seeds: list[int | None] = [s for s in study if s in trained] or [None]
        for seed in seeds:
            group = [r for r in mine if seed is None or r.get("study_seed") in (seed, None)]
            if not group:
                continue
            clean = next((r for r in group if r["eps"] == 0), group[0])
            attacked = [r for r in group if eps is not None and r["eps"] > 0 and abs(r["eps"] - eps) < 1e-9]
            worst = _worst_case(attacked, details)
            acc = interval = sens = None
            attacks: tuple[str, ...] = ()
            n = int(clean["n"])
            if worst is not None:
                robust, positive, attacks = worst
                n = len(robust)
                k = sum(robust)
                acc = k / n if n else None
                interval = proportion_ci(k, n) if n else None
                pos = [ok for ok, p in zip(robust, positive, strict=True) if p]
                sens = sum(pos) / len(pos) if pos else None
            unsound = tuple(
                dict.fromkeys(
                    c
                    for r in group
                    if not r.get("sound", True)
                    for c in str(r.get("failed_checks") or "?").split(";")
                )
            )
            outcomes = _test_outcomes(group)
            degenerate = next(
                (str(r.get("degenerate_reason") or "") for r in group if r.get("degenerate")), None
            )
            compared = [r for r in group if r.get("vs_baseline") is not None]
            baseline = (
                {
                    "vs_baseline": min(float(r["vs_baseline"]) for r in compared),
                    "newly_broken": sum(int(r.get("newly_broken") or 0) for r in compared),
                    "newly_robust": sum(int(r.get("newly_robust") or 0) for r in compared),
                    "passed": all(bool(r.get("vs_baseline_passed")) for r in compared),
                }
                if compared
                else None
            )
            lines.append(
                ModelLine(
                    model=model,
                    seed=seed,
                    # results.csv's rule over the tests that used the model; its gates do not decide
                    # (a failed gate in a passing test was caught by that test)
                    verdict=evaluation_verdict(
                        [o for o, k in outcomes.items() for _ in range(k)],
                        sound=not unsound,
                        gates_passed=True,
                        degenerate=degenerate is not None,
                    ),
                    clean_acc=clean["clean_acc"],
                    robust_acc=acc,
                    interval=interval,
                    robust_sensitivity=sens,
                    attacks=attacks,
                    eps=eps if worst is not None else None,
                    n=n,
                    outcomes=outcomes,
                    unsound_checks=unsound,
                    baseline=baseline,
                    requested=clean.get("samples_requested"),
                    degenerate=degenerate,
                )
            )
    return lines


def summary_lines(document: dict[str, Any]) -> list[str]:
    """The terminal's robustness summary: one line per model, then what the numbers are."""
    models = model_lines(document)
    if not models:
        return ["(no robustness results recorded)"]
    width = max(len(m.label) for m in models)
    out = []
    for m in models:
        if m.robust_acc is not None and m.interval is not None and m.eps is not None:
            lo, hi = m.interval
            names = "+".join(_ATTACK_NAMES.get(a, a) for a in m.attacks)
            robust = (
                f"robust {fmt.num(m.robust_acc)} [{fmt.num(lo)}, {fmt.num(hi)}] "
                f"(worst of {names}, {format_eps(m.eps)})"
            )
            sens = f"  sens {fmt.num(m.robust_sensitivity, missing='-')}"
        else:
            robust, sens = "robust -  (no attack at the table's eps)", ""
        tests = ", ".join(f"{k} {o}" for o, k in m.outcomes.items())
        unsound = f"  unsound: {', '.join(m.unsound_checks)}" if m.unsound_checks else ""
        if m.degenerate is not None:
            unsound += f"  degenerate: {m.degenerate}"
        base = ""
        if m.baseline is not None:
            b = m.baseline
            base = (
                f"  vs baseline {b['vs_baseline']:+.3f} ({b['newly_broken']} newly broken, "
                f"{b['newly_robust']} newly robust) "
                f"{'PASS' if b['passed'] else 'FAIL'}"
            )
        asked = f" (all; {m.requested} requested)" if m.requested else ""
        out.append(
            f"{m.verdict:<10} {m.label:<{width}}  clean {fmt.num(m.clean_acc, missing='-')}  {robust}{sens}"
            f"  n={m.n}{asked}{base}  tests: {tests}{unsound}"
        )
    profile = (document.get("manifest") or {}).get("profile") or {}
    if profile.get("plumbing"):
        out.append(f"PLUMBING CHECK: {profile['plumbing']}")
    if document["summary"].get("unsound"):
        out.append(
            "UNSOUND: a soundness check failed; those numbers are not evidence (details in the report)"
        )
    if document["summary"]["synthetic_data"]:
        out.append(
            "data: the embedded SYNTHETIC set (not real patient data); pass --robust-data for real images"
        )
    return out + worker_lines(document)


def worker_lines(document: dict[str, Any]) -> list[str]:
    """Under pytest-xdist: which worker evaluated on which device (``devices: cuda:0 gw0, gw2; ...``),
    and a line when several workers shared a GPU (and its memory)."""
    workers = (document.get("run") or {}).get("workers") or {}
    groups = device_groups(workers)
    if not groups:
        return []
    out = ["devices: " + "; ".join(f"{device} {', '.join(names)}" for device, names in groups)]
    shared = shared_devices(workers)
    if shared:
        out.append(
            "shared GPUs: "
            + "; ".join(f"{device} ({', '.join(names)})" for device, names in shared)
            + ": several workers on one GPU share its memory and time; -n <number of GPUs> gives one "
            "worker per GPU"
        )
    return out
