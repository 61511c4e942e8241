"""Stored baselines: the accepted model's per-sample outcomes, and the paired comparison with them.

A baseline is one small JSON file per gate (``--robust-baseline=DIR``): the samples' identities
with their label, clean and robust outcome, plus everything that must match for a comparison to
mean anything (attack configuration, threat model, data fingerprint, seed, positive class) and
what may differ with a warning (library versions, device). Sorted keys, one sample per line, no
timestamps: the same run writes the same bytes, and a diff shows which samples changed.

Pure: JSON in and out, no torch, no pytest. The plugin decides where files live and writes them
from the controlling process only (see :mod:`pytest_robust.plugin`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_robust.errors import RobustConfigError
from pytest_robust.schema import BASELINE_SCHEMA

if TYPE_CHECKING:
    from pytest_robust.evaluate import EvalResult
    from pytest_robust.threat import ThreatModel

#: A baseline file's ``schema`` (defined in :mod:`pytest_robust.schema`).
SCHEMA = BASELINE_SCHEMA
#: the fix named in every mismatch message
REGENERATE = "regenerate it with --robust-baseline-update (and review the diff before committing it)"
#: how many sample identities a message or a comparison summary lists
LISTED = 10


class BaselineError(RobustConfigError):
    """A baseline file cannot be used: unreadable, not a baseline, or measured on something else."""


class BaselineWarning(UserWarning):
    """A baseline is compared, but it was measured with other library versions or on another device."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One sample's outcome in the baseline: correct on the clean input, and under attack."""

    id: str
    label: int
    clean: bool
    robust: bool

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "clean": self.clean, "robust": self.robust}


def _natural(text: str) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t)


@dataclass(frozen=True, slots=True, kw_only=True)
class Baseline:
    """The stored outcome of one gate of the accepted model."""

    test: str
    gate: int
    attack: dict[str, Any]
    threat: dict[str, Any]
    data: dict[str, Any]
    seed: int
    positive_label: int
    model: dict[str, Any]
    versions: dict[str, str]
    device: str
    samples: tuple[Sample, ...]
    #: where it was read from (not stored)
    source: str = ""

    @classmethod
    def from_result(cls, result: EvalResult, *, test: str, gate: int = 1) -> Baseline:
        ids = result.ids()
        samples = sorted(
            (
                Sample(
                    id=ids[i],
                    label=result.labels[i],
                    clean=result.clean_correct[i],
                    robust=result.robust_correct[i],
                )
                for i in range(result.n)
            ),
            key=lambda s: _natural(s.id),
        )
        data = result.data
        return cls(
            test=test,
            gate=gate,
            attack=result.attack,
            threat=result.threat.to_json(),
            data={k: data.get(k) for k in ("name", "fingerprint", "n", "classes", "shape")},
            seed=result.seed,
            positive_label=result.positive_label,
            model={k: result.model.get(k) for k in ("class", "fingerprint", "structure", "behaviour")},
            versions=dict(result.versions),
            device=result.device.split(":")[0],
            samples=tuple(samples),
        )

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def robust_acc(self) -> float:
        return sum(s.robust for s in self.samples) / self.n if self.samples else 0.0

    @property
    def clean_acc(self) -> float:
        return sum(s.clean for s in self.samples) / self.n if self.samples else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": BASELINE_SCHEMA,
            "test": self.test,
            "gate": self.gate,
            "attack": self.attack,
            "threat": self.threat,
            "data": self.data,
            "seed": self.seed,
            "positive_label": self.positive_label,
            "model": self.model,
            "versions": self.versions,
            "device": self.device,
            "summary": {
                "n": self.n,
                "clean_acc": round(self.clean_acc, 6),
                "robust_acc": round(self.robust_acc, 6),
            },
            "samples": [s.to_json() for s in self.samples],
        }

    def to_text(self) -> str:
        """Sorted, indented JSON with one sample per line (small and diff-friendly)."""
        d = self.to_json()
        samples = d.pop("samples")
        head = json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False)
        lines = [json.dumps(s, sort_keys=True, ensure_ascii=False) for s in samples]
        body = ",\n    ".join(lines)
        return head[:-2] + ',\n  "samples": [\n    ' + body + "\n  ]\n}\n"

    @classmethod
    def from_text(cls, text: str, *, source: str = "") -> Baseline:
        where = source or "baseline"
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise BaselineError(f"{where}: not valid JSON ({exc}); {REGENERATE}") from None
        if not isinstance(d, dict) or d.get("schema") != BASELINE_SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise BaselineError(
                f"{where}: not a pytest-robust baseline (schema {found!r}, expected "
                f"{BASELINE_SCHEMA!r}); {REGENERATE}"
            )
        try:
            samples = tuple(
                Sample(
                    id=str(s["id"]), label=int(s["label"]), clean=bool(s["clean"]), robust=bool(s["robust"])
                )
                for s in d["samples"]
            )
            return cls(
                test=str(d["test"]),
                gate=int(d["gate"]),
                attack=dict(d["attack"]),
                threat=dict(d["threat"]),
                data=dict(d["data"]),
                seed=int(d["seed"]),
                positive_label=int(d["positive_label"]),
                model=dict(d["model"]),
                versions={k: str(v) for k, v in d["versions"].items()},
                device=str(d["device"]),
                samples=samples,
                source=source,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BaselineError(f"{where}: a field is missing or malformed ({exc!r}); {REGENERATE}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Baseline:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BaselineError(f"cannot read baseline {p}: {exc}") from None
        return cls.from_text(text, source=str(p))

    def mismatches(
        self,
        *,
        attack: dict[str, Any],
        threat: ThreatModel,
        data_fingerprint: str,
        ids: Sequence[str],
        seed: int,
        positive_label: int,
    ) -> list[str]:
        """What differs between this baseline and a gate about to run (each makes a comparison void)."""
        out = []
        if _canon(self.attack) != _canon(attack):
            out.append(f"attack: baseline {_canon(self.attack)}, this gate {_canon(attack)}")
        if self.threat != threat.to_json():
            out.append(f"threat model: baseline {self.threat}, this gate {threat.to_json()}")
        if self.data.get("fingerprint") != data_fingerprint:
            mine = sorted(ids, key=_natural)
            theirs = [s.id for s in self.samples]
            what = (
                "the same sample ids with other pixels or labels"
                if mine == theirs
                else (
                    f"{len(theirs)} samples in the baseline, {len(mine)} here; "
                    f"{len(set(theirs) ^ set(mine))} ids differ"
                )
            )
            out.append(
                f"data: baseline fingerprint {str(self.data.get('fingerprint'))[:12]} "
                f"({self.data.get('name')}), this gate {data_fingerprint[:12]} ({what})"
            )
        if self.seed != seed:
            out.append(f"seed: baseline {self.seed}, this gate {seed}")
        if self.positive_label != positive_label:
            out.append(f"positive class: baseline label {self.positive_label}, this gate {positive_label}")
        return out

    def drift(self, evaluation: EvalResult) -> list[str]:
        """Differences that allow a comparison but must be said: library versions, device type."""
        out = []
        changed = sorted(
            k
            for k in set(self.versions) | set(evaluation.versions)
            if self.versions.get(k) != evaluation.versions.get(k)
        )
        if changed:
            pairs = ", ".join(
                f"{k} {self.versions.get(k, '-')} -> {evaluation.versions.get(k, '-')}" for k in changed
            )
            out.append(f"library versions differ from the baseline's ({pairs})")
        device = evaluation.device.split(":")[0]
        if device != self.device:
            out.append(f"the baseline was measured on {self.device}, this run on {device}")
        return out


def _canon(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, default=str)


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """A candidate's per-sample outcomes paired with the baseline's, sample by sample."""

    n: int
    baseline_acc: float
    candidate_acc: float
    newly_broken: int
    newly_robust: int
    #: identities of the newly broken / robust samples, in the candidate's sample order
    newly_broken_ids: tuple[str, ...]
    newly_robust_ids: tuple[str, ...]
    #: positions (in the candidate's evaluation) of the newly broken samples
    newly_broken_positions: tuple[int, ...]
    #: the candidate is the baseline's model (weights, structure and outputs all equal)
    same_model: bool
    source: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "baseline": self.source,
            "n": self.n,
            "baseline_robust_acc": self.baseline_acc,
            "candidate_robust_acc": self.candidate_acc,
            "newly_broken": self.newly_broken,
            "newly_robust": self.newly_robust,
            "newly_broken_ids": list(self.newly_broken_ids[:LISTED]),
            "newly_robust_ids": list(self.newly_robust_ids[:LISTED]),
            "same_model": self.same_model,
        }


def compare(baseline: Baseline, evaluation: EvalResult) -> Comparison:
    """Pair ``evaluation`` with ``baseline`` by sample identity (the sets must be equal)."""
    ids = evaluation.ids()
    stored = {s.id: s for s in baseline.samples}
    if set(ids) != set(stored) or len(ids) != len(stored):
        raise BaselineError(
            f"{baseline.source or 'baseline'}: its {len(stored)} samples are not this evaluation's "
            f"{len(ids)}; {REGENERATE}"
        )
    broken = [i for i, sid in enumerate(ids) if stored[sid].robust and not evaluation.robust_correct[i]]
    fixed = [i for i, sid in enumerate(ids) if not stored[sid].robust and evaluation.robust_correct[i]]
    keys = ("fingerprint", "structure", "behaviour")
    same = all(
        baseline.model.get(k) is not None and baseline.model.get(k) == evaluation.model.get(k) for k in keys
    )
    return Comparison(
        n=evaluation.n,
        baseline_acc=baseline.robust_acc,
        candidate_acc=evaluation.robust_acc,
        newly_broken=len(broken),
        newly_robust=len(fixed),
        newly_broken_ids=tuple(ids[i] for i in broken),
        newly_robust_ids=tuple(ids[i] for i in fixed),
        newly_broken_positions=tuple(broken),
        same_model=same,
        source=baseline.source,
    )


def robust_positions(baseline: Baseline, ids: Sequence[str]) -> tuple[int, ...]:
    """Positions in ``ids`` of the samples the baseline had robust (candidates for 'newly broken')."""
    robust = {s.id for s in baseline.samples if s.robust}
    return tuple(i for i, sid in enumerate(ids) if sid in robust)


# --- files ---------------------------------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9._+=,\-\[\]]")


def _safe(part: str) -> str:
    cleaned = _SAFE.sub("_", part)
    if cleaned in {"", ".", ".."}:
        cleaned = "_" + cleaned
    if cleaned != part:
        cleaned += "-" + hashlib.sha256(part.encode()).hexdigest()[:8]
    return cleaned


def relative_path(nodeid: str, gate: int = 1) -> Path:
    """Where a gate's baseline lives under the baseline folder: the test file's path, then the test.

    ``suites/test_x.py::test_pgd[8/255]`` gate 1 → ``suites/test_x.py/test_pgd[8_255]-<hash>.json``;
    characters unsafe in file names are replaced and a short hash of the original keeps names unique.
    """
    module, _, rest = nodeid.partition("::")
    parts = [_safe(p) for p in module.split("/") if p]
    name = _safe(rest.replace("::", ".") or "test")
    suffix = "" if gate == 1 else f".gate{gate}"
    return Path(*parts, f"{name}{suffix}.json")


def is_baseline_file(path: Path) -> bool:
    try:
        Baseline.load(path)
    except BaselineError:
        return False
    return True


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename.

    Refuses to replace a file that is not a pytest-robust baseline (never overwrite a user's file).
    """
    from pytest_robust.cache import atomic_write_bytes  # the project's one atomic write (imports torch)

    if path.exists() and not is_baseline_file(path):
        raise BaselineError(f"{path} exists and is not a pytest-robust baseline: not overwriting it")
    atomic_write_bytes(path, text.encode("utf-8"))
