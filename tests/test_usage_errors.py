"""Configuration errors are usage errors (exit 4, a message, no traceback), at start where possible."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: nothing to refuse")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_an_absent_accelerator_is_a_usage_error_at_start(pytester: pytest.Pytester, device: str) -> None:
    pytester.makepyfile(test_a="def test_a(): raise AssertionError('a test ran')")
    result = pytester.runpytest_subprocess(f"--robust-device={device}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--robust-device {device}: *CUDA is not available here*"])
    assert "a test ran" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_data_the_default_model_cannot_train_on_stops_the_run(pytester: pytest.Pytester) -> None:
    """Found only when a fixture loads it: the run stops as a usage error, not one traceback per test."""
    data = pytester.path / "images"
    for label in ("benign", "malignant"):
        (data / label).mkdir(parents=True)
    pytester.makepyfile(
        test_a="""
        def test_a(model):
            pass

        def test_b(model):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        f"--robust-data={data}", "--robust-profile=smoke", "-p", "no:cacheprovider", "-p", "no:randomly"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert "has no train/ and test/ sub-folders" in out
    assert "Traceback" not in out
