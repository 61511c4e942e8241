"""``pytest-robust verify``: rerun a recorded run from its manifest and compare every evaluation.

Steps (:func:`verify`):

1. **Integrity**: the run folder's files against its ``SHA256SUMS`` (an edited results.json, a
   swapped checkpoint list... is named).
2. **Checkpoints**: every recorded checkpoint is looked up by its spec key in the checkpoint
   caches given (a bundle's, the user's, the one the run recorded) and classified by the SHA-256
   of its weights: ``recorded`` (the same weights: copied into a scratch cache), ``other-training``
   (a valid checkpoint of the same spec trained elsewhere: used, statistically compared),
   ``altered`` (its metadata names the recorded hash but the file is different: the evidence was
   damaged or tampered with; not used), or ``absent`` (the rerun retrains it from its spec).
3. **Rerun**: the recorded command, in the recorded folder (or ``cwd``), with the scratch
   checkpoint cache, a scratch result cache, ``--robust-recompute`` (no stored result is read)
   and a scratch report folder; ``--robust-baseline-update`` is dropped and baselines are read
   from a copy, so the user's files are never written.
4. **Compare** (:func:`compare`), evaluation by evaluation (matched by test and order within it):
   with the same weights, **exact**: per-sample clean and adversarial predictions must be
   identical (on another device type up to ``device_tolerance`` of the samples may differ);
   with other weights (retrained), **statistical**: clean and robust accuracy must agree within a
   95% band of sampling noise of both runs plus the seed-to-seed spread.

Exit status: 0 everything identical or consistent; 1 something differs (numbers, samples,
verdicts, integrity, an altered checkpoint); 2 something could not be rerun (and nothing differs).
No pytest import (the rerun is a subprocess); torch is not imported either.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_robust.errors import RobustConfigError
from pytest_robust.evidence import CONFIG, SUMS, SumsCheck, check_sums, recorded_checkpoints, sha256
from pytest_robust.schema import VERIFICATION_SCHEMA_VERSION

#: name of the verification document written into the output folder
VERIFICATION = "verification.json"
VERIFICATION_HTML = "verification.html"
#: z for a two-sided 95% band
_Z95 = 1.959963984540054
#: default share of samples whose outcome may differ when the device type differs from the recorded
#: one (GPU kernels round differently from CPU ones; points near the decision boundary can flip)
DEVICE_TOLERANCE = 0.01

IDENTICAL, CONSISTENT, DIFFERS, NOT_RERUN = "identical", "consistent", "differs", "not rerun"


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    model: str
    key: str
    recorded_sha256: str
    #: ``recorded`` | ``other-training`` | ``altered`` | ``absent``
    status: str
    found_sha256: str | None = None
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class EvaluationCheck:
    """The comparison of one recorded evaluation with its rerun."""

    test: str
    index: int
    model: str
    attack: str
    threat: str
    #: ``identical`` | ``consistent`` | ``differs`` | ``not rerun``
    status: str
    #: ``exact`` (same weights) | ``statistical`` (other weights) | None (not rerun)
    mode: str | None
    reason: str
    recorded: dict[str, float | None] = field(default_factory=dict)
    rerun: dict[str, float | None] = field(default_factory=dict)
    differing_samples: int = 0
    differing_ids: tuple[str, ...] = ()
    tolerance: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["differing_ids"] = list(self.differing_ids)
        return out


def _key_of(detail: Mapping[str, Any]) -> str:
    return str(detail.get("context", {}).get("test") or "?")


def _indexed(details: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], Mapping[str, Any]]:
    seen: dict[str, int] = {}
    out: dict[tuple[str, int], Mapping[str, Any]] = {}
    for d in details:
        k = _key_of(d)
        out[(k, seen.get(k, 0))] = d
        seen[k] = seen.get(k, 0) + 1
    return out


def _label(detail: Mapping[str, Any]) -> tuple[str, str, str]:
    e = detail["evaluation"]
    model = detail.get("context", {}).get("model") or e.get("model", {}).get("class", "model")
    return (
        str(model),
        str(e.get("attack_description", e.get("attack"))),
        str(e.get("threat", {}).get("eps_str")),
    )


def _weights_id(detail: Mapping[str, Any]) -> str | None:
    ckpt = detail.get("context", {}).get("checkpoint") or {}
    if ckpt.get("weights_sha256"):
        return str(ckpt["weights_sha256"])
    model = detail["evaluation"].get("model", {})
    return str(model.get("fingerprint")) if model.get("fingerprint") else None


def _nums(e: Mapping[str, Any]) -> dict[str, float | None]:
    return {"clean_acc": e.get("clean_acc"), "robust_acc": e.get("robust_acc"), "n": e.get("n")}


def _band(p1: float, n1: int, p2: float, n2: int, spread: float) -> float:
    """Half-width of the 95% band for the difference of two accuracies from two trainings.

    Sampling noise with the pooled accuracy (well-behaved at 0 and 1), plus twice the seed-to-seed
    variance (each run is one draw of the training), plus a continuity correction.
    """
    n1, n2 = max(n1, 1), max(n2, 1)
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2) + 2 * spread**2
    return _Z95 * math.sqrt(var) + 0.5 * (1 / n1 + 1 / n2)


def compare_one(
    test: str,
    index: int,
    old: Mapping[str, Any],
    new: Mapping[str, Any] | None,
    *,
    seed_spread: float,
    device_tolerance: float,
    exact_only: bool,
) -> EvaluationCheck:
    """Compare one recorded evaluation (a results.json detail) with its rerun (None: not rerun)."""
    model, attack, eps = _label(old)
    e_old = old["evaluation"]
    base = EvaluationCheck(test, index, model, attack, eps, NOT_RERUN, None, "", recorded=_nums(e_old))
    if new is None:
        return dataclasses.replace(
            base,
            reason="the rerun recorded no such evaluation (its test was not "
            "run, was skipped, or failed before evaluating)",
        )
    e_new = new["evaluation"]
    base = dataclasses.replace(base, rerun=_nums(e_new))
    if _weights_id(old) == _weights_id(new):
        return _compare_exact(base, old, new, device_tolerance)
    if exact_only:
        return dataclasses.replace(
            base,
            status=DIFFERS,
            mode="statistical",
            reason="the model's weights differ from the recorded ones (retrained) and --exact asks for "
            "bit-identical evaluations",
        )
    n1, n2 = int(e_old["n"]), int(e_new["n"])
    problems, widest = [], 0.0
    for k in ("clean_acc", "robust_acc"):
        p1, p2 = float(e_old[k]), float(e_new[k])
        band = _band(p1, n1, p2, n2, seed_spread)
        widest = max(widest, band)
        if abs(p2 - p1) > band:
            problems.append(
                f"{k} {p1:.3f} recorded vs {p2:.3f} rerun (|diff| {abs(p2 - p1):.3f} > band {band:.3f})"
            )
    spread_txt = (
        f"seed-to-seed spread {seed_spread:.3f}"
        if seed_spread > 0
        else "no seed-to-seed spread known (sampling noise only; record one with --robust-seeds)"
    )
    if problems:
        return dataclasses.replace(
            base,
            status=DIFFERS,
            mode="statistical",
            tolerance=widest,
            reason="retrained weights; " + "; ".join(problems) + f"; {spread_txt}",
        )
    return dataclasses.replace(
        base,
        status=CONSISTENT,
        mode="statistical",
        tolerance=widest,
        reason="retrained weights; clean and robust accuracy within the 95% band "
        f"(sampling noise of both runs + {spread_txt})",
    )


def _compare_exact(
    base: EvaluationCheck, old: Mapping[str, Any], new: Mapping[str, Any], device_tolerance: float
) -> EvaluationCheck:
    """The same weights: every sample's outcome must be the same (see :data:`DEVICE_TOLERANCE`)."""
    e_old, e_new = old["evaluation"], new["evaluation"]
    ids = [str(i) for i in e_old.get("sample_ids", range(len(e_old["labels"])))]
    if e_old.get("sample_ids") != e_new.get("sample_ids") or e_old["labels"] != e_new["labels"]:
        return dataclasses.replace(
            base,
            status=DIFFERS,
            mode="exact",
            reason="other samples or labels: the data differs from the recorded data",
        )
    keys = ("clean_pred", "adv_pred", "clean_correct", "robust_correct")
    differing = [i for i in range(len(ids)) if any(e_old[k][i] != e_new[k][i] for k in keys)]
    scalars = [
        k
        for k in ("clean_acc", "robust_acc")
        if not math.isclose(float(e_old[k]), float(e_new[k]), abs_tol=1e-12)
    ]
    dev_old, dev_new = str(e_old.get("device", "")), str(e_new.get("device", ""))
    same_device = dev_old.split(":")[0] == dev_new.split(":")[0]
    allowed = 0 if same_device else math.floor(device_tolerance * len(ids))
    verdict_old = (old.get("verdict") or {}).get("status")
    verdict_new = (new.get("verdict") or {}).get("status")
    problems = []
    if len(differing) > allowed:
        where = "" if same_device else f" (device {dev_new} vs recorded {dev_old}: {allowed} allowed)"
        problems.append(f"{len(differing)} of {len(ids)} samples have other predictions{where}")
        problems += [f"{k} {e_old[k]:.4f} recorded vs {e_new[k]:.4f} rerun" for k in scalars]
    elif scalars and not differing:
        problems.append(
            f"the recorded {' and '.join(scalars)} do not match the recorded per-sample "
            "outcomes (the results were edited)"
        )
    if verdict_old is not None and verdict_new is not None and verdict_old != verdict_new:
        problems.append(f"verdict {verdict_old} recorded vs {verdict_new} rerun")
    found = dataclasses.replace(
        base,
        mode="exact",
        differing_samples=len(differing),
        differing_ids=tuple(ids[i] for i in differing[:20]),
        tolerance=allowed,
    )
    if problems:
        return dataclasses.replace(found, status=DIFFERS, reason="; ".join(problems))
    if not differing:
        return dataclasses.replace(
            found, status=IDENTICAL, reason="same weights, every sample's outcome identical"
        )
    return dataclasses.replace(
        found,
        status=CONSISTENT,
        reason=f"same weights; {len(differing)} of {len(ids)} samples differ on device "
        f"{dev_new} vs recorded {dev_old} (within {allowed} allowed)",
    )


def seed_spread(document: Mapping[str, Any]) -> float:
    """The largest standard deviation across seeds of any Table V cell the run recorded (0 if none)."""
    spread = 0.0
    for row in document.get("seed_study", {}).get("cells", []):
        sd = row.get("sd")
        if isinstance(sd, (int, float)):
            spread = max(spread, float(sd))
    return spread


def compare(
    recorded: Mapping[str, Any],
    rerun: Mapping[str, Any] | None,
    *,
    seed_spread: float = 0.0,
    device_tolerance: float = DEVICE_TOLERANCE,
    exact_only: bool = False,
) -> list[EvaluationCheck]:
    """Compare every evaluation of ``recorded`` with its counterpart in ``rerun``."""
    old = _indexed(recorded.get("details", []))
    new = _indexed(rerun.get("details", [])) if rerun is not None else {}
    return [
        compare_one(
            test,
            index,
            d,
            new.get((test, index)),
            seed_spread=seed_spread,
            device_tolerance=device_tolerance,
            exact_only=exact_only,
        )
        for (test, index), d in old.items()
    ]


def locate_checkpoints(
    recorded: Sequence[Mapping[str, Any]], roots: Sequence[Path], scratch: Path
) -> list[CheckpointStatus]:
    """Find each recorded checkpoint in ``roots`` (checkpoint cache folders) and stage it in ``scratch``."""
    out: list[CheckpointStatus] = []
    for ckpt in recorded:
        key, want = str(ckpt["key"]), str(ckpt["weights_sha256"])
        label = str(ckpt.get("model") or ckpt.get("arch") or key[:12])
        found: CheckpointStatus | None = None
        for root in roots:
            entry = root / "checkpoints" / key[:2] / key
            weights, meta = entry / "model.safetensors", entry / "meta.json"
            if not (weights.is_file() and meta.is_file()):
                continue
            actual = sha256(weights.read_bytes())
            try:
                claimed = json.loads(meta.read_text(encoding="utf-8")).get("weights_sha256")
            except (OSError, ValueError, AttributeError):
                claimed = None
            if actual == want:
                status = "recorded"
            elif claimed == actual:
                status = "other-training"
            else:
                found = found or CheckpointStatus(label, key, want, "altered", actual, str(entry))
                continue
            dest = scratch / "checkpoints" / key[:2] / key
            dest.mkdir(parents=True, exist_ok=True)
            for name in ("model.safetensors", "meta.json"):
                _link_or_copy(entry / name, dest / name)
            found = CheckpointStatus(label, key, want, status, actual, str(entry))
            if status == "recorded":
                break
        out.append(found or CheckpointStatus(label, key, want, "absent"))
    return out


def _link_or_copy(source: Path, dest: Path) -> None:
    """A hard link where the file system allows it (checkpoints are large), else a copy."""
    dest.unlink(missing_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def rerun_command(command: Sequence[str], *, report: Path, cache: Path, baseline: Path | None) -> list[str]:
    """The recorded pytest command, pointed at scratch folders, with every stored result bypassed."""
    # never rewrite the user's baselines; never retrain what the recorded checkpoints hold
    args = [a for a in command[1:] if a not in {"--robust-baseline-update", "--robust-retrain"}]
    extra = [f"--robust-report={report}", f"--robust-cache-dir={cache}", "--robust-recompute"]
    if baseline is not None:
        extra.append(f"--robust-baseline={baseline}")
    if "no:cacheprovider" not in args:
        extra += ["-p", "no:cacheprovider"]
    return [sys.executable, "-m", "pytest", *args, *extra]


@dataclass(frozen=True, slots=True)
class Verification:
    run_id: str
    run_dir: str
    status: str
    exit_code: int
    integrity: SumsCheck
    checkpoints: tuple[CheckpointStatus, ...]
    evaluations: tuple[EvaluationCheck, ...]
    command: tuple[str, ...]
    cwd: str
    rerun_exitstatus: int | None
    recorded_duration_s: float | None
    rerun_duration_s: float | None
    problems: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        out = {IDENTICAL: 0, CONSISTENT: 0, DIFFERS: 0, NOT_RERUN: 0}
        for e in self.evaluations:
            out[e.status] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "pytest-robust verification",
            "schema": VERIFICATION_SCHEMA_VERSION,
            "run_id": self.run_id,
            "run_dir": self.run_dir,
            "status": self.status,
            "exit_code": self.exit_code,
            "counts": self.counts(),
            "problems": list(self.problems),
            "integrity": self.integrity.to_json(),
            "checkpoints": [c.to_json() for c in self.checkpoints],
            "evaluations": [e.to_json() for e in self.evaluations],
            "rerun": {
                "command": list(self.command),
                "cwd": self.cwd,
                "exitstatus": self.rerun_exitstatus,
                "duration_s": self.rerun_duration_s,
                "recorded_duration_s": self.recorded_duration_s,
            },
            "verified_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }

    def lines(self) -> list[str]:
        """The terminal summary."""
        c = self.counts()
        out = [
            f"verification of run {self.run_id}: {self.status.upper()}",
            f"  evaluations: {c[IDENTICAL]} identical, {c[CONSISTENT]} consistent, {c[DIFFERS]} differ, "
            f"{c[NOT_RERUN]} not rerun (of {len(self.evaluations)})",
        ]
        modes = {e.mode for e in self.evaluations if e.mode}
        if modes:
            out.append(
                "  done: "
                + " and ".join(
                    sorted(
                        {
                            "exact": "evaluation verified exactly (recorded weights)",
                            "statistical": "training verified statistically (retrained weights)",
                        }[m]
                        for m in modes
                    )
                )
            )
        if self.integrity.intact:
            out.append(f"  integrity: {len(self.integrity.ok)} files match {SUMS}")
        else:
            out.append(
                "  integrity: "
                + (
                    self.integrity.problem
                    or f"changed {list(self.integrity.changed)}, missing {list(self.integrity.missing)}"
                )
            )
        for ck in self.checkpoints:
            out.append(f"  checkpoint {ck.model} ({ck.key[:12]}): {ck.status}")
        for p in self.problems:
            out.append(f"  problem: {p}")
        for e in self.evaluations:
            if e.status in (DIFFERS, NOT_RERUN):
                ids = f" samples {', '.join(e.differing_ids[:10])}" if e.differing_ids else ""
                out.append(
                    f"  {e.status}: {e.test} #{e.index} [{e.model}, {e.attack}, {e.threat}]: {e.reason}{ids}"
                )
        if self.recorded_duration_s and self.rerun_duration_s:
            out.append(
                f"  rerun took {self.rerun_duration_s:.0f} s "
                f"({self.rerun_duration_s / self.recorded_duration_s:.2f}x the recorded run's "
                f"{self.recorded_duration_s:.0f} s)"
            )
        return out


def decide(
    integrity: SumsCheck,
    checkpoints: Sequence[CheckpointStatus],
    evaluations: Sequence[EvaluationCheck],
    problems: Sequence[str],
) -> tuple[str, int]:
    statuses = {e.status for e in evaluations}
    if DIFFERS in statuses or not integrity.intact or any(c.status == "altered" for c in checkpoints):
        return "differs", 1
    if NOT_RERUN in statuses or problems or not evaluations:
        return "could not rerun", 2
    return "verified", 0


def verify(
    run_dir: Path,
    *,
    work: Path,
    cwd: Path | None = None,
    cache_roots: Sequence[Path] = (),
    seed_spread_: float | None = None,
    device_tolerance: float = DEVICE_TOLERANCE,
    exact_only: bool = False,
    sums_sha256: str | None = None,
) -> Verification:
    """Rerun ``run_dir``'s command (see the module docstring) and compare; ``work``: a scratch folder.

    ``sums_sha256``: the SHA-256 of the run's ``SHA256SUMS`` as printed when the run ended (kept
    apart from the run folder), so that a folder rewritten with its ``SHA256SUMS`` is caught.
    """
    results = run_dir / "results.json"
    try:
        recorded = json.loads(results.read_text(encoding="utf-8"))
        run, manifest = recorded["run"], recorded["manifest"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RobustConfigError(
            f"{run_dir}: not a readable report run folder ({exc}); pass reports/<run id>, reports/latest "
            "or a bundle made by `pytest-robust export`"
        ) from exc
    integrity = check_sums(run_dir, ignore=(VERIFICATION, VERIFICATION_HTML), expected=sums_sha256)
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    roots = [*cache_roots]
    recorded_cache = (manifest.get("config") or {}).get("cache_dir")
    if recorded_cache:
        roots.append(Path(recorded_cache))
    checkpoints = locate_checkpoints(recorded_checkpoints(run_dir), roots, cache)
    where = cwd or Path(run["invocation_dir"])
    problems: list[str] = []
    baseline = _stage_baseline(recorded, where, work, run_dir)
    command = rerun_command(run["command"], report=work / "rerun", cache=cache, baseline=baseline)
    exitstatus: int | None = None
    took: float | None = None
    rerun_doc: dict[str, Any] | None = None
    if not where.is_dir():
        problems.append(
            f"the recorded folder {where} does not exist here: pass --cwd to a checkout of "
            f"the suite (git commit {(manifest.get('git') or {}).get('commit', 'unknown')})"
        )
    else:
        env = {**os.environ, "PYTEST_ROBUST_RESULT_CACHE_DIR": str(work / "results")}
        env.pop("PYTEST_ROBUST_CACHE_DIR", None)
        print("rerunning:", " ".join(command), f"(in {where})", flush=True)
        t0 = time.perf_counter()
        exitstatus = subprocess.run(command, cwd=where, env=env, check=False).returncode
        took = time.perf_counter() - t0
        latest = work / "rerun" / "latest" / "results.json"
        try:
            rerun_doc = json.loads(latest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            problems.append(f"the rerun wrote no report (pytest exit status {exitstatus})")
    spread = seed_spread(recorded) if seed_spread_ is None else seed_spread_
    evaluations = compare(
        recorded, rerun_doc, seed_spread=spread, device_tolerance=device_tolerance, exact_only=exact_only
    )
    status, code = decide(integrity, checkpoints, evaluations, problems)
    for scratch in (cache, work / "results"):  # ours, and large (links to or copies of checkpoints)
        shutil.rmtree(scratch, ignore_errors=True)
    return Verification(
        run_id=str(run.get("id")),
        run_dir=str(run_dir),
        status=status,
        exit_code=code,
        integrity=integrity,
        checkpoints=tuple(checkpoints),
        evaluations=tuple(evaluations),
        command=tuple(command),
        cwd=str(where),
        rerun_exitstatus=exitstatus,
        recorded_duration_s=run.get("duration_s"),
        rerun_duration_s=took,
        problems=tuple(problems),
    )


def _baseline_option(run_dir: Path) -> str | None:
    """``--robust-baseline`` as the run resolved it (``config.json``: also set through ``addopts``)."""
    try:
        options = json.loads((run_dir / CONFIG).read_text(encoding="utf-8")).get("options", {})
    except (OSError, ValueError, AttributeError):
        return None
    value = options.get("robust_baseline") if isinstance(options, dict) else None
    return str(value) if value else None


def _stage_baseline(recorded: Mapping[str, Any], where: Path, work: Path, run_dir: Path) -> Path | None:
    """A copy of the run's baseline folder (so the rerun never writes the user's), or None."""
    command = list(recorded["run"]["command"])
    folder: str | None = _baseline_option(run_dir)
    for i, arg in enumerate(command):
        if arg.startswith("--robust-baseline="):
            folder = arg.split("=", 1)[1]
        elif arg == "--robust-baseline" and i + 1 < len(command):
            folder = command[i + 1]
    if folder is None:
        return None
    source = (where / folder) if not Path(folder).is_absolute() else Path(folder)
    target = work / "baseline"
    if target.exists():
        shutil.rmtree(target)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        target.mkdir(parents=True)
    return target


def render_html(document: Mapping[str, Any]) -> str:
    """The short verification page (autoescaped)."""
    from pytest_robust.report.html import _environment

    return str(_environment().get_template("verification.html.j2").render(v=document))
