"""The evidence bundle of a run: command, resolved configuration, environment, checkpoints, SHA256SUMS.

A report folder holds, besides results.json / results.csv / report.html:

- ``command.txt``: the exact command (shell-quoted), the folder it ran in and the
  ``PYTEST_ROBUST_*`` environment variables that change where things are read or written;
- ``config.json``: the resolved configuration (profile, training profile, options);
- ``environment.txt``: every installed distribution as ``name==version``, Python and platform;
- ``checkpoints.json``: the checkpoints the run used (model, spec key, weights' SHA-256);
- ``SHA256SUMS``: the SHA-256 of every other file, in ``sha256sum`` format (``sha256sum -c
  SHA256SUMS`` checks it).

:func:`export` packs a run folder and the checkpoint files it used into one zip (``checkpoints/
<key[:2]>/<key>/...`` inside), so a run can be verified on another machine without retraining.
Pure standard library; no pytest and no torch import.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_robust.errors import RobustConfigError

SUMS = "SHA256SUMS"
COMMAND = "command.txt"
CONFIG = "config.json"
ENVIRONMENT = "environment.txt"
CHECKPOINTS = "checkpoints.json"
#: the folder of a bundle that holds the checkpoints (the checkpoint cache's own layout below it)
BUNDLE_CHECKPOINTS = "checkpoints"
#: marks a zip written by :func:`export`
BUNDLE_MARK = "pytest-robust-bundle.json"


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False, default=str) + "\n").encode()


def command_text(command: Sequence[str], invocation_dir: str, env: Mapping[str, str]) -> bytes:
    """``command.txt``: the command as a shell line, where it ran, and the variables that matter."""
    lines = [
        "# the command of this run, the folder it ran in, and the PYTEST_ROBUST_* variables set",
        f"cd {shlex.quote(invocation_dir)}",
        *(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()) if k.startswith("PYTEST_ROBUST_")),
        shlex.join(command),
    ]
    return ("\n".join(lines) + "\n").encode()


def environment_text() -> bytes:
    """``environment.txt``: Python, the platform and every installed distribution with its version."""
    from importlib import metadata

    dists = sorted(
        {f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]},
        key=str.lower,
    )
    head = [
        f"# python {platform.python_version()} ({sys.implementation.name}) on {platform.platform()}",
        f"# executable {sys.executable}",
    ]
    return ("\n".join(head + dists) + "\n").encode()


def evidence_files(
    document: Mapping[str, Any], *, options: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> dict[str, bytes]:
    """The bundle's files derived from a results document (its ``run`` and ``manifest``).

    ``options``: the run's ``--robust-*`` option values as pytest resolved them.
    """
    run, manifest = document["run"], document["manifest"]
    env = os.environ if env is None else env
    return {
        COMMAND: command_text(run["command"], run["invocation_dir"], env),
        CONFIG: _json(
            {
                "config": manifest.get("config"),
                "profile": manifest.get("profile"),
                "training_profile": manifest.get("training_profile"),
                "options": dict(options),
                "seeds": manifest.get("seeds"),
            }
        ),
        ENVIRONMENT: environment_text(),
        CHECKPOINTS: _json(manifest.get("checkpoints", [])),
    }


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def sums_text(files: Mapping[str, bytes]) -> bytes:
    """``SHA256SUMS`` over ``files`` (name → content), sorted by name, ``sha256sum`` format."""
    lines = [f"{sha256(files[name])}  {name}" for name in sorted(files) if name != SUMS]
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True, slots=True)
class SumsCheck:
    """The result of checking a folder against its SHA256SUMS."""

    ok: tuple[str, ...]
    changed: tuple[str, ...]
    missing: tuple[str, ...]
    #: files of the folder that the list does not cover (the verification's own output is ignored)
    unlisted: tuple[str, ...]
    #: why there was nothing to check (no SHA256SUMS), else None
    problem: str | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None and not self.changed and not self.missing

    def to_json(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "ok": list(self.ok),
            "changed": list(self.changed),
            "missing": list(self.missing),
            "unlisted": list(self.unlisted),
            "problem": self.problem,
        }


def check_sums(folder: Path, *, ignore: Iterable[str] = (), expected: str | None = None) -> SumsCheck:
    """Check every file listed in ``folder/SHA256SUMS`` (a damaged or absent list is a problem).

    ``SHA256SUMS`` lies beside the files it covers, so it catches accidents (a damaged copy, an
    edited file), not tampering: whoever rewrites a file can rewrite the list. ``expected`` is the
    list's own SHA-256 kept apart from the run (the run prints it; a CI log, a release note): with
    it, a folder rewritten together with its list is caught too.
    """
    sums = folder / SUMS
    if not sums.is_file():
        return SumsCheck(
            (),
            (),
            (),
            (),
            problem=f"{SUMS} is missing: the run predates evidence bundles or the file was removed",
        )
    raw = sums.read_bytes()
    if expected is not None and sha256(raw) != expected.lower():
        return SumsCheck(
            (),
            (),
            (),
            (),
            problem=f"{SUMS} is not the one recorded apart from the run (its SHA-256 is {sha256(raw)}, "
            f"expected {expected.lower()}): the run folder was rewritten after the run, {SUMS} included",
        )
    listed: dict[str, str] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or "/" in name or name.startswith("."):
            return SumsCheck((), (), (), (), problem=f"{SUMS} has a malformed line: {line[:80]!r}")
        listed[name] = digest
    ok, changed, missing = [], [], []
    for name, digest in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            missing.append(name)
        elif sha256(path.read_bytes()) != digest:
            changed.append(name)
        else:
            ok.append(name)
    skip = {SUMS, *ignore}
    unlisted = sorted(  # hidden files (the plugin's own marks) are not part of a run
        p.name
        for p in folder.iterdir()
        if p.is_file() and p.name not in listed and p.name not in skip and not p.name.startswith(".")
    )
    return SumsCheck(tuple(ok), tuple(changed), tuple(missing), tuple(unlisted))


def recorded_checkpoints(run_dir: Path) -> list[dict[str, Any]]:
    """The checkpoints a run recorded (``checkpoints.json``, else its results' manifest)."""
    path = run_dir / CHECKPOINTS
    try:
        if path.is_file():
            found = json.loads(path.read_text(encoding="utf-8"))
        else:
            found = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["manifest"][
                "checkpoints"
            ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RobustConfigError(f"{run_dir}: cannot read the checkpoints it used ({exc})") from exc
    return [c for c in found if isinstance(c, dict) and c.get("key") and c.get("weights_sha256")]


def export(run_dir: Path, target: Path, cache_root: Path) -> list[str]:
    """Pack ``run_dir`` and its checkpoints (from the checkpoint cache under ``cache_root``) into ``target``.

    Returns the keys of recorded checkpoints that could not be packed (absent from the cache, or
    its weights are not the recorded ones): the bundle then cannot verify those without retraining.
    Refuses to overwrite an existing file that is not a bundle.
    """
    run_dir = run_dir.resolve()
    if not (run_dir / "results.json").is_file():
        raise RobustConfigError(
            f"{run_dir} is not a report run folder (no results.json): pass reports/<run id> or reports/latest"
        )
    if target.exists() and not is_bundle(target):
        raise RobustConfigError(f"{target} exists and is not a pytest-robust bundle: not overwriting it")
    absent: list[str] = []
    tmp = target.with_name(f".{target.name}.tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(run_dir.iterdir()):
            if path.is_file():
                zf.write(path, f"run/{path.name}")
        for ckpt in recorded_checkpoints(run_dir):
            key, digest = str(ckpt["key"]), str(ckpt["weights_sha256"])
            entry = cache_root / "checkpoints" / key[:2] / key
            files = (
                [p for p in sorted(entry.iterdir()) if p.is_file() and not p.name.startswith(".")]
                if entry.is_dir()
                else []
            )
            weights = [p for p in files if p.suffix == ".safetensors"]
            # read once: the bytes that were hashed are the bytes packed
            data = weights[0].read_bytes() if weights else b""
            if not weights or sha256(data) != digest:
                absent.append(key)
                continue
            for path in files:
                name = f"{BUNDLE_CHECKPOINTS}/{key[:2]}/{key}/{path.name}"
                if path == weights[0]:
                    zf.writestr(zipfile.ZipInfo.from_file(path, name), data, zipfile.ZIP_DEFLATED)
                else:
                    zf.write(path, name)
        zf.writestr(
            BUNDLE_MARK,
            _json(
                {
                    "kind": "pytest-robust bundle",
                    "version": 1,
                    "run": run_dir.name,
                    "missing_checkpoints": absent,
                }
            ),
        )
    os.replace(tmp, target)
    return absent


def is_bundle(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return BUNDLE_MARK in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def unpack(bundle: Path, into: Path) -> tuple[Path, Path]:
    """Extract a bundle into ``into``; returns ``(run folder, checkpoint cache root)``.

    Only the bundle's own layout is extracted (``run/<file>``, ``checkpoints/<xx>/<key>/<file>``):
    any other member, absolute path or ``..`` is refused.
    """
    if not is_bundle(bundle):
        raise RobustConfigError(f"{bundle} is not a pytest-robust bundle (made by `pytest-robust export`)")
    run_dir, cache = into / "run", into / "cache"
    with zipfile.ZipFile(bundle) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")
            if info.filename == BUNDLE_MARK or info.is_dir():
                continue
            safe = all(p and p not in {".", ".."} for p in parts) and not info.filename.startswith("/")
            if safe and parts[0] == "run" and len(parts) == 2:
                dest = run_dir / parts[1]
            elif safe and parts[0] == BUNDLE_CHECKPOINTS and len(parts) == 4:
                dest = cache / "checkpoints" / parts[1] / parts[2] / parts[3]
            else:
                raise RobustConfigError(f"{bundle}: unexpected member {info.filename!r}; not extracting it")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(zf.read(info))
    return run_dir, cache
