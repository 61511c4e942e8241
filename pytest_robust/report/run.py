"""Run identity, the manifest an auditor needs to rerun a suite, and writing a run's folder."""

from __future__ import annotations

import datetime
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# the manifest's versions (one implementation for the package: :mod:`pytest_robust.versions`)
from pytest_robust.versions import package_versions as package_versions
from pytest_robust.versions import torch_info as torch_info

#: Name of the stable pointer to the newest run inside the report folder.
LATEST = "latest"

#: A file inside a ``latest`` folder the plugin made (a copy, where links are not allowed): only a link
#: or such a folder is ever replaced; anything else named ``latest`` is the user's and is never touched
LATEST_MARK = ".pytest-robust-latest"


def report_folder_problem(base: Path) -> str | None:
    """Why a run could not write its report into ``base``; None when it can.

    Checked when the run starts (a usage error then, not a lost report after an hour of attacks):
    ``base`` must be a folder the plugin can create and write, and ``base/latest`` must be absent, a
    link, or a copy the plugin made.
    """
    if base.exists() and not base.is_dir():
        return f"{base} is a file, not a report folder: name a folder (--robust-report=DIR)"
    try:
        base.mkdir(parents=True, exist_ok=True)
        probe = base / f".write-test.{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return f"cannot write the report into {base}: {reason} (name a writable folder: --robust-report=DIR)"
    return latest_problem(base)


def latest_problem(base: Path) -> str | None:
    """Why ``base/latest`` must not be replaced (it exists and the plugin did not make it); None else."""
    latest = base / LATEST
    if latest.is_symlink() or not latest.exists():
        return None
    if latest.is_dir() and (latest / LATEST_MARK).is_file():
        return None
    return (
        f"{latest} exists and was not made by pytest-robust (not a link to a run, no {LATEST_MARK} "
        "inside); the report never replaces it: move it, or write the report elsewhere (--robust-report=DIR)"
    )


def new_run_id(now: datetime.datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-xxxxxx`` (UTC; random suffix so two runs in one second never collide)."""
    now = now or datetime.datetime.now(datetime.UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def git_info(root: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the checkout at ``root``, or None outside a git work tree."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def platform_info() -> dict[str, Any]:
    return {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python_executable": sys.executable,
    }


def write_run(base: Path, run_id: str, files: dict[str, bytes]) -> Path:
    """Write ``files`` into ``base/run_id/`` (each atomically), then point ``base/latest`` at it.

    ``latest`` is a relative symbolic link replaced atomically; where links are not allowed it is
    a folder holding copies. Returns the run folder.
    """
    from pytest_robust.storage import atomic_write_bytes

    folder = base / run_id
    folder.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    for name, payload in files.items():
        atomic_write_bytes(folder / name, payload)
        os.chmod(folder / name, 0o666 & ~umask)  # a report is for reading: not the temp file's 0600
    _point_latest(base, run_id)
    return folder


def _point_latest(base: Path, run_id: str) -> None:
    """Point ``base/latest`` at ``run_id``: a relative link, else a marked copy; never the user's own.

    The new pointer is built beside the old one and renamed into place: a link replaces a link in one
    atomic rename; otherwise the old one is renamed aside first, so ``latest`` is absent only between
    two renames, never while a copy is being made.
    """
    from pytest_robust.errors import RobustConfigError

    problem = latest_problem(base)
    if problem is not None:
        raise RobustConfigError(problem)
    latest = base / LATEST
    new = base / f".{LATEST}.new.{secrets.token_hex(4)}"
    try:
        os.symlink(run_id, new, target_is_directory=True)
    except OSError:  # no links here: a copy of the run, marked as the plugin's
        shutil.copytree(base / run_id, new)
        (new / LATEST_MARK).write_text(run_id + "\n", encoding="utf-8")
    try:
        if (new.is_symlink() and latest.is_symlink()) or not (latest.is_symlink() or latest.exists()):
            os.replace(new, latest)
        else:
            old = base / f".{LATEST}.old.{secrets.token_hex(4)}"
            os.replace(latest, old)
            os.replace(new, latest)
            _remove(old)
    finally:
        if new.is_symlink() or new.exists():
            _remove(new)
    (base / "LATEST_RUN").write_text(run_id + "\n", encoding="utf-8")


def _remove(path: Path) -> None:
    """A link or a plugin-made ``latest`` copy."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def dumps(document: dict[str, Any]) -> bytes:
    """Canonical JSON for results.json (sorted keys, no NaN)."""
    return (json.dumps(document, indent=1, sort_keys=True, allow_nan=False, default=str) + "\n").encode()
