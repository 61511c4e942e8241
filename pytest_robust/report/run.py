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

#: Name of the stable pointer to the newest run inside the report folder.
LATEST = "latest"


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


def package_versions() -> dict[str, str]:
    """Versions of everything that decides the numbers (and of the report's own tools)."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in (
        "pytest-robust",
        "pytest",
        "torch",
        "torchvision",
        "timm",
        "pyautoattack",
        "autoattack",
        "numpy",
        "scipy",
        "scikit-learn",
        "pandas",
        "matplotlib",
        "jinja2",
        "pillow",
        "safetensors",
        "pytest-xdist",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def torch_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,  # type: ignore[no-untyped-call]
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


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
    from pytest_robust.cache import atomic_write_bytes

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
    latest = base / LATEST
    tmp = base / f".{LATEST}.{secrets.token_hex(4)}"
    try:
        os.symlink(run_id, tmp, target_is_directory=True)
        if latest.is_dir() and not latest.is_symlink():
            shutil.rmtree(latest)
        os.replace(tmp, latest)
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
        if latest.is_symlink():
            latest.unlink()
        elif latest.exists():
            shutil.rmtree(latest)
        shutil.copytree(base / run_id, latest)
    (base / "LATEST_RUN").write_text(run_id + "\n", encoding="utf-8")


def dumps(document: dict[str, Any]) -> bytes:
    """Canonical JSON for results.json (sorted keys, no NaN)."""
    return (json.dumps(document, indent=1, sort_keys=True, allow_nan=False, default=str) + "\n").encode()
