"""benchmarks/gpu_paper_profile.py (issue #12 item 5) dry-runs on a CPU, so it does not rot.

The real run needs a GPU (BENCHMARKS.md, "GPU paper profile"); nothing here does.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The script's module, seeing no GPU (so a GPU machine runs the same dry run)."""
    spec = importlib.util.spec_from_file_location(
        "gpu_paper_profile", ROOT / "benchmarks" / "gpu_paper_profile.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_paper_profile", module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    threads = torch.get_num_threads()
    yield module
    torch.set_num_threads(threads)


@pytest.mark.parametrize("args", [[], ["--allow-cpu"], ["--tiny"]])
def test_without_a_gpu_it_says_so_and_exits_2(
    script: ModuleType, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main(args) == script.EXIT_NO_GPU == 2
    captured = capsys.readouterr()
    assert "no CUDA GPU" in captured.err
    assert "--allow-cpu --tiny" in captured.err
    assert captured.out == ""


def test_tiny_dry_run_prints_the_tables(script: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert script.main(["--allow-cpu", "--tiny", "--archs", "small_cnn"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("device: CPU")
    rows = [line for line in out.splitlines() if line.startswith("| small_cnn |")]
    assert [r.split(" | ")[1] for r in rows] == ["standard", "pgd-at"]
    header = next(line for line in out.splitlines() if line.startswith("| arch |"))
    assert header.count(" | ") == rows[0].count(" | ")
    assert "AutoAttack robust acc" in header
    assert "| **total** |" in out
    assert "APGD-CE 2 steps x 1 restart + Square 5 queries" in out


def test_paper_sizes_are_the_paper_profiles_budgets(script: ModuleType) -> None:
    from pytest_robust.config import PROFILES

    sizes, budgets = script.paper_sizes(), PROFILES["paper"].budgets
    assert sizes.image_size == 224
    assert (sizes.pgd_steps, sizes.apgd_steps, sizes.apgd_restarts, sizes.square_queries) == (
        budgets.pgd_steps,
        budgets.apgd_steps,
        budgets.apgd_restarts,
        budgets.square_queries,
    )
    profile = script.training_profile(sizes)
    assert (profile.image_size, profile.at_steps, profile.batch_size) == (224, 10, 32)
    assert profile.deviations


@pytest.mark.slow
def test_shell_script_dry_run_with_the_reference_architectures(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_paper_profile.sh"), "--allow-cpu", "--tiny"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [
        line.split(" | ")[:2]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and " | pgd-at " in line
    ]
    assert [r[0] for r in rows] == ["| resnet50", "| convnext_tiny"]
